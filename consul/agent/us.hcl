# Datacenter "us": regions.yaml region us (role edge). Its edges register service "edge", its
# regional Kafka registers service "kafka". Secondary datacenter: ACLs come from "ru".
# WAN: join the primary's servers, e.g. -retry-join-wan=<ru server>.

datacenter         = "us"
primary_datacenter = "ru"

node_meta {
  region = "us"
  role   = "edge"
}

acl {
  # Copy policies and tokens from the primary so that tokens resolve when the WAN is cut.
  enable_token_replication = true
}
