# The central region's host: geo-mirror and geo-central in containers, chdb data on its own disk.

data "yandex_compute_image" "coi" {
  family = "container-optimized-image"
}

resource "yandex_compute_disk" "chdb" {
  name      = "geoingest-${var.name}-chdb"
  folder_id = var.folder_id
  zone      = var.zone
  type      = "network-ssd"
  size      = var.settings.data_disk_gb

  lifecycle {
    prevent_destroy = true
  }
}

resource "yandex_compute_instance" "central" {
  name        = "central-${var.name}"
  hostname    = "central-${var.name}"
  folder_id   = var.folder_id
  zone        = var.zone
  platform_id = "standard-v3"

  resources {
    cores  = var.settings.cores
    memory = var.settings.memory_gb
  }

  boot_disk {
    initialize_params {
      image_id = data.yandex_compute_image.coi.id
      size     = 30
      type     = "network-ssd"
    }
  }

  secondary_disk {
    disk_id     = yandex_compute_disk.chdb.id
    device_name = "chdb-data"
    auto_delete = false
  }

  network_interface {
    subnet_id          = var.subnet_id
    security_group_ids = var.security_group_ids
  }

  metadata = {
    docker-compose = templatefile("${path.module}/templates/central-compose.yaml.tftpl", {
      image            = var.image
      region           = var.name
      kafka_bootstrap  = var.kafka_bootstrap
      mirror_username  = var.kafka_users["mirror"].username
      mirror_password  = var.kafka_users["mirror"].password
      central_username = var.kafka_users["central"].username
      central_password = var.kafka_users["central"].password
      mirror_sources   = var.mirror_sources
      mirror_port      = var.settings.mirror_port
      http_port        = var.settings.http_port
      consul_url       = var.consul_url
    })
    user-data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      ssh_public_key = var.ssh_public_key
    })
  }

  allow_stopping_for_update = true
}
