/* SPDX-License-Identifier: MIT */
/* The primary engine: local images, mirroring through a link, dirty
 * tracking and the background sync.  doc/primary.md has the design; the
 * contract per state is in primary.h.
 *
 * Why this file is long: the VM's writes, the keepalive and the sync
 * thread keep one invariant (below) over one bitmap, one link and one
 * set of range locks; each section is marked "---- ".
 *
 *   VM write ──▶ range lock ──▶ mirroring?  yes: submit to the link,
 *                                           write locally, wait (timeout)
 *                                           no:  mark dirty (durable),
 *                                           write locally
 *   a link failure or timeout: the write completes locally, its granules
 *   are marked dirty before it is acknowledged, the pair degrades.
 *
 * Invariant: a granule where the secondary may differ from the local
 * image is dirty in the bitmap, or a write on it is in flight that will
 * mark it if its mirror fails.  Writes that mirror successfully leave the
 * bitmap alone; writes that do not mirror mark it before touching the
 * image.  The sync thread clears a run only after the secondary acked
 * the copy, and it copies a run with the run's range lock held from the
 * local read to the secondary's ack, so no VM write to those bytes can
 * slip between them (and land on the secondary before the older copy).
 *
 * Mirrored writes leave no trace in the bitmap, so a crash while they
 * may be in flight loses track of them.  The bitmaps' BITMAP_LIVE flag
 * says so: it is set (durably) before the state becomes syncing, and
 * cleared once the state has left syncing/replicating and the last
 * mirrored write has finished.  With an activity log (al.c) a mirrored
 * write first makes its extents active, durably, and the bitmap says so
 * (BITMAP_AL): a bitmap found LIVE at start-up gets the log's extents
 * marked; without a usable log it is all dirty (bitmap.c).
 *
 * Entering syncing waits until no unmirrored write is in flight: every
 * write that saw a non-mirroring state has marked its granules by then,
 * so one pass of the sync thread over the bitmap sees them all.
 *
 * Locks, in order: p->ctl (control words; held across connects and
 * joins), d->rl (range locks, held across one write's local and remote
 * I/O: they exist to order exactly that), p->lock (state, counters,
 * error; never held across I/O, except the link's non-blocking abortive
 * disconnect), then the bitmap's own leaf lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "al.h"
#include "bitmap.h"
#include "deadline.h"
#include "errlog.h"
#include "log.h"
#include "primary.h"
#include "rangelock.h"

#define SYNC_CHUNK (256u << 10)	/* bytes per sync request, at most */
#define SYNC_DEPTH 32		/* sync requests in flight */
#define URI_MAX 1024

struct primary_disk {
	struct primary *p;
	size_t index;
	char *name;
	struct image *img;
	bool borrowed;			/* img is not ours to close */
	uint64_t size;
	char conf_uri[URI_MAX];
	char uri[URI_MAX];		/* in use; protected by p->lock */
	struct bitmap *bm;
	struct al *al;			/* NULL: no activity log */
	struct rangelock rl;
	atomic_uint_fast64_t write_bytes, mirrored_bytes;
	atomic_uint_fast64_t last_reply_ms;	/* monotonic: the link's last */
};

struct primary {
	pthread_mutex_t ctl;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* inflight or sync changes */
	enum primary_state state;	/* protected by lock */
	char reason[2048];		/* protected by lock */
	struct errlog errs;		/* its own lock, a leaf */
	unsigned mirrored;		/* writes in flight; protected by lock */
	unsigned unmirrored;		/* protected by lock */
	bool split_brain;		/* protected by lock */
	bool connect_full;		/* the connect's sync is full; ctl */
	atomic_bool live;		/* BITMAP_LIVE is set; changed under ctl */
	uint64_t checkpoints, syncs;	/* protected by lock */
	uint64_t sync_total, sync_done;	/* protected by lock */
	struct timespec sync_t0, sync_t1;	/* protected by lock */
	pthread_t sync_thread;		/* protected by ctl */
	bool sync_joinable;		/* protected by ctl */
	bool sync_cancel;		/* protected by lock */
	uint64_t granularity;
	unsigned timeout_ms;
	unsigned keepalive_ms;
	pthread_t ka_thread;
	bool ka_running;		/* set before the thread, read at free */
	bool ka_stop;			/* protected by lock */
	pthread_cond_t ka_cond;		/* ka_stop was set */
	const struct primary_link_ops *link;
	void *link_opaque;
	size_t ndisks;
	struct primary_disk *disks;
};

static const char *const state_names[] = {
	[PRIMARY_NONE] = "none",
	[PRIMARY_SYNCING] = "syncing",
	[PRIMARY_REPLICATING] = "replicating",
	[PRIMARY_DEGRADED] = "degraded",
	[PRIMARY_FAILOVER] = "failover",
};

const char *
primary_state_name(enum primary_state s)
{
	if ((size_t)s >= sizeof state_names / sizeof state_names[0])
		abort();
	return state_names[s];
}

static void
vrecord(struct primary *p, const char *fmt, va_list ap)
{
	int saved = errno;

	errlog_vrecord(&p->errs, fmt, ap);
	errno = saved;
}

void
primary_record_error(struct primary *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(p, fmt, ap);
	va_end(ap);
}

static int __attribute__((format(printf, 3, 4)))
refuse(struct primary *p, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(p, fmt, ap);
	va_end(ap);
	errno = err;
	return -1;
}

time_t
primary_last_error(struct primary *p, char *buf, size_t len)
{
	return errlog_current(&p->errs, buf, len);
}

struct errlog *
primary_errors(struct primary *p)
{
	return &p->errs;
}

void
primary_clear_error(struct primary *p)
{
	errlog_clear(&p->errs);
}

enum primary_state
primary_state(struct primary *p)
{
	enum primary_state s;

	pthread_mutex_lock(&p->lock);
	s = p->state;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Disk d's secondary answered: the link is not idle. */
static void
touch(struct primary_disk *d)
{
	atomic_store(&d->last_reply_ms, now_ms());
}

static bool
mirroring(enum primary_state s)
{
	return s == PRIMARY_SYNCING || s == PRIMARY_REPLICATING;
}

/* The secondary failed (disk d's link said why): syncing or replicating
 * -> degraded, every link dropped.  Called with p->lock not held.
 */
static void
link_failed(struct primary *p, struct primary_disk *d, const char *why)
{
	size_t i;

	pthread_mutex_lock(&p->lock);
	if (mirroring(p->state)) {
		p->state = PRIMARY_DEGRADED;
		p->sync_cancel = true;
		snprintf(p->reason, sizeof p->reason,
			 "%s: secondary %s: %s", d->name, d->uri, why);
		primary_record_error(p, "degraded: %s", p->reason);
		log_error("degraded: %s", p->reason);
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, false);
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

/* This primary starts a generation of its own on disk d (gi.h): a pair
 * formed or was left.  The peer generation stays.  0, or -1 (logged).
 */
static int
new_generation(struct primary_disk *d, uint64_t peer_gen)
{
	struct gi_set own;
	uint64_t old_peer;

	bitmap_gens(d->bm, &old_peer, &own);
	if (gi_new(&own) == -1 || bitmap_set_gens(d->bm, peer_gen, &own) == -1) {
		log_error("%s: cannot save a new generation: %m", d->name);
		return -1;
	}
	return 0;
}

/* Sets or clears BITMAP_LIVE on every disk.  With p->ctl held.  Clearing
 * it means the pair was left: each disk starts a new generation.
 */
static int
set_live(struct primary *p, bool live)
{
	struct gi_set own;
	uint64_t peer_gen;
	size_t i;

	for (i = 0; i < p->ndisks; i++) {
		if (bitmap_update(p->disks[i].bm, live ? BITMAP_LIVE : 0,
				  live ? 0 : BITMAP_LIVE | BITMAP_AL,
				  NULL) == -1)
			return -1;
		bitmap_gens(p->disks[i].bm, &peer_gen, &own);
		if (!live && new_generation(&p->disks[i], peer_gen) == -1)
			return -1;
	}
	p->live = live;
	return 0;
}

/* Once nothing mirrors any more, the bitmaps are exact again. */
static void
maybe_clear_live(struct primary *p, bool have_ctl)
{
	bool clear;

	if (!have_ctl && pthread_mutex_trylock(&p->ctl) != 0)
		return;		/* the word under way calls us itself */
	pthread_mutex_lock(&p->lock);
	clear = atomic_load(&p->live) && !mirroring(p->state) &&
		p->mirrored == 0;
	pthread_mutex_unlock(&p->lock);
	if (clear && set_live(p, false) == -1)
		log_error("cannot clear the bitmaps' live flag: %m");
	if (!have_ctl)
		pthread_mutex_unlock(&p->ctl);
}

void
primary_link_lost(struct primary *p, size_t i, const char *why)
{
	if (i < p->ndisks) {
		link_failed(p, &p->disks[i], why);
		maybe_clear_live(p, false);
	}
}

static bool
io_begin(struct primary *p)
{
	bool m;

	pthread_mutex_lock(&p->lock);
	m = mirroring(p->state);
	if (m)
		p->mirrored++;
	else
		p->unmirrored++;
	pthread_mutex_unlock(&p->lock);
	return m;
}

static void
io_end(struct primary *p, bool m)
{
	bool clear;

	pthread_mutex_lock(&p->lock);
	if (m)
		p->mirrored--;
	else
		p->unmirrored--;
	clear = atomic_load(&p->live) && !mirroring(p->state) &&
		p->mirrored == 0;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (clear)
		maybe_clear_live(p, false);
}

/* Marks a range the secondary may lack.  A failure leaves the bitmap
 * unable to vouch for the disk: the next sync must be a full one.
 */
static int
mark_dirty(struct primary_disk *d, uint64_t off, uint64_t len)
{
	if (bitmap_mark(d->bm, off, len) == 0)
		return 0;
	primary_record_error(d->p, "%s: cannot mark [%" PRIu64 ", +%" PRIu64
			     ") dirty: %s; the next sync must be a full one "
			     "(resync full)", d->name, off, len,
			     strerror(errno));
	errno = EIO;
	return -1;
}

/* One VM write or zero, mirrored or tracked (see the top). */
static int
modify(struct primary_disk *d, enum primary_op op, const void *buf,
       uint64_t off, uint64_t len)
{
	struct primary *p = d->p;
	struct rangelock_entry e;
	char why[512];
	void *ticket = NULL;
	bool m, active = false;
	int rc = 0, err = 0;

	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	if (len == 0)
		return 0;
	rangelock_acquire(&d->rl, &e, off, len, true);
	m = io_begin(p);
	if (m && d->al != NULL) {
		/* Its extents are in the activity log before either side
		 * has a byte of it; if the log cannot say so, the bitmap
		 * does (a granule marked while mirrored costs a copy).
		 */
		active = al_begin(d->al, off, len) == 0;
		if (!active && mark_dirty(d, off, len) == -1) {
			rc = -1;
			err = errno;
			goto out;
		}
	}
	if (m) {
		ticket = p->link->submit(p->link_opaque, d->index, op, buf,
					 off, len, why, sizeof why);
		if (ticket == NULL)
			link_failed(p, d, why);
	}
	if (ticket == NULL && mark_dirty(d, off, len) == -1) {
		rc = -1;
		err = errno;
		goto out;
	}
	if (op == PRIMARY_OP_WRITE)
		rc = d->img->ops->pwrite(d->img, buf, len, off);
	else
		rc = d->img->ops->zero(d->img, off, len,
				       op == PRIMARY_OP_ZERO);
	if (rc == -1) {
		err = errno;
		log_error("%s: local %s at %" PRIu64 ": %m", d->name,
			  op == PRIMARY_OP_WRITE ? "write" : "zero", off);
	}
	if (ticket != NULL) {
		if (p->link->wait(p->link_opaque, ticket, p->timeout_ms, why,
				  sizeof why) == -1) {
			link_failed(p, d, why);
			if (mark_dirty(d, off, len) == -1 && rc == 0) {
				rc = -1;
				err = errno;
			}
		} else if (rc == 0) {
			touch(d);
			atomic_fetch_add(&d->mirrored_bytes, len);
		} else {
			/* The secondary has what the local image may lack:
			 * the next sync puts the local bytes back there.
			 */
			mark_dirty(d, off, len);
		}
	}
	if (rc == 0)
		atomic_fetch_add(&d->write_bytes, len);
out:
	if (active)
		al_end(d->al, off, len);
	io_end(p, m);
	rangelock_release(&d->rl, &e);
	errno = err;
	return rc;
}

int
primary_write(struct primary_disk *d, const void *buf, size_t len,
	      uint64_t off)
{
	return modify(d, PRIMARY_OP_WRITE, buf, off, len);
}

/* In pieces: an NBD request's length is 32 bits, and a secondary
 * without WRITE_ZEROES gets writes of zeros, at most its maximum block
 * size each (the link says how long).
 */
static int
zero(struct primary_disk *d, enum primary_op op, uint64_t off, uint64_t len)
{
	const struct primary_link_ops *link = d->p->link;
	uint64_t piece = UINT64_C(1) << 30, n, max;

	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	if (link->max_zero != NULL) {
		max = link->max_zero(d->p->link_opaque, d->index);
		if (max > 0 && max < piece)
			piece = max;
	}
	for (; len > 0; off += n, len -= n) {
		n = len < piece ? len : piece;
		if (modify(d, op, NULL, off, n) == -1)
			return -1;
	}
	return 0;
}

int
primary_zero(struct primary_disk *d, uint64_t off, uint64_t len)
{
	return zero(d, PRIMARY_OP_ZERO_ALLOC, off, len);
}

int
primary_punch(struct primary_disk *d, uint64_t off, uint64_t len)
{
	return zero(d, PRIMARY_OP_ZERO, off, len);
}

int
primary_read(struct primary_disk *d, void *buf, size_t len, uint64_t off)
{
	if (off > d->size || len > d->size - off) {
		errno = EINVAL;
		return -1;
	}
	return d->img->ops->pread(d->img, buf, len, off);
}

/* Local flush, then the secondary's (NBD FLUSH) when mirroring; the
 * secondary's failure degrades the pair, the VM's flush succeeds.
 */
int
primary_flush(struct primary_disk *d)
{
	struct primary *p = d->p;
	char why[512];
	void *ticket = NULL;
	bool m = io_begin(p);
	int rc;

	if (m) {
		ticket = p->link->submit(p->link_opaque, d->index,
					 PRIMARY_OP_FLUSH, NULL, 0, 0, why,
					 sizeof why);
		if (ticket == NULL)
			link_failed(p, d, why);
	}
	rc = d->img->ops->flush(d->img);
	if (rc == -1)
		log_error("%s: local flush: %m", d->name);
	if (ticket != NULL &&
	    p->link->wait(p->link_opaque, ticket, p->timeout_ms, why,
			  sizeof why) == -1)
		link_failed(p, d, why);
	else if (ticket != NULL)
		touch(d);
	io_end(p, m);
	return rc;
}

/* ---- keepalive ----
 *
 * A secondary that hangs while nothing is written would go unnoticed
 * until the next write, and checkpoints would go on succeeding.  So a
 * thread looks at every disk a few times per keepalive_ms; while
 * mirroring, a disk whose link had no reply for keepalive_ms gets a
 * 512-byte READ at offset 0, which must be answered within timeout_ms,
 * or the pair degrades as for a failed write (DRBD's ping).  Not a FLUSH:
 * that would wait for the secondary to write back what it holds, which
 * says nothing about liveness and may take long; NBD has no NOP, and a
 * 0-length command is not defined.
 */

static void
keepalive_disk(struct primary *p, struct primary_disk *d)
{
	char why[512], msg[600];
	void *ticket;
	bool m = io_begin(p);

	if (m) {
		ticket = p->link->submit(p->link_opaque, d->index,
					 PRIMARY_OP_READ, NULL, 0,
					 d->size < 512 ? d->size : 512, why,
					 sizeof why);
		if (ticket == NULL) {
			link_failed(p, d, why);
		} else if (p->link->wait(p->link_opaque, ticket, p->timeout_ms,
					 why, sizeof why) == -1) {
			snprintf(msg, sizeof msg, "keepalive: %s", why);
			link_failed(p, d, msg);
		} else {
			touch(d);
		}
	}
	io_end(p, m);
}

static void *
keepalive_main(void *arg)
{
	struct primary *p = arg;
	unsigned step = p->keepalive_ms / 4 ? p->keepalive_ms / 4 : 1;
	struct timespec dl;
	size_t i;

	pthread_mutex_lock(&p->lock);
	while (!p->ka_stop) {
		dl = deadline_in_ms(step);
		pthread_cond_timedwait(&p->ka_cond, &p->lock, &dl);
		for (i = 0; i < p->ndisks && !p->ka_stop; i++) {
			struct primary_disk *d = &p->disks[i];

			if (!mirroring(p->state) ||
			    now_ms() - atomic_load(&d->last_reply_ms) <
				    p->keepalive_ms)
				continue;
			pthread_mutex_unlock(&p->lock);
			keepalive_disk(p, d);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ---- the sync thread ---- */

struct sync_slot {
	struct primary_disk *d;
	struct rangelock_entry e;
	uint64_t off, len;
	bool piece;		/* of a longer run: holds no lock, clears no bit */
	void *ticket;
	char *buf;
};

static bool
all_zero(const char *buf, size_t len)
{
	return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

static bool
sync_go_on(struct primary *p)
{
	bool go;

	pthread_mutex_lock(&p->lock);
	go = p->state == PRIMARY_SYNCING && !p->sync_cancel;
	pthread_mutex_unlock(&p->lock);
	return go;
}

/* Waits for a slot's copy; clears its run if the secondary has it (a
 * piece leaves that to its run, see sync_long_run).
 */
static int
slot_finish(struct primary *p, struct sync_slot *s)
{
	char why[512];
	int rc = 0;

	if (s->ticket == NULL)
		return 0;
	if (p->link->wait(p->link_opaque, s->ticket, p->timeout_ms, why,
			  sizeof why) == -1) {
		link_failed(p, s->d, why);
		rc = -1;
	} else {
		touch(s->d);
		if (!s->piece)
			bitmap_clear(s->d->bm, s->off, s->len);
		pthread_mutex_lock(&p->lock);
		p->sync_done += s->len;
		pthread_mutex_unlock(&p->lock);
	}
	s->ticket = NULL;
	if (!s->piece)
		rangelock_release(&s->d->rl, &s->e);
	return rc;
}

static int
slots_finish(struct primary *p, struct sync_slot *slots)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < SYNC_DEPTH; i++)
		if (slot_finish(p, &slots[i]) == -1)
			rc = -1;
	return rc;
}

/* Reads [o, +l) (at most SYNC_CHUNK) into slot s and sends it; the
 * caller holds the range.  On failure the caller releases it.
 */
static int
slot_send(struct primary *p, struct primary_disk *d, struct sync_slot *s,
	  uint64_t o, uint64_t l)
{
	char why[512];

	s->d = d;
	s->off = o;
	s->len = l;
	if (d->img->ops->pread(d->img, s->buf, l, o) == -1) {
		primary_record_error(p, "%s: sync: local read at %" PRIu64
				     ": %s", d->name, o, strerror(errno));
		return -1;
	}
	s->ticket = p->link->submit(p->link_opaque, d->index,
				    all_zero(s->buf, l) ? PRIMARY_OP_ZERO :
				    PRIMARY_OP_WRITE, s->buf, o, l, why,
				    sizeof why);
	if (s->ticket == NULL) {
		link_failed(p, d, why);
		return -1;
	}
	return 0;
}

/* A run longer than a slot's buffer: one granule above SYNC_CHUNK (the
 * config allows up to 64M, more than any NBD server takes at once).  It
 * goes in pieces of SYNC_CHUNK under one range lock held from the first
 * read to the last ack, and its bit is cleared only then, still under
 * the lock: a VM write that failed to mirror and marked the granule
 * meanwhile waits for the lock, so its mark is never cleared.  The other
 * slots are finished first (they hold ranges a VM write may wait on, see
 * sync_disk) and again at the end, so every piece is acked before the
 * clear.
 */
static int
sync_long_run(struct primary *p, struct primary_disk *d,
	      struct sync_slot *slots, uint64_t o, uint64_t l)
{
	struct rangelock_entry e;
	uint64_t done, n;
	unsigned k = 0;
	int rc;

	if (slots_finish(p, slots) == -1)
		return -1;
	rangelock_acquire(&d->rl, &e, o, l, true);
	for (done = 0, rc = 0; done < l && rc == 0; done += n) {
		struct sync_slot *s = &slots[k];

		n = l - done < SYNC_CHUNK ? l - done : SYNC_CHUNK;
		if (!sync_go_on(p))
			break;		/* told to stop: the bit stays */
		if (slot_finish(p, s) == -1) {
			rc = -1;
			break;
		}
		s->piece = true;
		rc = slot_send(p, d, s, o + done, n);
		k = (k + 1) % SYNC_DEPTH;
	}
	if (slots_finish(p, slots) == -1)
		rc = -1;
	if (rc == 0 && done == l)
		bitmap_clear(d->bm, o, l);
	rangelock_release(&d->rl, &e);
	for (k = 0; k < SYNC_DEPTH; k++)
		slots[k].piece = false;
	return rc;
}

/* One pass over disk d: true if it found anything dirty. */
static int
sync_disk(struct primary *p, struct primary_disk *d, struct sync_slot *slots,
	  bool *found)
{
	uint64_t off = 0, o, l;
	unsigned k = 0;
	int rc = 0;

	while (sync_go_on(p) && bitmap_next(d->bm, off, SYNC_CHUNK, &o, &l)) {
		struct sync_slot *s = &slots[k];

		*found = true;
		if (l > SYNC_CHUNK) {
			if (sync_long_run(p, d, slots, o, l) == -1) {
				rc = -1;
				break;
			}
			off = o + l;
			continue;
		}
		if (slot_finish(p, s) == -1) {
			rc = -1;
			break;
		}
		/* This thread holds the ranges of the other slots in flight.
		 * A VM write that spans one of them and this run waits for
		 * the held one, and this run would queue behind it: a
		 * deadlock.  So when the run is taken, finish every slot
		 * first (their ranges go), and only then wait for it.
		 */
		if (!rangelock_try_acquire(&d->rl, &s->e, o, l, true)) {
			if (slots_finish(p, slots) == -1) {
				rc = -1;
				break;
			}
			rangelock_acquire(&d->rl, &s->e, o, l, true);
		}
		if (slot_send(p, d, s, o, l) == -1) {
			rangelock_release(&d->rl, &s->e);
			s->ticket = NULL;
			rc = -1;
			break;
		}
		off = o + l;
		k = (k + 1) % SYNC_DEPTH;
	}
	if (slots_finish(p, slots) == -1)
		rc = -1;
	return rc;
}

static void *
sync_main(void *arg)
{
	struct primary *p = arg;
	struct sync_slot slots[SYNC_DEPTH];
	bool found = true, failed = false;
	size_t i;

	memset(slots, 0, sizeof slots);
	for (i = 0; i < SYNC_DEPTH; i++) {
		slots[i].buf = malloc(SYNC_CHUNK);
		if (slots[i].buf == NULL) {
			primary_record_error(p, "sync: out of memory");
			failed = true;
		}
	}
	/* Passes until one finds nothing dirty (see the top: one does). */
	while (!failed && found && sync_go_on(p)) {
		found = false;
		for (i = 0; i < p->ndisks && !failed; i++)
			if (sync_disk(p, &p->disks[i], slots, &found) == -1)
				failed = true;
	}
	for (i = 0; i < SYNC_DEPTH; i++)
		free(slots[i].buf);
	/* In sync: save the cleared bits before the state says so. */
	if (!failed && !found && sync_go_on(p)) {
		for (i = 0; i < p->ndisks && !failed; i++) {
			if (bitmap_update(p->disks[i].bm, BITMAP_SYNCED, 0,
					  NULL) == -1) {
				primary_record_error(p, "%s: saving the dirty "
						     "bitmap: %s",
						     p->disks[i].name,
						     strerror(errno));
				failed = true;
			}
		}
	}
	pthread_mutex_lock(&p->lock);
	clock_gettime(CLOCK_MONOTONIC, &p->sync_t1);
	if (!failed && !found && p->state == PRIMARY_SYNCING &&
	    !p->sync_cancel) {
		p->state = PRIMARY_REPLICATING;
		/* In sync again: a degraded pair's errors are over. */
		primary_clear_error(p);
		p->syncs++;
		log_info("sync done: %" PRIu64 " bytes; replicating",
			 p->sync_done);
	} else if (failed && p->state == PRIMARY_SYNCING) {
		char why[1900];

		/* A local failure: the secondary is fine but incomplete. */
		errlog_current(&p->errs, why, sizeof why);
		p->state = PRIMARY_DEGRADED;
		snprintf(p->reason, sizeof p->reason, "sync failed: %s", why);
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, false);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	maybe_clear_live(p, false);
	return NULL;
}

/* Joins the sync thread once it has ended or been told to.  With p->ctl
 * held (the thread never takes it, only tries to).
 */
static void
sync_reap(struct primary *p)
{
	if (!p->sync_joinable)
		return;
	pthread_join(p->sync_thread, NULL);
	p->sync_joinable = false;
}

static void
sync_stop(struct primary *p)
{
	pthread_mutex_lock(&p->lock);
	p->sync_cancel = true;
	pthread_mutex_unlock(&p->lock);
	sync_reap(p);
}

static int
connect_all(struct primary *p, const char *uri)
{
	char err[512];
	size_t i, j;

	for (i = 0; i < p->ndisks; i++) {
		struct primary_disk *d = &p->disks[i];
		const char *u = uri != NULL ? uri : d->conf_uri;

		if (p->link->connect(p->link_opaque, i, u, d->size, err,
				     sizeof err) == -1) {
			int saved = errno;

			for (j = 0; j < i; j++)
				p->link->disconnect(p->link_opaque, j, false);
			return refuse(p, saved, "%s: cannot connect to the "
				      "secondary %s: %s", d->name, u, err);
		}
		pthread_mutex_lock(&p->lock);
		snprintf(d->uri, sizeof d->uri, "%s", u);
		pthread_mutex_unlock(&p->lock);
	}
	return 0;
}

/* "2026-12-07 12:00:00 UTC" */
static void
put_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "an unknown time");
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Disk d's secondary's generations (gi.h) against what the bitmap
 * counts against: the verdict, the peer's set in *peer.
 */
static enum gi_verdict
compare_generations(struct primary *p, struct primary_disk *d,
		    struct gi_set *peer)
{
	char desc[4200];
	uint64_t recorded;
	struct gi_set own;
	int rc = 1;

	desc[0] = '\0';
	if (p->link->peer_description != NULL)
		p->link->peer_description(p->link_opaque, d->index, desc,
					  sizeof desc);
	rc = gi_parse(desc, peer);
	if (rc == -1)
		log_warn("%s: the secondary's description has a malformed "
			 "generation (%.200s): treated as unknown", d->name,
			 desc);
	bitmap_gens(d->bm, &recorded, &own);
	return gi_compare(recorded, rc == 0 ? peer : NULL);
}

/* The split brain (or unrelated data) on disk d, for .colo/error and
 * the log.
 */
static int
refuse_split_brain(struct primary *p, struct primary_disk *d,
		   const struct gi_set *peer, enum gi_verdict v)
{
	char when_s[64], when_p[64];
	uint64_t recorded;
	struct gi_set own;

	bitmap_gens(d->bm, &recorded, &own);
	put_time(when_s, sizeof when_s, peer->since);
	put_time(when_p, sizeof when_p, own.since);
	if (v == GI_UNRELATED) {
		log_error("%s: unrelated data on %s: its generation %016" PRIx64
			  " has a history without %016" PRIx64, d->name,
			  d->uri, peer->current, recorded);
		return refuse(p, EIO, "unrelated data on %s: the secondary %s "
			      "(generation %016" PRIx64 ", since %s) has a "
			      "history of its own, without %016" PRIx64 ", "
			      "the generation this primary last synced with "
			      "(another pair's disk, or one that failed over "
			      "more than %d times since). Nothing was copied. "
			      "To overwrite it with this primary's data: "
			      "resync full (colofs(8), SPLIT BRAIN)", d->name,
			      d->uri, peer->current, when_s, recorded,
			      GI_HISTORY);
	}
	pthread_mutex_lock(&p->lock);
	p->split_brain = true;
	pthread_mutex_unlock(&p->lock);
	/* Kept across restarts, for the status (a failure costs only that). */
	if (bitmap_update(d->bm, BITMAP_SPLIT_BRAIN, 0, NULL) == -1)
		log_error("%s: cannot record the split brain: %m", d->name);
	log_error("%s: split brain with %s: it failed over at %s (generation "
		  "%016" PRIx64 " after %016" PRIx64 ")", d->name, d->uri,
		  when_s, peer->current, recorded);
	return refuse(p, EIO, "split brain on %s: the secondary %s failed "
		      "over at %s and may have written since (its generation "
		      "%016" PRIx64 ", after %016" PRIx64 ", the one this "
		      "primary last synced with); this primary has %" PRIu64
		      " bytes dirty, written since %s (generation %016" PRIx64
		      "). Nothing was copied. To keep this primary's data: "
		      "resync full here, or restart the secondary with colofs "
		      "--demote --discard-local (either way the secondary's "
		      "writes since %s are lost). To keep the secondary's: "
		      "fail over to it instead (colofs(8), SPLIT BRAIN)",
		      d->name, d->uri, when_s, peer->current, recorded,
		      bitmap_dirty_bytes(d->bm), when_p, own.current, when_s);
}

static int mark_cb(void *opaque, uint64_t off, uint64_t len);

/* A returning old primary's leftover (gi.h): the granules it wrote that
 * never reached this side, copied back with the dirty ones.  0; -1 when
 * it cannot be read (logged): the caller copies everything.
 */
static int
mark_leftover(struct primary *p, struct primary_disk *d)
{
	char desc[4200];
	uint64_t before = bitmap_dirty_bytes(d->bm);
	int rc;

	desc[0] = '\0';
	if (p->link->peer_description != NULL)
		p->link->peer_description(p->link_opaque, d->index, desc,
					  sizeof desc);
	rc = gi_parse_left(desc, d->size, mark_cb, d->bm);
	if (rc == -1) {
		log_warn("%s: the secondary's leftover is unreadable (%m): a "
			 "full sync", d->name);
		return -1;
	}
	if (rc == 0)
		log_info("%s: the secondary was a primary of this pair: %"
			 PRIu64 " more bytes it wrote that this side never "
			 "got are copied back", d->name,
			 bitmap_dirty_bytes(d->bm) - before);
	return 0;
}

/* Connected: marks what must be copied, then syncing.  With p->ctl. */
static int
begin_sync(struct primary *p, bool full)
{
	char peer[URI_MAX];
	struct gi_set *peers;
	enum gi_verdict *verdicts;
	uint64_t total = 0;
	size_t i;

	peers = calloc(p->ndisks ? p->ndisks : 1, sizeof *peers);
	verdicts = calloc(p->ndisks ? p->ndisks : 1, sizeof *verdicts);
	if (peers == NULL || verdicts == NULL) {
		free(peers);
		free(verdicts);
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, false);
		return refuse(p, ENOMEM, "out of memory");
	}
	/* Every disk is compared before any bitmap changes. */
	for (i = 0; i < p->ndisks; i++) {
		struct primary_disk *d = &p->disks[i];

		verdicts[i] = compare_generations(p, d, &peers[i]);
		log_info("%s: generations: rule %d, %s", d->name,
			 (int)verdicts[i], gi_verdict_name(verdicts[i]));
		if ((verdicts[i] == GI_SPLIT_BRAIN ||
		     verdicts[i] == GI_UNRELATED) && !full) {
			refuse_split_brain(p, d, &peers[i], verdicts[i]);
			free(peers);
			free(verdicts);
			for (i = 0; i < p->ndisks; i++)
				p->link->disconnect(p->link_opaque, i, false);
			errno = EIO;
			return -1;
		}
		if (verdicts[i] == GI_SPLIT_BRAIN ||
		    verdicts[i] == GI_UNRELATED)
			log_warn("%s: resync full over %s: this primary's "
				 "data wins; the secondary's is overwritten",
				 d->name, verdicts[i] == GI_SPLIT_BRAIN ?
				 "a split brain" : "unrelated data");
	}
	for (i = 0; i < p->ndisks; i++) {
		struct primary_disk *d = &p->disks[i];
		unsigned f = bitmap_flags(d->bm);
		bool inc;

		bitmap_peer(d->bm, peer, sizeof peer);
		inc = !full && (f & BITMAP_SYNCED) &&
		      strcmp(peer, d->uri) == 0 && verdicts[i] == GI_SAME;
		if (inc && mark_leftover(p, d) == -1)
			inc = false;
		if (!inc && bitmap_mark_all(d->bm) == -1)
			goto fail;
		/* A pair forms: the bits count against the secondary's
		 * generation from now on (after the marks: a crash in
		 * between leaves more to copy, never less), and this
		 * primary starts a generation of its own.
		 */
		if (new_generation(d, peers[i].current) == -1)
			goto fail;
		/* Live before anything mirrors.  Synced with this peer from
		 * now on: outside the dirty granules (all of them, for a full
		 * sync) the secondary has the data, which is what the flag
		 * says; so an interrupted sync resumes where it stopped.
		 */
		if (bitmap_update(d->bm, BITMAP_LIVE | BITMAP_SYNCED |
					  (d->al ? BITMAP_AL : 0),
				  BITMAP_SPLIT_BRAIN | (d->al ? 0 : BITMAP_AL),
				  d->uri) == -1)
			goto fail;
		log_info("%s: %s sync to %s", d->name,
			 inc ? "incremental" : "full", d->uri);
		total += bitmap_dirty_bytes(d->bm);
	}
	free(peers);
	free(verdicts);
	for (i = 0; i < p->ndisks; i++)
		touch(&p->disks[i]);
	p->live = true;
	pthread_mutex_lock(&p->lock);
	p->split_brain = false;
	p->state = PRIMARY_SYNCING;
	p->sync_cancel = false;
	p->sync_total = total;
	p->sync_done = 0;
	p->reason[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &p->sync_t0);
	p->sync_t1 = p->sync_t0;
	/* Every unmirrored write in flight has marked its granules once it
	 * is done (see the top).
	 */
	while (p->unmirrored > 0)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (pthread_create(&p->sync_thread, NULL, sync_main, p) != 0) {
		pthread_mutex_lock(&p->lock);
		p->state = PRIMARY_DEGRADED;
		snprintf(p->reason, sizeof p->reason,
			 "cannot start the sync thread");
		pthread_mutex_unlock(&p->lock);
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, false);
		return refuse(p, EAGAIN, "cannot start the sync thread");
	}
	p->sync_joinable = true;
	return 0;
fail:
	free(peers);
	free(verdicts);
	for (i = 0; i < p->ndisks; i++)
		p->link->disconnect(p->link_opaque, i, false);
	return refuse(p, EIO, "cannot update the dirty bitmap: %s",
		      strerror(errno));
}

/* start and resync: once connected, what was wrong before is over (the
 * error is cleared before the sync can raise its own).
 */
uint64_t
primary_vouch(void *arg, size_t i, const char *description)
{
	struct primary *p = arg;
	struct gi_set peer, own;
	uint64_t recorded;
	enum gi_verdict v;

	if (i >= p->ndisks || gi_parse(description, &peer) != 0)
		return 0;
	bitmap_gens(p->disks[i].bm, &recorded, &own);
	v = gi_compare(recorded, &peer);
	if ((v == GI_SPLIT_BRAIN || v == GI_UNRELATED) && !p->connect_full)
		return 0;
	return peer.current;
}

static int
connect_and_sync(struct primary *p, const char *uri, bool full)
{
	/* For primary_vouch, called by the link's connect in this thread. */
	p->connect_full = full;
	if (connect_all(p, uri) == -1)
		return -1;
	primary_clear_error(p);
	return begin_sync(p, full);
}

int
primary_start(struct primary *p)
{
	int rc;

	pthread_mutex_lock(&p->ctl);
	sync_reap(p);
	if (primary_state(p) != PRIMARY_NONE)
		rc = refuse(p, EBUSY, "start: the state is %s (start is for "
			    "none; use resync after degraded or failover)",
			    primary_state_name(primary_state(p)));
	else
		rc = connect_and_sync(p, NULL, false);
	if (rc == -1)
		maybe_clear_live(p, true);
	pthread_mutex_unlock(&p->ctl);
	return rc;
}

int
primary_resync(struct primary *p, bool full, const char *uri)
{
	enum primary_state s;
	int rc;

	pthread_mutex_lock(&p->ctl);
	sync_reap(p);
	s = primary_state(p);
	if (mirroring(s))
		rc = refuse(p, EBUSY, "resync: the state is %s",
			    primary_state_name(s));
	else if (uri != NULL && p->ndisks != 1)
		rc = refuse(p, EINVAL, "resync URI: only for a single disk; "
			    "set each disk's secondary in the config");
	else
		rc = connect_and_sync(p, uri, full);
	if (rc == -1)
		maybe_clear_live(p, true);
	pthread_mutex_unlock(&p->ctl);
	return rc;
}

int
primary_checkpoint(struct primary *p)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	switch (p->state) {
	case PRIMARY_REPLICATING:
		p->checkpoints++;
		primary_clear_error(p);
		break;
	case PRIMARY_DEGRADED:
		rc = refuse(p, EIO, "checkpoint: degraded: %s", p->reason);
		break;
	case PRIMARY_SYNCING:
		rc = refuse(p, EBUSY, "checkpoint: syncing, %" PRIu64 " of %"
			    PRIu64 " bytes copied", p->sync_done,
			    p->sync_total);
		break;
	default:
		rc = refuse(p, EINVAL, "checkpoint: the state is %s, not "
			    "replicating", primary_state_name(p->state));
		break;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Leaves mirroring for state to: the links go (cleanly or not), writes
 * in flight finish (those whose mirror fails mark their granules), the
 * bitmaps are exact again.  With p->ctl held.
 */
static void
leave(struct primary *p, enum primary_state to, bool clean)
{
	size_t i;

	pthread_mutex_lock(&p->lock);
	p->state = to;
	p->sync_cancel = true;
	if (!clean)
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, false);
	pthread_mutex_unlock(&p->lock);
	sync_reap(p);
	pthread_mutex_lock(&p->lock);
	while (p->mirrored > 0)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (clean)
		for (i = 0; i < p->ndisks; i++)
			p->link->disconnect(p->link_opaque, i, true);
	maybe_clear_live(p, true);
}

int
primary_failover(struct primary *p)
{
	int rc = 0;

	pthread_mutex_lock(&p->ctl);
	if (primary_state(p) == PRIMARY_FAILOVER) {
		rc = refuse(p, EBUSY, "failover: already in failover (the "
			    "secondary is gone, writes are tracked); resync "
			    "or start a new pair");
	} else {
		primary_clear_error(p);
		leave(p, PRIMARY_FAILOVER, false);
		log_info("failover: the secondary is gone; writes are tracked");
	}
	pthread_mutex_unlock(&p->ctl);
	return rc;
}

int
primary_stop(struct primary *p)
{
	int rc = 0;

	pthread_mutex_lock(&p->ctl);
	if (primary_state(p) == PRIMARY_NONE)
		rc = refuse(p, EINVAL, "stop: replication is not started "
			    "(state none)");
	else
		leave(p, PRIMARY_NONE, true);
	pthread_mutex_unlock(&p->ctl);
	return rc;
}

void
primary_wait_sync(struct primary *p, unsigned timeout_ms)
{
	struct timespec dl;

	dl = deadline_in_ms(timeout_ms);
	pthread_mutex_lock(&p->lock);
	while (p->state == PRIMARY_SYNCING &&
	       pthread_cond_timedwait(&p->cond, &p->lock, &dl) == 0)
		;
	pthread_mutex_unlock(&p->lock);
}

/* ---- set-up and status ---- */

/* The image of a disk primary_new took, unless borrowed. */
static void
close_taken(const struct primary_disk_config *dc)
{
	if (!dc->borrowed)
		image_close(dc->img);
}

static int
mark_cb(void *opaque, uint64_t off, uint64_t len)
{
	return bitmap_mark(opaque, off, len);
}

/* Disk d's activity log: opened when configured, or to recover the one
 * a crashed run used.  A bitmap found live (the primary died mirroring)
 * gets the log's extents marked, or, without a usable log, everything
 * (bitmap_open did that already when the run had no log).  Then the log
 * forgets them.  0, or -1 (logged).
 */
static int
open_al(struct primary_disk *d, const struct primary_disk_config *dc,
	const struct primary_config *cfg)
{
	unsigned f = bitmap_flags(d->bm);
	bool recover = (f & BITMAP_LIVE) && (f & BITMAP_AL);
	uint64_t before;

	if (f & BITMAP_LIVE)
		d->p->live = true;
	if (dc->al_path != NULL && (cfg->al_extents > 0 || recover)) {
		d->al = al_open(dc->al_path, d->size, cfg->al_extent,
				cfg->al_extents);
		if (d->al == NULL)
			return -1;
	}
	if (recover) {
		before = bitmap_dirty_bytes(d->bm);
		if (d->al != NULL && al_recover(d->al, mark_cb, d->bm) == 0) {
			log_warn("%s: the primary stopped while replicating; "
				 "its activity log names %" PRIu64 " more "
				 "bytes that may differ", d->name,
				 bitmap_dirty_bytes(d->bm) - before);
		} else {
			log_warn("%s: the primary stopped while replicating "
				 "and its activity log is unusable (%s): the "
				 "whole disk is dirty", d->name,
				 d->al ? strerror(errno) : "missing");
			if (bitmap_mark_all(d->bm) == -1)
				return -1;
		}
	}
	if (d->al != NULL && al_reset(d->al) == -1)
		return -1;
	if (cfg->al_extents == 0) {
		al_free(d->al);
		d->al = NULL;
	}
	return 0;
}

struct primary *
primary_new(const struct primary_config *cfg)
{
	struct primary *p;
	size_t i;
	int saved;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		goto fail_imgs;
	pthread_mutex_init(&p->ctl, NULL);
	pthread_mutex_init(&p->lock, NULL);
	errlog_init(&p->errs);
	cond_init_monotonic(&p->cond);
	cond_init_monotonic(&p->ka_cond);
	p->granularity = cfg->granularity;
	p->timeout_ms = cfg->timeout_ms;
	p->keepalive_ms = cfg->keepalive_ms;
	p->link = cfg->link;
	p->link_opaque = cfg->link_opaque;
	p->disks = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof *p->disks);
	if (p->disks == NULL)
		goto fail_imgs;
	for (i = 0; i < cfg->ndisks; i++) {
		const struct primary_disk_config *dc = &cfg->disks[i];
		struct primary_disk *d = &p->disks[i];

		d->p = p;
		d->index = i;
		d->img = dc->img;
		d->borrowed = dc->borrowed;
		d->size = dc->img->size;
		rangelock_init(&d->rl);
		p->ndisks = i + 1;
		d->name = strdup(dc->name);
		if (d->name == NULL)
			goto fail;
		snprintf(d->conf_uri, sizeof d->conf_uri, "%s", dc->uri);
		snprintf(d->uri, sizeof d->uri, "%s", dc->uri);
		d->bm = bitmap_open(dc->bitmap_path, d->size, cfg->granularity);
		if (d->bm == NULL || open_al(d, dc, cfg) == -1)
			goto fail;
		if (bitmap_flags(d->bm) & BITMAP_SPLIT_BRAIN)
			p->split_brain = true;
	}
	for (; i < cfg->ndisks; i++)
		close_taken(&cfg->disks[i]);
	if (p->live && set_live(p, false) == -1)
		goto fail_all;
	if (p->keepalive_ms > 0) {
		if (pthread_create(&p->ka_thread, NULL, keepalive_main, p) != 0) {
			errno = EAGAIN;
			log_error("cannot start the keepalive thread");
			goto fail_all;
		}
		p->ka_running = true;
	}
	return p;
fail_imgs:
	for (i = 0; i < cfg->ndisks; i++)
		close_taken(&cfg->disks[i]);
	free(p);
	return NULL;
fail:
	for (i = p->ndisks; i < cfg->ndisks; i++)
		close_taken(&cfg->disks[i]);
fail_all:
	saved = errno;
	primary_free(p);
	errno = saved;
	return NULL;
}

void
primary_free(struct primary *p)
{
	size_t i;

	if (p == NULL)
		return;
	if (p->ka_running) {
		pthread_mutex_lock(&p->lock);
		p->ka_stop = true;
		pthread_cond_broadcast(&p->ka_cond);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->ka_thread, NULL);
	}
	pthread_mutex_lock(&p->ctl);
	/* Everything was acked by both sides: clean, not live. */
	if (mirroring(primary_state(p)))
		leave(p, PRIMARY_NONE, true);
	else
		sync_stop(p);
	for (i = 0; i < p->ndisks; i++)
		p->link->disconnect(p->link_opaque, i, false);
	pthread_mutex_unlock(&p->ctl);
	for (i = 0; i < p->ndisks; i++) {
		struct primary_disk *d = &p->disks[i];

		if (d->bm != NULL && bitmap_save(d->bm) == -1)
			log_error("%s: saving the dirty bitmap: %m", d->name);
		if (d->img != NULL && d->img->ops->flush(d->img) == -1)
			log_error("%s: flush: %m", d->name);
		bitmap_free(d->bm);
		al_free(d->al);
		if (!d->borrowed)
			image_close(d->img);
		rangelock_release_all(&d->rl);
		free(d->name);
	}
	free(p->disks);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->ka_cond);
	pthread_mutex_destroy(&p->lock);
	errlog_release(&p->errs);
	pthread_mutex_destroy(&p->ctl);
	free(p);
}

struct primary_disk *
primary_find_disk(struct primary *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->ndisks; i++)
		if (strcmp(p->disks[i].name, name) == 0)
			return &p->disks[i];
	return NULL;
}

uint64_t
primary_disk_size(const struct primary_disk *d)
{
	return d->size;
}

int
primary_disk_fd(const struct primary_disk *d)
{
	return d->img->fd;
}

static uint64_t
ns_between(const struct timespec *a, const struct timespec *b)
{
	return (uint64_t)(b->tv_sec - a->tv_sec) * 1000000000u +
	       (uint64_t)(b->tv_nsec - a->tv_nsec);
}

int
primary_get_status(struct primary *p, struct primary_status *st)
{
	struct timespec now;
	uint64_t ns;
	size_t i;

	memset(st, 0, sizeof *st);
	st->disks = calloc(p->ndisks ? p->ndisks : 1, sizeof *st->disks);
	if (st->disks == NULL)
		return -1;
	st->ndisks = p->ndisks;
	st->granularity = p->granularity;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&p->lock);
	st->state = p->state;
	st->checkpoints = p->checkpoints;
	st->syncs = p->syncs;
	st->split_brain = p->split_brain;
	st->sync_total_bytes = p->sync_total;
	st->sync_done_bytes = p->sync_done;
	ns = ns_between(&p->sync_t0, p->state == PRIMARY_SYNCING ? &now :
			&p->sync_t1);
	st->sync_rate = ns ? (uint64_t)((double)p->sync_done * 1e9 / ns) : 0;
	snprintf(st->reason, sizeof st->reason, "%s", p->reason);
	st->error_time = errlog_current(&p->errs, st->error, sizeof st->error);
	for (i = 0; i < p->ndisks; i++)
		snprintf(st->disks[i].uri, sizeof st->disks[i].uri, "%s",
			 p->disks[i].uri);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->ndisks; i++) {
		struct primary_disk *d = &p->disks[i];
		struct primary_disk_status *ds = &st->disks[i];
		char peer[URI_MAX];

		ds->name = d->name;
		ds->size = d->size;
		ds->dirty_bytes = bitmap_dirty_bytes(d->bm);
		ds->sent_bytes = p->link->bytes_sent(p->link_opaque, i);
		if (p->link->reconnects != NULL)
			ds->reconnects = p->link->reconnects(p->link_opaque, i);
		ds->write_bytes = atomic_load(&d->write_bytes);
		ds->mirrored_bytes = atomic_load(&d->mirrored_bytes);
		bitmap_peer(d->bm, peer, sizeof peer);
		ds->synced = (bitmap_flags(d->bm) & BITMAP_SYNCED) &&
			     strcmp(peer, ds->uri) == 0;
		bitmap_gens(d->bm, &ds->peer_gen, &ds->gen);
		if (d->al != NULL) {
			struct al_stats as;

			al_get_stats(d->al, &as);
			ds->al_active = as.active;
			ds->al_transactions = as.transactions;
			ds->al_write_us = as.write_us;
		}
	}
	return 0;
}

void
primary_status_release(struct primary_status *st)
{
	free(st->disks);
	st->disks = NULL;
}
