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
