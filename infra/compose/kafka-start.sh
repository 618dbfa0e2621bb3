#!/usr/bin/env bash
# The kafka service of docker-compose.yml, on the official apache/kafka image: one KRaft node
# whose clients log in with SASL/SCRAM-SHA-512 over TLS (SASL_SSL), like mbd's embedded broker
# (infra/broker.py, infra/broker_auth.py) but across hosts.
#
# Secrets come from the environment (compose-kafka.env, made by `mbd certs`); the config names
# them through Kafka's EnvVarConfigProvider and holds none. SCRAM users live in the metadata log,
# so they are written when the storage is formatted; the tool reads its arguments from stdin
# (`java @/dev/stdin`), so no password shows in a process listing. The controller listener is
# this container's loopback only (SASL PLAIN with its own user): nothing outside reaches it.
set -euo pipefail
: "${MBD_KAFKA_SASL_PASSWORD:?run mbd certs}" "${MBD_KAFKA_INTERNAL_BROKER_PASSWORD:?}"
: "${MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD:?}" "${MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD:?}"
: "${MBD_KAFKA_CLUSTER_ID:?}"
KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
CERTS=${MBD_KAFKA_CERTS_DIR:-/mbd/certs}
DATA=${MBD_KAFKA_LOG_DIR:-/var/lib/kafka/data}
ADVERTISED=${MBD_KAFKA_ADVERTISED:-kafka:9092}
CONFIG=${MBD_KAFKA_CONFIG:-/tmp/mbd-server.properties}
umask 077

cat > "$CONFIG" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=CLIENT://0.0.0.0:${ADVERTISED##*:},CONTROLLER://127.0.0.1:9093
advertised.listeners=CLIENT://${ADVERTISED}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_SSL
config.providers=env
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
config.providers.env.param.allowlist.pattern=^MBD_KAFKA_INTERNAL_[A-Z_]+\$
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="mbd-broker" password="\${env:MBD_KAFKA_INTERNAL_BROKER_PASSWORD}";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="mbd-controller" password="\${env:MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD}" user_mbd-controller="\${env:MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD}";
connection.failed.authentication.delay.ms=1000
ssl.keystore.type=PKCS12
ssl.keystore.location=${CERTS}/broker.p12
ssl.keystore.password=\${env:MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD}
ssl.key.password=\${env:MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD}
ssl.truststore.type=PEM
ssl.truststore.location=${CERTS}/ca.pem
ssl.enabled.protocols=TLSv1.3,TLSv1.2
log.dirs=${DATA}
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES

export KAFKA_OPTS="${KAFKA_OPTS:-} -Dorg.apache.kafka.automatic.config.providers=org.apache.kafka.common.config.provider.EnvVarConfigProvider"
if [[ ! -f "$DATA/meta.properties" ]]; then
  printf '%s\n' kafka.tools.StorageTool format -t "$MBD_KAFKA_CLUSTER_ID" -c "$CONFIG" \
    --add-scram "SCRAM-SHA-512=[name=mbd,password=${MBD_KAFKA_SASL_PASSWORD}]" \
    --add-scram "SCRAM-SHA-512=[name=mbd-broker,password=${MBD_KAFKA_INTERNAL_BROKER_PASSWORD}]" \
    | "$KAFKA_HOME/bin/kafka-run-class.sh" @/dev/stdin
fi
# The client user's password was only needed for the format: the broker does not get it.
unset MBD_KAFKA_SASL_PASSWORD
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$CONFIG"
