/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_BITMAP_H
#define COLOFS_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gi.h"

/* A durable dirty bitmap: one bit per granule of a disk, kept in a file
 * (bitmap.c describes the format).  Every call is thread-safe.
 */
struct bitmap;

/* Header flags. */
enum {
	/* The disk was in sync with the peer once: an incremental resync to
	 * the same peer is possible.
	 */
	BITMAP_SYNCED = 1u << 0,
	/* Writes were being mirrored without being marked: if the file is
	 * found with this flag at open, the process died mid-replication
	 * and what was in flight is unknown.
	 */
	BITMAP_LIVE = 1u << 1,
	/* With LIVE: an activity log (al.h) covered the mirrored writes, so
	 * its extents, not the whole disk, are what may differ.
	 */
	BITMAP_AL = 1u << 2,
	/* The last start or resync found a split brain with this peer
	 * (gi.h); cleared when a sync begins.
	 */
	BITMAP_SPLIT_BRAIN = 1u << 3,
	/* Marks are kept in memory only (bitmap_mark_lazy) since this was
	 * set: found at open, the process died without saving them, and the
	 * bits say nothing (the caller copies everything).  A whole rewrite
	 * that clears it saves them.
	 */
	BITMAP_UNCLEAN = 1u << 4,
};

/* Opens path, or creates it (all clean, no flags) when it does not exist.
 * A file for another size or granularity is refused (EINVAL, logged).  A
 * file found with BITMAP_LIVE but not BITMAP_AL gets every bit set (and
 * the flag kept: the caller decides); with BITMAP_AL too, the caller must
 * mark the activity log's extents (or everything).  NULL with errno after
 * logging.
 */
struct bitmap *bitmap_open(const char *path, uint64_t size, uint64_t gran);
void bitmap_free(struct bitmap *b);		/* NULL is a no-op */

uint64_t bitmap_granularity(const struct bitmap *b);
unsigned bitmap_flags(struct bitmap *b);
/* The peer (the secondary's URI) the flags refer to; "" if none. */
void bitmap_peer(struct bitmap *b, char *buf, size_t len);
/* Sets the flags in set, clears those in clear and, unless peer is NULL,
 * replaces the peer, in one durable rewrite.  0, or -1 with errno.
 */
int bitmap_update(struct bitmap *b, unsigned set, unsigned clear,
		  const char *peer);

/* The generation identifiers the header keeps (gi.h): peer_gen, the
 * secondary's generation the bits count against (0: none recorded), and
 * own, this primary's.  Both zero in a file from an older colofs.
 */
void bitmap_gens(struct bitmap *b, uint64_t *peer_gen, struct gi_set *own);
/* Replaces them in one durable rewrite.  0, or -1 with errno. */
int bitmap_set_gens(struct bitmap *b, uint64_t peer_gen,
		    const struct gi_set *own);

/* Marks every granule touched by [off, off+len).  When a granule was
 * clean, the bits reach the disk (pwrite + fdatasync) before this
 * returns.  0, or -1 with errno (then the range may not be marked).
 */
int bitmap_mark(struct bitmap *b, uint64_t off, uint64_t len);
/* As bitmap_mark, in memory only: no I/O.  The caller has set
 * BITMAP_UNCLEAN durably first, and clears it with the rewrite that saves
 * the bits (bitmap_update).
 */
void bitmap_mark_lazy(struct bitmap *b, uint64_t off, uint64_t len);
/* Marks everything, durably (a whole rewrite).  0, or -1. */
int bitmap_mark_all(struct bitmap *b);
/* Clears the granules [off, off+len) covers whole, in memory; a later
 * bitmap_save or mark writes it out (a stale set bit only costs a copy).
 */
void bitmap_clear(struct bitmap *b, uint64_t off, uint64_t len);
/* Rewrites the whole file atomically: temp file, fsync, rename, fsync of
 * the directory.  0, or -1 with errno.
 */
int bitmap_save(struct bitmap *b);

/* The first dirty run at or after off: true and *roff, *rlen
 * (granule-aligned, within the disk), or false.  The run stops at the
 * first granule that reaches max bytes, but is always one whole granule
 * at least: with a granule above max, *rlen is above max, and the caller
 * must split it (primary.c's sync does).
 */
bool bitmap_next(struct bitmap *b, uint64_t off, uint64_t max,
		 uint64_t *roff, uint64_t *rlen);
uint64_t bitmap_dirty_bytes(struct bitmap *b);

#endif
