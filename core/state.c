/* SPDX-License-Identifier: MIT */
/* The secondary states' names, as the state file and the status print them. */
#include <stdlib.h>
#include <string.h>

#include "state.h"

const char *
secondary_state_name(enum secondary_state s)
{
	switch (s) {
	case SECONDARY_NONE: return "none";
	case SECONDARY_RUNNING: return "running";
	case SECONDARY_FAILOVER: return "failover";
	case SECONDARY_FAILOVER_FAILED: return "failover_failed";
	case SECONDARY_DONE: return "done";
	}
	abort();
}

int
secondary_state_parse(const char *s, enum secondary_state *out)
{
	enum secondary_state st;

	for (st = SECONDARY_NONE; st <= SECONDARY_DONE; st++) {
		if (strcmp(s, secondary_state_name(st)) == 0) {
			*out = st;
			return 0;
		}
	}
	return -1;
}
