/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the dirty bitmap's loader (core/bitmap.c), which reads
 * STATE_DIR/NAME.dirty.  The input is the whole file; the disk size and
 * granularity asked for are the header's own when they are sane (so the
 * fuzzer reaches the words), else 1 MiB at 64 KiB.  BITMAP_LIVE is cleared
 * in the input: that path only rewrites the file (an fsync per run).
 * Invariants: bitmap_open fails cleanly or yields a bitmap whose dirty
 * bytes do not exceed the disk, and whose dirty ranges lie inside it.
 * Build and run: tests/fuzz/run-files [SECONDS] [WORKDIR].
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "fuzz-file.h"
#include "le.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t dsize = 1 << 20, gran = 65536, off, len, total = 0;
	const char *path;
	uint8_t *copy;
	struct bitmap *b;

	copy = malloc(size ? size : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	if (size >= 40) {
		uint64_t s = le_get64(copy + 16), g = le_get64(copy + 24);

		le_put32(copy + 12,
			 le_get32(copy + 12) & ~(uint32_t) BITMAP_LIVE);
		if (g >= 512 && g <= (1u << 26) && (g & (g - 1)) == 0 &&
		    s > 0 && s / g < (1u << 20)) {
			dsize = s;
			gran = g;
		}
	}
	path = fuzz_file_put("vda.dirty", copy, size);
	free(copy);
	b = bitmap_open(path, dsize, gran);
	if (b == NULL)
		return 0;
	assert(bitmap_dirty_bytes(b) <= dsize);
	for (off = 0; bitmap_next(b, off, dsize, &off, &len); off += len) {
		assert(len > 0 && off + len <= dsize);
		total += len;
	}
	assert(total == bitmap_dirty_bytes(b));
	bitmap_free(b);
	return 0;
}
