/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STORE_H
#define COLOFS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A store holds bytes at disk offsets.  It does not know which bytes are
 * meaningful: the extent map next to it does.  Backings fill one function
 * table:
 *   memory: a pool of pages (an anonymous unreserved mapping) and a table
 *           from disk pages to pool pages: an epoch's writes take the
 *           pool's pages in order, wherever on the disk they land, so a
 *           recycled store's pages are overwritten, never faulted in again;
 *   file:   an unlinked sparse file in a configured directory, the byte at
 *           disk offset X at file offset X.
 * Tests add a fault-injecting backing of their own.
 */
struct store;

struct store_ops {
	const char *name;
	/* Whole transfers: 0, or -1 with errno. */
	int (*pread)(struct store *s, void *buf, size_t len, uint64_t off);
	int (*pwrite)(struct store *s, const void *buf, size_t len,
		      uint64_t off);
	/* Afterwards [off, off+len) reads as zeros; frees space if it can. */
	int (*zero)(struct store *s, uint64_t off, uint64_t len);
	/* Gives the pages or blocks of [off, off+len) (page-aligned) back to
	 * the system; the bytes there become unspecified.  NULL: cannot.
	 */
	int (*release)(struct store *s, uint64_t off, uint64_t len);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	int fd;			/* the data, or -1: lets callers splice */
	bool direct;		/* store_read_ptr/store_write_ptr work */
	uint64_t size;
	void *priv;		/* the backing's own */
	struct extmap *resident;	/* file stores: pages kept from
					 * earlier epochs, or NULL: see
					 * store_recycle */
	atomic_bool sync_failed;	/* fdio_datasync's: a sync failed */
};

/* Makes the empty stores that a secondary swaps in at start and checkpoint.
 * tag names the store in /proc/PID/fd and in errors ("vda-hidden").
 */
struct store_factory {
	struct store *(*create)(void *opaque, uint64_t size, const char *tag);
	void *opaque;
};

struct store *store_memory_new(uint64_t size, const char *tag);
struct store *store_file_new(const char *dir, uint64_t size, const char *tag);
void store_free(struct store *s);		/* NULL is a no-op */

/* Durability (failover, see secondary.c).  store_sync: the file store's data
 * reaches the disk (fdatasync); a memory store has nothing to sync.
 * store_link: syncs a file store and gives its (unlinked) file the name
 * path, replacing any file there; -1 with errno (EOPNOTSUPP for a memory
 * store or a file the kernel cannot relink).  store_file_open: a file
 * store over the existing file path (a linked store, after a restart).
 */
int store_sync(struct store *s);
int store_link(struct store *s, const char *path);
struct store *store_file_open(const char *path, uint64_t size);

/* Recycling (a checkpoint reuses a store rather than making a new one).
 * The caller's extent map says which bytes mean something, so a recycled
 * store's old bytes are never read: its next epoch starts with an empty
 * map, and every read outside that map falls through to the layer below.
 * store_recycle: used is the epoch's map (the bytes written into s).
 *   file: their pages join the resident set, the blocks the store keeps
 *   allocated so that the next epoch overwrites them instead of
 *   allocating fresh ones.  If the resident set is then larger than keep
 *   bytes, the pages that the epoch did not touch are punched out: the
 *   set shrinks to the epoch's own pages.  *epoch_pages gets those pages'
 *   size (page-rounded |used|).
 *   memory: the table empties and the pool starts again at its first
 *   page; the pool pages the epoch took are the resident set (mapped,
 *   to be overwritten by the next epoch wherever it writes).  The pool's
 *   mapped pages beyond the larger of the epoch's and keep bytes are
 *   released (MADV_FREE), so keep is also a floor (buffer_warm's pages
 *   stay).  *epoch_pages gets the pages the epoch took.
 * 0, or -1 with errno (the store is still usable, its resident set
 * unknown: free it).  store_retained: the resident set's size.
 */
struct extmap;
/* A memory store's pages are faulted in as writes first need them, and
 * this many bytes past those (MADV_POPULATE_WRITE), so that a run of small
 * writes into a fresh pool makes one system call per STORE_POPULATE_AHEAD
 * rather than one each; those pages count as retained (store_retained).
 */
#define STORE_POPULATE_AHEAD (2u << 20)
int store_recycle(struct store *s, const struct extmap *used, uint64_t keep,
		  uint64_t *epoch_pages);
uint64_t store_retained(const struct store *s);

/* Direct access to a memory store (s->direct), for a copy in or out
 * without a bounce buffer.  Both return a pointer to the bytes of disk
 * offset off and put in *run how many bytes from there (at most len, at
 * least 1) are contiguous in memory; the caller loops.  Pointers stay
 * valid until the store is recycled or freed.
 * store_read_ptr: NULL if the page at off was never written (its bytes
 * read as zeros; *run then spans to the end of that page or len), or if
 * s has no direct access (*run = len): either way ops->pread serves.
 * store_write_ptr: gives the pages of [off, off+len) that have none a
 * pool page each (a fresh page reads as zeros, and a recycled one is
 * zeroed unless the copy will cover all of it); NULL with errno (ENOSPC:
 * the pool is used up, which the table's one page per disk page rules
 * out).  Pages taken together are contiguous, so a sequential write
 * makes one run.
 */
void *store_read_ptr(struct store *s, uint64_t off, uint64_t len,
		     uint64_t *run);
/* The bytes of [off, off+len) for a copy out, as far as one piece goes:
 * in place (store_read_ptr), else read (ops->pread) into *bounce, of
 * bounce_len bytes, which it allocates on first use (the caller frees
 * it): a copy out of memory stores allocates nothing.  *run says how
 * many bytes (at most len and bounce_len).  NULL with errno.
 */
const void *store_read_run(struct store *s, uint64_t off, uint64_t len,
			   char **bounce, size_t bounce_len, uint64_t *run);
void *store_write_ptr(struct store *s, uint64_t off, uint64_t len,
		      uint64_t *run);

/* Warming (buffer_warm): faults in a memory store's first pool pages
 * until bytes of them (at most the store's size) are mapped, and accesses
 * each from user space and from the kernel (a paravirtualized guest traps
 * on the first of each), so that the epochs that take them overwrite
 * mapped pages at full speed instead of faulting fresh ones in; a recycle keeps them as it keeps any epoch's pages, within its
 * keep bound.  For a store no I/O reaches yet (a spare being made).  0,
 * or -1 with errno (EOPNOTSUPP: not a memory store).
 */
int store_warm(struct store *s, uint64_t bytes);

/* Factories for the two backings; dir must outlive the factory. */
struct store_factory store_memory_factory(void);
struct store_factory store_file_factory(const char *dir);

#endif
