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
  description = "Subnet id per zone; brokers are spread over these zones."
  type        = map(string)
}

variable "security_group_ids" {
  description = "Security groups of the brokers."
  type        = list(string)
}

variable "settings" {
  description = "The root module's `kafka` object (version, brokers_per_zone, resource_preset_id, disk_type_id, disk_gb, retention_hours, partitions)."
  type        = any
}

variable "assign_public_ip" {
  description = "Give brokers public addresses (SASL_SSL on 9091) so that the central mirror can read them."
  type        = bool
  default     = false
}

variable "topics" {
  description = "Topics to create: name => partition count."
  type        = map(number)
}

variable "users" {
  description = "SASL users: name => list of {topic, role} with role ACCESS_ROLE_PRODUCER, ACCESS_ROLE_CONSUMER or ACCESS_ROLE_ADMIN."
  type        = map(list(object({ topic = string, role = string })))
}
