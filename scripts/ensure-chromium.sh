#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the report rendering test, only when it is missing.
# Needs root (the test machines and CI run as root). Prints the browser path on stdout.
#
#   bash scripts/ensure-chromium.sh
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ ! -x $CHROMIUM ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "ensure-chromium.sh: $CHROMIUM is missing; run as root to install it (apt-get install chromium)" >&2; exit 1; }
  echo "ensure-chromium.sh: installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
echo "$CHROMIUM"
