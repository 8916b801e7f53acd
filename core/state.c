/* SPDX-License-Identifier: MIT */
/* The replica states' names, as the state file and the status print them. */
#include <stdlib.h>
#include <string.h>

#include "state.h"

const char *
replica_state_name(enum replica_state s)
{
	switch (s) {
	case REPLICA_NONE: return "none";
	case REPLICA_RUNNING: return "running";
	case REPLICA_FAILOVER: return "failover";
	case REPLICA_FAILOVER_FAILED: return "failover_failed";
	case REPLICA_DONE: return "done";
	}
	abort();
}

int
replica_state_parse(const char *s, enum replica_state *out)
{
	enum replica_state st;

	for (st = REPLICA_NONE; st <= REPLICA_DONE; st++) {
		if (strcmp(s, replica_state_name(st)) == 0) {
			*out = st;
			return 0;
		}
	}
	return -1;
}
