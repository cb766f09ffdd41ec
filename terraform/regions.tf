# The one source of truth: ../regions.yaml (also read by service_kit/regions.py, the local stack,
# the geo router and docker-compose.geo.yml's generator).

locals {
  regions_doc  = yamldecode(file("${path.module}/../regions.yaml"))
  region_names = [for r in local.regions_doc.regions : r.name]
  regions      = { for r in local.regions_doc.regions : r.name => r }
  edge_regions = { for r in local.regions_doc.regions : r.name => r if r.role == "edge" }
  central_name = module.steering.central_region
  lb_hostname  = coalesce(var.lb_hostname, local.regions_doc.domain)

  # 10.10.0.0/16, 10.20.0.0/16, ... by position in the regions file unless overridden.
  region_cidrs = {
    for i, name in local.region_names :
    name => lookup(var.region_cidrs, name, cidrsubnet(var.base_cidr, 8, 10 * (i + 1)))
  }
}

module "steering" {
  source  = "./modules/steering"
  regions = local.regions_doc
}
