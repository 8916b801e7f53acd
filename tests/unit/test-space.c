/* SPDX-License-Identifier: MIT */
/* Space accounting: room a checkpoint freed is usable at once, and
 * zeroed ranges take none under the buffer limit.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "secondary.h"
#include "support.h"

#define MiB (1024 * 1024)

/* A small "file system" for buffers: memory stores that charge what they
 * hold against a capacity and give it back only when freed, and freeing
 * takes 300 ms (as freeing a big file does).  A write past the capacity
 * fails with ENOSPC, as pwrite on a full tmpfs.
 */
static atomic_uint_fast64_t used;
static const uint64_t capacity = 8 * MiB;

struct tight {
	struct store s;
	struct store *inner;
	atomic_uint_fast64_t charged;
};

static int
tight_pread(struct store *s, void *buf, size_t len, uint64_t off)
{
	struct tight *t = (struct tight *) s;

	return t->inner->ops->pread(t->inner, buf, len, off);
}

static int
tight_pwrite(struct store *s, const void *buf, size_t len, uint64_t off)
{
	struct tight *t = (struct tight *) s;

	if (atomic_fetch_add(&used, len) + len > capacity) {
		atomic_fetch_sub(&used, len);
		errno = ENOSPC;
		return -1;
	}
	atomic_fetch_add(&t->charged, len);
	return t->inner->ops->pwrite(t->inner, buf, len, off);
}

static int
tight_zero(struct store *s, uint64_t off, uint64_t len)
{
	struct tight *t = (struct tight *) s;

	return t->inner->ops->zero(t->inner, off, len);
}

static void
tight_free(struct store *s)
{
	struct tight *t = (struct tight *) s;
	struct timespec ts = { 0, 300 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	atomic_fetch_sub(&used, atomic_load(&t->charged));
	store_free(t->inner);
	free(t);
}

static const struct store_ops tight_ops = {
	.name = "tight",
	.pread = tight_pread,
	.pwrite = tight_pwrite,
	.zero = tight_zero,
	.free = tight_free,
};

static struct store *
tight_create(void *opaque, uint64_t size, const char *tag)
{
	struct tight *t = calloc(1, sizeof *t);

	(void) opaque;
	cr_assert_not_null(t);
	t->inner = store_memory_new(size, tag);
	cr_assert_not_null(t->inner);
	t->s.ops = &tight_ops;
	t->s.fd = -1;
	t->s.size = size;
	return &t->s;
}

Test(space, a_write_after_a_checkpoint_uses_the_room_it_freed)
{
	struct store_factory f = { .create = tight_create };
	struct secondary *r;
	struct secondary_disk *d;

	log_set_quiet(true);
	atomic_store(&used, 0);
	r = secondary_new(&f);
	cr_assert_not_null(r);
	d = secondary_add_disk(r, "vda", test_raw_image(16 * MiB, 0x11));
	cr_assert_not_null(d);
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 6 * MiB, 0x22);
	cr_assert_eq(secondary_checkpoint(r), 0);
	/* The old active's 6 MiB are still being freed: this needs them. */
	view_fill(d, 8 * MiB, 6 * MiB, 0x33);
	expect_view(d, 8 * MiB, 6 * MiB, 0x33);
	expect_view(d, 0, 6 * MiB, 0x11);
	secondary_free(r);
}

static uint64_t
buffer_bytes(struct secondary *r)
{
	return test_buffer_bytes(r, 0);
}

Test(space, zeroed_ranges_take_no_room_under_the_limit)
{
	struct secondary *r = test_secondary(64 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	log_set_quiet(true);
	secondary_set_buffer_limit(r, 4 * MiB);
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_view_zero(d, 0, 32 * MiB), 0);
	cr_assert_eq(buffer_bytes(r), 0);
	expect_view(d, 0, 32 * MiB, 0);
	view_fill(d, 0, 3 * MiB, 0x22);
	cr_assert_eq(buffer_bytes(r), 3 * MiB);
	/* Zeroing data gives its room back. */
	cr_assert_eq(secondary_view_zero(d, 0, 2 * MiB), 0);
	cr_assert_eq(buffer_bytes(r), 1 * MiB);
	view_fill(d, 40 * MiB, 3 * MiB, 0x33);
	cr_assert_eq(buffer_bytes(r), 4 * MiB);
	expect_view(d, 0, 2 * MiB, 0);
	expect_view(d, 2 * MiB, 1 * MiB, 0x22);
	/* Commit writes the zeros too. */
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	expect_disk(d, 0, 2 * MiB, 0);
	expect_disk(d, 2 * MiB, 1 * MiB, 0x22);
	expect_disk(d, 3 * MiB, 29 * MiB, 0);
	expect_disk(d, 40 * MiB, 3 * MiB, 0x33);
	secondary_free(r);
}

Test(space, a_refused_view_write_says_why)
{
	struct secondary *r = test_secondary(1 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	char buf[4096] = { 0 }, msg[512];

	log_set_quiet(true);
	cr_assert_eq(secondary_view_write(d, buf, sizeof buf, 0), -1);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "view write at 0+4096 refused in state none"),
		  "%s", msg);
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_view_write(d, buf, sizeof buf, 1 * MiB), -1);
	secondary_last_error(r, msg, sizeof msg);
	cr_assert(strstr(msg, "beyond the end"), "%s", msg);
	secondary_free(r);
}
