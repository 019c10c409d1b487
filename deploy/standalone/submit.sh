#!/usr/bin/env bash
# Submit a topology to the cluster (from any machine that reaches the head):
#   HEAD_ADDRESS=10.0.0.5:6379 RAY_AUTH_TOKEN_PATH=/etc/rayflow/ray-token ./submit.sh topology.yaml -D X=1
set -euo pipefail
: "${HEAD_ADDRESS:?set HEAD_ADDRESS to the head address, host:port}"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-/etc/rayflow/ray-token}"
exec rayflow submit "$@" --address "$HEAD_ADDRESS"
