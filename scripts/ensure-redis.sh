#!/usr/bin/env bash
# The shared-budget tests start a throwaway redis-server from the Debian package; install it when missing.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "redis-server is missing: run 'sudo apt-get install -y redis-server' and retry." >&2
  exit 1
fi
echo "Installing redis-server from Debian packages (for the shared rate-budget tests)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
