/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "log.h"
#include "support.h"

#define G 65536

static char *
bitmap_path(char **dir)
{
	char *p;

	*dir = test_temp_dir();
	cr_assert_neq(asprintf(&p, "%s/vda.dirty", *dir), -1);
	return p;
}

Test(bitmap, new_file_is_clean_and_marks_whole_granules)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 10 * G, G);
	uint64_t o, l;

	cr_assert_not_null(b);
	cr_assert_eq(bitmap_dirty_bytes(b), 0);
	cr_assert_not(bitmap_next(b, 0, UINT64_MAX, &o, &l));
	/* 1 byte in granule 2, and a write across granules 4-5. */
	cr_assert_eq(bitmap_mark(b, 2 * G + 7, 1), 0);
	cr_assert_eq(bitmap_mark(b, 5 * G - 1, 2), 0);
	cr_assert_eq(bitmap_dirty_bytes(b), 3 * G);
	cr_assert(bitmap_next(b, 0, UINT64_MAX, &o, &l));
	cr_assert_eq(o, 2 * G);
	cr_assert_eq(l, G);
	cr_assert(bitmap_next(b, 3 * G, UINT64_MAX, &o, &l));
	cr_assert_eq(o, 4 * G);
	cr_assert_eq(l, 2 * G);
	/* A run is capped at max bytes (but is at least one granule). */
	cr_assert(bitmap_next(b, 3 * G, 1, &o, &l));
	cr_assert_eq(l, G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, clear_takes_whole_granules_only)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 10 * G, G);

	cr_assert_eq(bitmap_mark(b, 0, 4 * G), 0);
	bitmap_clear(b, G / 2, G);		/* covers no granule whole */
	cr_assert_eq(bitmap_dirty_bytes(b), 4 * G);
	bitmap_clear(b, G, 2 * G);
	cr_assert_eq(bitmap_dirty_bytes(b), 2 * G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, marks_survive_without_a_save_and_clears_with_one)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 100 * G, G);

	cr_assert_eq(bitmap_mark(b, 70 * G, G), 0);
	cr_assert_eq(bitmap_mark(b, 3 * G, 1), 0);
	bitmap_free(b);			/* a crash: nothing saved */
	b = bitmap_open(path, 100 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), 2 * G);
	bitmap_clear(b, 70 * G, G);
	cr_assert_eq(bitmap_save(b), 0);
	bitmap_free(b);
	b = bitmap_open(path, 100 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, a_short_last_granule_counts_its_bytes)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 2 * G + 512, G);
	uint64_t o, l;

	cr_assert_eq(bitmap_mark_all(b), 0);
	cr_assert_eq(bitmap_dirty_bytes(b), 2 * G + 512);
	cr_assert(bitmap_next(b, 2 * G, UINT64_MAX, &o, &l));
	cr_assert_eq(l, 512);
	bitmap_clear(b, 2 * G, 512);
	cr_assert_eq(bitmap_dirty_bytes(b), 2 * G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, header_flags_and_peer_persist)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 8 * G, G);
	char peer[64];

	cr_assert_eq(bitmap_update(b, BITMAP_SYNCED, 0, "nbd://h/vda"), 0);
	bitmap_free(b);
	b = bitmap_open(path, 8 * G, G);
	cr_assert_eq(bitmap_flags(b), BITMAP_SYNCED);
	bitmap_peer(b, peer, sizeof peer);
	cr_assert_str_eq(peer, "nbd://h/vda");
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, found_live_means_everything_is_dirty)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 8 * G, G);

	cr_assert_eq(bitmap_update(b, BITMAP_LIVE | BITMAP_SYNCED, 0, "x"), 0);
	bitmap_free(b);			/* died while replicating */
	log_set_quiet(true);
	b = bitmap_open(path, 8 * G, G);
	log_set_quiet(false);
	cr_assert_eq(bitmap_dirty_bytes(b), 8 * G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

Test(bitmap, another_size_or_granularity_is_refused)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 8 * G, G);

	bitmap_free(b);
	log_set_quiet(true);
	cr_assert_null(bitmap_open(path, 16 * G, G));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(bitmap_open(path, 8 * G, 2 * G));
	log_set_quiet(false);
	free(path);
	test_cleanup_dir(dir);
}

struct marker {
	struct bitmap *b;
	unsigned first;
};

static void *
mark_many(void *arg)
{
	struct marker *m = arg;
	unsigned i;

	for (i = 0; i < 64; i++)
		cr_assert_eq(bitmap_mark(m->b, (uint64_t)(m->first + 4 * i) * G,
					 1), 0);
	return NULL;
}

Test(bitmap, concurrent_marks_share_syncs_and_all_reach_the_file)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 256 * G, G);
	struct marker m[4];
	pthread_t t[4];
	unsigned i;

	for (i = 0; i < 4; i++) {
		m[i] = (struct marker){ b, i };
		cr_assert_eq(pthread_create(&t[i], NULL, mark_many, &m[i]), 0);
	}
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(bitmap_dirty_bytes(b), 256 * G);
	bitmap_free(b);			/* no save: the marks alone */
	b = bitmap_open(path, 256 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), 256 * G);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

/* Lazy marks (the done side's tracking, fs/protect.c): in memory only;
 * saved by the rewrite that clears BITMAP_UNCLEAN; a file found unclean
 * (the process died first) is all dirty, and no longer unclean.
 */
Test(bitmap, lazy_marks_are_saved_clean_or_lost_to_all_dirty)
{
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 10 * G, G);

	cr_assert_eq(bitmap_update(b, BITMAP_SYNCED | BITMAP_UNCLEAN, 0, NULL),
		     0);
	bitmap_mark_lazy(b, 3 * G, 1);
	cr_assert_eq(bitmap_dirty_bytes(b), G);
	cr_assert_eq(bitmap_update(b, 0, BITMAP_UNCLEAN, NULL), 0);
	bitmap_free(b);
	b = bitmap_open(path, 10 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), G, "saved marks are kept");
	cr_assert_eq(bitmap_flags(b), BITMAP_SYNCED);

	/* Unclean again, a mark, and no save: as after kill -9. */
	cr_assert_eq(bitmap_update(b, BITMAP_UNCLEAN, 0, NULL), 0);
	bitmap_mark_lazy(b, 7 * G, G);
	bitmap_free(b);
	b = bitmap_open(path, 10 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), 10 * G, "an unclean file is all dirty");
	cr_assert_not(bitmap_flags(b) & BITMAP_UNCLEAN);
	bitmap_free(b);
	b = bitmap_open(path, 10 * G, G);
	cr_assert_eq(bitmap_dirty_bytes(b), 10 * G, "and stays so");
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}

/* The file's bytes at off, compared with want. */
static void
expect_file_bytes(const char *path, long off, const unsigned char *want,
		  size_t n, const char *what)
{
	unsigned char got[64];
	FILE *fp = fopen(path, "rb");
	size_t i;

	cr_assert_not_null(fp);
	cr_assert_leq(n, sizeof got);
	cr_assert_eq(fseek(fp, off, SEEK_SET), 0);
	cr_assert_eq(fread(got, 1, n, fp), n);
	fclose(fp);
	for (i = 0; i < n; i++)
		cr_assert_eq(got[i], want[i], "%s: byte %ld is 0x%02x, not "
			     "0x%02x", what, off + (long) i, got[i], want[i]);
}

/* The file is little-endian whatever the host (doc/primary.md): the
 * bytes of a known bitmap, written both ways (a mark's in-place write of
 * its words, and a whole rewrite).
 */
Test(bitmap, the_file_is_little_endian)
{
	static const unsigned char head[] = {
		'C', 'O', 'L', 'O', 'F', 'S', 'D', 'B',
		1, 0, 0, 0,				/* version */
		1, 0, 0, 0,				/* flags: SYNCED */
		0, 0, 0xc8, 0, 0, 0, 0, 0,		/* size 200 * 64 KiB */
		0, 0, 1, 0, 0, 0, 0, 0,			/* granularity */
		200, 0, 0, 0, 0, 0, 0, 0,		/* bits */
	};
	static const unsigned char gens[] = {
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,	/* peer_gen */
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,	/* gen */
		0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21,	/* since */
		0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31,	/* hist[0] */
	};
	static const unsigned char words[] = {
		0x01, 0, 0, 0, 0, 0, 0, 0,		/* granule 0 */
		0x02, 0, 0, 0, 0, 0, 0, 0x80,		/* 65 and 127 */
		0, 0x01, 0, 0, 0, 0, 0, 0,		/* 136 */
	};
	struct gi_set own = { 0x1112131415161718, 0x2122232425262728,
			      { 0x3132333435363738 } };
	char *dir, *path = bitmap_path(&dir);
	struct bitmap *b = bitmap_open(path, 200 * (uint64_t) G, G);
	uint64_t peer_gen;
	struct gi_set back;

	cr_assert_not_null(b);
	cr_assert_eq(bitmap_update(b, BITMAP_SYNCED, 0, "nbd://h/vda"), 0);
	cr_assert_eq(bitmap_set_gens(b, 0x0102030405060708, &own), 0);
	cr_assert_eq(bitmap_mark(b, 0, 1), 0);
	cr_assert_eq(bitmap_mark(b, 65 * (uint64_t) G, 1), 0);
	cr_assert_eq(bitmap_mark(b, 127 * (uint64_t) G, 1), 0);
	cr_assert_eq(bitmap_mark(b, 136 * (uint64_t) G, 1), 0);
	expect_file_bytes(path, 0, head, sizeof head, "header");
	expect_file_bytes(path, 40, (const unsigned char *) "nbd://h/vda", 12,
			  "peer");
	expect_file_bytes(path, 1064, gens, sizeof gens, "generations");
	expect_file_bytes(path, 4096, words, sizeof words, "marked words");
	cr_assert_eq(bitmap_save(b), 0);
	expect_file_bytes(path, 0, head, sizeof head, "rewritten header");
	expect_file_bytes(path, 1064, gens, sizeof gens,
			  "rewritten generations");
	expect_file_bytes(path, 4096, words, sizeof words, "rewritten words");
	bitmap_free(b);
	/* And it reads back as written. */
	b = bitmap_open(path, 200 * (uint64_t) G, G);
	cr_assert_not_null(b);
	cr_assert_eq(bitmap_dirty_bytes(b), 4 * (uint64_t) G);
	bitmap_gens(b, &peer_gen, &back);
	cr_assert_eq(peer_gen, 0x0102030405060708);
	cr_assert_eq(back.current, own.current);
	cr_assert_eq(back.since, own.since);
	cr_assert_eq(back.history[0], own.history[0]);
	bitmap_free(b);
	free(path);
	test_cleanup_dir(dir);
}
