#!/usr/bin/env bash
# The PostgreSQL tests start a throwaway server from the Debian binaries; install them when missing.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL server binaries are missing: run 'sudo apt-get install -y postgresql' and retry." >&2
  exit 1
fi
echo "Installing PostgreSQL from Debian packages (for the warehouse tests)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
