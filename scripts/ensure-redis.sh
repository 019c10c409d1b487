#!/usr/bin/env bash
# Debian's redis-server for the Redis connector tests (they start their own on 127.0.0.1).
exec bash "$(dirname "$0")/apt-install.sh" redis-server redis-server "the Redis connector tests" redis-server
