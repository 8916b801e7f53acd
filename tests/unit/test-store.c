/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "extmap.h"
#include "fdio.h"
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

static long
rss_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	while (fp && fgets(line, sizeof line, fp))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (fp)
		fclose(fp);
	return kib;
}

Test(store, memory_store_costs_only_what_is_written)
{
	uint64_t size = (uint64_t) 1 << 40, off;
	struct store *s = store_memory_new(size, "big");
	long before = rss_kib();
	char b = 1;

	cr_assert_not_null(s, "a 1 TiB store must cost nothing up front");
	/* 256 scattered 1-byte writes: 256 small pages, not huge ones. */
	for (off = 0; off < size; off += size / 256)
		cr_assert_eq(s->ops->pwrite(s, &b, 1, off), 0);
	cr_assert_lt(rss_kib() - before, 256 * 4 * 4,
		     "RSS grew by %ld KiB", rss_kib() - before);
	store_free(s);
}

Test(store, file_store_is_sparse)
{
	char *dir = test_temp_dir();
	struct store *s = store_file_new(dir, (uint64_t) 1 << 40, "big");
	struct stat st;

	cr_assert_not_null(s);
	cr_assert_eq(fstat(s->fd, &st), 0);
	cr_assert_eq(st.st_size, (off_t) 1 << 40);
	cr_assert_lt(st.st_blocks, 16);
	store_free(s);
	test_cleanup_dir(dir);
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

static int
fail_datasync(void)
{
	errno = EIO;
	return -1;
}

/* As the image's: a file store's sync that failed stays failed (a
 * failover's buffer files must not pass for durable afterwards).
 */
Test(store, a_failed_sync_fails_every_later_sync)
{
	char *dir = test_temp_dir();
	struct store *s = store_file_new(dir, 1 << 20, "t");

	log_set_quiet(true);
	cr_assert_not_null(s);
	cr_assert_eq(store_sync(s), 0);
	fdio_datasync_fault = fail_datasync;
	cr_assert_eq(store_sync(s), -1);
	fdio_datasync_fault = NULL;
	errno = 0;
	cr_assert_eq(store_sync(s), -1, "a sync after a failed one passed");
	cr_assert_eq(errno, EIO);
	store_free(s);
	test_cleanup_dir(dir);
}

/* The pool under concurrent first writes: writers that share pages but
 * never bytes (as range locks allow) race for each page's entry; every
 * writer's bytes must survive the others' claims and zeroing, over fresh
 * and recycled pool pages alike.
 */
struct quarter_job {
	struct store *s;
	int q;				/* which quarter of every page */
	int epoch;
};

static void *
quarter_writer(void *arg)
{
	struct quarter_job *j = arg;
	char buf[1024];
	uint64_t pg, k;

	memset(buf, 0x10 * j->epoch + j->q + 1, sizeof buf);
	for (k = 0; k < 1024; k++) {
		/* Each writer walks the pages in its own order. */
		pg = (k * (2 * j->q + 1) + 7 * j->q) % 1024;
		if (j->s->ops->pwrite(j->s, buf, sizeof buf,
				      pg * 4096 + j->q * 1024) != 0)
			return (void *) 1;
	}
	return NULL;
}

Test(store, pool_pages_shared_by_concurrent_writers)
{
	struct store *s = store_memory_new(8 << 20, "t");
	struct extmap *m = extmap_new();
	pthread_t t[4];
	struct quarter_job jobs[4];
	static char got[4 << 20];
	uint64_t pages, i;
	int epoch, q;
	void *rc;

	cr_assert_not_null(s);
	for (epoch = 0; epoch < 3; epoch++) {
		for (q = 0; q < 4; q++) {
			jobs[q] = (struct quarter_job) { s, q, epoch };
			cr_assert_eq(pthread_create(&t[q], NULL,
						    quarter_writer, &jobs[q]),
				     0);
		}
		for (q = 0; q < 4; q++) {
			cr_assert_eq(pthread_join(t[q], &rc), 0);
			cr_assert_null(rc);
		}
		cr_assert_eq(s->ops->pread(s, got, sizeof got, 0), 0);
		for (i = 0; i < sizeof got; i++)
			cr_assert_eq(got[i], 0x10 * epoch + (int) (i % 4096 / 1024)
				     + 1, "epoch %d byte %ju", epoch,
				     (uintmax_t) i);
		cr_assert_eq(store_recycle(s, m, 16 << 20, &pages), 0);
		cr_assert_geq(pages, 4 << 20);
	}
	extmap_free(m);
	store_free(s);
}

/* The pool's table numbers pages in 32 bits: a memory buffer says so for a
 * disk beyond 16 TiB rather than wrapping around.
 */
Test(store, memory_store_refuses_disks_beyond_16_tib)
{
	log_set_quiet(true);
	cr_assert_null(store_memory_new((uint64_t) 1 << 45, "huge"));
	cr_assert_eq(errno, EFBIG);
	cr_assert_null(store_memory_new((uint64_t) 1 << 44, "16t"));
	cr_assert_eq(errno, EFBIG);
	store_free(store_memory_new(((uint64_t) 1 << 44) - (1 << 20), "ok"));
}
