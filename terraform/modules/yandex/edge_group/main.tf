# A region's edges: an autoscaled instance group of Container Optimized Image VMs running geo-edge,
# health-checked on /status and placed behind a network load balancer (listener -> edge port).

data "yandex_compute_image" "coi" {
  family = "container-optimized-image"
}

locals {
  # The CA goes to the VM (cloud-init) and into the container (read-only mount) only when the
  # edges' Kafka listener is TLS; inside the VPC it is SASL_PLAINTEXT (no CA needed).
  kafka_tls     = contains(["SSL", "SASL_SSL"], var.kafka_security.security_protocol)
  kafka_ca_pem  = local.kafka_tls ? var.kafka_ca_pem : null
  kafka_ca_file = local.kafka_ca_pem == null ? "" : "/etc/geoingest/kafka-ca.pem"
}

resource "yandex_iam_service_account" "edges" {
  name      = "geoingest-${var.name}-edges"
  folder_id = var.folder_id
}

resource "yandex_resourcemanager_folder_iam_member" "edges" {
  for_each = toset(["compute.editor", "load-balancer.editor", "vpc.user"])

  folder_id = var.folder_id
  role      = each.key
  member    = "serviceAccount:${yandex_iam_service_account.edges.id}"
}

resource "yandex_compute_instance_group" "edges" {
  name               = "geoingest-${var.name}-edges"
  folder_id          = var.folder_id
  service_account_id = yandex_iam_service_account.edges.id

  instance_template {
    name        = "edge-${var.name}-{instance.index}"
    hostname    = "edge-${var.name}-{instance.index}"
    platform_id = "standard-v3"

    resources {
      cores         = var.settings.cores
      memory        = var.settings.memory_gb
      core_fraction = var.settings.core_fraction
    }

    boot_disk {
      initialize_params {
        image_id = data.yandex_compute_image.coi.id
        size     = var.settings.disk_gb
        type     = "network-ssd"
      }
    }

    network_interface {
      network_id         = var.network_id
      subnet_ids         = values(var.subnet_ids)
      security_group_ids = var.security_group_ids
      nat                = var.public_ips
    }

    metadata = {
      docker-compose = templatefile("${path.module}/templates/edge-compose.yaml.tftpl", {
        image           = var.image
        region          = var.name
        public_port     = var.settings.public_port
        metrics_port    = var.settings.metrics_port
        workers         = var.settings.workers
        kafka_bootstrap = var.kafka_bootstrap
        kafka_protocol  = var.kafka_security.security_protocol
        kafka_mechanism = var.kafka_security.sasl_mechanism
        kafka_username  = var.kafka_username
        kafka_password  = var.kafka_password
        kafka_ca_file   = local.kafka_ca_file
        consul_url      = var.consul_url
      })
      user-data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
        ssh_public_key = var.ssh_public_key
        kafka_ca_pem   = local.kafka_ca_pem
        kafka_ca_file  = local.kafka_ca_file
      })
    }
  }

  scale_policy {
    auto_scale {
      initial_size           = var.settings.min_size
      min_zone_size          = 1
      max_size               = var.settings.max_size
      measurement_duration   = 60
      warmup_duration        = 120
      stabilization_duration = 300
      cpu_utilization_target = var.settings.cpu_target
    }
  }

  allocation_policy {
    zones = keys(var.subnet_ids)
  }

  deploy_policy {
    max_unavailable  = 1
    max_expansion    = 1
    startup_duration = 60
  }

  health_check {
    interval            = 5
    timeout             = 2
    healthy_threshold   = 2
    unhealthy_threshold = 3

    http_options {
      port = var.settings.public_port
      path = "/status"
    }
  }

  load_balancer {
    target_group_name = "geoingest-${var.name}-edges"
  }

  depends_on = [yandex_resourcemanager_folder_iam_member.edges]
}

resource "yandex_lb_network_load_balancer" "edges" {
  name      = "geoingest-${var.name}-edges"
  folder_id = var.folder_id

  listener {
    name        = "http"
    port        = var.settings.nlb_listener_port
    target_port = var.settings.public_port

    external_address_spec {
      ip_version = "ipv4"
    }
  }

  attached_target_group {
    target_group_id = yandex_compute_instance_group.edges.load_balancer[0].target_group_id

    healthcheck {
      name                = "edge-status"
      interval            = 2
      timeout             = 1
      healthy_threshold   = 2
      unhealthy_threshold = 2

      http_options {
        port = var.settings.public_port
        path = "/status"
      }
    }
  }
}
