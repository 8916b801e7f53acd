/* SPDX-License-Identifier: MIT */
/* The state file, the failover journal, and the secondary's durable
 * failover (the crash itself is tests/e2e/test-durable-crash.sh).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faulty.h"
#include "journal.h"
#include "log.h"
#include "secondary.h"
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
	struct statefile sf = { .state = SECONDARY_FAILOVER, .journaled = true },
			 got;
	char err[512], path[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	cr_assert_eq(strlen(sf.generation), 32);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_eq(got.state, SECONDARY_FAILOVER);
	cr_assert(got.journaled);
	cr_assert_str_eq(got.generation, sf.generation);
	snprintf(path, sizeof path, "%s", dir);
	cr_assert_eq(count_entries(path), 1, "only a.state is left");
}

Test(statefile, replaces_the_old_file_whole)
{
	struct statefile sf = { .state = SECONDARY_RUNNING }, got;
	char err[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	sf.state = SECONDARY_DONE;
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert_eq(got.state, SECONDARY_DONE);
	cr_assert_not(got.journaled);
}

Test(statefile, keeps_the_protect_uri_and_refuses_a_bad_one)
{
	struct statefile sf = { .state = SECONDARY_DONE }, got;
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

Test(statefile, s_consistent_is_kept_and_defaults_to_1)
{
	struct statefile sf = { .state = SECONDARY_NONE, .s_behind = true }, got;
	char err[512];

	cr_assert_eq(statefile_new_generation(sf.generation), 0);
	cr_assert_eq(statefile_write(dir, "a.state", &sf), 0);
	cr_assert_eq(read_named("a.state", &got, err), 0, "%s", err);
	cr_assert(got.s_behind);
	/* A file written before the key existed: consistent. */
	put("b.state", "colofs-state 1\nstate=none\ngeneration="
	    "0123456789abcdef0123456789abcdef\njournaled=0\n");
	cr_assert_eq(read_named("b.state", &got, err), 0, "%s", err);
	cr_assert_not(got.s_behind);
	put("b.state", "colofs-state 1\nstate=none\ngeneration="
	    "0123456789abcdef0123456789abcdef\ns_consistent=2\n");
	cr_assert_eq(read_named("b.state", &got, err), -1);
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

/* ---- the secondary's durable failover ---- */

static struct secondary *r;
static struct secondary_disk *d;
static int hook_calls;
static enum secondary_state hook_states[8];
static bool hook_journaled[8];
static enum secondary_state hook_status_state;

/* The k-th record from the end (1: the last) of dir/p.vda.journal as
 * "OP OFF LEN".
 */
static void
journal_rec_back(char *out, size_t len, size_t k)
{
	struct journal_info info;
	char err[256];
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	struct journal_rec *rec;

	cr_assert_geq(dfd, 0);
	cr_assert_eq(journal_load(dfd, "p.vda.journal", "vda", 0, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	close(dfd);
	cr_assert_geq(info.nrecs, k);
	rec = &info.recs[info.nrecs - k];
	snprintf(out, len, "%c %llu %llu", rec->op,
		 (unsigned long long) rec->off, (unsigned long long) rec->len);
	journal_info_release(&info);
}

/* The last record of dir/p.vda.journal as "OP OFF LEN". */
static void
journal_tail(char *out, size_t len)
{
	journal_rec_back(out, len, 1);
}

static char flush_tail[128];	/* the journal's tail at S's flush */

static void
tail_at_flush(void)
{
	journal_tail(flush_tail, sizeof flush_tail);
}

/* The VM's write during the failover's pending window, from a thread of
 * its own: it starts in the hook (the failover not yet durable), and the
 * hook waits until it either waits itself (secondary_failover_wait_hook) or
 * has written.
 */
static pthread_mutex_t window_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t window_cond = PTHREAD_COND_INITIALIZER;
static bool window_waiting, window_written;
static pthread_t window_writer;

static void
window_wait_hook(struct secondary *rr)
{
	(void) rr;
	pthread_mutex_lock(&window_lock);
	window_waiting = true;
	pthread_cond_broadcast(&window_cond);
	pthread_mutex_unlock(&window_lock);
}

static void *
window_write(void *arg)
{
	(void) arg;
	view_fill(d, 3 * 4096, 4096, 0xee);
	pthread_mutex_lock(&window_lock);
	window_written = true;
	pthread_cond_broadcast(&window_cond);
	pthread_mutex_unlock(&window_lock);
	return NULL;
}

static bool hook_saw_write;	/* the write had returned in the window */
static int hook_s_byte;		/* S's byte at the write, in the window */

static int
hook(void *opaque, enum secondary_state next, bool journaled)
{
	(void) opaque;
	if (hook_calls < 8) {
		hook_states[hook_calls] = next;
		hook_journaled[hook_calls] = journaled;
	}
	hook_calls++;
	if (next == SECONDARY_FAILOVER) {
		/* The VM writes while the failover is not durable yet: the
		 * write must wait, S must not have it.
		 */
		struct secondary_status st;
		unsigned char b;

		window_waiting = window_written = false;
		secondary_failover_wait_hook = window_wait_hook;
		cr_assert_eq(pthread_create(&window_writer, NULL, window_write,
					    NULL), 0);
		pthread_mutex_lock(&window_lock);
		while (!window_waiting && !window_written)
			pthread_cond_wait(&window_cond, &window_lock);
		hook_saw_write = window_written;
		pthread_mutex_unlock(&window_lock);
		cr_assert_eq(secondary_primary_read(d, &b, 1, 3 * 4096), 0);
		hook_s_byte = b;
		/* Not durable yet: the status must not say failover. */
		cr_assert_eq(secondary_get_status(r, &st), 0);
		hook_status_state = st.state;
		secondary_status_release(&st);
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
	r = test_secondary(1 * MiB, 0x11, dir);
	d = secondary_disk_at(r, 0);
	hook_calls = 0;
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	secondary_set_state_hook(r, hook, NULL);
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 8 * 4096, 0xaa);
	view_fill(d, 2 * 4096, 4 * 4096, 0xbb);
	cr_assert_eq(secondary_failover(r), 0);
	cr_assert_eq(pthread_join(window_writer, NULL), 0);
	secondary_failover_wait_hook = NULL;
	cr_assert_not(hook_saw_write, "a view write returned before the "
		      "failover was durable");
	cr_assert_eq(hook_s_byte, 0xaa, "S had the view write before the "
		     "failover was durable");
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	cr_assert_eq(hook_calls, 3);
	cr_assert_eq(hook_states[0], SECONDARY_RUNNING);
	cr_assert_eq(hook_states[1], SECONDARY_FAILOVER);
	cr_assert(hook_journaled[1]);
	cr_assert_eq(hook_states[2], SECONDARY_DONE);
	cr_assert_eq(hook_status_state, SECONDARY_RUNNING);
	/* V as the VM saw it: S0, VV with the write during the commit. */
	expect_disk(d, 0, 2 * 4096, 0x11);
	expect_disk(d, 2 * 4096, 4096, 0xbb);
	expect_disk(d, 3 * 4096, 4096, 0xee);
	expect_disk(d, 4 * 4096, 2 * 4096, 0xbb);
	expect_disk(d, 6 * 4096, 2 * 4096, 0x11);
	cr_assert_not(exists("p.vda.journal"));
	cr_assert_not(exists("p.vda.hidden"));
	cr_assert_not(exists("p.vda.active"));
	secondary_free(r);
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

/* The stamp of j after the disk's bytes of dir/name. */
static void
stamp_file(struct journal *j, const char *name, char op, uint64_t size)
{
	unsigned char stamp[JOURNAL_STAMP_LEN];
	char path[512];
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	journal_stamp(j, op, stamp);
	cr_assert_eq(pwrite(fd, stamp, sizeof stamp, size),
		     (ssize_t) sizeof stamp);
	close(fd);
}

/* Journal NAME: A 0 4096, H 8192 4096, then D 0 1024 appended and a
 * torn record after it; the buffer files (made before) stamped.
 */
static void
put_journal(const char *name, const char *disk, uint64_t size)
{
	struct journal_rec recs[] = { { 'A', 0, 4096 }, { 'H', 8192, 4096 } };
	int dfd = open(dir, O_RDONLY | O_DIRECTORY), fd;
	struct journal *j;

	cr_assert_geq(dfd, 0);
	j = journal_create(dfd, name, disk, size, 0, recs, 2);
	cr_assert_not_null(j);
	cr_assert_eq(journal_commit(j), 0);
	cr_assert_eq(journal_append(j, 'D', 0, 1024), 0);
	stamp_file(j, "p.vda.active", JOURNAL_ACTIVE, size);
	stamp_file(j, "p.vda.hidden", JOURNAL_HIDDEN, size);
	journal_close(j);
	fd = openat(dfd, name, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "D\0\0\0\0\0", 6), 6);
	close(fd);
	close(dfd);
}

Test(durable, resume_commits_the_journal_but_not_over_dropped_ranges)
{
	r = test_secondary(1 * MiB, 0x11, dir);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	/* What a killed failover left: active holds 0xbb at [0, 4K), hidden
	 * 0x22 at [8K, 12K), and the VM wrote [0, 1K) into S afterwards.
	 */
	file_with("p.vda.active", 1 * MiB, 0, 4096, 0xbb);
	file_with("p.vda.hidden", 1 * MiB, 8192, 4096, 0x22);
	put_journal("p.vda.journal", "vda", 1 * MiB);
	primary_fill(d, 0, 1024, 0xee);		/* S in none: as the VM left it */
	cr_assert_eq(secondary_resume_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 1024, 0xee);
	expect_disk(d, 1024, 3072, 0xbb);
	expect_disk(d, 4096, 4096, 0x11);
	expect_disk(d, 8192, 4096, 0x22);
	cr_assert_not(exists("p.vda.journal"));
	secondary_free(r);
}

Test(durable, resume_without_journal_fails_and_says_why)
{
	char msg[512];

	r = test_secondary(1 * MiB, 0x11, dir);
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	cr_assert_eq(secondary_resume_failover(r), -1);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "p.vda.journal") != NULL, "%s", msg);
	cr_assert_eq(secondary_state(r), SECONDARY_NONE);
	secondary_free(r);
}

Test(durable, restore_done_refuses_primary_writes)
{
	char buf[512] = { 0 };

	r = test_secondary(1 * MiB, 0x11, NULL);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_restore_done(r), 0);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	cr_assert_eq(secondary_accepts_primary(r), 0);
	cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), -1);
	cr_assert_eq(errno, ESHUTDOWN);
	secondary_free(r);
}

static int
failing_hook(void *opaque, enum secondary_state next, bool journaled)
{
	(void) opaque;
	(void) journaled;
	if (next == SECONDARY_DONE) {
		errno = EROFS;
		return -1;
	}
	return 0;
}

Test(durable, stop_is_refused_when_done_cannot_be_recorded)
{
	r = test_secondary(1 * MiB, 0x11, NULL);
	secondary_set_state_hook(r, failing_hook, NULL);
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_stop(r), -1);
	cr_assert_eq(errno, EIO);
	cr_assert_eq(secondary_state(r), SECONDARY_RUNNING);
	/* And a commit that cannot record done ends in failover_failed. */
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	secondary_free(r);
}

/* r, d: a durable secondary whose commit failed at its first write to S:
 * the primary wrote 0xaa over [0, 8 KiB), the VM 0xbb over [16, 24 KiB).
 */
static void
failed_commit(void)
{
	struct store_factory f = store_memory_factory();

	memset(&faults, 0, sizeof faults);
	r = secondary_new(&f);
	cr_assert_not_null(r);
	d = secondary_add_disk(r, "vda", faulty_image(1 * MiB, 0x11));
	cr_assert_not_null(d);
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 8192, 0xaa);
	view_fill(d, 16384, 8192, 0xbb);
	atomic_store(&faults.image_write_countdown, 1);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
}

Test(durable, view_writes_after_a_failed_commit_are_journaled)
{
	char tail[128], before[128];

	failed_commit();
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	cr_assert(exists("p.vda.journal"));
	memset(&faults, 0, sizeof faults);
	/* Buffered: into active, and an A record; not buffered: into S, and
	 * a D record.  Each record is in the journal when its write returns
	 * (a kill -9 loses none), and not yet when S is synced for it: the
	 * data goes first, so a power cut leaves no record without its data.
	 */
	journal_tail(before, sizeof before);
	faults.image_flush_hook = tail_at_flush;
	flush_tail[0] = '\0';
	view_fill(d, 16384, 4096, 0xcc);
	cr_assert_str_eq(flush_tail, before, "a record before S was synced");
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "A 16384 4096", "not recorded when it returned");
	flush_tail[0] = '\0';
	view_fill(d, 65536, 4096, 0xdd);
	cr_assert_str_eq(flush_tail, "A 16384 4096",
			 "a record before S was synced");
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "D 65536 4096", "not recorded when it returned");
	cr_assert_eq(secondary_view_flush(d), 0);
	faults.image_flush_hook = NULL;
	journal_rec_back(tail, sizeof tail, 2);
	cr_assert_str_eq(tail, "A 16384 4096");
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "D 65536 4096");
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 8192, 0x11);
	expect_disk(d, 16384, 4096, 0xcc);
	expect_disk(d, 20480, 4096, 0xbb);
	expect_disk(d, 65536, 4096, 0xdd);
	cr_assert_not(exists("p.vda.journal"));
	cr_assert_not(exists("p.vda.active"));
	secondary_free(r);
}

Test(durable, a_clean_close_appends_the_noted_records)
{
	char tail[128];

	failed_commit();
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	memset(&faults, 0, sizeof faults);
	/* Recorded when it returns, and the close leaves it there. */
	view_fill(d, 65536, 4096, 0xdd);
	secondary_free(r);
	journal_tail(tail, sizeof tail);
	cr_assert_str_eq(tail, "D 65536 4096");
}

/* Two view writes whose records share one notes_flush: the first
 * writer's flush waits at S's sync while the second writes, flushes both
 * records, and meets an append that fails.  Each write that returns 0
 * must have its record in the journal: a write whose record was dropped
 * with the other's failure must fail too.
 */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shared_cond = PTHREAD_COND_INITIALIZER;
static int shared_step;		/* 1: first at S's sync; 2: second done */

static void
hold_first_flush(void)
{
	pthread_mutex_lock(&shared_lock);
	if (shared_step == 0) {
		shared_step = 1;
		pthread_cond_broadcast(&shared_cond);
		while (shared_step < 2)
			pthread_cond_wait(&shared_cond, &shared_lock);
	}
	pthread_mutex_unlock(&shared_lock);
}

static void *
first_writer(void *arg)
{
	static char buf[4096];

	(void) arg;
	memset(buf, 0xdd, sizeof buf);
	return (void *) (intptr_t) secondary_view_write(d, buf, sizeof buf,
						      65536);
}

static bool
journal_has(char op, uint64_t off)
{
	struct journal_info info;
	char err[256];
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	bool found = false;
	size_t i;

	cr_assert_geq(dfd, 0);
	cr_assert_eq(journal_load(dfd, "p.vda.journal", "vda", 0, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	close(dfd);
	for (i = info.nsnap; i < info.nrecs; i++)
		if (info.recs[i].op == op && info.recs[i].off == off)
			found = true;
	journal_info_release(&info);
	return found;
}

Test(durable, a_write_whose_record_was_not_appended_never_succeeds)
{
	uint64_t saved = journal_max_bytes;
	static char buf[4096];
	struct stat st;
	char path[512];
	pthread_t t;
	void *first;
	int second;

	failed_commit();
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	memset(&faults, 0, sizeof faults);
	/* The journal takes no more records (as when its file system is
	 * full and the cut-back worked).
	 */
	snprintf(path, sizeof path, "%s/p.vda.journal", dir);
	cr_assert_eq(stat(path, &st), 0);
	journal_max_bytes = (uint64_t) st.st_size;
	shared_step = 0;
	faults.image_flush_hook = hold_first_flush;
	cr_assert_eq(pthread_create(&t, NULL, first_writer, NULL), 0);
	pthread_mutex_lock(&shared_lock);
	while (shared_step < 1)
		pthread_cond_wait(&shared_cond, &shared_lock);
	pthread_mutex_unlock(&shared_lock);
	memset(buf, 0xee, sizeof buf);
	second = secondary_view_write(d, buf, sizeof buf, 131072);
	pthread_mutex_lock(&shared_lock);
	shared_step = 2;
	pthread_cond_broadcast(&shared_cond);
	pthread_mutex_unlock(&shared_lock);
	pthread_join(t, &first);
	faults.image_flush_hook = NULL;
	journal_max_bytes = saved;
	cr_assert((intptr_t) first == -1 || journal_has('D', 65536),
		  "the first write returned 0 without its record");
	cr_assert(second == -1 || journal_has('D', 131072),
		  "the second write returned 0 without its record");
	secondary_free(r);
}

static int
refusing_failover_hook(void *opaque, enum secondary_state next, bool journaled)
{
	int *refuse = opaque;

	(void) journaled;
	if (next == SECONDARY_FAILOVER && *refuse) {
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

Test(durable, failover_that_cannot_be_recorded_fails_and_can_be_retried)
{
	char msg[512];
	int refuse = 1;

	r = test_secondary(1 * MiB, 0x11, dir);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	secondary_set_state_hook(r, refusing_failover_hook, &refuse);
	cr_assert_eq(secondary_start(r), 0);
	primary_fill(d, 0, 8192, 0xaa);
	view_fill(d, 4096, 8192, 0xbb);
	cr_assert_eq(secondary_failover(r), -1);
	cr_assert_eq(errno, EIO);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "not durable") != NULL, "%s", msg);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	expect_disk(d, 0, 8192, 0xaa);		/* nothing committed */
	expect_view(d, 4096, 8192, 0xbb);
	refuse = 0;
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 4096, 0x11);
	expect_disk(d, 4096, 8192, 0xbb);
	cr_assert_not(exists("p.vda.journal"));
	secondary_free(r);
}

/* A failover whose snapshot would make a journal larger than a replay
 * accepts fails before S is touched, says why, and can be retried.
 */
Test(durable, failover_refuses_a_journal_its_replay_would_refuse)
{
	uint64_t saved = journal_max_bytes;
	char msg[512];
	int i;

	r = test_secondary(1 * MiB, 0x11, dir);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	cr_assert_eq(secondary_start(r), 0);
	for (i = 0; i < 4; i++)		/* four separate extents */
		view_fill(d, (uint64_t) i * 65536, 4096, 0xbb);
	journal_max_bytes = JOURNAL_HEADER_LEN + 4 * JOURNAL_REC_LEN;
	cr_assert_eq(secondary_failover(r), -1);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "too large") != NULL, "%s", msg);
	cr_assert_eq(secondary_state(r), SECONDARY_FAILOVER_FAILED);
	cr_assert_not(exists("p.vda.journal"));
	expect_disk(d, 0, 4096, 0x11);		/* nothing committed */
	expect_view(d, 0, 4096, 0xbb);
	journal_max_bytes = saved;
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 196608, 4096, 0xbb);
	secondary_free(r);
}

static int consistent_hook_calls;
static bool consistent_hook_saw;

static int
consistent_hook(void *opaque, enum secondary_state next, bool journaled)
{
	(void) journaled;
	(void) next;
	consistent_hook_calls++;
	consistent_hook_saw = secondary_s_consistent(opaque);
	return 0;
}

Test(durable, start_needs_force_while_s_may_be_behind)
{
	char msg[512];

	r = test_secondary(1 * MiB, 0x11, NULL);
	secondary_set_state_hook(r, consistent_hook, r);
	secondary_set_s_consistent(r, false);
	cr_assert_eq(secondary_start(r), -1);
	cr_assert_eq(errno, EAGAIN);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "start force") != NULL, "%s", msg);
	cr_assert_eq(secondary_state(r), SECONDARY_NONE);
	/* A primary connects: remembered through the hook, start works. */
	consistent_hook_calls = 0;
	secondary_note_primary_connected(r);
	cr_assert_eq(consistent_hook_calls, 1);
	cr_assert(consistent_hook_saw);
	secondary_note_primary_connected(r);
	cr_assert_eq(consistent_hook_calls, 1, "only the first one is news");
	cr_assert_eq(secondary_start(r), 0);
	secondary_free(r);

	r = test_secondary(1 * MiB, 0x11, NULL);
	secondary_set_s_consistent(r, false);
	cr_assert_eq(secondary_start_force(r), 0);
	cr_assert_eq(secondary_state(r), SECONDARY_RUNNING);
	cr_assert(secondary_s_consistent(r));
	secondary_free(r);
}
