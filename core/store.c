/* SPDX-License-Identifier: MIT */
/* Buffer stores: bytes at disk offsets, in anonymous memory or an
 * unlinked sparse file.
 *
 * In both backings offset X holds the byte of disk offset X, so a store
 * of a 1 TiB disk costs nothing until written.  Memory is an anonymous
 * unreserved mapping of small pages (memory follows the bytes written); file is an
 * unlinked sparse file (its fd lets callers splice).  Freeing a large
 * store takes a while (the kernel frees every page), which is why the
 * secondary frees old stores in a background thread.
 *
 * The store does not know what it holds: the extent map beside it does.
 * Stores are thread-safe because pread and pwrite are.
 *
 * Recycling: a checkpoint reuses stores rather than mapping fresh ones
 * (a fresh page costs a fault and a zeroing, about 40 times an overwrite
 * on the development machines).  store_recycle keeps s->resident, the
 * page-rounded ranges earlier epochs wrote, and releases (MADV_FREE, or a
 * punched hole) only the pages beyond the retention the caller asks for.
 * Only the thread that recycles touches s->resident, while no I/O can.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "extmap.h"
#include "fdio.h"
#include "log.h"
#include "store.h"

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
	if (fd_zero_range(s->fd, off, len, true) == -1) {
		log_error("zero %s store at %" PRIu64 ": %m",
			  s->ops->name, off);
		return -1;
	}
	return 0;
}

/* Punches the blocks out; a file system that cannot punch keeps them (the
 * bytes are unspecified anyway).
 */
static int
fd_store_release(struct store *s, uint64_t off, uint64_t len)
{
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      off, len) == 0 || errno == EOPNOTSUPP || errno == ENOSYS)
		return 0;
	log_error("release %s store at %" PRIu64 ": %m", s->ops->name, off);
	return -1;
}

static void
fd_store_free(struct store *s)
{
	close(s->fd);
	free(s);
}

/* The memory backing: an anonymous, unreserved mapping of the disk's
 * size.  Untouched pages cost nothing, a copy in or out is one memcpy
 * with no system call, and freeing the store is one munmap.  Callers never touch bytes outside
 * [0, size), and range locks keep concurrent copies disjoint.
 */
static int
mem_pread(struct store *s, void *buf, size_t len, uint64_t off)
{
	memcpy(buf, (char *) s->priv + off, len);
	return 0;
}

static int
mem_pwrite(struct store *s, const void *buf, size_t len, uint64_t off)
{
	memcpy((char *) s->priv + off, buf, len);
	return 0;
}

static int
mem_zero(struct store *s, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);
	uint64_t a = (off + page - 1) / page * page;
	uint64_t b = (off + len) / page * page;
	char *base = s->priv;

	if (a >= b) {
		memset(base + off, 0, len);
		return 0;
	}
	memset(base + off, 0, a - off);
	memset(base + b, 0, off + len - b);
	/* Whole pages: give them back; they read as zeros afterwards. */
	if (madvise(base + a, b - a, MADV_DONTNEED) == -1) {
		memset(base + a, 0, b - a);
	}
	return 0;
}

/* MADV_FREE: the kernel takes the pages only when it needs memory, and a
 * write before that keeps them.  Kernels before 4.5: MADV_DONTNEED.
 */
static int
mem_release(struct store *s, uint64_t off, uint64_t len)
{
	char *base = s->priv;

	if (madvise(base + off, len, MADV_FREE) == 0 ||
	    madvise(base + off, len, MADV_DONTNEED) == 0)
		return 0;
	log_error("release %s store at %" PRIu64 ": %m", s->ops->name, off);
	return -1;
}

static void
mem_free(struct store *s)
{
	munmap(s->priv, s->size ? s->size : 1);
	free(s);
}

static const struct store_ops memory_ops = {
	.name = "memory",
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.zero = mem_zero,
	.release = mem_release,
	.free = mem_free,
};

static const struct store_ops file_ops = {
	.name = "file",
	.pread = fd_store_pread,
	.pwrite = fd_store_pwrite,
	.zero = fd_store_zero,
	.release = fd_store_release,
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
	struct store *s = calloc(1, sizeof *s);
	void *p;

	if (s == NULL)
		return NULL;
	p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		log_error("map %" PRIu64 " bytes for %s: %m", size, tag);
		free(s);
		return NULL;
	}
	/* Small pages: a scattered 4 KiB write must cost 4 KiB of memory,
	 * not the 2 MiB huge page around it.
	 */
	madvise(p, size ? size : 1, MADV_NOHUGEPAGE);
	s->ops = &memory_ops;
	s->fd = -1;
	s->mem = p;
	s->size = size;
	s->priv = p;
	return s;
}

struct store *
store_file_new(const char *dir, uint64_t size, const char *tag)
{
	/* Made in the directory's fd, never by a path: O_TMPFILE has no name
	 * to plant a link at; the fallback's name is fresh and O_EXCL |
	 * O_NOFOLLOW (core/fdio.h).
	 */
	int dirfd = fdio_dir_open(dir), fd = -1, saved;

	if (dirfd == -1) {
		log_error("buffer directory %s: %m", dir);
		return NULL;
	}
	fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -1 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* O_TMPFILE unsupported here: a named file, unlinked. */
		char name[64], tmp[NAME_MAX + 1];

		snprintf(name, sizeof name, ".colofs-%s", tag);
		fd = fdio_create_tmp(dirfd, name, 0, 0600, tmp, sizeof tmp);
		if (fd != -1)
			unlinkat(dirfd, tmp, 0);
	}
	saved = errno;
	close(dirfd);
	errno = saved;
	if (fd == -1) {
		log_error("create buffer file for %s in %s: %m", tag, dir);
		return NULL;
	}
	return store_from_fd(&file_ops, fd, size);
}

int
store_sync(struct store *s)
{
	if (s->fd < 0)
		return 0;
	return fdio_datasync(s->fd, &s->sync_failed, s->ops->name);
}

int
store_link(struct store *s, const char *path)
{
	char proc[64];

	if (s->fd < 0) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (store_sync(s) == -1)
		return -1;
	if (unlink(path) == -1 && errno != ENOENT) {
		log_error("unlink %s: %m", path);
		return -1;
	}
	/* An O_TMPFILE file can be given a name through /proc; a file made
	 * by the mkostemp fallback and unlinked cannot (ENOENT).
	 */
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", s->fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == -1) {
		if (errno == ENOENT)
			errno = EOPNOTSUPP;
		return -1;
	}
	return 0;
}

struct store *
store_file_open(const char *path, uint64_t size)
{
	char why[256];
	int fd = fdio_open_own(path, O_RDWR, why, sizeof why);

	if (fd == -1) {
		int saved = errno;

		log_error("open buffer file %s: %s", path, why);
		errno = saved;
		return NULL;
	}
	return store_from_fd(&file_ops, fd, size);
}

void
store_free(struct store *s)
{
	if (s != NULL) {
		extmap_free(s->resident);
		s->ops->free(s);
	}
}

/* Adds the pages under every range of used to set; *bytes: set's size. */
static int
add_pages(struct extmap *set, const struct extmap *used, uint64_t size,
	  uint64_t *bytes)
{
	uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);
	uint64_t pos = 0, a, b;

	while (extmap_next(used, pos, &a, &b)) {
		uint64_t pa = a / page * page;
		uint64_t pb = (b + page - 1) / page * page;

		if (extmap_insert(set, pa, (pb < size ? pb : size) - pa) == -1)
			return -1;
		pos = b;
	}
	*bytes = extmap_bytes(set);
	return 0;
}

/* Releases every page of s->resident outside keep, and makes keep the
 * resident set.
 */
static int
release_outside(struct store *s, struct extmap *keep)
{
	uint64_t pos = 0, a, b;

	while (extmap_next(s->resident, pos, &a, &b)) {
		uint64_t ka, kb;

		/* The gaps of keep within [a, b). */
		while (a < b) {
			uint64_t gap_end = b;

			if (extmap_next(keep, a, &ka, &kb) && ka < b)
				gap_end = ka;
			else
				kb = b;
			if (gap_end > a &&
			    s->ops->release(s, a, gap_end - a) == -1)
				return -1;
			a = kb > gap_end ? kb : gap_end;
		}
		pos = b;
	}
	extmap_free(s->resident);
	s->resident = keep;
	return 0;
}

void
store_populate(struct store *s, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);
	uint64_t a = off / page * page;
	uint64_t b = (off + len + page - 1) / page * page;

	if (s->mem == NULL || len == 0)
		return;
	if (b > s->size)
		b = s->size;
	/* s->resident changes only while the store is recycled, when no
	 * I/O can reach it.  Pages zeroed since (mem_zero) fault in
	 * one by one: still right, only slower.
	 */
	if (s->resident && extmap_contains(s->resident, a, b - a))
		return;
	/* Older kernels say EINVAL; the copy faults the pages in then. */
	madvise((char *) s->mem + a, b - a, MADV_POPULATE_WRITE);
}

int
store_recycle(struct store *s, const struct extmap *used, uint64_t keep,
	      uint64_t *epoch_pages)
{
	struct extmap *pages = extmap_new();
	uint64_t all;

	if (pages == NULL || add_pages(pages, used, s->size, epoch_pages) == -1)
		goto err;
	if (s->resident == NULL) {
		s->resident = pages;
		return 0;
	}
	if (add_pages(s->resident, used, s->size, &all) == -1)
		goto err;
	if (all <= keep || all == *epoch_pages || s->ops->release == NULL) {
		extmap_free(pages);
		return 0;
	}
	if (release_outside(s, pages) == 0)
		return 0;
err:
	{
		int saved = errno;

		extmap_free(pages);
		errno = saved;
	}
	return -1;
}

uint64_t
store_retained(const struct store *s)
{
	return s->resident ? extmap_bytes(s->resident) : 0;
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
