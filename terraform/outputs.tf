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

output "kafka_bootstrap" {
  description = "Per region: the in-VPC Kafka bootstrap servers."
  value = merge(
    { for name, region in module.edge_region : name => region.kafka_bootstrap },
    { (local.central_name) = module.central_region.kafka_bootstrap },
  )
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
