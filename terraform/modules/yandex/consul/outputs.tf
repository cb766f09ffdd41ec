output "addresses" {
  description = "Private addresses of the Consul servers."
  value       = local.addresses
}

output "http_url" {
  description = "HTTP API of the first Consul server (port 8500)."
  value       = "http://${local.addresses[0]}:8500"
}
