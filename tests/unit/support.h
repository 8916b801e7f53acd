/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_TEST_SUPPORT_H
#define COLOFS_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "secondary.h"
#include "store.h"

/* A raw image of size bytes in a fresh temp file, every byte = fill.
 * The file is unlinked; *path (if not NULL) gets a copy of its name.
 */
struct image *test_raw_image(uint64_t size, int fill);

/* The 512-byte blocks the file at path holds once img is flushed. */
long long test_flushed_blocks(struct image *img, const char *path);

/* A temp directory (for file buffers), removed by test_cleanup_dir. */
char *test_temp_dir(void);
void test_cleanup_dir(char *dir);

/* A one-disk secondary over a raw image filled with fill; the backing is
 * memory unless dir is given.
 */
struct secondary *test_secondary(uint64_t size, int fill, const char *dir);

/* Asserts (criterion) that len bytes at off of the view / of S are all b. */
void expect_view(struct secondary_disk *d, uint64_t off, size_t len, int b);
void expect_disk(struct secondary_disk *d, uint64_t off, size_t len, int b);

/* Writes len bytes of b at off, via the view or the primary; asserts 0. */
void view_fill(struct secondary_disk *d, uint64_t off, size_t len, int b);
void primary_fill(struct secondary_disk *d, uint64_t off, size_t len, int b);

/* From r's status: buffer_bytes, or with retained buffer_retained_bytes. */
uint64_t test_buffer_bytes(struct secondary *r, int retained);

/* The ranges a mark callback was given (al_recover's, gi_parse_left's):
 * test_record_range is the callback, a struct test_ranges its opaque.
 */
struct test_ranges {
	uint64_t off[64], len[64];
	int n;
};
int test_record_range(void *opaque, uint64_t off, uint64_t len);

/* A deterministic PRNG (splitmix64) for seeded tests. */
uint64_t test_rand(uint64_t *state);

#endif
