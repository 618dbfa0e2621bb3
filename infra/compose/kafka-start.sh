#!/usr/bin/env bash
# A kafka-N service of docker-compose.yml, on the official apache/kafka image: one node of a
# KRaft cluster (broker and controller; the controllers of all nodes form the quorum) whose
# clients log in with SASL/SCRAM-SHA-512 over TLS (SASL_SSL), like mbd's embedded cluster
# (infra/kafka_cluster.py, infra/broker_auth.py) but across hosts.
#
# Which node it is comes from the environment: MBD_KAFKA_NODE_ID, MBD_KAFKA_ADVERTISED (the
# host:port clients dial, whose host the controller listener binds too), MBD_KAFKA_QUORUM_VOTERS
# (id@host:9093 of every node) and the replication of every topic (MBD_KAFKA_REPLICATION_FACTOR,
# MBD_KAFKA_MIN_INSYNC_REPLICAS: the copies a write needs before it is acknowledged).
#
# Secrets come from the environment (compose-kafka.env, made by `mbd certs`, the same file on
# every node); the config names them through Kafka's EnvVarConfigProvider and holds none. SCRAM
# users live in the metadata log, so every node writes them when its storage is formatted, with
# the cluster id all nodes share; the tool reads its arguments from stdin (`java @/dev/stdin`),
# so no password shows in a process listing. The controller listener takes one PLAIN user over
# TLS (SCRAM users are not known before the metadata is): nodes reach each other's controllers.
set -euo pipefail
: "${MBD_KAFKA_SASL_PASSWORD:?run mbd certs}" "${MBD_KAFKA_INTERNAL_BROKER_PASSWORD:?}"
: "${MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD:?}" "${MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD:?}"
: "${MBD_KAFKA_CLUSTER_ID:?}"
: "${MBD_KAFKA_NODE_ID:?the id of this node}" "${MBD_KAFKA_ADVERTISED:?host:port of this node}"
: "${MBD_KAFKA_QUORUM_VOTERS:?id@host:9093 of every node}"
: "${MBD_KAFKA_REPLICATION_FACTOR:?}" "${MBD_KAFKA_MIN_INSYNC_REPLICAS:?}"
fail() { echo "kafka-start: $*" >&2; exit 2; }
for number in "$MBD_KAFKA_NODE_ID" "$MBD_KAFKA_REPLICATION_FACTOR" \
              "$MBD_KAFKA_MIN_INSYNC_REPLICAS"; do
  [[ "$number" =~ ^[1-9][0-9]*$ ]] || fail "not a positive integer: $number"
done
((MBD_KAFKA_MIN_INSYNC_REPLICAS <= MBD_KAFKA_REPLICATION_FACTOR)) ||
  fail "min.insync.replicas $MBD_KAFKA_MIN_INSYNC_REPLICAS exceeds replication $MBD_KAFKA_REPLICATION_FACTOR"
KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
CERTS=${MBD_KAFKA_CERTS_DIR:-/mbd/certs}
DATA=${MBD_KAFKA_LOG_DIR:-/var/lib/kafka/data}
ADVERTISED=$MBD_KAFKA_ADVERTISED
HOST=${ADVERTISED%:*}
CONFIG=${MBD_KAFKA_CONFIG:-/tmp/mbd-server.properties}
[[ ",$MBD_KAFKA_QUORUM_VOTERS," == *",$MBD_KAFKA_NODE_ID@$HOST:9093,"* ]] ||
  fail "$MBD_KAFKA_NODE_ID@$HOST:9093 is not among the voters $MBD_KAFKA_QUORUM_VOTERS"
umask 077

# broker.session.timeout.ms: a dead node is fenced after 4 s, so its partitions get a new leader
# within the gateway's acknowledgement timeout (MBD_GATEWAY_ACK_TIMEOUT_S, 5 s).
cat > "$CONFIG" <<PROPERTIES
process.roles=broker,controller
node.id=${MBD_KAFKA_NODE_ID}
controller.quorum.voters=${MBD_KAFKA_QUORUM_VOTERS}
listeners=CLIENT://0.0.0.0:${ADVERTISED##*:},CONTROLLER://${HOST}:9093
advertised.listeners=CLIENT://${ADVERTISED}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_SSL,CLIENT:SASL_SSL
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
default.replication.factor=${MBD_KAFKA_REPLICATION_FACTOR}
min.insync.replicas=${MBD_KAFKA_MIN_INSYNC_REPLICAS}
unclean.leader.election.enable=false
offsets.topic.replication.factor=${MBD_KAFKA_REPLICATION_FACTOR}
transaction.state.log.replication.factor=${MBD_KAFKA_REPLICATION_FACTOR}
transaction.state.log.min.isr=${MBD_KAFKA_MIN_INSYNC_REPLICAS}
share.coordinator.state.topic.replication.factor=${MBD_KAFKA_REPLICATION_FACTOR}
share.coordinator.state.topic.min.isr=${MBD_KAFKA_MIN_INSYNC_REPLICAS}
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
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
