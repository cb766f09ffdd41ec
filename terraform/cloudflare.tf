# The public entry point: a proxied Cloudflare load balancer for events.<domain> with geo steering.
# Pools are keyed by edge region name; module.steering (from regions.yaml) gives the order.

resource "cloudflare_load_balancer_monitor" "edge_status" {
  account_id     = var.cloudflare_account_id
  description    = "geoingest edge /status"
  type           = var.monitor.type
  method         = "GET"
  path           = "/status"
  port           = var.monitor.port
  expected_codes = "200"
  interval       = var.monitor.interval
  timeout        = var.monitor.timeout
  retries        = var.monitor.retries
  header = {
    Host = [local.lb_hostname]
  }
}

resource "cloudflare_load_balancer_pool" "edge" {
  for_each = local.edge_regions

  account_id      = var.cloudflare_account_id
  name            = "geoingest-${each.key}"
  description     = "geoingest edges of region ${each.key}"
  enabled         = true
  minimum_origins = 1
  monitor         = cloudflare_load_balancer_monitor.edge_status.id
  origins = [
    for origin in module.edge_region[each.key].edge_origins : {
      name    = origin.name
      address = origin.address
      enabled = true
      weight  = 1
      header = {
        host = [local.lb_hostname]
      }
    }
  ]
}

locals {
  pool_ids = { for name, pool in cloudflare_load_balancer_pool.edge : name => pool.id }
}

resource "cloudflare_load_balancer" "events" {
  zone_id         = var.cloudflare_zone_id
  name            = local.lb_hostname
  description     = "geoingest events: geo steering from regions.yaml"
  proxied         = true
  steering_policy = "geo"

  region_pools  = { for code, names in module.steering.region_pools : code => [for n in names : local.pool_ids[n]] }
  country_pools = { for code, names in module.steering.country_pools : code => [for n in names : local.pool_ids[n]] }
  default_pools = [for n in module.steering.default_pools : local.pool_ids[n]]
  fallback_pool = local.pool_ids[module.steering.fallback_pool]

  lifecycle {
    precondition {
      condition     = length(module.steering.default_pools) == length(local.edge_regions)
      error_message = "default_pools must list every edge region's pool."
    }
  }
}
