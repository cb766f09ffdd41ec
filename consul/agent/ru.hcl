# Datacenter "ru": regions.yaml region ru (role central). The mirror, the central Kafka and
# geo-central run here. Primary datacenter: the authority for ACL policies and global tokens
# (tokens.initial_management is given here, in a secrets file).

datacenter         = "ru"
primary_datacenter = "ru"

node_meta {
  region = "ru"
  role   = "central"
}
