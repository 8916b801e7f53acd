/* SPDX-License-Identifier: MIT */
/* Buffer stores: bytes at disk offsets, in anonymous memory or an
 * unlinked sparse file.
 *
 * A store of a 1 TiB disk costs nothing until written.  Memory is a pool
 * of small pages with a table from disk pages to pool pages (below: the
 * pages an epoch writes are the pool's first ones, wherever they are on
 * the disk); file is an unlinked sparse file holding the byte of disk
 * offset X at offset X (its fd lets callers splice).  Freeing a large
 * store takes a while (the kernel frees every page), which is why the
 * secondary frees old stores in a background thread.
 *
 * The store does not know what it holds: the extent map beside it does.
 * Stores are thread-safe because pread and pwrite are.
 *
 * Recycling: a checkpoint reuses stores rather than mapping fresh ones
 * (a fresh page costs a fault and a zeroing, about 40 times an overwrite
 * on the development machines).  store_recycle keeps the pool's pages
 * that earlier epochs took (memory), or s->resident, the page-rounded
 * ranges earlier epochs wrote (file), and releases (MADV_FREE, or a
 * punched hole) only the pages beyond the retention the caller asks for.
 * Only the thread that recycles touches them, while no I/O can.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* The memory backing: a pool of pages and a table from disk pages to
 * pool pages.
 *
 * The pool is an anonymous, unreserved mapping as large as the disk (a
 * disk page takes at most one pool page per epoch), so untouched pages
 * cost nothing.  The table has two levels: a directory of leaves, each
 * leaf LEAF_PAGES entries made on first use; an entry is a pool page
 * number plus one (32 bits: disks up to 16 TiB), 0 for none (the page
 * reads as zeros).  Within an epoch
 * an entry, once set, never changes; store_recycle empties the table when
 * no I/O can reach the store.
 *
 * Pool pages are handed out in order (next), a request's pages together,
 * so the pages an epoch uses are the pool's first ones: the next epoch
 * overwrites them wherever on the disk it writes, where a store addressed
 * by disk offset would fault fresh pages in for every new place.  Pages
 * handed out for the first time are faulted in with one
 * MADV_POPULATE_WRITE per request rather than one trap per page.
 *
 * Concurrent writers never share bytes (range locks), but two may share a
 * page: each claims the entry with a compare-and-swap, and a loser gives
 * its page back to a short free list.  A page is zeroed before it is
 * published, so a writer's bytes are never overwritten by another's
 * zeroing.
 */
#define LEAF_PAGES 512		/* a 2 KiB leaf: scattered writes stay cheap */

struct pool {
	char *base;
	uint64_t page;
	uint64_t npages;		/* the pool's and the disk's pages */
	_Atomic(_Atomic uint32_t *) *dir;
	uint64_t ndir;
	atomic_uint_fast64_t next;	/* pages handed out this epoch */
	atomic_uint_fast64_t populated;	/* pages [0, populated) faulted in */
	atomic_uint_fast64_t mapped;	/* pages earlier epochs kept mapped */
	pthread_mutex_t lock;		/* the free list */
	uint64_t *freed;
	size_t nfreed, cap;
	atomic_size_t has_freed;
};

static _Atomic uint32_t *
pool_leaf(struct pool *p, uint64_t pg, bool make)
{
	_Atomic uint32_t *leaf = atomic_load(&p->dir[pg / LEAF_PAGES]);
	_Atomic uint32_t *fresh, *expected = NULL;

	if (leaf != NULL || !make)
		return leaf;
	fresh = calloc(LEAF_PAGES, sizeof *fresh);
	if (fresh == NULL)
		return NULL;
	if (atomic_compare_exchange_strong(&p->dir[pg / LEAF_PAGES],
					   &expected, fresh))
		return fresh;
	free(fresh);
	return expected;
}

static uint32_t
pool_entry(struct pool *p, uint64_t pg)
{
	_Atomic uint32_t *leaf = pool_leaf(p, pg, false);

	return leaf ? atomic_load(&leaf[pg % LEAF_PAGES]) : 0;
}

/* n pool pages in a row: the first one's number, or UINT64_MAX. */
static uint64_t
pool_take(struct pool *p, uint64_t n)
{
	uint64_t first, end, pop, mapped;

	if (n == 1 && atomic_load(&p->has_freed)) {
		pthread_mutex_lock(&p->lock);
		if (p->nfreed > 0) {
			first = p->freed[--p->nfreed];
			atomic_store(&p->has_freed, p->nfreed);
			pthread_mutex_unlock(&p->lock);
			return first;
		}
		pthread_mutex_unlock(&p->lock);
	}
	first = atomic_fetch_add(&p->next, n);
	if (first > p->npages || p->npages - first < n) {
		atomic_fetch_sub(&p->next, n);
		return UINT64_MAX;
	}
	end = first + n;
	pop = atomic_load(&p->populated);
	mapped = atomic_load(&p->mapped);
	if (end > pop && end > mapped) {
		uint64_t a = first > mapped ? first : mapped;
		uint64_t to = end + STORE_POPULATE_AHEAD / p->page;

		if (a < pop)
			a = pop;
		if (to > p->npages)
			to = p->npages;
		/* A hint: older kernels say EINVAL and the copy faults.
		 * STORE_POPULATE_AHEAD past what this write needs, so that a run
		 * of small writes (4 KiB ones into a fresh pool) makes one
		 * call in 512 instead of one each: a system call is the
		 * dearest thing here (performance.md).
		 */
		madvise(p->base + a * p->page, (to - a) * p->page,
			MADV_POPULATE_WRITE);
		while (pop < to &&
		       !atomic_compare_exchange_weak(&p->populated, &pop, to))
			;
	}
	return first;
}

/* Gives back a page that lost its entry to another writer. */
static void
pool_give_back(struct pool *p, uint64_t idx)
{
	pthread_mutex_lock(&p->lock);
	if (p->nfreed == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		uint64_t *f = realloc(p->freed, cap * sizeof *f);

		if (f == NULL) {	/* leaked until the next epoch */
			pthread_mutex_unlock(&p->lock);
			return;
		}
		p->freed = f;
		p->cap = cap;
	}
	p->freed[p->nfreed++] = idx;
	atomic_store(&p->has_freed, p->nfreed);
	pthread_mutex_unlock(&p->lock);
}

/* The run of disk pages from pg (at most last) whose pool pages follow
 * each other, from entry e (non-zero): its number of pages.
 */
static uint64_t
pool_run(struct pool *p, uint64_t pg, uint64_t last, uint64_t e)
{
	uint64_t n = 1;

	while (pg + n <= last && pool_entry(p, pg + n) == e + n)
		n++;
	return n;
}

static uint64_t
run_bytes(struct pool *p, uint64_t off, uint64_t len, uint64_t pages)
{
	uint64_t end = (off / p->page + pages) * p->page;

	return end - off < len ? end - off : len;
}

static void *
pool_read_ptr(struct store *s, uint64_t off, uint64_t len, uint64_t *run)
{
	struct pool *p = s->priv;
	uint64_t pg = off / p->page, e;

	e = pool_entry(p, pg);
	if (e == 0) {
		*run = run_bytes(p, off, len, 1);
		return NULL;
	}
	*run = run_bytes(p, off, len,
			 pool_run(p, pg, (off + len - 1) / p->page, e));
	return p->base + (e - 1) * p->page + off % p->page;
}

static void *
pool_write_ptr(struct store *s, uint64_t off, uint64_t len, uint64_t *run)
{
	struct pool *p = s->priv;
	uint64_t pg = off / p->page, last = (off + len - 1) / p->page;
	uint64_t e, n, first, i;
	_Atomic uint32_t *leaf;

	leaf = pool_leaf(p, pg, true);
	if (leaf == NULL)
		return NULL;
	e = atomic_load(&leaf[pg % LEAF_PAGES]);
	if (e != 0) {
		*run = run_bytes(p, off, len, pool_run(p, pg, last, e));
		return p->base + (e - 1) * p->page + off % p->page;
	}
	/* The pages from pg on that have none, within this leaf. */
	for (n = 1; pg + n <= last && (pg + n) % LEAF_PAGES != 0 &&
	     atomic_load(&leaf[(pg + n) % LEAF_PAGES]) == 0; n++)
		;
	first = pool_take(p, n);
	if (first == UINT64_MAX && n > 1) {
		n = 1;
		first = pool_take(p, 1);
	}
	if (first == UINT64_MAX) {
		log_error("%s store: no pool page left", s->ops->name);
		errno = ENOSPC;
		return NULL;
	}
	for (i = 0; i < n; i++) {
		uint64_t a = (pg + i) * p->page;
		uint32_t want = 0;
		char *page = p->base + (first + i) * p->page;

		/* A page the copy does not cover reads as zeros elsewhere. */
		if (a < off || a + p->page > off + len)
			memset(page, 0, p->page);
		if (!atomic_compare_exchange_strong(&leaf[(pg + i) % LEAF_PAGES],
						    &want,
						    (uint32_t) (first + i + 1)))
			break;
	}
	if (i < n) {
		uint64_t k;

		for (k = i; k < n; k++)
			pool_give_back(p, first + k);
		if (i == 0)	/* another writer's page: use it */
			return pool_write_ptr(s, off, len, run);
	}
	*run = run_bytes(p, off, len, i);
	return p->base + first * p->page + off % p->page;
}

void *
store_read_ptr(struct store *s, uint64_t off, uint64_t len, uint64_t *run)
{
	if (!s->direct || len == 0) {
		*run = len;
		return NULL;
	}
	return pool_read_ptr(s, off, len, run);
}

void *
store_write_ptr(struct store *s, uint64_t off, uint64_t len, uint64_t *run)
{
	if (!s->direct || len == 0) {
		errno = EINVAL;
		return NULL;
	}
	return pool_write_ptr(s, off, len, run);
}

const void *
store_read_run(struct store *s, uint64_t off, uint64_t len, char **bounce,
	       size_t bounce_len, uint64_t *run)
{
	const void *p = store_read_ptr(s, off, len, run);

	if (p != NULL)
		return p;
	if (*run > bounce_len)
		*run = bounce_len;
	if (*bounce == NULL && (*bounce = malloc(bounce_len)) == NULL)
		return NULL;
	if (s->ops->pread(s, *bounce, *run, off) == -1)
		return NULL;
	return *bounce;
}

static int
mem_pread(struct store *s, void *buf, size_t len, uint64_t off)
{
	uint64_t run;
	char *dst = buf;

	while (len > 0) {
		const void *src = pool_read_ptr(s, off, len, &run);

		if (src)
			memcpy(dst, src, run);
		else
			memset(dst, 0, run);
		dst += run;
		off += run;
		len -= run;
	}
	return 0;
}

static int
mem_pwrite(struct store *s, const void *buf, size_t len, uint64_t off)
{
	const char *src = buf;
	uint64_t run;

	while (len > 0) {
		void *dst = pool_write_ptr(s, off, len, &run);

		if (dst == NULL)
			return -1;
		memcpy(dst, src, run);
		src += run;
		off += run;
		len -= run;
	}
	return 0;
}

/* Pages with no pool page read as zeros already; the others are zeroed
 * in place (keeping them, so that a later write there takes no new one).
 */
static int
mem_zero(struct store *s, uint64_t off, uint64_t len)
{
	uint64_t run;

	while (len > 0) {
		void *dst = pool_read_ptr(s, off, len, &run);

		if (dst)
			memset(dst, 0, run);
		off += run;
		len -= run;
	}
	return 0;
}

static void
mem_free(struct store *s)
{
	struct pool *p = s->priv;
	uint64_t i;

	for (i = 0; i < p->ndir; i++)
		free(atomic_load(&p->dir[i]));
	free(p->dir);
	free(p->freed);
	pthread_mutex_destroy(&p->lock);
	munmap(p->base, p->npages ? p->npages * p->page : p->page);
	free(p);
	free(s);
}

/* The pool's pages that may be mapped: the earlier epochs', and this
 * one's taken or faulted in so far.
 */
static uint64_t
pool_mapped(struct pool *p)
{
	uint64_t n = atomic_load(&p->mapped), v;

	if ((v = atomic_load(&p->populated)) > n)
		n = v;
	if ((v = atomic_load(&p->next)) > n)
		n = v;
	return n;
}

/* store_recycle for a memory store (see store.h). */
static int
pool_recycle(struct store *s, uint64_t keep, uint64_t *epoch_pages)
{
	struct pool *p = s->priv;
	uint64_t used = atomic_load(&p->next), i, trim;
	uint64_t mapped = pool_mapped(p);
	for (i = 0; i < p->ndir; i++) {
		_Atomic uint32_t *leaf = atomic_load(&p->dir[i]);

		if (leaf)
			memset((void *) leaf, 0, LEAF_PAGES * sizeof *leaf);
	}
	p->nfreed = 0;
	atomic_store(&p->has_freed, 0);
	atomic_store(&p->next, 0);
	*epoch_pages = used * p->page;
	/* Trimmed to the larger of the epoch's pages and keep. */
	trim = keep / p->page > used ? keep / p->page : used;
	if (mapped > trim) {
		/* MADV_FREE: the kernel takes the pages only when it needs
		 * memory.  Kernels before 4.5: MADV_DONTNEED.
		 */
		char *a = p->base + trim * p->page;
		size_t n = (mapped - trim) * p->page;

		if (madvise(a, n, MADV_FREE) == -1 &&
		    madvise(a, n, MADV_DONTNEED) == -1) {
			log_error("release %s store pages: %m", s->ops->name);
			return -1;
		}
		mapped = trim;
	}
	atomic_store(&p->mapped, mapped);
	atomic_store(&p->populated, mapped);
	return 0;
}

static const struct store_ops memory_ops = {
	.name = "memory",
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.zero = mem_zero,
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
	struct pool *p = calloc(1, sizeof *p);
	uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);

	if (s == NULL || p == NULL)
		goto err;
	p->page = page;
	p->npages = (size + page - 1) / page;
	if (p->npages >= UINT32_MAX) {
		log_error("%s: a memory buffer holds at most 16 TiB; use "
			  "buffer = file", tag);
		free(p);
		free(s);
		errno = EFBIG;
		return NULL;
	}
	p->ndir = (p->npages + LEAF_PAGES - 1) / LEAF_PAGES;
	p->dir = calloc(p->ndir ? p->ndir : 1, sizeof *p->dir);
	if (p->dir == NULL)
		goto err;
	p->base = mmap(NULL, p->npages ? p->npages * page : page,
		       PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->base == MAP_FAILED) {
		log_error("map %" PRIu64 " bytes for %s: %m", size, tag);
		free(p->dir);
		goto err;
	}
	/* Small pages: a pool page costs 4 KiB of memory, not the 2 MiB
	 * huge page around it (and fresh huge pages measured slower here).
	 */
	madvise(p->base, p->npages ? p->npages * page : page,
		MADV_NOHUGEPAGE);
	pthread_mutex_init(&p->lock, NULL);
	s->ops = &memory_ops;
	s->fd = -1;
	s->direct = true;
	s->size = size;
	s->priv = p;
	return s;
err:
	free(p);
	free(s);
	errno = ENOMEM;
	return NULL;
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

int
store_recycle(struct store *s, const struct extmap *used, uint64_t keep,
	      uint64_t *epoch_pages)
{
	struct extmap *pages;
	uint64_t all;

	if (s->ops->free == mem_free)
		return pool_recycle(s, keep, epoch_pages);
	pages = extmap_new();
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
	if (s->ops->free == mem_free) {
		struct pool *p = s->priv;

		return pool_mapped(p) * p->page;
	}
	return s->resident ? extmap_bytes(s->resident) : 0;
}

#define WARM_READ 256		/* pages per read of /dev/zero */

int
store_warm(struct store *s, uint64_t bytes)
{
	struct pool *p;
	uint64_t from, to, pop, i, n;
	int z;

	if (s->ops->free != mem_free) {
		errno = EOPNOTSUPP;
		return -1;
	}
	p = s->priv;
	to = (bytes + p->page - 1) / p->page;
	if (to > p->npages)
		to = p->npages;
	from = pool_mapped(p);
	if (to <= from)
		return 0;
	/* The kernel maps the pages in a batch (EINVAL: before Linux 5.14,
	 * the writes below fault them in one by one) ...
	 */
	if (madvise(p->base + from * p->page, (to - from) * p->page,
		    MADV_POPULATE_WRITE) == -1 && errno != EINVAL) {
		log_error("fault in %s store pages: %m", s->ops->name);
		return -1;
	}
	/* ... but on a paravirtualized guest with shadow page tables the
	 * first access from user space still traps to the hypervisor: 650
	 * MiB/s for a first copy into populated pages here, 12-15 GiB/s once
	 * a byte of each page was written (performance.md).  A pool page is
	 * never read before it is written: the byte means nothing.
	 */
	for (i = from; i < to; i++)
		((volatile char *) p->base)[i * p->page] = 0;
	/* ... and so does the kernel's first access (the pread of a save
	 * into the page, a reply written from it): it has shadow tables of
	 * its own.  Reading /dev/zero into the pages makes that access: a
	 * pread into them then ran at 9.9-12.6 GiB/s, against 343-420 MiB/s
	 * after the user's writes alone.  Without /dev/zero, the first
	 * epoch pays it.
	 */
	z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (z >= 0) {
		for (i = from; i < to; i += n) {
			n = to - i < WARM_READ ? to - i : WARM_READ;
			if (full_pread(z, p->base + i * p->page, n * p->page,
				       0) == -1)
				break;
		}
		close(z);
	}
	pop = atomic_load(&p->populated);
	while (pop < to &&
	       !atomic_compare_exchange_weak(&p->populated, &pop, to))
		;
	return 0;
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
