/* SPDX-License-Identifier: MIT */
/* The secondary engine: the secondary side of COLO block replication.
 *
 * Why this file is long: the engine is one state machine whose sections
 * (buffers, layers, primary and view I/O, control, the failover commit)
 * share the per-disk lock order written below and a dozen static helpers
 * that must not leak into secondary.h.  Its sections are marked "---- ".
 *
 * Per disk:
 *
 *   view I/O (FUSE) ----> V = active ----+
 *                              over      |  reads fall through
 *                             hidden ----+  the layers top down
 *                              over      |
 *   primary I/O (NBD) ------> S (image) <+
 *
 * active holds the secondary VM's own writes of this epoch (the last write
 * wins); hidden holds the content S had before the primary overwrote it in
 * this epoch (the first save wins).  Each is a buffer: a store (bytes at
 * disk offsets) and an extent map (which bytes are meaningful).
 *
 * States (all disks of the group move together):
 *
 *            start              failover             commit ends
 *   NONE ----------> RUNNING -------------> FAILOVER -------------> DONE
 *                     |   ^ checkpoint        |   ^                   ^
 *                     |   | (empties          |   | failover          |
 *                     |   |  both buffers)    v   | (retry)           |
 *                     |   +--------   FAILOVER_FAILED                 |
 *                     +---------------------------------------------->+
 *                                   stop (drops both buffers)
 *
 *   NONE:     V = S; view writes fail (EIO); primary writes go to S as is
 *             (the initial sync and resync).
 *   RUNNING:  primary write: save the parts of the range that neither
 *             buffer holds from S into hidden, then write S.  View write:
 *             into active.  View read: active, else hidden, else S.
 *   FAILOVER: a thread commits V's buffered ranges into S, chunk by chunk,
 *             dropping them from the buffers as it goes.  A view write goes
 *             to S and drops the range from both buffers, so the commit
 *             never writes older data over it.  Primary writes: ESHUTDOWN.
 *   FAILOVER_FAILED: the commit met an error.  View writes go to active
 *             where the range is buffered, to S elsewhere; "failover"
 *             retries the commit.
 *   DONE:     V = S; pass-through.
 *
 * I/O is byte-exact at any offset and length: nothing is read, modified
 * and written back in a way a caller could see.
 *
 * Locks, in the order they are taken:
 *   1. r->ctl_lock      serializes control words (start, checkpoint, ...).
 *   2. r->gate          rwlock: every I/O and every commit chunk holds it
 *                       shared; state changes and buffer swaps hold it
 *                       exclusive, so a checkpoint waits for in-flight I/O
 *                       and holds back new I/O (writer-preferring, so
 *                       I/O cannot starve it).  r->state, each disk's
 *                       hidden/active pointers and the checkpoint figures
 *                       change only under it exclusively.
 *   3. d->rl            the disk's range lock: orders overlapping I/O and
 *                       is held across the I/O it orders.
 *   4. d->map_lock      the disk's two extent maps; never held across I/O.
 *   5. r->errs.lock, r->reclaim_lock, r->commit_lock, r->limit_lock:
 *      leaves.
 * Because I/O to a range holds d->rl, the maps cannot change within that
 * range while the I/O runs, so a lookup made under map_lock stays true
 * after map_lock is dropped for the I/O itself.
 *
 * Emptying a buffer costs the same however much it holds: a checkpoint
 * takes empty buffers before taking the gate, swaps them in under it, and
 * hands the old ones to a reclaim thread.  The empty buffers are spares
 * (d->spare) that the reclaim thread recycled from the checkpoint before:
 * maps emptied, store pages kept, so the next epoch overwrites mapped
 * pages instead of faulting and zeroing fresh ones (faults were half an
 * ingest's CPU).  A store keeps at most the pages of the largest of its
 * slot's last RETAIN_EPOCHS epochs (store_recycle), so a burst does not
 * hold memory for ever.  An old store's bytes are never read: every read
 * goes by the extent maps, which start empty.  Out of running (stop,
 * failover) spares are freed and old buffers too.
 *
 * Durability.  While running, nothing is synced: a crash loses the
 * buffers, which is what a checkpoint does anyway, and S holds every write
 * the primary got a reply for.  The failover commit is different: once
 * it writes S, the buffers hold the only copy of the rest of V.  So, with
 * a journal directory set (secondary_set_durable), secondary_failover first,
 * before it answers (the status shows the state before until it does)
 *   1. under the gate exclusively, snapshots each disk's two maps into a
 *      journal file (journal.c) left open for appending: from then on a
 *      view write into S notes a "D" record, and one into active
 *      (failover_failed) an "A" record, appended before the write
 *      returns but after its data is durable (notes_flush: S and active
 *      are synced first), so that no record reaches the disk before its
 *      data;
 *   2. makes each buffer a durable named file in bdir: a file store's
 *      unlinked file is synced and linked there; a memory store is copied
 *      into a new file, synced, linked and swapped in (the commit reads
 *      it from there on);
 *   3. fsyncs bdir, then each journal (fsync, rename, fsync jdir);
 *   4. calls the state hook (failover, journaled): the state file says
 *      so from now on;
 * and only then answers and starts the commit thread, which writes S.
 * Meanwhile (failover_pending) view writes wait, before taking the gate:
 * none reaches S before the state file says failover, else a crash there
 * would restart in none with the VM's writes mixed into S.  If
 * a step fails, the failover fails (EIO, failover_failed) and may be
 * retried.  Each step has a crash point (crashpoint.h) for the tests.  At the end: S flushed, the hook (done) must
 * succeed before the state becomes done (else failover_failed: a view
 * write in done is journaled nowhere, so a resumed commit must never run
 * after one), then the journals and buffer files are removed.
 * secondary_resume_failover rebuilds the maps by replaying the journals
 * over the buffer files and runs the commit again; committing a range
 * twice writes the same bytes, and the D records keep it from writing
 * over what the VM wrote since.  A view flush in failover fsyncs S and
 * the active buffer, then appends the noted records and fsyncs the
 * journal, so flushed writes outlive a power cut too; a crash loses the
 * notes of unflushed writes, so a resumed commit may bring back V at the
 * failover where the VM wrote since its last flush (a write it had not
 * flushed, which a disk may lose).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errlog.h"
#include "crashpoint.h"
#include "extmap.h"
#include "fdio.h"
#include "journal.h"
#include "log.h"
#include "rangelock.h"
#include "secondary.h"

#define BOUNCE_MAX (1024 * 1024)	/* bytes copied per step */
#define COMMIT_CHUNK (4 * 1024 * 1024)	/* bytes committed per lock */
#define RETAIN_EPOCHS 4			/* epochs a buffer's size is kept for */

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
	/* Recycled buffers, empty, for the next checkpoint to swap in, and
	 * the page-rounded bytes of the last RETAIN_EPOCHS epochs of each
	 * slot (the retention bound); protected by r->reclaim_lock.
	 */
	struct buffer *spare[SLOTS];
	uint64_t retain_hist[SLOTS][RETAIN_EPOCHS];
	unsigned retain_pos[SLOTS];
};

/* A buffer the reclaim thread frees, or recycles into d->spare[slot]. */
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

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- errors ---- */

static void
vrecord(struct secondary *r, const char *fmt, va_list ap)
{
	int saved = errno;

	errlog_vrecord(&r->errs, fmt, ap);
	atomic_fetch_add(&r->errors, 1);
	errno = saved;
}

void
secondary_record_error(struct secondary *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(r, fmt, ap);
	va_end(ap);
}

/* Records the reason for a refusal and returns -1 with errno = err. */
static int __attribute__((format(printf, 3, 4)))
refuse(struct secondary *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(r, fmt, ap);
	va_end(ap);
	errno = err;
	return -1;
}

/* A word that has nothing left to do once the disk is promoted (failover
 * or done, with ctl_lock held): EBUSY, and why.
 */
static int
refuse_promoted(struct secondary *r, const char *word)
{
	if (r->state == SECONDARY_FAILOVER)
		return refuse(r, EBUSY, "%s: a failover is committing the "
			      "buffers into S (state failover, then done); "
			      "nothing to do", word);
	return refuse(r, EBUSY, "%s: this disk is promoted (state done "
		      "after failover or stop): it takes no primary writes "
		      "and %s has nothing to do; to replicate again, restart "
		      "colofs with --demote and resync from the new primary",
		      word, word);
}

void
secondary_clear_error(struct secondary *r)
{
	errlog_clear(&r->errs);
}

struct errlog *
secondary_errors(struct secondary *r)
{
	return &r->errs;
}

time_t
secondary_last_error(struct secondary *r, char *buf, size_t len)
{
	return errlog_current(&r->errs, buf, len);
}

void
secondary_note_unclean_disconnect(struct secondary *r, const char *why)
{
	atomic_fetch_add(&r->unclean_disconnects, 1);
	secondary_record_error(r, "the primary went away uncleanly (writes "
			     "may be missing): %s", why);
}

/* ---- buffers and their reclaim ---- */

static void
buffer_free(struct buffer *b)
{
	if (b == NULL)
		return;
	store_free(b->store);
	extmap_free(b->map);
	extmap_free(b->zeros);
	free(b);
}

static struct buffer *
buffer_new(struct secondary *r, struct secondary_disk *d, const char *what)
{
	char tag[128];
	struct buffer *b = calloc(1, sizeof *b);

	if (b == NULL)
		return NULL;
	snprintf(tag, sizeof tag, "colofs-%s-%s", d->name, what);
	b->map = extmap_new();
	b->zeros = extmap_new();
	if (b->map == NULL || b->zeros == NULL)
		goto err;
	b->store = r->factory.create(r->factory.opaque, d->size, tag);
	if (b->store == NULL)
		goto err;
	return b;
err:
	{
		int saved = errno;
		buffer_free(b);
		errno = saved;
	}
	return NULL;
}

/* Empties b (a buffer a checkpoint dropped) and keeps it as d's spare for
 * its slot, its store's pages trimmed to the retention bound: the largest
 * of the slot's last RETAIN_EPOCHS epochs.  b is freed instead if that
 * fails or a spare is there already.
 */
static void
recycle(struct secondary *r, struct secondary_disk *d, enum slot slot,
	struct buffer *b)
{
	struct extmap *map = extmap_new(), *zeros = extmap_new();
	uint64_t keep = 0, pages;
	unsigned i;

	pthread_mutex_lock(&r->reclaim_lock);
	for (i = 0; i < RETAIN_EPOCHS; i++)
		if (d->retain_hist[slot][i] > keep)
			keep = d->retain_hist[slot][i];
	pthread_mutex_unlock(&r->reclaim_lock);
	if (map == NULL || zeros == NULL ||
	    store_recycle(b->store, b->map, keep, &pages) == -1) {
		extmap_free(map);
		extmap_free(zeros);
		buffer_free(b);
		return;
	}
	extmap_free(b->map);
	extmap_free(b->zeros);
	b->map = map;
	b->zeros = zeros;
	pthread_mutex_lock(&r->reclaim_lock);
	d->retain_hist[slot][d->retain_pos[slot]++ % RETAIN_EPOCHS] = pages;
	if (d->spare[slot] == NULL && !r->spares_off) {
		d->spare[slot] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&r->reclaim_lock);
	buffer_free(b);
}

/* Frees every spare; off: and keeps none from now on (out of running).
 * Returns true if there were any.
 */
static bool
drop_spares(struct secondary *r, bool off)
{
	struct buffer *drop[SLOTS];
	bool any = false;
	size_t i;
	int s;

	for (i = 0; i < r->ndisks; i++) {
		pthread_mutex_lock(&r->reclaim_lock);
		if (off)
			r->spares_off = true;
		for (s = 0; s < SLOTS; s++) {
			drop[s] = r->disks[i]->spare[s];
			r->disks[i]->spare[s] = NULL;
		}
		pthread_mutex_unlock(&r->reclaim_lock);
		for (s = 0; s < SLOTS; s++) {
			any |= drop[s] != NULL;
			buffer_free(drop[s]);
		}
	}
	return any;
}

static void *
reclaim_main(void *arg)
{
	struct secondary *r = arg;
	struct garbage *g;

	pthread_mutex_lock(&r->reclaim_lock);
	for (;;) {
		while (r->reclaim_list == NULL && !r->reclaim_stop)
			pthread_cond_wait(&r->reclaim_cond, &r->reclaim_lock);
		g = r->reclaim_list;
		if (g == NULL)
			break;		/* stopping and drained */
		r->reclaim_list = NULL;
		r->reclaim_busy = true;
		pthread_mutex_unlock(&r->reclaim_lock);
		while (g != NULL) {
			struct garbage *next = g->next;

			if (g->d)
				recycle(r, g->d, g->slot, g->buf);
			else
				buffer_free(g->buf);
			free(g);
			g = next;
		}
		pthread_mutex_lock(&r->reclaim_lock);
		r->reclaim_busy = false;
		pthread_cond_broadcast(&r->reclaim_done);
	}
	pthread_mutex_unlock(&r->reclaim_lock);
	return NULL;
}

/* Waits until the buffers handed to the reclaim thread are freed.  Returns
 * true if there were any: space a checkpoint freed is free now.
 */
static bool
reclaim_drain(struct secondary *r)
{
	bool pending;

	pthread_mutex_lock(&r->reclaim_lock);
	pending = r->reclaim_list != NULL || r->reclaim_busy;
	while (r->reclaim_list != NULL || r->reclaim_busy)
		pthread_cond_wait(&r->reclaim_done, &r->reclaim_lock);
	pthread_mutex_unlock(&r->reclaim_lock);
	return pending;
}

/* Frees b in the background, or with d set recycles it as d's spare for
 * slot; b is unreachable by any I/O by now.
 */
static void
reclaim(struct secondary *r, struct buffer *b, struct secondary_disk *d,
	enum slot slot)
{
	struct garbage *g;

	if (b == NULL)
		return;
	g = malloc(sizeof *g);
	if (g == NULL) {		/* free it here rather than leak it */
		buffer_free(b);
		return;
	}
	g->buf = b;
	g->d = d;
	g->slot = slot;
	pthread_mutex_lock(&r->reclaim_lock);
	g->next = r->reclaim_list;
	r->reclaim_list = g;
	pthread_cond_signal(&r->reclaim_cond);
	pthread_mutex_unlock(&r->reclaim_lock);
}

/* ---- construction ---- */

struct secondary *
secondary_new(const struct store_factory *factory)
{
	pthread_rwlockattr_t attr;
	struct secondary *r = calloc(1, sizeof *r);
	int err;

	if (r == NULL)
		return NULL;
	r->factory = *factory;
	r->state = SECONDARY_NONE;
	atomic_init(&r->s_consistent, true);
	pthread_mutex_init(&r->ctl_lock, NULL);
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->gate, &attr);
	pthread_rwlockattr_destroy(&attr);
	errlog_init(&r->errs);
	pthread_mutex_init(&r->limit_lock, NULL);
	pthread_mutex_init(&r->commit_lock, NULL);
	pthread_cond_init(&r->commit_cond, NULL);
	pthread_cond_init(&r->pending_cond, NULL);
	pthread_mutex_init(&r->reclaim_lock, NULL);
	pthread_cond_init(&r->reclaim_cond, NULL);
	pthread_cond_init(&r->reclaim_done, NULL);
	err = pthread_create(&r->reclaim_thread, NULL, reclaim_main, r);
	if (err != 0) {
		errno = err;
		log_error("start reclaim thread: %m");
		free(r);
		errno = err;
		return NULL;
	}
	return r;
}

static void
disk_free(struct secondary_disk *d)
{
	journal_close(d->journal);
	buffer_free(d->hidden);
	buffer_free(d->active);
	buffer_free(d->spare[SLOT_HIDDEN]);
	buffer_free(d->spare[SLOT_ACTIVE]);
	image_close(d->img);
	rangelock_release_all(&d->rl);
	pthread_mutex_destroy(&d->map_lock);
	pthread_mutex_destroy(&d->note_lock);
	free(d->notes);
	free(d->name);
	free(d);
}

static void join_commit(struct secondary *r);
static int notes_flush(struct secondary_disk *d);

void
secondary_free(struct secondary *r)
{
	size_t i;

	if (r == NULL)
		return;
	atomic_store(&r->commit_cancel, true);
	pthread_mutex_lock(&r->ctl_lock);
	join_commit(r);
	pthread_mutex_unlock(&r->ctl_lock);

	pthread_mutex_lock(&r->reclaim_lock);
	r->reclaim_stop = true;
	pthread_cond_signal(&r->reclaim_cond);
	pthread_mutex_unlock(&r->reclaim_lock);
	pthread_join(r->reclaim_thread, NULL);

	/* S flushed; in failover also active and the records noted since
	 * the VM's last flush, so a clean exit keeps its unflushed writes.
	 */
	for (i = 0; i < r->ndisks; i++) {
		if (notes_flush(r->disks[i]) == -1)
			log_warn("flush %s on close: %m", r->disks[i]->name);
		disk_free(r->disks[i]);
	}
	free(r->disks);
	free(r->jdir);
	free(r->bdir);
	free(r->prefix);
	pthread_rwlock_destroy(&r->gate);
	pthread_mutex_destroy(&r->ctl_lock);
	errlog_release(&r->errs);
	pthread_mutex_destroy(&r->limit_lock);
	pthread_mutex_destroy(&r->commit_lock);
	pthread_cond_destroy(&r->commit_cond);
	pthread_cond_destroy(&r->pending_cond);
	pthread_mutex_destroy(&r->reclaim_lock);
	pthread_cond_destroy(&r->reclaim_cond);
	pthread_cond_destroy(&r->reclaim_done);
	free(r);
}

struct secondary_disk *
secondary_add_disk(struct secondary *r, const char *name, struct image *img)
{
	struct secondary_disk *d = NULL, **nd;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE) {
		errno = EBUSY;
		goto err;
	}
	if (secondary_find_disk(r, name) != NULL) {
		errno = EEXIST;
		log_error("disk %s: a disk of that name exists", name);
		goto err;
	}
	d = calloc(1, sizeof *d);
	if (d == NULL || (d->name = strdup(name)) == NULL)
		goto err;
	nd = realloc(r->disks, (r->ndisks + 1) * sizeof *nd);
	if (nd == NULL)
		goto err;
	r->disks = nd;
	d->r = r;
	d->img = img;
	d->size = img->size;
	rangelock_init(&d->rl);
	pthread_mutex_init(&d->map_lock, NULL);
	pthread_mutex_init(&d->note_lock, NULL);
	d->index = r->ndisks;
	r->disks[r->ndisks++] = d;
	pthread_mutex_unlock(&r->ctl_lock);
	return d;
err:
	{
		int saved = errno;

		if (d != NULL)
			free(d->name);
		free(d);
		image_close(img);
		pthread_mutex_unlock(&r->ctl_lock);
		errno = saved;
	}
	return NULL;
}

size_t
secondary_ndisks(const struct secondary *r)
{
	return r->ndisks;
}

struct secondary_disk *
secondary_disk_at(struct secondary *r, size_t i)
{
	return i < r->ndisks ? r->disks[i] : NULL;
}

struct secondary_disk *
secondary_find_disk(struct secondary *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++)
		if (strcmp(r->disks[i]->name, name) == 0)
			return r->disks[i];
	return NULL;
}

struct image *
secondary_disk_image(struct secondary_disk *d)
{
	return d->img;
}

uint64_t
secondary_disk_size(const struct secondary_disk *d)
{
	return d->size;
}

enum secondary_state
secondary_state(struct secondary *r)
{
	enum secondary_state s;

	pthread_rwlock_rdlock(&r->gate);
	s = r->state;
	pthread_rwlock_unlock(&r->gate);
	return s;
}

int
secondary_accepts_primary(struct secondary *r)
{
	enum secondary_state s = secondary_state(r);

	return s == SECONDARY_NONE || s == SECONDARY_RUNNING;
}

/* ---- the buffer limit ---- */

void
secondary_set_buffer_limit(struct secondary *r, uint64_t bytes)
{
	pthread_mutex_lock(&r->limit_lock);
	r->limit = bytes;
	pthread_mutex_unlock(&r->limit_lock);
}

static void
account(struct secondary *r, int64_t delta)
{
	pthread_mutex_lock(&r->limit_lock);
	r->buffered += delta;
	pthread_mutex_unlock(&r->limit_lock);
}

/* Reserves need bytes under the limit before a write changes anything,
 * so that a refused write is refused whole.  0, or -1 with ENOSPC and the
 * reason recorded.
 */
static int
reserve(struct secondary_disk *d, uint64_t need, const char *what)
{
	struct secondary *r = d->r;
	uint64_t limit, used;

	pthread_mutex_lock(&r->limit_lock);
	limit = r->limit;
	used = r->buffered + r->reserved;
	if (limit == 0 || used + need <= limit) {
		r->reserved += need;
		pthread_mutex_unlock(&r->limit_lock);
		return 0;
	}
	pthread_mutex_unlock(&r->limit_lock);
	return refuse(r, ENOSPC, "%s: buffer_limit of %" PRIu64 " bytes "
		      "reached (%" PRIu64 " buffered): %s refused; a "
		      "checkpoint frees the buffers", d->name, limit, used,
		      what);
}

static bool
limited(struct secondary *r)
{
	bool on;

	pthread_mutex_lock(&r->limit_lock);
	on = r->limit != 0;
	pthread_mutex_unlock(&r->limit_lock);
	return on;
}

static void
unreserve(struct secondary *r, uint64_t n)
{
	pthread_mutex_lock(&r->limit_lock);
	r->reserved -= n;
	pthread_mutex_unlock(&r->limit_lock);
}

/* The bytes of b that take space. */
static uint64_t
occupied(const struct buffer *b)
{
	return extmap_bytes(b->map) - extmap_bytes(b->zeros);
}

/* Map changes, counted against the limit.  Caller holds d->map_lock.
 * map_insert: data; map_insert_zero: zeros (no space).
 */
static int
map_change(struct secondary_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len, bool insert, bool zero)
{
	uint64_t before = occupied(b);
	int ret;

	if (insert)
		ret = extmap_insert(b->map, off, len);
	else
		ret = extmap_remove(b->map, off, len);
	if (ret == 0 && zero)
		ret = extmap_insert(b->zeros, off, len);
	else if (ret == 0 && extmap_count(b->zeros) > 0)
		ret = extmap_remove(b->zeros, off, len);
	account(d->r, (int64_t) occupied(b) - (int64_t) before);
	return ret;
}

static int
map_insert(struct secondary_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	return map_change(d, b, off, len, true, false);
}

static int
map_insert_zero(struct secondary_disk *d, struct buffer *b, uint64_t off,
		uint64_t len)
{
	return map_change(d, b, off, len, true, true);
}

static int
map_remove(struct secondary_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	return map_change(d, b, off, len, false, false);
}

/* ---- layers ---- */

enum layer { LAYER_ACTIVE, LAYER_HIDDEN, LAYER_IMAGE };

/* Where V's bytes at pos come from, and up to where (at most end). */
static enum layer
view_source(struct secondary_disk *d, uint64_t pos, uint64_t end,
	    uint64_t *seg_end)
{
	uint64_t s, e, limit = end;
	enum layer l = LAYER_IMAGE;

	pthread_mutex_lock(&d->map_lock);
	if (d->active && extmap_next(d->active->map, pos, &s, &e) &&
	    s < end) {
		if (s == pos) {
			l = LAYER_ACTIVE;
			limit = e;
			goto out;
		}
		limit = s;
	}
	if (d->hidden && extmap_next(d->hidden->map, pos, &s, &e) &&
	    s < limit) {
		if (s == pos) {
			l = LAYER_HIDDEN;
			if (e < limit)
				limit = e;
		} else
			limit = s;
	}
out:
	pthread_mutex_unlock(&d->map_lock);
	*seg_end = limit < end ? limit : end;
	return l;
}

/* The buffer store behind a layer; NULL for the image. */
static struct store *
layer_store(struct secondary_disk *d, enum layer l)
{
	switch (l) {
	case LAYER_ACTIVE:
		return d->active->store;
	case LAYER_HIDDEN:
		return d->hidden->store;
	default:
		return NULL;
	}
}

static int
check_io(struct secondary_disk *d, size_t len, uint64_t off)
{
	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Writes buf into S, or zeroes the range when buf is NULL: punch says
 * whether a hole may be punched there (image.h).
 */
static int
image_write(struct secondary_disk *d, const void *buf, size_t len,
	    uint64_t off, bool punch)
{
	if (buf == NULL)
		return d->img->ops->zero(d->img, off, len, punch);
	return d->img->ops->pwrite(d->img, buf, len, off);
}

/* Writes (or zeroes, when buf is NULL) into a buffer and maps the range. */
static int
buffer_write(struct secondary_disk *d, struct buffer *b, const void *buf,
	     size_t len, uint64_t off)
{
	int ret, tries;

	/* A full file system may be full of buffers that a checkpoint
	 * dropped and the reclaim thread has not freed yet, or of the spares'
	 * retained blocks: free them, and try again, rather than fail for
	 * space already released.
	 */
	for (tries = 0; tries < 2; tries++) {
		if (buf == NULL)
			ret = b->store->ops->zero(b->store, off, len);
		else
			ret = b->store->ops->pwrite(b->store, buf, len, off);
		if (ret == 0 || errno != ENOSPC ||
		    !(reclaim_drain(d->r) | drop_spares(d->r, false)))
			break;
	}
	if (ret == -1)
		return -1;
	pthread_mutex_lock(&d->map_lock);
	ret = buf ? map_insert(d, b, off, len) : map_insert_zero(d, b, off, len);
	pthread_mutex_unlock(&d->map_lock);
	return ret;
}

/* Copies [off, off+len) from S into hidden.  0, or -1 with errno.  A
 * memory buffer is read into directly; others go through a bounce buffer.
 */
static int
save_range(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	struct buffer *h = d->hidden;
	size_t n = len < BOUNCE_MAX ? len : BOUNCE_MAX;
	char *bounce;
	uint64_t pos;
	int ret = -1;

	if (h->store->mem) {
		char *dst = (char *) h->store->mem + off;

		/* Fault fresh pages in with one call instead of one trap per
		 * page inside pread: a third of an ingest's CPU went to those
		 * traps (doc/performance.md); a recycled store's pages are
		 * there already.
		 */
		store_populate(h->store, off, len);
		if (d->img->ops->pread(d->img, dst, len, off) == -1)
			return -1;
		pthread_mutex_lock(&d->map_lock);
		ret = map_insert(d, h, off, len);
		pthread_mutex_unlock(&d->map_lock);
		return ret;
	}
	bounce = malloc(n);
	if (bounce == NULL)
		return -1;
	for (pos = off; pos < off + len; pos += n) {
		if (off + len - pos < n)
			n = off + len - pos;
		if (d->img->ops->pread(d->img, bounce, n, pos) == -1)
			goto out;
		if (buffer_write(d, d->hidden, bounce, n, pos) == -1)
			goto out;
	}
	ret = 0;
out:
	{
		int saved = errno;
		free(bounce);
		errno = saved;
	}
	return ret;
}

/* Bytes of [off, end) that neither buffer holds: what a save adds. */
static uint64_t
unsaved_bytes(struct secondary_disk *d, uint64_t off, uint64_t end)
{
	uint64_t pos, seg_end, n = 0;

	for (pos = off; pos < end; pos = seg_end)
		if (view_source(d, pos, end, &seg_end) == LAYER_IMAGE)
			n += seg_end - pos;
	return n;
}

/* Saves every part of [off, end) that neither buffer holds. */
static int
save_old(struct secondary_disk *d, uint64_t off, uint64_t end)
{
	uint64_t pos = off, seg_end;

	while (pos < end) {
		enum layer l = view_source(d, pos, end, &seg_end);

		if (l == LAYER_IMAGE && save_range(d, pos, seg_end - pos) == -1)
			return -1;
		pos = seg_end;
	}
	return 0;
}

#define STATE_BIT(s) (1u << (s))

/* Records why write_begin refused a write (errno kept). */
static void
refuse_io(struct secondary_disk *d, const char *what, size_t len, uint64_t off)
{
	if (errno == EINVAL)
		secondary_record_error(d->r, "%s: %s at %" PRIu64 "+%zu refused: "
				     "beyond the end of the disk (%" PRIu64
				     " bytes)", d->name, what, off, len,
				     d->size);
	else
		secondary_record_error(d->r, "%s: %s at %" PRIu64 "+%zu refused "
				     "in state %s", d->name, what, off, len,
				     secondary_state_name(secondary_state(d->r)));
}

/* Tells the tap that S takes bytes that are not the primary's. */
static int
tap_write(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	struct secondary *r = d->r;

	return r->tap.write ? r->tap.write(r->tap.opaque, d->index, off, len) :
	       0;
}

/* Begins a write of [off, off+len): checks the range, takes the gate
 * shared and then the range lock exclusively.  0: begun (end it with
 * io_end); 1: nothing to do (len 0); -1: refused, with errno = err when
 * the state is not in the accepted set, EINVAL beyond the end.
 */
static int
write_begin(struct secondary_disk *d, struct rangelock_entry *e, size_t len,
	    uint64_t off, unsigned accepted, int err)
{
	if (check_io(d, len, off) == -1)
		return -1;
	pthread_rwlock_rdlock(&d->r->gate);
	if (!(accepted & STATE_BIT(d->r->state))) {
		pthread_rwlock_unlock(&d->r->gate);
		errno = err;
		return -1;
	}
	if (len == 0) {
		pthread_rwlock_unlock(&d->r->gate);
		return 1;
	}
	rangelock_acquire(&d->rl, e, off, len, true);
	return 0;
}

/* Ends an I/O begun under the gate and the range lock: returns what it
 * reserved under the limit and lets go of both, keeping errno.
 */
static void
io_end(struct secondary_disk *d, struct rangelock_entry *e, uint64_t reserved)
{
	int saved = errno;

	if (reserved)
		unreserve(d->r, reserved);
	rangelock_release(&d->rl, e);
	pthread_rwlock_unlock(&d->r->gate);
	errno = saved;
}

/* ---- primary I/O ---- */

int
secondary_primary_read(struct secondary_disk *d, void *buf, size_t len,
		     uint64_t off)
{
	struct rangelock_entry e;
	int ret;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0)
		return 0;
	rangelock_acquire(&d->rl, &e, off, len, false);
	ret = d->img->ops->pread(d->img, buf, len, off);
	rangelock_release(&d->rl, &e);
	return ret;
}

int
secondary_primary_write(struct secondary_disk *d, const void *buf, size_t len,
		      uint64_t off)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	int ret;

	ret = write_begin(d, &e, len, off, STATE_BIT(SECONDARY_NONE) |
			  STATE_BIT(SECONDARY_RUNNING), ESHUTDOWN);
	if (ret != 0) {
		if (ret == -1)
			refuse_io(d, "primary write", len, off);
		return ret == 1 ? 0 : -1;
	}
	ret = -1;
	if (r->state == SECONDARY_RUNNING) {
		if (limited(r)) {
			need = unsaved_bytes(d, off, off + len);
			if (reserve(d, need, "primary write") == -1) {
				need = 0;
				goto out;
			}
		}
		if (save_old(d, off, off + len) == -1) {
			secondary_record_error(r, "%s: saving old data at %"
					     PRIu64 "+%zu into hidden failed, "
					     "primary write refused: %s",
					     d->name, off, len, strerror(errno));
			goto out;
		}
	}
	/* A primary's zero is WRITE_ZEROES without NO_HOLE, or a trim. */
	if (image_write(d, buf, len, off, true) == -1) {
		secondary_record_error(r, "%s: primary write at %" PRIu64
				     "+%zu failed on the secondary disk: %s",
				     d->name, off, len, strerror(errno));
		goto out;
	}
	atomic_fetch_add(&d->primary_write_bytes, len);
	ret = 0;
out:
	io_end(d, &e, need);
	return ret;
}

/* Zeroing is a write with no buffer; its length must fit a size_t. */
static int
zero_by(int (*write)(struct secondary_disk *, const void *, size_t, uint64_t),
	struct secondary_disk *d, uint64_t off, uint64_t len)
{
	if (len > SIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return write(d, NULL, len, off);
}

int
secondary_primary_zero(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return zero_by(secondary_primary_write, d, off, len);
}

int
secondary_primary_flush(struct secondary_disk *d)
{
	return d->img->ops->flush(d->img);
}

/* ---- view I/O ---- */

int
secondary_view_read(struct secondary_disk *d, void *buf, size_t len,
		  uint64_t off)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t pos, end = off + len, seg_end;
	int ret = -1;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0)
		return 0;
	pthread_rwlock_rdlock(&r->gate);
	rangelock_acquire(&d->rl, &e, off, len, false);
	for (pos = off; pos < end; pos = seg_end) {
		char *p = (char *) buf + (pos - off);
		struct store *s = layer_store(d, view_source(d, pos, end,
							     &seg_end));

		if (s == NULL) {
			if (d->img->ops->pread(d->img, p, seg_end - pos,
					       pos) == -1)
				goto out;
		} else if (s->ops->pread(s, p, seg_end - pos, pos) == -1)
			goto out;
	}
	ret = 0;
	atomic_fetch_add(&d->view_reads, 1);
	atomic_fetch_add(&d->view_read_bytes, len);
out:
	io_end(d, &e, 0);
	return ret;
}

_Static_assert(sizeof(struct rangelock_entry) <=
	       sizeof(((struct secondary_read *) 0)->space),
	       "struct replica_read too small for a range lock entry");

int
secondary_view_read_begin(struct secondary_disk *d, uint64_t off, size_t len,
			struct secondary_read *rd, struct secondary_seg *seg)
{
	struct secondary *r = d->r;
	struct rangelock_entry *e = (struct rangelock_entry *) rd->space;
	uint64_t seg_end;
	struct store *s;

	if (check_io(d, len, off) == -1)
		return -1;
	if (len == 0) {
		errno = EAGAIN;
		return -1;
	}
	pthread_rwlock_rdlock(&r->gate);
	rangelock_acquire(&d->rl, e, off, len, false);
	s = layer_store(d, view_source(d, off, off + len, &seg_end));
	if (seg_end < off + len)
		goto again;
	if (s == NULL) {
		if (d->img->fd < 0)
			goto again;
		*seg = (struct secondary_seg) { d->img->fd, off, NULL };
	} else if (s->mem != NULL)
		*seg = (struct secondary_seg) { -1, 0, (char *) s->mem + off };
	else if (s->fd >= 0)
		*seg = (struct secondary_seg) { s->fd, off, NULL };
	else
		goto again;
	atomic_fetch_add(&d->view_reads, 1);
	atomic_fetch_add(&d->view_read_bytes, len);
	rd->d = d;
	rd->lock = e;
	return 0;
again:
	io_end(d, e, 0);
	errno = EAGAIN;
	return -1;
}

void
secondary_view_read_end(struct secondary_read *rd)
{
	io_end(rd->d, rd->lock, 0);
}

/* Makes the view writes noted so far durable, then their records: S and
 * the active buffer are synced first, so that a record never reaches the
 * disk before its data (a durable D without its S data would let a
 * resumed commit drop buffered data the VM had flushed; an A without its
 * buffer data would commit stale bytes).  Notes added meanwhile, and any
 * whose append failed, wait for the next call.  Caller holds the gate (the
 * journal stays).  0, or -1.
 */
static int
notes_flush(struct secondary_disk *d)
{
	uint64_t upto;
	size_t i, k;
	int ret = 0;

	pthread_mutex_lock(&d->note_lock);
	upto = d->notes_base + d->nnotes;
	pthread_mutex_unlock(&d->note_lock);
	if (d->img->ops->flush(d->img) == -1)
		return -1;
	if (d->journal == NULL)
		return 0;
	if (d->active && store_sync(d->active->store) == -1)
		return -1;
	crash_point("notes_data_synced");
	pthread_mutex_lock(&d->note_lock);
	k = upto > d->notes_base ? (size_t) (upto - d->notes_base) : 0;
	for (i = 0; i < k; i++)
		if (journal_append(d->journal, d->notes[i].op, d->notes[i].off,
				   d->notes[i].len) == -1) {
			ret = -1;
			break;
		}
	/* Only the appended notes leave.  One that did not make it stays,
	 * with those after it: their writers may be waiting in their own
	 * notes_flush, which must fail (or append them) rather than find
	 * nothing left to append and return 0.
	 */
	memmove(d->notes, d->notes + i, (d->nnotes - i) * sizeof *d->notes);
	d->nnotes -= i;
	d->notes_base += i;
	pthread_mutex_unlock(&d->note_lock);
	if (ret == 0)
		ret = journal_sync(d->journal);
	if (ret == -1)
		secondary_record_error(d->r, "%s: the failover journal: %s",
				     d->name, strerror(errno));
	return ret;
}

/* After a view write during failover changed S or active: the record
 * that keeps a resumed commit from undoing it, appended by notes_flush
 * before the write returns: its data synced first (a power cut leaves no
 * record without its data), the record then in the journal (a kill -9,
 * which the holder's VM survives, loses no write the VM saw complete).
 * The cost, an fdatasync of S or active and one of the journal per view
 * write, is paid only during a failover commit.  Caller holds the gate
 * and the range lock, so records of overlapping writes keep their order.
 * 0, or -1 (recorded).
 */
static int
journal_note(struct secondary_disk *d, char op, uint64_t off, uint64_t len)
{
	struct journal_rec *n;

	if (d->journal == NULL)
		return 0;
	pthread_mutex_lock(&d->note_lock);
	if (d->nnotes == d->notes_cap) {
		size_t cap = d->notes_cap ? 2 * d->notes_cap : 64;

		n = realloc(d->notes, cap * sizeof *n);
		if (n == NULL) {
			pthread_mutex_unlock(&d->note_lock);
			secondary_record_error(d->r, "%s: view write at %" PRIu64
					     " refused: no memory", d->name,
					     off);
			errno = EIO;
			return -1;
		}
		d->notes = n;
		d->notes_cap = cap;
	}
	d->notes[d->nnotes++] = (struct journal_rec) { op, off, len };
	pthread_mutex_unlock(&d->note_lock);
	if (notes_flush(d) == -1) {
		errno = EIO;
		return -1;
	}
	return 0;
}

/* In FAILOVER_FAILED: buffered parts go to active, the rest to S. */
static int
write_failed_state(struct secondary_disk *d, const void *buf, size_t len,
		   uint64_t off, bool punch)
{
	uint64_t pos, end = off + len, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		const void *p = buf ? (const char *) buf + (pos - off) : NULL;
		enum layer l = view_source(d, pos, end, &seg_end);
		int ret;

		if (l == LAYER_IMAGE)
			ret = image_write(d, p, seg_end - pos, pos,
					  punch) == -1 ? -1 :
			      journal_note(d, JOURNAL_DROP, pos, seg_end - pos);
		else
			ret = buffer_write(d, d->active, p, seg_end - pos,
					   pos) == -1 ? -1 :
			      journal_note(d, JOURNAL_ACTIVE, pos, seg_end - pos);
		if (ret == -1)
			return -1;
	}
	return 0;
}

void (*secondary_failover_wait_hook)(struct secondary *r);

/* Waits while a failover is being made durable: a view write must not
 * reach S before the state file says failover (a crash would restart in
 * none with the VM's write mixed into S).  Without the gate held: the
 * failover takes it exclusively meanwhile.
 */
static void
wait_failover_durable(struct secondary *r)
{
	pthread_mutex_lock(&r->commit_lock);
	while (r->failover_pending) {
		if (secondary_failover_wait_hook)
			secondary_failover_wait_hook(r);
		pthread_cond_wait(&r->pending_cond, &r->commit_lock);
	}
	pthread_mutex_unlock(&r->commit_lock);
}

/* A view write of buf, or when buf is NULL a zeroing (punch: a hole may
 * be punched where it reaches S).
 */
static int
view_write(struct secondary_disk *d, const void *buf, size_t len, uint64_t off,
	   bool punch)
{
	struct secondary *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	bool recorded = false;
	int ret;

	/* The secondary VM must not write before start: EIO.  A failover
	 * that began after the wait: wait again, gate released.
	 */
	for (;;) {
		wait_failover_durable(r);
		ret = write_begin(d, &e, len, off, ~STATE_BIT(SECONDARY_NONE),
				  EIO);
		if (ret != 0) {
			if (ret == -1)
				refuse_io(d, "view write", len, off);
			return ret == 1 ? 0 : -1;
		}
		if (!r->failover_pending)
			break;
		io_end(d, &e, 0);
	}
	ret = -1;
	if (r->state != SECONDARY_RUNNING && tap_write(d, off, len) == -1) {
		secondary_record_error(r, "%s: view write at %" PRIu64 "+%zu: "
				     "cannot mark it dirty: %s", d->name, off,
				     len, strerror(errno));
		io_end(d, &e, 0);
		return -1;
	}
	switch (r->state) {
	case SECONDARY_RUNNING:
		/* Zeroing takes no space; data takes what active does not
		 * hold as data already.
		 */
		if (limited(r) && buf != NULL) {
			pthread_mutex_lock(&d->map_lock);
			need = len - extmap_bytes_in(d->active->map, off, len) +
			       extmap_bytes_in(d->active->zeros, off, len);
			pthread_mutex_unlock(&d->map_lock);
			if (reserve(d, need, "view write") == -1) {
				need = 0;
				recorded = true;
				break;
			}
		}
		ret = buffer_write(d, d->active, buf, len, off);
		break;
	case SECONDARY_FAILOVER:
		/* The buffered copy becomes obsolete: drop it after S has the
		 * new data, so the commit cannot write it over the new data.
		 */
		ret = image_write(d, buf, len, off, punch);
		if (ret == 0)
			crash_point("failover_view_write");	/* S, no D */
		if (ret == 0)
			ret = journal_note(d, JOURNAL_DROP, off, len);
		if (ret == 0) {
			pthread_mutex_lock(&d->map_lock);
			ret = map_remove(d, d->active, off, len);
			if (ret == 0)
				ret = map_remove(d, d->hidden, off, len);
			pthread_mutex_unlock(&d->map_lock);
		}
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = write_failed_state(d, buf, len, off, punch);
		break;
	default:
		ret = image_write(d, buf, len, off, punch);
		break;
	}
	if (ret == 0) {
		atomic_fetch_add(&d->view_write_bytes, len);
		atomic_fetch_add(&d->view_writes, 1);
	} else if (!recorded)
		secondary_record_error(r, "%s: view write at %" PRIu64 "+%zu "
				     "failed: %s", d->name, off, len,
				     strerror(errno));
	io_end(d, &e, need);
	return ret;
}

int
secondary_view_write(struct secondary_disk *d, const void *buf, size_t len,
		   uint64_t off)
{
	return view_write(d, buf, len, off, false);
}

static int
view_zero(struct secondary_disk *d, uint64_t off, uint64_t len, bool punch)
{
	if (len > SIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return view_write(d, NULL, (size_t) len, off, punch);
}

int
secondary_view_zero(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return view_zero(d, off, len, false);
}

int
secondary_view_punch(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	return view_zero(d, off, len, true);
}

int
secondary_view_flush(struct secondary_disk *d)
{
	struct secondary *r = d->r;
	int ret;

	pthread_rwlock_rdlock(&r->gate);
	/* While running, the VM's writes live in buffers that the next
	 * checkpoint drops by design: there is nothing to make durable.
	 */
	if (r->state == SECONDARY_RUNNING) {
		pthread_rwlock_unlock(&r->gate);
		return 0;
	}
	if (r->state != SECONDARY_FAILOVER &&
	    r->state != SECONDARY_FAILOVER_FAILED) {
		pthread_rwlock_unlock(&r->gate);
		return d->img->ops->flush(d->img);
	}
	/* Failover: the gate held keeps the journal open meanwhile.  S and
	 * active first, then the records that say where they are newer.
	 */
	ret = notes_flush(d);
	pthread_rwlock_unlock(&r->gate);
	return ret;
}

void
secondary_set_tap(struct secondary *r, const struct secondary_tap *tap)
{
	r->tap = tap ? *tap : (struct secondary_tap){ 0 };
}

/* ---- control ---- */

static bool journaled(struct secondary *r);

static int
call_hook(struct secondary *r, enum secondary_state next, bool journaled)
{
	if (r->hook == NULL)
		return 0;
	return r->hook(r->hook_opaque, next, journaled);
}

int
secondary_set_durable(struct secondary *r, const char *jdir, const char *bdir,
		    const char *prefix)
{
	char *j = strdup(jdir), *b = bdir ? strdup(bdir) : NULL;
	char *p = strdup(prefix);

	if (j == NULL || p == NULL || (bdir && b == NULL)) {
		free(j);
		free(b);
		free(p);
		return -1;
	}
	pthread_mutex_lock(&r->ctl_lock);
	free(r->jdir);
	free(r->bdir);
	free(r->prefix);
	r->jdir = j;
	r->bdir = b;
	r->prefix = p;
	pthread_mutex_unlock(&r->ctl_lock);
	return 0;
}

void
secondary_set_journal_generation(struct secondary *r, uint64_t gen)
{
	pthread_mutex_lock(&r->ctl_lock);
	r->generation = gen;
	pthread_mutex_unlock(&r->ctl_lock);
}

void
secondary_set_state_hook(struct secondary *r, secondary_state_hook *fn,
		       void *opaque)
{
	pthread_mutex_lock(&r->ctl_lock);
	r->hook = fn;
	r->hook_opaque = opaque;
	pthread_mutex_unlock(&r->ctl_lock);
}

/* Empty buffers for every disk, the spares that the reclaim thread
 * recycled or else new ones, or none (-1, errno, error recorded).
 */
static int
new_buffers(struct secondary *r, struct buffer **hidden, struct buffer **active)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];

		pthread_mutex_lock(&r->reclaim_lock);
		hidden[i] = d->spare[SLOT_HIDDEN];
		active[i] = d->spare[SLOT_ACTIVE];
		d->spare[SLOT_HIDDEN] = d->spare[SLOT_ACTIVE] = NULL;
		pthread_mutex_unlock(&r->reclaim_lock);
		if (hidden[i] == NULL)
			hidden[i] = buffer_new(r, d, "hidden");
		if (hidden[i] && active[i] == NULL)
			active[i] = buffer_new(r, d, "active");
		if (active[i] == NULL) {
			int saved = errno;

			secondary_record_error(r, "%s: making empty buffers "
					     "failed: %s", r->disks[i]->name,
					     strerror(saved));
			buffer_free(hidden[i]);
			buffer_free(active[i]);
			while (i-- > 0) {
				buffer_free(hidden[i]);
				buffer_free(active[i]);
			}
			errno = saved;
			return -1;
		}
	}
	return 0;
}

/* Puts the new buffers in place (NULL arrays: no buffers) and hands the
 * old ones to the reclaim thread, to recycle as spares (a checkpoint) or
 * to free (no new buffers: out of running).  The caller holds the gate
 * exclusively.
 */
static void
swap_buffers(struct secondary *r, struct buffer **hidden,
	     struct buffer **active)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];
		struct buffer *oh = d->hidden, *oa = d->active;

		pthread_mutex_lock(&d->map_lock);
		d->hidden = hidden ? hidden[i] : NULL;
		d->active = active ? active[i] : NULL;
		if (oh)
			account(r, -(int64_t) occupied(oh));
		if (oa)
			account(r, -(int64_t) occupied(oa));
		pthread_mutex_unlock(&d->map_lock);
		reclaim(r, oh, hidden ? d : NULL, SLOT_HIDDEN);
		reclaim(r, oa, hidden ? d : NULL, SLOT_ACTIVE);
	}
}

/* The upper bounds of the checkpoint duration histogram's buckets; the
 * last bucket has none.
 */
const uint64_t secondary_checkpoint_bucket_ns[SECONDARY_CHECKPOINT_BUCKETS - 1] = {
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
	10000000, 25000000, 50000000, 100000000, 250000000, 1000000000,
};

/* Under gate exclusive. */
static void
record_checkpoint(struct secondary *r, uint64_t ns)
{
	size_t i = 0;

	while (i < SECONDARY_CHECKPOINT_BUCKETS - 1 &&
	       ns > secondary_checkpoint_bucket_ns[i])
		i++;
	r->checkpoint_hist[i]++;
	r->checkpoint_ns_sum += ns;
}

/* Empties both buffers of every disk: the body of checkpoint and start. */
static int
empty_buffers(struct secondary *r, enum secondary_state next)
{
	struct buffer **hidden, **active;
	uint64_t t0;
	int ret = -1;

	/* The buffers the last checkpoint dropped are being recycled into
	 * spares; that takes little (no page is freed in a steady state), and
	 * is done long before the next checkpoint but in a burst of them.
	 */
	reclaim_drain(r);
	t0 = now_ns();

	hidden = calloc(r->ndisks + 1, sizeof *hidden);
	active = calloc(r->ndisks + 1, sizeof *active);
	if (hidden == NULL || active == NULL) {
		secondary_record_error(r, "making empty buffers failed: %s",
				     strerror(errno));
		goto out;
	}
	if (new_buffers(r, hidden, active) == -1)
		goto out;
	pthread_rwlock_wrlock(&r->gate);
	swap_buffers(r, hidden, active);
	if (next == SECONDARY_RUNNING && r->state == SECONDARY_RUNNING) {
		r->checkpoints++;
		r->last_checkpoint_ns = now_ns() - t0;
		record_checkpoint(r, r->last_checkpoint_ns);
	}
	r->state = next;
	pthread_rwlock_unlock(&r->gate);
	ret = 0;
out:
	{
		int saved = errno;
		free(hidden);
		free(active);
		errno = saved;
	}
	return ret;
}

static int
start(struct secondary *r, bool force)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case SECONDARY_NONE:
		if (r->ndisks == 0)
			ret = refuse(r, EINVAL, "start: the group has no disk");
		else if (!force && !atomic_load(&r->s_consistent))
			ret = refuse(r, EAGAIN, "start: S may be behind the "
				     "primary: colofs restarted after an "
				     "unclean stop in running and no primary "
				     "has connected since (s_consistent=0); "
				     "resync from the primary first, or "
				     "'start force' to start anyway");
		else {
			/* What was wrong before start (a refused word, the
			 * note of a restart or --demote) is over.
			 */
			secondary_clear_error(r);
			ret = empty_buffers(r, SECONDARY_RUNNING);
		}
		if (ret == 0 && r->tap.start)
			r->tap.start(r->tap.opaque,
				     atomic_load(&r->s_consistent));
		if (ret == 0 && force && !atomic_load(&r->s_consistent)) {
			log_warn("start force: S may be behind the primary");
			atomic_store(&r->s_consistent, true);
		}
		/* Not needed for safety (running comes back none). */
		if (ret == 0 && call_hook(r, SECONDARY_RUNNING, false) == -1)
			log_warn("start: the state file was not updated: %m");
		break;
	case SECONDARY_RUNNING:
		ret = refuse(r, EBUSY, "start: replication is already running");
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = refuse(r, EBUSY, "start: failover failed; "
			     "retry it with failover");
		break;
	default:
		ret = refuse_promoted(r, "start");
		break;
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_start(struct secondary *r)
{
	return start(r, false);
}

int
secondary_start_force(struct secondary *r)
{
	return start(r, true);
}

void
secondary_set_s_consistent(struct secondary *r, bool consistent)
{
	atomic_store(&r->s_consistent, consistent);
}

bool
secondary_s_consistent(struct secondary *r)
{
	return atomic_load(&r->s_consistent);
}

void
secondary_note_primary_connected(struct secondary *r)
{
	if (atomic_load(&r->s_consistent))
		return;
	pthread_mutex_lock(&r->ctl_lock);
	if (!atomic_load(&r->s_consistent)) {
		atomic_store(&r->s_consistent, true);
		log_info("a primary connected: S is no longer taken to be "
			 "behind it");
		/* Remembered, so that a crash now does not forget it. */
		if (call_hook(r, r->state, journaled(r)) == -1)
			log_warn("the state file was not updated: %m");
	}
	pthread_mutex_unlock(&r->ctl_lock);
}

int
secondary_checkpoint(struct secondary *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state == SECONDARY_NONE)
		ret = refuse(r, EINVAL, "checkpoint: replication is not running");
	else if (r->state == SECONDARY_RUNNING) {
		secondary_clear_error(r);	/* V := S: the epoch's errors end */
		ret = empty_buffers(r, SECONDARY_RUNNING);
	} else if (r->state == SECONDARY_FAILOVER_FAILED)
		ret = refuse(r, EBUSY, "checkpoint: failover failed and the "
			     "buffers hold the only copy of the VM's data; "
			     "retry with failover");
	else
		ret = refuse_promoted(r, "checkpoint");
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_stop(struct secondary *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case SECONDARY_NONE:
		ret = refuse(r, EINVAL, "stop: replication is not running");
		break;
	case SECONDARY_RUNNING:
		/* The fence first: done must outlive a crash from now on. */
		if (call_hook(r, SECONDARY_DONE, false) == -1) {
			ret = refuse(r, EIO, "stop: cannot record the state "
				     "done durably: %s", strerror(errno));
			break;
		}
		pthread_rwlock_wrlock(&r->gate);
		swap_buffers(r, NULL, NULL);
		r->state = SECONDARY_DONE;
		pthread_rwlock_unlock(&r->gate);
		drop_spares(r, true);
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = refuse(r, EBUSY, "stop: failover failed and the buffers "
			     "hold the only copy of the VM's data; retry "
			     "with failover");
		break;
	default:
		ret = refuse_promoted(r, "stop");
		break;
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

/* ---- failover durability (see "Durability" at the top) ---- */

/* DIR/PREFIX.DISK.WHAT into out.  0, or -1 with ENAMETOOLONG. */
static int
durable_path(char *out, size_t len, const char *dir, struct secondary_disk *d,
	     const char *what)
{
	if (snprintf(out, len, "%s/%s.%s.%s", dir, d->r->prefix, d->name,
		     what) >= (int) len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* The journal's file name within jdir (journal.c adds the directory). */
static int
journal_name(char *out, size_t len, struct secondary_disk *d)
{
	if (snprintf(out, len, "%s.%s.journal", d->r->prefix, d->name) >=
	    (int) len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Both maps as journal records.  Caller holds the gate exclusively. */
static int
snapshot_maps(struct secondary_disk *d, struct journal_rec **out, size_t *n)
{
	size_t cap = extmap_count(d->active->map) +
		     extmap_count(d->hidden->map), i = 0;
	struct journal_rec *recs = malloc((cap ? cap : 1) * sizeof *recs);
	struct buffer *bufs[2] = { d->active, d->hidden };
	char ops[2] = { JOURNAL_ACTIVE, JOURNAL_HIDDEN };
	uint64_t pos, st, en;
	int k;

	if (recs == NULL)
		return -1;
	pthread_mutex_lock(&d->map_lock);
	for (k = 0; k < 2; k++)
		for (pos = 0; extmap_next(bufs[k]->map, pos, &st, &en);
		     pos = en)
			recs[i++] = (struct journal_rec) { ops[k], st, en - st };
	pthread_mutex_unlock(&d->map_lock);
	*out = recs;
	*n = i;
	return 0;
}

/* Copies b's mapped bytes into a new file store in bdir: for a memory
 * store, or a file the kernel cannot relink.  Nothing writes b's store
 * during failover (view writes go to S), so no lock is held for the copy.
 */
static struct store *
copy_to_file(struct secondary_disk *d, struct buffer *b, const char *what,
	     char *bounce)
{
	char tag[128];
	struct store *ns;
	uint64_t pos = 0, st, en, p, n;
	int more;

	snprintf(tag, sizeof tag, "colofs-%s-%s", d->name, what);
	ns = store_file_new(d->r->bdir, d->size, tag);
	if (ns == NULL)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&d->map_lock);
		more = extmap_next(b->map, pos, &st, &en);
		pthread_mutex_unlock(&d->map_lock);
		if (!more)
			break;
		for (p = st; p < en; p += n) {
			const char *src = bounce;

			n = en - p < COMMIT_CHUNK ? en - p : COMMIT_CHUNK;
			if (b->store->mem)
				src = (const char *) b->store->mem + p;
			else if (b->store->ops->pread(b->store, bounce, n,
						      p) == -1)
				goto err;
			if (ns->ops->pwrite(ns, src, n, p) == -1)
				goto err;
		}
		pos = en;
	}
	return ns;
err:
	{
		int saved = errno;
		store_free(ns);
		errno = saved;
	}
	return NULL;
}

/* Writes the journal's stamp (journal.h) after the disk's bytes of a file
 * store: the file is the disk's size plus JOURNAL_STAMP_LEN from now on.
 */
static int
stamp_store(struct secondary_disk *d, struct store *s, const char *what)
{
	unsigned char stamp[JOURNAL_STAMP_LEN];

	journal_stamp(d->journal, strcmp(what, "active") == 0 ?
		      JOURNAL_ACTIVE : JOURNAL_HIDDEN, stamp);
	if (full_pwrite(s->fd, stamp, sizeof stamp, d->size) == -1) {
		log_error("%s: stamp the %s buffer file: %m", d->name, what);
		return -1;
	}
	return 0;
}

/* Gives buffer b a durable name in bdir, stamped for d's journal. */
static int
persist_buffer(struct secondary_disk *d, struct buffer *b, const char *what,
	       char *bounce)
{
	struct secondary *r = d->r;
	struct store *ns, *old;
	char path[4096];

	if (durable_path(path, sizeof path, r->bdir, d, what) == -1)
		return -1;
	if (b->store->fd >= 0 && stamp_store(d, b->store, what) == -1)
		return -1;
	if (store_link(b->store, path) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -1;
	ns = copy_to_file(d, b, what, bounce);
	if (ns == NULL)
		return -1;
	if (stamp_store(d, ns, what) == -1 || store_link(ns, path) == -1) {
		int saved = errno;
		store_free(ns);
		errno = saved;
		return -1;
	}
	pthread_rwlock_wrlock(&r->gate);
	old = b->store;
	b->store = ns;
	pthread_rwlock_unlock(&r->gate);
	store_free(old);
	return 0;
}

/* Removes the durable files of every disk (after done, or a failed set-up,
 * or leftovers found at a restart in done or none).  Caller is the commit
 * thread or holds ctl_lock with no commit running.
 */
static void
drop_durable(struct secondary *r)
{
	char path[4096];
	const char *whats[] = { "hidden", "active" };
	int jfd = r->jdir ? fdio_dir_open(r->jdir) : -1;
	size_t i, k;

	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];
		struct journal *j;

		pthread_rwlock_wrlock(&r->gate);
		j = d->journal;
		d->journal = NULL;
		pthread_mutex_lock(&d->note_lock);
		d->notes_base += d->nnotes;
		d->nnotes = 0;
		pthread_mutex_unlock(&d->note_lock);
		pthread_rwlock_unlock(&r->gate);
		journal_close(j);
		if (jfd >= 0 && journal_name(path, sizeof path, d) == 0) {
			unlinkat(jfd, path, 0);
			fdio_sweep_tmp(jfd, path);
		}
		crash_point("dropped.journal");
		for (k = 0; r->bdir && k < 2; k++)
			if (durable_path(path, sizeof path, r->bdir, d,
					 whats[k]) == 0)
				unlink(path);
	}
	if (jfd >= 0)
		close(jfd);
}

/* Steps 1-3 of "Durability": 0 (the journals are durable), or -1 with
 * errno and the reason recorded (the durable files are removed again).
 */
static int
make_durable(struct secondary *r, char *bounce)
{
	struct journal_rec *recs;
	char name[4096];
	int jfd, saved;
	size_t i, n;

	jfd = fdio_dir_open(r->jdir);
	if (jfd == -1) {
		log_error("open directory %s: %m", r->jdir);
		goto err;
	}
	pthread_rwlock_wrlock(&r->gate);
	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];

		if (journal_name(name, sizeof name, d) == -1 ||
		    snapshot_maps(d, &recs, &n) == -1) {
			pthread_rwlock_unlock(&r->gate);
			goto err;
		}
		d->journal = journal_create(jfd, name, d->name, d->size,
					    r->generation, recs, n);
		free(recs);
		if (d->journal == NULL) {
			pthread_rwlock_unlock(&r->gate);
			goto err;
		}
	}
	pthread_rwlock_unlock(&r->gate);
	crash_point("failover_journal_written");
	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];

		if (persist_buffer(d, d->hidden, "hidden", bounce) == -1 ||
		    persist_buffer(d, d->active, "active", bounce) == -1)
			goto err;
	}
	crash_point("failover_buffers_linked");
	if (durable_sync_dir(r->bdir) == -1)
		goto err;
	crash_point("failover_buffers_synced");
	for (i = 0; i < r->ndisks; i++)
		if (journal_commit(r->disks[i]->journal) == -1)
			goto err;
	close(jfd);
	return 0;
err:
	saved = errno;
	secondary_record_error(r, "failover: making the buffers durable "
			     "failed: %s", strerror(saved));
	if (jfd >= 0)
		close(jfd);
	drop_durable(r);
	errno = saved;
	return -1;
}

static bool
journaled(struct secondary *r)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++)
		if (r->disks[i]->journal == NULL)
			return false;
	return r->ndisks > 0;
}

/* ---- failover commit ---- */

/* Commits the buffered bytes of [off, end) into S. */
static int
commit_chunk(struct secondary_disk *d, uint64_t off, uint64_t end,
	     char *bounce)
{
	uint64_t pos, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		enum layer l = view_source(d, pos, end, &seg_end);
		const char *src;
		struct store *s;

		if (l == LAYER_IMAGE)
			continue;
		if (tap_write(d, pos, seg_end - pos) == -1) {
			secondary_record_error(d->r, "%s: failover commit at %"
					     PRIu64 ": cannot mark it dirty: "
					     "%s", d->name, pos,
					     strerror(errno));
			return -1;
		}
		s = l == LAYER_ACTIVE ? d->active->store : d->hidden->store;
		/* From a memory buffer straight into S; else via bounce. */
		src = s->mem ? (const char *) s->mem + pos : bounce;
		if ((!s->mem && s->ops->pread(s, bounce, seg_end - pos,
					      pos) == -1) ||
		    d->img->ops->pwrite(d->img, src, seg_end - pos,
					pos) == -1) {
			secondary_record_error(d->r, "%s: failover commit at %"
					     PRIu64 " failed: %s", d->name,
					     pos, strerror(errno));
			return -1;
		}
	}
	pthread_mutex_lock(&d->map_lock);
	if (map_remove(d, d->active, off, end - off) == -1 ||
	    map_remove(d, d->hidden, off, end - off) == -1) {
		pthread_mutex_unlock(&d->map_lock);
		secondary_record_error(d->r, "%s: failover commit: %s", d->name,
				     strerror(errno));
		return -1;
	}
	pthread_mutex_unlock(&d->map_lock);
	return 0;
}

/* The next buffered byte at or after pos: 1 and *start, or 0. */
static int
next_buffered(struct secondary_disk *d, uint64_t pos, uint64_t *start)
{
	uint64_t s1 = UINT64_MAX, s2 = UINT64_MAX, e;

	pthread_mutex_lock(&d->map_lock);
	if (!extmap_next(d->active->map, pos, &s1, &e))
		s1 = UINT64_MAX;
	if (!extmap_next(d->hidden->map, pos, &s2, &e))
		s2 = UINT64_MAX;
	pthread_mutex_unlock(&d->map_lock);
	*start = s1 < s2 ? s1 : s2;
	return *start != UINT64_MAX;
}

/* 0 committed, 1 cancelled, -1 failed. */
static int
commit_disk(struct secondary_disk *d, char *bounce)
{
	struct secondary *r = d->r;
	uint64_t pos = 0, start, end;
	struct rangelock_entry e;
	int ret;

	for (;;) {
		if (atomic_load(&r->commit_cancel))
			return 1;
		pthread_rwlock_rdlock(&r->gate);
		if (!next_buffered(d, pos, &start)) {
			pthread_rwlock_unlock(&r->gate);
			break;
		}
		end = start + COMMIT_CHUNK < d->size ? start + COMMIT_CHUNK
						     : d->size;
		rangelock_acquire(&d->rl, &e, start, end - start, true);
		ret = commit_chunk(d, start, end, bounce);
		rangelock_release(&d->rl, &e);
		pthread_rwlock_unlock(&r->gate);
		if (ret == -1)
			return -1;
		crash_point("commit_chunk");
		/* Start writing the chunk back now, so that the disk works
		 * while the next chunks are copied and the final flush has
		 * little left to wait for.  A hint: errors surface there.
		 */
		if (d->img->fd >= 0)
			sync_file_range(d->img->fd, start, end - start,
					SYNC_FILE_RANGE_WRITE);
		pos = end;
	}
	if (d->img->ops->flush(d->img) == -1) {
		secondary_record_error(r, "%s: failover commit: flush: %s",
				     d->name, strerror(errno));
		return -1;
	}
	return 0;
}

static void *
commit_main(void *arg)
{
	struct secondary *r = arg;
	char *bounce = malloc(COMMIT_CHUNK);
	enum secondary_state next = SECONDARY_DONE;
	size_t i;
	int ret = 0;

	if (bounce == NULL) {
		secondary_record_error(r, "failover commit: %s", strerror(errno));
		ret = -1;
	}
	for (i = 0; ret == 0 && i < r->ndisks; i++)
		ret = commit_disk(r->disks[i], bounce);
	free(bounce);
	/* The view writes' records too, before done: a crash before done is
	 * durable resumes the commit, which must not undo them.
	 */
	for (i = 0; ret == 0 && i < r->ndisks; i++) {
		pthread_rwlock_rdlock(&r->gate);
		ret = notes_flush(r->disks[i]);
		pthread_rwlock_unlock(&r->gate);
	}
	if (ret == 0)
		crash_point("commit_flushed");
	/* done must be durable before a view write can reach S unjournaled. */
	if (ret == 0 && call_hook(r, SECONDARY_DONE, false) == -1) {
		secondary_record_error(r, "failover: cannot record the state "
				     "done durably: %s; retry with failover",
				     strerror(errno));
		ret = -1;
	}

	pthread_rwlock_wrlock(&r->gate);
	if (ret == -1)
		next = SECONDARY_FAILOVER_FAILED;
	else if (ret == 1)
		next = SECONDARY_FAILOVER;	/* cancelled: left as it was */
	else
		swap_buffers(r, NULL, NULL);
	r->state = next;
	pthread_rwlock_unlock(&r->gate);
	if (next == SECONDARY_DONE) {
		crash_point("done_before_drop");
		drop_durable(r);
	}
	else if (next == SECONDARY_FAILOVER_FAILED &&
		 call_hook(r, SECONDARY_FAILOVER_FAILED, journaled(r)) == -1)
		log_warn("failover failed and the state file was not "
			 "updated: %m");

	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = false;
	pthread_cond_broadcast(&r->commit_cond);
	pthread_mutex_unlock(&r->commit_lock);
	return NULL;
}

/* Starts the commit thread (the state is FAILOVER).  0, or -1 with the
 * state FAILOVER_FAILED and the reason recorded (what: "failover" or
 * "resume").  Under ctl_lock.
 */
static int
commit_start(struct secondary *r, const char *what)
{
	int err;

	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = true;
	pthread_mutex_unlock(&r->commit_lock);
	err = pthread_create(&r->commit_thread, NULL, commit_main, r);
	if (err != 0) {
		pthread_rwlock_wrlock(&r->gate);
		r->state = SECONDARY_FAILOVER_FAILED;
		pthread_rwlock_unlock(&r->gate);
		pthread_mutex_lock(&r->commit_lock);
		r->commit_running = false;
		pthread_mutex_unlock(&r->commit_lock);
		return refuse(r, err, "%s: cannot start the commit: %s", what,
			      strerror(err));
	}
	r->commit_joinable = true;
	return 0;
}

/* Joins a finished or cancelled commit thread.  Caller holds ctl_lock. */
static void
join_commit(struct secondary *r)
{
	if (r->commit_joinable) {
		pthread_join(r->commit_thread, NULL);
		r->commit_joinable = false;
	}
}

/* Makes the failover durable before it is acknowledged: the journals and
 * buffer files (if the secondary has a buffer_dir), then the state file says
 * failover (the hook).  0, or -1 with errno and the reason recorded.
 * Under ctl_lock, the state FAILOVER with failover_pending.
 */
static int
failover_durable(struct secondary *r)
{
	char *bounce;
	int ret = 0;

	if (r->jdir && r->bdir && !journaled(r)) {
		bounce = malloc(COMMIT_CHUNK);
		if (bounce == NULL)
			return -1;
		ret = make_durable(r, bounce);
		free(bounce);
		if (ret == -1)
			return -1;
	}
	crash_point("failover_journaled");
	if (call_hook(r, SECONDARY_FAILOVER, journaled(r)) == -1) {
		int saved = errno;

		secondary_record_error(r, "failover: the state file was not "
				     "updated: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	return 0;
}

int
secondary_failover(struct secondary *r)
{
	enum secondary_state prev;
	int ret = 0, err;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case SECONDARY_NONE:
		ret = refuse(r, EINVAL, "failover: replication is not running");
		goto out;
	case SECONDARY_RUNNING:
	case SECONDARY_FAILOVER_FAILED:
		break;
	default:
		ret = refuse_promoted(r, "failover");
		goto out;
	}
	join_commit(r);
	prev = r->state;
	/* From here on I/O acts as in failover (primary writes refused, view
	 * writes into S and journaled), but the status still shows prev:
	 * failover is announced only once it is durable.
	 */
	pthread_rwlock_wrlock(&r->gate);
	r->state = SECONDARY_FAILOVER;
	r->shown = prev;
	pthread_mutex_lock(&r->commit_lock);
	r->failover_pending = true;
	pthread_mutex_unlock(&r->commit_lock);
	pthread_rwlock_unlock(&r->gate);
	/* A new failover: what came before it is over (a failed commit
	 * that this one retries records its error again if it fails).
	 */
	secondary_clear_error(r);
	ret = failover_durable(r);
	pthread_rwlock_wrlock(&r->gate);
	pthread_mutex_lock(&r->commit_lock);
	r->failover_pending = false;
	pthread_cond_broadcast(&r->pending_cond);
	pthread_mutex_unlock(&r->commit_lock);
	if (ret == -1)
		r->state = SECONDARY_FAILOVER_FAILED;
	pthread_rwlock_unlock(&r->gate);
	if (ret == -1) {
		err = errno;
		if (call_hook(r, SECONDARY_FAILOVER_FAILED, journaled(r)) == -1)
			log_warn("failover failed and the state file was not "
				 "updated: %m");
		ret = refuse(r, EIO, "failover: not durable, so not done: %s; "
			     "retry with failover", strerror(err));
		goto out;
	}
	crash_point("failover_acked");
	drop_spares(r, true);		/* no checkpoint comes any more */
	ret = commit_start(r, "failover");
out:
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_restore_done(struct secondary *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE) {
		ret = refuse(r, EBUSY, "restore: not in state none");
	} else {
		pthread_rwlock_wrlock(&r->gate);
		r->state = SECONDARY_DONE;
		pthread_rwlock_unlock(&r->gate);
		/* A kill after done was recorded may have left them. */
		drop_durable(r);
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

void
secondary_drop_leftovers(struct secondary *r)
{
	pthread_mutex_lock(&r->ctl_lock);
	if (r->state == SECONDARY_NONE && r->jdir != NULL)
		drop_durable(r);
	pthread_mutex_unlock(&r->ctl_lock);
}

struct replay {
	struct secondary_disk *d;
	struct buffer *hidden, *active;
};

static int
replay_rec(void *opaque, const struct journal_rec *rec)
{
	struct replay *rp = opaque;
	struct secondary_disk *d = rp->d;
	int ret;

	pthread_mutex_lock(&d->map_lock);
	switch (rec->op) {
	case JOURNAL_ACTIVE:
		ret = map_insert(d, rp->active, rec->off, rec->len);
		break;
	case JOURNAL_HIDDEN:
		ret = map_insert(d, rp->hidden, rec->off, rec->len);
		break;
	default:
		ret = map_remove(d, rp->active, rec->off, rec->len);
		if (ret == 0)
			ret = map_remove(d, rp->hidden, rec->off, rec->len);
		break;
	}
	pthread_mutex_unlock(&d->map_lock);
	return ret;
}

/* A buffer over the durable file DIR/PREFIX.DISK.WHAT, which must be a
 * regular file of exactly the disk's size plus the stamp (store_file_open
 * would size it silently) and carry the stamp of info's journal for this
 * buffer.  NULL with errno, and what is wrong in err.
 */
static struct buffer *
buffer_open(struct secondary_disk *d, const char *what,
	    const struct journal_info *info, char *err, size_t errlen)
{
	unsigned char stamp[JOURNAL_STAMP_LEN];
	char path[4096], why[256];
	struct buffer *b;
	struct stat st;
	int fd, dirfd;

	if (durable_path(path, sizeof path, d->r->bdir, d, what) == -1) {
		snprintf(err, errlen, "%s buffer file: %s", what,
			 strerror(errno));
		return NULL;
	}
	/* Not by path: no link followed, and only a file colofs owns. */
	dirfd = fdio_dir_open(d->r->bdir);
	fd = dirfd == -1 ? -1 : fdio_open_file_at(dirfd, strrchr(path, '/') + 1,
						  O_RDONLY);
	if (fd == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 saved == EINVAL ? "not a regular file"
					 : strerror(saved));
		if (dirfd >= 0)
			close(dirfd);
		errno = saved;
		return NULL;
	}
	close(dirfd);
	if (fdio_check_own(fd, why, sizeof why) == -1 || fstat(fd, &st) == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %.300s", path,
			 saved == EPERM ? why : strerror(saved));
		close(fd);
		errno = saved;
		return NULL;
	}
	if ((uint64_t) st.st_size != d->size + JOURNAL_STAMP_LEN) {
		snprintf(err, errlen, "buffer file %.600s: %jd bytes, the "
			 "journal needs the disk's size and a stamp, %" PRIu64,
			 path, (intmax_t) st.st_size,
			 d->size + JOURNAL_STAMP_LEN);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	if (full_pread(fd, stamp, sizeof stamp, d->size) == -1) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 strerror(saved));
		close(fd);
		errno = saved;
		return NULL;
	}
	close(fd);
	if (journal_stamp_check(info, strcmp(what, "active") == 0 ?
				JOURNAL_ACTIVE : JOURNAL_HIDDEN, stamp, why,
				sizeof why) == -1) {
		snprintf(err, errlen, "buffer file %.600s: %.300s", path, why);
		errno = EINVAL;
		return NULL;
	}
	b = calloc(1, sizeof *b);
	/* The store's size covers the stamp, so that opening it keeps it. */
	if (b == NULL || (b->map = extmap_new()) == NULL ||
	    (b->zeros = extmap_new()) == NULL ||
	    (b->store = store_file_open(path, d->size +
					JOURNAL_STAMP_LEN)) == NULL) {
		int saved = errno;

		snprintf(err, errlen, "buffer file %.600s: %s", path,
			 strerror(saved));
		buffer_free(b);
		errno = saved;
		return NULL;
	}
	return b;
}

/* Reads, checks and replays disk d's journal and opens its buffer files
 * into rp.  0, or -1 with errno and what is wrong (naming the file) in
 * err.  Nothing is written anywhere but the journal's torn tail.
 */
static int
resume_disk(struct secondary_disk *d, int jfd, struct replay *rp, char *err,
	    size_t errlen)
{
	struct journal_info info;
	char name[4096], why[512];
	size_t i;

	rp->d = d;
	if (journal_name(name, sizeof name, d) == -1) {
		snprintf(err, errlen, "journal of %s: %s", d->name,
			 strerror(errno));
		return -1;
	}
	if (journal_load(jfd, name, d->name, d->size, &info, &d->journal, why,
			 sizeof why) == -1) {
		int saved = errno;

		snprintf(err, errlen, "journal %.300s/%.300s: %.400s", d->r->jdir, name,
			 why);
		errno = saved;
		return -1;
	}
	if (info.torn)
		log_warn("journal %.300s/%.300s: a torn last record was ignored",
			 d->r->jdir, name);
	rp->hidden = buffer_open(d, "hidden", &info, err, errlen);
	rp->active = rp->hidden ? buffer_open(d, "active", &info, err, errlen)
				: NULL;
	if (rp->active == NULL)
		goto fail;
	for (i = 0; i < info.nrecs; i++) {
		if (replay_rec(rp, &info.recs[i]) == -1) {
			snprintf(err, errlen, "journal %.300s/%.300s: replay: %s",
				 d->r->jdir, name, strerror(errno));
			goto fail;
		}
	}
	journal_info_release(&info);
	return 0;
fail:
	{
		int saved = errno;

		journal_info_release(&info);
		errno = saved;
	}
	return -1;
}

/* Loads the buffers and journals a failover (or a handover) left in the
 * durable directories and installs them with the state next.  Caller
 * holds ctl_lock; the state is none.  0, or -1 with errno, what is wrong
 * in err, and nothing installed.
 */
static int
load_durable(struct secondary *r, enum secondary_state next, char *err,
	     size_t errlen)
{
	struct replay *rp = NULL;
	size_t i, k;
	int saved, jfd = -1;

	rp = calloc(r->ndisks, sizeof *rp);
	jfd = fdio_dir_open(r->jdir);
	if (rp == NULL || jfd == -1) {
		snprintf(err, errlen, "%s: %s", r->jdir, strerror(errno));
		goto fail;
	}
	/* Every disk is checked before any commit writes S. */
	for (i = 0; i < r->ndisks; i++)
		if (resume_disk(r->disks[i], jfd, &rp[i], err, errlen) == -1)
			goto fail;
	close(jfd);
	pthread_rwlock_wrlock(&r->gate);
	for (i = 0; i < r->ndisks; i++) {
		r->disks[i]->hidden = rp[i].hidden;
		r->disks[i]->active = rp[i].active;
	}
	r->state = next;
	pthread_rwlock_unlock(&r->gate);
	free(rp);
	return 0;
fail:
	saved = errno ? errno : EINVAL;
	if (jfd >= 0)
		close(jfd);
	for (i = 0; i < r->ndisks; i++) {
		if (rp) {
			for (k = 0; k < 2; k++) {
				struct buffer *b = k ? rp[i].active
						     : rp[i].hidden;
				if (b)
					account(r, -(int64_t) occupied(b));
				buffer_free(b);
			}
		}
		journal_close(r->disks[i]->journal);
		r->disks[i]->journal = NULL;
	}
	free(rp);
	errno = saved;
	return -1;
}

int
secondary_resume_failover(struct secondary *r)
{
	char err[1024] = "";
	int ret;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE || r->jdir == NULL || r->bdir == NULL ||
	    r->ndisks == 0)
		ret = refuse(r, EINVAL, "resume: nothing to resume from");
	else if (load_durable(r, SECONDARY_FAILOVER, err, sizeof err) == -1)
		ret = refuse(r, errno, "resume: the interrupted failover "
			     "cannot be finished: %s; nothing was written to "
			     "S (see colofs(8), \"A damaged failover "
			     "journal\")", err);
	else
		ret = commit_start(r, "resume");
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_handover(struct secondary *r)
{
	char *bounce = NULL;
	size_t i;
	int ret = -1;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_RUNNING || r->jdir == NULL ||
	    r->bdir == NULL) {
		ret = refuse(r, EINVAL, "handover: only in running, with a "
			     "buffer_dir");
		goto out;
	}
	bounce = malloc(COMMIT_CHUNK);
	if (bounce == NULL || make_durable(r, bounce) == -1)
		goto out;
	/* The files stay; the next process replays them. */
	for (i = 0; i < r->ndisks; i++) {
		struct journal *j;

		pthread_rwlock_wrlock(&r->gate);
		j = r->disks[i]->journal;
		r->disks[i]->journal = NULL;
		pthread_rwlock_unlock(&r->gate);
		journal_close(j);
	}
	ret = 0;
out:
	free(bounce);
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_resume_running(struct secondary *r)
{
	char err[1024] = "";
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != SECONDARY_NONE || r->jdir == NULL || r->bdir == NULL ||
	    r->ndisks == 0)
		ret = refuse(r, EINVAL, "resume: nothing to resume from");
	else if (load_durable(r, SECONDARY_RUNNING, err, sizeof err) == -1)
		ret = refuse(r, errno, "resume: the buffers handed over by "
			     "the last process cannot be read: %s", err);
	else
		drop_durable(r);	/* open: the names can go */
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

void
secondary_wait_commit(struct secondary *r)
{
	/* A failover being made durable holds ctl_lock until its commit
	 * thread runs (or it failed): wait for that first.
	 */
	pthread_mutex_lock(&r->ctl_lock);
	pthread_mutex_unlock(&r->ctl_lock);
	pthread_mutex_lock(&r->commit_lock);
	while (r->commit_running)
		pthread_cond_wait(&r->commit_cond, &r->commit_lock);
	pthread_mutex_unlock(&r->commit_lock);
}

/* ---- status ---- */

/* Bytes held by either map: |A| + |H| - |A and H|. */
static uint64_t
union_bytes(struct extmap *a, struct extmap *h)
{
	uint64_t pos = 0, s, e, both = 0;

	while (extmap_next(a, pos, &s, &e)) {
		both += extmap_bytes_in(h, s, e - s);
		pos = e;
	}
	return extmap_bytes(a) + extmap_bytes(h) - both;
}

int
secondary_get_status(struct secondary *r, struct secondary_status *st)
{
	size_t i;

	memset(st, 0, sizeof *st);
	pthread_rwlock_rdlock(&r->gate);
	st->disks = calloc(r->ndisks ? r->ndisks : 1, sizeof *st->disks);
	if (st->disks == NULL) {
		pthread_rwlock_unlock(&r->gate);
		return -1;
	}
	st->state = r->failover_pending ? r->shown : r->state;
	st->s_consistent = atomic_load(&r->s_consistent);
	st->checkpoints = r->checkpoints;
	st->last_checkpoint_ns = r->last_checkpoint_ns;
	memcpy(st->checkpoint_hist, r->checkpoint_hist,
	       sizeof st->checkpoint_hist);
	st->checkpoint_ns_sum = r->checkpoint_ns_sum;
	st->errors = atomic_load(&r->errors);
	st->unclean_disconnects = atomic_load(&r->unclean_disconnects);
	pthread_mutex_lock(&r->limit_lock);
	st->buffer_bytes = r->buffered;
	st->buffer_limit = r->limit;
	pthread_mutex_unlock(&r->limit_lock);
	st->ndisks = r->ndisks;
	for (i = 0; i < r->ndisks; i++) {
		struct secondary_disk *d = r->disks[i];
		struct secondary_disk_status *ds = &st->disks[i];

		ds->name = d->name;
		ds->size = d->size;
		ds->primary_write_bytes = atomic_load(&d->primary_write_bytes);
		ds->view_write_bytes = atomic_load(&d->view_write_bytes);
		ds->view_writes = atomic_load(&d->view_writes);
		ds->view_reads = atomic_load(&d->view_reads);
		ds->view_read_bytes = atomic_load(&d->view_read_bytes);
		if (d->img->ops->overlay_bytes)
			ds->overlay_bytes = d->img->ops->overlay_bytes(d->img);
		/* The live buffers' resident sets change only once they are
		 * dropped, which the gate holds off.
		 */
		pthread_mutex_lock(&r->reclaim_lock);
		for (int s = 0; s < SLOTS; s++)
			if (d->spare[s])
				st->buffer_retained_bytes +=
					store_retained(d->spare[s]->store);
		pthread_mutex_unlock(&r->reclaim_lock);
		if (d->hidden)
			st->buffer_retained_bytes +=
				store_retained(d->hidden->store);
		if (d->active)
			st->buffer_retained_bytes +=
				store_retained(d->active->store);
		pthread_mutex_lock(&d->map_lock);
		if (d->hidden) {
			ds->hidden_bytes = extmap_bytes(d->hidden->map);
			ds->hidden_extents = extmap_count(d->hidden->map);
			ds->map_mem_bytes += extmap_mem_bytes(d->hidden->map);
		}
		if (d->active) {
			ds->active_bytes = extmap_bytes(d->active->map);
			ds->active_extents = extmap_count(d->active->map);
			ds->map_mem_bytes += extmap_mem_bytes(d->active->map);
		}
		if ((r->state == SECONDARY_FAILOVER ||
		     r->state == SECONDARY_FAILOVER_FAILED) &&
		    d->hidden && d->active)
			ds->commit_remaining_bytes =
				union_bytes(d->active->map, d->hidden->map);
		pthread_mutex_unlock(&d->map_lock);
	}
	st->error_time = errlog_current(&r->errs, st->error, sizeof st->error);
	pthread_rwlock_unlock(&r->gate);
	return 0;
}

void
secondary_status_release(struct secondary_status *st)
{
	free(st->disks);
	st->disks = NULL;
}
