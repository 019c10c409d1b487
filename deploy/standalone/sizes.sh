# What Ray may use on this machine: explicit sizes, never Ray's guesses from a shared host.
total_bytes=$(awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo)
NUM_CPUS="${NUM_CPUS:-$(nproc)}"
OBJECT_STORE_BYTES="${OBJECT_STORE_BYTES:-$((total_bytes * 30 / 100))}"
MEMORY_BYTES="${MEMORY_BYTES:-$((total_bytes * 70 / 100 - OBJECT_STORE_BYTES / 2))}"
RAY_SIZES=(--num-cpus="$NUM_CPUS" --memory="$MEMORY_BYTES" --object-store-memory="$OBJECT_STORE_BYTES"
           --resources="${RESOURCES:-{\}}")
