/* SPDX-License-Identifier: MIT */
/* The activity log: which extents of a disk mirrored writes may be
 * touching, durably, so that a primary that crashes while replicating
 * resyncs those extents instead of the whole disk (DRBD's activity log,
 * drbd_actlog.c; doc/primary.md, "Activity log").
 *
 * The rule.  A mirrored write reaches neither image before its extents
 * are in a transaction on the disk.  An extent leaves the in-memory set
 * only when no write on it is in flight (its writes were acked by both
 * sides, or their ranges marked in the dirty bitmap), and every
 * transaction holds the whole in-memory set.  So after a crash the newest
 * valid transaction names every extent a write may have been in flight
 * on; the dirty bitmap (durable marks) names the rest that may differ.
 *
 * The hot path.  A write to extents already active costs a lock and a
 * scan of the set; only a write that activates an extent waits for a
 * transaction (a 4 KiB pwrite and an fdatasync).  One writer at a time
 * writes one; writers that need another wait and share the next one, as
 * the bitmap's marks share their fdatasync.
 *
 * The file, NAME.al beside the dirty bitmap: AL_RING slots of 4 KiB,
 * transaction n in slot n % AL_RING, so that a write torn by a crash
 * leaves the one before it intact.  A slot (little-endian, core/le.h):
 *
 *   0   char magic[8]   "COLOFSAL"
 *   8   u32  version    1
 *   12  u32  count      extents that follow
 *   16  u64  seq        transaction number, from 1
 *   24  u64  extent     bytes per extent
 *   32  u64  size       of the disk
 *   40  u64  checksum   XXH3_64bits of the 4 KiB with this field zero
 *   48  u32  extents[count]   extent numbers (offset / extent)
 *
 * A slot is valid if all of that holds (and each extent is within the
 * disk); the newest valid one is the log.  None valid: the caller assumes
 * everything may differ.  Locking: a->lock protects the set and the
 * counters; the transaction's I/O runs without it (a->writing says one
 * is out).  It is a leaf lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "al.h"
#include "fdio.h"
#include "le.h"
#include "log.h"

#define AL_RING 8
#define AL_SLOT 4096
#define AL_HDR 48
#define AL_SLOT_MAX ((AL_SLOT - AL_HDR) / 4)
#define AL_FREE UINT64_MAX
#define AL_AHEAD 4
static const char al_magic[8] = "COLOFSAL";

_Static_assert(AL_MAX_EXTENTS <= AL_SLOT_MAX, "a transaction fits a slot");

struct al_entry {
	uint64_t ext;  /* AL_FREE: unused */
	unsigned refs; /* writes in flight on it */
	bool durable;  /* in a transaction on the disk */
	uint64_t used; /* a->tick at its last use: the LRU's key */
};

struct al {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a transaction ended, or refs dropped */
	char *path;
	int fd;
	uint64_t size, extent, nexts; /* nexts: extents of the disk */
	unsigned n;		      /* entries */
	uint64_t *snap;		      /* the writer's copy of the set */
	struct al_entry *e;	      /* protected by lock */
	uint64_t seq, tick;	      /* protected by lock */
	bool writing;		      /* protected by lock */
	uint64_t transactions;	      /* protected by lock */
	uint64_t write_us;	      /* protected by lock */
	uint64_t *found; /* the newest valid transaction's extents */
	uint32_t nfound; /* (at open) and its extent size */
	uint64_t found_extent;
	bool found_valid;
	unsigned char page[AL_SLOT]; /* the writer's; a->writing */
};

static uint64_t
slot_sum(unsigned char *slot)
{
	unsigned char saved[8];
	uint64_t sum;

	memcpy(saved, slot + 40, 8);
	memset(slot + 40, 0, 8);
	sum = XXH3_64bits(slot, AL_SLOT);
	memcpy(slot + 40, saved, 8);
	return sum;
}

/* Slot k's transaction if valid: its seq, else 0. */
static uint64_t
slot_check(struct al *a, unsigned char *slot)
{
	uint64_t seq = le_get64(slot + 16), ext = le_get64(slot + 24);
	uint32_t count = le_get32(slot + 12), i;

	if (memcmp(slot, al_magic, sizeof al_magic) != 0 ||
	    le_get32(slot + 8) != 1 || count > AL_SLOT_MAX || seq == 0 ||
	    ext == 0 || (ext & (ext - 1)) != 0 || ext > (UINT64_C(1) << 32) ||
	    le_get64(slot + 32) != a->size || le_get64(slot + 40) != slot_sum(slot))
		return 0;
	for (i = 0; i < count; i++)
		if ((uint64_t) le_get32(slot + AL_HDR + 4 * i) * ext >= a->size)
			return 0;
	return seq;
}

/* Writes the whole ring as zeros (no transaction), allocated: a
 * transaction is then an overwrite in place, and its fdatasync has no
 * metadata to commit (no journal commit, which on ext4 would also wait
 * for other files' newly allocated data).
 */
static int
fill(struct al *a, int fd)
{
	static const unsigned char zero[AL_SLOT];
	unsigned k;

	for (k = 0; k < AL_RING; k++)
		if (full_pwrite(fd, zero, sizeof zero,
				(uint64_t) k * AL_SLOT) == -1)
			goto fail;
	if (ftruncate(fd, AL_RING * AL_SLOT) == -1 || fdatasync(fd) == -1)
		goto fail;
	return 0;
fail:
	log_error("activity log %s: %m", a->path);
	return -1;
}

static int
load(struct al *a)
{
	unsigned char slot[AL_SLOT];
	uint64_t best = 0, seq;
	struct stat st;
	unsigned k;
	uint32_t i;

	if (fstat(a->fd, &st) == -1) {
		log_error("activity log %s: %m", a->path);
		return -1;
	}
	if (st.st_size != AL_RING * AL_SLOT) {
		log_warn("activity log %s: %lld bytes, not %d: holds nothing",
			 a->path, (long long) st.st_size, AL_RING * AL_SLOT);
		return fill(a, a->fd);
	}
	for (k = 0; k < AL_RING; k++) {
		if (full_pread(a->fd, slot, sizeof slot,
			       (uint64_t) k * AL_SLOT) == -1) {
			log_error("activity log %s: %m", a->path);
			return -1;
		}
		seq = slot_check(a, slot);
		if (seq <= best)
			continue;
		best = seq;
		a->found_extent = le_get64(slot + 24);
		a->nfound = le_get32(slot + 12);
		for (i = 0; i < a->nfound; i++)
			a->found[i] = le_get32(slot + AL_HDR + 4 * i);
		a->found_valid = true;
	}
	a->seq = best;
	return 0;
}

/* A new, empty ring file (no transaction yet). */
static int
create(struct al *a, int dirfd, const char *name)
{
	char tmp[NAME_MAX + 1];
	int fd, rc;

	fd = fdio_create_tmp(dirfd, name, 0, 0600, tmp, sizeof tmp);
	if (fd == -1)
		return -1;
	if (fill(a, fd) == -1) {
		unlinkat(dirfd, tmp, 0);
		close(fd);
		return -1;
	}
	rc = fdio_commit_tmp(fd, dirfd, tmp, name);
	if (rc == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

struct al *
al_open(const char *path, uint64_t size, uint64_t extent, unsigned nactive)
{
	char dbuf[PATH_MAX], nbuf[PATH_MAX], why[256];
	struct al *a;
	unsigned i;
	int dirfd, saved;

	if (size == 0 || extent == 0 || (extent & (extent - 1)) != 0 ||
	    nactive > AL_MAX_EXTENTS || strlen(path) >= PATH_MAX) {
		errno = EINVAL;
		return NULL;
	}
	a = calloc(1, sizeof *a);
	if (a == NULL)
		return NULL;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	a->fd = -1;
	a->size = size;
	a->extent = extent;
	a->nexts = (size + extent - 1) / extent;
	a->n = nactive;
	a->path = strdup(path);
	a->e = calloc(nactive ? nactive : 1, sizeof *a->e);
	a->found = calloc(AL_SLOT_MAX, sizeof *a->found);
	a->snap = calloc(nactive ? nactive : 1, sizeof *a->snap);
	if (a->path == NULL || a->e == NULL || a->found == NULL ||
	    a->snap == NULL)
		goto fail;
	for (i = 0; i < nactive; i++)
		a->e[i].ext = AL_FREE;
	strcpy(dbuf, path);
	strcpy(nbuf, path);
	dirfd = fdio_dir_open(dirname(dbuf));
	if (dirfd == -1) {
		log_error("activity log %s: its directory: %m", path);
		goto fail;
	}
	a->fd = fdio_open_file_at(dirfd, basename(nbuf), O_RDWR | O_CLOEXEC);
	if (a->fd == -1 && errno == ENOENT) {
		a->fd = create(a, dirfd, basename(nbuf));
	} else if (a->fd == -1) {
		log_error("activity log %s: %m", path);
	} else if (fdio_check_own(a->fd, why, sizeof why) == -1) {
		/* Another user's log could hide where writes were. */
		log_error("activity log %s: %s", path, why);
		close(a->fd);
		a->fd = -1;
		errno = EPERM;
	}
	saved = errno;
	close(dirfd);
	errno = saved;
	if (a->fd == -1 || load(a) == -1)
		goto fail;
	return a;
fail:
	saved = errno;
	al_free(a);
	errno = saved;
	return NULL;
}

void
al_free(struct al *a)
{
	if (a == NULL)
		return;
	if (a->fd != -1)
		close(a->fd);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a->e);
	free(a->found);
	free(a->snap);
	free(a->path);
	free(a);
}

int
al_recover(struct al *a, int (*fn)(void *, uint64_t, uint64_t), void *opaque)
{
	uint64_t off, len;
	uint32_t i;

	if (!a->found_valid) {
		errno = ENOENT;
		return -1;
	}
	for (i = 0; i < a->nfound; i++) {
		off = a->found[i] * a->found_extent;
		len = a->size - off < a->found_extent ? a->size - off
						      : a->found_extent;
		if (fn(opaque, off, len) == -1)
			return -1;
	}
	return 0;
}

/* Writes the set as transaction a->seq + 1.  With a->lock held and
 * a->writing set by the caller; drops the lock around the I/O.  On
 * success the entries written are durable.
 */
static int
write_transaction(struct al *a)
{
	uint64_t seq = ++a->seq, sum, *snap = a->snap;
	struct timespec t0, t1;
	uint32_t count = 0, i;
	unsigned k;
	int rc = 0;

	memset(a->page, 0, sizeof a->page);
	for (k = 0; k < a->n; k++) {
		if (a->e[k].ext == AL_FREE)
			continue;
		uint32_t x = (uint32_t) a->e[k].ext;

		le_put32(a->page + AL_HDR + 4 * count, x);
		snap[count++] = a->e[k].ext;
	}
	memcpy(a->page, al_magic, sizeof al_magic);
	le_put32(a->page + 8, 1);
	le_put32(a->page + 12, count);
	le_put64(a->page + 16, seq);
	le_put64(a->page + 24, a->extent);
	le_put64(a->page + 32, a->size);
	sum = slot_sum(a->page);
	le_put64(a->page + 40, sum);
	pthread_mutex_unlock(&a->lock);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (full_pwrite(a->fd, a->page, AL_SLOT,
			(seq % AL_RING) * (uint64_t) AL_SLOT) == -1 ||
	    fdatasync(a->fd) == -1) {
		log_error("activity log %s: %m", a->path);
		rc = -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_mutex_lock(&a->lock);
	a->write_us += (uint64_t) (((int64_t) t1.tv_sec - t0.tv_sec) * 1000000 +
				   (t1.tv_nsec - t0.tv_nsec) / 1000);
	if (rc == 0) {
		a->transactions++;
		for (i = 0; i < count; i++)
			for (k = 0; k < a->n; k++)
				if (a->e[k].ext == snap[i])
					a->e[k].durable = true;
	}
	return rc;
}

int
al_reset(struct al *a)
{
	int rc, saved;

	pthread_mutex_lock(&a->lock);
	while (a->writing)
		pthread_cond_wait(&a->cond, &a->lock);
	a->writing = true;
	a->found_valid = false; /* the ring forgets them now */
	rc = write_transaction(a);
	saved = errno;
	a->writing = false;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	errno = saved;
	return rc;
}

static struct al_entry *
find(struct al *a, uint64_t ext)
{
	unsigned k;

	for (k = 0; k < a->n; k++)
		if (a->e[k].ext == ext)
			return &a->e[k];
	return NULL;
}

/* A free entry, or the least recently used one with nothing in flight
 * and outside [lo, hi].
 */
static struct al_entry *
victim(struct al *a, uint64_t lo, uint64_t hi)
{
	struct al_entry *v = NULL;
	unsigned k;

	for (k = 0; k < a->n; k++) {
		struct al_entry *x = &a->e[k];

		if (x->ext == AL_FREE)
			return x;
		if (x->refs == 0 && (x->ext < lo || x->ext > hi) &&
		    (v == NULL || x->used < v->used))
			v = x;
	}
	return v;
}

/* A writer walking forward (the extent before its range is active) takes
 * the next AL_AHEAD extents into the transaction it has to write anyway,
 * so that a sequential stream waits for one transaction in AL_AHEAD + 1
 * extents, not one per extent.  Unused, they are the first to leave
 * (used = 0).  With a->lock held.
 */
static void
ahead(struct al *a, uint64_t first, uint64_t last)
{
	uint64_t ext;
	struct al_entry *x;

	if (first == 0 || find(a, first - 1) == NULL)
		return;
	for (ext = last + 1; ext <= last + AL_AHEAD && ext < a->nexts; ext++) {
		if (find(a, ext) != NULL)
			continue;
		x = victim(a, first, last + AL_AHEAD);
		if (x == NULL)
			return;
		x->ext = ext;
		x->refs = 0;
		x->durable = false;
		x->used = 0;
	}
}

/* Whether the extents [first, last] that are not active fit in entries
 * that are free or hold no write (none of [first, last] among them).
 */
static bool
room(struct al *a, uint64_t first, uint64_t last)
{
	unsigned need = 0, avail = 0, k;
	uint64_t ext;

	for (ext = first; ext <= last; ext++)
		if (find(a, ext) == NULL)
			need++;
	for (k = 0; k < a->n && avail < need; k++) {
		struct al_entry *x = &a->e[k];

		if (x->ext == AL_FREE ||
		    (x->refs == 0 && (x->ext < first || x->ext > last)))
			avail++;
	}
	return avail >= need;
}

static void
put(struct al *a, uint64_t first, uint64_t last)
{
	struct al_entry *x;
	uint64_t ext;

	for (ext = first; ext <= last; ext++) {
		x = find(a, ext);
		if (x != NULL && x->refs > 0 && --x->refs == 0)
			pthread_cond_broadcast(&a->cond);
	}
}

static bool
all_durable(struct al *a, uint64_t first, uint64_t last)
{
	uint64_t ext;

	for (ext = first; ext <= last; ext++) {
		struct al_entry *x = find(a, ext);

		if (x == NULL || !x->durable)
			return false;
	}
	return true;
}

int
al_begin(struct al *a, uint64_t off, uint64_t len)
{
	uint64_t first, last, ext;
	struct al_entry *x;
	int rc = 0, saved = 0;

	if (len == 0 || off >= a->size)
		return 0;
	if (len > a->size - off)
		len = a->size - off;
	first = off / a->extent;
	last = (off + len - 1) / a->extent;
	if (last - first >= a->n) {
		errno = E2BIG;
		return -1;
	}
	pthread_mutex_lock(&a->lock);
	/* All or nothing: a writer that held some of its extents while it
	 * waited for room for the others could deadlock with another.
	 */
	while (!room(a, first, last))
		pthread_cond_wait(&a->cond, &a->lock);
	for (ext = first; ext <= last; ext++) {
		x = find(a, ext);
		if (x != NULL) {
			x->refs++;
			x->used = ++a->tick;
		}
	}
	for (ext = first; ext <= last; ext++) {
		if (find(a, ext) != NULL)
			continue;
		x = victim(a, first, last); /* room() said there is one */
		x->ext = ext;
		x->refs = 1;
		x->durable = false;
		x->used = ++a->tick;
	}
	if (!all_durable(a, first, last))
		ahead(a, first, last);
	while (!all_durable(a, first, last)) {
		if (a->writing) {
			pthread_cond_wait(&a->cond, &a->lock);
			continue;
		}
		a->writing = true;
		rc = write_transaction(a);
		saved = errno;
		a->writing = false;
		pthread_cond_broadcast(&a->cond);
		if (rc == -1)
			break;
	}
	if (rc == -1)
		put(a, first, last);
	pthread_mutex_unlock(&a->lock);
	errno = saved;
	return rc;
}

void
al_end(struct al *a, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= a->size)
		return;
	if (len > a->size - off)
		len = a->size - off;
	pthread_mutex_lock(&a->lock);
	put(a, off / a->extent, (off + len - 1) / a->extent);
	pthread_mutex_unlock(&a->lock);
}

void
al_get_stats(struct al *a, struct al_stats *st)
{
	unsigned k;

	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&a->lock);
	for (k = 0; k < a->n; k++)
		if (a->e[k].ext != AL_FREE)
			st->active++;
	st->transactions = a->transactions;
	st->write_us = a->write_us;
	pthread_mutex_unlock(&a->lock);
}
