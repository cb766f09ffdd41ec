# Policy "edge": an edge process registers itself as service "edge" (its HTTP health check
# included) and deregisters itself; it may read the catalog, nothing else. Registering any other
# service name is refused with 403.
service "edge" {
  policy = "write"
}

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
