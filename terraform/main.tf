# Per-region infrastructure. `modules/region` is the cloud-neutral interface (its variables and
# outputs); today it composes the Yandex Cloud implementations in `modules/yandex/*`.

module "edge_region" {
  source   = "./modules/region"
  for_each = local.edge_regions

  name              = each.key
  role              = "edge"
  consul_datacenter = try(each.value.consul_datacenter, each.key)
  folder_id         = lookup(var.region_folder_ids, each.key, var.yandex_folder_id)
  zones             = lookup(var.region_zones, each.key, var.default_zones)
  cidr              = local.region_cidrs[each.key]
  image             = var.image
  ssh_public_key    = var.ssh_public_key
  edge              = var.edge
  kafka             = var.kafka
  kafka_ca_pem      = var.kafka_ca_pem
  consul            = var.consul
  origin_mode       = var.origin_mode
}

module "central_region" {
  source = "./modules/region"

  name              = local.central_name
  role              = "central"
  consul_datacenter = try(local.regions[local.central_name].consul_datacenter, local.central_name)
  folder_id         = lookup(var.region_folder_ids, local.central_name, var.yandex_folder_id)
  zones             = lookup(var.region_zones, local.central_name, var.default_zones)
  cidr              = local.region_cidrs[local.central_name]
  image             = var.image
  ssh_public_key    = var.ssh_public_key
  edge              = var.edge
  kafka             = var.kafka
  kafka_ca_pem      = var.kafka_ca_pem
  consul            = var.consul
  central           = var.central

  # The mirror consumes every edge region's Kafka over the public SASL_SSL listener (CA: kafka_ca_pem).
  mirror_sources = {
    for name, region in module.edge_region : name => {
      bootstrap         = region.kafka_public_bootstrap
      security_protocol = region.kafka_security.public_security_protocol
      sasl_mechanism    = region.kafka_security.sasl_mechanism
      username          = region.kafka_mirror_username
      password          = region.kafka_mirror_password
    }
  }
}
