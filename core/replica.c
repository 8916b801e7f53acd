/* SPDX-License-Identifier: MIT */
/* The replica: the secondary side of COLO block replication.
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
 *   5. r->err_lock, r->reclaim_lock, r->commit_lock, r->limit_lock:
 *      leaves.
 * Because I/O to a range holds d->rl, the maps cannot change within that
 * range while the I/O runs, so a lookup made under map_lock stays true
 * after map_lock is dropped for the I/O itself.
 *
 * Emptying a buffer costs the same however much it holds: a checkpoint
 * makes fresh empty buffers before taking the gate, swaps them in under
 * it, and hands the old ones to a reclaim thread that frees them.
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
#include <time.h>

#include "extmap.h"
#include "log.h"
#include "rangelock.h"
#include "replica.h"

#define BOUNCE_MAX (1024 * 1024)	/* bytes copied per step */
#define COMMIT_CHUNK (4 * 1024 * 1024)	/* bytes committed per lock */

struct buffer {
	struct store *store;
	struct extmap *map;		/* protected by the disk's map_lock */
};

struct replica_disk {
	struct replica *r;
	char *name;
	struct image *img;
	uint64_t size;
	struct rangelock rl;
	pthread_mutex_t map_lock;
	struct buffer *hidden, *active;	/* swapped under r->gate exclusive */
	atomic_uint_fast64_t primary_write_bytes;
	atomic_uint_fast64_t view_write_bytes;
};

struct garbage {
	struct garbage *next;
	struct buffer *buf;
};

struct replica {
	struct store_factory factory;
	pthread_mutex_t ctl_lock;
	pthread_rwlock_t gate;
	enum replica_state state;	/* written under gate exclusive */
	uint64_t checkpoints;		/* written under gate exclusive */
	uint64_t last_checkpoint_ns;	/* written under gate exclusive */
	atomic_uint_fast64_t unclean_disconnects;

	/* Bytes mapped in every disk's buffers, and bytes reserved by writes
	 * in flight; both protected by limit_lock.  limit 0: none.
	 */
	pthread_mutex_t limit_lock;
	uint64_t limit, buffered, reserved;

	struct replica_disk **disks;	/* fixed once started */
	size_t ndisks;

	pthread_mutex_t err_lock;
	char error[512];		/* protected by err_lock */

	pthread_mutex_t commit_lock;
	pthread_cond_t commit_cond;
	bool commit_running;		/* protected by commit_lock */
	bool commit_joinable;		/* protected by ctl_lock */
	atomic_bool commit_cancel;
	pthread_t commit_thread;

	pthread_mutex_t reclaim_lock;
	pthread_cond_t reclaim_cond;
	struct garbage *reclaim_list;	/* protected by reclaim_lock */
	bool reclaim_stop;		/* protected by reclaim_lock */
	pthread_t reclaim_thread;
};

const char *
replica_state_name(enum replica_state s)
{
	switch (s) {
	case REPLICA_NONE: return "none";
	case REPLICA_RUNNING: return "running";
	case REPLICA_FAILOVER: return "failover";
	case REPLICA_FAILOVER_FAILED: return "failover_failed";
	case REPLICA_DONE: return "done";
	}
	abort();
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- errors ---- */

static void
vrecord(struct replica *r, const char *fmt, va_list ap)
{
	int saved = errno;

	pthread_mutex_lock(&r->err_lock);
	vsnprintf(r->error, sizeof r->error, fmt, ap);
	pthread_mutex_unlock(&r->err_lock);
	errno = saved;
}

void
replica_record_error(struct replica *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(r, fmt, ap);
	va_end(ap);
}

/* Records the reason for a refusal and returns -1 with errno = err. */
static int __attribute__((format(printf, 3, 4)))
refuse(struct replica *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(r, fmt, ap);
	va_end(ap);
	errno = err;
	return -1;
}

void
replica_clear_error(struct replica *r)
{
	pthread_mutex_lock(&r->err_lock);
	r->error[0] = '\0';
	pthread_mutex_unlock(&r->err_lock);
}

void
replica_last_error(struct replica *r, char *buf, size_t len)
{
	pthread_mutex_lock(&r->err_lock);
	snprintf(buf, len, "%s", r->error);
	pthread_mutex_unlock(&r->err_lock);
}

void
replica_note_unclean_disconnect(struct replica *r, const char *why)
{
	atomic_fetch_add(&r->unclean_disconnects, 1);
	replica_record_error(r, "primary disconnected without NBD_CMD_DISC "
			     "(writes may be missing): %s", why);
}

/* ---- buffers and their reclaim ---- */

static void
buffer_free(struct buffer *b)
{
	if (b == NULL)
		return;
	store_free(b->store);
	extmap_free(b->map);
	free(b);
}

static struct buffer *
buffer_new(struct replica *r, struct replica_disk *d, const char *what)
{
	char tag[128];
	struct buffer *b = calloc(1, sizeof *b);

	if (b == NULL)
		return NULL;
	snprintf(tag, sizeof tag, "colofs-%s-%s", d->name, what);
	b->map = extmap_new();
	if (b->map == NULL)
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

static void *
reclaim_main(void *arg)
{
	struct replica *r = arg;
	struct garbage *g;

	pthread_mutex_lock(&r->reclaim_lock);
	for (;;) {
		while (r->reclaim_list == NULL && !r->reclaim_stop)
			pthread_cond_wait(&r->reclaim_cond, &r->reclaim_lock);
		g = r->reclaim_list;
		if (g == NULL)
			break;		/* stopping and drained */
		r->reclaim_list = NULL;
		pthread_mutex_unlock(&r->reclaim_lock);
		while (g != NULL) {
			struct garbage *next = g->next;

			buffer_free(g->buf);
			free(g);
			g = next;
		}
		pthread_mutex_lock(&r->reclaim_lock);
	}
	pthread_mutex_unlock(&r->reclaim_lock);
	return NULL;
}

/* Frees b in the background; b is unreachable by any I/O by now. */
static void
reclaim(struct replica *r, struct buffer *b)
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
	pthread_mutex_lock(&r->reclaim_lock);
	g->next = r->reclaim_list;
	r->reclaim_list = g;
	pthread_cond_signal(&r->reclaim_cond);
	pthread_mutex_unlock(&r->reclaim_lock);
}

/* ---- construction ---- */

struct replica *
replica_new(const struct store_factory *factory)
{
	pthread_rwlockattr_t attr;
	struct replica *r = calloc(1, sizeof *r);
	int err;

	if (r == NULL)
		return NULL;
	r->factory = *factory;
	r->state = REPLICA_NONE;
	pthread_mutex_init(&r->ctl_lock, NULL);
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&r->gate, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&r->err_lock, NULL);
	pthread_mutex_init(&r->limit_lock, NULL);
	pthread_mutex_init(&r->commit_lock, NULL);
	pthread_cond_init(&r->commit_cond, NULL);
	pthread_mutex_init(&r->reclaim_lock, NULL);
	pthread_cond_init(&r->reclaim_cond, NULL);
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
disk_free(struct replica_disk *d)
{
	buffer_free(d->hidden);
	buffer_free(d->active);
	image_close(d->img);
	rangelock_release_all(&d->rl);
	pthread_mutex_destroy(&d->map_lock);
	free(d->name);
	free(d);
}

static void join_commit(struct replica *r);

void
replica_free(struct replica *r)
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

	for (i = 0; i < r->ndisks; i++) {
		struct image *img = r->disks[i]->img;

		if (img->ops->flush(img) == -1)
			log_warn("flush %s on close: %m", r->disks[i]->name);
		disk_free(r->disks[i]);
	}
	free(r->disks);
	pthread_rwlock_destroy(&r->gate);
	pthread_mutex_destroy(&r->ctl_lock);
	pthread_mutex_destroy(&r->err_lock);
	pthread_mutex_destroy(&r->limit_lock);
	pthread_mutex_destroy(&r->commit_lock);
	pthread_cond_destroy(&r->commit_cond);
	pthread_mutex_destroy(&r->reclaim_lock);
	pthread_cond_destroy(&r->reclaim_cond);
	free(r);
}

struct replica_disk *
replica_add_disk(struct replica *r, const char *name, struct image *img)
{
	struct replica_disk *d = NULL, **nd;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state != REPLICA_NONE) {
		errno = EBUSY;
		goto err;
	}
	if (replica_find_disk(r, name) != NULL) {
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
replica_ndisks(const struct replica *r)
{
	return r->ndisks;
}

struct replica_disk *
replica_disk_at(struct replica *r, size_t i)
{
	return i < r->ndisks ? r->disks[i] : NULL;
}

struct replica_disk *
replica_find_disk(struct replica *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++)
		if (strcmp(r->disks[i]->name, name) == 0)
			return r->disks[i];
	return NULL;
}

uint64_t
replica_disk_size(const struct replica_disk *d)
{
	return d->size;
}

enum replica_state
replica_state(struct replica *r)
{
	enum replica_state s;

	pthread_rwlock_rdlock(&r->gate);
	s = r->state;
	pthread_rwlock_unlock(&r->gate);
	return s;
}

int
replica_accepts_primary(struct replica *r)
{
	enum replica_state s = replica_state(r);

	return s == REPLICA_NONE || s == REPLICA_RUNNING;
}

/* ---- the buffer limit ---- */

void
replica_set_buffer_limit(struct replica *r, uint64_t bytes)
{
	pthread_mutex_lock(&r->limit_lock);
	r->limit = bytes;
	pthread_mutex_unlock(&r->limit_lock);
}

static void
account(struct replica *r, int64_t delta)
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
reserve(struct replica_disk *d, uint64_t need, const char *what)
{
	struct replica *r = d->r;
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
limited(struct replica *r)
{
	bool on;

	pthread_mutex_lock(&r->limit_lock);
	on = r->limit != 0;
	pthread_mutex_unlock(&r->limit_lock);
	return on;
}

static void
unreserve(struct replica *r, uint64_t n)
{
	pthread_mutex_lock(&r->limit_lock);
	r->reserved -= n;
	pthread_mutex_unlock(&r->limit_lock);
}

/* Map changes, counted against the limit.  Caller holds d->map_lock. */
static int
map_insert(struct replica_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	uint64_t before = extmap_bytes(b->map);
	int ret = extmap_insert(b->map, off, len);

	account(d->r, (int64_t) (extmap_bytes(b->map) - before));
	return ret;
}

static int
map_remove(struct replica_disk *d, struct buffer *b, uint64_t off,
	   uint64_t len)
{
	uint64_t before = extmap_bytes(b->map);
	int ret = extmap_remove(b->map, off, len);

	account(d->r, -(int64_t) (before - extmap_bytes(b->map)));
	return ret;
}

/* ---- layers ---- */

enum layer { LAYER_ACTIVE, LAYER_HIDDEN, LAYER_IMAGE };

/* Where V's bytes at pos come from, and up to where (at most end). */
static enum layer
view_source(struct replica_disk *d, uint64_t pos, uint64_t end,
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
layer_store(struct replica_disk *d, enum layer l)
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
check_io(struct replica_disk *d, size_t len, uint64_t off)
{
	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static int
image_write(struct replica_disk *d, const void *buf, size_t len,
	    uint64_t off)
{
	if (buf == NULL)
		return d->img->ops->zero(d->img, off, len);
	return d->img->ops->pwrite(d->img, buf, len, off);
}

/* Writes (or zeroes, when buf is NULL) into a buffer and maps the range. */
static int
buffer_write(struct replica_disk *d, struct buffer *b, const void *buf,
	     size_t len, uint64_t off)
{
	int ret;

	if (buf == NULL)
		ret = b->store->ops->zero(b->store, off, len);
	else
		ret = b->store->ops->pwrite(b->store, buf, len, off);
	if (ret == -1)
		return -1;
	pthread_mutex_lock(&d->map_lock);
	ret = map_insert(d, b, off, len);
	pthread_mutex_unlock(&d->map_lock);
	return ret;
}

/* Copies [off, off+len) from S into hidden.  0, or -1 with errno.  A
 * memory buffer is read into directly; others go through a bounce buffer.
 */
static int
save_range(struct replica_disk *d, uint64_t off, uint64_t len)
{
	struct buffer *h = d->hidden;
	size_t n = len < BOUNCE_MAX ? len : BOUNCE_MAX;
	char *bounce;
	uint64_t pos;
	int ret = -1;

	if (h->store->mem) {
		if (d->img->ops->pread(d->img, (char *) h->store->mem + off,
				       len, off) == -1)
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
unsaved_bytes(struct replica_disk *d, uint64_t off, uint64_t end)
{
	uint64_t pos, seg_end, n = 0;

	for (pos = off; pos < end; pos = seg_end)
		if (view_source(d, pos, end, &seg_end) == LAYER_IMAGE)
			n += seg_end - pos;
	return n;
}

/* Saves every part of [off, end) that neither buffer holds. */
static int
save_old(struct replica_disk *d, uint64_t off, uint64_t end)
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

/* Begins a write of [off, off+len): checks the range, takes the gate
 * shared and then the range lock exclusively.  0: begun (end it with
 * io_end); 1: nothing to do (len 0); -1: refused, with errno = err when
 * the state is not in the accepted set, EINVAL beyond the end.
 */
static int
write_begin(struct replica_disk *d, struct rangelock_entry *e, size_t len,
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
io_end(struct replica_disk *d, struct rangelock_entry *e, uint64_t reserved)
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
replica_primary_read(struct replica_disk *d, void *buf, size_t len,
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
replica_primary_write(struct replica_disk *d, const void *buf, size_t len,
		      uint64_t off)
{
	struct replica *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	int ret;

	ret = write_begin(d, &e, len, off, STATE_BIT(REPLICA_NONE) |
			  STATE_BIT(REPLICA_RUNNING), ESHUTDOWN);
	if (ret != 0)
		return ret == 1 ? 0 : -1;
	ret = -1;
	if (r->state == REPLICA_RUNNING) {
		if (limited(r)) {
			need = unsaved_bytes(d, off, off + len);
			if (reserve(d, need, "primary write") == -1) {
				need = 0;
				goto out;
			}
		}
		if (save_old(d, off, off + len) == -1) {
			replica_record_error(r, "%s: saving old data at %"
					     PRIu64 "+%zu into hidden failed, "
					     "primary write refused: %s",
					     d->name, off, len, strerror(errno));
			goto out;
		}
	}
	if (image_write(d, buf, len, off) == -1) {
		replica_record_error(r, "%s: primary write at %" PRIu64
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
zero_by(int (*write)(struct replica_disk *, const void *, size_t, uint64_t),
	struct replica_disk *d, uint64_t off, uint64_t len)
{
	if (len > SIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	return write(d, NULL, len, off);
}

int
replica_primary_zero(struct replica_disk *d, uint64_t off, uint64_t len)
{
	return zero_by(replica_primary_write, d, off, len);
}

int
replica_primary_flush(struct replica_disk *d)
{
	return d->img->ops->flush(d->img);
}

/* ---- view I/O ---- */

int
replica_view_read(struct replica_disk *d, void *buf, size_t len,
		  uint64_t off)
{
	struct replica *r = d->r;
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
out:
	io_end(d, &e, 0);
	return ret;
}

_Static_assert(sizeof(struct rangelock_entry) <=
	       sizeof(((struct replica_read *) 0)->space),
	       "struct replica_read too small for a range lock entry");

int
replica_view_read_begin(struct replica_disk *d, uint64_t off, size_t len,
			struct replica_read *rd, struct replica_seg *seg)
{
	struct replica *r = d->r;
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
		*seg = (struct replica_seg) { d->img->fd, off, NULL };
	} else if (s->mem != NULL)
		*seg = (struct replica_seg) { -1, 0, (char *) s->mem + off };
	else if (s->fd >= 0)
		*seg = (struct replica_seg) { s->fd, off, NULL };
	else
		goto again;
	rd->d = d;
	rd->lock = e;
	return 0;
again:
	io_end(d, e, 0);
	errno = EAGAIN;
	return -1;
}

void
replica_view_read_end(struct replica_read *rd)
{
	io_end(rd->d, rd->lock, 0);
}

/* In FAILOVER_FAILED: buffered parts go to active, the rest to S. */
static int
write_failed_state(struct replica_disk *d, const void *buf, size_t len,
		   uint64_t off)
{
	uint64_t pos, end = off + len, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		const void *p = buf ? (const char *) buf + (pos - off) : NULL;
		enum layer l = view_source(d, pos, end, &seg_end);
		int ret;

		if (l == LAYER_IMAGE)
			ret = image_write(d, p, seg_end - pos, pos);
		else
			ret = buffer_write(d, d->active, p, seg_end - pos, pos);
		if (ret == -1)
			return -1;
	}
	return 0;
}

int
replica_view_write(struct replica_disk *d, const void *buf, size_t len,
		   uint64_t off)
{
	struct replica *r = d->r;
	struct rangelock_entry e;
	uint64_t need = 0;
	int ret;

	/* The secondary VM must not write before start: EIO. */
	ret = write_begin(d, &e, len, off, ~STATE_BIT(REPLICA_NONE), EIO);
	if (ret != 0)
		return ret == 1 ? 0 : -1;
	ret = -1;
	switch (r->state) {
	case REPLICA_RUNNING:
		if (limited(r)) {
			pthread_mutex_lock(&d->map_lock);
			need = len - extmap_bytes_in(d->active->map, off, len);
			pthread_mutex_unlock(&d->map_lock);
			if (reserve(d, need, "view write") == -1) {
				need = 0;
				break;
			}
		}
		ret = buffer_write(d, d->active, buf, len, off);
		break;
	case REPLICA_FAILOVER:
		/* The buffered copy becomes obsolete: drop it after S has the
		 * new data, so the commit cannot write it over the new data.
		 */
		ret = image_write(d, buf, len, off);
		if (ret == 0) {
			pthread_mutex_lock(&d->map_lock);
			ret = map_remove(d, d->active, off, len);
			if (ret == 0)
				ret = map_remove(d, d->hidden, off, len);
			pthread_mutex_unlock(&d->map_lock);
		}
		break;
	case REPLICA_FAILOVER_FAILED:
		ret = write_failed_state(d, buf, len, off);
		break;
	default:
		ret = image_write(d, buf, len, off);
		break;
	}
	if (ret == 0)
		atomic_fetch_add(&d->view_write_bytes, len);
	io_end(d, &e, need);
	return ret;
}

int
replica_view_zero(struct replica_disk *d, uint64_t off, uint64_t len)
{
	return zero_by(replica_view_write, d, off, len);
}

int
replica_view_flush(struct replica_disk *d)
{
	struct replica *r = d->r;
	enum replica_state s;

	pthread_rwlock_rdlock(&r->gate);
	s = r->state;
	pthread_rwlock_unlock(&r->gate);
	/* While running, the VM's writes live in buffers that the next
	 * checkpoint drops by design: there is nothing to make durable.
	 */
	if (s == REPLICA_RUNNING)
		return 0;
	return d->img->ops->flush(d->img);
}

/* ---- control ---- */

/* Fresh buffers for every disk, or none (-1, errno, error recorded). */
static int
new_buffers(struct replica *r, struct buffer **hidden, struct buffer **active)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++) {
		hidden[i] = buffer_new(r, r->disks[i], "hidden");
		active[i] = hidden[i] ? buffer_new(r, r->disks[i], "active")
				      : NULL;
		if (active[i] == NULL) {
			int saved = errno;

			replica_record_error(r, "%s: making empty buffers "
					     "failed: %s", r->disks[i]->name,
					     strerror(saved));
			buffer_free(hidden[i]);
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
 * old ones to the reclaim thread.  The caller holds the gate exclusively.
 */
static void
swap_buffers(struct replica *r, struct buffer **hidden,
	     struct buffer **active)
{
	size_t i;

	for (i = 0; i < r->ndisks; i++) {
		struct replica_disk *d = r->disks[i];
		struct buffer *oh = d->hidden, *oa = d->active;

		pthread_mutex_lock(&d->map_lock);
		d->hidden = hidden ? hidden[i] : NULL;
		d->active = active ? active[i] : NULL;
		if (oh)
			account(r, -(int64_t) extmap_bytes(oh->map));
		if (oa)
			account(r, -(int64_t) extmap_bytes(oa->map));
		pthread_mutex_unlock(&d->map_lock);
		reclaim(r, oh);
		reclaim(r, oa);
	}
}

/* Empties both buffers of every disk: the body of checkpoint and start. */
static int
empty_buffers(struct replica *r, enum replica_state next)
{
	struct buffer **hidden, **active;
	uint64_t t0 = now_ns();
	int ret = -1;

	hidden = calloc(r->ndisks + 1, sizeof *hidden);
	active = calloc(r->ndisks + 1, sizeof *active);
	if (hidden == NULL || active == NULL) {
		replica_record_error(r, "making empty buffers failed: %s",
				     strerror(errno));
		goto out;
	}
	if (new_buffers(r, hidden, active) == -1)
		goto out;
	pthread_rwlock_wrlock(&r->gate);
	swap_buffers(r, hidden, active);
	if (next == REPLICA_RUNNING && r->state == REPLICA_RUNNING) {
		r->checkpoints++;
		r->last_checkpoint_ns = now_ns() - t0;
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
replica_start(struct replica *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case REPLICA_NONE:
		if (r->ndisks == 0)
			ret = refuse(r, EINVAL, "start: the group has no disk");
		else
			ret = empty_buffers(r, REPLICA_RUNNING);
		break;
	case REPLICA_RUNNING:
		ret = refuse(r, EBUSY, "start: replication is already running");
		break;
	case REPLICA_FAILOVER_FAILED:
		ret = refuse(r, EBUSY, "start: failover failed; "
			     "retry it with failover");
		break;
	default:
		break;		/* a promoted secondary ignores start */
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
replica_checkpoint(struct replica *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	if (r->state == REPLICA_NONE)
		ret = refuse(r, EINVAL, "checkpoint: replication is not running");
	else if (r->state == REPLICA_RUNNING)
		ret = empty_buffers(r, REPLICA_RUNNING);
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

int
replica_stop(struct replica *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case REPLICA_NONE:
		ret = refuse(r, EINVAL, "stop: replication is not running");
		break;
	case REPLICA_RUNNING:
		pthread_rwlock_wrlock(&r->gate);
		swap_buffers(r, NULL, NULL);
		r->state = REPLICA_DONE;
		pthread_rwlock_unlock(&r->gate);
		break;
	case REPLICA_FAILOVER_FAILED:
		ret = refuse(r, EBUSY, "stop: failover failed and the buffers "
			     "hold the only copy of the VM's data; retry "
			     "with failover");
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

/* ---- failover commit ---- */

/* Commits the buffered bytes of [off, end) into S. */
static int
commit_chunk(struct replica_disk *d, uint64_t off, uint64_t end,
	     char *bounce)
{
	uint64_t pos, seg_end;

	for (pos = off; pos < end; pos = seg_end) {
		enum layer l = view_source(d, pos, end, &seg_end);
		const char *src;
		struct store *s;

		if (l == LAYER_IMAGE)
			continue;
		s = l == LAYER_ACTIVE ? d->active->store : d->hidden->store;
		/* From a memory buffer straight into S; else via bounce. */
		src = s->mem ? (const char *) s->mem + pos : bounce;
		if ((!s->mem && s->ops->pread(s, bounce, seg_end - pos,
					      pos) == -1) ||
		    d->img->ops->pwrite(d->img, src, seg_end - pos,
					pos) == -1) {
			replica_record_error(d->r, "%s: failover commit at %"
					     PRIu64 " failed: %s", d->name,
					     pos, strerror(errno));
			return -1;
		}
	}
	pthread_mutex_lock(&d->map_lock);
	if (map_remove(d, d->active, off, end - off) == -1 ||
	    map_remove(d, d->hidden, off, end - off) == -1) {
		pthread_mutex_unlock(&d->map_lock);
		replica_record_error(d->r, "%s: failover commit: %s", d->name,
				     strerror(errno));
		return -1;
	}
	pthread_mutex_unlock(&d->map_lock);
	return 0;
}

/* The next buffered byte at or after pos: 1 and *start, or 0. */
static int
next_buffered(struct replica_disk *d, uint64_t pos, uint64_t *start)
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
commit_disk(struct replica_disk *d, char *bounce)
{
	struct replica *r = d->r;
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
		replica_record_error(r, "%s: failover commit: flush: %s",
				     d->name, strerror(errno));
		return -1;
	}
	return 0;
}

static void *
commit_main(void *arg)
{
	struct replica *r = arg;
	char *bounce = malloc(COMMIT_CHUNK);
	enum replica_state next = REPLICA_DONE;
	size_t i;
	int ret = 0;

	if (bounce == NULL) {
		replica_record_error(r, "failover commit: %s", strerror(errno));
		ret = -1;
	}
	for (i = 0; ret == 0 && i < r->ndisks; i++)
		ret = commit_disk(r->disks[i], bounce);
	free(bounce);

	pthread_rwlock_wrlock(&r->gate);
	if (ret == -1)
		next = REPLICA_FAILOVER_FAILED;
	else if (ret == 1)
		next = REPLICA_FAILOVER;	/* cancelled: left as it was */
	else
		swap_buffers(r, NULL, NULL);
	r->state = next;
	pthread_rwlock_unlock(&r->gate);

	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = false;
	pthread_cond_broadcast(&r->commit_cond);
	pthread_mutex_unlock(&r->commit_lock);
	return NULL;
}

/* Joins a finished or cancelled commit thread.  Caller holds ctl_lock. */
static void
join_commit(struct replica *r)
{
	if (r->commit_joinable) {
		pthread_join(r->commit_thread, NULL);
		r->commit_joinable = false;
	}
}

int
replica_failover(struct replica *r)
{
	int ret = 0, err;

	pthread_mutex_lock(&r->ctl_lock);
	switch (r->state) {
	case REPLICA_NONE:
		ret = refuse(r, EINVAL, "failover: replication is not running");
		goto out;
	case REPLICA_RUNNING:
	case REPLICA_FAILOVER_FAILED:
		break;
	default:
		goto out;
	}
	join_commit(r);
	pthread_rwlock_wrlock(&r->gate);
	r->state = REPLICA_FAILOVER;
	pthread_rwlock_unlock(&r->gate);
	pthread_mutex_lock(&r->commit_lock);
	r->commit_running = true;
	pthread_mutex_unlock(&r->commit_lock);
	err = pthread_create(&r->commit_thread, NULL, commit_main, r);
	if (err != 0) {
		pthread_rwlock_wrlock(&r->gate);
		r->state = REPLICA_FAILOVER_FAILED;
		pthread_rwlock_unlock(&r->gate);
		pthread_mutex_lock(&r->commit_lock);
		r->commit_running = false;
		pthread_mutex_unlock(&r->commit_lock);
		ret = refuse(r, err, "failover: cannot start the commit: %s",
			     strerror(err));
		goto out;
	}
	r->commit_joinable = true;
out:
	pthread_mutex_unlock(&r->ctl_lock);
	return ret;
}

void
replica_wait_commit(struct replica *r)
{
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
replica_get_status(struct replica *r, struct replica_status *st)
{
	size_t i;

	memset(st, 0, sizeof *st);
	pthread_rwlock_rdlock(&r->gate);
	st->disks = calloc(r->ndisks ? r->ndisks : 1, sizeof *st->disks);
	if (st->disks == NULL) {
		pthread_rwlock_unlock(&r->gate);
		return -1;
	}
	st->state = r->state;
	st->checkpoints = r->checkpoints;
	st->last_checkpoint_ns = r->last_checkpoint_ns;
	st->unclean_disconnects = atomic_load(&r->unclean_disconnects);
	pthread_mutex_lock(&r->limit_lock);
	st->buffer_bytes = r->buffered;
	st->buffer_limit = r->limit;
	pthread_mutex_unlock(&r->limit_lock);
	st->ndisks = r->ndisks;
	for (i = 0; i < r->ndisks; i++) {
		struct replica_disk *d = r->disks[i];
		struct replica_disk_status *ds = &st->disks[i];

		ds->name = d->name;
		ds->size = d->size;
		ds->primary_write_bytes = atomic_load(&d->primary_write_bytes);
		ds->view_write_bytes = atomic_load(&d->view_write_bytes);
		if (d->img->ops->overlay_bytes)
			ds->overlay_bytes = d->img->ops->overlay_bytes(d->img);
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
		if ((r->state == REPLICA_FAILOVER ||
		     r->state == REPLICA_FAILOVER_FAILED) &&
		    d->hidden && d->active)
			ds->commit_remaining_bytes =
				union_bytes(d->active->map, d->hidden->map);
		pthread_mutex_unlock(&d->map_lock);
	}
	replica_last_error(r, st->error, sizeof st->error);
	pthread_rwlock_unlock(&r->gate);
	return 0;
}

void
replica_status_release(struct replica_status *st)
{
	free(st->disks);
	st->disks = NULL;
}
