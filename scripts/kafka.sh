#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2086,SC2153  # single-quoted snippets, word-split JVM opts, vars from cluster.env
# Local Apache Kafka (KRaft, combined broker+controller) for development and tests.
# The broker runs from the Maven Central jars: no Docker, no tarball download.
#
#   scripts/kafka.sh fetch
#   scripts/kafka.sh start  [--name NAME] [--nodes 1|3] [--port PORT] [--node N] [--secure [--users a,b]]
#   scripts/kafka.sh stop   [--name NAME] [--node N] [--kill]   (--kill: SIGKILL, simulates a crash)
#   scripts/kafka.sh status [--name NAME]
#   scripts/kafka.sh bootstrap [--name NAME]
#   scripts/kafka.sh logs   [--name NAME] [--node N]
#   scripts/kafka.sh clean  [--name NAME]
#
# stdout carries only results (the bootstrap string, status lines); progress goes to stderr.
#
# --secure (given when the cluster is created) makes a secured cluster: the client listener is SASL_SSL
# (SCRAM-SHA-512) with a certificate signed by a CA made for this cluster, the controller listener is
# mutual TLS, and StandardAuthorizer denies everything no ACL allows (allow.everyone.if.no.acl.found=false).
# SCRAM users are created when the storage is formatted: the super user `admin` plus each of --users.
# Clients find in the cluster directory:  tls/ca.crt (CA to trust), users/<name>.password (0600),
# admin.properties (Java client config of the super user, for kafka-acls / kafka-configs).
#
# Environment:
#   KAFKA_VERSION        Kafka version (default 3.9.1; 3.x supported)
#   MAGPIE_CACHE         jar cache root (default ~/.cache/magpie-stream)
#   MAGPIE_RUN_DIR       run-state root (default <project>/.magpie); clusters live in $MAGPIE_RUN_DIR/kafka/NAME
#   KAFKA_HEAP_OPTS      default "-Xms256m -Xmx512m"
#   KAFKA_JVM_OPTS       default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData" (fast startup)
#   KAFKA_START_TIMEOUT  seconds to wait for readiness (default 120)
#   KAFKA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 30)
#   JAVA_HOME            java to use (default: java on PATH)
#
# Broker settings worth knowing (see write_node_config):
#   auto.create.topics.enable=false  -> a typo in a topic name fails loudly; create topics explicitly
#                                       (`magpie topics create ...` or the admin client).
#   num.partitions=3; replication factors = node count; min.insync.replicas (and transaction-state min ISR)
#   1 on one node, 2 on three; group.initial.rebalance.delay.ms=0; group.min.session.timeout.ms=1000;
#   broker heartbeat 500 ms / session 4 s so a stopped or killed node is fenced quickly.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
SCALA_VERSION=${KAFKA_SCALA_VERSION:-2.13}
MAGPIE_CACHE=${MAGPIE_CACHE:-$HOME/.cache/magpie-stream}
MAGPIE_RUN_DIR=${MAGPIE_RUN_DIR:-$PROJECT_DIR/.magpie}
KAFKA_HOME_DIR=$MAGPIE_CACHE/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME_DIR/libs
LIBS_STAMP=$KAFKA_HOME_DIR/.libs-complete
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HOST=127.0.0.1
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA=$JAVA_HOME/bin/java; else JAVA=java; fi

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '3,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

now_ms() { local t; t=$(date +%s%N 2>/dev/null); if [[ $t == *N ]]; then echo $(($(date +%s) * 1000)); else echo $((t / 1000000)); fi; }

# Temporary files/dirs removed on exit.
CLEANUP=()
cleanup() { ((${#CLEANUP[@]} == 0)) || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

# Run "$@" while holding an exclusive lock on file $1 (flock when available, mkdir spin-lock otherwise).
# Errors inside "$@" exit the script (set -e), which releases the lock. The lock fd (9) is closed for
# every process started in the background (see launch_node), so a running broker never holds it.
with_lock() {
  local lockfile=$1; shift
  mkdir -p "$(dirname "$lockfile")"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lockfile"
    flock -w 600 9 || die "timed out waiting for lock $lockfile"
    "$@"
    exec 9>&-
  else
    local d=$lockfile.d i=0
    until mkdir "$d" 2>/dev/null; do
      i=$((i + 1)); ((i < 2400)) || die "timed out waiting for lock $d (remove it if stale)"
      sleep 0.25
    done
    CLEANUP+=("$d")
    "$@"
    rmdir "$d" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------------------------------------- fetch

kafka_major() { echo "${KAFKA_VERSION%%.*}"; }

fetch_jars_locked() {
  if [[ -f $LIBS_STAMP && -d $LIBS ]]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) is required to fetch the Kafka jars"
  local major; major=$(kafka_major)
  ((major == 3)) || die "KAFKA_VERSION=$KAFKA_VERSION: only Kafka 3.x is supported by this script (log4j 1 setup)"
  log "fetching Kafka $KAFKA_VERSION jars from Maven into $LIBS (one-off)"
  local tmp; tmp=$(mktemp -d "${TMPDIR:-/tmp}/magpie-kafka-pom.XXXXXX")
  CLEANUP+=("$tmp")
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.magpie-stream</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- reload4j is compile-only in the broker's pom; the broker imports org.apache.log4j. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIBS" "$LIBS_STAMP" "$LIBS.partial"
  mkdir -p "$KAFKA_HOME_DIR"
  if ! (cd "$tmp" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS.partial") >"$tmp/mvn.log" 2>&1; then
    tail -n 40 "$tmp/mvn.log" >&2
    rm -rf "$LIBS.partial"
    die "maven could not fetch org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION (log above)"
  fi
  compgen -G "$LIBS.partial/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" >/dev/null ||
    die "maven finished but kafka_$SCALA_VERSION-$KAFKA_VERSION.jar is missing from $LIBS.partial"
  mv "$LIBS.partial" "$LIBS"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$LIBS_STAMP"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l | tr -d ' ') jars"
}

fetch_jars() {
  if [[ -f $LIBS_STAMP && -d $LIBS ]]; then return 0; fi
  with_lock "$KAFKA_HOME_DIR.lock" fetch_jars_locked
}

# ---------------------------------------------------------------------------------------------- cluster state

NAME=local
NODES_OPT=
PORT_OPT=
NODE_OPT=
KILL_OPT=
SECURE_OPT=
USERS_OPT=

cluster_dir() { echo "$MAGPIE_RUN_DIR/kafka/$NAME"; }
node_dir() { echo "$(cluster_dir)/node-$1"; }

load_cluster() {
  local env; env=$(cluster_dir)/cluster.env
  [[ -f $env ]] || return 1
  # shellcheck disable=SC1090
  source "$env"
  return 0
}

# Prints N free TCP ports on 127.0.0.1 (all held open at once, so they are distinct).
free_ports() {
  local n=$1
  if command -v node >/dev/null 2>&1; then
    node -e '
      const net = require("net"); const n = +process.argv[1]; const servers = []; const ports = [];
      for (let i = 0; i < n; i++) {
        const s = net.createServer(); servers.push(s);
        s.listen(0, "127.0.0.1", () => {
          ports.push(s.address().port);
          if (ports.length === n) { console.log(ports.join(" ")); servers.forEach((x) => x.close()); }
        });
      }' "$n"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()' "$n"
  else
    die "need node or python3 to pick free ports (or pass --port)"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

random_cluster_id() {
  # Same shape as `kafka.tools.StorageTool random-uuid`: 16 random bytes, base64url, no padding (22 chars),
  # never starting with '-'. Generated here to save a JVM start (~1 s).
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ ${#id} -eq 22 && $id != -* ]] && { echo "$id"; return; }
  done
}

init_cluster() {
  local nodes=${NODES_OPT:-1} cdir; cdir=$(cluster_dir)
  [[ $nodes == 1 || $nodes == 3 ]] || die "--nodes must be 1 or 3 (got $nodes)"
  local -a ports
  if [[ -n $PORT_OPT ]]; then
    port_in_use "$PORT_OPT" && die "port $PORT_OPT is already in use"
    read -r -a ports <<<"$PORT_OPT $(free_ports $((2 * nodes)))"
    # drop a picked port that happens to equal --port, keep 2*nodes in total
    local -a rest=() p; for p in "${ports[@]:1}"; do [[ $p != "$PORT_OPT" ]] && rest+=("$p"); done
    ports=("$PORT_OPT" "${rest[@]:0:$((2 * nodes - 1))}")
  else
    read -r -a ports <<<"$(free_ports $((2 * nodes)))"
  fi
  ((${#ports[@]} == 2 * nodes)) || die "could not pick free ports"
  local voters='' bootstrap='' i
  for ((i = 1; i <= nodes; i++)); do
    voters+="${voters:+,}$i@$HOST:${ports[2 * i - 1]}"
    bootstrap+="${bootstrap:+,}$HOST:${ports[2 * i - 2]}"
  done
  mkdir -p "$cdir"
  {
    echo "# generated by scripts/kafka.sh; delete the directory (kafka.sh clean) to reconfigure"
    echo "NODES=$nodes"
    echo "CLUSTER_ID=$(random_cluster_id)"
    echo "CLUSTER_KAFKA_VERSION=$KAFKA_VERSION"
    echo "VOTERS=$voters"
    echo "BOOTSTRAP=$bootstrap"
    echo "SECURE=$SECURE_OPT"
    for ((i = 1; i <= nodes; i++)); do
      echo "PORT_$i=${ports[2 * i - 2]}"
      echo "CPORT_$i=${ports[2 * i - 1]}"
    done
  } >"$cdir/cluster.env.tmp"
  write_log4j "$cdir/log4j.properties"
  load_cluster_from "$cdir/cluster.env.tmp"
  [[ -z $SECURE ]] || init_security
  for ((i = 1; i <= nodes; i++)); do write_node_config "$i"; done
  echo "$BOOTSTRAP" >"$cdir/bootstrap"
  format_storage
  # cluster.env appears last: its presence means "configured and formatted".
  mv "$cdir/cluster.env.tmp" "$cdir/cluster.env"
}

load_cluster_from() {
  # shellcheck disable=SC1090
  source "$1"
}

write_log4j() {
  cat >"$1" <<'EOF'
# Broker logging: everything goes to <node dir>/server.log (kafka.logs.dir is set per node).
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.kafka.server.KafkaConfig=WARN
EOF
}

# Listener (and, on a secured cluster, TLS/SASL/authorizer) settings of a node with client port $1, controller port $2.
listener_config() {
  if [[ -z ${SECURE:-} ]]; then
    cat <<EOF
listeners=PLAINTEXT://$HOST:$1,CONTROLLER://$HOST:$2
advertised.listeners=PLAINTEXT://$HOST:$1
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    return
  fi
  local tls; tls=$(cluster_dir)/tls
  cat <<EOF
listeners=SASL_SSL://$HOST:$1,CONTROLLER://$HOST:$2
advertised.listeners=SASL_SSL://$HOST:$1
# Clients and brokers: SCRAM over TLS. Controllers: mutual TLS (SCRAM credentials live in the metadata log,
# which the controller listener must serve before it can read them).
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(<"$(cluster_dir)/users/admin.password")";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$(<"$tls/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
# A certificate's CN is its principal: the brokers' own certificate (CN=kafka-broker) is User:kafka-broker.
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:kafka-broker
EOF
}

random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n' | head -c 24; }

# CA, broker certificate (SAN localhost/127.0.0.1) and SCRAM passwords of a secured cluster, made once at creation.
init_security() {
  command -v openssl >/dev/null 2>&1 || die "--secure needs openssl to make the cluster's certificates"
  local cdir tls users; cdir=$(cluster_dir); tls=$cdir/tls; users=$cdir/users
  mkdir -p "$tls" "$users"
  chmod 700 "$users"
  (
    umask 077
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=magpie-$NAME-ca" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=kafka-broker" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out broker.crt -days 825 -extfile broker.ext 2>/dev/null
    random_secret >keystore.password
    openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name kafka-broker -out broker.p12 \
      -passout "file:keystore.password"
    chmod 644 ca.crt
  ) || die "could not make the cluster's certificates with openssl"
  local user
  for user in admin ${USERS_OPT//,/ }; do
    [[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "invalid user name '$user' in --users"
    (umask 077; random_secret >"$users/$user.password")
  done
  (
    umask 077
    cat >"$cdir/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(<"$users/admin.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
EOF
  )
  log "secured cluster: CA $tls/ca.crt, SCRAM users $(ls "$users" | sed 's/\.password$//' | paste -sd, -)"
}

write_node_config() {
  local n=$1 ndir; ndir=$(node_dir "$n")
  local port_var=PORT_$n cport_var=CPORT_$n
  local rf=$NODES isr=1
  ((rf > 3)) && rf=3
  ((NODES >= 3)) && isr=2
  mkdir -p "$ndir/data"
  cat >"$ndir/server.properties" <<EOF
# generated by scripts/kafka.sh (cluster $NAME, node $n of $NODES)
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$VOTERS
$(listener_config "${!port_var}" "${!cport_var}")
controller.listener.names=CONTROLLER
log.dirs=$ndir/data

# Topics must be created explicitly: a misspelt topic name fails instead of silently creating a topic.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=10

# Fast group formation and short sessions for tests.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# Faster broker registration, controlled shutdown (defaults 2000/9000) and fencing of a killed node.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000

# Small, lightweight local broker.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
EOF
}

java_cp() { echo "$LIBS/*"; }

format_storage() {
  local i fpids=() rc=0 scram=() f
  if [[ -n ${SECURE:-} ]]; then
    for f in "$(cluster_dir)"/users/*.password; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$(basename "$f" .password),password=$(<"$f")]")
    done
  fi
  for ((i = 1; i <= NODES; i++)); do
    local ndir; ndir=$(node_dir "$i")
    "$JAVA" -Xmx256m $JVM_OPTS -Dlog4j.configuration="file:$(cluster_dir)/log4j.properties" \
      -Dkafka.logs.dir="$ndir" -cp "$(java_cp)" kafka.tools.StorageTool format \
      -t "$CLUSTER_ID" -c "$ndir/server.properties" --ignore-formatted "${scram[@]}" >"$ndir/format.log" 2>&1 9>&- &
    fpids+=($!)
  done
  for i in "${!fpids[@]}"; do
    if ! wait "${fpids[$i]}"; then
      rc=1
      log "storage format failed for node $((i + 1)):"
      tail -n 20 "$(node_dir $((i + 1)))/format.log" >&2
    fi
  done
  ((rc == 0)) || die "kafka.tools.StorageTool format failed"
}

node_pid() {
  # Prints the pid of node $1 if it is running (and really is that node's broker), else returns 1.
  local pidfile; pidfile=$(node_dir "$1")/pid
  [[ -f $pidfile ]] || return 1
  local pid; pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  local cmd; cmd=$(ps -p "$pid" -o args= 2>/dev/null || true)
  [[ $cmd == *kafka.Kafka*"$(node_dir "$1")/server.properties"* ]] || return 1
  echo "$pid"
}

node_running() { node_pid "$1" >/dev/null; }

launch_node() {
  local n=$1 ndir; ndir=$(node_dir "$n")
  rm -f "$ndir/pid"
  : >"$ndir/stdout.log"
  # setsid: detach from the caller's session/terminal so the broker survives it (and its Ctrl-C).
  # The lock fd (9) and all stdio are closed/redirected so callers (e.g. execFile) are not held open.
  local setsid=; command -v setsid >/dev/null 2>&1 && setsid=setsid
  # shellcheck disable=SC2086
  $setsid bash -c 'echo $$ >"$0"; exec "$@"' "$ndir/pid" \
    "$JAVA" $HEAP_OPTS $JVM_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$(cluster_dir)/log4j.properties" -Dkafka.logs.dir="$ndir" \
    -cp "$(java_cp)" kafka.Kafka "$ndir/server.properties" \
    </dev/null >>"$ndir/stdout.log" 2>&1 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do [[ -s $ndir/pid ]] && break; sleep 0.02; done
  [[ -s $ndir/pid ]] || die "node $n: could not record pid"
}

# Sends a Metadata (v4) request to 127.0.0.1:$1 and prints the ids of the live (unfenced) brokers, e.g. "1,2,3".
# A broker lists only unfenced brokers, and it is unfenced only once the active controller has accepted its
# registration and it has caught up with the metadata log: after that, CreateTopics works.
METADATA_PROBE_JS='
const net = require("net");
const [host, port, timeoutMs] = [process.argv[1], +process.argv[2], +process.argv[3]];
const fail = (m) => { process.stderr.write(String(m) + "\n"); process.exit(1); };
const clientId = Buffer.from("magpie-kafka-sh");
const req = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length + 4 + 1);
let o = 0;
o = req.writeInt32BE(req.length - 4, o); o = req.writeInt16BE(3, o); o = req.writeInt16BE(4, o);
o = req.writeInt32BE(7, o); o = req.writeInt16BE(clientId.length, o); o += clientId.copy(req, o);
o = req.writeInt32BE(0, o); req.writeInt8(0, o);
const sock = net.connect({ host, port });
sock.setTimeout(timeoutMs, () => fail("timeout"));
sock.on("error", (e) => fail(e.code || e.message));
sock.on("connect", () => sock.write(req));
let buf = Buffer.alloc(0);
sock.on("data", (d) => {
  buf = Buffer.concat([buf, d]);
  if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return;
  let p = 4;
  if (buf.readInt32BE(p) !== 7) fail("bad correlation id"); p += 4;
  p += 4; // throttle_time_ms
  const n = buf.readInt32BE(p); p += 4;
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push(buf.readInt32BE(p)); p += 4;
    p += 2 + buf.readInt16BE(p); p += 4;
    const rl = buf.readInt16BE(p); p += 2 + Math.max(rl, 0);
  }
  console.log(ids.sort((a, b) => a - b).join(","));
  sock.destroy(); process.exit(0);
});
'

# The same question on a secured listener, asked by the super user through the project's kafkajs.
SECURE_PROBE_JS='
const [dir, host, port, caFile, passwordFile] = process.argv.slice(1);
const { readFileSync } = require("fs");
const { Kafka, logLevel } = require(require("module").createRequire(dir + "/package.json").resolve("kafkajs"));
const kafka = new Kafka({
  brokers: [host + ":" + port], logLevel: logLevel.NOTHING, connectionTimeout: 2000, requestTimeout: 2000, retry: { retries: 0 },
  ssl: { ca: [readFileSync(caFile, "utf8")] },
  sasl: { mechanism: "scram-sha-512", username: "admin", password: readFileSync(passwordFile, "utf8").trim() },
});
const admin = kafka.admin();
admin.connect().then(() => admin.describeCluster()).then(
  (c) => { console.log(c.brokers.map((b) => b.nodeId).sort((a, b) => a - b).join(",")); return admin.disconnect(); },
  (e) => { process.stderr.write(String(e.message) + "\n"); process.exit(1); });
'

probe_brokers() {
  local port=$1
  if [[ -n ${SECURE:-} ]]; then
    node -e "$SECURE_PROBE_JS" "$PROJECT_DIR" "$HOST" "$port" "$(cluster_dir)/tls/ca.crt" "$(cluster_dir)/users/admin.password"
  elif command -v node >/dev/null 2>&1; then
    node -e "$METADATA_PROBE_JS" "$HOST" "$port" 2000
  else
    # Without node, fall back to the (slow, JVM-based) BrokerApiVersionsCommand: reachable != ready, so also
    # require the broker to report itself in the cluster.
    "$JAVA" -Xmx128m $JVM_OPTS -Dlog4j.configuration="file:$(cluster_dir)/log4j.properties" \
      -Dkafka.logs.dir="$(cluster_dir)" -cp "$(java_cp)" kafka.admin.BrokerApiVersionsCommand \
      --bootstrap-server "$HOST:$port" 2>/dev/null 9>&- |
      sed -n 's/.*(id: \([0-9]*\) rack.*/\1/p' | sort -n | paste -sd, -
  fi
}

tail_logs() {
  local n=$1 ndir; ndir=$(node_dir "$n")
  {
    echo "----- node $n: last lines of $ndir/server.log -----"
    tail -n "${2:-30}" "$ndir/server.log" 2>/dev/null || echo "(no server.log)"
    if [[ -s $ndir/stdout.log ]]; then
      echo "----- node $n: $ndir/stdout.log -----"
      tail -n 20 "$ndir/stdout.log"
    fi
  } >&2
}

# Waits until every running node answers Metadata listing all running nodes as live brokers.
wait_ready() {
  local -a started=("$@")
  local deadline=$(($(date +%s) + START_TIMEOUT)) i expected='' got last=''
  while :; do
    expected=
    for ((i = 1; i <= NODES; i++)); do
      if node_running "$i"; then
        expected+="${expected:+,}$i"
      else
        local s; for s in "${started[@]}"; do
          if [[ $s == "$i" ]]; then
            tail_logs "$i" 40
            stop_nodes "${started[@]}"
            die "node $i exited during startup (logs above)"
          fi
        done
      fi
    done
    [[ -n $expected ]] || die "no node of cluster '$NAME' is running"
    local ok=1
    for i in ${expected//,/ }; do
      local port_var=PORT_$i
      got=$(probe_brokers "${!port_var}" 2>/dev/null) || got="(unreachable)"
      if [[ $got != "$expected" ]]; then ok=0; last="node $i reports live brokers [$got], want [$expected]"; break; fi
    done
    ((ok)) && return 0
    if (($(date +%s) >= deadline)); then
      for i in ${expected//,/ }; do tail_logs "$i" 30; done
      ((${#started[@]})) && stop_nodes "${started[@]}"
      die "cluster '$NAME' not ready after ${START_TIMEOUT}s: $last"
    fi
    sleep 0.2
  done
}

pid_alive() {
  # kill -0 also succeeds for a zombie (possible where PID 1 does not reap orphans): treat it as dead.
  kill -0 "$1" 2>/dev/null || return 1
  local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true)
  [[ -n $st && $st != Z* ]]
}

# Sends SIGTERM (or $STOP_SIGNAL) to the given nodes, waits up to STOP_TIMEOUT seconds, then SIGKILLs the rest.
# A KRaft node whose controller quorum is gone (e.g. the last node of a 3-node cluster being stopped) blocks
# in shutdown indefinitely, so once fewer than a majority of the cluster's nodes are running the remaining
# ones only get KAFKA_QUORUMLESS_GRACE seconds (default 3) before SIGKILL. Killed nodes recover their logs
# on the next start (the page cache keeps what they wrote), which is fine for a local cluster.
stop_nodes() {
  local n pid
  local -A pids=()
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      pids[$n]=$pid
      kill "-${STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
    fi
  done
  ((${#pids[@]})) || return 0
  local now deadline=$(($(date +%s) + STOP_TIMEOUT)) majority=$((NODES / 2 + 1)) quorumless=
  while :; do
    local alive=() running=0 i
    for n in "${!pids[@]}"; do pid_alive "${pids[$n]}" && alive+=("$n"); done
    ((${#alive[@]})) || break
    now=$(date +%s)
    if [[ -z $quorumless ]]; then
      for ((i = 1; i <= NODES; i++)); do node_running "$i" && running=$((running + 1)); done
      if ((running < majority)); then
        quorumless=1
        local grace=$((now + ${KAFKA_QUORUMLESS_GRACE:-3}))
        ((grace < deadline)) && deadline=$grace
      fi
    fi
    if ((now >= deadline)); then
      if [[ -n $quorumless ]]; then
        log "node(s) ${alive[*]} cannot finish shutting down without a controller quorum: SIGKILL"
      else
        log "node(s) ${alive[*]} still running after ${STOP_TIMEOUT}s: SIGKILL"
      fi
      for n in "${alive[@]}"; do kill -KILL "${pids[$n]}" 2>/dev/null || true; done
      for ((i = 0; i < 25; i++)); do
        local any=0; for n in "${alive[@]}"; do pid_alive "${pids[$n]}" && any=1; done
        ((any)) || break
        sleep 0.2
      done
      break
    fi
    sleep 0.2
  done
  for n in "${!pids[@]}"; do rm -f "$(node_dir "$n")/pid"; done
}

# ---------------------------------------------------------------------------------------------- commands

cmd_start_locked() {
  local t0; t0=$(now_ms)
  fetch_jars
  if load_cluster; then
    if [[ -n $NODES_OPT && $NODES_OPT != "$NODES" ]]; then
      die "cluster '$NAME' exists with $NODES node(s); run 'kafka.sh clean --name $NAME' to recreate it with $NODES_OPT"
    fi
    if [[ -n $PORT_OPT && $PORT_OPT != "$PORT_1" ]]; then
      die "cluster '$NAME' exists with port $PORT_1; run 'kafka.sh clean --name $NAME' to change it"
    fi
    if [[ -n $SECURE_OPT && -z ${SECURE:-} ]]; then
      die "cluster '$NAME' exists without --secure; run 'kafka.sh clean --name $NAME' to recreate it secured"
    fi
    local u
    for u in ${USERS_OPT//,/ }; do
      [[ -f $(cluster_dir)/users/$u.password ]] ||
        die "cluster '$NAME' has no SCRAM user '$u': users are made with the cluster; run 'kafka.sh clean --name $NAME' first"
    done
    if [[ ${CLUSTER_KAFKA_VERSION:-} != "$KAFKA_VERSION" ]]; then
      log "warning: cluster '$NAME' was created with Kafka ${CLUSTER_KAFKA_VERSION:-?}, starting with $KAFKA_VERSION"
    fi
  else
    [[ -z $NODE_OPT ]] || die "cluster '$NAME' does not exist; start it without --node first"
    rm -rf "$(cluster_dir)"
    log "creating cluster '$NAME' ($((${NODES_OPT:-1})) node(s)) in $(cluster_dir)"
    init_cluster
    load_cluster
  fi
  local -a want=() started=()
  if [[ -n $NODE_OPT ]]; then
    ((NODE_OPT >= 1 && NODE_OPT <= NODES)) || die "--node must be between 1 and $NODES"
    want=("$NODE_OPT")
  else
    local i; for ((i = 1; i <= NODES; i++)); do want+=("$i"); done
  fi
  local n
  for n in "${want[@]}"; do
    node_running "$n" && continue
    local port_var=PORT_$n cport_var=CPORT_$n
    port_in_use "${!port_var}" && die "node $n: port ${!port_var} is in use by another process"
    port_in_use "${!cport_var}" && die "node $n: controller port ${!cport_var} is in use by another process"
    launch_node "$n"
    started+=("$n")
  done
  if ((${#started[@]})); then
    log "started node(s) ${started[*]} of '$NAME'; waiting for readiness"
  fi
  wait_ready "${started[@]}"
  ((${#started[@]})) && log "cluster '$NAME' ready in $(($(now_ms) - t0)) ms"
  cat "$(cluster_dir)/bootstrap"
}

cmd_stop_locked() {
  load_cluster || { log "cluster '$NAME' does not exist"; return 0; }
  local -a nodes=()
  if [[ -n $NODE_OPT ]]; then
    ((NODE_OPT >= 1 && NODE_OPT <= NODES)) || die "--node must be between 1 and $NODES"
    nodes=("$NODE_OPT")
  else
    local i; for ((i = 1; i <= NODES; i++)); do nodes+=("$i"); done
  fi
  local t0; t0=$(now_ms)
  [[ -n $KILL_OPT ]] && STOP_SIGNAL=KILL
  stop_nodes "${nodes[@]}"
  log "stopped node(s) ${nodes[*]} of '$NAME' in $(($(now_ms) - t0)) ms"
}

cmd_status() {
  if ! load_cluster; then echo "$NAME: not created"; return 3; fi
  local i running=0 pid
  for ((i = 1; i <= NODES; i++)); do
    local port_var=PORT_$i
    if pid=$(node_pid "$i"); then
      running=$((running + 1))
      echo "$NAME node $i: running pid $pid $HOST:${!port_var}"
    else
      echo "$NAME node $i: stopped $HOST:${!port_var}"
    fi
  done
  echo "$NAME: $running/$NODES running, bootstrap $BOOTSTRAP"
  ((running == NODES)) || return 3
}

cmd_clean_locked() {
  if load_cluster; then
    local i all=(); for ((i = 1; i <= NODES; i++)); do all+=("$i"); done
    stop_nodes "${all[@]}"
  fi
  rm -rf "$(cluster_dir)"
  log "removed $(cluster_dir)"
}

main() {
  local cmd=${1:-}; [[ $# -gt 0 ]] && shift
  while [[ $# -gt 0 ]]; do
    case $1 in
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      --name=*) NAME=${1#*=}; shift ;;
      --nodes) NODES_OPT=${2:?--nodes needs a value}; shift 2 ;;
      --nodes=*) NODES_OPT=${1#*=}; shift ;;
      --port) PORT_OPT=${2:?--port needs a value}; shift 2 ;;
      --port=*) PORT_OPT=${1#*=}; shift ;;
      --kill) KILL_OPT=1; shift ;;
      --secure) SECURE_OPT=1; shift ;;
      --users) USERS_OPT=${2:?--users needs a value}; shift 2 ;;
      --users=*) USERS_OPT=${1#*=}; shift ;;
      --node) NODE_OPT=${2:?--node needs a value}; shift 2 ;;
      --node=*) NODE_OPT=${1#*=}; shift ;;
      -h | --help) usage 0 ;;
      *) die "unknown argument: $1 (try --help)" ;;
    esac
  done
  [[ $NAME =~ ^[A-Za-z0-9._-]+$ && $NAME != . && $NAME != .. ]] || die "invalid --name '$NAME'"
  [[ -z $NODES_OPT || $NODES_OPT =~ ^[13]$ ]] || die "--nodes must be 1 or 3"
  [[ -z $PORT_OPT || $PORT_OPT =~ ^[0-9]+$ ]] || die "--port must be a number"
  [[ -z $NODE_OPT || $NODE_OPT =~ ^[0-9]+$ ]] || die "--node must be a number"
  local lock=$MAGPIE_RUN_DIR/kafka/.$NAME.lock
  case $cmd in
    fetch) fetch_jars; log "jars ready in $LIBS" ;;
    start) with_lock "$lock" cmd_start_locked ;;
    stop) with_lock "$lock" cmd_stop_locked ;;
    status) cmd_status ;;
    bootstrap) load_cluster || die "cluster '$NAME' does not exist"; cat "$(cluster_dir)/bootstrap" ;;
    logs)
      load_cluster || die "cluster '$NAME' does not exist"
      tail -n 100 "$(node_dir "${NODE_OPT:-1}")/server.log"
      ;;
    clean) with_lock "$lock" cmd_clean_locked ;;
    help | -h | --help) usage 0 ;;
    '') usage 2 ;;
    *) die "unknown command: $cmd (try --help)" ;;
  esac
}

main "$@"
