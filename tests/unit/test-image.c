/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdio.h"
#include "image.h"
#include "log.h"
#include "support.h"

static char path[64];

static void
make_file(size_t size, const void *head, size_t headlen)
{
	int fd;

	strcpy(path, "/tmp/colofs-unit-image.XXXXXX");
	fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	cr_assert_eq(ftruncate(fd, size), 0);
	if (headlen)
		cr_assert_eq(pwrite(fd, head, headlen, 0), (ssize_t) headlen);
	close(fd);
}

static void
cleanup(void)
{
	unlink(path);
}

TestSuite(image, .init = NULL, .fini = cleanup);

Test(image, raw_open_reports_size)
{
	struct image *img;

	make_file(1 << 20, NULL, 0);
	img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	cr_assert_not_null(img);
	cr_assert_eq(img->size, 1 << 20);
	cr_assert_str_eq(img->ops->name, "raw");
	image_close(img);
}

Test(image, size_not_multiple_of_512_is_refused)
{
	log_set_quiet(true);
	make_file(1000, NULL, 0);
	cr_assert_null(image_open(path, IMAGE_FORMAT_RAW, NULL, "vda"));
	cr_assert_eq(errno, EINVAL);
}

Test(image, missing_image_is_refused)
{
	log_set_quiet(true);
	cr_assert_null(image_open("/nonexistent/vda.img", IMAGE_FORMAT_AUTO,
				  NULL, "vda"));
	cr_assert_eq(errno, ENOENT);
}

Test(image, probe_finds_raw_and_qcow2)
{
	static const char qcow[4] = { 'Q', 'F', 'I', (char) 0xfb };
	enum image_format f;

	make_file(4096, NULL, 0);
	cr_assert_eq(image_probe(path, &f), 0);
	cr_assert_eq(f, IMAGE_FORMAT_RAW);
	unlink(path);
	make_file(4096, qcow, sizeof qcow);
	cr_assert_eq(image_probe(path, &f), 0);
	cr_assert_eq(f, IMAGE_FORMAT_QCOW2);
}

Test(image, format_names_parse_back)
{
	enum image_format f;

	cr_assert_eq(image_format_parse("raw", &f), 0);
	cr_assert_str_eq(image_format_name(f), "raw");
	cr_assert_eq(image_format_parse("qcow2", &f), 0);
	cr_assert_str_eq(image_format_name(f), "qcow2");
	cr_assert_eq(image_format_parse("vmdk", &f), -1);
	cr_assert_eq(errno, EINVAL);
}

Test(image, raw_zero_reads_zeros_and_punches)
{
	struct image *img;
	char buf[8192];

	make_file(1 << 20, NULL, 0);
	img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	memset(buf, 0x77, sizeof buf);
	cr_assert_eq(img->ops->pwrite(img, buf, sizeof buf, 4096), 0);
	cr_assert_eq(img->ops->zero(img, 4096 + 100, 5000, true), 0);
	cr_assert_eq(img->ops->pread(img, buf, sizeof buf, 4096), 0);
	for (int i = 0; i < 8192; i++)
		cr_assert_eq(buf[i], (i >= 100 && i < 5100) ? 0 : 0x77,
			     "byte %d", i);
	cr_assert_eq(img->ops->flush(img), 0);
	image_close(img);
}

Test(image, read_beyond_end_fails)
{
	struct image *img;
	char buf[10];

	log_set_quiet(true);
	make_file(4096, NULL, 0);
	img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	cr_assert_eq(img->ops->pread(img, buf, sizeof buf, 4090), -1);
	cr_assert_eq(errno, EIO);
	image_close(img);
}

/* ZERO_RANGE (punch false) keeps the blocks, as fallocate does on a raw
 * file; punch true gives them back where the file system can.
 */
Test(image, raw_zero_keeps_blocks_unless_asked_to_punch)
{
	static char buf[1 << 20];
	struct image *img;
	long long full, after;

	make_file(4 << 20, NULL, 0);
	img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	cr_assert_not_null(img);
	memset(buf, 0x77, sizeof buf);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(img->ops->pwrite(img, buf, sizeof buf,
					      (uint64_t) i << 20), 0);
	full = test_flushed_blocks(img, path);
	cr_assert_eq(img->ops->zero(img, 1 << 20, 1 << 20, false), 0);
	after = test_flushed_blocks(img, path);
	cr_assert_geq(after, full, "ZERO_RANGE freed %lld blocks",
		      full - after);
	cr_assert_eq(img->ops->pread(img, buf, sizeof buf, 1 << 20), 0);
	for (size_t i = 0; i < sizeof buf; i++)
		cr_assert_eq(buf[i], 0, "byte %zu", i);
	cr_assert_eq(img->ops->zero(img, 2 << 20, 1 << 20, true), 0);
	if (test_flushed_blocks(img, path) >= after)
		cr_log_warn("this file system punched no hole");
	cr_assert_eq(img->ops->pread(img, buf, sizeof buf, 2 << 20), 0);
	for (size_t i = 0; i < sizeof buf; i++)
		cr_assert_eq(buf[i], 0, "byte %zu", i);
	image_close(img);
}

static int
fail_datasync(void)
{
	errno = EIO;
	return -1;
}

/* A failed fdatasync may have lost the data it could not write, and the
 * next one would return 0 (Linux reports the error once): every flush
 * after it must fail too.
 */
Test(image, a_failed_flush_fails_every_later_flush)
{
	struct image *img;

	log_set_quiet(true);
	make_file(1 << 20, NULL, 0);
	img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	cr_assert_not_null(img);
	cr_assert_eq(img->ops->flush(img), 0);
	fdio_datasync_fault = fail_datasync;
	cr_assert_eq(img->ops->flush(img), -1);
	fdio_datasync_fault = NULL;
	errno = 0;
	cr_assert_eq(img->ops->flush(img), -1, "a flush after a failed one "
		     "passed");
	cr_assert_eq(errno, EIO);
	image_close(img);
}
