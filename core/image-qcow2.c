/* SPDX-License-Identifier: MIT */
/* qcow2 images: read through libqcow, written to an overlay.
 *
 * libqcow (libyal) reads qcow2 but cannot write it.  So S, for a qcow2
 * image, is the qcow2's content under an overlay kept in the buffer
 * directory:
 *
 *   DIR/NAME.overlay       sparse file, disk-sized: byte X of the disk
 *                          lives at offset X, as in the stores
 *   DIR/NAME.overlay.map   which ranges of the overlay are meaningful
 *
 *   read [off, off+len):   map says overlay? --yes--> pread(overlay)
 *                                         \--no---> libqcow
 *   write / zero:          pwrite / punch (or ZERO_RANGE) the overlay,
 *                          then add the range to the map (data first: a
 *                          concurrent reader that sees the range in the
 *                          map finds the data)
 *
 * Persistence.  The map is saved on flush and on close: snapshot the map
 * (under map_lock), fdatasync the overlay, then write the snapshot to a
 * fresh NAME.overlay.map.tmp.XXXXXX, fsync, rename over NAME.overlay.map,
 * fsync the directory (durable_write_at, core/fdio.h).  The snapshot
 * precedes the fdatasync, so a saved map never names a range whose data was
 * not yet durable; writes after the last flush may be lost in a crash, as on
 * any disk with a write cache.  All three files are made and opened in DIR's
 * fd, never following a link (O_NOFOLLOW, and O_EXCL for a new one), and an
 * existing one is used only if root (or our user) owns it and alone can
 * write it: a planted link must not steer root's writes.  The map file:
 *
 *   struct map_header (64 bytes, little-endian)
 *     magic "COLOFSOV", version 1, header size,
 *     disk size, qcow2 inode, qcow2 file size, qcow2 mtime (ns),
 *     extent count, FNV-1a checksum of the file (checksum field zero)
 *   count x { start, end }   sorted, disjoint, within the disk
 *
 * Between flushes, each change of the map is also appended to
 *
 *   DIR/NAME.overlay.log   16-byte records { start, end } (little-endian)
 *
 * in one write(2), under map_lock, after the data reached the overlay:
 * the kernel keeps both if the process dies (kill -9 in the middle of a
 * failover commit), and a restart replays the log over the saved map
 * (inserting a range twice is harmless; a torn last record is ignored).
 * A flush that saved the map empties the log if no change came since its
 * snapshot.  After a power cut, writes flushed are in the map; writes not
 * flushed may read back as old or as stale overlay bytes.
 *
 * At open, a map that does not match (bad magic, version or checksum,
 * another disk size, a qcow2 file that was replaced or modified since)
 * makes the open fail rather than mix the overlay with other data; so does
 * an overlay without its map, or a map whose overlay is gone.  The overlay
 * is flock()ed so that two processes never share it.
 *
 * Locks (order: flush_lock, then map_lock; qcow_lock is taken alone):
 *   qcow_lock  libqcow calls: the library keeps a file offset per handle;
 *   map_lock   the map and its change counter;
 *   flush_lock one flush at a time, the saved counter and the tmp file.
 * No lock is held across overlay I/O; libqcow reads hold qcow_lock because
 * that lock exists to serialize exactly them.  Ordering of overlapping
 * requests is the caller's business (the secondary's range locks), as for a
 * raw image.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libqcow.h>

#include "extmap.h"
#include "fdio.h"
#include "image.h"
#include "log.h"

#define MAP_MAGIC "COLOFSOV"
#define MAP_VERSION 1

struct map_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint64_t disk_size;
	uint64_t qcow_ino;
	uint64_t qcow_size;
	uint64_t qcow_mtime_ns;
	uint64_t count;
	uint64_t checksum;
};
_Static_assert(sizeof(struct map_header) == 64, "map header is 64 bytes");

/* What the overlay was made against: the qcow2 file must stay the same. */
struct identity {
	uint64_t ino, size, mtime_ns;
};

struct qcow2 {
	pthread_mutex_t qcow_lock;
	libqcow_file_t *file;		/* protected by qcow_lock */

	int ovl_fd;
	char *ovl_path, *map_path;	/* for messages */
	int dirfd;			/* the overlay directory */
	const char *ovl_name, *map_name, *log_name; /* in dirfd: the paths'
						     * last components */
	struct identity id;

	pthread_mutex_t map_lock;
	struct extmap *map;		/* protected by map_lock */
	uint64_t gen;			/* protected by map_lock: changes */

	pthread_mutex_t flush_lock;
	uint64_t saved_gen;		/* protected by flush_lock */
	int log_fd;			/* -1, or NAME.overlay.log: appended
					 * and truncated under map_lock */
	char *log_path;
};

/* Logs "what: <libqcow's innermost message>" and frees the error.  The
 * backtrace's first line is the root cause ("unsupported file signature");
 * libqcow_error_sprint gives only the outermost, least useful line.
 */
static void log_qcow(libqcow_error_t **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
log_qcow(libqcow_error_t **err, const char *fmt, ...)
{
	char what[512], msg[1024] = "unknown error";
	va_list ap;
	char *nl;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (*err != NULL) {
		if (libqcow_error_backtrace_sprint(*err, msg, sizeof msg) < 0 &&
		    libqcow_error_sprint(*err, msg, sizeof msg) < 0)
			snprintf(msg, sizeof msg, "unknown error");
		nl = strchr(msg, '\n');
		if (nl != NULL)
			*nl = '\0';
		libqcow_error_free(err);
	}
	log_error("%s: libqcow: %s", what, msg);
}

static struct qcow2 *
priv(struct image *img)
{
	return img->priv;
}

static int
check_range(struct image *img, uint64_t off, uint64_t len, const char *op)
{
	if (off > img->size || len > img->size - off) {
		errno = EINVAL;
		log_error("%s %s at %" PRIu64 "+%" PRIu64 ": beyond the end (%"
			  PRIu64 " bytes)", op, img->path, off, len, img->size);
		return -1;
	}
	return 0;
}

/* Reads [off, off+len) of the qcow2 itself. */
static int
read_qcow(struct image *img, uint8_t *buf, size_t len, uint64_t off)
{
	struct qcow2 *q = priv(img);
	libqcow_error_t *err = NULL;
	int ret = 0;

	pthread_mutex_lock(&q->qcow_lock);
	while (len > 0) {
		ssize_t n = libqcow_file_read_buffer_at_offset(q->file, buf, len,
							       off, &err);

		if (n <= 0) {
			if (n == 0)
				log_error("read %s at %" PRIu64 "+%zu: "
					  "unexpected end of image",
					  img->path, off, len);
			else
				log_qcow(&err, "read %s at %" PRIu64 "+%zu",
					 img->path, off, len);
			ret = -1;
			break;
		}
		buf += n;
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&q->qcow_lock);
	if (ret == -1)
		errno = EIO;
	return ret;
}

static int
qcow2_pread(struct image *img, void *buf, size_t len, uint64_t off)
{
	struct qcow2 *q = priv(img);
	uint64_t pos = off, end = off + len;

	if (check_range(img, off, len, "read") == -1)
		return -1;
	while (pos < end) {
		uint64_t s, e;
		int has;

		pthread_mutex_lock(&q->map_lock);
		has = extmap_next(q->map, pos, &s, &e);
		pthread_mutex_unlock(&q->map_lock);
		if (!has || s >= end)
			s = e = end;
		if (s > pos) {
			if (read_qcow(img, (uint8_t *) buf + (pos - off),
				      s - pos, pos) == -1)
				return -1;
			pos = s;
		}
		if (pos < end) {
			uint64_t seg_end = e < end ? e : end;

			if (full_pread(q->ovl_fd, (uint8_t *) buf + (pos - off),
				       seg_end - pos, pos) == -1) {
				log_error("read overlay %s at %" PRIu64 "+%"
					  PRIu64 ": %m", q->ovl_path, pos,
					  seg_end - pos);
				return -1;
			}
			pos = seg_end;
		}
	}
	return 0;
}

static int
mark(struct qcow2 *q, uint64_t off, uint64_t len)
{
	int r;

	pthread_mutex_lock(&q->map_lock);
	r = extmap_insert(q->map, off, len);
	if (r == 0)
		q->gen++;
	if (r == 0 && q->log_fd >= 0) {
		uint64_t rec[2] = { htole64(off), htole64(off + len) };
		ssize_t n;

		do
			n = write(q->log_fd, rec, sizeof rec);
		while (n == -1 && errno == EINTR);
		if (n != (ssize_t) sizeof rec) {
			if (n >= 0)
				errno = ENOSPC;
			r = -1;
		}
	}
	pthread_mutex_unlock(&q->map_lock);
	if (r == -1)
		log_error("overlay map of %s: %m", q->ovl_path);
	return r;
}

static int
qcow2_pwrite(struct image *img, const void *buf, size_t len, uint64_t off)
{
	struct qcow2 *q = priv(img);

	if (check_range(img, off, len, "write") == -1)
		return -1;
	if (len == 0)
		return 0;
	if (full_pwrite(q->ovl_fd, buf, len, off) == -1) {
		log_error("write overlay %s at %" PRIu64 "+%zu: %m",
			  q->ovl_path, off, len);
		return -1;
	}
	return mark(q, off, len);
}

static int
qcow2_zero(struct image *img, uint64_t off, uint64_t len, bool punch)
{
	struct qcow2 *q = priv(img);

	if (check_range(img, off, len, "zero") == -1)
		return -1;
	if (len == 0)
		return 0;
	if (fd_zero_range(q->ovl_fd, off, len, punch) == -1) {
		log_error("zero overlay %s at %" PRIu64 "+%" PRIu64 ": %m",
			  q->ovl_path, off, len);
		return -1;
	}
	return mark(q, off, len);
}

static uint64_t
fnv1a(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len-- > 0) {
		h ^= *b++;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#define FNV_INIT UINT64_C(0xcbf29ce484222325)

/* The map file's bytes for the map as it is now.  Caller holds map_lock. */
static void *
map_serialize(struct qcow2 *q, uint64_t disk_size, size_t *lenp)
{
	size_t count = extmap_count(q->map), i = 0;
	size_t len = sizeof(struct map_header) + count * 16;
	struct map_header *h = calloc(1, len);
	uint64_t *ext, s, e, pos = 0;

	if (h == NULL)
		return NULL;
	ext = (uint64_t *) (h + 1);
	while (i < count && extmap_next(q->map, pos, &s, &e)) {
		ext[2 * i] = htole64(s);
		ext[2 * i + 1] = htole64(e);
		i++;
		pos = e;
	}
	memcpy(h->magic, MAP_MAGIC, sizeof h->magic);
	h->version = htole32(MAP_VERSION);
	h->header_size = htole32(sizeof *h);
	h->disk_size = htole64(disk_size);
	h->qcow_ino = htole64(q->id.ino);
	h->qcow_size = htole64(q->id.size);
	h->qcow_mtime_ns = htole64(q->id.mtime_ns);
	h->count = htole64(i);
	h->checksum = htole64(fnv1a(FNV_INIT, h, len));
	*lenp = len;
	return h;
}

/* Replaces the map file atomically with data.  Caller holds flush_lock. */
static int
map_write(struct qcow2 *q, const void *data, size_t len)
{
	return durable_write_at(q->dirfd, q->map_name, data, len) == 0 ? 0 : -1;
}

/* fdatasync the overlay, then save the map as it was before the sync. */
static int
qcow2_flush(struct image *img)
{
	struct qcow2 *q = priv(img);
	void *snap = NULL;
	size_t len = 0;
	uint64_t gen;
	int ret = -1;

	pthread_mutex_lock(&q->flush_lock);
	pthread_mutex_lock(&q->map_lock);
	gen = q->gen;
	if (gen != q->saved_gen)
		snap = map_serialize(q, img->size, &len);
	pthread_mutex_unlock(&q->map_lock);
	if (gen != q->saved_gen && snap == NULL) {
		log_error("overlay map of %s: %m", q->ovl_path);
		goto out;
	}
	if (fdio_datasync(q->ovl_fd, &img->sync_failed, q->ovl_path) == -1)
		goto out;
	if (snap != NULL) {
		if (map_write(q, snap, len) == -1)
			goto out;
		q->saved_gen = gen;
		/* The saved map holds every logged range: empty the log,
		 * unless a change came after the snapshot.
		 */
		pthread_mutex_lock(&q->map_lock);
		if (q->gen == gen && q->log_fd >= 0 &&
		    ftruncate(q->log_fd, 0) == -1)
			log_warn("truncate %s: %m", q->log_path);
		pthread_mutex_unlock(&q->map_lock);
	}
	ret = 0;
out:
	free(snap);
	pthread_mutex_unlock(&q->flush_lock);
	return ret;
}

static uint64_t
qcow2_overlay_bytes(struct image *img)
{
	struct qcow2 *q = priv(img);
	uint64_t n;

	pthread_mutex_lock(&q->map_lock);
	n = extmap_bytes(q->map);
	pthread_mutex_unlock(&q->map_lock);
	return n;
}

static void
qcow2_free(struct qcow2 *q)
{
	libqcow_error_t *err = NULL;

	if (q == NULL)
		return;
	if (q->file != NULL) {
		if (libqcow_file_close(q->file, &err) != 0)
			log_qcow(&err, "close qcow2 image");
		if (libqcow_file_free(&q->file, &err) != 1)
			log_qcow(&err, "free qcow2 image");
	}
	if (q->ovl_fd != -1)
		close(q->ovl_fd);
	if (q->log_fd != -1)
		close(q->log_fd);
	free(q->log_path);
	extmap_free(q->map);
	pthread_mutex_destroy(&q->qcow_lock);
	pthread_mutex_destroy(&q->map_lock);
	pthread_mutex_destroy(&q->flush_lock);
	free(q->ovl_path);
	free(q->map_path);
	if (q->dirfd != -1)
		close(q->dirfd);
	free(q);
}

static void
qcow2_close(struct image *img)
{
	/* qcow2_flush logs a failure; close goes on: nothing else to do. */
	qcow2_flush(img);
	qcow2_free(priv(img));
	free(img->path);
	free(img);
}

static const struct image_ops qcow2_ops = {
	.name = "qcow2",
	.pread = qcow2_pread,
	.pwrite = qcow2_pwrite,
	.zero = qcow2_zero,
	.flush = qcow2_flush,
	.overlay_bytes = qcow2_overlay_bytes,
	.close = qcow2_close,
};

/* Opens NAME in the overlay directory without following a link: created
 * (O_EXCL, 0600) when created is not NULL and it is missing, else an
 * existing file that must be colofs's own (fdio_check_own).  fd, or -1 with
 * errno (logged, except ENOENT when created is NULL).
 */
static int
own_open(struct qcow2 *q, const char *name, const char *path, int flags,
	 bool *created)
{
	char why[256];
	int fd;

	if (created != NULL) {
		*created = false;
		fd = openat(q->dirfd, name, flags | O_CREAT | O_EXCL |
			    O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd != -1) {
			*created = true;
			return fd;
		}
		if (errno != EEXIST) {
			log_error("create %s: %m", path);
			return -1;
		}
	}
	fd = fdio_open_file_at(q->dirfd, name, flags);
	if (fd == -1) {
		int saved = errno;

		if (saved != ENOENT || created != NULL)
			log_error("open %s: %s", path, saved == EINVAL ?
				  "not a regular file" : strerror(saved));
		errno = saved;
		return -1;
	}
	if (fdio_check_own(fd, why, sizeof why) == -1) {
		log_error("%s: %s", path, why);
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

/* Reads and checks q->map_path into q->map.  0; 1 if there is no map file;
 * -1 with errno after logging.
 */
static int
map_load(struct qcow2 *q, const char *path, uint64_t disk_size)
{
	struct map_header *h = NULL;
	uint64_t count, sum, prev_end = 0, i, *ext;
	struct stat st;
	int fd, saved;

	fd = own_open(q, q->map_name, q->map_path, O_RDONLY, NULL);
	if (fd == -1)
		return errno == ENOENT ? 1 : -1;
	if (fstat(fd, &st) == -1) {
		log_error("stat %s: %m", q->map_path);
		goto err;
	}
	errno = EINVAL;
	if (st.st_size < (off_t) sizeof *h ||
	    (st.st_size - sizeof *h) % 16 != 0) {
		log_error("overlay map %s: bad size %jd, not a map file",
			  q->map_path, (intmax_t) st.st_size);
		goto err;
	}
	h = malloc(st.st_size);
	if (h == NULL) {
		log_error("overlay map %s: %m", q->map_path);
		goto err;
	}
	if (full_pread(fd, h, st.st_size, 0) == -1) {
		log_error("read %s: %m", q->map_path);
		goto err;
	}
	errno = EINVAL;
	if (memcmp(h->magic, MAP_MAGIC, sizeof h->magic) != 0) {
		log_error("overlay map %s: bad magic, not a map file",
			  q->map_path);
		goto err;
	}
	if (le32toh(h->version) != MAP_VERSION ||
	    le32toh(h->header_size) != sizeof *h) {
		log_error("overlay map %s: version %" PRIu32 " (header %" PRIu32
			  " bytes) is not supported", q->map_path,
			  le32toh(h->version), le32toh(h->header_size));
		goto err;
	}
	sum = le64toh(h->checksum);
	h->checksum = 0;
	count = le64toh(h->count);
	if (fnv1a(FNV_INIT, h, st.st_size) != sum ||
	    count != (st.st_size - sizeof *h) / 16) {
		log_error("overlay map %s: checksum mismatch, the file is "
			  "corrupt", q->map_path);
		goto err;
	}
	if (le64toh(h->disk_size) != disk_size) {
		log_error("overlay map %s was made for a disk of %" PRIu64
			  " bytes, but %s has %" PRIu64 " bytes: refusing to "
			  "mix them (move the overlay away to start afresh)",
			  q->map_path, le64toh(h->disk_size), path, disk_size);
		goto err;
	}
	if (le64toh(h->qcow_ino) != q->id.ino ||
	    le64toh(h->qcow_size) != q->id.size ||
	    le64toh(h->qcow_mtime_ns) != q->id.mtime_ns) {
		log_error("overlay map %s was made against another version of "
			  "%s (the file was replaced or modified since): "
			  "refusing to mix them (move the overlay away to "
			  "start afresh)", q->map_path, path);
		goto err;
	}
	ext = (uint64_t *) (h + 1);
	for (i = 0; i < count; i++) {
		uint64_t s = le64toh(ext[2 * i]), e = le64toh(ext[2 * i + 1]);

		if (s >= e || e > disk_size || (i > 0 && s <= prev_end)) {
			errno = EINVAL;
			log_error("overlay map %s: bad extent %" PRIu64 "-%"
				  PRIu64, q->map_path, s, e);
			goto err;
		}
		if (extmap_insert(q->map, s, e - s) == -1) {
			log_error("overlay map %s: %m", q->map_path);
			goto err;
		}
		prev_end = e;
	}
	free(h);
	close(fd);
	return 0;
err:
	saved = errno;
	free(h);
	close(fd);
	errno = saved;
	return -1;
}

/* Opens (or creates) the log and replays it over the loaded map. */
static int
log_open(struct image *img, struct qcow2 *q)
{
	uint64_t rec[2], start, end;
	size_t n = 0;
	ssize_t got;

	bool created;

	q->log_fd = own_open(q, q->log_name, q->log_path, O_RDWR | O_APPEND,
			     &created);
	if (q->log_fd == -1)
		return -1;
	for (;;) {
		got = pread(q->log_fd, rec, sizeof rec, n * sizeof rec);
		if (got == -1) {
			log_error("read %s: %m", q->log_path);
			return -1;
		}
		if (got < (ssize_t) sizeof rec)
			break;		/* the end, or a torn last record */
		start = le64toh(rec[0]);
		end = le64toh(rec[1]);
		if (start >= end || end > img->size) {
			errno = EINVAL;
			log_error("%s: record %zu is not a range of the disk",
				  q->log_path, n);
			return -1;
		}
		if (extmap_insert(q->map, start, end - start) == -1) {
			log_error("overlay map of %s: %m", q->ovl_path);
			return -1;
		}
		n++;
	}
	if (n > 0) {
		log_info("overlay %s: %zu changes after its last flush "
			 "replayed from %s", q->ovl_path, n, q->log_path);
		q->gen++;		/* the next flush saves them */
	}
	return 0;
}

/* Opens or creates the overlay and its map; see the top of the file. */
static int
overlay_open(struct image *img, struct qcow2 *q)
{
	bool created = false;
	struct stat st;
	int r;

	q->ovl_fd = own_open(q, q->ovl_name, q->ovl_path, O_RDWR, &created);
	if (q->ovl_fd == -1)
		return -1;
	if (flock(q->ovl_fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			errno = EBUSY;
		log_error("overlay %s is in use by another process: %m",
			  q->ovl_path);
		return -1;
	}
	r = map_load(q, img->path, img->size);
	if (r == -1)
		goto err;
	if (fstat(q->ovl_fd, &st) == -1) {
		log_error("stat %s: %m", q->ovl_path);
		goto err;
	}
	if (r == 1 && !created && st.st_size != 0) {
		errno = EINVAL;
		log_error("overlay %s exists without its map %s: refusing to "
			  "guess what it holds (move it away to start afresh)",
			  q->ovl_path, q->map_path);
		goto err;
	}
	if (r == 0 && st.st_size == 0 && extmap_count(q->map) > 0) {
		errno = EINVAL;
		log_error("overlay %s is missing or empty but its map %s lists "
			  "%" PRIu64 " bytes: refusing to read them as zeros",
			  q->ovl_path, q->map_path, extmap_bytes(q->map));
		goto err;
	}
	if (st.st_size != 0 && (uint64_t) st.st_size != img->size) {
		errno = EINVAL;
		log_error("overlay %s has %jd bytes, the disk %" PRIu64
			  ": refusing to mix them", q->ovl_path,
			  (intmax_t) st.st_size, img->size);
		goto err;
	}
	if (st.st_size == 0 && ftruncate(q->ovl_fd, img->size) == -1) {
		log_error("size overlay %s: %m", q->ovl_path);
		goto err;
	}
	if (r == 1) {
		/* Record the identity now, so that a crash before the first
		 * flush still leaves an overlay that a restart accepts.
		 */
		q->gen = 1;
		if (qcow2_flush(img) == -1)
			goto err;
	}
	if (log_open(img, q) == -1)
		goto err;
	return 0;
err:
	if (created) {
		int saved = errno;

		unlinkat(q->dirfd, q->ovl_name, 0);
		errno = saved;
	}
	return -1;
}

static int
qcow_open(struct image *img, struct qcow2 *q)
{
	libqcow_error_t *err = NULL;
	uint32_t method = 0;
	size_t blen = 0;
	size64_t size;
	int r;

	if (libqcow_file_initialize(&q->file, &err) != 1) {
		log_qcow(&err, "qcow2 image %s", img->path);
		errno = ENOMEM;
		return -1;
	}
	if (libqcow_file_open(q->file, img->path,
			      libqcow_get_access_flags_read(), &err) != 1) {
		log_qcow(&err, "qcow2 image %s: cannot open", img->path);
		libqcow_file_free(&q->file, &err);
		libqcow_error_free(&err);
		errno = EINVAL;
		return -1;
	}
	if (libqcow_file_get_encryption_method(q->file, &method, &err) != 1) {
		log_qcow(&err, "qcow2 image %s", img->path);
		errno = EINVAL;
		return -1;
	}
	if (method != LIBQCOW_ENCRYPTION_METHOD_NONE) {
		errno = ENOTSUP;
		log_error("qcow2 image %s is encrypted: not supported",
			  img->path);
		return -1;
	}
	r = libqcow_file_get_utf8_backing_filename_size(q->file, &blen, &err);
	if (r == -1) {
		log_qcow(&err, "qcow2 image %s", img->path);
		errno = EINVAL;
		return -1;
	}
	if (r == 1 && blen > 1) {
		char name[4096] = "?";

		if (blen <= sizeof name &&
		    libqcow_file_get_utf8_backing_filename(q->file,
				(uint8_t *) name, sizeof name, &err) != 1)
			libqcow_error_free(&err);
		log_error("qcow2 image %s has a backing file (%s): not "
			  "supported; flatten it first (qemu-img convert)",
			  img->path, name);
		errno = ENOTSUP;
		return -1;
	}
	if (libqcow_file_get_media_size(q->file, &size, &err) != 1) {
		log_qcow(&err, "qcow2 image %s", img->path);
		errno = EINVAL;
		return -1;
	}
	if (size % 512 != 0) {
		log_error("image %s: size %" PRIu64 " is not a multiple of 512",
			  img->path, (uint64_t) size);
		errno = EINVAL;
		return -1;
	}
	img->size = size;
	return 0;
}

static char *
path_join(const char *dir, const char *name, const char *suffix)
{
	char *s;

	if (asprintf(&s, "%s/%s%s", dir, name, suffix) == -1)
		return NULL;
	return s;
}

struct image *
image_qcow2_open(const char *path, const char *overlay_dir, const char *name)
{
	struct image *img = NULL;
	struct qcow2 *q = NULL;
	struct stat st;
	int saved;

	if (overlay_dir == NULL) {
		errno = EINVAL;
		log_error("qcow2 image %s needs buffer_dir for its overlay",
			  path);
		return NULL;
	}
	if (name == NULL || *name == '\0' || strchr(name, '/') != NULL) {
		errno = EINVAL;
		log_error("qcow2 image %s: bad overlay name '%s'", path,
			  name != NULL ? name : "(null)");
		return NULL;
	}
	if (stat(path, &st) == -1) {
		log_error("open image %s: %m", path);
		return NULL;
	}
	img = calloc(1, sizeof *img);
	q = calloc(1, sizeof *q);
	if (img == NULL || q == NULL)
		goto nomem;
	q->ovl_fd = -1;
	q->log_fd = -1;
	q->dirfd = -1;
	pthread_mutex_init(&q->qcow_lock, NULL);
	pthread_mutex_init(&q->map_lock, NULL);
	pthread_mutex_init(&q->flush_lock, NULL);
	img->ops = &qcow2_ops;
	img->fd = -1;
	img->lock_fd = -1;
	img->priv = q;
	img->path = strdup(path);
	q->ovl_path = path_join(overlay_dir, name, ".overlay");
	q->map_path = path_join(overlay_dir, name, ".overlay.map");
	q->log_path = path_join(overlay_dir, name, ".overlay.log");
	q->map = extmap_new();
	if (img->path == NULL || q->ovl_path == NULL || q->map_path == NULL ||
	    q->map == NULL || q->log_path == NULL)
		goto nomem;
	q->ovl_name = q->ovl_path + strlen(overlay_dir) + 1;
	q->map_name = q->map_path + strlen(overlay_dir) + 1;
	q->log_name = q->log_path + strlen(overlay_dir) + 1;
	q->dirfd = fdio_dir_open(overlay_dir);
	if (q->dirfd == -1) {
		log_error("overlay directory %s: %m", overlay_dir);
		goto err;
	}
	fdio_sweep_tmp(q->dirfd, q->map_name);
	q->id.ino = st.st_ino;
	q->id.size = st.st_size;
	q->id.mtime_ns = (uint64_t) st.st_mtim.tv_sec * 1000000000u +
			 st.st_mtim.tv_nsec;
	if (qcow_open(img, q) == -1 || overlay_open(img, q) == -1)
		goto err;
	log_debug("qcow2 image %s: %" PRIu64 " bytes, overlay %s holds %"
		  PRIu64 " bytes", path, img->size, q->ovl_path,
		  extmap_bytes(q->map));
	return img;
nomem:
	log_error("qcow2 image %s: %m", path);
err:
	saved = errno;
	qcow2_free(q);
	if (img != NULL)
		free(img->path);
	free(img);
	errno = saved;
	return NULL;
}
