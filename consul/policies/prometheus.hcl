# Policy "prometheus": Prometheus scrapes each agent's own metrics
# (GET /v1/agent/metrics?format=prometheus), which needs agent:read on that agent's node.
# Nothing else: no service, node or key is readable with it.
agent_prefix "" {
  policy = "read"
}
