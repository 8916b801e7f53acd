/* SPDX-License-Identifier: MIT */
/* Generation identifiers (core/gi.c): one test per rule of gi.h's table,
 * the text form both ways, and the state file's and the bitmap's keys.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "gi.h"
#include "log.h"
#include "statefile.h"
#include "support.h"

static struct gi_set
set(uint64_t cur, uint64_t h0, uint64_t h1)
{
	struct gi_set g = { .current = cur, .since = 1700000000 };

	g.history[0] = h0;
	g.history[1] = h1;
	return g;
}

Test(gi, rule1_a_peer_without_generations_is_unknown)
{
	struct gi_set none = { 0 };

	cr_assert_eq(gi_compare(0xa, NULL), GI_UNKNOWN);
	cr_assert_eq(gi_compare(0xa, &none), GI_UNKNOWN);
}

Test(gi, rule2_nothing_recorded_is_a_first_sync)
{
	struct gi_set p = set(0xb, 0xa, 0);

	cr_assert_eq(gi_compare(0, &p), GI_FIRST);
}

Test(gi, rule3_the_recorded_generation_is_the_same)
{
	struct gi_set p = set(0xa, 0x9, 0);

	cr_assert_eq(gi_compare(0xa, &p), GI_SAME);
}

Test(gi, rule4_a_peer_that_moved_on_from_the_recorded_one_is_split_brain)
{
	struct gi_set once = set(0xb, 0xa, 0), twice = set(0xc, 0xb, 0xa);

	cr_assert_eq(gi_compare(0xa, &once), GI_SPLIT_BRAIN);
	cr_assert_eq(gi_compare(0xa, &twice), GI_SPLIT_BRAIN);
}

Test(gi, rule5_another_without_history_is_new)
{
	struct gi_set p = set(0xd, 0, 0);

	cr_assert_eq(gi_compare(0xa, &p), GI_NEW);
}

Test(gi, rule6_another_with_a_history_of_its_own_is_unrelated)
{
	struct gi_set p = set(0xd, 0xc, 0);

	cr_assert_eq(gi_compare(0xa, &p), GI_UNRELATED);
}

Test(gi, new_moves_current_to_history_and_never_draws_zero)
{
	struct gi_set g = { 0 };
	uint64_t first;

	cr_assert_eq(gi_new(&g), 0);
	cr_assert_neq(g.current, 0);
	cr_assert_eq(g.history[0], 0, "a first generation has no history");
	first = g.current;
	cr_assert_eq(gi_new(&g), 0);
	cr_assert_neq(g.current, first);
	cr_assert_eq(g.history[0], first);
	cr_assert_gt(g.since, 0);
	gi_clear_history(&g);
	cr_assert_eq(g.history[0], 0);
}

Test(gi, text_round_trips_inside_a_description)
{
	struct gi_set g = set(0x0123456789abcdef, 0xfedcba9876543210, 0x1), got;
	char text[GI_TEXT_MAX], desc[300];

	gi_format(&g, text, sizeof text);
	cr_assert_lt(strlen(text), GI_TEXT_MAX);
	snprintf(desc, sizeof desc, "colofs secondary disk vda %s", text);
	cr_assert_eq(gi_parse(desc, &got), 0);
	cr_assert_eq(memcmp(&g, &got, sizeof g), 0);
}

Test(gi, a_description_without_generations_is_unknown)
{
	struct gi_set g;

	cr_assert_eq(gi_parse(NULL, &g), 1);
	cr_assert_eq(gi_parse("", &g), 1);
	cr_assert_eq(gi_parse("QEMU export", &g), 1);
}

Test(gi, malformed_generations_are_rejected)
{
	static const char *const bad[] = {
		"colofs-gi v1 cur=0000000000000000 since=1 hist="
		"0000000000000000,0000000000000000,0000000000000000,"
		"0000000000000000", /* a current of 0 */
		"colofs-gi v1 cur=00000000000000zz since=1 hist="
		"0000000000000000,0000000000000000,0000000000000000,"
		"0000000000000000",
		"colofs-gi v1 cur=0000000000000001 since=x hist="
		"0000000000000000,0000000000000000,0000000000000000,"
		"0000000000000000",
		"colofs-gi v1 cur=0000000000000001 since=1 hist="
		"0000000000000000,0000000000000000", /* short history */
		"colofs-gi v1 cur=0000000000000001 since=1 hist="
		"0000000000000000,0000000000000000,0000000000000000,"
		"0000000000000000x",
		"colofs-gi v1 cur=1",
	};
	struct gi_set g;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(gi_parse(bad[i], &g), -1, "accepted: %s", bad[i]);
}

Test(gi, the_state_file_keeps_the_generations)
{
	char *dir = test_temp_dir(), path[512], err[256];
	struct statefile sf = { .state = SECONDARY_DONE }, got;

	log_set_quiet(true);
	memset(sf.generation, 'a', STATEFILE_GEN_LEN);
	sf.gi = set(0x1234, 0x99, 0x98);
	sf.gi.history[3] = 0x42;
	cr_assert_eq(statefile_write(dir, "s.state", &sf), 0);
	snprintf(path, sizeof path, "%s/s.state", dir);
	cr_assert_eq(statefile_read(path, &got, err, sizeof err), 0, "%s", err);
	cr_assert_eq(memcmp(&got.gi, &sf.gi, sizeof sf.gi), 0);
	test_cleanup_dir(dir);
}

Test(gi, a_state_file_without_generations_reads_as_none)
{
	char *dir = test_temp_dir(), path[512], err[256];
	struct statefile got;
	FILE *fp;

	log_set_quiet(true);
	snprintf(path, sizeof path, "%s/s.state", dir);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs("colofs-state 1\nstate=none\ngeneration="
	      "0123456789abcdef0123456789abcdef\njournaled=0\n",
	      fp);
	fclose(fp);
	cr_assert_eq(statefile_read(path, &got, err, sizeof err), 0, "%s", err);
	cr_assert_eq(got.gi.current, 0);
	fp = fopen(path, "a");
	fputs("gi_history=123\n", fp);
	fclose(fp);
	cr_assert_eq(statefile_read(path, &got, err, sizeof err), -1);
	cr_assert(strstr(err, "gi_history is malformed"), "%s", err);
	test_cleanup_dir(dir);
}

Test(gi, the_bitmap_header_keeps_the_generations)
{
	char *dir = test_temp_dir(), path[512];
	struct gi_set own = set(0x77, 0x66, 0), got;
	struct bitmap *b;
	uint64_t peer;

	log_set_quiet(true);
	snprintf(path, sizeof path, "%s/vda.dirty", dir);
	b = bitmap_open(path, 1 << 20, 65536);
	cr_assert_not_null(b);
	bitmap_gens(b, &peer, &got);
	cr_assert_eq(peer, 0, "a new bitmap has recorded no peer");
	cr_assert_eq(bitmap_set_gens(b, 0xabc, &own), 0);
	bitmap_free(b);
	b = bitmap_open(path, 1 << 20, 65536);
	cr_assert_not_null(b);
	bitmap_gens(b, &peer, &got);
	cr_assert_eq(peer, 0xabc);
	cr_assert_eq(memcmp(&got, &own, sizeof own), 0);
	bitmap_free(b);
	test_cleanup_dir(dir);
}

/* A returning primary's leftover (gi.h): the runs it formats are the
 * ones parsed, in bytes and clipped to the disk; "all" is the whole disk;
 * anything malformed or outside the disk is refused (a full sync).
 */
Test(gi, leftover_round_trips_after_the_generations)
{
	struct gi_left_run runs[] = { { 0x3c, 1 }, { 0x1ff, 1 } };
	struct gi_set g = set(0xab, 0, 0);
	char desc[GI_TEXT_MAX + GI_LEFT_MAX + 2], left[GI_LEFT_MAX];
	struct test_ranges m = { .n = 0 };
	struct gi_set back;

	cr_assert_eq(gi_format_left(65536, runs, 2, left, sizeof left), 0);
	gi_format(&g, desc, GI_TEXT_MAX);
	strcat(desc, " ");
	strcat(desc, left);
	cr_assert_eq(gi_parse(desc, &back), 0);
	cr_assert_eq(back.current, 0xab);
	/* The disk ends 1000 bytes into granule 0x1ff. */
	cr_assert_eq(gi_parse_left(desc, 0x1ffULL * 65536 + 1000, test_record_range,
				   &m), 0);
	cr_assert_eq(m.n, 2);
	cr_assert_eq(m.off[0], 0x3cULL * 65536);
	cr_assert_eq(m.len[0], 65536);
	cr_assert_eq(m.off[1], 0x1ffULL * 65536);
	cr_assert_eq(m.len[1], 1000);
}

Test(gi, leftover_none_all_and_malformed)
{
	struct test_ranges m = { .n = 0 };
	const char *bad[] = {
		"colofs-left v1 gran=65536 runs=10",
		"colofs-left v1 gran=65536 runs=10+0",
		"colofs-left v1 gran=65536 runs=1f+2",	/* past the disk */
		"colofs-left v1 gran=65535 runs=1+1",	/* not a power of 2 */
		"colofs-left v1 gran=65536 runs=1+1,,2+1",
		"colofs-left v1 gran=65536 runs=allx",
		"colofs-left v1 gran=65536 runs=1+1x",
	};
	size_t i;

	cr_assert_eq(gi_parse_left("colofs-gi v1 cur=...", 32 * 65536,
				   test_record_range, &m), 1);
	cr_assert_eq(gi_parse_left("x colofs-left v1 gran=65536 runs= y",
				   32 * 65536, test_record_range, &m), 0);
	cr_assert_eq(m.n, 0);
	cr_assert_eq(gi_parse_left("colofs-left v1 gran=65536 runs=all",
				   32 * 65536, test_record_range, &m), 0);
	cr_assert_eq(m.n, 1);
	cr_assert_eq(m.off[0], 0);
	cr_assert_eq(m.len[0], 32 * 65536);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m.n = 0;
		cr_assert_eq(gi_parse_left(bad[i], 32 * 65536, test_record_range, &m),
			     -1, "%s", bad[i]);
	}
}

/* A description as a colofs secondary sends it: gi, then its incarnation. */
static void
describe(char *buf, size_t len, uint64_t cur, const char *state,
	 const char *epoch)
{
	struct gi_set g = set(cur, 0, 0);
	char text[GI_TEXT_MAX], run[128];

	gi_format(&g, text, sizeof text);
	gi_format_run(state, epoch, run, sizeof run);
	snprintf(buf, len, "colofs secondary disk vda %s %s", text, run);
}

#define EPOCH_A "0123456789abcdef0123456789abcdef"
#define EPOCH_B "fedcba9876543210fedcba9876543210"

Test(gi, the_same_incarnation_is_the_same_generation_and_epoch)
{
	char then[512], now[512], why[256];

	describe(then, sizeof then, 0xa, "none", EPOCH_A);
	describe(now, sizeof now, 0xa, "running", EPOCH_A);
	cr_assert(gi_same_incarnation(then, now, why, sizeof why));
	cr_assert(gi_same_incarnation(now, now, why, sizeof why));
}

Test(gi, another_epoch_generation_or_state_is_another_incarnation)
{
	char then[512], now[512], why[256];

	describe(then, sizeof then, 0xa, "running", EPOCH_A);
	describe(now, sizeof now, 0xa, "running", EPOCH_B);
	cr_assert_not(gi_same_incarnation(then, now, why, sizeof why));
	cr_assert(strstr(why, "another epoch") != NULL, "%s", why);
	describe(now, sizeof now, 0xb, "running", EPOCH_A);
	cr_assert_not(gi_same_incarnation(then, now, why, sizeof why));
	describe(now, sizeof now, 0xa, "done", EPOCH_A);
	cr_assert_not(gi_same_incarnation(then, now, why, sizeof why));
	cr_assert(strstr(why, "state done") != NULL, "%s", why);
}

Test(gi, a_peer_without_an_incarnation_is_never_the_same)
{
	struct gi_set g = set(0xa, 0, 0);
	char plain[GI_TEXT_MAX], run[512], why[256];

	gi_format(&g, plain, sizeof plain);
	describe(run, sizeof run, 0xa, "running", EPOCH_A);
	cr_assert_not(gi_same_incarnation(plain, plain, why, sizeof why));
	cr_assert_not(gi_same_incarnation(run, plain, why, sizeof why));
	cr_assert_not(gi_same_incarnation(NULL, run, why, sizeof why));
	cr_assert_not(gi_same_incarnation(run, NULL, why, sizeof why));
	cr_assert_not(gi_same_incarnation(run, "", why, sizeof why));
	/* Malformed: a short epoch, an upper-case one, no state. */
	snprintf(run, sizeof run, "%s colofs-run v1 state=running epoch=0123",
		 plain);
	cr_assert_not(gi_same_incarnation(run, run, why, sizeof why));
	snprintf(run, sizeof run, "%s colofs-run v1 state=running epoch="
		 "0123456789ABCDEF0123456789abcdef", plain);
	cr_assert_not(gi_same_incarnation(run, run, why, sizeof why));
	snprintf(run, sizeof run, "%s colofs-run v1 state= epoch=" EPOCH_A,
		 plain);
	cr_assert_not(gi_same_incarnation(run, run, why, sizeof why));
}
