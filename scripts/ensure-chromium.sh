#!/usr/bin/env bash
# The UI tests drive Debian's headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver); install it when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: run 'sudo apt-get install -y chromium chromium-driver' and retry." >&2
  exit 1
fi
echo "Installing Chromium from Debian packages (for the UI tests)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation >/dev/null
