#!/usr/bin/env bash
# Debian's etcd-server for the Kubernetes API server tests (the tests start their own on 127.0.0.1).
set -euo pipefail
if command -v etcd >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "etcd is missing and there is no apt-get here: install etcd 3.4+ and put it on PATH" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's etcd-server (for the Kubernetes API server tests)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl stop etcd || true
fi
command -v etcd >/dev/null
