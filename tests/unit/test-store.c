/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "store.h"
#include "support.h"

static void
roundtrip(struct store *s)
{
	char buf[100], got[100];

	memset(buf, 0x5a, sizeof buf);
	cr_assert_eq(s->ops->pwrite(s, buf, sizeof buf, 12345), 0);
	cr_assert_eq(s->ops->pread(s, got, sizeof got, 12345), 0);
	cr_assert_eq(memcmp(buf, got, sizeof buf), 0);
	cr_assert_eq(s->ops->zero(s, 12345, 50), 0);
	cr_assert_eq(s->ops->pread(s, got, sizeof got, 12345), 0);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(got[i], 0);
	for (int i = 50; i < 100; i++)
		cr_assert_eq(got[i], 0x5a);
}

Test(store, memory_roundtrip_and_zero)
{
	struct store *s = store_memory_new(1 << 20, "t");

	cr_assert_not_null(s);
	cr_assert_str_eq(s->ops->name, "memory");
	cr_assert_geq(s->fd, 0);
	roundtrip(s);
	store_free(s);
}

Test(store, file_roundtrip_and_zero)
{
	char *dir = test_temp_dir();
	struct store *s = store_file_new(dir, 1 << 20, "t");

	cr_assert_not_null(s);
	cr_assert_str_eq(s->ops->name, "file");
	roundtrip(s);
	store_free(s);
	test_cleanup_dir(dir);
}

Test(store, stores_are_sparse)
{
	struct store *s = store_memory_new((uint64_t) 1 << 40, "big");
	struct stat st;

	cr_assert_not_null(s, "a 1 TiB store must cost nothing up front");
	cr_assert_eq(fstat(s->fd, &st), 0);
	cr_assert_eq(st.st_size, (off_t) 1 << 40);
	cr_assert_lt(st.st_blocks, 16);
	store_free(s);
}

Test(store, file_store_in_missing_dir_fails)
{
	log_set_quiet(true);
	cr_assert_null(store_file_new("/nonexistent/colofs", 4096, "t"));
	cr_assert_eq(errno, ENOENT);
}

Test(store, free_null_is_noop)
{
	store_free(NULL);
}

Test(store, factories_make_their_backing)
{
	char *dir = test_temp_dir();
	struct store_factory m = store_memory_factory();
	struct store_factory f = store_file_factory(dir);
	struct store *a = m.create(m.opaque, 4096, "a");
	struct store *b = f.create(f.opaque, 4096, "b");

	cr_assert_str_eq(a->ops->name, "memory");
	cr_assert_str_eq(b->ops->name, "file");
	store_free(a);
	store_free(b);
	test_cleanup_dir(dir);
}
