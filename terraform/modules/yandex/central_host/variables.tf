variable "name" {
  description = "Region name (the central region)."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder id."
  type        = string
}

variable "zone" {
  description = "Availability zone of the host."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the host in that zone."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups of the host."
  type        = list(string)
}

variable "settings" {
  description = "The root module's `central` object (cores, memory_gb, data_disk_gb, http_port, mirror_port)."
  type        = any
}

variable "image" {
  description = "The geoingest container image."
  type        = string
}

variable "kafka_bootstrap" {
  description = "The central Kafka's in-VPC bootstrap servers."
  type        = string
}

variable "kafka_security" {
  description = "How geo-mirror and geo-central connect to kafka_bootstrap: {security_protocol, sasl_mechanism}."
  type        = object({ security_protocol = string, sasl_mechanism = string })
}

variable "source_security" {
  description = "The mirror's defaults for source regions (GEO_MIRROR_SOURCE_*): {security_protocol, sasl_mechanism}; each mirror_sources entry also gives its own."
  type        = object({ security_protocol = string, sasl_mechanism = string })
}

variable "kafka_ca_pem" {
  description = "PEM CA certificate of the managed Kafka's TLS listener, written to /etc/geoingest/kafka-ca.pem and passed as GEO_*_CA_FILE to each connection that uses SSL or SASL_SSL (null: the system's CAs)."
  type        = string
  default     = null
}

variable "kafka_users" {
  description = "Central Kafka SASL credentials: {mirror = {username, password}, central = {username, password}}."
  type        = map(object({ username = string, password = string }))
  sensitive   = true
}

variable "mirror_sources" {
  description = "Edge regions the mirror reads: name => {bootstrap, security_protocol, sasl_mechanism, username, password}."
  type = map(object({
    bootstrap         = string
    security_protocol = string
    sasl_mechanism    = string
    username          = string
    password          = string
  }))
  sensitive = true
}

variable "consul_url" {
  description = "HTTP address of a Consul server of the central datacenter (not passed to the containers: geo-central has no Consul setting, and geo-mirror gets its regions as --region, not from Consul)."
  type        = string
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user, or null."
  type        = string
  default     = null
}
