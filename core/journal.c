/* SPDX-License-Identifier: MIT */
/* The failover commit's journal.
 *
 * A failover commit copies V's buffered ranges into S.  If the process
 * dies half way, S holds some of V and some of the primary's last data,
 * and the buffers are the only copy of the rest.  So before the commit
 * writes S, the secondary makes the buffers durable (files in buffer_dir)
 * and writes, per disk, a journal of what the commit must do.  It is
 * binary, little-endian, and every byte of it is checked before any of it
 * is obeyed:
 *
 *   header, 128 bytes:
 *     0  "COLOFSJ\n"            magic
 *     8  u32 version (2)        12 u32 header length (128)
 *    16  u64 disk size          24 u64 generation (0: none)
 *    32  u64 salt: this journal's random id
 *    40  char disk[80]          the disk's name, NUL-padded
 *   120  u64 XXH3-64 of bytes 0..119
 *   records, 40 bytes each:
 *     0  u8 op, 7 zero bytes    8 u64 seq: the record's index
 *    16  u64 off                24 u64 len
 *    32  u64 XXH3-64 of bytes 0..31 with seed salt ^ (the checksum of the
 *        record before, or of the header): a record only validates in its
 *        place in its own journal
 *
 *   A OFF LEN   snapshot: V's bytes there are in active
 *   H OFF LEN             ... in hidden (where active is not)
 *   E N HASH    end of the snapshot: N records before it, HASH = XXH3-64
 *               of their 40-byte images; without it the journal was never
 *               committed
 *   D OFF LEN   appended during the commit: a view write put newer data
 *               into S; commit nothing there
 *   A OFF LEN   appended after failover_failed: a view write went into
 *               active there
 *
 * Replaying the records in order over empty maps (A inserts into active,
 * H into hidden, D removes from both) gives back the maps the commit
 * still has to write; committing a range twice writes the same bytes, so
 * a resumed commit may start again from the beginning.  Checksums are
 * XXH3-64 from libxxhash (Debian's libxxhash-dev): fast enough that
 * checking costs nothing next to the commit, and 64 bits.
 *
 * The snapshot is written to a fresh temporary name (core/fdio.h), fsync'd
 * and renamed (journal_commit) before the commit starts.  Records
 * appended later are one pwrite each at the end of the last whole record,
 * not synced: they survive the death of the process (the kernel has
 * them), and an fsync of the journal when the VM flushes makes them
 * survive a power cut.  A record torn by a power cut is the last one:
 * replay ignores it (a damaged record anywhere else is an error).  A
 * short append (a full file system) is cut back to the last whole record,
 * so the next append cannot glue onto it; if the cut fails too, the
 * journal is marked failed and takes no more records.
 *
 * Each buffer file carries a stamp after the disk's bytes (4096 bytes at
 * offset SIZE, so the file is SIZE + 4096 bytes): "COLOFSB\n", u32
 * version (1), u32 op (A: the active buffer, H: hidden), u64 disk size,
 * u64 the journal's salt, char disk[80], and at 120 the XXH3-64 of bytes
 * 0..119; zeros after.  A restart thereby knows that a buffer file is the
 * one this journal's records point into, not the other buffer, nor one
 * left by another failover or disk.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "fdio.h"
#include "journal.h"
#include "le.h"
#include "log.h"

#define MAGIC "COLOFSJ\n"
#define JOURNAL_END 'E'

uint64_t journal_max_bytes = JOURNAL_MAX_BYTES;
int (*journal_alloc_fault)(void);

/* Appends come from concurrent view writes: lock orders them and guards
 * the fields marked so.
 */
struct journal {
	pthread_mutex_t lock;
	int fd;
	int dirfd;			/* owned */
	char *name;
	char tmp[NAME_MAX + 1];		/* until journal_commit */
	uint64_t len;			/* bytes of whole records; lock */
	uint64_t seq;			/* the next record's index; lock */
	uint64_t salt;
	uint64_t chain;			/* the last record's checksum; lock */
	bool failed;			/* a short append could not be cut;
					 * lock */
	uint64_t size;			/* the disk's, for journal_stamp */
	char disk[JOURNAL_DISK_MAX + 1];
};

/* Fills the 40 bytes at p and returns the record's checksum. */
static uint64_t
encode_rec(unsigned char *p, char op, uint64_t seq, uint64_t off,
	   uint64_t len, uint64_t salt, uint64_t prev)
{
	uint64_t sum;

	memset(p, 0, JOURNAL_REC_LEN);
	p[0] = (unsigned char) op;
	le_put64(p + 8, seq);
	le_put64(p + 16, off);
	le_put64(p + 24, len);
	sum = XXH3_64bits_withSeed(p, 32, salt ^ prev);
	le_put64(p + 32, sum);
	return sum;
}

static void
encode_header(unsigned char *p, const char *disk, uint64_t size,
	      uint64_t generation, uint64_t salt)
{
	size_t n = strlen(disk);

	memset(p, 0, JOURNAL_HEADER_LEN);
	memcpy(p, MAGIC, 8);
	le_put32(p + 8, JOURNAL_VERSION);
	le_put32(p + 12, JOURNAL_HEADER_LEN);
	le_put64(p + 16, size);
	le_put64(p + 24, generation);
	le_put64(p + 32, salt);
	memcpy(p + 40, disk, n > JOURNAL_DISK_MAX ? JOURNAL_DISK_MAX : n);
	le_put64(p + 120, XXH3_64bits(p, 120));
}

static struct journal *
journal_alloc(int dirfd, const char *name)
{
	struct journal *j = calloc(1, sizeof *j);

	if (j == NULL)
		return NULL;
	pthread_mutex_init(&j->lock, NULL);
	j->fd = -1;
	j->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	j->name = strdup(name);
	if (j->dirfd == -1 || j->name == NULL) {
		journal_close(j);
		return NULL;
	}
	return j;
}

struct journal *
journal_create(int dirfd, const char *name, const char *disk, uint64_t size,
	       uint64_t generation, const struct journal_rec *recs, size_t n)
{
	size_t total, i;
	struct journal *j = NULL;
	unsigned char *buf = NULL, *p;
	uint64_t chain;

	/* A journal its own replay would refuse must not be written: the
	 * failover fails instead, before S is touched.
	 */
	if ((uint64_t) n >= (journal_max_bytes - JOURNAL_HEADER_LEN) /
			    JOURNAL_REC_LEN ||
	    n >= (SIZE_MAX - JOURNAL_HEADER_LEN) / JOURNAL_REC_LEN) {
		log_error("journal %s: %zu extents would make a journal of "
			  "more than %" PRIu64 " bytes, which its replay "
			  "refuses", name, n, journal_max_bytes);
		errno = EFBIG;
		return NULL;
	}
	total = JOURNAL_HEADER_LEN + (n + 1) * JOURNAL_REC_LEN;
	j = journal_alloc(dirfd, name);
	buf = malloc(total);
	if (j == NULL || buf == NULL) {
		log_error("journal %s: %m", name);
		goto err;
	}
	if (getrandom(&j->salt, sizeof j->salt, 0) != sizeof j->salt) {
		log_error("journal %s: getrandom: %m", name);
		goto err;
	}
	encode_header(buf, disk, size, generation, j->salt);
	j->size = size;
	snprintf(j->disk, sizeof j->disk, "%s", disk);
	chain = le_get64(buf + 120);
	p = buf + JOURNAL_HEADER_LEN;
	for (i = 0; i < n; i++, p += JOURNAL_REC_LEN)
		chain = encode_rec(p, recs[i].op, i, recs[i].off, recs[i].len,
				   j->salt, chain);
	chain = encode_rec(p, JOURNAL_END, n,
			   XXH3_64bits(buf + JOURNAL_HEADER_LEN,
				       n * JOURNAL_REC_LEN), 0, j->salt, chain);
	j->fd = fdio_create_tmp(dirfd, name, 0, 0600, j->tmp, sizeof j->tmp);
	if (j->fd == -1)
		goto err;
	if (full_pwrite(j->fd, buf, total, 0) == -1) {
		log_error("write %s: %m", j->tmp);
		unlinkat(dirfd, j->tmp, 0);
		goto err;
	}
	j->len = total;
	j->seq = n + 1;
	j->chain = chain;
	free(buf);
	return j;
err:
	{
		int saved = errno;

		free(buf);
		journal_close(j);
		errno = saved;
	}
	return NULL;
}

static int
bad(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	errno = EINVAL;
	return -1;
}

#define STAMP_MAGIC "COLOFSB\n"

static void
encode_stamp(unsigned char *p, char op, uint64_t size, uint64_t salt,
	     const char *disk)
{
	size_t n = strlen(disk);

	memset(p, 0, JOURNAL_STAMP_LEN);
	memcpy(p, STAMP_MAGIC, 8);
	le_put32(p + 8, 1);
	le_put32(p + 12, (uint32_t) (unsigned char) op);
	le_put64(p + 16, size);
	le_put64(p + 24, salt);
	memcpy(p + 32, disk, n > JOURNAL_DISK_MAX ? JOURNAL_DISK_MAX : n);
	le_put64(p + 120, XXH3_64bits(p, 120));
}

void
journal_stamp(const struct journal *j, char op, unsigned char *buf)
{
	encode_stamp(buf, op, j->size, j->salt, j->disk);
}

int
journal_stamp_check(const struct journal_info *info, char op,
		    const unsigned char *buf, char *err, size_t errlen)
{
	unsigned char want[JOURNAL_STAMP_LEN];
	const char *what = op == JOURNAL_ACTIVE ? "active" : "hidden";

	if (memcmp(buf, STAMP_MAGIC, 8) != 0 ||
	    le_get64(buf + 120) != XXH3_64bits(buf, 120))
		return bad(err, errlen, "no valid buffer stamp after the "
			   "disk's bytes (not a buffer file of a colofs "
			   "failover, or damaged)");
	if (le_get32(buf + 12) != (uint32_t) (unsigned char) op) {
		uint32_t theirs = le_get32(buf + 12);

		if (theirs != (unsigned char) JOURNAL_ACTIVE &&
		    theirs != (unsigned char) JOURNAL_HIDDEN)
			return bad(err, errlen, "the stamp names op 0x%02"
				   PRIx32 ", neither buffer (want the %s one)",
				   theirs, what);
		return bad(err, errlen, "the stamp says it is the %s buffer, "
			   "not the %s one", op == JOURNAL_ACTIVE ? "hidden"
			   : "active", what);
	}
	if (le_get64(buf + 24) != info->salt)
		return bad(err, errlen, "the stamp names journal %016" PRIx64
			   ", not this one (%016" PRIx64 "): a buffer file of "
			   "another failover", le_get64(buf + 24), info->salt);
	encode_stamp(want, op, info->size, info->salt, info->disk);
	if (memcmp(buf, want, JOURNAL_STAMP_LEN) != 0)
		return bad(err, errlen, "the stamp is for another disk");
	return 0;
}

int
journal_commit(struct journal *j)
{
	int ret = fdio_commit_tmp(j->fd, j->dirfd, j->tmp, j->name);

	if (ret == 1)		/* renamed: only the directory sync is left */
		ret = fdio_sync_dir(j->dirfd);
	if (ret == 0)
		j->tmp[0] = '\0';
	return ret;
}

int
journal_append(struct journal *j, char op, uint64_t off, uint64_t len)
{
	unsigned char rec[JOURNAL_REC_LEN];
	uint64_t sum;
	ssize_t w;

	pthread_mutex_lock(&j->lock);
	if (j->failed) {
		pthread_mutex_unlock(&j->lock);
		errno = EIO;
		log_error("append to journal %s: it failed before", j->name);
		return -1;
	}
	if (j->len + JOURNAL_REC_LEN > journal_max_bytes) {
		pthread_mutex_unlock(&j->lock);
		errno = EFBIG;
		log_error("append to journal %s: full (%" PRIu64 " bytes, the "
			  "most its replay accepts)", j->name,
			  journal_max_bytes);
		return -1;
	}
	sum = encode_rec(rec, op, j->seq, off, len, j->salt, j->chain);
	do
		w = pwrite(j->fd, rec, sizeof rec, (off_t) j->len);
	while (w == -1 && errno == EINTR);
	if (w == (ssize_t) sizeof rec) {
		j->len += sizeof rec;
		j->seq++;
		j->chain = sum;
		pthread_mutex_unlock(&j->lock);
		return 0;
	}
	{
		int saved = w == -1 ? errno : ENOSPC;

		log_error("append to journal %s: %s", j->name,
			  w == -1 ? strerror(saved) : "short write");
		/* Nothing may follow a partial record: cut it off. */
		if (w > 0 && ftruncate(j->fd, (off_t) j->len) == -1) {
			log_error("journal %s: cannot cut a short append "
				  "back (%m); it takes no more records",
				  j->name);
			j->failed = true;
		}
		pthread_mutex_unlock(&j->lock);
		errno = saved;
	}
	return -1;
}

int
journal_sync(struct journal *j)
{
	if (fdatasync(j->fd) == -1) {
		log_error("sync journal %s: %m", j->name);
		return -1;
	}
	return 0;
}

void
journal_close(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->dirfd >= 0)
		close(j->dirfd);
	pthread_mutex_destroy(&j->lock);
	free(j->name);
	free(j);
}

static const char *
op_name(int op)
{
	switch (op) {
	case JOURNAL_ACTIVE: return "A";
	case JOURNAL_HIDDEN: return "H";
	case JOURNAL_DROP: return "D";
	case JOURNAL_END: return "E";
	default: return "?";
	}
}

int
journal_parse(const void *buf, size_t len, const char *disk, uint64_t size,
	      struct journal_info *info, char *err, size_t errlen)
{
	const unsigned char *b = buf, *p;
	uint64_t chain, pos, i, nrec;
	bool ended = false;
	size_t k;

	memset(info, 0, sizeof *info);
	if (len < JOURNAL_HEADER_LEN)
		return bad(err, errlen, "%zu bytes, shorter than a header "
			   "(%d)", len, JOURNAL_HEADER_LEN);
	if (memcmp(b, MAGIC, 8) != 0)
		return bad(err, errlen, "no journal magic (not a colofs "
			   "journal, or a text journal of an older colofs: "
			   "finish that failover with it)");
	if (le_get32(b + 8) != JOURNAL_VERSION)
		return bad(err, errlen, "version %" PRIu32 ", this colofs "
			   "reads %d", le_get32(b + 8), JOURNAL_VERSION);
	if (le_get32(b + 12) != JOURNAL_HEADER_LEN)
		return bad(err, errlen, "header length %" PRIu32 ", want %d",
			   le_get32(b + 12), JOURNAL_HEADER_LEN);
	if (le_get64(b + 120) != XXH3_64bits(b, 120))
		return bad(err, errlen, "header checksum mismatch");
	if (b[40 + JOURNAL_DISK_MAX] != '\0')
		return bad(err, errlen, "disk name not terminated");
	for (k = 40 + strlen((const char *) b + 40);
	     k < 40 + JOURNAL_DISK_MAX; k++)
		if (b[k] != 0)
			return bad(err, errlen, "disk name padding not zero");
	info->size = le_get64(b + 16);
	info->generation = le_get64(b + 24);
	info->salt = le_get64(b + 32);
	memcpy(info->disk, b + 40, JOURNAL_DISK_MAX + 1);
	if (size && info->size != size)
		return bad(err, errlen, "for a disk of %" PRIu64 " bytes, "
			   "this one has %" PRIu64, info->size, size);
	if (disk && strncmp(info->disk, disk, JOURNAL_DISK_MAX) != 0)
		return bad(err, errlen, "for disk \"%s\", not \"%s\"",
			   info->disk, disk);
	nrec = (len - JOURNAL_HEADER_LEN) / JOURNAL_REC_LEN;
	if (journal_alloc_fault != NULL && journal_alloc_fault() == -1)
		info->recs = NULL;
	else
		info->recs = malloc((nrec ? nrec : 1) * sizeof *info->recs);
	if (info->recs == NULL) {
		snprintf(err, errlen, "no memory for its %" PRIu64 " records",
			 nrec);
		errno = ENOMEM;
		return -1;
	}
	chain = le_get64(b + 120);
	for (i = 0, pos = JOURNAL_HEADER_LEN; i < nrec;
	     i++, pos += JOURNAL_REC_LEN) {
		uint64_t off, rlen, seq;
		int op;

		p = b + pos;
		if (le_get64(p + 32) != XXH3_64bits_withSeed(p, 32,
							  info->salt ^ chain)) {
			/* A power cut may tear the last appended record. */
			if (ended && i == nrec - 1 &&
			    len - pos < 2 * JOURNAL_REC_LEN) {
				info->torn = true;
				break;
			}
			bad(err, errlen, "record %" PRIu64 " (byte %" PRIu64
			    "): checksum mismatch", i, pos);
			goto err;
		}
		op = p[0];
		seq = le_get64(p + 8);
		off = le_get64(p + 16);
		rlen = le_get64(p + 24);
		for (k = 1; k < 8; k++)
			if (p[k] != 0) {
				bad(err, errlen, "record %" PRIu64 ": padding "
				    "not zero", i);
				goto err;
			}
		if (seq != i) {
			bad(err, errlen, "record %" PRIu64 ": sequence %"
			    PRIu64, i, seq);
			goto err;
		}
		chain = le_get64(p + 32);
		if (op == JOURNAL_END) {
			if (ended) {
				bad(err, errlen, "record %" PRIu64 ": a second "
				    "end record", i);
				goto err;
			}
			if (off != XXH3_64bits(b + JOURNAL_HEADER_LEN,
					       i * JOURNAL_REC_LEN) ||
			    rlen != 0) {
				bad(err, errlen, "end record: checksum over "
				    "the %" PRIu64 " records mismatch", i);
				goto err;
			}
			ended = true;
			info->nsnap = (size_t) i;
			info->valid_len = pos + JOURNAL_REC_LEN;
			info->chain = chain;
			continue;
		}
		if (ended ? (op != JOURNAL_ACTIVE && op != JOURNAL_DROP)
			  : (op != JOURNAL_ACTIVE && op != JOURNAL_HIDDEN)) {
			bad(err, errlen, "record %" PRIu64 ": op %s (0x%02x) "
			    "does not belong %s the end record", i,
			    op_name(op), op, ended ? "after" : "before");
			goto err;
		}
		if (rlen == 0 || off > info->size || rlen > info->size - off) {
			bad(err, errlen, "record %" PRIu64 ": extent %" PRIu64
			    "+%" PRIu64 " not within the disk (%" PRIu64
			    " bytes)", i, off, rlen, info->size);
			goto err;
		}
		info->recs[info->nrecs++] = (struct journal_rec) {
			(char) op, off, rlen };
		if (op == JOURNAL_ACTIVE && off + rlen > info->active_end)
			info->active_end = off + rlen;
		if (op == JOURNAL_HIDDEN && off + rlen > info->hidden_end)
			info->hidden_end = off + rlen;
		if (ended) {
			info->valid_len = pos + JOURNAL_REC_LEN;
			info->chain = chain;
		}
	}
	if (!ended) {
		bad(err, errlen, "no valid end record after %" PRIu64
		    " records: the journal was never committed", i);
		goto err;
	}
	if (!info->torn && info->valid_len != len)
		info->torn = true;	/* a partial record at the end */
	return 0;
err:
	journal_info_release(info);
	errno = EINVAL;
	return -1;
}

void
journal_info_release(struct journal_info *info)
{
	free(info->recs);
	info->recs = NULL;
	info->nrecs = 0;
}

int
journal_load(int dirfd, const char *name, const char *disk, uint64_t size,
	     struct journal_info *info, struct journal **jp, char *err,
	     size_t errlen)
{
	struct journal *j = NULL;
	unsigned char *buf = NULL;
	struct stat st;
	int fd, saved;

	memset(info, 0, sizeof *info);
	fd = fdio_open_file_at(dirfd, name, jp ? O_RDWR : O_RDONLY);
	if (fd == -1) {
		saved = errno;
		snprintf(err, errlen, "%s",
			 saved == EINVAL ? "not a regular file"
					 : strerror(saved));
		errno = saved;
		return -1;
	}
	if (fdio_check_own(fd, err, errlen) == -1)
		goto fail;
	if (fstat(fd, &st) == -1)
		goto sys;
	if ((uint64_t) st.st_size > journal_max_bytes) {
		bad(err, errlen, "%jd bytes: too large for a journal",
		    (intmax_t) st.st_size);
		goto fail;
	}
	buf = malloc(st.st_size ? (size_t) st.st_size : 1);
	if (buf == NULL ||
	    full_pread(fd, buf, (size_t) st.st_size, 0) == -1)
		goto sys;
	if (journal_parse(buf, (size_t) st.st_size, disk, size, info, err,
			  errlen) == -1)
		goto fail;
	free(buf);
	buf = NULL;
	if (jp == NULL) {
		close(fd);
		return 0;
	}
	j = journal_alloc(dirfd, name);
	if (j == NULL)
		goto sys;
	if (info->torn && ftruncate(fd, (off_t) info->valid_len) == -1)
		goto sys;
	j->fd = fd;
	j->len = info->valid_len;
	j->seq = (j->len - JOURNAL_HEADER_LEN) / JOURNAL_REC_LEN;
	j->salt = info->salt;
	j->chain = info->chain;
	j->size = info->size;
	memcpy(j->disk, info->disk, sizeof j->disk);
	*jp = j;
	return 0;
sys:
	snprintf(err, errlen, "%s", strerror(errno));
fail:
	saved = errno;
	free(buf);
	journal_info_release(info);
	if (j)
		journal_close(j);
	close(fd);
	errno = saved;
	return -1;
}
