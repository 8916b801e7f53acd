/* SPDX-License-Identifier: MIT */
/* Helpers shared by the unit tests: temp images and replicas, and exact
 * byte checks.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "store.h"
#include "support.h"

struct image *
test_raw_image(uint64_t size, int fill)
{
	char path[] = "/tmp/colofs-unit-img.XXXXXX";
	int fd = mkstemp(path);
	struct image *img;

	cr_assert_neq(fd, -1, "mkstemp: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(ftruncate(fd, size), 0);
	if (fill != 0) {
		size_t n = size < (1 << 20) ? size : (1 << 20);
		char *buf = malloc(n);
		uint64_t off;

		memset(buf, fill, n);
		for (off = 0; off < size; off += n)
			cr_assert_eq(full_pwrite(fd, buf, size - off < n ?
						 size - off : n, off), 0);
		free(buf);
	}
	img = image_raw_from_fd(fd, path);
	cr_assert_not_null(img);
	return img;
}

long long
test_flushed_blocks(struct image *img, const char *path)
{
	struct stat st;

	cr_assert_eq(img->ops->flush(img), 0);
	cr_assert_eq(stat(path, &st), 0);
	return (long long) st.st_blocks;
}

char *
test_temp_dir(void)
{
	char *dir = strdup("/tmp/colofs-unit-dir.XXXXXX");

	cr_assert_not_null(mkdtemp(dir));
	return dir;
}

void
test_cleanup_dir(char *dir)
{
	char cmd[256];

	if (dir == NULL)
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
	free(dir);
}

struct secondary *
test_secondary(uint64_t size, int fill, const char *dir)
{
	struct store_factory f = dir ? store_file_factory(dir)
				     : store_memory_factory();
	struct secondary *r = secondary_new(&f);

	cr_assert_not_null(r);
	cr_assert_not_null(secondary_add_disk(r, "vda",
					    test_raw_image(size, fill)));
	return r;
}

static void
expect_bytes(const char *what, int (*rd)(struct secondary_disk *, void *,
					 size_t, uint64_t),
	     struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	unsigned char *buf = malloc(len);
	size_t i;

	cr_assert_not_null(buf);
	memset(buf, ~b, len);
	cr_assert_eq(rd(d, buf, len, off), 0, "%s read at %ju+%zu: %s", what,
		     (uintmax_t) off, len, strerror(errno));
	for (i = 0; i < len; i++)
		if (buf[i] != (unsigned char) b)
			cr_assert_fail("%s byte %ju is 0x%02x, want 0x%02x",
				       what, (uintmax_t) (off + i), buf[i],
				       (unsigned char) b);
	free(buf);
}

void
expect_view(struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	expect_bytes("view", secondary_view_read, d, off, len, b);
}

void
expect_disk(struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	expect_bytes("disk", secondary_primary_read, d, off, len, b);
}

static void
fill(const char *what, int (*wr)(struct secondary_disk *, const void *,
				 size_t, uint64_t),
     struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	char *buf = malloc(len ? len : 1);

	cr_assert_not_null(buf);
	memset(buf, b, len);
	cr_assert_eq(wr(d, buf, len, off), 0, "%s write at %ju+%zu: %s", what,
		     (uintmax_t) off, len, strerror(errno));
	free(buf);
}

void
view_fill(struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	fill("view", secondary_view_write, d, off, len, b);
}

void
primary_fill(struct secondary_disk *d, uint64_t off, size_t len, int b)
{
	fill("primary", secondary_primary_write, d, off, len, b);
}

uint64_t
test_buffer_bytes(struct secondary *r, int retained)
{
	struct secondary_status st;
	uint64_t n;

	cr_assert_eq(secondary_get_status(r, &st), 0);
	n = retained ? st.buffer_retained_bytes : st.buffer_bytes;
	secondary_status_release(&st);
	return n;
}

uint64_t
test_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int
test_record_range(void *opaque, uint64_t off, uint64_t len)
{
	struct test_ranges *g = opaque;

	cr_assert_lt(g->n, 64);
	g->off[g->n] = off;
	g->len[g->n++] = len;
	return 0;
}
