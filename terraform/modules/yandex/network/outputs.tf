output "network_id" {
  description = "The VPC network id."
  value       = yandex_vpc_network.this.id
}

output "subnet_ids" {
  description = "Subnet id per zone."
  value       = { for zone, subnet in yandex_vpc_subnet.zone : zone => subnet.id }
}

output "subnet_cidrs" {
  description = "Subnet CIDR per zone."
  value       = { for zone, subnet in yandex_vpc_subnet.zone : zone => subnet.v4_cidr_blocks[0] }
}

output "security_group_id" {
  description = "The region's security group."
  value       = yandex_vpc_security_group.region.id
}
