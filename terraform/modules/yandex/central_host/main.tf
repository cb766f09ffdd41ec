# The central region's host: geo-mirror and geo-central in containers, chdb data on its own disk.

data "yandex_compute_image" "coi" {
  family = "container-optimized-image"
}

locals {
  tls = ["SSL", "SASL_SSL"]
  # A connection gets the CA file when it is TLS and a CA is given; the VM gets the file (cloud-init)
  # when some connection uses it. The mirror's sources: their default and every region's own.
  source_protocols = concat([var.source_security.security_protocol], nonsensitive(values(var.mirror_sources)[*].security_protocol))
  central_tls      = contains(local.tls, var.kafka_security.security_protocol)
  source_tls       = length(setintersection(local.tls, local.source_protocols)) > 0
  ca_path          = "/etc/geoingest/kafka-ca.pem"
  central_ca_file  = local.central_tls && var.kafka_ca_pem != null ? local.ca_path : ""
  source_ca_file   = local.source_tls && var.kafka_ca_pem != null ? local.ca_path : ""
  kafka_ca_pem     = local.central_ca_file != "" || local.source_ca_file != "" ? var.kafka_ca_pem : null
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
      kafka_protocol   = var.kafka_security.security_protocol
      kafka_mechanism  = var.kafka_security.sasl_mechanism
      central_ca_file  = local.central_ca_file
      source_protocol  = var.source_security.security_protocol
      source_mechanism = var.source_security.sasl_mechanism
      source_ca_file   = local.source_ca_file
      mirror_username  = var.kafka_users["mirror"].username
      mirror_password  = var.kafka_users["mirror"].password
      central_username = var.kafka_users["central"].username
      central_password = var.kafka_users["central"].password
      mirror_sources   = var.mirror_sources
      mirror_port      = var.settings.mirror_port
      http_port        = var.settings.http_port
    })
    user-data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
      ssh_public_key = var.ssh_public_key
      kafka_ca_pem   = local.kafka_ca_pem
      kafka_ca_file  = local.ca_path
    })
  }

  allow_stopping_for_update = true
}
