# A region's Kafka: Yandex Managed Service for Apache Kafka (KRaft), topics and SASL users.

locals {
  brokers            = var.settings.brokers_per_zone * length(var.subnet_ids)
  replication_factor = min(3, local.brokers)
}

resource "yandex_mdb_kafka_cluster" "this" {
  name               = "geoingest-${var.name}"
  folder_id          = var.folder_id
  environment        = "PRODUCTION"
  network_id         = var.network_id
  subnet_ids         = values(var.subnet_ids)
  security_group_ids = var.security_group_ids

  config {
    version          = var.settings.version
    brokers_count    = var.settings.brokers_per_zone
    zones            = keys(var.subnet_ids)
    assign_public_ip = var.assign_public_ip

    kafka {
      resources {
        resource_preset_id = var.settings.resource_preset_id
        disk_type_id       = var.settings.disk_type_id
        disk_size          = var.settings.disk_gb
      }

      kafka_config {
        auto_create_topics_enable  = false
        default_replication_factor = local.replication_factor
        num_partitions             = var.settings.partitions
        log_retention_hours        = var.settings.retention_hours
        compression_type           = "COMPRESSION_TYPE_PRODUCER"
      }
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

resource "yandex_mdb_kafka_topic" "topic" {
  for_each = var.topics

  cluster_id         = yandex_mdb_kafka_cluster.this.id
  name               = each.key
  partitions         = each.value
  replication_factor = local.replication_factor

  topic_config {
    min_insync_replicas = local.replication_factor >= 3 ? 2 : 1
    retention_ms        = var.settings.retention_hours * 3600 * 1000
  }
}

resource "random_password" "user" {
  for_each = var.users

  length  = 32
  special = false
}

resource "yandex_mdb_kafka_user" "user" {
  for_each = var.users

  cluster_id = yandex_mdb_kafka_cluster.this.id
  name       = each.key
  password   = random_password.user[each.key].result

  dynamic "permission" {
    for_each = each.value
    content {
      topic_name = permission.value.topic
      role       = permission.value.role
    }
  }

  depends_on = [yandex_mdb_kafka_topic.topic]
}
