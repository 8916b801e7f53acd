#!/usr/bin/env bash
# make check's sample of long/test-pacemaker-failover.sh: a real two-node
# Pacemaker + Corosync cluster promotes a colofs, the VM writes, its node
# dies, the cluster promotes the other with the VM's data.  The fail back
# is in make check-long.
PCMK_FAILBACK=0 exec bash "$(dirname "$0")/long/test-pacemaker-failover.sh"
