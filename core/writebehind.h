/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_WRITEBEHIND_H
#define COLOFS_WRITEBEHIND_H

#include <stdint.h>

/* Write-behind: starts the kernel's writeback of a file's freshly written
 * pages early, from a thread of its own, so that a later fdatasync finds
 * little left to write (writebehind.c).  A hint only: it never waits for
 * the I/O and never replaces a sync.
 */
struct writebehind;

/* Watches fd (not owned; it must stay open until writebehind_free).
 * every: bytes noted between two initiations (> 0).  what names the file
 * in the log.  Starts the thread.  NULL with errno (logged).
 */
struct writebehind *writebehind_new(int fd, const char *what, uint64_t every);
/* Stops and joins the thread; what was noted and not yet started is left
 * to the kernel (and to the caller's sync).  NULL is a no-op.
 */
void writebehind_free(struct writebehind *wb);

/* [off, off+len) was just written into fd's page cache.  Never blocks on
 * I/O: a few instructions under a mutex the thread does not hold across
 * its system call.  Safe from any thread.
 */
void writebehind_note(struct writebehind *wb, uint64_t off, uint64_t len);

/* What the thread has started so far: its sync_file_range calls and the
 * bytes noted in them (tests, the log).
 */
void writebehind_stats(struct writebehind *wb, uint64_t *calls,
		       uint64_t *bytes);

#endif
