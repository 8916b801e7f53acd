/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FUSE_LOOP_H
#define COLOFS_FUSE_LOOP_H

#include <stdbool.h>

struct fuse_session;

/* Serves se with up to max_threads threads, of which about `active` read
 * and serve requests at a time and the others park (fs/fuse/fuse-loop.c says
 * why).  quick(in) is given each request's struct fuse_in_header: true
 * for a request that cannot wait for another request (a disk read or
 * write); taking any other with no reader left adds a reader.
 * Returns when the session has exited: 0, or -1 with errno set when
 * reading /dev/fuse failed.  The calling thread waits (signals reach it);
 * every thread it started is joined before it returns.
 */
int fuse_loop_run(struct fuse_session *se, unsigned max_threads,
		  unsigned active, bool (*quick)(const void *in));

/* The default `active`: one per CPU, plus one, at most 8. */
unsigned fuse_loop_default_active(void);

#endif
