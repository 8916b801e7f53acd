/* SPDX-License-Identifier: MIT */
/* The primary's dirty bitmap, durable: which granules of a disk the
 * secondary may not have.
 *
 * File format (little-endian, through core/le.h, whatever the host; one
 * file per disk, STATE_DIR/NAME.dirty):
 *
 *   0     char  magic[8]     "COLOFSDB"
 *   8     u32   version      1
 *   12    u32   flags        BITMAP_SYNCED | BITMAP_LIVE | BITMAP_AL |
 *                            BITMAP_SPLIT_BRAIN | BITMAP_UNCLEAN
 *   16    u64   size         of the disk, bytes
 *   24    u64   granularity  bytes per bit, a power of two
 *   32    u64   nbits        ceil(size / granularity)
 *   40    char  peer[1024]   the secondary's URI the flags refer to, NUL
 *   1064  u64   peer_gen     the secondary's generation (gi.h) the bits
 *                            count against; 0: none recorded
 *   1072  u64   gen          this primary's generation, 0: none yet
 *   1080  i64   gen_since    when it began, Unix seconds
 *   1088  u64   gen_hist[4]  its previous ones, newest first
 *   4096  u64   words[]      bit i of word i/64 = granule i is dirty
 *
 * The header and the words are encoded and decoded field by field
 * (encode_header, decode_header, and the words on their way to and from
 * the file), never copied as a struct: the file is the same on any host.
 *
 * A file written before the generation fields existed holds zeros
 * there, which reads as "nothing recorded": the next sync is a full one.
 *
 * The rule that makes it crash-safe is the caller's and the mark's: a
 * write that is not mirrored marks its granules before it is applied,
 * and bitmap_mark returns only once a newly set bit is on the disk
 * (pwrite of the words it changed, then fdatasync).  A bit already set
 * costs nothing (bitmap_mark_lazy, for a done secondary's tracking, does
 * no I/O: BITMAP_UNCLEAN, set durably before it, stands for its marks,
 * and a file found with it is all dirty).  Clearing is lazy (in memory;
 * written by the next mark that touches the word, or by bitmap_save):
 * after a crash a granule that was copied may read dirty, which costs
 * one more copy, never a lost write.
 *
 * Whole rewrites (bitmap_save, bitmap_mark_all, header changes) go to a
 * fresh NAME.dirty.tmp.XXXXXX made with O_EXCL | O_NOFOLLOW in the state
 * directory's fd (core/fdio.h), fsync, renameat over NAME.dirty, fsync the
 * directory: the file is always either the old or the new one, and a link
 * planted in the directory steers nothing.  An existing NAME.dirty is
 * opened without following a link and trusted only if root (or our user)
 * owns it and alone can write it.
 *
 * Group commit.  Concurrent marks share their fdatasync: a mark that sets
 * bits takes a new generation; one marker at a time (the syncer) copies
 * the words changed since the last sync, writes and syncs them without
 * the lock, then declares every generation up to the one it started with
 * durable; a marker returns once its generation is.  A mark that sets no
 * bit waits for the generation current when it looked (the bits it found
 * may have been set by a mark whose sync is still under way), which costs
 * nothing when no sync is pending.  Whole rewrites wait for the syncer.
 *
 * Locking: b->lock protects the words, the counters, the generations, the
 * header and the fd (the syncer uses its copy of the fd, and whole
 * rewrites, which replace it, wait until no syncer is out).  It is a leaf
 * lock: nothing is taken under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitmap.h"
#include "fdio.h"
#include "le.h"
#include "log.h"

#define HDR_SIZE 4096
#define PEER_MAX 1024
static const char magic[8] = "COLOFSDB";

/* The header in memory; its place in the file is encode_header's. */
struct header {
	char magic[8];
	uint32_t version;
	uint32_t flags;
	uint64_t size;
	uint64_t granularity;
	uint64_t nbits;
	char peer[PEER_MAX];
	uint64_t peer_gen;
	struct gi_set gen;
};

/* Byte offsets in the file (the table above). */
#define OFF_PEER 40
#define OFF_PEER_GEN (OFF_PEER + PEER_MAX)	/* 1064 */
#define OFF_GEN (OFF_PEER_GEN + 8)		/* 1072 */
#define OFF_GEN_SINCE (OFF_GEN + 8)		/* 1080 */
#define OFF_GEN_HIST (OFF_GEN_SINCE + 8)	/* 1088 */
_Static_assert(OFF_GEN_HIST + 8 * GI_HISTORY <= HDR_SIZE,
	       "the header fits its 4096 bytes");

static void
encode_header(unsigned char *p, const struct header *h)
{
	int i;

	memset(p, 0, HDR_SIZE);
	memcpy(p, h->magic, sizeof h->magic);
	le_put32(p + 8, h->version);
	le_put32(p + 12, h->flags);
	le_put64(p + 16, h->size);
	le_put64(p + 24, h->granularity);
	le_put64(p + 32, h->nbits);
	memcpy(p + OFF_PEER, h->peer, PEER_MAX);
	le_put64(p + OFF_PEER_GEN, h->peer_gen);
	le_put64(p + OFF_GEN, h->gen.current);
	le_put64(p + OFF_GEN_SINCE, (uint64_t) h->gen.since);
	for (i = 0; i < GI_HISTORY; i++)
		le_put64(p + OFF_GEN_HIST + 8 * i, h->gen.history[i]);
}

static void
decode_header(struct header *h, const unsigned char *p)
{
	int i;

	memcpy(h->magic, p, sizeof h->magic);
	h->version = le_get32(p + 8);
	h->flags = le_get32(p + 12);
	h->size = le_get64(p + 16);
	h->granularity = le_get64(p + 24);
	h->nbits = le_get64(p + 32);
	memcpy(h->peer, p + OFF_PEER, PEER_MAX);
	h->peer_gen = le_get64(p + OFF_PEER_GEN);
	h->gen.current = le_get64(p + OFF_GEN);
	h->gen.since = (int64_t) le_get64(p + OFF_GEN_SINCE);
	for (i = 0; i < GI_HISTORY; i++)
		h->gen.history[i] = le_get64(p + OFF_GEN_HIST + 8 * i);
}

/* Writes n words, little-endian, at off of fd.  0, or -1 with errno. */
static int
put_words(int fd, const uint64_t *w, uint64_t n, uint64_t off)
{
	unsigned char chunk[4096];
	uint64_t i, j, k;

	for (i = 0; i < n; i += k) {
		k = n - i < sizeof chunk / 8 ? n - i : sizeof chunk / 8;
		for (j = 0; j < k; j++)
			le_put64(chunk + 8 * j, w[i + j]);
		if (full_pwrite(fd, chunk, k * 8, off + 8 * i) == -1)
			return -1;
	}
	return 0;
}

struct bitmap {
	pthread_mutex_t lock;
	char *path;
	char *name;			/* path's last component */
	int dirfd;			/* path's directory, opened once */
	int fd;				/* protected by lock */
	uint64_t size, gran, nbits, nwords;
	struct header hdr;		/* protected by lock */
	uint64_t *words;		/* protected by lock */
	uint64_t nset;			/* protected by lock */
	pthread_cond_t cond;		/* a sync ended */
	uint64_t gen_set, gen_synced;	/* protected by lock */
	bool syncing;			/* a syncer is out; protected by lock */
	uint64_t lo, hi;		/* words to sync; lo > hi: none */
};

static uint64_t
granule_len(const struct bitmap *b, uint64_t i)
{
	uint64_t start = i * b->gran;

	return b->size - start < b->gran ? b->size - start : b->gran;
}

/* Every granule dirty, in memory. */
static void
set_all(struct bitmap *b)
{
	memset(b->words, 0xff, b->nwords * sizeof *b->words);
	if (b->nbits % 64)
		b->words[b->nwords - 1] = (UINT64_C(1) << (b->nbits % 64)) - 1;
	b->nset = b->nbits;
}

/* Writes the header and words to path.tmp, then renames it over path. */
static int
write_whole(struct bitmap *b)
{
	char tmp[NAME_MAX + 1];
	unsigned char hdr[HDR_SIZE];
	int fd, r, saved;

	while (b->syncing)
		pthread_cond_wait(&b->cond, &b->lock);
	encode_header(hdr, &b->hdr);
	fd = fdio_create_tmp(b->dirfd, b->name, 0, 0600, tmp, sizeof tmp);
	if (fd == -1) {
		log_error("dirty bitmap %s: %m", b->path);
		return -1;
	}
	if (full_pwrite(fd, hdr, sizeof hdr, 0) == -1 ||
	    put_words(fd, b->words, b->nwords, HDR_SIZE) == -1) {
		log_error("dirty bitmap %s: %m", tmp);
		goto fail;
	}
	r = fdio_commit_tmp(fd, b->dirfd, tmp, b->name);
	if (r == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (r == 1)
		goto fail_renamed;
	if (b->fd != -1)
		close(b->fd);
	b->fd = fd;
	b->gen_synced = b->gen_set;
	b->lo = UINT64_MAX;
	b->hi = 0;
	return 0;
fail:
	saved = errno;
	unlinkat(b->dirfd, tmp, 0);
	close(fd);
	errno = saved;
	return -1;
fail_renamed:
	saved = errno;
	if (b->fd != -1)
		close(b->fd);
	b->fd = fd;
	errno = saved;
	return -1;
}

static int
load(struct bitmap *b, int fd)
{
	unsigned char hdr[HDR_SIZE];
	struct stat st;
	uint64_t i;

	if (fstat(fd, &st) == -1 || full_pread(fd, hdr, sizeof hdr, 0) == -1) {
		log_error("dirty bitmap %s: %m", b->path);
		return -1;
	}
	decode_header(&b->hdr, hdr);
	if (memcmp(b->hdr.magic, magic, sizeof magic) != 0 ||
	    b->hdr.version != 1 || b->hdr.peer[PEER_MAX - 1] != '\0') {
		log_error("dirty bitmap %s: not a colofs dirty bitmap (version "
			  "1)", b->path);
		errno = EINVAL;
		return -1;
	}
	if (b->hdr.size != b->size || b->hdr.granularity != b->gran) {
		log_error("dirty bitmap %s: made for a disk of %" PRIu64
			  " bytes at %" PRIu64 " bytes a bit, not %" PRIu64
			  " at %" PRIu64 "; remove it to start over (the "
			  "next sync is then a full one)", b->path,
			  b->hdr.size, b->hdr.granularity, b->size, b->gran);
		errno = EINVAL;
		return -1;
	}
	if ((uint64_t)st.st_size < HDR_SIZE + b->nwords * sizeof *b->words) {
		log_error("dirty bitmap %s: truncated", b->path);
		errno = EINVAL;
		return -1;
	}
	if (full_pread(fd, b->words, b->nwords * sizeof *b->words,
		       HDR_SIZE) == -1) {
		log_error("dirty bitmap %s: %m", b->path);
		return -1;
	}
	for (i = 0; i < b->nwords; i++)
		b->words[i] = le64toh(b->words[i]);
	/* Bits past the end would count as dirty bytes that do not exist. */
	if (b->nbits % 64)
		b->words[b->nwords - 1] &= (UINT64_C(1) << (b->nbits % 64)) - 1;
	for (i = 0; i < b->nwords; i++)
		b->nset += (uint64_t)__builtin_popcountll(b->words[i]);
	return 0;
}

struct bitmap *
bitmap_open(const char *path, uint64_t size, uint64_t gran)
{
	struct bitmap *b;
	const char *name;
	char why[256];
	int fd, saved;

	if (gran == 0 || (gran & (gran - 1)) != 0 || size == 0) {
		errno = EINVAL;
		return NULL;
	}
	b = calloc(1, sizeof *b);
	if (b == NULL)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->fd = -1;
	b->dirfd = -1;
	b->lo = UINT64_MAX;
	b->size = size;
	b->gran = gran;
	b->nbits = (size + gran - 1) / gran;
	b->nwords = (b->nbits + 63) / 64;
	b->path = strdup(path);
	b->words = calloc(b->nwords, sizeof *b->words);
	if (b->path == NULL || b->words == NULL)
		goto fail;
	b->dirfd = fdio_parent_open(path, &name);
	if (b->dirfd == -1) {
		log_error("dirty bitmap %s: its directory: %m", path);
		goto fail;
	}
	b->name = strdup(name);
	if (b->name == NULL)
		goto fail;
	fdio_sweep_tmp(b->dirfd, b->name);	/* a crash mid-rewrite */
	fd = fdio_open_file_at(b->dirfd, b->name, O_RDWR);
	if (fd == -1 && errno != ENOENT) {
		log_error("dirty bitmap %s: %s", path, errno == EINVAL ?
			  "not a regular file" : strerror(errno));
		goto fail;
	}
	if (fd != -1 && fdio_check_own(fd, why, sizeof why) == -1) {
		log_error("dirty bitmap %s: %s", path, why);
		close(fd);
		errno = EPERM;
		goto fail;
	}
	if (fd == -1) {
		memcpy(b->hdr.magic, magic, sizeof magic);
		b->hdr.version = 1;
		b->hdr.size = size;
		b->hdr.granularity = gran;
		b->hdr.nbits = b->nbits;
		if (write_whole(b) == -1)
			goto fail;
		return b;
	}
	b->fd = fd;
	if (load(b, fd) == -1)
		goto fail;
	if ((b->hdr.flags & BITMAP_LIVE) && !(b->hdr.flags & BITMAP_AL)) {
		log_warn("dirty bitmap %s: the primary stopped while "
			 "replicating; what it was writing is unknown, so "
			 "the whole disk is dirty", path);
		set_all(b);
		if (write_whole(b) == -1)
			goto fail;
	}
	if (b->hdr.flags & BITMAP_UNCLEAN) {
		log_warn("dirty bitmap %s: the last process stopped without "
			 "saving its marks, so the whole disk is dirty", path);
		set_all(b);
		b->hdr.flags &= ~(uint32_t)BITMAP_UNCLEAN;
		if (write_whole(b) == -1)
			goto fail;
	}
	return b;
fail:
	saved = errno;
	bitmap_free(b);
	errno = saved;
	return NULL;
}

void
bitmap_free(struct bitmap *b)
{
	if (b == NULL)
		return;
	if (b->fd != -1)
		close(b->fd);
	if (b->dirfd != -1)
		close(b->dirfd);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b->words);
	free(b->path);
	free(b->name);
	free(b);
}

uint64_t
bitmap_granularity(const struct bitmap *b)
{
	return b->gran;
}

unsigned
bitmap_flags(struct bitmap *b)
{
	unsigned f;

	pthread_mutex_lock(&b->lock);
	f = b->hdr.flags;
	pthread_mutex_unlock(&b->lock);
	return f;
}

void
bitmap_peer(struct bitmap *b, char *buf, size_t len)
{
	pthread_mutex_lock(&b->lock);
	snprintf(buf, len, "%s", b->hdr.peer);
	pthread_mutex_unlock(&b->lock);
}

int
bitmap_update(struct bitmap *b, unsigned set, unsigned clear,
	      const char *peer)
{
	struct header old;
	int rc;

	if (peer != NULL && strlen(peer) >= PEER_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	pthread_mutex_lock(&b->lock);
	old = b->hdr;
	b->hdr.flags = (b->hdr.flags | set) & ~clear;
	if (peer != NULL) {
		memset(b->hdr.peer, 0, sizeof b->hdr.peer);
		strcpy(b->hdr.peer, peer);
	}
	rc = write_whole(b);
	if (rc == -1)
		b->hdr = old;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void
bitmap_gens(struct bitmap *b, uint64_t *peer_gen, struct gi_set *own)
{
	pthread_mutex_lock(&b->lock);
	*peer_gen = b->hdr.peer_gen;
	*own = b->hdr.gen;
	pthread_mutex_unlock(&b->lock);
}

int
bitmap_set_gens(struct bitmap *b, uint64_t peer_gen, const struct gi_set *own)
{
	struct header old;
	int rc;

	pthread_mutex_lock(&b->lock);
	old = b->hdr;
	b->hdr.peer_gen = peer_gen;
	b->hdr.gen = *own;
	rc = write_whole(b);
	if (rc == -1)
		b->hdr = old;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

/* Writes out the words changed so far as the syncer.  With b->lock held
 * (dropped and retaken around the I/O).  0, or -1 with errno.
 */
static int
sync_words(struct bitmap *b)
{
	uint64_t target = b->gen_set, lo = b->lo, hi = b->hi, *copy, i;
	int fd = b->fd, rc = 0, saved;

	if (lo > hi) {
		b->gen_synced = target;
		return 0;
	}
	copy = malloc((hi - lo + 1) * sizeof *copy);
	if (copy == NULL)
		return -1;
	for (i = lo; i <= hi; i++)	/* the file's byte order */
		le_put64((unsigned char *) &copy[i - lo], b->words[i]);
	b->lo = UINT64_MAX;
	b->hi = 0;
	b->syncing = true;
	pthread_mutex_unlock(&b->lock);
	if (full_pwrite(fd, copy, (hi - lo + 1) * sizeof *copy,
			HDR_SIZE + lo * sizeof *copy) == -1 ||
	    fdatasync(fd) == -1) {
		saved = errno;
		log_error("dirty bitmap %s: %m", b->path);
		errno = saved;
		rc = -1;
	}
	saved = errno;
	free(copy);
	pthread_mutex_lock(&b->lock);
	b->syncing = false;
	if (rc == 0) {
		if (target > b->gen_synced)
			b->gen_synced = target;
	} else {
		/* Someone must write these words again. */
		if (b->lo > b->hi) {
			b->lo = lo;
			b->hi = hi;
		} else {
			if (lo < b->lo)
				b->lo = lo;
			if (hi > b->hi)
				b->hi = hi;
		}
	}
	pthread_cond_broadcast(&b->cond);
	errno = saved;
	return rc;
}

/* Sets the bits of [off, +len) in memory, noting the words to sync:
 * true if any was clear.  With b->lock held; len > 0, within the disk.
 */
static bool
set_bits(struct bitmap *b, uint64_t off, uint64_t len)
{
	uint64_t first = off / b->gran, last = (off + len - 1) / b->gran, i;
	bool set = false;

	for (i = first; i <= last; i++) {
		uint64_t bit = UINT64_C(1) << (i % 64);

		if (b->words[i / 64] & bit)
			continue;
		b->words[i / 64] |= bit;
		b->nset++;
		set = true;
		if (i / 64 < b->lo)
			b->lo = i / 64;
		if (b->lo > b->hi || i / 64 > b->hi)
			b->hi = i / 64;
	}
	return set;
}

int
bitmap_mark(struct bitmap *b, uint64_t off, uint64_t len)
{
	uint64_t my;
	int rc = 0;

	if (len == 0 || off >= b->size)
		return 0;
	if (len > b->size - off)
		len = b->size - off;
	pthread_mutex_lock(&b->lock);
	if (set_bits(b, off, len))
		b->gen_set++;
	my = b->gen_set;
	while (rc == 0 && b->gen_synced < my) {
		if (b->syncing)
			pthread_cond_wait(&b->cond, &b->lock);
		else
			rc = sync_words(b);
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void
bitmap_mark_lazy(struct bitmap *b, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= b->size)
		return;
	if (len > b->size - off)
		len = b->size - off;
	pthread_mutex_lock(&b->lock);
	set_bits(b, off, len);
	pthread_mutex_unlock(&b->lock);
}

int
bitmap_mark_all(struct bitmap *b)
{
	int rc;

	pthread_mutex_lock(&b->lock);
	set_all(b);
	rc = write_whole(b);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

void
bitmap_clear(struct bitmap *b, uint64_t off, uint64_t len)
{
	uint64_t first, end, i;

	if (off >= b->size || len == 0)
		return;
	if (len > b->size - off)
		len = b->size - off;
	/* Whole granules only; the disk's last one may be short. */
	first = (off + b->gran - 1) / b->gran;
	end = off + len == b->size ? b->nbits : (off + len) / b->gran;
	pthread_mutex_lock(&b->lock);
	for (i = first; i < end; i++) {
		uint64_t bit = UINT64_C(1) << (i % 64);

		if (b->words[i / 64] & bit) {
			b->words[i / 64] &= ~bit;
			b->nset--;
		}
	}
	pthread_mutex_unlock(&b->lock);
}

int
bitmap_save(struct bitmap *b)
{
	int rc;

	pthread_mutex_lock(&b->lock);
	rc = write_whole(b);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

bool
bitmap_next(struct bitmap *b, uint64_t off, uint64_t max, uint64_t *roff,
	    uint64_t *rlen)
{
	uint64_t i, start, len = 0;
	bool found = false;

	if (off >= b->size)
		return false;
	i = off / b->gran;
	pthread_mutex_lock(&b->lock);
	while (i < b->nbits) {
		uint64_t w = b->words[i / 64] >> (i % 64);

		if (w == 0) {
			i = (i / 64 + 1) * 64;
			continue;
		}
		i += (uint64_t)__builtin_ctzll(w);
		found = i < b->nbits;
		break;
	}
	if (found) {
		start = i;
		while (i < b->nbits && len < max &&
		       (b->words[i / 64] >> (i % 64) & 1)) {
			len += granule_len(b, i);
			i++;
		}
		*roff = start * b->gran;
		*rlen = len;
	}
	pthread_mutex_unlock(&b->lock);
	return found;
}

uint64_t
bitmap_dirty_bytes(struct bitmap *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->nset * b->gran;
	/* The last granule may be short. */
	if (b->words[(b->nbits - 1) / 64] >> ((b->nbits - 1) % 64) & 1)
		n -= b->gran - granule_len(b, b->nbits - 1);
	pthread_mutex_unlock(&b->lock);
	return n;
}
