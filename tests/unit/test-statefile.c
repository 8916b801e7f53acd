/* SPDX-License-Identifier: MIT */
/* The state file, the failover journal, and the replica's durable
 * failover (the crash itself is tests/e2e/test-durable-crash.sh).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faulty.h"
#include "journal.h"
#include "log.h"
#include "replica.h"
#include "statefile.h"
#include "store.h"
#include "support.h"

#define MiB (1024 * 1024)

static char *dir;

static void
setup(void)
{
	log_set_quiet(true);
	dir = test_temp_dir();
}

static void
teardown(void)
{
	test_cleanup_dir(dir);
}

static void
put(const char *name, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int
count_entries(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int
read_named(const char *name, struct statefile *sf, char *err)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return statefile_read(path, sf, err, 512);
}

TestSuite(statefile, .init = setup, .fini = teardown);

Test(statefile, reads_back_what_it_wrote_and_leaves_no_tmp)
{
	struct statefile sf = { .state = REPLICA_FAILOVER, .journaled = true },
			 got;
	char err[512], path[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	cr_assert_eq(strlen(sf.generation), 32);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_eq(got.state, REPLICA_FAILOVER);
	cr_assert(got.journaled);
	cr_assert_str_eq(got.generation, sf.generation);
	snprintf(path, sizeof path, "%s", dir);
	cr_assert_eq(count_entries(path), 1, "only a.state is left");
}

Test(statefile, replaces_the_old_file_whole)
{
	struct statefile sf = { .state = REPLICA_RUNNING }, got;
	char err[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	sf.state = REPLICA_DONE;
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_eq(got.state, REPLICA_DONE);
	cr_assert_not(got.journaled);
}

Test(statefile, keeps_the_protect_uri_and_refuses_a_bad_one)
{
	struct statefile sf = { .state = REPLICA_DONE }, got;
	const char *uri = "nbd+unix:///vda?socket=/run/x.sock";
	char err[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	snprintf(sf.protect, sizeof sf.protect, "%s", uri);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_str_eq(got.protect, uri);
	sf.protect[0] = '\0';
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_str_eq(got.protect, "");
	put("b.state", "colofs-state 1\nstate=done\ngeneration="
		       "0123456789abcdef0123456789abcdef\nprotect=nouri\n");
	cr_assert_eq(read_named("b.state", &got, err), -1);
	cr_assert_not_null(strstr(err, "protect is not a URI"), "%s", err);
}

Test(statefile, generations_differ)
{
	char a[33], b[33];

	cr_assert_eq(statefile_new_generation(a), 0);
	cr_assert_eq(statefile_new_generation(b), 0);
	cr_assert_str_neq(a, b);
}

Test(statefile, a_missing_file_reads_as_absent)
{
	struct statefile sf;
	char err[512];

	cr_assert_eq(read_named("none.state", &sf, err), 1);
}

Test(statefile, refuses_what_it_cannot_read)
{
	static const char *const bad[] = {
		"",
		"state=done\n",
		"colofs-state 1\nstate=done\n",
		"colofs-state 1\nstate=gone\ngeneration="
			"0123456789abcdef0123456789abcdef\n",
		"colofs-state 1\nstate=done\ngeneration=xyz\n",
		"colofs-state 1\nstate=done\ngeneration="
			"0123456789abcdef0123456789abcdef",
		"colofs-state 1\nstate=done\nnonsense\ngeneration="
			"0123456789abcdef0123456789abcdef\n",
		"colofs-state 1\nstate=done\njournaled=2\ngeneration="
			"0123456789abcdef0123456789abcdef\n",
	};
	struct statefile sf;
	char err[512];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		put("b.state", bad[i]);
		errno = 0;
		cr_assert_eq(read_named("b.state", &sf, err), -1, "case %zu", i);
		cr_assert_eq(errno, EINVAL, "case %zu", i);
		cr_assert(strstr(err, "b.state") != NULL, "case %zu: %s", i,
			  err);
	}
}

/* ---- journal ---- */

struct seen {
	struct journal_rec recs[16];
	int n;
};

static int
collect(void *opaque, const struct journal_rec *rec)
{
	struct seen *s = opaque;

	cr_assert_lt(s->n, 16);
	s->recs[s->n++] = *rec;
	return 0;
}

TestSuite(journal, .init = setup, .fini = teardown);

Test(journal, replays_the_snapshot_then_appends_and_ignores_a_torn_tail)
{
	struct journal_rec recs[] = { { 'A', 0, 4096 }, { 'H', 8192, 512 } };
	struct seen s = { .n = 0 };
	char path[512];
	int fd;

	fd = journal_create(dir, "j", 1 * MiB, recs, 2);
	cr_assert_geq(fd, 0);
	cr_assert_eq(journal_commit(fd, dir, "j"), 0);
	cr_assert_eq(journal_append(fd, 'D', 1024, 100), 0);
	cr_assert_eq(write(fd, "D 5", 3), 3);	/* torn by a crash */
	close(fd);
	snprintf(path, sizeof path, "%s/j", dir);
	cr_assert_eq(journal_replay(path, 1 * MiB, collect, &s), 0);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.recs[0].op, 'A');
	cr_assert_eq(s.recs[1].op, 'H');
	cr_assert_eq(s.recs[1].off, 8192);
	cr_assert_eq(s.recs[2].op, 'D');
	cr_assert_eq(s.recs[2].off, 1024);
	cr_assert_eq(s.recs[2].len, 100);
}

Test(journal, refuses_another_disk_and_bad_records)
{
	struct seen s = { .n = 0 };
	char path[512];

	snprintf(path, sizeof path, "%s/j", dir);
	put("j", "colofs-journal 1 4096\nA 0 512\n");
	cr_assert_eq(journal_replay(path, 8192, collect, &s), -1);
	cr_assert_eq(errno, EINVAL);
	put("j", "colofs-journal 1 4096\nA 4000 512\n");
	cr_assert_eq(journal_replay(path, 4096, collect, &s), -1);
	cr_assert_eq(errno, EINVAL);
	put("j", "colofs-journal 1 4096\nX 0 512\n");
	cr_assert_eq(journal_replay(path, 4096, collect, &s), -1);
	put("j", "");
	cr_assert_eq(journal_replay(path, 4096, collect, &s), -1);
}

/* ---- the replica's durable failover ---- */

static struct replica *r;
static struct replica_disk *d;
static int hook_calls;
static enum replica_state hook_states[8];
static bool hook_journaled[8];
static char hook_journal_tail[128];

static int
hook(void *opaque, enum replica_state next, bool journaled)
{
	(void) opaque;
	if (hook_calls < 8) {
		hook_states[hook_calls] = next;
		hook_journaled[hook_calls] = journaled;
	}
	hook_calls++;
	if (next == REPLICA_FAILOVER) {
		/* The VM writes while the commit is about to start: the
		 * journal must say so before the write returns.
		 */
		char path[512], buf[4096];
		ssize_t n;
		int fd;

		view_fill(d, 3 * 4096, 4096, 0xee);
		snprintf(path, sizeof path, "%s/p.vda.journal", dir);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0);
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		cr_assert_gt(n, 0);
		buf[n] = '\0';
		buf[n - 1] = '\0';
		snprintf(hook_journal_tail, sizeof hook_journal_tail, "%s",
			 strrchr(buf, '\n') + 1);
	}
	return 0;
}

static bool
exists(const char *name)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

TestSuite(durable, .init = setup, .fini = teardown);

Test(durable, failover_journals_first_keeps_view_writes_and_cleans_up)
{
	r = test_replica(1 * MiB, 0x11, dir);
	d = replica_disk_at(r, 0);
	hook_calls = 0;
	cr_assert_eq(replica_set_durable(r, dir, dir, "p"), 0);
	replica_set_state_hook(r, hook, NULL);
	cr_assert_eq(replica_start(r), 0);
	primary_fill(d, 0, 8 * 4096, 0xaa);
	view_fill(d, 2 * 4096, 4 * 4096, 0xbb);
	cr_assert_eq(replica_failover(r), 0);
	replica_wait_commit(r);
	cr_assert_eq(replica_state(r), REPLICA_DONE);
	cr_assert_eq(hook_calls, 3);
	cr_assert_eq(hook_states[0], REPLICA_RUNNING);
	cr_assert_eq(hook_states[1], REPLICA_FAILOVER);
	cr_assert(hook_journaled[1]);
	cr_assert_eq(hook_states[2], REPLICA_DONE);
	cr_assert_str_eq(hook_journal_tail, "D 12288 4096");
	/* V as the VM saw it: S0, VV with the write during the commit. */
	expect_disk(d, 0, 2 * 4096, 0x11);
	expect_disk(d, 2 * 4096, 4096, 0xbb);
	expect_disk(d, 3 * 4096, 4096, 0xee);
	expect_disk(d, 4 * 4096, 2 * 4096, 0xbb);
	expect_disk(d, 6 * 4096, 2 * 4096, 0x11);
	cr_assert_not(exists("p.vda.journal"));
	cr_assert_not(exists("p.vda.hidden"));
	cr_assert_not(exists("p.vda.active"));
	replica_free(r);
}

static void
file_with(const char *name, uint64_t size, uint64_t off, size_t len, int b)
{
	char path[512], buf[4096];
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, size), 0);
	memset(buf, b, sizeof buf);
	cr_assert_leq(len, sizeof buf);
	cr_assert_eq(pwrite(fd, buf, len, off), (ssize_t) len);
	close(fd);
}

Test(durable, resume_commits_the_journal_but_not_over_dropped_ranges)
{
	r = test_replica(1 * MiB, 0x11, dir);
	d = replica_disk_at(r, 0);
	cr_assert_eq(replica_set_durable(r, dir, dir, "p"), 0);
	/* What a killed failover left: active holds 0xbb at [0, 4K), hidden
	 * 0x22 at [8K, 12K), and the VM wrote [0, 1K) into S afterwards.
	 */
	file_with("p.vda.active", 1 * MiB, 0, 4096, 0xbb);
	file_with("p.vda.hidden", 1 * MiB, 8192, 4096, 0x22);
	put("p.vda.journal", "colofs-journal 1 1048576\nA 0 4096\n"
	    "H 8192 4096\nD 0 1024\nD 9");
	primary_fill(d, 0, 1024, 0xee);		/* S in none: as the VM left it */
	cr_assert_eq(replica_resume_failover(r), 0);
	replica_wait_commit(r);
	cr_assert_eq(replica_state(r), REPLICA_DONE);
	expect_disk(d, 0, 1024, 0xee);
	expect_disk(d, 1024, 3072, 0xbb);
	expect_disk(d, 4096, 4096, 0x11);
	expect_disk(d, 8192, 4096, 0x22);
	cr_assert_not(exists("p.vda.journal"));
	replica_free(r);
}

Test(durable, resume_without_journal_fails_and_says_why)
{
	char msg[512];

	r = test_replica(1 * MiB, 0x11, dir);
	cr_assert_eq(replica_set_durable(r, dir, dir, "p"), 0);
	cr_assert_eq(replica_resume_failover(r), -1);
	replica_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "cannot be read") != NULL, "%s", msg);
	cr_assert_eq(replica_state(r), REPLICA_NONE);
	replica_free(r);
}

Test(durable, restore_done_refuses_primary_writes)
{
	char buf[512] = { 0 };

	r = test_replica(1 * MiB, 0x11, NULL);
	d = replica_disk_at(r, 0);
	cr_assert_eq(replica_restore_done(r), 0);
	cr_assert_eq(replica_state(r), REPLICA_DONE);
	cr_assert_eq(replica_accepts_primary(r), 0);
	cr_assert_eq(replica_primary_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, ESHUTDOWN);
	replica_free(r);
}

static int
failing_hook(void *opaque, enum replica_state next, bool journaled)
{
	(void) opaque;
	(void) journaled;
	if (next == REPLICA_DONE) {
		errno = EROFS;
		return -1;
	}
	return 0;
}

Test(durable, stop_is_refused_when_done_cannot_be_recorded)
{
	r = test_replica(1 * MiB, 0x11, NULL);
	replica_set_state_hook(r, failing_hook, NULL);
	cr_assert_eq(replica_start(r), 0);
	cr_assert_eq(replica_stop(r), -1);
	cr_assert_eq(errno, EIO);
	cr_assert_eq(replica_state(r), REPLICA_RUNNING);
	/* And a commit that cannot record done ends in failover_failed. */
	cr_assert_eq(replica_failover(r), 0);
	replica_wait_commit(r);
	cr_assert_eq(replica_state(r), REPLICA_FAILOVER_FAILED);
	replica_free(r);
}

/* The last complete line of dir/p.vda.journal. */
static void
journal_tail(char *out, size_t len)
{
	char path[512], buf[65536];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "%s/p.vda.journal", dir);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	cr_assert_gt(n, 0);
	buf[n - 1] = '\0';
	snprintf(out, len, "%s", strrchr(buf, '\n') + 1);
}

Test(durable, view_writes_after_a_failed_commit_are_journaled)
{
	struct store_factory f = store_memory_factory();
	char tail[128];

	memset(&faults, 0, sizeof faults);
	r = replica_new(&f);
	cr_assert_not_null(r);
	d = replica_add_disk(r, "vda", faulty_image(1 * MiB, 0x11));
	cr_assert_not_null(d);
	cr_assert_eq(replica_set_durable(r, dir, dir, "p"), 0);
	cr_assert_eq(replica_start(r), 0);
	primary_fill(d, 0, 8192, 0xaa);
	view_fill(d, 16384, 8192, 0xbb);
	atomic_store(&faults.image_write_countdown, 1);
	cr_assert_eq(replica_failover(r), 0);
	replica_wait_commit(r);
	cr_assert_eq(replica_state(r), REPLICA_FAILOVER_FAILED);
	cr_assert(exists("p.vda.journal"));
	memset(&faults, 0, sizeof faults);
	/* Buffered: into active, and an A record. */
	view_fill(d, 16384, 4096, 0xcc);
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "A 16384 4096");
	/* Not buffered: into S, and a D record. */
	view_fill(d, 65536, 4096, 0xdd);
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "D 65536 4096");
	cr_assert_eq(replica_failover(r), 0);
	replica_wait_commit(r);
	cr_assert_eq(replica_state(r), REPLICA_DONE);
	expect_disk(d, 0, 8192, 0x11);
	expect_disk(d, 16384, 4096, 0xcc);
	expect_disk(d, 20480, 4096, 0xbb);
	expect_disk(d, 65536, 4096, 0xdd);
	cr_assert_not(exists("p.vda.journal"));
	cr_assert_not(exists("p.vda.active"));
	replica_free(r);
}
