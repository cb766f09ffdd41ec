# A region's Consul datacenter: N server VMs (Container Optimized Image running the pinned
# hashicorp/consul image), configured by cloud-init, joined to each other by fixed addresses.

data "yandex_compute_image" "coi" {
  family = "container-optimized-image"
}

locals {
  zones = sort(keys(var.subnet_ids))
  servers = {
    for i in range(var.settings.servers) : "consul-${var.name}-${i}" => {
      zone    = local.zones[i % length(local.zones)]
      address = cidrhost(var.subnet_cidrs[local.zones[i % length(local.zones)]], 10 + i)
    }
  }
  addresses = [for s in values(local.servers) : s.address]
}

resource "yandex_compute_instance" "server" {
  for_each = local.servers

  name        = each.key
  hostname    = each.key
  folder_id   = var.folder_id
  zone        = each.value.zone
  platform_id = "standard-v3"

  resources {
    cores  = var.settings.cores
    memory = var.settings.memory_gb
  }

  boot_disk {
    initialize_params {
      image_id = data.yandex_compute_image.coi.id
      size     = 20
      type     = "network-ssd"
    }
  }

  network_interface {
    subnet_id          = var.subnet_ids[each.value.zone]
    ip_address         = each.value.address
    security_group_ids = var.security_group_ids
  }

  metadata = {
    docker-compose = templatefile("${path.module}/templates/consul-compose.yaml.tftpl", {
      image = var.settings.image
    })
    user-data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      ssh_public_key = var.ssh_public_key
      server_config = jsonencode({
        server           = true
        datacenter       = var.datacenter
        node_name        = each.key
        data_dir         = "/consul/data"
        bind_addr        = each.value.address
        client_addr      = "0.0.0.0"
        bootstrap_expect = var.settings.servers
        retry_join       = local.addresses
        ui_config        = { enabled = true }
        telemetry        = { prometheus_retention_time = "60s", disable_hostname = true }
      })
    })
  }

  allow_stopping_for_update = true
}
