/* SPDX-License-Identifier: MIT */
/* Fault-injecting backends: an image and a store factory that wrap the
 * real ones and fail on demand, so that every failure case of the design
 * document can be reached.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "faulty.h"
#include "fdio.h"
#include "journal.h"
#include "support.h"

struct faults faults;

static int
fail_dir_fsync(void)
{
	int n = atomic_load(&faults.dir_fsync);

	if (n == 0)
		return 0;
	if (atomic_load(&faults.dir_fsync_skip) > 0) {
		atomic_fetch_sub(&faults.dir_fsync_skip, 1);
		return 0;
	}
	if (n > 0)
		atomic_fetch_sub(&faults.dir_fsync, 1);
	errno = EIO;
	return -1;
}

static int
fail_journal_alloc(void)
{
	if (!atomic_load(&faults.journal_alloc))
		return 0;
	errno = ENOMEM;
	return -1;
}

/* Always installed: they fail nothing until a test sets the switch. */
__attribute__((constructor)) static void
install_fdio_faults(void)
{
	fdio_dir_fsync_fault = fail_dir_fsync;
	journal_alloc_fault = fail_journal_alloc;
}

static struct image_ops faulty_image_ops;
static const struct image_ops *raw_ops;

static int
fi_pread(struct image *img, void *buf, size_t len, uint64_t off)
{
	if (atomic_load(&faults.image_read)) {
		errno = EIO;
		return -1;
	}
	return raw_ops->pread(img, buf, len, off);
}

static bool
write_fails(void)
{
	int n;

	if (atomic_load(&faults.image_write))
		return true;
	n = atomic_load(&faults.image_write_countdown);
	if (n > 0 && atomic_fetch_sub(&faults.image_write_countdown, 1) <= 1) {
		atomic_store(&faults.image_write, true);
		return true;
	}
	return false;
}

static int
fi_pwrite(struct image *img, const void *buf, size_t len, uint64_t off)
{
	if (write_fails()) {
		errno = EIO;
		return -1;
	}
	return raw_ops->pwrite(img, buf, len, off);
}

static int
fi_zero(struct image *img, uint64_t off, uint64_t len, bool punch)
{
	if (write_fails()) {
		errno = EIO;
		return -1;
	}
	return raw_ops->zero(img, off, len, punch);
}

static int
fi_flush(struct image *img)
{
	if (faults.image_flush_hook)
		faults.image_flush_hook();
	if (atomic_load(&faults.image_flush)) {
		errno = EIO;
		return -1;
	}
	return raw_ops->flush(img);
}

struct image *
faulty_image(uint64_t size, int fill)
{
	struct image *img = test_raw_image(size, fill);

	raw_ops = img->ops;
	faulty_image_ops = *raw_ops;
	faulty_image_ops.name = "faulty";
	faulty_image_ops.pread = fi_pread;
	faulty_image_ops.pwrite = fi_pwrite;
	faulty_image_ops.zero = fi_zero;
	faulty_image_ops.flush = fi_flush;
	img->ops = &faulty_image_ops;
	return img;
}

static struct store_ops faulty_store_ops;
static const struct store_ops *memory_ops;

static int
fs_pread(struct store *s, void *buf, size_t len, uint64_t off)
{
	if (atomic_load(&faults.store_read)) {
		errno = EIO;
		return -1;
	}
	return memory_ops->pread(s, buf, len, off);
}

static int
fs_pwrite(struct store *s, const void *buf, size_t len, uint64_t off)
{
	if (atomic_load(&faults.store_write)) {
		errno = EIO;
		return -1;
	}
	return memory_ops->pwrite(s, buf, len, off);
}

static int
fs_zero(struct store *s, uint64_t off, uint64_t len)
{
	if (atomic_load(&faults.store_write)) {
		errno = EIO;
		return -1;
	}
	return memory_ops->zero(s, off, len);
}

static struct store *
fs_create(void *opaque, uint64_t size, const char *tag)
{
	struct store *s;

	(void) opaque;
	if (atomic_load(&faults.store_create)) {
		errno = ENOSPC;
		return NULL;
	}
	s = store_memory_new(size, tag);
	if (s == NULL)
		return NULL;
	memory_ops = s->ops;
	faulty_store_ops = *memory_ops;
	faulty_store_ops.name = "faulty";
	faulty_store_ops.pread = fs_pread;
	faulty_store_ops.pwrite = fs_pwrite;
	faulty_store_ops.zero = fs_zero;
	s->ops = &faulty_store_ops;
	/* No direct access: every copy goes through the faulty ops.  The
	 * mapping stays for the ops to use (mem_free unmaps priv).
	 */
	s->direct = false;
	return s;
}

struct store_factory
faulty_store_factory(void)
{
	return (struct store_factory) { .create = fs_create };
}
