/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STORE_H
#define COLOFS_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A store holds bytes at disk offsets: the byte at disk offset X lives at
 * store offset X.  It does not know which bytes are meaningful: the extent
 * map next to it does.  Backings fill one function table:
 *   memory: an anonymous unreserved mapping, one copy in or out;
 *   file:   an unlinked sparse file in a configured directory.
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
	void *mem;		/* the data in memory, or NULL */
	uint64_t size;
	void *priv;		/* the backing's own */
	struct extmap *resident;	/* pages kept from earlier epochs, or
					 * NULL: see store_recycle */
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
 * store_recycle: used is the epoch's map (the bytes written into s); their
 * pages join the resident set, the pages the store keeps mapped (memory)
 * or allocated (file) so that the next epoch overwrites them instead of
 * faulting fresh zeroed pages in.  If the resident set is then larger
 * than keep bytes, the pages that the epoch did not touch are released
 * (MADV_FREE, or a punched hole): the set shrinks to the epoch's own
 * pages.  *epoch_pages gets those pages' size (page-rounded |used|).
 * 0, or -1 with errno (the store is still usable, its resident set
 * unknown: free it).  store_retained: the resident set's size.
 */
struct extmap;
/* Before a copy into s->mem at [off, off+len): faults the pages in with
 * one call (MADV_POPULATE_WRITE) rather than one trap per page, unless
 * they are resident already (then it costs nothing).  Memory stores only;
 * a hint: nothing fails.
 */
void store_populate(struct store *s, uint64_t off, uint64_t len);
int store_recycle(struct store *s, const struct extmap *used, uint64_t keep,
		  uint64_t *epoch_pages);
uint64_t store_retained(const struct store *s);

/* Factories for the two backings; dir must outlive the factory. */
struct store_factory store_memory_factory(void);
struct store_factory store_file_factory(const char *dir);

#endif
