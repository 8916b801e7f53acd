/* SPDX-License-Identifier: MIT */
/* Images: the secondary disk S behind one function table.
 *
 * This file holds the format probe, the dispatcher and the raw backend;
 * qcow2 lives in image-qcow2.c.  A raw image is an fd opened O_RDWR; its
 * operations are plain pread/pwrite, safe from any thread.  Zeroing punches
 * a hole where the filesystem can, so that a trimmed range costs no space.
 * With write-behind (image_write_behind), each write is noted for a thread
 * (writebehind.c) that starts the pages' writeback early; zeroing is not
 * noted: a hole or ZERO_RANGE leaves no dirty pages (the written-zeros
 * fallback does, and the flush writes them).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "image.h"
#include "log.h"
#include "ofdlock.h"
#include "writebehind.h"

static const char qcow_magic[4] = { 'Q', 'F', 'I', 0xfb };

const char *
image_format_name(enum image_format f)
{
	switch (f) {
	case IMAGE_FORMAT_AUTO: return "auto";
	case IMAGE_FORMAT_RAW: return "raw";
	case IMAGE_FORMAT_QCOW2: return "qcow2";
	}
	abort();
}

int
image_format_parse(const char *s, enum image_format *out)
{
	if (strcmp(s, "raw") == 0)
		*out = IMAGE_FORMAT_RAW;
	else if (strcmp(s, "qcow2") == 0)
		*out = IMAGE_FORMAT_QCOW2;
	else if (strcmp(s, "auto") == 0)
		*out = IMAGE_FORMAT_AUTO;
	else {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
image_probe(const char *path, enum image_format *out)
{
	char magic[4];
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		log_error("open image %s: %m", path);
		return -1;
	}
	r = pread(fd, magic, sizeof magic, 0);
	if (r == -1) {
		log_error("read image %s: %m", path);
		close(fd);
		return -1;
	}
	close(fd);
	if (r == sizeof magic && memcmp(magic, qcow_magic, sizeof magic) == 0)
		*out = IMAGE_FORMAT_QCOW2;
	else
		*out = IMAGE_FORMAT_RAW;
	return 0;
}

static int
raw_pread(struct image *img, void *buf, size_t len, uint64_t off)
{
	if (full_pread(img->fd, buf, len, off) == -1) {
		log_error("read %s at %" PRIu64 "+%zu: %m", img->path, off, len);
		return -1;
	}
	return 0;
}

/* A write into S, by wr (full_pwrite or full_pwrite_lent), noted for
 * write-behind.
 */
static int
raw_write_by(int (*wr)(int, const void *, size_t, uint64_t),
	     struct image *img, const void *buf, size_t len, uint64_t off)
{
	if (wr(img->fd, buf, len, off) == -1) {
		log_error("write %s at %" PRIu64 "+%zu: %m", img->path, off, len);
		return -1;
	}
	if (img->wb != NULL)
		writebehind_note(img->wb, off, len);
	return 0;
}

static int
raw_pwrite(struct image *img, const void *buf, size_t len, uint64_t off)
{
	return raw_write_by(full_pwrite, img, buf, len, off);
}

static int
raw_pwrite_lent(struct image *img, const void *buf, size_t len, uint64_t off)
{
	return raw_write_by(full_pwrite_lent, img, buf, len, off);
}

static int
raw_zero(struct image *img, uint64_t off, uint64_t len, bool punch)
{
	if (fd_zero_range(img->fd, off, len, punch) == -1) {
		log_error("zero %s at %" PRIu64 "+%" PRIu64 ": %m",
			  img->path, off, len);
		return -1;
	}
	return 0;
}

static int
raw_flush(struct image *img)
{
	return fdio_datasync(img->fd, &img->sync_failed, img->path);
}

static void
raw_close(struct image *img)
{
	writebehind_free(img->wb);	/* its thread uses the fd */
	close(img->fd);
	free(img->path);
	free(img);
}

static const struct image_ops raw_ops = {
	.name = "raw",
	.pread = raw_pread,
	.pwrite = raw_pwrite,
	.pwrite_lent = raw_pwrite_lent,
	.zero = raw_zero,
	.flush = raw_flush,
	.close = raw_close,
};

struct image *
image_raw_from_fd(int fd, const char *path)
{
	struct image *img = NULL;
	struct stat st;
	int saved;

	if (fstat(fd, &st) == -1) {
		log_error("stat %s: %m", path);
		goto err;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end == -1) {
			log_error("size of %s: %m", path);
			goto err;
		}
		st.st_size = end;
	} else if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		log_error("image %s: not a regular file or block device", path);
		goto err;
	}
	if (st.st_size % 512 != 0) {
		errno = EINVAL;
		log_error("image %s: size %jd is not a multiple of 512",
			  path, (intmax_t) st.st_size);
		goto err;
	}
	img = calloc(1, sizeof *img);
	if (img == NULL || (img->path = strdup(path)) == NULL) {
		log_error("image %s: %m", path);
		goto err;
	}
	img->ops = &raw_ops;
	img->size = st.st_size;
	img->fd = fd;
	img->lock_fd = -1;
	return img;
err:
	saved = errno;
	if (img != NULL)
		free(img->path);
	free(img);
	close(fd);
	errno = saved;
	return NULL;
}

int
image_write_behind(struct image *img, uint64_t every)
{
	if (img->ops != &raw_ops || every == 0)
		return 0;
	if (img->wb != NULL) {
		errno = EBUSY;
		return -1;
	}
	img->wb = writebehind_new(img->fd, img->path, every);
	return img->wb != NULL ? 0 : -1;
}

/* An fd of path that holds the ownership locks: fd, or -1 (logged). */
static int
lock_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		log_error("open image %s: %m", path);
		return -1;
	}
	if (ofdlock_image(fd, path) == -1) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
image_check_owner(const char *path)
{
	int fd = lock_open(path);

	if (fd == -1)
		return -1;
	close(fd);
	return 0;
}

struct image *
image_open(const char *path, enum image_format fmt, const char *overlay_dir,
	   const char *name)
{
	struct image *img;
	int fd, lock_fd = lock_open(path);

	if (lock_fd == -1)
		return NULL;
	if (fmt == IMAGE_FORMAT_AUTO) {
		if (image_probe(path, &fmt) == -1)
			goto err;
		/* QEMU warns the same (CVE-2008-2004): a raw image's first
		 * bytes are its guest's, who can make it probe as qcow2.
		 */
		log_warn("%s: format = auto probed %s; probing is unsafe for "
			 "raw images (the guest writes their first bytes): "
			 "set format = raw or qcow2", path,
			 image_format_name(fmt));
	}
	if (fmt == IMAGE_FORMAT_QCOW2) {
		img = image_qcow2_open(path, overlay_dir, name);
	} else {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd == -1) {
			log_error("open image %s: %m", path);
			goto err;
		}
		img = image_raw_from_fd(fd, path);
	}
	if (img == NULL)
		goto err;
	img->lock_fd = lock_fd;
	return img;
err:
	{
		int saved = errno;

		close(lock_fd);
		errno = saved;
	}
	return NULL;
}

void
image_close(struct image *img)
{
	int lock_fd;

	if (img == NULL)
		return;
	/* The locks go last, once the image is flushed and closed. */
	lock_fd = img->lock_fd;
	img->ops->close(img);
	if (lock_fd != -1)
		close(lock_fd);
}
