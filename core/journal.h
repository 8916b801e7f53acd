/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_JOURNAL_H
#define COLOFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A failover commit's journal: which ranges of one disk the commit must
 * still write into S and from which buffer (journal.c has the format).
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

#define JOURNAL_VERSION 2
#define JOURNAL_HEADER_LEN 128
#define JOURNAL_REC_LEN 40
#define JOURNAL_DISK_MAX 79	/* bytes of the disk's name kept */

/* The largest journal, in bytes: journal_load refuses a larger file, and
 * journal_create and journal_append refuse (EFBIG, logged) to make one,
 * so that a failover fails rather than write a journal its own replay
 * would refuse.  Tests lower it; nothing else changes it.
 */
#define JOURNAL_MAX_BYTES (UINT64_C(1) << 32)
extern uint64_t journal_max_bytes;

/* What a journal file says, as journal_parse found it. */
struct journal_info {
	uint64_t size;			/* the disk's size */
	uint64_t generation;		/* 0: none recorded */
	uint64_t salt;			/* this journal's random id */
	char disk[JOURNAL_DISK_MAX + 1];
	size_t nsnap;			/* records before the end record */
	struct journal_rec *recs;	/* all records but the end, in order */
	size_t nrecs;
	uint64_t valid_len;		/* bytes up to the last valid record */
	bool torn;			/* a torn last record was ignored */
	uint64_t chain;			/* the last valid record's checksum */
	uint64_t active_end, hidden_end;	/* the highest end each buffer
						 * must supply (0: none) */
};

struct journal;

/* Creates a new journal in dirfd under a temporary name (fdio_create_tmp:
 * NAME.tmp.XXXXXX) holding the header, recs (A or H) and the end record,
 * not yet synced.  disk and generation go into the header.  NULL with
 * errno (logged): EFBIG if it would exceed journal_max_bytes.
 */
struct journal *journal_create(int dirfd, const char *name, const char *disk,
			       uint64_t size, uint64_t generation,
			       const struct journal_rec *recs, size_t n);
/* Makes it durable under NAME: fsync, rename, fsync of the directory
 * (fdio_commit_tmp; a failed directory fsync is retried once).  0, or -1
 * with errno (logged).
 */
int journal_commit(struct journal *j);
/* Appends one record (A or D) at the end of the last whole record, not
 * synced.  A failed or short write is cut back to the last whole record;
 * if even that fails, the journal is marked failed and every later append
 * fails (EIO) without writing.  A record that would take the journal past
 * journal_max_bytes is refused (EFBIG), nothing written.  0, or -1 with
 * errno (logged).
 */
int journal_append(struct journal *j, char op, uint64_t off, uint64_t len);
/* fdatasync.  0, or -1 with errno (logged).  A failure marks the journal
 * failed: the records it held may be lost, and a later fdatasync would not
 * say so (the kernel reports a writeback error once), so every later sync
 * and append fails (EIO).
 */
int journal_sync(struct journal *j);
/* Test hook: when set, journal_sync calls it first; -1 fails the sync. */
extern int (*journal_sync_fault)(void);
/* Closes it; the file stays.  NULL is a no-op. */
void journal_close(struct journal *j);

/* Checks every byte of a journal image: header (magic, version, length,
 * checksum; size and disk must match when size is not 0 and disk not
 * NULL), each record's checksum, which chains it to the one before, the
 * end record's count and checksum over the snapshot, and every extent
 * within the disk.  Only a torn last record after the end record is
 * tolerated (ignored, info->torn).  0 and *info (free with
 * journal_info_release); or -1 with EINVAL and what is wrong in err, or
 * with ENOMEM (and so in err) if the records do not fit in memory.
 */
int journal_parse(const void *buf, size_t len, const char *disk,
		  uint64_t size, struct journal_info *info, char *err,
		  size_t errlen);
void journal_info_release(struct journal_info *info);
/* For tests (tests/unit/faulty.c): when set, called before journal_parse
 * allocates its records; -1 fails that allocation as malloc would.
 */
extern int (*journal_alloc_fault)(void);

/* The stamp that binds a buffer file to its journal: JOURNAL_STAMP_LEN
 * bytes that the buffer file carries after the disk's bytes (at offset
 * size): magic, which buffer (op: JOURNAL_ACTIVE or JOURNAL_HIDDEN), the
 * disk's size and name, the journal's salt, a checksum.  journal_stamp
 * fills buf; journal_stamp_check: 0, or -1 with EINVAL and what is wrong
 * in err (another journal's, the other buffer's, damaged...).
 */
#define JOURNAL_STAMP_LEN 4096
void journal_stamp(const struct journal *j, char op, unsigned char *buf);
int journal_stamp_check(const struct journal_info *info, char op,
			const unsigned char *buf, char *err, size_t errlen);

/* Reads NAME in dirfd (no symlink followed, a regular file) and parses it
 * as above.  On success, *jp (if jp is not NULL) is the journal opened
 * for appending after its last valid record (a torn tail is cut off).
 * 0; or -1 with errno and, for a damaged journal, what is wrong in err.
 */
int journal_load(int dirfd, const char *name, const char *disk,
		 uint64_t size, struct journal_info *info, struct journal **jp,
		 char *err, size_t errlen);

#endif
