"""geo-mirror: our own MirrorMaker. Copies every selected regional topic into the central Kafka
cluster, exactly once by default (records and source positions in one central transaction)."""
