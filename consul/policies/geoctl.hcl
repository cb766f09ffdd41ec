# Policy "geoctl": the operators' tool reads the topology — every "edge" and "kafka" instance
# with its checks, in every datacenter (GET /v1/health/service/<name>?dc=<dc>). Read only.
service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
