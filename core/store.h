/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_STORE_H
#define COLOFS_STORE_H

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
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	int fd;			/* the data, or -1: lets callers splice */
	void *mem;		/* the data in memory, or NULL */
	uint64_t size;
	void *priv;		/* the backing's own */
};

/* Makes the empty stores that a replica swaps in at start and checkpoint.
 * tag names the store in /proc/PID/fd and in errors ("vda-hidden").
 */
struct store_factory {
	struct store *(*create)(void *opaque, uint64_t size, const char *tag);
	void *opaque;
};

struct store *store_memory_new(uint64_t size, const char *tag);
struct store *store_file_new(const char *dir, uint64_t size, const char *tag);
void store_free(struct store *s);		/* NULL is a no-op */

/* Durability (failover, see replica.c).  store_sync: the file store's data
 * reaches the disk (fdatasync); a memory store has nothing to sync.
 * store_link: syncs a file store and gives its (unlinked) file the name
 * path, replacing any file there; -1 with errno (EOPNOTSUPP for a memory
 * store or a file the kernel cannot relink).  store_file_open: a file
 * store over the existing file path (a linked store, after a restart).
 */
int store_sync(struct store *s);
int store_link(struct store *s, const char *path);
struct store *store_file_open(const char *path, uint64_t size);

/* Factories for the two backings; dir must outlive the factory. */
struct store_factory store_memory_factory(void);
struct store_factory store_file_factory(const char *dir);

#endif
