# Example definition of a regional Kafka broker (region eu of the local stack, regions.yaml
# local.kafka_port). Register it with a kafka-registrar token:
#   CONSUL_HTTP_TOKEN=<secret> consul services register consul/services/kafka.hcl
# or put it in the agent's config directory. The mirror reads Meta "bootstrap".
service {
  name    = "kafka"
  id      = "kafka-eu-1"
  address = "127.0.0.1"
  port    = 19092
  tags    = ["eu", "regional"]

  meta {
    region    = "eu"
    role      = "regional"
    bootstrap = "127.0.0.1:19092"
  }

  check {
    id       = "kafka-eu-1-tcp"
    name     = "Kafka listener"
    tcp      = "127.0.0.1:19092"
    interval = "10s"
    timeout  = "2s"

    deregister_critical_service_after = "1m"
  }
}
