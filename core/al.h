/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_AL_H
#define COLOFS_AL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The primary's activity log (DRBD's): the extents of a disk that
 * mirrored writes may be touching, in a small durable ring (al.c has the
 * format).  A mirrored write leaves no mark in the dirty bitmap, so after
 * a crash the bitmap alone cannot say where writes were in flight; the
 * extents of the log's newest transaction can, and only they need a copy,
 * not the whole disk.  Every call is thread-safe.
 */
struct al;

#define AL_MAX_EXTENTS 1000 /* active at once, at most */

/* Opens (or creates, holding no transaction) PATH for a disk of size
 * bytes in extents of extent bytes (a power of two), at most nactive of
 * them active at once (1..AL_MAX_EXTENTS; 0: recovery only, no
 * al_begin).  NULL with errno, logged.
 */
struct al *al_open(const char *path, uint64_t size, uint64_t extent,
		   unsigned nactive);
void al_free(struct al *a); /* NULL is a no-op */

/* The extents of the newest valid transaction found at open: fn is
 * called for each as a byte range (the last one cut at the disk's end).
 * 0 after every call returned 0; -1 when the ring holds no valid
 * transaction (ENOENT) or fn failed (its errno): the caller must then
 * assume every byte may differ.
 */
int al_recover(struct al *a,
	       int (*fn)(void *opaque, uint64_t off, uint64_t len),
	       void *opaque);
/* Writes the in-memory set (empty after open) as a new transaction: the
 * ring no longer names what al_recover returned.  0, or -1 (logged).
 */
int al_reset(struct al *a);

/* Before a mirrored write of [off, off+len): makes its extents active,
 * and returns once a transaction naming them all is on the disk (written
 * only when one of them was not active).  0; -1 with E2BIG when the range
 * spans more extents than can be active, or another errno (logged) when
 * the ring cannot be written: then nothing is held and the caller must
 * track the range some other way.
 */
int al_begin(struct al *a, uint64_t off, uint64_t len);
/* The write of an al_begin that returned 0 is over (acked by both sides,
 * or its range marked in the bitmap): its extents may leave the log.
 */
void al_end(struct al *a, uint64_t off, uint64_t len);

struct al_stats {
	unsigned active;       /* extents in the log now */
	uint64_t transactions; /* written since open */
	uint64_t write_us;     /* spent writing them (pwrite + fdatasync) */
};
void al_get_stats(struct al *a, struct al_stats *st);

#endif
