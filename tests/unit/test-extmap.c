/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extmap.h"
#include "support.h"

Test(extmap, empty_map_has_nothing)
{
	struct extmap *em = extmap_new();
	uint64_t s, e;

	cr_assert_eq(extmap_count(em), 0);
	cr_assert_eq(extmap_bytes(em), 0);
	cr_assert_eq(extmap_next(em, 0, &s, &e), 0);
	cr_assert_eq(extmap_contains(em, 0, 1), 0);
	extmap_free(em);
}

Test(extmap, free_null_is_noop)
{
	extmap_free(NULL);
}

Test(extmap, adjacent_inserts_merge)
{
	struct extmap *em = extmap_new();

	cr_assert_eq(extmap_insert(em, 0, 4096), 0);
	cr_assert_eq(extmap_insert(em, 4096, 4096), 0);
	cr_assert_eq(extmap_count(em), 1, "adjacent ranges must merge");
	cr_assert_eq(extmap_bytes(em), 8192);
	extmap_free(em);
}

Test(extmap, disjoint_inserts_stay_apart)
{
	struct extmap *em = extmap_new();
	uint64_t s, e;

	cr_assert_eq(extmap_insert(em, 100, 10), 0);
	cr_assert_eq(extmap_insert(em, 0, 10), 0);
	cr_assert_eq(extmap_count(em), 2);
	cr_assert_eq(extmap_next(em, 0, &s, &e), 1);
	cr_assert(s == 0 && e == 10);
	cr_assert_eq(extmap_next(em, 10, &s, &e), 1);
	cr_assert(s == 100 && e == 110);
	extmap_free(em);
}

Test(extmap, overlapping_insert_swallows_ranges)
{
	struct extmap *em = extmap_new();
	uint64_t s, e;

	extmap_insert(em, 10, 5);
	extmap_insert(em, 30, 5);
	extmap_insert(em, 50, 5);
	cr_assert_eq(extmap_insert(em, 12, 40), 0);
	cr_assert_eq(extmap_count(em), 1);
	cr_assert_eq(extmap_next(em, 0, &s, &e), 1);
	cr_assert(s == 10 && e == 55, "got [%ju,%ju)", (uintmax_t) s,
		  (uintmax_t) e);
	cr_assert_eq(extmap_bytes(em), 45);
	extmap_free(em);
}

Test(extmap, next_clips_to_offset)
{
	struct extmap *em = extmap_new();
	uint64_t s, e;

	extmap_insert(em, 10, 20);
	cr_assert_eq(extmap_next(em, 15, &s, &e), 1);
	cr_assert(s == 15 && e == 30);
	cr_assert_eq(extmap_next(em, 30, &s, &e), 0, "end is exclusive");
	extmap_free(em);
}

Test(extmap, remove_middle_splits)
{
	struct extmap *em = extmap_new();

	extmap_insert(em, 0, 100);
	cr_assert_eq(extmap_remove(em, 40, 20), 0);
	cr_assert_eq(extmap_count(em), 2);
	cr_assert_eq(extmap_bytes(em), 80);
	cr_assert_eq(extmap_contains(em, 0, 40), 1);
	cr_assert_eq(extmap_contains(em, 40, 1), 0);
	cr_assert_eq(extmap_contains(em, 60, 40), 1);
	extmap_free(em);
}

Test(extmap, remove_across_ranges_trims_ends)
{
	struct extmap *em = extmap_new();

	extmap_insert(em, 0, 10);
	extmap_insert(em, 20, 10);
	extmap_insert(em, 40, 10);
	cr_assert_eq(extmap_remove(em, 5, 40), 0);
	cr_assert_eq(extmap_count(em), 2);
	cr_assert_eq(extmap_bytes(em), 10);
	cr_assert_eq(extmap_contains(em, 0, 5), 1);
	cr_assert_eq(extmap_contains(em, 45, 5), 1);
	extmap_free(em);
}

Test(extmap, remove_of_absent_range_is_noop)
{
	struct extmap *em = extmap_new();

	extmap_insert(em, 10, 10);
	cr_assert_eq(extmap_remove(em, 0, 10), 0);
	cr_assert_eq(extmap_remove(em, 20, 10), 0);
	cr_assert_eq(extmap_bytes(em), 10);
	extmap_free(em);
}

Test(extmap, bytes_in_counts_partial_overlaps)
{
	struct extmap *em = extmap_new();

	extmap_insert(em, 10, 10);
	extmap_insert(em, 30, 10);
	cr_assert_eq(extmap_bytes_in(em, 15, 20), 10);
	cr_assert_eq(extmap_bytes_in(em, 0, 100), 20);
	cr_assert_eq(extmap_bytes_in(em, 20, 10), 0);
	extmap_free(em);
}

Test(extmap, overflowing_range_is_refused)
{
	struct extmap *em = extmap_new();

	cr_assert_eq(extmap_insert(em, UINT64_MAX - 1, 10), -1);
	cr_assert_eq(errno, EINVAL);
	extmap_free(em);
}

Test(extmap, many_ranges_split_leaves_and_stay_sorted)
{
	struct extmap *em = extmap_new();
	uint64_t i, s, e, pos = 0;

	/* Every other 4 KiB block, inserted backwards: many leaf splits. */
	for (i = 10000; i-- > 0;)
		cr_assert_eq(extmap_insert(em, i * 8192, 4096), 0);
	cr_assert_eq(extmap_count(em), 10000);
	for (i = 0; i < 10000; i++) {
		cr_assert_eq(extmap_next(em, pos, &s, &e), 1);
		cr_assert_eq(s, i * 8192);
		cr_assert_eq(e, i * 8192 + 4096);
		pos = e;
	}
	/* Filling the gaps merges everything into one range. */
	for (i = 0; i < 9999; i++)
		cr_assert_eq(extmap_insert(em, i * 8192 + 4096, 4096), 0);
	cr_assert_eq(extmap_count(em), 1);
	cr_assert_eq(extmap_bytes(em), 9999 * 8192 + 4096);
	extmap_free(em);
}

Test(extmap, metadata_is_at_most_64_bytes_per_extent)
{
	struct extmap *em = extmap_new();
	uint64_t state = 42, i;
	size_t n;

	for (i = 0; i < 100000; i++) {
		uint64_t blk = test_rand(&state) % (1u << 22);
		extmap_insert(em, blk * 8192, 4096);
	}
	n = extmap_count(em);
	cr_assert_gt(n, 90000);
	cr_assert_leq(extmap_mem_bytes(em) / n, 64,
		      "%zu bytes per extent", extmap_mem_bytes(em) / n);
	extmap_free(em);
}

/* The map against a byte array, under random inserts and removes. */
Test(extmap, random_operations_match_a_bitmap)
{
	enum { SIZE = 1 << 14 };
	unsigned seed;

	for (seed = 1; seed <= 20; seed++) {
		struct extmap *em = extmap_new();
		unsigned char *bm = calloc(SIZE, 1);
		uint64_t state = seed, pos, s, e, bytes;
		int op;

		for (op = 0; op < 2000; op++) {
			uint64_t off = test_rand(&state) % SIZE;
			uint64_t len = test_rand(&state) % 64 + 1;
			bool ins = test_rand(&state) % 3 != 0;

			if (off + len > SIZE)
				len = SIZE - off;
			cr_assert_eq(ins ? extmap_insert(em, off, len)
					 : extmap_remove(em, off, len), 0);
			memset(bm + off, ins, len);
		}
		/* Walk the map: ranges maximal, disjoint, equal to bm. */
		pos = 0;
		bytes = 0;
		while (extmap_next(em, pos, &s, &e)) {
			uint64_t i;

			cr_assert_lt(s, e, "seed %u", seed);
			cr_assert(s == 0 || bm[s - 1] == 0 || s > pos,
				  "seed %u: range at %ju not merged", seed,
				  (uintmax_t) s);
			for (i = pos; i < s; i++)
				cr_assert_eq(bm[i], 0, "seed %u: %ju", seed,
					     (uintmax_t) i);
			for (i = s; i < e; i++)
				cr_assert_eq(bm[i], 1, "seed %u: %ju", seed,
					     (uintmax_t) i);
			cr_assert(e == SIZE || bm[e] == 0,
				  "seed %u: range ends early at %ju", seed,
				  (uintmax_t) e);
			bytes += e - s;
			pos = e;
		}
		for (; pos < SIZE; pos++)
			cr_assert_eq(bm[pos], 0, "seed %u: %ju", seed,
				     (uintmax_t) pos);
		cr_assert_eq(bytes, extmap_bytes(em), "seed %u", seed);
		free(bm);
		extmap_free(em);
	}
}
