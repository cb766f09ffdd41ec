output "cluster_id" {
  description = "The managed Kafka cluster id."
  value       = yandex_mdb_kafka_cluster.this.id
}

output "bootstrap" {
  description = "In-VPC bootstrap servers (SASL_PLAINTEXT, port 9092)."
  value       = join(",", [for h in yandex_mdb_kafka_cluster.this.host : "${h.name}:9092" if h.role == "KAFKA"])
}

output "public_bootstrap" {
  description = "Bootstrap servers for clients outside the VPC (SASL_SSL, port 9091; needs assign_public_ip)."
  value       = join(",", [for h in yandex_mdb_kafka_cluster.this.host : "${h.name}:9091" if h.role == "KAFKA"])
}

output "passwords" {
  description = "SASL password per user."
  value       = { for name, p in random_password.user : name => p.result }
  sensitive   = true
}

output "usernames" {
  description = "SASL user name per user key (the component that connects as it: edge, mirror, central)."
  value       = { for key, u in yandex_mdb_kafka_user.user : key => u.name }
}

output "sasl_mechanism" {
  description = "The SASL mechanism of both listeners (Yandex Managed Kafka: SCRAM-SHA-512)."
  value       = "SCRAM-SHA-512"
}

output "security_protocol" {
  description = "Security protocol of the in-VPC listener `bootstrap` (port 9092)."
  value       = "SASL_PLAINTEXT"
}

output "public_security_protocol" {
  description = "Security protocol of the public listener `public_bootstrap` (port 9091; its certificate is signed by the provider's CA, the root variable kafka_ca_pem)."
  value       = "SASL_SSL"
}
