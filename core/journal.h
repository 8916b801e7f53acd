/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_JOURNAL_H
#define COLOFS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

/* A failover commit's journal: which ranges of one disk the commit must
 * still write into S and from which buffer (journal.c).
 */
enum journal_op {
	JOURNAL_ACTIVE = 'A',	/* [off, off+len) is in the active buffer */
	JOURNAL_HIDDEN = 'H',	/* in the hidden buffer */
	JOURNAL_DROP = 'D',	/* written into S since: in no buffer */
};

struct journal_rec {
	char op;
	uint64_t off, len;
};

/* Creates DIR/NAME.tmp holding the header and recs (not yet synced) and
 * returns an fd open for appending, or -1 with errno.
 */
int journal_create(const char *dir, const char *name, uint64_t size,
		   const struct journal_rec *recs, size_t n);
/* Makes it durable under its name: fsync, rename NAME.tmp to NAME, fsync
 * the directory.  0, or -1 with errno.
 */
int journal_commit(int fd, const char *dir, const char *name);
/* Appends one record in one write(2), not synced.  0, or -1 with errno. */
int journal_append(int fd, char op, uint64_t off, uint64_t len);
/* Calls fn for each complete record of path in order (a torn last line is
 * ignored).  0; -1 with errno (EINVAL: not a journal of a disk of size
 * bytes, or fn's errno).
 */
int journal_replay(const char *path, uint64_t size,
		   int (*fn)(void *opaque, const struct journal_rec *rec),
		   void *opaque);

#endif
