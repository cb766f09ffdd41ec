# Policy "georouter": the geo router watches the healthy "edge" instances of each edge
# datacenter (GET /v1/health/service/edge?passing&dc=<dc>). Read only.
service "edge" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
