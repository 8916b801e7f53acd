/* SPDX-License-Identifier: MIT */
/* The failover journal's format (core/journal.c): what it records, that
 * every damaged byte is refused, and that a short append cannot poison it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faulty.h"
#include "fdio.h"
#include "journal.h"
#include "log.h"
#include "support.h"

#define MiB (1024 * 1024)

static char *dir;
static int dirfd_;

static void
setup(void)
{
	log_set_quiet(true);
	dir = test_temp_dir();
	dirfd_ = fdio_dir_open(dir);
	cr_assert_geq(dirfd_, 0);
}

static void
teardown(void)
{
	close(dirfd_);
	test_cleanup_dir(dir);
}

TestSuite(journal, .init = setup, .fini = teardown);

static const struct journal_rec snap[] = {
	{ 'A', 0, 4096 }, { 'H', 8192, 512 }, { 'A', 65536, 1024 },
};

/* A committed journal "j" of the snapshot above and two appends (A, D). */
static struct journal *
make_journal(void)
{
	struct journal *j = journal_create(dirfd_, "j", "vda", 1 * MiB, 7,
					   snap, 3);

	cr_assert_not_null(j);
	cr_assert_eq(journal_commit(j), 0);
	cr_assert_eq(journal_append(j, 'D', 1024, 100), 0);
	cr_assert_eq(journal_append(j, 'A', 4096, 4096), 0);
	return j;
}

static unsigned char *
slurp(size_t *len)
{
	char path[512];
	struct stat st;
	unsigned char *buf;
	int fd;

	snprintf(path, sizeof path, "%s/j", dir);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc(st.st_size + 1);
	cr_assert_eq(read(fd, buf, st.st_size), st.st_size);
	close(fd);
	*len = st.st_size;
	return buf;
}

Test(journal, replays_the_snapshot_then_appends_and_ignores_a_torn_tail)
{
	struct journal *j = make_journal();
	struct journal_info info;
	char err[256];
	int fd;

	journal_close(j);
	/* A power cut tore a third append: 17 bytes of it. */
	fd = openat(dirfd_, "j", O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "D\0\0\0\0\0\0\0\5\0\0\0\0\0\0\0\1", 17), 17);
	close(fd);
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, &j, err,
				  sizeof err), 0, "%s", err);
	cr_assert(info.torn);
	cr_assert_eq(info.generation, 7);
	cr_assert_str_eq(info.disk, "vda");
	cr_assert_eq(info.nsnap, 3);
	cr_assert_eq(info.nrecs, 5);
	cr_assert_eq(info.recs[1].op, 'H');
	cr_assert_eq(info.recs[1].off, 8192);
	cr_assert_eq(info.recs[3].op, 'D');
	cr_assert_eq(info.recs[3].off, 1024);
	cr_assert_eq(info.recs[3].len, 100);
	cr_assert_eq(info.recs[4].op, 'A');
	cr_assert_eq(info.active_end, 65536 + 1024);
	cr_assert_eq(info.hidden_end, 8192 + 512);
	journal_info_release(&info);
	/* Appending goes on after the last whole record. */
	cr_assert_eq(journal_append(j, 'D', 0, 512), 0);
	journal_close(j);
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	cr_assert_not(info.torn);
	cr_assert_eq(info.nrecs, 6);
	cr_assert_eq(info.recs[5].op, 'D');
	cr_assert_eq(info.recs[5].len, 512);
	journal_info_release(&info);
}

Test(journal, every_damaged_byte_but_the_last_record_is_refused)
{
	struct journal_info info;
	unsigned char *buf;
	size_t len, i;
	char err[256];

	journal_close(make_journal());
	buf = slurp(&len);
	cr_assert_eq(len, JOURNAL_HEADER_LEN + 6 * JOURNAL_REC_LEN);
	/* Header, snapshot, end record and the first append: every bit
	 * that matters; the last record may be torn (next test).
	 */
	for (i = 0; i < len - JOURNAL_REC_LEN; i++) {
		buf[i] ^= 0x10;
		err[0] = '\0';
		cr_assert_eq(journal_parse(buf, len, "vda", 1 * MiB, &info,
					   err, sizeof err), -1,
			     "byte %zu damaged, journal accepted", i);
		cr_assert_eq(errno, EINVAL);
		cr_assert_neq(err[0], '\0', "byte %zu: no reason", i);
		buf[i] ^= 0x10;
	}
	/* Cut anywhere before the end of the end record: never committed. */
	for (i = 0; i < JOURNAL_HEADER_LEN + 4 * JOURNAL_REC_LEN; i++) {
		cr_assert_eq(journal_parse(buf, i, "vda", 1 * MiB, &info, err,
					   sizeof err), -1, "cut at %zu", i);
		if (i >= JOURNAL_HEADER_LEN)
			cr_assert(strstr(err, "end record") != NULL,
				  "cut at %zu: %s", i, err);
	}
	cr_assert_eq(journal_parse(buf, len, "vda", 1 * MiB, &info, err,
				   sizeof err), 0, "%s", err);
	journal_info_release(&info);
	free(buf);
}

Test(journal, a_damaged_last_record_is_a_torn_append_and_ignored)
{
	struct journal_info info;
	unsigned char *buf;
	size_t len;
	char err[256];

	journal_close(make_journal());
	buf = slurp(&len);
	buf[len - 20] ^= 1;
	cr_assert_eq(journal_parse(buf, len, "vda", 1 * MiB, &info, err,
				   sizeof err), 0, "%s", err);
	cr_assert(info.torn);
	cr_assert_eq(info.nrecs, 4);
	cr_assert_eq(info.valid_len, len - JOURNAL_REC_LEN);
	journal_info_release(&info);
	free(buf);
}

Test(journal, refuses_another_disk_or_size_and_names_what)
{
	struct journal_info info;
	char err[256];

	journal_close(make_journal());
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 2 * MiB, &info, NULL,
				  err, sizeof err), -1);
	cr_assert(strstr(err, "2097152") != NULL, "%s", err);
	cr_assert_eq(journal_load(dirfd_, "j", "vdb", 1 * MiB, &info, NULL,
				  err, sizeof err), -1);
	cr_assert(strstr(err, "vdb") != NULL, "%s", err);
	cr_assert_eq(journal_load(dirfd_, "nope", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(symlinkat("j", dirfd_, "link"), 0);
	cr_assert_eq(journal_load(dirfd_, "link", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), -1);
}

Test(journal, an_uncommitted_journal_keeps_its_temporary_name)
{
	struct journal *j = journal_create(dirfd_, "j", "vda", 1 * MiB, 0,
					   snap, 3);
	struct stat st;

	cr_assert_not_null(j);
	cr_assert_eq(fstatat(dirfd_, "j", &st, 0), -1);
	cr_assert_eq(journal_commit(j), 0);
	cr_assert_eq(fstatat(dirfd_, "j", &st, 0), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	journal_close(j);
}

/* Issue 23, finding 3: appends across ENOSPC on a tiny tmpfs, then
 * replay.  A short append must not leave a partial record for the next
 * one to glue onto.
 */
Test(journal, short_appends_on_a_full_tmpfs_are_cut_back)
{
	struct journal_info info;
	struct journal *j;
	char mnt[512], err[256];
	int mfd, ffd, ok = 0, failed = 0, i, k;

	snprintf(mnt, sizeof mnt, "%s/tmpfs", dir);
	cr_assert_eq(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k,nr_inodes=16") == -1)
		cr_skip_test("cannot mount a tmpfs here: %s", strerror(errno));
	mfd = fdio_dir_open(mnt);
	cr_assert_geq(mfd, 0);
	j = journal_create(mfd, "j", "vda", 1 * MiB, 0, snap, 3);
	cr_assert_not_null(j);
	cr_assert_eq(journal_commit(j), 0);
	/* Fill the file system. */
	ffd = openat(mfd, "filler", O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(ffd, 0);
	{
		char page[4096];

		memset(page, 0, sizeof page);
		while (write(ffd, page, sizeof page) > 0)
			;
	}
	/* Append until the journal's page is full and more. */
	for (i = 0; i < 200; i++) {
		if (journal_append(j, 'D', (uint64_t) i * 512, 512) == 0)
			ok++;
		else
			failed++;
	}
	cr_assert_gt(failed, 0, "the file system never filled");
	/* Space again: three more appends. */
	close(ffd);
	cr_assert_eq(unlinkat(mfd, "filler", 0), 0);
	for (k = 0; k < 3; k++)
		cr_assert_eq(journal_append(j, 'A', 4096 * (uint64_t) k, 4096),
			     0);
	journal_close(j);
	cr_assert_eq(journal_load(mfd, "j", "vda", 1 * MiB, &info, NULL, err,
				  sizeof err), 0, "%s", err);
	cr_assert_not(info.torn);
	cr_assert_eq(info.nrecs, 3 + (size_t) ok + 3);
	for (i = 0; i < ok; i++)
		cr_assert_eq(info.recs[3 + i].off, (uint64_t) i * 512);
	cr_assert_eq(info.recs[3 + ok].op, 'A');
	cr_assert_eq(info.recs[3 + ok + 2].off, 8192);
	journal_info_release(&info);
	close(mfd);
	cr_assert_eq(umount(mnt), 0);
}

Test(journal, a_buffer_stamp_names_its_journal_and_buffer)
{
	struct journal *j = make_journal(), *other;
	unsigned char stamp[JOURNAL_STAMP_LEN], theirs[JOURNAL_STAMP_LEN];
	struct journal_info info;
	char err[256];

	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	journal_stamp(j, JOURNAL_ACTIVE, stamp);
	cr_assert_eq(journal_stamp_check(&info, JOURNAL_ACTIVE, stamp, err,
					 sizeof err), 0, "%s", err);
	/* The hidden buffer's file in the active one's place. */
	cr_assert_eq(journal_stamp_check(&info, JOURNAL_HIDDEN, stamp, err,
					 sizeof err), -1);
	cr_assert(strstr(err, "active buffer") != NULL, "%s", err);
	/* A stamp of neither buffer: the message must not call it one. */
	journal_stamp(j, JOURNAL_DROP, theirs);
	cr_assert_eq(journal_stamp_check(&info, JOURNAL_ACTIVE, theirs, err,
					 sizeof err), -1);
	cr_assert(strstr(err, "hidden") == NULL, "%s", err);
	cr_assert(strstr(err, "neither buffer") != NULL, "%s", err);
	/* A buffer file of another failover of the same disk. */
	other = journal_create(dirfd_, "k", "vda", 1 * MiB, 0, snap, 3);
	cr_assert_not_null(other);
	journal_stamp(other, JOURNAL_ACTIVE, theirs);
	cr_assert_eq(journal_stamp_check(&info, JOURNAL_ACTIVE, theirs, err,
					 sizeof err), -1);
	cr_assert(strstr(err, "another failover") != NULL, "%s", err);
	/* Damaged. */
	stamp[17] ^= 1;
	cr_assert_eq(journal_stamp_check(&info, JOURNAL_ACTIVE, stamp, err,
					 sizeof err), -1);
	cr_assert(strstr(err, "no valid buffer stamp") != NULL, "%s", err);
	journal_info_release(&info);
	journal_close(other);
	journal_close(j);
}

static void *
append_many(void *arg)
{
	struct journal *j = arg;
	int i;

	for (i = 0; i < 500; i++)
		cr_assert_eq(journal_append(j, 'D', (uint64_t) i * 512, 512), 0);
	return NULL;
}

Test(journal, concurrent_appends_all_land_whole)
{
	struct journal *j = make_journal();
	struct journal_info info;
	pthread_t t[4];
	char err[256];
	int i;

	for (i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, append_many, j), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	journal_close(j);
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	cr_assert_not(info.torn);
	cr_assert_eq(info.nrecs, 5 + 4 * 500);
	journal_info_release(&info);
}

/* The writer never makes a journal that journal_load refuses: with the
 * limit lowered to the header and five records, the snapshot of three,
 * its end record and one append fit; the next append and a larger
 * snapshot are refused (EFBIG), and what was written still loads.
 */
Test(journal, the_writer_stops_where_the_reader_would_refuse)
{
	uint64_t saved = journal_max_bytes;
	struct journal_rec many[5] = {
		{ 'A', 0, 512 }, { 'A', 1024, 512 }, { 'A', 2048, 512 },
		{ 'A', 3072, 512 }, { 'A', 4096, 512 },
	};
	struct journal_info info;
	struct journal *j;
	char err[256];

	journal_max_bytes = JOURNAL_HEADER_LEN + 5 * JOURNAL_REC_LEN;
	j = journal_create(dirfd_, "j", "vda", 1 * MiB, 0, snap, 3);
	cr_assert_not_null(j);
	cr_assert_eq(journal_commit(j), 0);
	cr_assert_eq(journal_append(j, 'D', 0, 512), 0);
	cr_assert_eq(journal_append(j, 'D', 512, 512), -1,
		     "an append past the limit was written");
	cr_assert_eq(errno, EFBIG);
	journal_close(j);
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), 0, "%s", err);
	cr_assert_eq(info.nrecs, 4);
	journal_info_release(&info);
	/* Five extents and the end record: one record too many. */
	cr_assert_null(journal_create(dirfd_, "k", "vda", 1 * MiB, 0, many,
				      5));
	cr_assert_eq(errno, EFBIG);
	j = journal_create(dirfd_, "k", "vda", 1 * MiB, 0, many, 4);
	cr_assert_not_null(j, "a journal of exactly the limit is refused");
	journal_close(j);
	journal_max_bytes = saved;
}

/* Out of memory for the records: an error that says so, like any other
 * refusal, never an empty message.
 */
Test(journal, a_parse_without_memory_says_so)
{
	struct journal_info info;
	unsigned char *buf;
	size_t len;
	char err[256];

	journal_close(make_journal());
	buf = slurp(&len);
	atomic_store(&faults.journal_alloc, true);
	err[0] = '\0';
	cr_assert_eq(journal_parse(buf, len, "vda", 1 * MiB, &info, err,
				   sizeof err), -1);
	cr_assert_eq(errno, ENOMEM);
	cr_assert(strstr(err, "memory") != NULL, "no reason: \"%s\"", err);
	err[0] = '\0';
	cr_assert_eq(journal_load(dirfd_, "j", "vda", 1 * MiB, &info, NULL,
				  err, sizeof err), -1);
	cr_assert_eq(errno, ENOMEM);
	cr_assert(strstr(err, "memory") != NULL, "no reason: \"%s\"", err);
	atomic_store(&faults.journal_alloc, false);
	free(buf);
}

static int
fail_sync(void)
{
	errno = EIO;
	return -1;
}

/* After a failed fdatasync the kernel may have dropped the records it
 * could not write, and a second fdatasync reports nothing: a writer
 * whose record another writer appended (sec_notes_flush) would see 0
 * and acknowledge a write without its record.  The failure sticks.
 */
Test(journal, a_failed_sync_fails_every_later_sync_and_append)
{
	struct journal *j = make_journal();

	cr_assert_eq(journal_append(j, 'D', 0, 512), 0);
	journal_sync_fault = fail_sync;
	cr_assert_eq(journal_sync(j), -1);
	journal_sync_fault = NULL;
	errno = 0;
	cr_assert_eq(journal_sync(j), -1, "a sync after a failed one passed");
	cr_assert_eq(errno, EIO);
	cr_assert_eq(journal_append(j, 'D', 512, 512), -1);
	journal_close(j);
}
