# Regions, their Cloudflare codes, countries and failover come from ../regions.yaml, not from here.

variable "cloudflare_account_id" {
  description = "Cloudflare account id owning the load balancer pools and monitor (32 hex characters)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.cloudflare_account_id))
    error_message = "cloudflare_account_id must be 32 lower-case hex characters."
  }
}

variable "cloudflare_zone_id" {
  description = "Cloudflare zone id of the domain that holds the load balancer hostname (32 hex characters)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.cloudflare_zone_id))
    error_message = "cloudflare_zone_id must be 32 lower-case hex characters."
  }
}

variable "lb_hostname" {
  description = "Public hostname of the load balancer; null uses regions.yaml's `domain` (events.<domain>)."
  type        = string
  default     = null

  validation {
    condition     = var.lb_hostname == null || can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", var.lb_hostname))
    error_message = "lb_hostname must be a lower-case DNS name."
  }
}

variable "monitor" {
  description = "Cloudflare health monitor of the edges' /status: protocol, origin port and timing (seconds)."
  type = object({
    type     = optional(string, "http")
    port     = optional(number, 80)
    interval = optional(number, 60)
    timeout  = optional(number, 5)
    retries  = optional(number, 2)
  })
  default = {}

  validation {
    condition     = contains(["http", "https"], var.monitor.type)
    error_message = "monitor.type must be http or https."
  }

  validation {
    condition     = var.monitor.interval >= 5 && var.monitor.interval <= 3600 && var.monitor.timeout >= 1 && var.monitor.timeout < var.monitor.interval
    error_message = "monitor.interval must be 5..3600 s and monitor.timeout at least 1 s and below the interval."
  }

  validation {
    condition     = var.monitor.retries >= 0 && var.monitor.retries <= 5
    error_message = "monitor.retries must be 0..5."
  }
}

variable "yandex_folder_id" {
  description = "Default Yandex Cloud folder id for every region (override per region in region_folder_ids)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{20}$", var.yandex_folder_id))
    error_message = "yandex_folder_id must be a 20-character Yandex Cloud id."
  }
}

variable "region_folder_ids" {
  description = "Optional per-region Yandex Cloud folder ids, keyed by region name from regions.yaml."
  type        = map(string)
  default     = {}
}

variable "yandex_default_zone" {
  description = "The provider's default availability zone."
  type        = string
  default     = "ru-central1-a"
}

variable "default_zones" {
  description = "Availability zones a region's edges, Kafka brokers and Consul servers spread over."
  type        = list(string)
  default     = ["ru-central1-a", "ru-central1-b", "ru-central1-d"]

  validation {
    condition     = length(var.default_zones) >= 1 && length(var.default_zones) == length(distinct(var.default_zones))
    error_message = "default_zones must list at least one zone, each once."
  }
}

variable "region_zones" {
  description = "Optional per-region availability zones, keyed by region name."
  type        = map(list(string))
  default     = {}
}

variable "base_cidr" {
  description = "Address space carved into one /16 per region (10.10.0.0/16, 10.20.0.0/16, ... in file order)."
  type        = string
  default     = "10.0.0.0/8"

  validation {
    condition     = can(cidrsubnet(var.base_cidr, 8, 0))
    error_message = "base_cidr must be an IPv4 CIDR at least 8 bits wider than a /16 region block (e.g. 10.0.0.0/8)."
  }
}

variable "region_cidrs" {
  description = "Optional per-region CIDR overrides, keyed by region name."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for c in values(var.region_cidrs) : can(cidrhost(c, 0))])
    error_message = "Every region_cidrs value must be a CIDR."
  }
}

variable "image" {
  description = "The geoingest container image (edge, mirror and central share it), pinned to a tag or digest."
  type        = string

  validation {
    condition     = can(regex("^[^:@]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must be pinned to a version tag (not latest) or a sha256 digest."
  }
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user on every VM (null: no SSH access)."
  type        = string
  default     = null
}

variable "origin_mode" {
  description = "Cloudflare pool origins: \"nlb\" (one network load balancer address per region) or \"instances\" (every edge VM's public address; refreshed on each apply)."
  type        = string
  default     = "nlb"

  validation {
    condition     = contains(["nlb", "instances"], var.origin_mode)
    error_message = "origin_mode must be nlb or instances."
  }
}

variable "edge" {
  description = "Edge instance group: VM size, autoscaling bounds and CPU target (the original: 2 vCPU / 2 GB, 3 to 6 VMs at 60 % CPU)."
  type = object({
    cores             = optional(number, 2)
    memory_gb         = optional(number, 2)
    core_fraction     = optional(number, 100)
    disk_gb           = optional(number, 20)
    min_size          = optional(number, 3)
    max_size          = optional(number, 6)
    cpu_target        = optional(number, 60)
    workers           = optional(number, 2)
    public_port       = optional(number, 8080)
    metrics_port      = optional(number, 9100)
    nlb_listener_port = optional(number, 80)
  })
  default = {}

  validation {
    condition     = var.edge.min_size >= 1 && var.edge.max_size >= var.edge.min_size
    error_message = "edge.min_size must be at least 1 and edge.max_size at least edge.min_size."
  }

  validation {
    condition     = var.edge.cpu_target > 10 && var.edge.cpu_target <= 100
    error_message = "edge.cpu_target is a CPU percentage in (10, 100]."
  }
}

variable "kafka" {
  description = "Managed Kafka per region (yandex_mdb_kafka_cluster): version, brokers per zone, host preset and disk."
  type = object({
    version            = optional(string, "3.9")
    brokers_per_zone   = optional(number, 1)
    resource_preset_id = optional(string, "s3-c2-m8")
    disk_type_id       = optional(string, "network-ssd")
    disk_gb            = optional(number, 64)
    retention_hours    = optional(number, 168)
    partitions         = optional(number, 6)
  })
  default = {}

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.kafka.version))
    error_message = "kafka.version is a managed Kafka major.minor version such as 3.9."
  }

  validation {
    condition     = var.kafka.brokers_per_zone >= 1 && var.kafka.disk_gb >= 10
    error_message = "kafka.brokers_per_zone must be at least 1 and kafka.disk_gb at least 10."
  }
}

variable "kafka_ca_pem" {
  description = "The CA certificate of the managed Kafka's TLS listener (Yandex: https://storage.yandexcloud.net/cloud-certs/CA.pem), PEM. Written to /etc/geoingest/kafka-ca.pem on every VM whose component connects with SASL_SSL (today the mirror, to the edge regions' public listeners) and passed as its GEO_*_CA_FILE; null: the system's CAs, which do not include Yandex's."
  type        = string
  default     = null

  validation {
    condition     = var.kafka_ca_pem == null || can(regex("^(-----BEGIN CERTIFICATE-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END CERTIFICATE-----\\s*)+$", trimspace(coalesce(var.kafka_ca_pem, "-"))))
    error_message = "kafka_ca_pem must be one or more PEM certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----), e.g. the contents of Yandex's CA.pem."
  }
}

variable "consul" {
  description = "Consul servers per region (one datacenter each; 3 or 5 for a quorum) and their image (1.14.11: the version every test runs; 1.14-1.16 are MPL-2.0)."
  type = object({
    servers   = optional(number, 3)
    image     = optional(string, "hashicorp/consul:1.14.11")
    cores     = optional(number, 2)
    memory_gb = optional(number, 2)
  })
  default = {}

  validation {
    condition     = contains([1, 3, 5], var.consul.servers)
    error_message = "consul.servers must be 1, 3 or 5."
  }
}

variable "central" {
  description = "The central region's host running geo-mirror and geo-central (chdb data on a separate disk)."
  type = object({
    cores        = optional(number, 4)
    memory_gb    = optional(number, 16)
    data_disk_gb = optional(number, 200)
    http_port    = optional(number, 8000)
    mirror_port  = optional(number, 9200)
  })
  default = {}
}
