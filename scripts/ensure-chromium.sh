#!/usr/bin/env bash
# Debian's headless Chromium for the web UI tests (Playwright drives it; it never downloads its own).
exec bash "$(dirname "$0")/apt-install.sh" chromium chromium "the web UI tests"
