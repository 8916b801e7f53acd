/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STATE_H
#define COLOFS_STATE_H

/* The replica's states, shared by the engine (secondary.c), the state file
 * (statefile.c) and the daemon, so that the state file needs nothing of
 * the replica.  See secondary.c for what each state means.
 */
enum replica_state {
	REPLICA_NONE,			/* before start: V = S, view writes fail */
	REPLICA_RUNNING,
	REPLICA_FAILOVER,		/* committing buffers into S */
	REPLICA_FAILOVER_FAILED,	/* the commit hit an error */
	REPLICA_DONE,			/* V = S, pass-through */
};
const char *replica_state_name(enum replica_state s);	/* aborts if unknown */
/* The state named s: 0 and *out, or -1 for an unknown name. */
int replica_state_parse(const char *s, enum replica_state *out);

#endif
