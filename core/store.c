/* SPDX-License-Identifier: MIT */
/* Buffer stores: bytes at disk offsets, in a sparse memfd or an unlinked
 * sparse file.
 *
 * Both backings are one fd whose offset X holds the byte of disk offset X,
 * so a store of a 1 TiB disk costs nothing until written, a view read can
 * be spliced straight from it, and freeing it is one close().  That close
 * may take a while for a large store (the kernel frees every page), which
 * is why the replica frees old stores in a background thread.
 *
 * The store does not know what it holds: the extent map beside it does.
 * Stores are thread-safe because pread and pwrite are.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

int
full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;	/* beyond the end: a short file */
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

int
full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t r = pwrite(fd, p, len, off);

		if (r == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= r;
		off += r;
	}
	return 0;
}

int
fd_zero_range(int fd, uint64_t off, uint64_t len)
{
	static const char zeros[65536];

	if (len == 0)
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -1;
	if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -1;
	while (len > 0) {
		size_t n = len < sizeof zeros ? len : sizeof zeros;

		if (full_pwrite(fd, zeros, n, off) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

static int
fd_store_pread(struct store *s, void *buf, size_t len, uint64_t off)
{
	if (full_pread(s->fd, buf, len, off) == -1) {
		log_error("read %s store at %" PRIu64 ": %m",
			  s->ops->name, off);
		return -1;
	}
	return 0;
}

static int
fd_store_pwrite(struct store *s, const void *buf, size_t len, uint64_t off)
{
	if (full_pwrite(s->fd, buf, len, off) == -1) {
		log_error("write %s store at %" PRIu64 ": %m",
			  s->ops->name, off);
		return -1;
	}
	return 0;
}

static int
fd_store_zero(struct store *s, uint64_t off, uint64_t len)
{
	if (fd_zero_range(s->fd, off, len) == -1) {
		log_error("zero %s store at %" PRIu64 ": %m",
			  s->ops->name, off);
		return -1;
	}
	return 0;
}

static void
fd_store_free(struct store *s)
{
	close(s->fd);
	free(s);
}

static const struct store_ops memory_ops = {
	.name = "memory",
	.pread = fd_store_pread,
	.pwrite = fd_store_pwrite,
	.zero = fd_store_zero,
	.free = fd_store_free,
};

static const struct store_ops file_ops = {
	.name = "file",
	.pread = fd_store_pread,
	.pwrite = fd_store_pwrite,
	.zero = fd_store_zero,
	.free = fd_store_free,
};

static struct store *
store_from_fd(const struct store_ops *ops, int fd, uint64_t size)
{
	struct store *s;

	if (ftruncate(fd, size) == -1) {
		log_error("size %s store to %" PRIu64 ": %m", ops->name, size);
		goto err;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL)
		goto err;
	s->ops = ops;
	s->fd = fd;
	s->size = size;
	return s;
err:
	{
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return NULL;
}

struct store *
store_memory_new(uint64_t size, const char *tag)
{
	int fd = memfd_create(tag, MFD_CLOEXEC);

	if (fd == -1) {
		log_error("memfd_create %s: %m", tag);
		return NULL;
	}
	return store_from_fd(&memory_ops, fd, size);
}

struct store *
store_file_new(const char *dir, uint64_t size, const char *tag)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* O_TMPFILE unsupported here: a named file, unlinked. */
		char path[4096];

		if (snprintf(path, sizeof path, "%s/.colofs-%s-XXXXXX",
			     dir, tag) >= (int) sizeof path) {
			errno = ENAMETOOLONG;
			log_error("buffer file in %s: %m", dir);
			return NULL;
		}
		fd = mkostemp(path, O_CLOEXEC);
		if (fd != -1)
			unlink(path);
	}
	if (fd == -1) {
		log_error("create buffer file for %s in %s: %m", tag, dir);
		return NULL;
	}
	return store_from_fd(&file_ops, fd, size);
}

void
store_free(struct store *s)
{
	if (s != NULL)
		s->ops->free(s);
}

static struct store *
memory_create(void *opaque, uint64_t size, const char *tag)
{
	(void) opaque;
	return store_memory_new(size, tag);
}

static struct store *
file_create(void *opaque, uint64_t size, const char *tag)
{
	return store_file_new(opaque, size, tag);
}

struct store_factory
store_memory_factory(void)
{
	return (struct store_factory) { .create = memory_create };
}

struct store_factory
store_file_factory(const char *dir)
{
	return (struct store_factory) {
		.create = file_create, .opaque = (void *) dir,
	};
}
