/* SPDX-License-Identifier: MIT */
/* core/image-qcow2.c: qcow2 images read through libqcow, written to an
 * overlay that survives a clean restart.  Images are made with qemu-img and
 * filled with qemu-io; every comparison is byte-exact.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "support.h"

#define MiB (1024 * 1024)
#define DISK (4 * MiB)

static char dir[64];		/* this test's temp dir, also the overlay dir */
static char qpath[128];		/* DIR/disk.qcow2 */
static char ovl[128], map[128];	/* the overlay and its map for "vda" */
static uint8_t *expect;		/* what the disk must read */

static void
sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	r = system(cmd);
	cr_assert_eq(r, 0, "command failed (%d): %s", r, cmd);
}

/* A 4 MiB qcow2 with 0x5a in [0, 1M) and 0xa5 in [1.5M, 1.5M + 4608),
 * zeros elsewhere; expect holds the same.
 */
static void
setup(void)
{
	if (system("command -v qemu-img >/dev/null && "
		   "command -v qemu-io >/dev/null") != 0)
		cr_skip_test("qemu-img and qemu-io are needed");
	strcpy(dir, "/tmp/colofs-qcow2-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(qpath, sizeof qpath, "%s/disk.qcow2", dir);
	snprintf(ovl, sizeof ovl, "%s/vda.overlay", dir);
	snprintf(map, sizeof map, "%s/vda.overlay.map", dir);
	sh("qemu-img create -q -f qcow2 %s %d", qpath, DISK);
	sh("qemu-io -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 1536k 4608' "
	   "%s >/dev/null", qpath);
	expect = calloc(1, DISK);
	cr_assert_not_null(expect);
	memset(expect, 0x5a, MiB);
	memset(expect + 1536 * 1024, 0xa5, 4608);
}

static void
teardown(void)
{
	if (dir[0] != '\0') {
		char cmd[128];

		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	free(expect);
}

TestSuite(qcow2, .init = setup, .fini = teardown, .timeout = 60);

static struct image *
open_ok(void)
{
	struct image *img = image_qcow2_open(qpath, dir, "vda");

	cr_assert_not_null(img, "open %s: %s", qpath, strerror(errno));
	return img;
}

/* The whole disk reads exactly as expect. */
static void
assert_disk_is_expected(struct image *img)
{
	uint8_t *buf = malloc(DISK);
	size_t i;

	cr_assert_not_null(buf);
	cr_assert_eq(img->ops->pread(img, buf, DISK, 0), 0);
	if (memcmp(buf, expect, DISK) != 0) {
		for (i = 0; i < DISK && buf[i] == expect[i]; i++)
			;
		cr_assert_fail("disk differs at byte %zu: 0x%02x, want 0x%02x",
			       i, buf[i], expect[i]);
	}
	free(buf);
}

static void
write_pattern(struct image *img, uint64_t off, size_t len, int byte)
{
	uint8_t *buf = malloc(len);

	cr_assert_not_null(buf);
	memset(buf, byte, len);
	cr_assert_eq(img->ops->pwrite(img, buf, len, off), 0);
	memcpy(expect + off, buf, len);
	free(buf);
}

static void
zero(struct image *img, uint64_t off, uint64_t len)
{
	cr_assert_eq(img->ops->zero(img, off, len, true), 0);
	memset(expect + off, 0, len);
}

/* Runs open while stderr goes to a file; returns what was logged. */
static char logged[4096];

static struct image *
open_logged(const char *path, const char *odir, const char *name)
{
	char lpath[128];
	struct image *img;
	int fd, saved_fd, saved;
	ssize_t n;

	snprintf(lpath, sizeof lpath, "%s/stderr.log", dir);
	fd = open(lpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_neq(fd, -1);
	fflush(stderr);
	saved_fd = dup(2);
	dup2(fd, 2);
	img = image_qcow2_open(path, odir, name);
	saved = errno;
	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	n = pread(fd, logged, sizeof logged - 1, 0);
	logged[n > 0 ? n : 0] = '\0';
	close(fd);
	errno = saved;
	return img;
}

static void
expect_open_error(const char *path, const char *odir, const char *why)
{
	struct image *img = open_logged(path, odir, "vda");

	cr_assert_null(img, "open must fail with \"%s\"", why);
	cr_assert_neq(errno, 0);
	cr_assert_not_null(strstr(logged, why),
			   "log \"%s\" does not contain \"%s\"", logged, why);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	cr_assert_neq(fd, -1, "open %s", path);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc(st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, st.st_size, 0), st.st_size);
	close(fd);
	*len = st.st_size;
	return buf;
}

Test(qcow2, reads_what_qemu_io_wrote)
{
	struct image *img = open_ok();

	cr_assert_str_eq(img->ops->name, "qcow2");
	cr_assert_eq(img->size, DISK);
	cr_assert_eq(img->fd, -1);
	assert_disk_is_expected(img);
	image_close(img);
}

/* Write-behind needs S's data in one fd (core/image.h): qcow2 skips it. */
Test(qcow2, write_behind_is_left_to_raw_images)
{
	struct image *img = open_ok();

	cr_assert_eq(image_write_behind(img, 1 << 20), 0);
	cr_assert_null(img->wb);
	image_close(img);
}

Test(qcow2, unaligned_reads_across_qcow_data)
{
	struct image *img = open_ok();
	uint8_t buf[10000];

	/* Across the end of the 0x5a range, and inside the 0xa5 one. */
	cr_assert_eq(img->ops->pread(img, buf, 7777, MiB - 3333), 0);
	cr_assert_eq(memcmp(buf, expect + MiB - 3333, 7777), 0);
	cr_assert_eq(img->ops->pread(img, buf, 1, 1536 * 1024 + 4607), 0);
	cr_assert_eq(buf[0], 0xa5);
	cr_assert_eq(img->ops->pread(img, buf, 1, 1536 * 1024 + 4608), 0);
	cr_assert_eq(buf[0], 0);
	image_close(img);
}

Test(qcow2, write_then_read_back)
{
	struct image *img = open_ok();

	write_pattern(img, 1000, 5000, 0x11);		/* over 0x5a */
	write_pattern(img, MiB - 100, 300, 0x22);	/* straddles its end */
	write_pattern(img, 3 * MiB + 1, 65537, 0x33);	/* over zeros */
	write_pattern(img, DISK - 1, 1, 0x44);		/* the last byte */
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, overlapping_writes_keep_the_latest)
{
	struct image *img = open_ok();

	write_pattern(img, 4096, 8192, 0x11);
	write_pattern(img, 6000, 100, 0x22);
	write_pattern(img, 0, 5000, 0x33);
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, writes_leave_the_qcow2_file_alone)
{
	size_t len_before, len_after;
	uint8_t *before = read_file(qpath, &len_before), *after;
	struct image *img = open_ok();

	write_pattern(img, 0, 2 * MiB, 0x77);
	zero(img, 1536 * 1024, 8192);
	cr_assert_eq(img->ops->flush(img), 0);
	image_close(img);
	after = read_file(qpath, &len_after);
	cr_assert_eq(len_before, len_after);
	cr_assert_eq(memcmp(before, after, len_before), 0);
	/* And qemu-io still sees the original content. */
	sh("qemu-io -c 'read -P 0x5a 0 1M' -c 'read -P 0xa5 1536k 4608' "
	   "%s | grep -q 'read 4608/4608'", qpath);
	free(before);
	free(after);
}

Test(qcow2, zero_reads_zeros_and_shadows_the_qcow2)
{
	struct image *img = open_ok();

	zero(img, 4096, 65536);			/* inside 0x5a */
	zero(img, 1536 * 1024 + 100, 200);	/* inside 0xa5, unaligned */
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, zero_over_an_earlier_overlay_write)
{
	struct image *img = open_ok();

	write_pattern(img, 2 * MiB, 10000, 0x66);
	zero(img, 2 * MiB + 1000, 3000);
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, overlay_bytes_counts_the_union_of_writes)
{
	struct image *img = open_ok();

	cr_assert_not_null(img->ops->overlay_bytes);
	cr_assert_eq(img->ops->overlay_bytes(img), 0);
	write_pattern(img, 1000, 5000, 1);
	cr_assert_eq(img->ops->overlay_bytes(img), 5000);
	write_pattern(img, 3000, 10000, 2);	/* overlaps: union 1000..13000 */
	cr_assert_eq(img->ops->overlay_bytes(img), 12000);
	zero(img, MiB, 65536);
	cr_assert_eq(img->ops->overlay_bytes(img), 12000 + 65536);
	image_close(img);
}

Test(qcow2, overlay_survives_close_and_reopen)
{
	struct image *img = open_ok();
	uint64_t held;

	write_pattern(img, 777, 12345, 0x42);
	write_pattern(img, 3 * MiB, MiB, 0x43);
	zero(img, 512 * 1024, 4096);
	zero(img, 1536 * 1024, 512);
	held = img->ops->overlay_bytes(img);
	image_close(img);

	img = open_ok();
	cr_assert_eq(img->ops->overlay_bytes(img), held);
	assert_disk_is_expected(img);
	write_pattern(img, 100, 100, 0x44);
	image_close(img);

	img = open_ok();
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, flush_makes_writes_survive_a_crash)
{
	pid_t pid = fork();
	int status;

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct image *img = image_qcow2_open(qpath, dir, "vda");
		uint8_t buf[3000];

		memset(buf, 0x99, sizeof buf);
		if (img == NULL || img->ops->pwrite(img, buf, sizeof buf,
						    5000) != 0 ||
		    img->ops->flush(img) != 0)
			_exit(1);
		_exit(0);	/* no close: the map is only what flush saved */
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	memset(expect + 5000, 0x99, 3000);

	struct image *img = open_ok();

	cr_assert_eq(img->ops->overlay_bytes(img), 3000);
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, overlay_files_are_named_after_the_disk)
{
	struct image *img = open_ok();
	struct stat st;

	cr_assert_eq(stat(ovl, &st), 0, "%s", ovl);
	cr_assert_eq(st.st_size, DISK, "the overlay is disk-sized");
	cr_assert_eq(stat(map, &st), 0, "%s", map);
	image_close(img);
}

Test(qcow2, probe_picks_qcow2_by_magic)
{
	enum image_format fmt = IMAGE_FORMAT_RAW;
	struct image *img;

	cr_assert_eq(image_probe(qpath, &fmt), 0);
	cr_assert_eq(fmt, IMAGE_FORMAT_QCOW2);
	img = image_open(qpath, IMAGE_FORMAT_AUTO, dir, "vda");
	cr_assert_not_null(img);
	cr_assert_str_eq(img->ops->name, "qcow2");
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, missing_buffer_dir_is_a_clear_error)
{
	struct image *img = open_logged(qpath, NULL, "vda");

	cr_assert_null(img);
	cr_assert_eq(errno, EINVAL);
	cr_assert_not_null(strstr(logged, "needs buffer_dir for its overlay"),
			   "%s", logged);
	cr_assert_not_null(strstr(logged, qpath), "%s", logged);
	log_set_quiet(true);
	img = image_open(qpath, IMAGE_FORMAT_AUTO, NULL, "vda");
	cr_assert_null(img);
	cr_assert_eq(errno, EINVAL);
}

Test(qcow2, corrupt_file_is_a_clear_error)
{
	char bad[128];
	uint8_t junk[65536];
	int fd;

	snprintf(bad, sizeof bad, "%s/bad.qcow2", dir);
	memset(junk, 0xee, sizeof junk);
	memcpy(junk, "QFI\xfb", 4);
	fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t) sizeof junk);
	close(fd);
	expect_open_error(bad, dir, "cannot open: libqcow:");
	cr_assert_not_null(strstr(logged, bad), "%s", logged);
	log_set_quiet(true);
	cr_assert_null(image_open(bad, IMAGE_FORMAT_AUTO, dir, "vda"),
		       "the probe picks qcow2 and libqcow refuses it");
	cr_assert_eq(access(ovl, F_OK), -1, "no overlay for a bad image");
}

Test(qcow2, raw_file_forced_to_qcow2_is_refused)
{
	char raw[128];

	snprintf(raw, sizeof raw, "%s/disk.raw", dir);
	sh("truncate -s 1M %s", raw);
	expect_open_error(raw, dir, "unsupported file signature");
}

Test(qcow2, missing_file_keeps_its_errno)
{
	char missing[128];

	snprintf(missing, sizeof missing, "%s/nope.qcow2", dir);
	cr_assert_null(open_logged(missing, dir, "vda"));
	cr_assert_eq(errno, ENOENT);
}

Test(qcow2, size_not_a_multiple_of_512_is_refused)
{
	/* qemu-img rounds sizes up, so patch the header's size field
	 * (big-endian at offset 24) to 1 MiB - 100.
	 */
	uint8_t be[8];
	uint64_t size = MiB - 100;
	int fd, i;

	sh("qemu-img create -q -f qcow2 %s 1M", qpath);
	for (i = 0; i < 8; i++)
		be[i] = size >> (56 - 8 * i);
	fd = open(qpath, O_WRONLY);
	cr_assert_eq(pwrite(fd, be, 8, 24), 8);
	close(fd);
	expect_open_error(qpath, dir, "is not a multiple of 512");
}

Test(qcow2, overlay_for_another_disk_size_is_refused)
{
	struct image *img = open_ok();

	write_pattern(img, 0, 4096, 1);
	image_close(img);
	sh("qemu-img resize -q %s 8M", qpath);
	expect_open_error(qpath, dir, "was made for a disk of 4194304 bytes");
}

Test(qcow2, overlay_for_a_modified_qcow2_is_refused)
{
	struct image *img = open_ok();

	write_pattern(img, 0, 4096, 1);
	image_close(img);
	sh("qemu-io -c 'write -P 0x01 2M 4k' %s >/dev/null", qpath);
	expect_open_error(qpath, dir, "replaced or modified");
}

Test(qcow2, corrupt_map_is_refused)
{
	struct image *img = open_ok();
	uint8_t b;
	int fd;

	write_pattern(img, 0, 4096, 1);
	image_close(img);
	fd = open(map, O_RDWR);
	cr_assert_eq(pread(fd, &b, 1, 64), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, 64), 1);
	close(fd);
	expect_open_error(qpath, dir, "checksum mismatch");
}

Test(qcow2, overlay_without_its_map_is_refused)
{
	struct image *img = open_ok();

	write_pattern(img, 0, 4096, 1);
	image_close(img);
	cr_assert_eq(unlink(map), 0);
	expect_open_error(qpath, dir, "exists without its map");
}

Test(qcow2, map_without_its_overlay_is_refused)
{
	struct image *img = open_ok();

	write_pattern(img, 0, 4096, 1);
	image_close(img);
	cr_assert_eq(unlink(ovl), 0);
	expect_open_error(qpath, dir, "is missing or empty but its map");
}

Test(qcow2, overlay_in_use_is_refused)
{
	struct image *img = open_ok(), *second;

	second = open_logged(qpath, dir, "vda");
	cr_assert_null(second);
	cr_assert_eq(errno, EBUSY);
	cr_assert_not_null(strstr(logged, "in use by another process"),
			   "%s", logged);
	image_close(img);
	img = open_ok();
	image_close(img);
}

Test(qcow2, out_of_range_io_is_refused)
{
	struct image *img = open_ok();
	uint8_t buf[1024] = { 0 };

	log_set_quiet(true);
	cr_assert_eq(img->ops->pread(img, buf, 1024, DISK - 512), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(img->ops->pwrite(img, buf, 1024, DISK - 512), -1);
	cr_assert_eq(img->ops->zero(img, DISK, 1, true), -1);
	cr_assert_eq(img->ops->overlay_bytes(img), 0);
	image_close(img);
}

Test(qcow2, backing_file_is_refused)
{
	char top[128];

	snprintf(top, sizeof top, "%s/top.qcow2", dir);
	sh("qemu-img create -q -f qcow2 -b %s -F qcow2 %s", qpath, top);
	expect_open_error(top, dir, "has a backing file");
}

struct writer {
	struct image *img;
	int id;
};

static void *
writer_thread(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[3000], rb[3000];
	int i;

	/* Each thread owns every fourth 64 KiB chunk; unaligned I/O in it. */
	for (i = 0; i < 16; i++) {
		uint64_t off = (uint64_t) (i * 4 + w->id) * 65536 + 123 + i;

		memset(buf, 0x10 * w->id + i, sizeof buf);
		if (w->img->ops->pwrite(w->img, buf, sizeof buf, off) != 0 ||
		    w->img->ops->pread(w->img, rb, sizeof rb, off) != 0 ||
		    memcmp(buf, rb, sizeof buf) != 0)
			return (void *) 1;
	}
	return NULL;
}

Test(qcow2, parallel_writers_and_readers)
{
	struct image *img = open_ok();
	struct writer w[4];
	pthread_t t[4];
	void *r;
	int i, j;

	for (i = 0; i < 4; i++) {
		w[i] = (struct writer) { .img = img, .id = i };
		cr_assert_eq(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(t[i], &r), 0);
		cr_assert_null(r, "thread %d read back something else", i);
	}
	for (i = 0; i < 4; i++)
		for (j = 0; j < 16; j++)
			memset(expect + (uint64_t) (j * 4 + i) * 65536 + 123 + j,
			       0x10 * i + j, 3000);
	assert_disk_is_expected(img);
	cr_assert_eq(img->ops->overlay_bytes(img), 64 * 3000);
	image_close(img);
}

Test(qcow2, reads_a_version_2_image)
{
	char v2[128];
	struct image *img;

	snprintf(v2, sizeof v2, "%s/v2.qcow2", dir);
	sh("qemu-img convert -O qcow2 -o compat=0.10 %s %s", qpath, v2);
	sh("qemu-img info %s | grep -q 'compat: 0.10'", v2);
	img = image_qcow2_open(v2, dir, "vda");
	cr_assert_not_null(img);
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, reads_a_compressed_image)
{
	char zpath[128];
	struct image *img;

	snprintf(zpath, sizeof zpath, "%s/z.qcow2", dir);
	sh("qemu-img convert -c -O qcow2 %s %s", qpath, zpath);
	img = image_qcow2_open(zpath, dir, "vda");
	cr_assert_not_null(img);
	assert_disk_is_expected(img);
	image_close(img);
}

Test(qcow2, zstd_image_is_refused_at_open)
{
	/* libqcow cannot decompress zstd: it must refuse at open, never
	 * return wrong data later.
	 */
	char zpath[128], cmd[512];

	snprintf(zpath, sizeof zpath, "%s/zstd.qcow2", dir);
	snprintf(cmd, sizeof cmd, "qemu-img convert -c -O qcow2 -o "
		 "compression_type=zstd %s %s 2>/dev/null", qpath, zpath);
	if (system(cmd) != 0)
		cr_skip_test("this qemu-img has no zstd");
	expect_open_error(zpath, dir, "unsupported incompatible features");
}

/* Zeroing without punch (the view's ZERO_RANGE) keeps the overlay's
 * blocks, as on a raw file; with punch it may give them back.  Both read
 * zeros over the qcow2's data.
 */
Test(qcow2, zero_keeps_the_overlay_blocks_unless_asked_to_punch)
{
	struct image *img = open_ok();
	long long full, after;

	write_pattern(img, 0, 2 * MiB, 0x11);
	full = test_flushed_blocks(img, ovl);
	cr_assert_eq(img->ops->zero(img, 0, MiB, false), 0);
	memset(expect, 0, MiB);
	after = test_flushed_blocks(img, ovl);
	cr_assert_geq(after, full, "ZERO_RANGE freed %lld blocks",
		      full - after);
	cr_assert_eq(img->ops->zero(img, MiB, MiB, true), 0);
	memset(expect + MiB, 0, MiB);
	if (test_flushed_blocks(img, ovl) >= after)
		cr_log_warn("this file system punched no hole");
	assert_disk_is_expected(img);
	image_close(img);
}
