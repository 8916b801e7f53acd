/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_SECONDARY_INTERNAL_H
#define COLOFS_SECONDARY_INTERNAL_H

/* Shared by the secondary engine's files only: secondary.c (control,
 * status), secondary-buffers.c (reclaim, spares, warming), secondary-io.c
 * (layers, I/O) and secondary-failover.c (the durable failover and its
 * commit).  Everything else uses secondary.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "extmap.h"
#include "journal.h"
#include "rangelock.h"
#include "secondary.h"
#include "store.h"

#define BOUNCE_MAX (1024 * 1024)	/* bytes copied per step */
#define COMMIT_CHUNK (4 * 1024 * 1024)	/* bytes committed per lock */
#define RETAIN_EPOCHS 4			/* epochs a buffer's size is kept for */
#define SPARES 2			/* spares kept per slot (buffer_warm
					 * makes both: start takes one, the
					 * first checkpoint the other) */

enum slot { SLOT_HIDDEN, SLOT_ACTIVE, SLOTS };

/* map: the bytes the buffer holds (they hide the layers below).  zeros:
 * the part of map that was zeroed or trimmed, so takes no space in either
 * store (a hole, or pages given back); empty in the common case, and then
 * never touched.  The buffer limit counts |map| - |zeros|.
 */
struct buffer {
	struct store *store;
	struct extmap *map;		/* protected by the disk's map_lock */
	struct extmap *zeros;		/* protected by the disk's map_lock */
};

struct secondary_disk {
	struct secondary *r;
	size_t index;			/* in r->disks */
	char *name;
	struct image *img;
	uint64_t size;
	struct rangelock rl;
	pthread_mutex_t map_lock;
	struct buffer *hidden, *active;	/* swapped under r->gate exclusive */
	atomic_uint_fast64_t primary_write_bytes;
	atomic_uint_fast64_t view_write_bytes;
	atomic_uint_fast64_t view_writes;	/* requests, zeroing included */
	atomic_uint_fast64_t view_reads, view_read_bytes;
	struct journal *journal;	/* NULL, or the failover journal:
					 * set under r->gate exclusive */
	/* D and A records of view writes whose data may not be durable
	 * yet: appended by notes_flush, after syncing S and active.  The
	 * first has sequence number notes_base.  Under note_lock.
	 */
	pthread_mutex_t note_lock;
	struct journal_rec *notes;
	size_t nnotes, notes_cap;
	uint64_t notes_base;
	/* Recycled (or warmed) buffers, empty, for the next checkpoint to
	 * swap in, nspare[slot] of them, and the page-rounded bytes of the
	 * last RETAIN_EPOCHS epochs of each slot (the retention bound);
	 * protected by r->reclaim_lock.
	 */
	struct buffer *spare[SLOTS][SPARES];
	unsigned nspare[SLOTS];
	uint64_t retain_hist[SLOTS][RETAIN_EPOCHS];
	unsigned retain_pos[SLOTS];
};

/* A buffer the reclaim thread frees, or recycles into d->spare[slot]; or,
 * with buf NULL, a spare for d's slot that it makes and warms
 * (buffer_warm).
 */
struct garbage {
	struct garbage *next;
	struct buffer *buf;
	struct secondary_disk *d;		/* NULL: free it */
	enum slot slot;
};

struct secondary {
	struct store_factory factory;
	pthread_mutex_t ctl_lock;
	pthread_rwlock_t gate;
	enum secondary_state state;	/* written under gate exclusive */
	uint64_t checkpoints;		/* written under gate exclusive */
	uint64_t last_checkpoint_ns;	/* written under gate exclusive */
	/* Checkpoint durations: a count per bucket of
	 * secondary_checkpoint_bucket_ns (not cumulative) and their sum;
	 * written under gate exclusive.
	 */
	uint64_t checkpoint_hist[SECONDARY_CHECKPOINT_BUCKETS];
	uint64_t checkpoint_ns_sum;
	atomic_uint_fast64_t unclean_disconnects;
	atomic_uint_fast64_t errors;	/* errors recorded, refusals included */

	/* Bytes mapped in every disk's buffers, and bytes reserved by writes
	 * in flight; both protected by limit_lock.  limit 0: none.
	 */
	pthread_mutex_t limit_lock;
	uint64_t limit, buffered, reserved;

	struct secondary_disk **disks;	/* fixed once started */
	size_t ndisks;

	struct errlog errs;		/* its own lock */

	pthread_mutex_t commit_lock;
	pthread_cond_t commit_cond;
	bool commit_running;		/* protected by commit_lock */
	bool commit_joinable;		/* protected by ctl_lock */
	atomic_bool commit_cancel;
	pthread_t commit_thread;

	pthread_mutex_t reclaim_lock;
	pthread_cond_t reclaim_cond;
	pthread_cond_t reclaim_done;	/* reclaim_busy went false */
	struct garbage *reclaim_list;	/* protected by reclaim_lock */
	bool reclaim_busy;		/* protected by reclaim_lock */
	bool reclaim_stop;		/* protected by reclaim_lock */
	bool spares_off;		/* out of running: protected by
					 * reclaim_lock */
	uint64_t warm;			/* buffer_warm: bytes each store
					 * keeps mapped; under reclaim_lock */
	atomic_uint_fast64_t warming;	/* bytes still to fault in */
	pthread_t reclaim_thread;

	/* Durability: set before start, fixed after.  jdir NULL: none. */
	char *jdir, *bdir, *prefix;
	uint64_t generation;		/* the journals' header (0: none);
					 * under ctl_lock */
	/* A failover between its start and its acknowledgement (durable):
	 * the status shows shown instead of failover, and view writes wait
	 * (pending_cond) until it is durable or failed.  Written under gate
	 * exclusive and commit_lock; read under either.
	 */
	bool failover_pending;
	pthread_cond_t pending_cond;	/* failover_pending went false */
	enum secondary_state shown;
	/* false after an unclean stop in running, until a primary connects:
	 * S may be behind the primary, so start needs force.
	 */
	atomic_bool s_consistent;
	secondary_state_hook *hook;
	void *hook_opaque;
	struct secondary_tap tap;		/* set before start, fixed after */
};

enum layer { LAYER_ACTIVE, LAYER_HIDDEN, LAYER_IMAGE };

static inline uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The helpers the engine's files call across (secondary.c,
 * secondary-buffers.c, secondary-io.c, secondary-failover.c).
 */
void sec_account(struct secondary *r, int64_t delta);
void sec_buffer_free(struct buffer *b);
struct buffer *sec_buffer_new(struct secondary *r, struct secondary_disk *d,
	const char *what);
void *sec_reclaim_main(void *arg);
struct buffer *sec_spare_take(struct secondary_disk *d, enum slot slot);
int sec_call_hook(struct secondary *r, enum secondary_state next,
	bool journaled);
bool sec_drop_spares(struct secondary *r, bool off);
int sec_map_insert(struct secondary_disk *d, struct buffer *b, uint64_t off,
	uint64_t len);
int sec_map_remove(struct secondary_disk *d, struct buffer *b, uint64_t off,
	uint64_t len);
int sec_notes_flush(struct secondary_disk *d);
uint64_t sec_occupied(const struct buffer *b);
int sec_refuse(struct secondary *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int sec_refuse_promoted(struct secondary *r, const char *word);
int sec_start(struct secondary *r, bool force);
void sec_swap_buffers(struct secondary *r, struct buffer **hidden,
	struct buffer **active);
int sec_tap_write(struct secondary_disk *d, uint64_t off, uint64_t len);
enum layer sec_view_source(struct secondary_disk *d, uint64_t pos,
	uint64_t end, uint64_t *seg_end);
void sec_join_commit(struct secondary *r);
bool sec_journaled(struct secondary *r);

bool sec_limited(struct secondary *r);
int sec_map_insert_zero(struct secondary_disk *d, struct buffer *b,
	uint64_t off, uint64_t len);
void sec_reclaim(struct secondary *r, struct buffer *b,
	struct secondary_disk *d, enum slot slot);
bool sec_reclaim_drain(struct secondary *r);
int sec_reserve(struct secondary_disk *d, uint64_t need, const char *what);
void sec_unreserve(struct secondary *r, uint64_t n);

/* Whether state s is in a set of states made of STATE_BIT()s. */
#define STATE_BIT(s) (1u << (s))

#endif
