variable "name" {
  description = "Region name."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder id."
  type        = string
}

variable "network_id" {
  description = "VPC network id."
  type        = string
}

variable "subnet_ids" {
  description = "Subnet id per zone; the group spreads edges over these zones."
  type        = map(string)
}

variable "security_group_ids" {
  description = "Security groups of the edge VMs."
  type        = list(string)
}

variable "settings" {
  description = "The root module's `edge` object (cores, memory_gb, core_fraction, disk_gb, min_size, max_size, cpu_target, workers, public_port, metrics_port, nlb_listener_port)."
  type        = any
}

variable "image" {
  description = "The geoingest container image."
  type        = string
}

variable "kafka_bootstrap" {
  description = "The region's in-VPC Kafka bootstrap servers."
  type        = string
}

variable "kafka_security" {
  description = "How the edges connect to kafka_bootstrap: {security_protocol, sasl_mechanism} (the kafka module's outputs)."
  type        = object({ security_protocol = string, sasl_mechanism = string })
}

variable "kafka_ca_pem" {
  description = "PEM CA certificate of the Kafka listener, written to the VMs and passed as GEO_EDGE_KAFKA_CA_FILE when security_protocol is SSL or SASL_SSL (null: the system's CAs)."
  type        = string
  default     = null
}

variable "kafka_username" {
  description = "SASL user the edges produce as."
  type        = string
}

variable "kafka_password" {
  description = "SASL password of kafka_username."
  type        = string
  sensitive   = true
}

variable "consul_url" {
  description = "HTTP address of a Consul server of the region's datacenter."
  type        = string
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user, or null."
  type        = string
  default     = null
}

variable "public_ips" {
  description = "Give every edge VM a public address (needed when Cloudflare origins are the VMs themselves)."
  type        = bool
  default     = false
}
