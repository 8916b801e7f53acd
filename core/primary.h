/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_PRIMARY_H
#define COLOFS_PRIMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "errlog.h"
#include "gi.h"
#include "image.h"

/* The primary side: each disk is a local image whose writes are mirrored
 * to the secondary through a link (fs/link/primary-link.c: libnbd) and, when
 * they cannot be, tracked in a durable dirty bitmap (bitmap.c).  The
 * engine knows nothing of NBD: the link is a function table.
 *
 * States and control words (0, or -1 with errno and the reason in the
 * primary's error):
 *
 *   word        from                      to
 *   start       none                      syncing (-> replicating)
 *               anything else             EBUSY
 *   resync [full] [URI]
 *               none, degraded, failover  syncing (-> replicating)
 *               syncing, replicating      EBUSY
 *   checkpoint  replicating               0 if no secondary write failed
 *               degraded                  EIO, the reason it degraded
 *               syncing                   EBUSY; none, failover: EINVAL
 *   failover    any but failover          failover (links dropped)
 *               failover                  EBUSY
 *   stop        any but none              none (links closed cleanly)
 *               none                      EINVAL
 *
 *   syncing     a background copy of the dirty granules (all of them for
 *               a first sync or "full"); new writes are mirrored; when
 *               nothing is dirty: replicating.
 *   degraded    entered by itself when a secondary write fails or times
 *               out: writes go on locally, marked dirty.
 *
 * "start" syncs only the dirty granules when the bitmap tracks the same
 * secondary (BITMAP_SYNCED, the same URI and the same generation: gi.h),
 * else everything.  A secondary that failed over after the generation
 * the bits count against is a split brain: start and resync refuse with
 * EIO (the status says split_brain=1) until "resync full".
 */
enum primary_state {
	PRIMARY_NONE,
	PRIMARY_SYNCING,
	PRIMARY_REPLICATING,
	PRIMARY_DEGRADED,
	PRIMARY_FAILOVER,
};
const char *primary_state_name(enum primary_state s);	/* aborts if unknown */

enum primary_op {
	PRIMARY_OP_WRITE,
	PRIMARY_OP_ZERO,	/* may punch a hole (WRITE_ZEROES) */
	PRIMARY_OP_ZERO_ALLOC,	/* keeps the blocks (WRITE_ZEROES, NO_HOLE) */
	PRIMARY_OP_FLUSH,
	PRIMARY_OP_READ,	/* the keepalive's: the data is dropped */
};

/* The link to the secondary, one connection per disk (index i).  Every
 * function may be called from several threads at once.
 */
struct primary_link_ops {
	/* Connects disk i to uri, checks that its size is size.  0, or -1
	 * with errno and a message in err.
	 */
	int (*connect)(void *opaque, size_t i, const char *uri, uint64_t size,
		       char *err, size_t errlen);
	/* Drops disk i's connection; commands in flight fail.  clean: wait
	 * for them and say goodbye (NBD_CMD_DISC) first.
	 */
	void (*disconnect)(void *opaque, size_t i, bool clean);
	/* Starts a command (the link copies buf).  A ticket, or NULL with
	 * errno and a message in err (not connected, or dead).
	 */
	void *(*submit)(void *opaque, size_t i, enum primary_op op,
			const void *buf, uint64_t off, uint64_t len,
			char *err, size_t errlen);
	/* Waits up to timeout_ms for the ticket and releases it: 0 when the
	 * secondary applied the command, -1 with errno (ETIMEDOUT, or the
	 * secondary's error) and a message in err.
	 */
	int (*wait)(void *opaque, void *ticket, unsigned timeout_ms,
		    char *err, size_t errlen);
	/* Bytes of payload sent on disk i's link since it was made. */
	uint64_t (*bytes_sent)(void *opaque, size_t i);
	/* The longest zero (PRIMARY_OP_ZERO*) disk i's secondary takes in one
	 * request: its maximum block size when the zero becomes a write of
	 * zeros (no WRITE_ZEROES).  NULL or 0: no limit of its own.
	 */
	uint64_t (*max_zero)(void *opaque, size_t i);
	/* The export description the secondary sent at connect (it carries
	 * its generation identifiers, gi.h), or "" if none.  Connected only;
	 * NULL: every peer is unknown.
	 */
	void (*peer_description)(void *opaque, size_t i, char *buf,
				 size_t len);
	/* Optional: how often disk i's connection was lost and resumed
	 * (primary-link.c, *Reconnect*).
	 */
	uint64_t (*reconnects)(void *opaque, size_t i);
};

struct primary_disk_config {
	const char *name;
	struct image *img;	/* taken by primary_new, also on failure */
	bool borrowed;		/* unless borrowed: the caller closes img
				 * (after primary_free), never primary.c */
	const char *uri;	/* the configured secondary */
	const char *bitmap_path;
	const char *al_path;	/* the activity log (al.h), or NULL: none */
};

struct primary_config {
	size_t ndisks;
	const struct primary_disk_config *disks;
	uint64_t granularity;
	unsigned timeout_ms;
	/* While mirroring, a disk whose link had no reply for this long gets
	 * a keepalive (a 512-byte NBD READ) answered within timeout_ms,
	 * or the pair degrades.  0: none.
	 */
	unsigned keepalive_ms;
	/* The activity log: extents of al_extent bytes, at most al_extents
	 * active (0: no log; a crash while replicating then costs a full
	 * resync).
	 */
	uint64_t al_extent;
	unsigned al_extents;
	const struct primary_link_ops *link;
	void *link_opaque;
};

struct primary;
struct primary_disk;

/* Opens every disk's bitmap.  Starts in none.  NULL with errno, logged. */
struct primary *primary_new(const struct primary_config *cfg);
/* Stops the sync, closes the links, saves the bitmaps, closes the images. */
void primary_free(struct primary *p);

struct primary_disk *primary_find_disk(struct primary *p, const char *name);
uint64_t primary_disk_size(const struct primary_disk *d);
/* The raw image's fd (reads may go straight to it), or -1. */
int primary_disk_fd(const struct primary_disk *d);

/* The VM's I/O.  Whole transfers within the disk: 0, or -1 with errno.
 * A write fails only when the local image (or the bitmap) fails; the
 * secondary's failure degrades the pair instead.
 */
int primary_read(struct primary_disk *d, void *buf, size_t len, uint64_t off);
int primary_write(struct primary_disk *d, const void *buf, size_t len,
		  uint64_t off);
/* Zeroing, as fallocate does it on a raw file, on both sides:
 * primary_zero (ZERO_RANGE) keeps the blocks allocated, the secondary
 * gets WRITE_ZEROES with NO_HOLE; primary_punch (PUNCH_HOLE) may punch
 * holes.
 */
int primary_zero(struct primary_disk *d, uint64_t off, uint64_t len);
int primary_punch(struct primary_disk *d, uint64_t off, uint64_t len);
int primary_flush(struct primary_disk *d);

/* Control words (see above).  arg: for resync, "full" and/or a URI
 * (which replaces every disk's secondary; one disk only), or NULL.
 */
int primary_start(struct primary *p);
int primary_resync(struct primary *p, bool full, const char *uri);
int primary_checkpoint(struct primary *p);
int primary_failover(struct primary *p);
int primary_stop(struct primary *p);

/* The link lost disk i's connection by itself (the secondary went
 * away): degrades the pair as a failed write would.  Any thread.
 */
void primary_link_lost(struct primary *p, size_t i, const char *why);

/* While disk i connects (from start or resync, in the link's connect),
 * given the secondary's export description (arg: the struct primary, so
 * that it is a primary_link_vouch_fn): the secondary's generation
 * when this primary will sync it (incremental or full), to present back
 * (fs/primary-link.h); 0 when it will refuse (a split brain or unrelated
 * data without "full") or the peer sent none.
 */
uint64_t primary_vouch(void *arg, size_t i, const char *description);

enum primary_state primary_state(struct primary *p);
/* Blocks until the state is not syncing, or timeout_ms passed. */
void primary_wait_sync(struct primary *p, unsigned timeout_ms);

void primary_record_error(struct primary *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The current error ("" if none), as secondary_last_error: it clears when
 * the condition ends (start or resync connected, back to replicating, a
 * checkpoint accepted, failover).
 */
time_t primary_last_error(struct primary *p, char *buf, size_t len);
void primary_clear_error(struct primary *p);
/* Its errors, current and past (.colo/errors reads the history). */
struct errlog *primary_errors(struct primary *p);

struct primary_disk_status {
	const char *name;
	uint64_t size;
	uint64_t dirty_bytes;
	uint64_t sent_bytes;		/* on the current link */
	uint64_t reconnects;		/* of the link, resumed */
	uint64_t write_bytes;		/* the VM's, since start-up */
	uint64_t mirrored_bytes;	/* of those, applied on the secondary */
	char uri[1024];			/* the secondary in use or configured */
	bool synced;			/* the bitmap tracks that URI */
	uint64_t peer_gen;		/* the secondary's generation, gi.h */
	unsigned al_active;		/* activity log: extents active */
	uint64_t al_transactions;	/* written since start-up */
	uint64_t al_write_us;		/* the time they took */
	struct gi_set gen;		/* this primary's */
};

struct primary_status {
	enum primary_state state;
	uint64_t granularity;
	uint64_t checkpoints;
	uint64_t sync_total_bytes;	/* of the last (or current) sync */
	uint64_t sync_done_bytes;
	uint64_t sync_rate;		/* bytes/s, over the sync so far */
	uint64_t syncs;			/* finished */
	bool split_brain;		/* the last start/resync found one */
	char reason[2048];		/* why degraded; "" otherwise */
	char error[2600];
	time_t error_time;		/* when error was raised; 0: none */
	size_t ndisks;
	struct primary_disk_status *disks;	/* malloc'd */
};
int primary_get_status(struct primary *p, struct primary_status *st);
void primary_status_release(struct primary_status *st);

#endif
