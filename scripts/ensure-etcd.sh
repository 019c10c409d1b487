#!/usr/bin/env bash
# Debian's etcd-server for the Kubernetes API server tests (they start their own on 127.0.0.1).
exec bash "$(dirname "$0")/apt-install.sh" etcd etcd-server "the Kubernetes API server tests" etcd
