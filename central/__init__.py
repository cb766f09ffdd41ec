"""geo-central: loads the mirrored event stream from the central Kafka cluster into ClickHouse
(chdb embedded, or a ClickHouse server over HTTP) and serves the query API and dashboard."""
