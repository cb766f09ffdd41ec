output "address" {
  description = "Private address of the central host."
  value       = yandex_compute_instance.central.network_interface[0].ip_address
}
