#!/usr/bin/env bash
# The differential of test-qemu-differential.sh, longer: random seeds of
# 300 steps for about 4 minutes (COLOFS_QEMU_SOAK_SECS).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../../qemu/run.sh"
need_qemu
need_colofs
run_py workload.py --peers model,qemu,colofs --colofs "$COLOFS_BIN" \
	--seeds 1000 --steps 300 --time-limit "${COLOFS_QEMU_SOAK_SECS:-240}" \
	--dir "$T/wl" || fail "QEMU and colofs diverge"
ok "QEMU, colofs and the model agree"
