# Cloudflare geo steering computed from the regions file, by region name (no resources, no
# providers): the root module maps names to pool ids. service_kit/steering.py computes the same
# maps in Python; tests/test_terraform.py applies this module and compares the two.

locals {
  # Edge regions in file order (clients are steered only to edge regions).
  edge_names = [for r in var.regions.regions : r.name if r.role == "edge"]
  edges      = { for r in var.regions.regions : r.name => r if r.role == "edge" }

  # Each region's pools in failover order: its own pool, then its `failover` list.
  failover_order = {
    for name, r in local.edges : name => distinct(concat([name], try(coalesce(r.failover, []), [])))
  }

  # One entry per (code, region); a code claimed twice fails with "Duplicate object key".
  region_codes = flatten([
    for name, r in local.edges : [for code in try(coalesce(r.cloudflare_regions, []), []) : { code = code, region = name }]
  ])
  country_codes = flatten([
    for name, r in local.edges : [for code in try(coalesce(r.countries, []), []) : { code = code, region = name }]
  ])

  region_pools  = { for item in local.region_codes : item.code => local.failover_order[item.region] }
  country_pools = { for item in local.country_codes : item.code => local.failover_order[item.region] }

  # The default region's order, then every other edge region in file order.
  default_pools = distinct(concat(local.failover_order[var.regions.default_region], local.edge_names))
  fallback_pool = var.regions.fallback_region
}
