output "instance_group_id" {
  description = "The edges' instance group id."
  value       = yandex_compute_instance_group.edges.id
}

output "nlb_address" {
  description = "Public IPv4 address of the region's edge network load balancer."
  value       = one(flatten([for l in yandex_lb_network_load_balancer.edges.listener : [for a in l.external_address_spec : a.address]]))
}

output "instance_addresses" {
  description = "Edge VMs as {name, private, public} (public is empty unless public_ips)."
  value = [
    for i in yandex_compute_instance_group.edges.instances : {
      name    = i.name
      private = i.network_interface[0].ip_address
      public  = i.network_interface[0].nat_ip_address
    }
  ]
}
