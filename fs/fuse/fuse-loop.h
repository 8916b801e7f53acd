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

/* Ends the loop serving se: fuse_loop_run returns once the requests
 * taken are answered (and those they wait for).  Use it, not
 * fuse_session_exit, which makes libfuse drop a request read after it.
 * Async-signal-safe; before the loop runs, it ends it at once.
 */
void fuse_loop_exit(struct fuse_session *se);
/* fuse_loop_exit was called, or the session exited (an unmount). */
bool fuse_loop_exiting(struct fuse_session *se);

/* The default `active`: one per CPU, at least 2, at most 8. */
unsigned fuse_loop_default_active(void);

#endif
