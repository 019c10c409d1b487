#!/usr/bin/env bash
# Debian's redis-server for the Redis connector tests (started by the tests on 127.0.0.1).
set -euo pipefail
if command -v redis-server >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "redis-server is missing and there is no apt-get here: install Redis 6.2+ and put it on PATH" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's redis-server (for the Redis connector tests)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system service on the default port; the tests start their own servers.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl stop redis-server || true
fi
command -v redis-server >/dev/null
