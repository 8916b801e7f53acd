/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STATE_H
#define COLOFS_STATE_H

/* The secondary's states, shared by the engine (secondary.c), the state file
 * (statefile.c) and the daemon, so that the state file needs nothing of
 * the secondary.  See secondary.c for what each state means.
 */
enum secondary_state {
	SECONDARY_NONE,			/* before start: V = S, view writes fail */
	SECONDARY_RUNNING,
	SECONDARY_FAILOVER,		/* committing buffers into S */
	SECONDARY_FAILOVER_FAILED,	/* the commit hit an error */
	SECONDARY_DONE,			/* V = S, pass-through */
};
const char *secondary_state_name(enum secondary_state s);	/* aborts if unknown */
/* The state named s: 0 and *out, or -1 for an unknown name. */
int secondary_state_parse(const char *s, enum secondary_state *out);

#endif
