# Policy "mirror": the mirror watches the healthy "kafka" instances of each edge datacenter
# (GET /v1/health/service/kafka?passing&dc=<dc>). Read only.
service "kafka" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
