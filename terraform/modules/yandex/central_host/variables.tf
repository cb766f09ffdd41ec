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

variable "kafka_users" {
  description = "Central Kafka SASL credentials: {mirror = {username, password}, central = {username, password}}."
  type        = map(object({ username = string, password = string }))
  sensitive   = true
}

variable "mirror_sources" {
  description = "Edge regions the mirror reads: name => {bootstrap, username, password} (SASL_SSL)."
  type        = map(object({ bootstrap = string, username = string, password = string }))
  sensitive   = true
}

variable "consul_url" {
  description = "HTTP address of a Consul server of the central datacenter."
  type        = string
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user, or null."
  type        = string
  default     = null
}
