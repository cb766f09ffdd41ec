output "load_balancer_hostname" {
  description = "The public hostname clients send events to."
  value       = cloudflare_load_balancer.events.name
}

output "pool_ids" {
  description = "Cloudflare pool id per edge region."
  value       = local.pool_ids
}

output "steering" {
  description = "Geo steering by region name, as computed from regions.yaml."
  value = {
    region_pools  = module.steering.region_pools
    country_pools = module.steering.country_pools
    default_pools = module.steering.default_pools
    fallback_pool = module.steering.fallback_pool
  }
}

output "edge_origins" {
  description = "Per edge region: the origins placed in its Cloudflare pool."
  value       = { for name, region in module.edge_region : name => region.edge_origins }
}

# Kafka: everything a component needs to connect, per region (docs/deploy.md, "Kafka security:
# from Terraform to the components", maps each output to the GEO_* variables).

output "kafka_bootstrap" {
  description = "Per region: the in-VPC Kafka bootstrap servers (protocol: kafka_security[region].security_protocol)."
  value = merge(
    { for name, region in module.edge_region : name => region.kafka_bootstrap },
    { (local.central_name) = module.central_region.kafka_bootstrap },
  )
}

output "kafka_public_bootstrap" {
  description = "Per edge region: the Kafka bootstrap servers reachable from outside the VPC (protocol: kafka_security[region].public_security_protocol; CA: kafka_ca_pem). The mirror reads these."
  value       = { for name, region in module.edge_region : name => region.kafka_public_bootstrap }
}

output "kafka_security" {
  description = "Per region: security_protocol of kafka_bootstrap, public_security_protocol of kafka_public_bootstrap, and the sasl_mechanism of both."
  value = merge(
    { for name, region in module.edge_region : name => region.kafka_security },
    { (local.central_name) = module.central_region.kafka_security },
  )
}

output "kafka_usernames" {
  description = "Per region: SASL user name per component (edge regions: edge, mirror; the central region: mirror, central)."
  value = merge(
    { for name, region in module.edge_region : name => region.kafka_usernames },
    { (local.central_name) = module.central_region.kafka_usernames },
  )
}

output "kafka_passwords" {
  description = "Per region: SASL password per component, keyed like kafka_usernames (`terraform output -json kafka_passwords`)."
  value = merge(
    { for name, region in module.edge_region : name => region.kafka_passwords },
    { (local.central_name) = module.central_region.kafka_passwords },
  )
  sensitive = true
}

output "kafka_ca_pem" {
  description = "The CA certificate (PEM) the components verify kafka_public_bootstrap's TLS with: the variable kafka_ca_pem (null: the system's CAs)."
  value       = var.kafka_ca_pem
}

output "consul_servers" {
  description = "Per region: the Consul servers' private addresses."
  value = merge(
    { for name, region in module.edge_region : name => region.consul_addresses },
    { (local.central_name) = module.central_region.consul_addresses },
  )
}

output "central_url" {
  description = "geo-central's API and dashboard inside the central region's network."
  value       = module.central_region.central_url
}
