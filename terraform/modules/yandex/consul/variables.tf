variable "name" {
  description = "Region name."
  type        = string
}

variable "datacenter" {
  description = "Consul datacenter of the region (regions.yaml's consul_datacenter)."
  type        = string
}

variable "folder_id" {
  description = "Yandex Cloud folder id."
  type        = string
}

variable "subnet_ids" {
  description = "Subnet id per zone; servers are spread round-robin over the zones."
  type        = map(string)
}

variable "subnet_cidrs" {
  description = "Subnet CIDR per zone; server i gets the fixed address .10+i of its zone's subnet."
  type        = map(string)
}

variable "security_group_ids" {
  description = "Security groups of the Consul servers."
  type        = list(string)
}

variable "settings" {
  description = "The root module's `consul` object (servers, image, cores, memory_gb)."
  type        = any
}

variable "ssh_public_key" {
  description = "SSH public key for the `geo` user, or null."
  type        = string
  default     = null
}
