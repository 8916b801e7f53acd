/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_FUSE_LOOP_H
#define COLOFS_FUSE_LOOP_H

struct fuse_session;

/* Serves se with up to max_threads threads, of which at most max_readers
 * wait in the kernel for a request at a time (fs/fuse/fuse-loop.c says why).
 * Returns when the session has exited: 0, or -1 with errno set when
 * reading /dev/fuse failed.  The calling thread waits (signals reach it);
 * every thread it started is joined before it returns.
 */
int fuse_loop_run(struct fuse_session *se, unsigned max_threads,
		  unsigned max_readers);

/* The default max_readers: one per CPU, 2 to 8. */
unsigned fuse_loop_default_readers(void);

#endif
