output "edge_origins" {
  description = "Edge regions: Cloudflare pool origins as {name, address} (the NLB, or every edge VM)."
  value = !local.is_edge ? [] : (
    var.origin_mode == "nlb"
    ? [{ name = "${var.name}-nlb", address = module.edge_group[0].nlb_address }]
    : [for i in module.edge_group[0].instance_addresses : { name = i.name, address = i.public }]
  )
}

output "kafka_bootstrap" {
  description = "In-VPC Kafka bootstrap servers (SASL_PLAINTEXT)."
  value       = module.kafka.bootstrap
}

output "kafka_public_bootstrap" {
  description = "Public Kafka bootstrap servers (SASL_SSL; edge regions only)."
  value       = module.kafka.public_bootstrap
}

output "kafka_mirror_username" {
  description = "SASL user the mirror reads this region's Kafka as."
  value       = module.kafka.usernames["mirror"]
}

output "kafka_mirror_password" {
  description = "Its password."
  value       = module.kafka.passwords["mirror"]
  sensitive   = true
}

output "consul_addresses" {
  description = "Private addresses of the region's Consul servers."
  value       = module.consul.addresses
}

output "central_url" {
  description = "Central region: geo-central's URL inside the network (null elsewhere)."
  value       = local.is_edge ? null : "http://${module.central_host[0].address}:${var.central.http_port}"
}

output "kafka_security" {
  description = "How to connect to this region's Kafka: security_protocol (of kafka_bootstrap, in the VPC), public_security_protocol (of kafka_public_bootstrap), sasl_mechanism."
  value = {
    security_protocol        = module.kafka.security_protocol
    public_security_protocol = module.kafka.public_security_protocol
    sasl_mechanism           = module.kafka.sasl_mechanism
  }
}

output "kafka_usernames" {
  description = "SASL user name per component connecting to this region's Kafka (edge regions: edge, mirror; central: mirror, central)."
  value       = module.kafka.usernames
}

output "kafka_passwords" {
  description = "SASL password per component, keyed like kafka_usernames."
  value       = module.kafka.passwords
  sensitive   = true
}
