"""Starts the real components (Kafka, Consul) that tests, the local stack and benchmarks use."""
