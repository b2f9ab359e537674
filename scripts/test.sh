#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts a local Kafka broker for the
# integration tests (vitest global setup) and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report test renders its HTML page in headless Chromium (Debian package; installed when missing).
bash scripts/ensure-chromium.sh >/dev/null
# A real OpenAI-compatible server for the openai backend's protocol tests: llama-cpp-python's, built from source
# once (about 12 minutes on 2 cores; pip keeps the wheel). MAGPIE_SKIP_LLAMA_SERVER=1 skips it, and those
# tests then say so and run against the in-test server only.
if [ -z "${MAGPIE_SKIP_LLAMA_SERVER:-}" ] && ! python3 -c 'import llama_cpp.server' 2>/dev/null; then
  echo "test: building llama-cpp-python's server (once per machine)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF" python3 -m pip install -q 'llama-cpp-python[server]==0.3.36' >&2
fi
export MAGPIE_LOG_LEVEL="${MAGPIE_LOG_LEVEL:-warn}"
npx tsc --noEmit -p .
node bin/magpie.js schemas check
node bin/magpie.js topology validate topologies/*.yaml
mkdir -p .magpie
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=.magpie/vitest-results.json "$@" || status=$?
# One closing line any CI can read: "tests: N passed, N failed".
node -e '
  const r = JSON.parse(require("fs").readFileSync(".magpie/vitest-results.json", "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
' || true
exit "$status"
