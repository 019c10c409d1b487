#!/usr/bin/env bash
# Install a Debian package the tests need when its command is missing:
#   bash scripts/apt-install.sh COMMAND PACKAGE "what it is for" [SERVICE-TO-STOP]
# A package that starts a system service (redis, etcd) has it stopped: the tests start their own.
set -euo pipefail
command_name=$1 package=$2 purpose=$3 service=${4:-}
if command -v "$command_name" >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "$command_name is missing and there is no apt-get here: install $package ($purpose)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's $package ($purpose)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
if [ -n "$service" ] && command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
  $SUDO systemctl stop "$service" || true
fi
command -v "$command_name" >/dev/null
