#!/usr/bin/env bash
# The main job on the embedded default: a local Kafka broker, SmolLM2-135M-Instruct on CPU and MiniLM
# embeddings, running every stage of topologies/local.yaml until MAGPIE_COUNT instructions have gone all the
# way through; then a few records of the sink. Extra arguments go to `magpie run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

TOPOLOGY="${MAGPIE_TOPOLOGY:-topologies/local.yaml}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-$(bash scripts/kafka.sh start --name local | tail -n 1)}"
echo "Kafka: $KAFKA_BROKERS (stop it with: bash scripts/kafka.sh stop --name local)" >&2

node bin/magpie.js topology show "$TOPOLOGY"
node bin/magpie.js run "$TOPOLOGY" --exit-when-done --progress-interval 5 "$@"

echo
echo "== three records from the sink topic (magpie.sink) =="
node bin/magpie.js tail magpie.sink --max 3 | node -e '
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean);
  for (const line of lines) {
    const r = JSON.parse(line);
    console.log(JSON.stringify({ uuid: r.uuid, instruction: r.instruction, response: r.response, task_category: r.task_category,
      input_quality: r.input_quality, language: r.language, min_neighbor_distance: r.min_neighbor_distance,
      is_duplicate: r.is_duplicate, tag_failures: r.tag_failures }, null, 2));
  }'
echo
echo "More: node bin/magpie.js tail magpie.sink | node bin/magpie.js tail magpie.rejects | node bin/magpie.js tail magpie.dead-letter"
