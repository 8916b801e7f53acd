/* SPDX-License-Identifier: MIT */
/* "Renamed but not synced": the state file was renamed into place and
 * the fsync of its directory failed (injected through the fault backend).
 * The file holds the new state, so it counts as written: the sync is
 * retried, and a stop is never refused while the file already says done.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "durable.h"
#include "faulty.h"
#include "log.h"
#include "secondary.h"
#include "statefile.h"
#include "support.h"

static char *dir;

static void
setup(void)
{
	log_set_quiet(true);
	dir = test_temp_dir();
	memset(&faults, 0, sizeof faults);
}

static void
teardown(void)
{
	memset(&faults, 0, sizeof faults);
	test_cleanup_dir(dir);
}

static enum secondary_state
on_disk(const char *name)
{
	char path[512], err[256];
	struct statefile sf;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	cr_assert_eq(statefile_read(path, &sf, err, sizeof err), 0, "%s", err);
	return sf.state;
}

/* The daemon's state file policy over r, for /srv/vm1 (srv-vm1.state in
 * dir); with_buffers: dir is the buffer_dir too.
 */
static struct durable *
open_durable(struct secondary *r, bool with_buffers)
{
	char mnt[] = "/srv/vm1";
	struct config cfg;
	struct durable *du;

	memset(&cfg, 0, sizeof cfg);
	cfg.mountpoint = mnt;
	cfg.state_dir = dir;
	if (with_buffers)
		cfg.buffer_dir = dir;
	du = durable_open(&cfg, r, false, false);
	cr_assert_not_null(du);
	return du;
}

TestSuite(dirsync, .init = setup, .fini = teardown);

/* A running secondary with buffer files, whose VM wrote 0xbb at 0. */
static struct secondary *
started(struct secondary_disk **d, struct durable **du)
{
	struct secondary *r = test_secondary(1 << 20, 0x11, dir);

	*d = secondary_disk_at(r, 0);
	*du = open_durable(r, true);
	cr_assert_eq(secondary_start(r), 0);
	view_fill(*d, 0, 4096, 0xbb);
	return r;
}

/* Every directory fsync fails after the next n. */
static void
fail_dir_fsyncs_after(int n)
{
	atomic_store(&faults.dir_fsync_skip, n);
	atomic_store(&faults.dir_fsync, -1);
}

/* A failover_failed secondary retried with a working disk: done, with the
 * 0xbb the tests' VM wrote at 0 committed.
 */
static void
retry_to_done(struct secondary *r, struct secondary_disk *d)
{
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 4096, 0xbb);
	cr_assert_eq(on_disk("srv-vm1.state"), SECONDARY_DONE);
}

Test(dirsync, a_failed_directory_fsync_after_the_rename_is_retried)
{
	struct statefile sf = { .state = SECONDARY_DONE };

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	atomic_store(&faults.dir_fsync, 1);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0,
		     "one failed directory fsync must be retried");
	cr_assert_eq(atomic_load(&faults.dir_fsync), 0, "no fsync failed");
	cr_assert_eq(on_disk("a.state"), SECONDARY_DONE);
	/* It keeps failing: written (1), not "not written" (-1). */
	sf.state = SECONDARY_NONE;
	atomic_store(&faults.dir_fsync, -1);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 1);
	cr_assert_eq(on_disk("a.state"), SECONDARY_NONE);
}

Test(dirsync, a_stop_whose_state_file_is_renamed_but_not_synced_is_done)
{
	struct secondary *r = test_secondary(1 << 20, 0x11, dir);
	struct durable *du = open_durable(r, false);
	char err[1024];

	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(on_disk("srv-vm1.state"), SECONDARY_RUNNING);
	atomic_store(&faults.dir_fsync, -1);
	cr_assert_eq(secondary_stop(r), 0,
		     "the state file says done: the stop must not be refused");
	atomic_store(&faults.dir_fsync, 0);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	cr_assert_eq(on_disk("srv-vm1.state"), SECONDARY_DONE);
	secondary_last_error(r, err, sizeof err);
	cr_assert_not_null(strstr(err, "fsync of its directory failed"), "%s",
			   err);
	secondary_set_state_hook(r, NULL, NULL);
	durable_free(du);
	secondary_free(r);
}

Test(dirsync, a_failover_whose_state_file_is_not_synced_is_not_answered)
{
	struct secondary_disk *d;
	struct durable *du;
	struct secondary *r = started(&d, &du);
	char err[1024];

	/* buffer_dir's and the journal's directory fsyncs pass; the state
	 * file's fails, and so does its retry.
	 */
	fail_dir_fsyncs_after(2);
	cr_assert_eq(secondary_failover(r), -1,
		     "not durable: the failover must not answer 0");
	cr_assert_eq(errno, EIO);
	atomic_store(&faults.dir_fsync, 0);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	secondary_last_error(r, err, sizeof err);
	cr_assert_not_null(strstr(err, "not durable"), "%s", err);
	cr_assert_eq(on_disk("srv-vm1.state"), SECONDARY_FAILOVER_FAILED);
	retry_to_done(r, d);
	secondary_set_state_hook(r, NULL, NULL);
	durable_free(du);
	secondary_free(r);
}

/* The commit's done drops the journals, in the state file's directory:
 * with that directory unsynced, a crash may bring back failover and the
 * journals, and a resumed commit would write the old buffers over what
 * the VM wrote in done.  So a done not synced is not done: the commit
 * ends in failover_failed, journals kept, and a retry finishes it.
 */
Test(dirsync, a_commit_whose_done_is_not_synced_keeps_its_journals)
{
	struct secondary_disk *d;
	struct durable *du;
	struct secondary *r = started(&d, &du);
	char path[512];

	/* buffer_dir's, the journal's and the failover state file's
	 * directory fsyncs pass; done's fails, and so does its retry.
	 */
	fail_dir_fsyncs_after(3);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	atomic_store(&faults.dir_fsync, 0);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED,
		     "done was not durable: the commit must not end in done");
	snprintf(path, sizeof path, "%s/srv-vm1.vda.journal", dir);
	cr_assert_eq(access(path, F_OK), 0, "the journal must be kept");
	cr_assert_eq(on_disk("srv-vm1.state"), SECONDARY_FAILOVER_FAILED);
	retry_to_done(r, d);
	cr_assert_eq(access(path, F_OK), -1, "the journal must be gone");
	secondary_set_state_hook(r, NULL, NULL);
	durable_free(du);
	secondary_free(r);
}
