#!/usr/bin/env bash
# Join this machine to the Ray head as a worker node, in the foreground (rayflow-worker.service).
#   HEAD_ADDRESS            the head's NODE_IP:RAY_PORT (required)
#   NODE_IP                 this machine's address (required)
#   RAY_AUTH_TOKEN_PATH     the cluster's token file (required)
#   NUM_CPUS, MEMORY_BYTES, OBJECT_STORE_BYTES, RESOURCES  as for the head; RESOURCES is JSON
set -euo pipefail
: "${HEAD_ADDRESS:?set HEAD_ADDRESS to the head address, host:port}"
: "${NODE_IP:?set NODE_IP to the address of this machine}"
: "${RAY_AUTH_TOKEN_PATH:?set RAY_AUTH_TOKEN_PATH to the file holding the cluster token}"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH
source "$(dirname "$0")/sizes.sh"
until ray health-check --address "$HEAD_ADDRESS" >/dev/null 2>&1; do
  echo "waiting for the Ray head at $HEAD_ADDRESS"
  sleep 3
done
exec ray start --block --disable-usage-stats --address="$HEAD_ADDRESS" \
  --node-ip-address="$NODE_IP" "${RAY_SIZES[@]}"
