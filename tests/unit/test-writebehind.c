/* SPDX-License-Identifier: MIT */
/* core/writebehind.c: a file's written pages are sent to the disk early,
 * read back with cachestat(2) where the kernel has it (Linux 6.5).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "support.h"
#include "writebehind.h"

#ifndef SYS_cachestat
#define SYS_cachestat 451	/* x86_64 and the generic table */
#endif

struct cachestat_range {
	uint64_t off, len;
};

struct cachestat_pages {
	uint64_t cache, dirty, writeback, evicted, recently_evicted;
};

static char path[64];

static int
make_file(size_t size)
{
	int fd;

	strcpy(path, "/tmp/colofs-unit-wb.XXXXXX");
	fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	cr_assert_eq(ftruncate(fd, size), 0);
	return fd;
}

static void
cleanup(void)
{
	if (path[0] != '\0')
		unlink(path);
}

TestSuite(writebehind, .fini = cleanup, .timeout = 60);

/* fd's dirty pages, or -1 without cachestat. */
static long long
dirty_pages(int fd)
{
	struct cachestat_range r = { 0, 0 };
	struct cachestat_pages cs;

	if (syscall(SYS_cachestat, fd, &r, &cs, 0) == -1)
		return -1;
	return (long long) cs.dirty;
}

static void
sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&t, NULL);
}

/* Waits up to 10 s for wb to have started bytes (and fd to hold no dirty
 * page, where cachestat tells).
 */
static void
expect_started(struct writebehind *wb, int fd, uint64_t bytes)
{
	uint64_t calls = 0, got = 0;
	long long dirty = 0;
	int i;

	for (i = 0; i < 1000; i++) {
		writebehind_stats(wb, &calls, &got);
		dirty = dirty_pages(fd);
		if (got == bytes && dirty <= 0)
			return;
		sleep_ms(10);
	}
	cr_assert_fail("after 10 s: %llu of %llu bytes started in %llu calls, "
		       "%lld pages dirty", (unsigned long long) got,
		       (unsigned long long) bytes, (unsigned long long) calls,
		       dirty);
}

static void
write_noted(struct writebehind *wb, int fd, uint64_t off, size_t len)
{
	char *buf = malloc(len);

	cr_assert_not_null(buf);
	memset(buf, 0x5a, len);
	cr_assert_eq(pwrite(fd, buf, len, off), (ssize_t) len);
	writebehind_note(wb, off, len);
	free(buf);
}

Test(writebehind, a_full_span_starts_the_writeback_of_its_pages)
{
	int fd = make_file(4 << 20), i;
	struct writebehind *wb = writebehind_new(fd, path, 1 << 20);

	cr_assert_not_null(wb);
	/* Backwards and in pieces: the span still covers them all. */
	for (i = 63; i >= 0; i--)
		write_noted(wb, fd, (uint64_t) i << 16, 1 << 16);
	expect_started(wb, fd, 4 << 20);
	writebehind_free(wb);
	close(fd);
}

Test(writebehind, a_tail_below_every_is_started_once_idle)
{
	int fd = make_file(1 << 20);
	struct writebehind *wb = writebehind_new(fd, path, UINT64_C(1) << 30);
	uint64_t calls, bytes;

	cr_assert_not_null(wb);
	write_noted(wb, fd, 8192, 4096);
	write_noted(wb, fd, 65536, 4096);
	expect_started(wb, fd, 8192);
	writebehind_stats(wb, &calls, &bytes);
	cr_assert_eq(calls, 1, "two notes in one span: one start, not %llu",
		     (unsigned long long) calls);
	writebehind_free(wb);
	close(fd);
}

Test(writebehind, free_leaves_a_pending_span_and_takes_null)
{
	int fd = make_file(1 << 20);
	struct writebehind *wb = writebehind_new(fd, path, UINT64_C(1) << 30);

	cr_assert_not_null(wb);
	write_noted(wb, fd, 0, 4096);
	writebehind_free(wb);
	writebehind_free(NULL);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

Test(writebehind, a_raw_image_notes_its_writes_and_zero_turns_it_off)
{
	struct image *img = test_raw_image(2 << 20, 0);
	char buf[65536];
	int i;

	cr_assert_not_null(img);
	cr_assert_eq(image_write_behind(img, 0), 0);
	cr_assert_null(img->wb, "write_behind = 0 starts no thread");
	cr_assert_eq(image_write_behind(img, 256 << 10), 0);
	cr_assert_not_null(img->wb);
	memset(buf, 0xa5, sizeof buf);
	for (i = 0; i < 32; i++)
		cr_assert_eq(img->ops->pwrite(img, buf, sizeof buf,
					      (uint64_t) i * sizeof buf), 0);
	expect_started(img->wb, img->fd, 2 << 20);
	cr_assert_eq(img->ops->flush(img), 0);
	image_close(img);
}

/* Pages the kernel passed over when their writeback was started (under
 * I/O pressure, WB_SYNC_NONE does) must not wait for the kernel's expiry:
 * once the writes stop, one more start over everything started since the
 * last idle gets them.  Stood in for here by pages dirtied again, unnoted,
 * after their start.
 */
Test(writebehind, idle_after_a_burst_sweeps_what_was_started)
{
	int fd = make_file(2 << 20), i;
	struct writebehind *wb = writebehind_new(fd, path, 1 << 20);
	char buf[65536];
	uint64_t calls, bytes;
	long long dirty = -1;

	cr_assert_not_null(wb);
	if (dirty_pages(fd) < 0)
		cr_skip_test("no cachestat(2) here");
	for (i = 0; i < 32; i++)
		write_noted(wb, fd, (uint64_t) i << 16, 1 << 16);
	expect_started(wb, fd, 2 << 20);
	memset(buf, 0x77, sizeof buf);
	for (i = 0; i < 32; i += 4)		/* not noted */
		cr_assert_eq(pwrite(fd, buf, sizeof buf, (off_t) i << 16),
			     (ssize_t) sizeof buf);
	for (i = 0; i < 1000; i++) {
		dirty = dirty_pages(fd);
		if (dirty == 0)
			break;
		sleep_ms(10);
	}
	writebehind_stats(wb, &calls, &bytes);
	cr_assert_eq(dirty, 0, "%lld pages still dirty 10 s after the burst "
		     "(%llu starts)", dirty, (unsigned long long) calls);
	writebehind_free(wb);
	close(fd);
}
