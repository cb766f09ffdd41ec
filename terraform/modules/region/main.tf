# One region composed from the Yandex Cloud implementations.

locals {
  is_edge    = var.role == "edge"
  partitions = var.kafka.partitions

  # Edge regions: the edges' topics. Central: <region>.<topic> for every mirrored region.
  topics = local.is_edge ? {
    "events"     = local.partitions
    "events.dlq" = 1
    "heartbeats" = 1
    } : merge([
      for source in nonsensitive(keys(var.mirror_sources)) : {
        "${source}.events"     = local.partitions
        "${source}.events.dlq" = 1
        "${source}.heartbeats" = 1
      }
  ]...)

  users = local.is_edge ? {
    edge = [
      { topic = "events", role = "ACCESS_ROLE_PRODUCER" },
      { topic = "events.dlq", role = "ACCESS_ROLE_PRODUCER" },
    ]
    mirror = [
      { topic = "*", role = "ACCESS_ROLE_CONSUMER" },
      { topic = "heartbeats", role = "ACCESS_ROLE_PRODUCER" },
    ]
    } : {
    mirror = [
      { topic = "*", role = "ACCESS_ROLE_PRODUCER" },
      { topic = "*", role = "ACCESS_ROLE_CONSUMER" },
    ]
    central = [
      { topic = "*", role = "ACCESS_ROLE_CONSUMER" },
    ]
  }

  first_zone = sort(var.zones)[0]
}

module "network" {
  source = "../yandex/network"

  name         = var.name
  folder_id    = var.folder_id
  zones        = var.zones
  cidr         = var.cidr
  public_ports = local.is_edge ? [var.edge.public_port, 9091] : []
}

module "kafka" {
  source = "../yandex/kafka"

  name               = var.name
  folder_id          = var.folder_id
  network_id         = module.network.network_id
  subnet_ids         = module.network.subnet_ids
  security_group_ids = [module.network.security_group_id]
  settings           = var.kafka
  assign_public_ip   = local.is_edge
  topics             = local.topics
  users              = local.users
}

module "consul" {
  source = "../yandex/consul"

  name               = var.name
  datacenter         = var.consul_datacenter
  folder_id          = var.folder_id
  subnet_ids         = module.network.subnet_ids
  subnet_cidrs       = module.network.subnet_cidrs
  security_group_ids = [module.network.security_group_id]
  settings           = var.consul
  ssh_public_key     = var.ssh_public_key
}

module "edge_group" {
  source = "../yandex/edge_group"
  count  = local.is_edge ? 1 : 0

  name               = var.name
  folder_id          = var.folder_id
  network_id         = module.network.network_id
  subnet_ids         = module.network.subnet_ids
  security_group_ids = [module.network.security_group_id]
  settings           = var.edge
  image              = var.image
  kafka_bootstrap    = module.kafka.bootstrap
  kafka_security = {
    security_protocol = module.kafka.security_protocol
    sasl_mechanism    = module.kafka.sasl_mechanism
  }
  kafka_username = module.kafka.usernames["edge"]
  kafka_password = module.kafka.passwords["edge"]
  kafka_ca_pem   = var.kafka_ca_pem
  consul_url     = module.consul.http_url
  ssh_public_key = var.ssh_public_key
  public_ips     = var.origin_mode == "instances"
}

module "central_host" {
  source = "../yandex/central_host"
  count  = local.is_edge ? 0 : 1

  name               = var.name
  folder_id          = var.folder_id
  zone               = local.first_zone
  subnet_id          = module.network.subnet_ids[local.first_zone]
  security_group_ids = [module.network.security_group_id]
  settings           = var.central
  image              = var.image
  kafka_bootstrap    = module.kafka.bootstrap
  kafka_security = {
    security_protocol = module.kafka.security_protocol
    sasl_mechanism    = module.kafka.sasl_mechanism
  }
  kafka_users = {
    mirror  = { username = module.kafka.usernames["mirror"], password = module.kafka.passwords["mirror"] }
    central = { username = module.kafka.usernames["central"], password = module.kafka.passwords["central"] }
  }
  # Every source is this cloud's managed Kafka seen from outside its VPC: the public listener's
  # protocol and mechanism are the mirror's defaults for sources; each source also names its own.
  source_security = {
    security_protocol = module.kafka.public_security_protocol
    sasl_mechanism    = module.kafka.sasl_mechanism
  }
  mirror_sources = var.mirror_sources
  kafka_ca_pem   = var.kafka_ca_pem
  consul_url     = module.consul.http_url
  ssh_public_key = var.ssh_public_key
}
