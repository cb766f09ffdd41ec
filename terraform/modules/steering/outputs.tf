output "edge_regions" {
  description = "Edge region names in file order."
  value       = local.edge_names
}

output "central_region" {
  description = "The central region's name."
  value       = one([for r in var.regions.regions : r.name if r.role == "central"])
}

output "failover_order" {
  description = "Per edge region: the region names serving its clients, in failover order."
  value       = local.failover_order
}

output "region_pools" {
  description = "Cloudflare region code => region names in failover order."
  value       = local.region_pools
}

output "country_pools" {
  description = "ISO country code => region names in failover order."
  value       = local.country_pools
}

output "default_pools" {
  description = "Region names for clients matched by no region or country, in failover order."
  value       = local.default_pools
}

output "fallback_pool" {
  description = "The region served when every pool is unhealthy."
  value       = local.fallback_pool
}
