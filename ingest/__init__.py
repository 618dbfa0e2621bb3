"""The ingest gateway: checks and authenticates phone batches; 202 once Kafka has them."""
