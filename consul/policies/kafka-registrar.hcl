# Policy "kafka-registrar": registers a regional Kafka broker as service "kafka" (with its TCP
# check, see consul/services/kafka.hcl) and reads the catalog. No other service may be written.
service "kafka" {
  policy = "write"
}

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
