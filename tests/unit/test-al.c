/* SPDX-License-Identifier: MIT */
/* The activity log (core/al.c): transactions only when the hot set
 * changes, recovery of the newest one, a torn or damaged slot, eviction.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "al.h"
#include "log.h"
#include "support.h"

#define MiB (UINT64_C(1) << 20)
#define EXT (4 * MiB)
#define SIZE (64 * MiB)

static char *dir, path[512];

static void
setup(void)
{
	log_set_quiet(true);
	dir = test_temp_dir();
	snprintf(path, sizeof path, "%s/vda.al", dir);
}

static void
teardown(void)
{
	test_cleanup_dir(dir);
}

TestSuite(al, .init = setup, .fini = teardown);

static uint64_t
transactions(struct al *a)
{
	struct al_stats st;

	al_get_stats(a, &st);
	return st.transactions;
}

Test(al, a_new_log_holds_no_transaction)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct test_ranges g = { .n = 0 };

	cr_assert_not_null(a);
	cr_assert_eq(al_recover(a, test_record_range, &g), -1);
	cr_assert_eq(errno, ENOENT);
	al_free(a);
}

Test(al, only_a_change_of_the_hot_set_writes_a_transaction)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct al_stats st;

	cr_assert_not_null(a);
	cr_assert_eq(al_begin(a, 100, 4096), 0);
	cr_assert_eq(transactions(a), 1);
	al_end(a, 100, 4096);
	cr_assert_eq(al_begin(a, EXT - 4096, 4096), 0);
	al_end(a, EXT - 4096, 4096);
	cr_assert_eq(transactions(a), 1, "a hot extent costs no write");
	cr_assert_eq(al_begin(a, EXT - 4096, 8192), 0, "spans two extents");
	cr_assert_eq(transactions(a), 2);
	al_get_stats(a, &st);
	cr_assert_lt(st.write_us, 60 * 1000000, "write_us %lu",
		     (unsigned long)st.write_us);
	al_end(a, EXT - 4096, 8192);
	al_free(a);
}

Test(al, a_crash_leaves_the_active_extents_for_recovery)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct test_ranges g = { .n = 0 };

	cr_assert_eq(al_begin(a, 0, 4096), 0);
	cr_assert_eq(al_begin(a, 10 * EXT + 5, 100), 0);
	/* The crash: no al_end, no reset. */
	al_free(a);
	a = al_open(path, SIZE, EXT, 4);
	cr_assert_not_null(a);
	cr_assert_eq(al_recover(a, test_record_range, &g), 0);
	cr_assert_eq(g.n, 2);
	cr_assert(g.off[0] + g.off[1] == 10 * EXT, "extents 0 and 10");
	cr_assert_eq(g.len[0], EXT);
	/* After a reset the ring names nothing. */
	cr_assert_eq(al_reset(a), 0);
	al_free(a);
	a = al_open(path, SIZE, EXT, 4);
	g.n = 0;
	cr_assert_eq(al_recover(a, test_record_range, &g), 0);
	cr_assert_eq(g.n, 0);
	al_free(a);
}

Test(al, a_torn_newest_slot_falls_back_to_the_one_before)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct test_ranges g = { .n = 0 };
	char junk[100];
	int fd;

	cr_assert_eq(al_begin(a, 0, 1), 0);	  /* transaction 1 */
	cr_assert_eq(al_begin(a, 3 * EXT, 1), 0); /* transaction 2 */
	al_free(a);
	/* Transaction 2 sits in slot 2: tear it. */
	memset(junk, 0x5a, sizeof junk);
	fd = open(path, O_WRONLY);
	cr_assert_eq(pwrite(fd, junk, sizeof junk, 2 * 4096 + 60), 100);
	close(fd);
	a = al_open(path, SIZE, EXT, 4);
	cr_assert_eq(al_recover(a, test_record_range, &g), 0);
	cr_assert_eq(g.n, 1, "transaction 1 holds extent 0 only");
	cr_assert_eq(g.off[0], 0);
	al_free(a);
}

Test(al, a_damaged_ring_is_unusable)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct test_ranges g = { .n = 0 };

	cr_assert_eq(al_begin(a, 0, 1), 0);
	al_free(a);
	cr_assert_eq(truncate(path, 1000), 0);
	a = al_open(path, SIZE, EXT, 4);
	cr_assert_not_null(a);
	cr_assert_eq(al_recover(a, test_record_range, &g), -1);
	al_free(a);
}

Test(al, the_least_recently_used_idle_extent_leaves_first)
{
	struct al *a = al_open(path, SIZE, EXT, 2);
	struct test_ranges g = { .n = 0 };

	cr_assert_eq(al_begin(a, 0, 1), 0); /* extent 0, busy */
	cr_assert_eq(al_begin(a, EXT, 1), 0);
	al_end(a, EXT, 1);			  /* extent 1, idle */
	cr_assert_eq(al_begin(a, 5 * EXT, 1), 0); /* evicts 1 */
	al_free(a);
	a = al_open(path, SIZE, EXT, 2);
	cr_assert_eq(al_recover(a, test_record_range, &g), 0);
	cr_assert_eq(g.n, 2);
	cr_assert(g.off[0] + g.off[1] == 5 * EXT, "extents 0 and 5 remain");
	al_free(a);
}

Test(al, a_range_wider_than_the_log_is_refused)
{
	struct al *a = al_open(path, SIZE, EXT, 2);

	cr_assert_eq(al_begin(a, 0, 3 * EXT), -1);
	cr_assert_eq(errno, E2BIG);
	al_free(a);
}

Test(al, a_log_for_another_disk_size_is_unusable)
{
	struct al *a = al_open(path, SIZE, EXT, 4);
	struct test_ranges g = { .n = 0 };

	cr_assert_eq(al_begin(a, 0, 1), 0);
	al_free(a);
	a = al_open(path, 2 * SIZE, EXT, 4);
	cr_assert_eq(al_recover(a, test_record_range, &g), -1);
	al_free(a);
}

Test(al, a_sequential_walk_shares_transactions)
{
	struct al *a = al_open(path, SIZE, EXT, 64);
	uint64_t ext;

	for (ext = 0; ext < 12; ext++) {
		cr_assert_eq(al_begin(a, ext * EXT, MiB), 0);
		al_end(a, ext * EXT, MiB);
	}
	/* 0; 1 with 2-5 ahead; 6 with 7-10; 11 with 12-15. */
	cr_assert_eq(transactions(a), 4, "%lu transactions for 12 extents",
		     (unsigned long)transactions(a));
	al_free(a);
}
