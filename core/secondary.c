/* SPDX-License-Identifier: MIT */
/* The secondary engine: the secondary side of COLO block replication.
 *
 * The engine is four files around secondary-internal.h (its structures,
 * the lock order below and the helpers they share): this one (errors,
 * construction, the buffer limit, control, status), secondary-buffers.c
 * (the reclaim thread, spares and buffer_warm), secondary-io.c (the
 * layers, the primary's and the VM's I/O) and secondary-failover.c (the
 * durable failover and its commit).
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
#include "secondary-internal.h"

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
int
sec_refuse(struct secondary *r, int err, const char *fmt, ...)
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
int
sec_refuse_promoted(struct secondary *r, const char *word)
{
	if (r->state == SECONDARY_FAILOVER)
		return sec_refuse(r, EBUSY, "%s: a failover is committing the "
			      "buffers into S (state failover, then done); "
			      "nothing to do", word);
	return sec_refuse(r, EBUSY, "%s: this disk is promoted (state done "
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
	err = pthread_create(&r->reclaim_thread, NULL, sec_reclaim_main, r);
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
	sec_buffer_free(d->hidden);
	sec_buffer_free(d->active);
	for (int s = 0; s < SLOTS; s++)
		while (d->nspare[s] > 0)
			sec_buffer_free(sec_spare_take(d, (enum slot) s));
	image_close(d->img);
	rangelock_release_all(&d->rl);
	pthread_mutex_destroy(&d->map_lock);
	pthread_mutex_destroy(&d->note_lock);
	free(d->notes);
	free(d->name);
	free(d);
}

void
secondary_free(struct secondary *r)
{
	size_t i;

	if (r == NULL)
		return;
	atomic_store(&r->commit_cancel, true);
	pthread_mutex_lock(&r->ctl_lock);
	sec_join_commit(r);
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
		if (sec_notes_flush(r->disks[i]) == -1)
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

void
sec_account(struct secondary *r, int64_t delta)
{
	pthread_mutex_lock(&r->limit_lock);
	r->buffered += delta;
	pthread_mutex_unlock(&r->limit_lock);
}

/* Reserves need bytes under the limit before a write changes anything,
 * so that a refused write is refused whole.  0, or -1 with ENOSPC and the
 * reason recorded.
 */
int
sec_reserve(struct secondary_disk *d, uint64_t need, const char *what)
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
	return sec_refuse(r, ENOSPC, "%s: buffer_limit of %" PRIu64 " bytes "
		      "reached (%" PRIu64 " buffered): %s refused; a "
		      "checkpoint frees the buffers", d->name, limit, used,
		      what);
}

bool
sec_limited(struct secondary *r)
{
	bool on;

	pthread_mutex_lock(&r->limit_lock);
	on = r->limit != 0;
	pthread_mutex_unlock(&r->limit_lock);
	return on;
}

void
sec_unreserve(struct secondary *r, uint64_t n)
{
	pthread_mutex_lock(&r->limit_lock);
	r->reserved -= n;
	pthread_mutex_unlock(&r->limit_lock);
}

/* The bytes of b that take space. */
uint64_t
sec_occupied(const struct buffer *b)
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
	uint64_t before = sec_occupied(b);
	int ret;

	if (insert)
		ret = extmap_insert(b->map, off, len);
	else
		ret = extmap_remove(b->map, off, len);
	if (ret == 0 && zero)
		ret = extmap_insert(b->zeros, off, len);
	else if (ret == 0 && extmap_count(b->zeros) > 0)
		ret = extmap_remove(b->zeros, off, len);
	sec_account(d->r, (int64_t) sec_occupied(b) - (int64_t) before);
	return ret;
}

int
sec_map_insert(struct secondary_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	return map_change(d, b, off, len, true, false);
}

int
sec_map_insert_zero(struct secondary_disk *d, struct buffer *b, uint64_t off,
		uint64_t len)
{
	return map_change(d, b, off, len, true, true);
}

int
sec_map_remove(struct secondary_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	return map_change(d, b, off, len, false, false);
}

/* ---- control ---- */

int
sec_call_hook(struct secondary *r, enum secondary_state next, bool journaled)
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
		hidden[i] = sec_spare_take(d, SLOT_HIDDEN);
		active[i] = sec_spare_take(d, SLOT_ACTIVE);
		pthread_mutex_unlock(&r->reclaim_lock);
		if (hidden[i] == NULL)
			hidden[i] = sec_buffer_new(r, d, "hidden");
		if (hidden[i] && active[i] == NULL)
			active[i] = sec_buffer_new(r, d, "active");
		if (active[i] == NULL) {
			int saved = errno;

			secondary_record_error(r, "%s: making empty buffers "
					     "failed: %s", r->disks[i]->name,
					     strerror(saved));
			sec_buffer_free(hidden[i]);
			sec_buffer_free(active[i]);
			while (i-- > 0) {
				sec_buffer_free(hidden[i]);
				sec_buffer_free(active[i]);
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
void
sec_swap_buffers(struct secondary *r, struct buffer **hidden,
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
			sec_account(r, -(int64_t) sec_occupied(oh));
		if (oa)
			sec_account(r, -(int64_t) sec_occupied(oa));
		pthread_mutex_unlock(&d->map_lock);
		sec_reclaim(r, oh, hidden ? d : NULL, SLOT_HIDDEN);
		sec_reclaim(r, oa, hidden ? d : NULL, SLOT_ACTIVE);
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
	sec_reclaim_drain(r);
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
	sec_swap_buffers(r, hidden, active);
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

int
sec_start(struct secondary *r, bool force)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case SECONDARY_NONE:
		if (r->ndisks == 0)
			ret = sec_refuse(r, EINVAL, "start: the group has no disk");
		else if (!force && !atomic_load(&r->s_consistent))
			ret = sec_refuse(r, EAGAIN, "start: S may be behind the "
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
		if (ret == 0 && sec_call_hook(r, SECONDARY_RUNNING, false) == -1)
			log_warn("start: the state file was not updated: %m");
		break;
	case SECONDARY_RUNNING:
		ret = sec_refuse(r, EBUSY, "start: replication is already running");
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = sec_refuse(r, EBUSY, "start: failover failed; "
			     "retry it with failover");
		break;
	default:
		ret = sec_refuse_promoted(r, "start");
		break;
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
secondary_start(struct secondary *r)
{
	return sec_start(r, false);
}

int
secondary_start_force(struct secondary *r)
{
	return sec_start(r, true);
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
		if (sec_call_hook(r, r->state, sec_journaled(r)) == -1)
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
		ret = sec_refuse(r, EINVAL, "checkpoint: replication is not running");
	else if (r->state == SECONDARY_RUNNING) {
		secondary_clear_error(r);	/* V := S: the epoch's errors end */
		ret = empty_buffers(r, SECONDARY_RUNNING);
	} else if (r->state == SECONDARY_FAILOVER_FAILED)
		ret = sec_refuse(r, EBUSY, "checkpoint: failover failed and the "
			     "buffers hold the only copy of the VM's data; "
			     "retry with failover");
	else
		ret = sec_refuse_promoted(r, "checkpoint");
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
		ret = sec_refuse(r, EINVAL, "stop: replication is not running");
		break;
	case SECONDARY_RUNNING:
		/* The fence first: done must outlive a crash from now on. */
		if (sec_call_hook(r, SECONDARY_DONE, false) == -1) {
			ret = sec_refuse(r, EIO, "stop: cannot record the state "
				     "done durably: %s", strerror(errno));
			break;
		}
		pthread_rwlock_wrlock(&r->gate);
		sec_swap_buffers(r, NULL, NULL);
		r->state = SECONDARY_DONE;
		pthread_rwlock_unlock(&r->gate);
		sec_drop_spares(r, true);
		break;
	case SECONDARY_FAILOVER_FAILED:
		ret = sec_refuse(r, EBUSY, "stop: failover failed and the buffers "
			     "hold the only copy of the VM's data; retry "
			     "with failover");
		break;
	default:
		ret = sec_refuse_promoted(r, "stop");
		break;
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
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
	st->buffer_warming_bytes = atomic_load(&r->warming);
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
			for (unsigned k = 0; k < d->nspare[s]; k++)
				st->buffer_retained_bytes += store_retained(
					d->spare[s][k]->store);
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
