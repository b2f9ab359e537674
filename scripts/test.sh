#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts a local Kafka broker for the
# integration tests (vitest global setup) and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MAGPIE_LOG_LEVEL="${MAGPIE_LOG_LEVEL:-warn}"
npx tsc --noEmit -p .
node bin/magpie.js schemas check
node bin/magpie.js topology validate topologies/*.yaml
npx vitest run "$@"
