variable "name" {
  description = "Region name (prefix of every resource)."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder id."
  type        = string
}

variable "zones" {
  description = "Availability zones; one subnet each."
  type        = list(string)
}

variable "cidr" {
  description = "The region's address block; one /24 per zone is carved from it."
  type        = string

  validation {
    condition     = can(cidrsubnet(var.cidr, 8, 0))
    error_message = "cidr must leave room for /24 subnets (a /16 is expected)."
  }
}

variable "public_ports" {
  description = "TCP ports open to the internet (edge HTTP for Cloudflare, Kafka SASL_SSL for the mirror)."
  type        = list(number)
  default     = []
}
