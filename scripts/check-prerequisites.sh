#!/usr/bin/env bash
# What `make test` needs on the machine beyond what it installs itself, checked before anything
# else runs: a machine that lacks one gets one message naming each missing tool (and what needs
# it), not a stack of errors from the middle of an install or a test run.
#   bash scripts/check-prerequisites.sh        # silent and 0, or the list of what is missing and 1
# It needs (see README, "Two commands"):
#   - Python 3.11+ with venv (ensurepip), for .venv, unless .venv is installed already;
#   - Go, to build helm and kube-apiserver once, unless they are cached (RAYFLOW_CACHE);
#   - a JDK 17+ (java with its compiler: YARN runs a .java source), for Kafka and YARN;
#   - Maven (mvn), to fetch Kafka's and Hadoop's jars once, unless they are cached;
#   - openssl, for the Kubernetes API server's keys;
#   - chromium, redis-server and etcd, or apt-get (as root or with sudo) to install them.
# Downloads (PyPI, the Go module proxy, Maven Central, Debian's mirror) are not checked here.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
CACHE="${RAYFLOW_CACHE:-$HOME/.cache/rayflow}"
problems=()
missing() { problems+=("$1"); }
have() { command -v "$1" >/dev/null 2>&1; }

# A default version as the script that uses it spells it (one place to change a version).
default_of() { sed -n "s/$2/\\1/p" "$HERE/$1" | head -n 1; }
HELM_VERSION="$(default_of ensure-helm.sh '^VERSION="${RAYFLOW_HELM_VERSION:-\(.*\)}"$')"
HELM_VERSION="${RAYFLOW_HELM_VERSION:-$HELM_VERSION}"
KUBE_VERSION="$(default_of ensure-kube-apiserver.sh '^VERSION="${RAYFLOW_KUBE_VERSION:-\(.*\)}"$')"
KUBE_VERSION="${RAYFLOW_KUBE_VERSION:-$KUBE_VERSION}"
KAFKA_VERSION="$(default_of kafka_broker.py '^VERSION = "\(.*\)"$')"
HADOOP_VERSION="$(default_of yarn_cluster.py '^VERSION = "\(.*\)"$')"
for version in HELM_VERSION KUBE_VERSION KAFKA_VERSION HADOOP_VERSION; do
  if [ -z "${!version}" ]; then
    echo "check-prerequisites.sh: cannot read $version from scripts/ (was the line changed?)" >&2
    exit 2
  fi
done

# "1.26.8" >= "1.26"? (major.minor only)
at_least() {
  local have_major have_minor want_major want_minor
  IFS=. read -r have_major have_minor _ <<<"$1"
  IFS=. read -r want_major want_minor _ <<<"$2"
  [ "${have_major:-0}" -gt "$want_major" ] ||
    { [ "${have_major:-0}" -eq "$want_major" ] && [ "${have_minor:-0}" -ge "$want_minor" ]; }
}

# Python, for the virtual environment (`make venv`).
if [ ! -e "$ROOT/.venv/.installed" ]; then
  python="${PYTHON:-}"
  if [ -z "$python" ]; then
    python="$(command -v python3.11 || command -v python3 || true)"
  fi
  if [ -z "$python" ] || ! have "$python"; then
    missing "Python 3.11+ (python3.11 or python3): it makes .venv; install python3 and python3-venv"
  elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    missing "Python 3.11+: $python is $("$python" -V 2>&1); install python3.11 (or set PYTHON=...)"
  elif ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    missing "Python's venv module (ensurepip) for $python: install python3-venv (Debian/Ubuntu)"
  fi
fi

# Go, for helm and kube-apiserver (built from source once, cached).
go_for=()
[ -x "$CACHE/helm-$HELM_VERSION/helm" ] || go_for+=("helm $HELM_VERSION")
if [ -z "${RAYFLOW_KUBE_APISERVER:-}" ] && [ ! -x "$CACHE/kube-apiserver-$KUBE_VERSION/kube-apiserver" ]; then
  go_for+=("kube-apiserver $KUBE_VERSION")
fi
if [ ${#go_for[@]} -gt 0 ]; then
  # kube-apiserver 1.37 needs Go 1.26 (Kubernetes' go.mod), helm 3.19 Go 1.24.
  case "${go_for[*]}" in *kube-apiserver*) go_min=1.26 ;; *) go_min=1.24 ;; esac
  what="$(printf '%s and ' "${go_for[@]}")"
  what="${what% and }"
  if ! have go; then
    missing "Go $go_min+ (go): it builds $what once (cached in $CACHE); install it from https://go.dev/dl/"
  else
    go_version="$(go env GOVERSION 2>/dev/null)"
    go_version="${go_version#go}"
    toolchain="$(go env GOTOOLCHAIN 2>/dev/null)"
    # An older Go with GOTOOLCHAIN=auto fetches the newer toolchain itself.
    if ! at_least "${go_version:-0}" "$go_min" && [ "$toolchain" = local ]; then
      missing "Go $go_min+ (go): $(command -v go) is $go_version (GOTOOLCHAIN=local); it builds $what"
    fi
  fi
fi

# A JDK 17+, for the Kafka broker and YARN.
if ! have java; then
  missing "a JDK 17+ (java): the Kafka broker and YARN run on it; install openjdk-17-jdk-headless"
else
  java_version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  java_major="${java_version%%.*}"
  if [ "$java_major" = 1 ]; then java_major="$(cut -d. -f2 <<<"$java_version")"; fi
  if ! [ "${java_major:-0}" -ge 17 ] 2>/dev/null; then
    missing "a JDK 17+ (java): $(command -v java) is ${java_version:-of an unknown version}; install openjdk-17-jdk-headless"
  elif ! java --list-modules 2>/dev/null | grep -q '^jdk\.compiler@'; then
    missing "a JDK, not only a JRE (java has no compiler): YARN runs scripts/yarn/MiniYarn.java; install openjdk-17-jdk-headless"
  fi
fi

# Maven, for Kafka's and Hadoop's jars (fetched once from Maven Central, cached).
jars_for=()
[ -e "$CACHE/kafka-$KAFKA_VERSION/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || jars_for+=("Kafka $KAFKA_VERSION")
[ -e "$CACHE/hadoop-$HADOOP_VERSION/libs/hadoop-yarn-server-tests-$HADOOP_VERSION-tests.jar" ] ||
  jars_for+=("Hadoop $HADOOP_VERSION")
if [ ${#jars_for[@]} -gt 0 ] && ! have mvn; then
  what="$(printf '%s and ' "${jars_for[@]}")"
  missing "Maven (mvn): it fetches the jars of ${what% and } once (cached in $CACHE); install maven"
fi

have openssl || missing "openssl: it makes the Kubernetes API server's keys; install openssl"

# What scripts/apt-install.sh installs when missing: that needs apt-get, as root or with sudo.
for tool in chromium:chromium redis-server:redis-server etcd:etcd-server; do
  command_name="${tool%%:*}" package="${tool#*:}"
  have "$command_name" && continue
  if ! have apt-get; then
    missing "$command_name: make test installs Debian's $package with apt-get, and there is no apt-get here; install $package"
  elif [ "$(id -u)" != 0 ] && ! have sudo; then
    missing "$command_name: make test installs Debian's $package with apt-get, which needs root or sudo; install $package"
  fi
done

if [ ${#problems[@]} -gt 0 ]; then
  {
    echo "make test cannot run on this machine, which lacks (make test installs the rest itself):"
    printf '  - %s\n' "${problems[@]}"
    echo "(README.md, \"Two commands\", lists the prerequisites.)"
  } >&2
  exit 1
fi
