#!/usr/bin/env bash
# tests/e2e/test-nbd-flood-psk.sh with 20 tries of the real PSK client
# under the flood (about five minutes of flood).
FLOOD_TRIES=20 exec bash "$(dirname "$0")/../test-nbd-flood-psk.sh"
