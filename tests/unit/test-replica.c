/* SPDX-License-Identifier: MIT */
/* The secondary's contract, one behaviour per test. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "secondary.h"
#include "support.h"

#define MiB (1024 * 1024)

static struct secondary *r;
static struct secondary_disk *d;

static void
setup(void)
{
	log_set_quiet(true);
	r = test_secondary(4 * MiB, 0x11, NULL);
	d = secondary_disk_at(r, 0);
}

static void
teardown(void)
{
	secondary_free(r);
}

static void
expect_error_contains(const char *what)
{
	char msg[512];

	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, what) != NULL, "error \"%s\" lacks \"%s\"", msg,
		  what);
}

static void
failover_and_wait(void)
{
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
}

TestSuite(secondary, .init = setup, .fini = teardown);

Test(secondary, state_names)
{
	cr_assert_str_eq(secondary_state_name(SECONDARY_NONE), "none");
	cr_assert_str_eq(secondary_state_name(SECONDARY_RUNNING), "running");
	cr_assert_str_eq(secondary_state_name(SECONDARY_FAILOVER), "failover");
	cr_assert_str_eq(secondary_state_name(SECONDARY_FAILOVER_FAILED),
			 "failover_failed");
	cr_assert_str_eq(secondary_state_name(SECONDARY_DONE), "done");
}

Test(secondary, unknown_state_name_aborts, .signal = SIGABRT)
{
	secondary_state_name((enum secondary_state) 99);
}

Test(secondary, none_view_reads_the_disk)
{
	cr_assert_eq(secondary_state(r), SECONDARY_NONE);
	expect_view(d, 0, 4 * MiB, 0x11);
}

Test(secondary, none_view_write_fails_with_eio)
{
	char b = 0x33;

	cr_assert_eq(secondary_view_write(d, &b, 1, 0), -1);
	cr_assert_eq(errno, EIO);
	expect_disk(d, 0, 1, 0x11);
}

Test(secondary, none_primary_write_goes_straight_to_disk)
{
	struct secondary_status st;

	primary_fill(d, 100, 1000, 0x22);
	expect_disk(d, 100, 1000, 0x22);
	expect_view(d, 100, 1000, 0x22);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.disks[0].hidden_bytes, 0, "nothing is saved in none");
	secondary_status_release(&st);
}

Test(secondary, start_moves_to_running)
{
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_state(r), SECONDARY_RUNNING);
}

Test(secondary, start_twice_fails_with_ebusy)
{
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_start(r), -1);
	cr_assert_eq(errno, EBUSY);
	expect_error_contains("replication is already running");
}

Test(secondary, start_after_failover_fails_with_ebusy_and_says_why)
{
	cr_assert_eq(secondary_start(r), 0);
	failover_and_wait();
	cr_assert_eq(secondary_start(r), -1);
	cr_assert_eq(errno, EBUSY);
	expect_error_contains("start: this disk is promoted");
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
}

Test(secondary, checkpoint_durations_fill_the_histogram)
{
	struct secondary_status st;
	uint64_t n = 0, sum_max = 0;
	size_t i;
	int k;

	cr_assert_eq(secondary_start(r), 0);
	for (k = 0; k < 3; k++)
		cr_assert_eq(secondary_checkpoint(r), 0);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	for (i = 0; i < SECONDARY_CHECKPOINT_BUCKETS; i++)
		n += st.checkpoint_hist[i];
	cr_assert_eq(n, 3, "three checkpoints, %" PRIu64 " counted", n);
	cr_assert_eq(n, st.checkpoints);
	/* The last one is in the sum, and the sum is no more than three
	 * times the largest bucket's bound that holds a count.
	 */
	cr_assert_geq(st.checkpoint_ns_sum, st.last_checkpoint_ns);
	for (i = 0; i < SECONDARY_CHECKPOINT_BUCKETS - 1; i++)
		if (st.checkpoint_hist[i])
			sum_max = secondary_checkpoint_bucket_ns[i];
	if (st.checkpoint_hist[SECONDARY_CHECKPOINT_BUCKETS - 1] == 0)
		cr_assert_leq(st.checkpoint_ns_sum, 3 * sum_max);
	secondary_status_release(&st);
}

Test(secondary, refusals_count_as_errors)
{
	struct secondary_status st;

	cr_assert_eq(secondary_checkpoint(r), -1);
	cr_assert_eq(secondary_stop(r), -1);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.errors, 2);
	secondary_status_release(&st);
}

Test(secondary, checkpoint_in_none_fails_with_einval)
{
	cr_assert_eq(secondary_checkpoint(r), -1);
	cr_assert_eq(errno, EINVAL);
	expect_error_contains("replication is not running");
}

Test(secondary, stop_and_failover_in_none_fail_with_einval)
{
	cr_assert_eq(secondary_stop(r), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(secondary_failover(r), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(secondary_state(r), SECONDARY_NONE);
}

Test(secondary, primary_write_keeps_view_until_checkpoint)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 1000, 5000, 0x22);
	expect_disk(d, 1000, 5000, 0x22);
	expect_view(d, 0, 4 * MiB, 0x11);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 1000, 5000, 0x22);
	expect_view(d, 0, 1000, 0x11);
}

Test(secondary, first_save_in_an_epoch_wins)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 4096, 0x22);
	primary_fill(d, 0, 4096, 0x33);
	expect_disk(d, 0, 4096, 0x33);
	expect_view(d, 0, 4096, 0x11);
}

Test(secondary, checkpoint_rearms_the_save)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 4096, 0x22);
	cr_assert_eq(secondary_checkpoint(r), 0);
	primary_fill(d, 0, 4096, 0x33);
	expect_view(d, 0, 4096, 0x22);
}

Test(secondary, view_write_goes_to_active_and_last_wins)
{
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 10, 100, 0x33);
	view_fill(d, 50, 10, 0x44);
	expect_view(d, 10, 40, 0x33);
	expect_view(d, 50, 10, 0x44);
	expect_view(d, 60, 50, 0x33);
	expect_disk(d, 0, 4 * MiB, 0x11);
}

Test(secondary, view_write_then_primary_write_keeps_view)
{
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 8192, 0x33);
	primary_fill(d, 4096, 8192, 0x22);
	expect_view(d, 0, 8192, 0x33);
	expect_view(d, 8192, 4096, 0x11);
	expect_disk(d, 4096, 8192, 0x22);
}

Test(secondary, primary_write_does_not_save_what_active_shadows)
{
	struct secondary_status st;

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4096, 0x33);
	primary_fill(d, 0, 8192, 0x22);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.disks[0].hidden_bytes, 4096);
	secondary_status_release(&st);
}

Test(secondary, checkpoint_drops_view_writes)
{
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4096, 0x33);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 0, 4096, 0x11);
}

Test(secondary, stop_drops_buffers_and_passes_through)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 4096, 0x22);
	view_fill(d, 8192, 4096, 0x33);
	cr_assert_eq(secondary_stop(r), 0);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_view(d, 0, 4096, 0x22);
	expect_view(d, 8192, 4096, 0x11);
	view_fill(d, 0, 10, 0x44);
	expect_disk(d, 0, 10, 0x44);
}

Test(secondary, failover_commits_the_view_into_the_disk)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 2 * MiB, 2 * MiB, 0x22);
	view_fill(d, 0, 2 * MiB, 0x33);
	failover_and_wait();
	expect_disk(d, 0, 2 * MiB, 0x33);
	expect_disk(d, 2 * MiB, 2 * MiB, 0x11);
	expect_view(d, 0, 2 * MiB, 0x33);
	expect_view(d, 2 * MiB, 2 * MiB, 0x11);
}

Test(secondary, primary_write_refused_after_failover)
{
	char b = 0x22;

	cr_assert_eq(secondary_start(r), 0);
	failover_and_wait();
	cr_assert_eq(secondary_primary_write(d, &b, 1, 0), -1);
	cr_assert_eq(errno, ESHUTDOWN);
	expect_disk(d, 0, 1, 0x11);
	cr_assert_eq(secondary_accepts_primary(r), 0);
}

Test(secondary, every_word_after_done_fails_with_ebusy_and_changes_nothing)
{
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 100, 0x33);
	failover_and_wait();
	cr_assert_eq(secondary_failover(r), -1);
	cr_assert_eq(errno, EBUSY);
	expect_error_contains("failover: this disk is promoted");
	cr_assert_eq(secondary_stop(r), -1);
	cr_assert_eq(errno, EBUSY);
	expect_error_contains("stop: this disk is promoted");
	cr_assert_eq(secondary_checkpoint(r), -1);
	cr_assert_eq(errno, EBUSY);
	expect_error_contains("checkpoint: this disk is promoted");
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_view(d, 0, 100, 0x33);
}

Test(secondary, done_view_writes_pass_through)
{
	cr_assert_eq(secondary_start(r), 0);
	failover_and_wait();
	view_fill(d, 7, 9, 0x55);
	expect_disk(d, 7, 9, 0x55);
}

Test(secondary, unaligned_io_is_byte_exact)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 3, 5, 0x22);
	view_fill(d, 6, 7, 0x33);
	primary_fill(d, 1, 20, 0x44);
	expect_view(d, 0, 6, 0x11);
	expect_view(d, 6, 7, 0x33);
	expect_view(d, 13, 100, 0x11);
	expect_disk(d, 0, 1, 0x11);
	expect_disk(d, 1, 20, 0x44);
	expect_disk(d, 21, 100, 0x11);
}

Test(secondary, io_beyond_the_end_fails_with_einval)
{
	char b[2] = { 0 };

	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_view_read(d, b, 2, 4 * MiB - 1), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(secondary_view_write(d, b, 1, 4 * MiB), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(secondary_primary_write(d, b, 2, UINT64_MAX), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(secondary_primary_read(d, b, 1, 4 * MiB), -1);
	cr_assert_eq(errno, EINVAL);
}

Test(secondary, primary_zero_saves_then_zeroes)
{
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_primary_zero(d, 4096, 65536), 0);
	expect_disk(d, 4096, 65536, 0);
	expect_view(d, 4096, 65536, 0x11);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 4096, 65536, 0);
}

Test(secondary, view_zero_is_a_view_write_of_zeros)
{
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_view_zero(d, 100, 5000), 0);
	expect_view(d, 100, 5000, 0);
	expect_view(d, 0, 100, 0x11);
	expect_disk(d, 100, 5000, 0x11);
}

Test(secondary, status_counts_bytes_and_extents)
{
	struct secondary_status st;

	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 4096, 0x22);
	primary_fill(d, 8192, 4096, 0x22);
	view_fill(d, 65536, 100, 0x33);
	cr_assert_eq(secondary_checkpoint(r), 0);
	primary_fill(d, 0, 10, 0x22);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_str_eq(secondary_state_name(st.state), "running");
	cr_assert_eq(st.checkpoints, 1);
	cr_assert_gt(st.last_checkpoint_ns, 0);
	cr_assert_eq(st.ndisks, 1);
	cr_assert_str_eq(st.disks[0].name, "vda");
	cr_assert_eq(st.disks[0].size, 4 * MiB);
	cr_assert_eq(st.disks[0].hidden_bytes, 10);
	cr_assert_eq(st.disks[0].hidden_extents, 1);
	cr_assert_eq(st.disks[0].active_bytes, 0);
	cr_assert_eq(st.disks[0].primary_write_bytes, 8192 + 10);
	cr_assert_eq(st.disks[0].view_write_bytes, 100);
	cr_assert_eq(st.disks[0].commit_remaining_bytes, 0);
	secondary_status_release(&st);
}

Test(secondary, view_requests_are_counted_by_kind)
{
	struct secondary_status st;
	struct secondary_seg seg;
	struct secondary_read rd;
	char buf[300];

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 100, 0x33);
	cr_assert_eq(secondary_view_zero(d, 4096, 4096), 0);
	cr_assert_eq(secondary_view_read(d, buf, sizeof buf, 0), 0);
	cr_assert_eq(secondary_view_read_begin(d, 0, 50, &rd, &seg), 0);
	secondary_view_read_end(&rd);
	/* A refused read counts nothing. */
	cr_assert_eq(secondary_view_read(d, buf, 10, 4 * MiB), -1);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.disks[0].view_writes, 2);
	cr_assert_eq(st.disks[0].view_write_bytes, 100 + 4096);
	cr_assert_eq(st.disks[0].view_reads, 2);
	cr_assert_eq(st.disks[0].view_read_bytes, sizeof buf + 50);
	secondary_status_release(&st);
}

Test(secondary, group_acts_on_every_disk)
{
	struct secondary_disk *d2;

	d2 = secondary_add_disk(r, "vdb", test_raw_image(MiB, 0x11));
	cr_assert_not_null(d2);
	cr_assert_eq(secondary_ndisks(r), 2);
	cr_assert_eq(secondary_find_disk(r, "vdb"), d2);
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 100, 0x22);
	primary_fill(d2, 0, 100, 0x22);
	expect_view(d, 0, 100, 0x11);
	expect_view(d2, 0, 100, 0x11);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 0, 100, 0x22);
	expect_view(d2, 0, 100, 0x22);
	view_fill(d2, 0, 50, 0x33);
	failover_and_wait();
	expect_disk(d2, 0, 50, 0x33);
}

Test(secondary, duplicate_disk_name_is_refused)
{
	cr_assert_null(secondary_add_disk(r, "vda", test_raw_image(MiB, 0)));
	cr_assert_eq(errno, EEXIST);
}

Test(secondary, file_buffers_behave_like_memory)
{
	char *dir = test_temp_dir();
	struct secondary *rf = test_secondary(MiB, 0x11, dir);
	struct secondary_disk *df = secondary_disk_at(rf, 0);

	cr_assert_eq(secondary_start(rf), 0);
	primary_fill(df, 10, 100, 0x22);
	view_fill(df, 200, 100, 0x33);
	expect_view(df, 0, 200, 0x11);
	expect_view(df, 200, 100, 0x33);
	cr_assert_eq(secondary_checkpoint(rf), 0);
	expect_view(df, 10, 100, 0x22);
	secondary_free(rf);
	test_cleanup_dir(dir);
}

Test(secondary, view_write_during_commit_is_never_overwritten)
{
	int i;

	/* Many chunks to commit, and view writes racing with the commit. */
	secondary_free(r);
	r = test_secondary(64 * MiB, 0x11, NULL);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 64 * MiB, 0x33);
	cr_assert_eq(secondary_failover(r), 0);
	for (i = 63; i >= 0; i--)
		view_fill(d, (uint64_t) i * MiB + 100, 1000, 0x77);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	for (i = 0; i < 64; i++) {
		expect_disk(d, (uint64_t) i * MiB, 100, 0x33);
		expect_disk(d, (uint64_t) i * MiB + 100, 1000, 0x77);
		expect_disk(d, (uint64_t) i * MiB + 1100, MiB - 1100, 0x33);
	}
}

Test(secondary, checkpoint_cost_does_not_grow_with_buffered_bytes)
{
	struct secondary_status st;

	/* Not a timing assertion: the old buffers must be gone from the
	 * secondary at once (swapped), whatever they held.
	 */
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4 * MiB, 0x33);
	primary_fill(d, 0, 4 * MiB, 0x22);
	cr_assert_eq(secondary_checkpoint(r), 0);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.disks[0].hidden_bytes + st.disks[0].active_bytes, 0);
	secondary_status_release(&st);
}

Test(secondary, buffer_limit_refuses_a_view_write_whole)
{
	secondary_set_buffer_limit(r, 8192);
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4096, 0x33);
	{
		char buf[8192];

		memset(buf, 0x44, sizeof buf);
		cr_assert_eq(secondary_view_write(d, buf, sizeof buf, 4096), -1);
		cr_assert_eq(errno, ENOSPC);
	}
	expect_error_contains("buffer_limit");
	expect_view(d, 4096, 8192, 0x11);	/* nothing half-applied */
	view_fill(d, 4096, 4096, 0x44);		/* exactly at the limit */
	view_fill(d, 0, 8192, 0x55);		/* rewrites need nothing */
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 100000, 8192, 0x66);	/* freed by the checkpoint */
}

Test(secondary, buffer_limit_refuses_a_primary_write_whole)
{
	char buf[8192];
	struct secondary_status st;

	secondary_set_buffer_limit(r, 4096);
	cr_assert_eq(secondary_start(r), 0);
	memset(buf, 0x22, sizeof buf);
	cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, ENOSPC);
	expect_disk(d, 0, 8192, 0x11);
	expect_view(d, 0, 8192, 0x11);
	primary_fill(d, 0, 4096, 0x22);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.buffer_bytes, 4096);
	cr_assert_eq(st.buffer_limit, 4096);
	secondary_status_release(&st);
}

Test(secondary, buffer_bytes_follow_checkpoint_and_failover)
{
	struct secondary_status st;

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 1000, 0x33);
	primary_fill(d, 5000, 1000, 0x22);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.buffer_bytes, 2000);
	secondary_status_release(&st);
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 0, 300, 0x33);
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.buffer_bytes, 300);
	secondary_status_release(&st);
	failover_and_wait();
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.buffer_bytes, 0);
	secondary_status_release(&st);
}

/* Reads [off, off+len) in place, checks that it is the layer's kind (an fd
 * or memory) and that it holds what secondary_view_read returns.
 */
static void
expect_in_place(struct secondary_disk *dk, uint64_t off, size_t len,
		bool by_fd)
{
	struct secondary_seg seg;
	struct secondary_read rd;
	char got[4096], want[4096];

	cr_assert_leq(len, sizeof got);
	cr_assert_eq(secondary_view_read_begin(dk, off, len, &rd, &seg), 0,
		     "[%" PRIu64 ", +%zu) lies in one layer", off, len);
	if (by_fd) {
		cr_assert_geq(seg.fd, 0, "read by fd at %" PRIu64, off);
		cr_assert_eq(pread(seg.fd, got, len, (off_t) seg.pos),
			     (ssize_t) len);
	} else {
		cr_assert_lt(seg.fd, 0, "read in place at %" PRIu64, off);
		cr_assert_not_null(seg.mem, "memory buffers are read in place");
		memcpy(got, seg.mem, len);
	}
	secondary_view_read_end(&rd);
	cr_assert_eq(secondary_view_read(dk, want, len, off), 0);
	cr_assert_eq(memcmp(got, want, len), 0, "[%" PRIu64 ", +%zu)", off,
		     len);
}

Test(secondary, zero_copy_read_describes_every_layer)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 10000, 5000, 0x22);	/* hidden keeps 0x11 */
	view_fill(d, 12000, 1000, 0x33);	/* active */
	expect_in_place(d, 1000, 4000, true);	/* image */
	expect_in_place(d, 10000, 2000, false);	/* hidden */
	expect_in_place(d, 12000, 1000, false);	/* active */
	expect_in_place(d, 13000, 2000, false);	/* hidden again */
	expect_in_place(d, 15000, 4000, true);	/* image again */
}

Test(secondary, zero_copy_read_of_file_buffers_is_by_fd)
{
	char *dir = test_temp_dir();
	struct secondary *rf = test_secondary(MiB, 0x11, dir);
	struct secondary_disk *df = secondary_disk_at(rf, 0);

	cr_assert_eq(secondary_start(rf), 0);
	primary_fill(df, 10000, 5000, 0x22);
	view_fill(df, 12000, 1000, 0x33);
	expect_in_place(df, 10000, 2000, true);	/* hidden */
	expect_in_place(df, 12000, 1000, true);	/* active */
	secondary_free(rf);
	test_cleanup_dir(dir);
}

Test(secondary, zero_copy_read_across_layers_holds_nothing)
{
	struct secondary_seg seg;
	struct secondary_read rd;

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 100, 10, 0x33);
	cr_assert_eq(secondary_view_read_begin(d, 0, 1000, &rd, &seg), -1);
	cr_assert_eq(errno, EAGAIN);
	/* Nothing is held: a checkpoint and a write go through. */
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 0, 1000, 0x44);
	expect_view(d, 0, 1000, 0x44);
}
