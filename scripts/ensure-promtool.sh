#!/usr/bin/env bash
# Prometheus' promtool (Debian's prometheus package) checks /metrics in the tests; the package's
# server is stopped if it started: nothing scrapes here.
exec bash "$(dirname "$0")/apt-install.sh" promtool prometheus "checking /metrics with promtool" prometheus
