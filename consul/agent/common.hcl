# Settings shared by every geoingest Consul server, in every datacenter.
# Load it first, then the datacenter's file:
#   consul agent -config-file=consul/agent/common.hcl -config-file=consul/agent/eu.hcl \
#                -config-file=/etc/consul.d/secrets.hcl -bind=<ip> -retry-join=<servers>
# Command-line flags win over these files (the harness sets ports, -bind and -data-dir so).

server           = true
bootstrap_expect = 3
data_dir         = "/var/lib/consul"
client_addr      = "127.0.0.1"

# Never call home (update checks, anonymous signature).
disable_update_check        = true
disable_anonymous_signature = true
enable_script_checks        = false

ui_config {
  enabled = true
}

performance {
  raft_multiplier = 1
}

# ACLs: nothing without a token. Secrets (tokens.initial_management in the primary,
# tokens.agent everywhere, tokens.replication in the secondaries) are never in this repository:
# give them in a separate file or with `consul acl set-agent-token` (persisted, see below).
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
}
