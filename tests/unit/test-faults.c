/* SPDX-License-Identifier: MIT */
/* The failure cases of QEMU's block-replication.txt that apply to a
 * secondary, each reached through the fault-injecting backends:
 *   1. I/O error on the primary disk: the primary's own; not ours.
 *   2. forwarding primary writes failed: the NBD layer reports it
 *      (secondary_note_unclean_disconnect): recorded error.
 *   3. backup (saving into hidden) failed: the primary write fails,
 *      S is untouched, the error is recorded.
 *   4. I/O error on the secondary disk: the error goes to the caller and
 *      is recorded for primary writes.
 *   5. I/O error on the active disk: the view write fails.
 *   6. making active or hidden empty failed: checkpoint fails, recorded.
 *   7. failover failed: failover_failed, recorded, retry works.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "faulty.h"
#include "log.h"
#include "secondary.h"
#include "support.h"

#define MiB (1024 * 1024)

static struct secondary *r;
static struct secondary_disk *d;

static void
setup(void)
{
	struct store_factory f = faulty_store_factory();

	log_set_quiet(true);
	memset(&faults, 0, sizeof faults);
	r = secondary_new(&f);
	cr_assert_not_null(r);
	d = secondary_add_disk(r, "vda", faulty_image(8 * MiB, 0x11));
	cr_assert_not_null(d);
	cr_assert_eq(secondary_start(r), 0);
}

static void
teardown(void)
{
	memset(&faults, 0, sizeof faults);
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

TestSuite(faults, .init = setup, .fini = teardown);

Test(faults, case2_unclean_disconnect_is_recorded)
{
	struct secondary_status st;

	secondary_note_unclean_disconnect(r, "connection reset");
	cr_assert_eq(secondary_get_status(r, &st), 0);
	cr_assert_eq(st.unclean_disconnects, 1);
	cr_assert(strstr(st.error, "connection reset") != NULL);
	secondary_status_release(&st);
}

Test(faults, case3_failed_save_refuses_write_and_leaves_disk)
{
	char buf[4096];

	memset(buf, 0x22, sizeof buf);
	atomic_store(&faults.store_write, true);
	cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, EIO);
	atomic_store(&faults.store_write, false);
	expect_disk(d, 0, 4096, 0x11);
	expect_view(d, 0, 4096, 0x11);
	expect_error_contains("saving old data");
}

Test(faults, case3_failed_read_of_old_data_refuses_write)
{
	char buf[100];

	memset(buf, 0x22, sizeof buf);
	atomic_store(&faults.image_read, true);
	cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), -1);
	atomic_store(&faults.image_read, false);
	expect_disk(d, 0, 100, 0x11);
	expect_error_contains("saving old data");
}

Test(faults, case4_secondary_disk_write_error_is_reported)
{
	char buf[100];

	memset(buf, 0x22, sizeof buf);
	atomic_store(&faults.image_write, true);
	cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, EIO);
	atomic_store(&faults.image_write, false);
	expect_error_contains("failed on the secondary disk");
	/* The view is intact: the old data was saved first. */
	expect_view(d, 0, 100, 0x11);
}

Test(faults, case4_secondary_disk_read_error_reaches_the_view)
{
	char buf[100];

	atomic_store(&faults.image_read, true);
	cr_assert_eq(secondary_view_read(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, EIO);
}

Test(faults, case5_active_write_error_fails_view_write)
{
	char buf[100];

	memset(buf, 0x33, sizeof buf);
	atomic_store(&faults.store_write, true);
	cr_assert_eq(secondary_view_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, EIO);
	atomic_store(&faults.store_write, false);
	expect_view(d, 0, 100, 0x11);
}

Test(faults, case5_active_read_error_fails_view_read)
{
	char buf[100];

	view_fill(d, 0, 100, 0x33);
	atomic_store(&faults.store_read, true);
	cr_assert_eq(secondary_view_read(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, EIO);
}

Test(faults, case6_failed_emptying_fails_checkpoint)
{
	view_fill(d, 0, 100, 0x33);
	atomic_store(&faults.store_create, true);
	cr_assert_eq(secondary_checkpoint(r), -1);
	cr_assert_eq(errno, ENOSPC);
	expect_error_contains("making empty buffers failed");
	cr_assert_eq(secondary_state(r), SECONDARY_RUNNING);
	/* Nothing half done: the old epoch's view is intact. */
	expect_view(d, 0, 100, 0x33);
	atomic_store(&faults.store_create, false);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 0, 100, 0x11);
}

Test(faults, case7_failed_commit_moves_to_failover_failed)
{
	view_fill(d, 0, 8 * MiB, 0x33);
	atomic_store(&faults.image_write_countdown, 2);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	expect_error_contains("failover commit");
	expect_view(d, 0, 8 * MiB, 0x33);
}

Test(faults, case7_failed_state_routes_view_writes)
{
	primary_fill(d, 4 * MiB, 4096, 0x22);	/* hidden holds 0x11 here */
	view_fill(d, 0, 4096, 0x33);		/* active */
	atomic_store(&faults.image_write, true);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	atomic_store(&faults.image_write, false);
	/* Buffered ranges go to active; elsewhere straight to S. */
	view_fill(d, 4 * MiB, 100, 0x44);
	view_fill(d, 0, 100, 0x45);
	view_fill(d, 6 * MiB, 100, 0x46);
	expect_disk(d, 4 * MiB, 100, 0x22);
	expect_disk(d, 0, 100, 0x11);
	expect_disk(d, 6 * MiB, 100, 0x46);
	expect_view(d, 4 * MiB, 100, 0x44);
	expect_view(d, 4 * MiB + 100, 4096 - 100, 0x11);
	expect_view(d, 0, 100, 0x45);
}

Test(faults, case7_failover_retry_completes_the_commit)
{
	primary_fill(d, 4 * MiB, 4096, 0x22);
	view_fill(d, 0, 4 * MiB, 0x33);
	atomic_store(&faults.image_write_countdown, 2);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	cr_assert_eq(secondary_stop(r), -1, "stop would drop the only copy");
	cr_assert_eq(errno, EBUSY);
	atomic_store(&faults.image_write, false);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 4 * MiB, 0x33);
	expect_disk(d, 4 * MiB, 4096, 0x11);
	expect_disk(d, 4 * MiB + 4096, 4 * MiB - 4096, 0x11);
}

Test(faults, case7_flush_error_fails_the_commit)
{
	view_fill(d, 0, 100, 0x33);
	atomic_store(&faults.image_flush, true);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	expect_error_contains("flush");
}
