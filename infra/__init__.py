"""The JVM side of mbd (jars from Maven Central, the embedded Kafka broker) and the `mbd` CLI."""
