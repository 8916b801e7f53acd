/* SPDX-License-Identifier: MIT */
/* QEMU's tests/unit/test-replication.c secondary cases, rewritten with
 * exact comparisons.  The secondary disk is 64 MiB of 0x11; H is half.
 *
 * Where these differ from QEMU's own expectations:
 *  - QEMU compares with memcmp() <= 0; these compare every byte.
 *  - After failover QEMU expects 0x22 in [H, 2H); the right value is 0x11,
 *    the content before the primary's write, which the hidden buffer kept
 *    and the failover committed (QEMU passes only because 0x11 < 0x22).
 *  - QEMU's secondary fails reads before start; colofs's contract is that
 *    the view reads S before start (only writes fail).
 * QEMU's "failover" is replication_stop_all(true): here secondary_failover.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "log.h"
#include "secondary.h"
#include "support.h"

#define IMG_SIZE (64 * 1024 * 1024)
#define H (IMG_SIZE / 2)

static struct secondary *r;
static struct secondary_disk *d;

static void
setup(void)
{
	log_set_quiet(true);
	r = test_secondary(IMG_SIZE, 0x11, NULL);
	d = secondary_disk_at(r, 0);
}

static void
teardown(void)
{
	secondary_free(r);
}

TestSuite(qemu_secondary, .init = setup, .fini = teardown);

Test(qemu_secondary, read_before_start_sees_the_disk)
{
	expect_view(d, 0, IMG_SIZE, 0x11);
}

Test(qemu_secondary, write_before_start_fails)
{
	char *buf = calloc(1, IMG_SIZE);

	cr_assert_eq(secondary_view_write(d, buf, IMG_SIZE, 0), -1);
	cr_assert_eq(errno, EIO);
	free(buf);
	expect_disk(d, 0, IMG_SIZE, 0x11);
}

Test(qemu_secondary, start)
{
	cr_assert_eq(secondary_start(r), 0);
	expect_view(d, 0, IMG_SIZE, 0x11);
	primary_fill(d, H, H, 0x22);
	expect_view(d, 0, IMG_SIZE, 0x11);
	view_fill(d, 0, H, 0x33);
	expect_view(d, 0, H, 0x33);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
}

Test(qemu_secondary, stop_is_failover_and_commits_pre_write_content)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, H, H, 0x22);
	expect_view(d, H, H, 0x11);
	view_fill(d, 0, H, 0x33);
	cr_assert_eq(secondary_failover(r), 0);
	/* Reads during the commit already show the committed view. */
	expect_view(d, 0, H, 0x33);
	expect_view(d, H, H, 0x11);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_view(d, 0, H, 0x33);
	expect_view(d, H, H, 0x11);	/* QEMU says 0x22: wrong */
	expect_disk(d, 0, H, 0x33);
	expect_disk(d, H, H, 0x11);
}

/* QEMU ignores them silently; colofs refuses them (EBUSY, with the reason
 * in the error), and they change nothing either way.
 */
Test(qemu_secondary, continuous_replication_refuses_requests_after_failover)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, H, H, 0x22);
	expect_view(d, H, H, 0x11);
	view_fill(d, 0, H, 0x33);
	cr_assert_eq(secondary_failover(r), 0);
	cr_assert_eq(secondary_start(r), -1, "start after failover");
	cr_assert_eq(errno, EBUSY);
	cr_assert_eq(secondary_checkpoint(r), -1, "checkpoint after failover");
	cr_assert_eq(errno, EBUSY);
	cr_assert_eq(secondary_failover(r), -1, "failover again");
	cr_assert_eq(errno, EBUSY);
	secondary_wait_commit(r);
	expect_view(d, 0, H, 0x33);
	expect_view(d, H, H, 0x11);	/* QEMU says 0x22: wrong */
	expect_disk(d, 0, H, 0x33);
	expect_disk(d, H, H, 0x11);
}

Test(qemu_secondary, do_checkpoint)
{
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, H, H, 0x22);
	expect_view(d, H, H, 0x11);
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, H, H, 0x22);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	expect_disk(d, H, H, 0x22);
}

Test(qemu_secondary, get_error_all)
{
	char msg[512];

	cr_assert_eq(secondary_start(r), 0);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert_str_eq(msg, "");
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert_str_eq(msg, "");
}

Test(qemu_secondary, stop_without_failover_drops_buffers)
{
	/* QEMU 7.2 fails here ("Backup job was cancelled unexpectedly"). */
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, H, H, 0x22);
	view_fill(d, 0, H, 0x33);
	cr_assert_eq(secondary_stop(r), 0);
	expect_view(d, 0, H, 0x11);
	expect_view(d, H, H, 0x22);
}
