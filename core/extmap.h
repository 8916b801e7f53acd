/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_EXTMAP_H
#define COLOFS_EXTMAP_H

#include <stddef.h>
#include <stdint.h>

/* A set of byte ranges [start, end) over a disk: which bytes a buffer holds.
 * Ranges never overlap; adjacent ranges are merged.  Not thread-safe: the
 * owner locks around every call.
 */
struct extmap;

struct extmap *extmap_new(void);		/* NULL + errno on failure */
void extmap_free(struct extmap *em);		/* NULL is a no-op */

/* Marks [off, off+len) present.  0, or -1 with errno (ENOMEM). */
int extmap_insert(struct extmap *em, uint64_t off, uint64_t len);
/* Marks [off, off+len) absent.  May split a range.  0, or -1 (ENOMEM). */
int extmap_remove(struct extmap *em, uint64_t off, uint64_t len);

/* The first range that ends after off, clipped to begin no earlier than
 * off: *start >= off.  Returns 1 and fills *start and *end, or 0 if no
 * range ends after off.  O(log n).
 */
int extmap_next(const struct extmap *em, uint64_t off,
		uint64_t *start, uint64_t *end);

/* 1 if every byte of [off, off+len) is present, else 0. */
int extmap_contains(const struct extmap *em, uint64_t off, uint64_t len);

size_t extmap_count(const struct extmap *em);	/* ranges held */
uint64_t extmap_bytes(const struct extmap *em);	/* bytes held */
size_t extmap_mem_bytes(const struct extmap *em); /* heap used by the map */

/* Present bytes within [off, off+len). */
uint64_t extmap_bytes_in(const struct extmap *em, uint64_t off, uint64_t len);

#endif
