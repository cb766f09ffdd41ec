# The cloud-neutral interface of one region. Another cloud implements the same variables and
# outputs with its own modules (e.g. modules/aws/*) behind a module like this one.

variable "name" {
  description = "Region name from regions.yaml."
  type        = string
}

variable "role" {
  description = "edge (edges, Kafka, Consul) or central (Kafka, Consul, mirror and central host)."
  type        = string

  validation {
    condition     = contains(["edge", "central"], var.role)
    error_message = "role must be edge or central."
  }
}

variable "consul_datacenter" {
  description = "The region's Consul datacenter."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder id of the region."
  type        = string
}

variable "zones" {
  description = "Availability zones of the region."
  type        = list(string)
}

variable "cidr" {
  description = "The region's address block (a /16)."
  type        = string
}

variable "image" {
  description = "The geoingest container image."
  type        = string
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user, or null."
  type        = string
  default     = null
}

variable "edge" {
  description = "The root module's `edge` object."
  type        = any
}

variable "kafka" {
  description = "The root module's `kafka` object."
  type        = any
}

variable "consul" {
  description = "The root module's `consul` object."
  type        = any
}

variable "central" {
  description = "The root module's `central` object (central region only)."
  type        = any
  default     = {}
}

variable "origin_mode" {
  description = "nlb or instances: what the region's Cloudflare pool origins are."
  type        = string
  default     = "nlb"
}

variable "mirror_sources" {
  description = "Central region only: the edge regions' Kafka, name => {bootstrap, security_protocol, sasl_mechanism, username, password}."
  type = map(object({
    bootstrap         = string
    security_protocol = string
    sasl_mechanism    = string
    username          = string
    password          = string
  }))
  default   = {}
  sensitive = true
}

variable "kafka_ca_pem" {
  description = "PEM CA certificate of the managed Kafka's TLS listener, written to a file for every component that connects with SSL/SASL_SSL (null: the system's CAs)."
  type        = string
  default     = null
}
