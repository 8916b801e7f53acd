#!/usr/bin/env bash
# tests/e2e/test-nbd-flood-psk.sh with 20 tries of the real PSK client,
# 3 s apart: a minute of flood, its connections evicted and back meanwhile.
FLOOD_TRIES=20 FLOOD_GAP=3 exec bash "$(dirname "$0")/../test-nbd-flood-psk.sh"
