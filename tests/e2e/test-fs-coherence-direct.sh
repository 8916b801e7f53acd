#!/usr/bin/env bash
# The coherence test with the default page_cache = false: disk files are
# never cached, so every read sees the current view.
PAGE_CACHE=false
. "$(dirname "$0")/test-fs-coherence.sh"
