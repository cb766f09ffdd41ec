"""The edge service (``geo-edge``): validate JSON events, enrich them with headers and write them
to the region's Kafka, answering only after Kafka acknowledged them."""
