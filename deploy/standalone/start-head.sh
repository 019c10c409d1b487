#!/usr/bin/env bash
# Start the Ray head and the rayflow job master on this machine, in the foreground (systemd's
# rayflow-head.service runs it). Settings come from the environment (see rayflow.env.example):
#   NODE_IP                 this machine's address the others reach (required)
#   RAY_PORT                Ray's GCS port (6379)
#   NUM_CPUS, MEMORY_BYTES  what Ray may use here (default: all CPUs; 70% of RAM for tasks)
#   OBJECT_STORE_BYTES      Ray's object store (default: 30% of RAM)
#   RAY_AUTH_TOKEN_PATH     file with Ray's cluster token, the same on every machine (required)
#   RAYFLOW_UI_HOST/PORT    where the job master serves its UI (NODE_IP, 8744)
#   RAYFLOW_UI_TOKEN        the UI's token for kill/activate/deactivate (required off loopback)
set -euo pipefail
: "${NODE_IP:?set NODE_IP to the address of this machine}"
: "${RAY_AUTH_TOKEN_PATH:?set RAY_AUTH_TOKEN_PATH to the file holding the cluster token}"
RAY_PORT="${RAY_PORT:-6379}"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH
export RAYFLOW_UI_HOST="${RAYFLOW_UI_HOST:-$NODE_IP}" RAYFLOW_UI_PORT="${RAYFLOW_UI_PORT:-8744}"
source "$(dirname "$0")/sizes.sh"
ray start --head --block --disable-usage-stats --node-ip-address="$NODE_IP" --port="$RAY_PORT" \
  --dashboard-host="$NODE_IP" "${RAY_SIZES[@]}" &
ray_pid=$!
trap 'kill -TERM "$ray_pid" 2>/dev/null; wait "$ray_pid"' TERM INT
until ray health-check --address "$NODE_IP:$RAY_PORT" >/dev/null 2>&1; do
  kill -0 "$ray_pid"
  sleep 1
done
rayflow master --address "$NODE_IP:$RAY_PORT"
echo "rayflow: Ray head $NODE_IP:$RAY_PORT, UI http://$RAYFLOW_UI_HOST:$RAYFLOW_UI_PORT"
wait "$ray_pid"
