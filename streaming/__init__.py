"""The Structured Streaming job: readings from Kafka become clean, windowed tensors in the lake."""
