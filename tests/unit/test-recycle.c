/* SPDX-License-Identifier: MIT */
/* Recycled buffers (issue 18): a checkpoint swaps in the buffers the
 * checkpoint before dropped, pages still in place.  What must hold: no
 * epoch ever sees another epoch's bytes, whatever the store still holds;
 * the pages kept stay within the retention bound; and a steady-state epoch
 * faults no page in.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "extmap.h"
#include "log.h"
#include "secondary.h"
#include "store.h"
#include "support.h"

#define KiB 1024
#define MiB (1024 * 1024)

static void
quiet(void)
{
	log_set_quiet(true);
}

TestSuite(recycle, .init = quiet);

static uint64_t
retained(struct secondary *r)
{
	return test_buffer_bytes(r, 1);
}

/* ---- the store ---- */

static struct extmap *
map_of(uint64_t off, uint64_t len)
{
	struct extmap *m = extmap_new();

	cr_assert_not_null(m);
	cr_assert_eq(extmap_insert(m, off, len), 0);
	return m;
}

Test(recycle, store_keeps_the_epochs_pages_rounded_out)
{
	struct store *s = store_memory_new(4 * MiB, "t");
	struct extmap *m = map_of(100, 4900); /* pages 0 and 1 */
	static char buf[4900];
	uint64_t pages;

	cr_assert_eq(extmap_insert(m, MiB, 1), 0); /* one more page */
	cr_assert_eq(s->ops->pwrite(s, buf, 4900, 100), 0);
	cr_assert_eq(s->ops->pwrite(s, buf, 1, MiB), 0);
	/* The first write faulted in the pages past its own two. */
	cr_assert_eq(store_retained(s), 2 * 4096 + STORE_POPULATE_AHEAD);
	cr_assert_eq(store_recycle(s, m, 0, &pages), 0);
	cr_assert_eq(pages, 3 * 4096);
	cr_assert_eq(store_retained(s), 3 * 4096);
	extmap_free(m);
	store_free(s);
}

/* Small writes into a fresh pool: the first one faults in the pages the
 * next ones take (STORE_POPULATE_AHEAD), so that they make no system call
 * of their own (4 KiB random writes made one madvise each: 20,000 for
 * 20,000 writes under strace, performance.md).  mincore says which pages
 * are in; never past the pool's end.
 */
Test(recycle, pool_faults_in_ahead_of_small_writes)
{
	const size_t ahead = STORE_POPULATE_AHEAD / 4096;
	struct store *s = store_memory_new(4 * MiB, "t");
	unsigned char in[4 * MiB / 4096];
	static char buf[4096];
	const char *base;
	uint64_t run, pages, i;
	struct extmap *m = extmap_new();

	cr_assert_not_null(s);
	cr_assert_not_null(m);
	cr_assert_eq(s->ops->pwrite(s, buf, 4096, 3 * MiB), 0);
	cr_assert_eq(extmap_insert(m, 3 * MiB, 4096), 0);
	base = store_read_ptr(s, 3 * MiB, 4096, &run);
	cr_assert_not_null(base);
	cr_assert_eq(mincore((void *) base, 4 * MiB, in), 0);
	for (i = 0; i < 1 + ahead; i++)
		cr_assert(in[i] & 1, "pool page %zu not faulted in", (size_t) i);
	cr_assert_eq(store_retained(s), 4096 + STORE_POPULATE_AHEAD);
	/* The next epoch: a pool of 3 pages past what it kept is capped. */
	cr_assert_eq(store_recycle(s, m, 0, &pages), 0);
	for (i = 0; i < 4 * MiB / 4096; i++)
		cr_assert_eq(s->ops->pwrite(s, buf, 4096, i * 4096), 0);
	cr_assert_eq(store_retained(s), 4 * MiB);
	extmap_free(m);
	store_free(s);
}

/* The pool: whatever disk pages an epoch writes, they read back; pages
 * never written, and the rest of a page partly written, read as zeros,
 * also over a recycled pool page that held other bytes.
 */
Test(recycle, pool_pages_hold_any_disk_page)
{
	struct store *s = store_memory_new(8 * MiB, "t");
	struct extmap *m = extmap_new();
	static char buf[3 * 4096], got[3 * 4096], zero[3 * 4096];
	uint64_t pages, run;
	int epoch;

	for (epoch = 0; epoch < 3; epoch++) {
		memset(buf, 0x40 + epoch, sizeof buf);
		/* Different places each epoch, in an order that is not the
		 * disk's: the pool hands its pages out in order anyway.
		 */
		cr_assert_eq(s->ops->pwrite(s, buf, 4096, (7 - epoch) * MiB), 0);
		cr_assert_eq(s->ops->pwrite(s, buf, 100, epoch * MiB + 10), 0);
		cr_assert_eq(s->ops->pread(s, got, 4096, (7 - epoch) * MiB), 0);
		cr_assert_eq(memcmp(got, buf, 4096), 0);
		cr_assert_eq(s->ops->pread(s, got, 4096, epoch * MiB), 0);
		cr_assert_eq(memcmp(got, zero, 10), 0, "epoch %d", epoch);
		cr_assert_eq(memcmp(got + 10, buf, 100), 0);
		cr_assert_eq(memcmp(got + 110, zero, 4096 - 110), 0);
		cr_assert_eq(s->ops->pread(s, got, sizeof got, 4 * MiB + 4096),
			     0);
		cr_assert_eq(memcmp(got, zero, sizeof got), 0);
		/* Two pages taken together are one run in memory. */
		cr_assert_not_null(store_write_ptr(s, 3 * MiB + 4000, 8192,
						   &run));
		cr_assert_eq(run, 8192);
		cr_assert_null(store_read_ptr(s, 4 * MiB, 4096, &run));
		cr_assert_eq(s->ops->zero(s, (7 - epoch) * MiB + 1, 4000), 0);
		cr_assert_eq(s->ops->pread(s, got, 4096, (7 - epoch) * MiB), 0);
		cr_assert_eq(got[0], 0x40 + epoch);
		cr_assert_eq(memcmp(got + 1, zero, 4000), 0);
		cr_assert_eq(got[4001], 0x40 + epoch);
		cr_assert_eq(store_recycle(s, m, 0, &pages), 0);
		cr_assert_eq(pages, 5 * 4096);
		cr_assert_eq(s->ops->pread(s, got, 4096, (7 - epoch) * MiB), 0);
		cr_assert_eq(memcmp(got, zero, 4096), 0, "a recycled table "
			     "maps nothing");
	}
	extmap_free(m);
	store_free(s);
}

static uint64_t
allocated(struct store *s)
{
	struct stat st;

	cr_assert_eq(fstat(s->fd, &st), 0);
	return (uint64_t) st.st_blocks * 512;
}

Test(recycle, file_store_punches_only_beyond_the_retention)
{
	char *dir = test_temp_dir();
	struct store *s = store_file_new(dir, 8 * MiB, "t");
	static char buf[MiB];
	struct extmap *big = map_of(0, MiB), *small = map_of(4 * MiB, 4096);
	uint64_t pages;

	cr_assert_not_null(s);
	memset(buf, 0x5a, sizeof buf);
	cr_assert_eq(s->ops->pwrite(s, buf, MiB, 0), 0);
	cr_assert_eq(store_recycle(s, big, 0, &pages), 0);
	cr_assert_eq(pages, MiB);
	/* Within the retention: the blocks stay, to be overwritten. */
	cr_assert_eq(s->ops->pwrite(s, buf, 4096, 4 * MiB), 0);
	cr_assert_eq(store_recycle(s, small, 2 * MiB, &pages), 0);
	cr_assert_eq(pages, 4096);
	cr_assert_eq(store_retained(s), MiB + 4096);
	cr_assert_geq(allocated(s), MiB + 4096);
	/* Beyond it: only the last epoch's pages stay. */
	cr_assert_eq(store_recycle(s, small, 4096, &pages), 0);
	cr_assert_eq(store_retained(s), 4096);
	cr_assert_lt(allocated(s), MiB / 2, "%ju bytes still allocated",
		     (uintmax_t) allocated(s));
	extmap_free(big);
	extmap_free(small);
	store_free(s);
	test_cleanup_dir(dir);
}

static long minflt(void);

/* An epoch that writes other places than the one before still overwrites
 * the pool's pages: counted against the same copy into fresh pages
 * (sanitizers fault their shadow memory in too).
 */
Test(recycle, a_recycled_pool_takes_no_fault_wherever_it_is_written)
{
	struct store *s = store_memory_new(16 * MiB, "t");
	struct extmap *m = extmap_new();
	static char buf[MiB];
	long before, fresh, recycled;
	uint64_t pages;

	memset(buf, 0x5a, sizeof buf);
	before = minflt();
	cr_assert_eq(s->ops->pwrite(s, buf, MiB, 100), 0);
	fresh = minflt() - before;
	cr_assert_eq(store_recycle(s, m, 2 * MiB, &pages), 0);
	before = minflt();
	cr_assert_eq(s->ops->pwrite(s, buf, MiB - 4096, 9 * MiB), 0);
	recycled = minflt() - before;
	cr_assert_geq(fresh, 64, "a fresh MiB faults its pages in");
	cr_assert_lt(recycled, fresh / 4, "%ld faults in the copy, %ld fresh",
		     recycled, fresh);
	extmap_free(m);
	store_free(s);
}

/* ---- the secondary: stale bytes ---- */

/* Epoch 1 leaves bytes in both stores of both slots; two checkpoints
 * later the same stores are back (checked through buffer_retained_bytes),
 * and nothing of epoch 1 shows through.
 */
static void
dirty_then_recycle(struct secondary *r, struct secondary_disk *d)
{
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 64 * KiB, 0x33);	    /* active */
	primary_fill(d, 128 * KiB, 64 * KiB, 0x22); /* hidden: 0x11 */
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 256 * KiB, 64 * KiB, 0x44); /* the other stores */
	primary_fill(d, 384 * KiB, 64 * KiB, 0x55);
	cr_assert_eq(secondary_checkpoint(r), 0);
	cr_assert_geq(retained(r), 128 * KiB, "epoch 1's stores are back");
	/* Never written in this epoch: all of it is S. */
	expect_view(d, 0, 128 * KiB, 0x11);
	expect_view(d, 128 * KiB, 64 * KiB, 0x22);
	expect_view(d, 192 * KiB, 192 * KiB, 0x11);
	expect_view(d, 384 * KiB, 64 * KiB, 0x55);
	/* Partial writes over stale pages: only the bytes written show. */
	view_fill(d, 100, 10, 0x66);
	expect_view(d, 0, 100, 0x11);
	expect_view(d, 100, 10, 0x66);
	expect_view(d, 110, 64 * KiB, 0x11);
	primary_fill(d, 130 * KiB + 7, 10, 0x77); /* saves 0x22 */
	expect_view(d, 128 * KiB, 64 * KiB, 0x22);
	expect_disk(d, 130 * KiB + 7, 10, 0x77);
	cr_assert_eq(secondary_view_zero(d, 4096, 8192), 0);
	expect_view(d, 4096, 8192, 0);
	expect_view(d, 12288, 52 * KiB, 0x11);
}

/* After dirty_then_recycle, one more checkpoint: epoch 2's stores back. */
static void
expect_s_after_another_checkpoint(struct secondary *r, struct secondary_disk *d)
{
	cr_assert_eq(secondary_checkpoint(r), 0);
	expect_view(d, 0, 128 * KiB, 0x11);
	expect_view(d, 128 * KiB, 2 * KiB + 7, 0x22);
	expect_view(d, 130 * KiB + 7, 10, 0x77);
	expect_view(d, 130 * KiB + 17, 62 * KiB - 17, 0x22);
	expect_view(d, 192 * KiB, 192 * KiB, 0x11);
	expect_view(d, 384 * KiB, 64 * KiB, 0x55);
}

Test(recycle, memory_buffers_never_show_an_earlier_epoch)
{
	struct secondary *r = test_secondary(MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	dirty_then_recycle(r, d);
	expect_s_after_another_checkpoint(r, d);
	secondary_free(r);
}

Test(recycle, file_buffers_never_show_an_earlier_epoch)
{
	char *dir = test_temp_dir();
	struct secondary *r = test_secondary(MiB, 0x11, dir);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	dirty_then_recycle(r, d);
	expect_s_after_another_checkpoint(r, d);
	secondary_free(r);
	test_cleanup_dir(dir);
}

static void
failover_case(const char *dir, bool durable)
{
	struct secondary *r = test_secondary(MiB, 0x11, dir);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	if (durable)
		cr_assert_eq(secondary_set_durable(r, dir, dir, "p"), 0);
	dirty_then_recycle(r, d);
	cr_assert_eq(secondary_failover(r), 0);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	/* S is V: only what this epoch's view wrote, over S. */
	expect_disk(d, 0, 100, 0x11);
	expect_disk(d, 100, 10, 0x66);
	expect_disk(d, 110, 4096 - 110, 0x11);
	expect_disk(d, 4096, 8192, 0);
	expect_disk(d, 12288, 116 * KiB, 0x11);
	expect_disk(d, 128 * KiB, 64 * KiB, 0x22);
	expect_disk(d, 192 * KiB, 192 * KiB, 0x11);
	expect_disk(d, 384 * KiB, 64 * KiB, 0x55);
	expect_disk(d, 448 * KiB, MiB - 448 * KiB, 0x11);
	secondary_free(r);
}

Test(recycle, failover_commits_no_earlier_epoch_memory)
{
	failover_case(NULL, false);
}

Test(recycle, failover_commits_no_earlier_epoch_file_durable)
{
	char *dir = test_temp_dir();

	failover_case(dir, true);
	test_cleanup_dir(dir);
}

Test(recycle, stop_gives_every_kept_page_back)
{
	struct secondary *r = test_secondary(MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	dirty_then_recycle(r, d);
	cr_assert_eq(secondary_stop(r), 0);
	cr_assert_eq(retained(r), 0);
	expect_view(d, 0, 128 * KiB, 0x11);
	secondary_free(r);
}

/* ---- the secondary: retention ---- */

Test(recycle, a_burst_is_given_back_after_a_few_epochs)
{
	struct secondary *r = test_secondary(4 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	int i;

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 2 * MiB, 0x33); /* the burst */
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 0, 4096, 0x44);
	cr_assert_eq(secondary_checkpoint(r), 0);
	cr_assert_geq(retained(r), 2 * MiB, "the burst's pages are kept");
	for (i = 0; i < 8; i++) {
		view_fill(d, 0, 4096, 0x44);
		cr_assert_eq(secondary_checkpoint(r), 0);
	}
	/* Two stores of active, one page each. */
	cr_assert_leq(retained(r), 2 * 4096, "%ju bytes kept",
		      (uintmax_t) retained(r));
	expect_view(d, 0, 4 * MiB, 0x11);
	secondary_free(r);
}

Test(recycle, memory_is_bounded_by_the_limit_plus_the_retention)
{
	struct secondary *r = test_secondary(8 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	const uint64_t limit = MiB;
	uint64_t seed = 18, hist[16][2] = { { 0 } };
	int i, j;

	secondary_set_buffer_limit(r, limit);
	cr_assert_eq(secondary_start(r), 0);
	for (i = 0; i < 16; i++) {
		/* Page-aligned writes of random size; together under the
		 * limit, in hidden and active.
		 */
		uint64_t pages = limit / 4096;
		uint64_t v = test_rand(&seed) % (pages / 2 + 1);
		uint64_t p = test_rand(&seed) % (pages / 2 + 1);
		uint64_t at = test_rand(&seed) % 4 * MiB, bh = 0, ba = 0;
		struct secondary_status st;

		if (v)
			view_fill(d, at, v * 4096, 0x33);
		if (p)
			primary_fill(d, at + 2 * MiB, p * 4096, 0x22);
		cr_assert_eq(secondary_get_status(r, &st), 0);
		cr_assert_leq(st.buffer_bytes, limit);
		secondary_status_release(&st);
		hist[i][0] = p * 4096; /* hidden */
		hist[i][1] = v * 4096; /* active */
		cr_assert_eq(secondary_checkpoint(r), 0);
		/* At most two stores per slot, each at most the largest of
		 * the last epochs (one more epoch than RETAIN_EPOCHS: a
		 * store is trimmed when it is dropped).
		 */
		for (j = i; j >= 0 && j > i - 6; j--) {
			bh = hist[j][0] > bh ? hist[j][0] : bh;
			ba = hist[j][1] > ba ? hist[j][1] : ba;
		}
		cr_assert_leq(retained(r), 2 * (bh + ba),
			      "epoch %d: %ju > 2 x (%ju + %ju)", i,
			      (uintmax_t) retained(r), (uintmax_t) bh,
			      (uintmax_t) ba);
		cr_assert_leq(retained(r), 2 * limit);
	}
	secondary_free(r);
}

/* ---- the secondary: page faults ---- */

static long
minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Not a timing test: it counts page faults.  Steady-state epochs fault
 * no page of the buffers in, writing the same 4 MiB each time (moving:
 * false) or 4 MiB somewhere else each time (a guest's writes wander over
 * its disk).  With buffer_warm (warm bytes), no epoch does, the first
 * ones included.
 */
static void
epochs(bool moving, uint64_t warm)
{
	struct secondary *r = test_secondary(64 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	static char buf[64 * KiB];
	long before, faults = 0;
	uint64_t off, at;
	int epoch;

	memset(buf, 0x33, sizeof buf);
	cr_assert_eq(secondary_warm(r, warm), 0);
	cr_assert_eq(secondary_start(r), 0);
	for (epoch = 0; epoch < 5; epoch++) {
		at = moving ? (uint64_t) epoch * 4 * MiB : 0;
		before = minflt();
		for (off = 0; off < 4 * MiB; off += sizeof buf) {
			cr_assert_eq(secondary_view_write(d, buf, sizeof buf,
							at + off),
				     0);
			cr_assert_eq(secondary_primary_write(d, buf, sizeof buf,
							   32 * MiB + at + off),
				     0);
		}
		faults = minflt() - before;
		cr_assert_eq(secondary_checkpoint(r), 0);
		/* 8 MiB buffered is 2,048 pages; the maps' own heap costs a
		 * few.
		 */
		if (warm)
			cr_assert_lt(faults, 128, "%ld page faults in epoch %d "
				     "of warmed buffers", faults, epoch);
	}
	cr_assert_lt(faults, 128, "%ld page faults in a steady epoch", faults);
	secondary_free(r);
}

Test(recycle, a_steady_epoch_faults_no_buffer_page_in)
{
	epochs(false, 0);
}

Test(recycle, a_steady_epoch_elsewhere_faults_no_buffer_page_in)
{
	epochs(true, 0);
}

/* Without buffer_warm the first two epochs fault 2,048 pages each (two
 * stores per slot, both fresh).
 */
Test(recycle, buffer_warm_makes_the_first_epochs_fault_free)
{
	epochs(true, 4 * MiB);
}

static uint64_t
warming(struct secondary *r)
{
	struct secondary_status st;
	uint64_t n;

	cr_assert_eq(secondary_get_status(r, &st), 0);
	n = st.buffer_warming_bytes;
	secondary_status_release(&st);
	return n;
}

/* Four stores (two per slot) keep at least buffer_warm each whatever the
 * epochs wrote, and a burst beyond it is still given back.
 */
Test(recycle, buffer_warm_is_the_retentions_floor)
{
	struct secondary *r = test_secondary(16 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	int i;

	cr_assert_eq(secondary_warm(r, 2 * MiB), 0);
	cr_assert_eq(secondary_start(r), 0);	/* waits for the warming */
	cr_assert_eq(warming(r), 0);
	cr_assert_eq(retained(r), 4 * 2 * MiB, "%ju bytes kept",
		     (uintmax_t) retained(r));
	view_fill(d, 0, 8 * MiB, 0x33);		/* a burst */
	cr_assert_eq(secondary_checkpoint(r), 0);
	for (i = 0; i < 8; i++) {
		view_fill(d, 0, 4096, 0x44);
		primary_fill(d, 8 * MiB, 4096, 0x22);
		cr_assert_eq(secondary_checkpoint(r), 0);
		expect_view(d, 0, 8 * MiB, 0x11);
	}
	cr_assert_eq(retained(r), 4 * 2 * MiB, "%ju bytes kept",
		     (uintmax_t) retained(r));
	secondary_free(r);
}

/* Larger than the disk: each store warms the disk's size. */
Test(recycle, buffer_warm_stops_at_the_disk_size)
{
	struct secondary *r = test_secondary(MiB, 0x11, NULL);

	cr_assert_eq(secondary_warm(r, 64 * MiB), 0);
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(warming(r), 0);
	cr_assert_eq(retained(r), 4 * MiB);
	secondary_free(r);
}

/* Stop (and failover) give every warmed page back, and a warming still
 * under way then gives up.
 */
Test(recycle, stop_gives_the_warmed_pages_back)
{
	struct secondary *r = test_secondary(64 * MiB, 0x11, NULL);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	cr_assert_eq(secondary_warm(r, 4 * MiB), 0);
	cr_assert_eq(secondary_start(r), 0);
	cr_assert_eq(secondary_stop(r), 0);
	cr_assert_eq(retained(r), 0);
	expect_view(d, 0, 128 * KiB, 0x11);
	secondary_free(r);
}

/* File buffers cannot be warmed: the start still works, the error is
 * recorded. */
Test(recycle, buffer_warm_of_file_buffers_is_an_error_not_a_failure)
{
	char dir[] = "/tmp/colofs-warm-XXXXXX";
	struct secondary *r;
	struct secondary_disk *d;
	char err[512];
	int i;

	cr_assert_not_null(mkdtemp(dir));
	r = test_secondary(MiB, 0x11, dir);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_warm(r, MiB), 0);
	for (i = 0; i < 10000 && warming(r) != 0; i++)
		usleep(1000);	/* the warming gives up, error recorded */
	cr_assert_eq(warming(r), 0);
	cr_assert_neq(secondary_last_error(r, err, sizeof err), 0);
	cr_assert_not_null(strstr(err, "buffer_warm"), "%s", err);
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4096, 0x33);
	expect_view(d, 0, 4096, 0x33);
	secondary_free(r);
	rmdir(dir);
}

/* ---- the secondary: what a failover waits for ---- */

/* Memory stores whose free notes whether it ran on the test's own thread
 * (the one that calls secondary_failover).
 */
static struct store_ops noting_ops;
static void (*memory_free)(struct store *);
static pthread_t test_thread;
static atomic_int frees_here, frees;

static void
noting_free(struct store *s)
{
	if (pthread_equal(pthread_self(), test_thread))
		atomic_fetch_add(&frees_here, 1);
	atomic_fetch_add(&frees, 1);
	memory_free(s);
}

static struct store *
noting_create(void *opaque, uint64_t size, const char *tag)
{
	struct store *s = store_memory_new(size, tag);

	(void) opaque;
	if (s == NULL)
		return NULL;
	memory_free = s->ops->free;
	noting_ops = *s->ops;
	noting_ops.free = noting_free;
	s->ops = &noting_ops;
	return s;
}

/* The spares (stores kept from earlier epochs, pages mapped) are freed in
 * the background: unmapping them took 33 ms of a failover's answer with
 * 256 MiB in each.
 */
Test(recycle, failover_frees_the_spares_in_the_background)
{
	struct store_factory f = { .create = noting_create };
	struct secondary *r = secondary_new(&f);
	struct secondary_disk *d;
	int before;

	cr_assert_not_null(r);
	cr_assert_not_null(secondary_add_disk(r, "vda",
					    test_raw_image(MiB, 0x11)));
	d = secondary_disk_at(r, 0);
	test_thread = pthread_self();
	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 64 * KiB, 0x33);
	primary_fill(d, 128 * KiB, 64 * KiB, 0x22);
	cr_assert_eq(secondary_checkpoint(r), 0);
	view_fill(d, 0, 64 * KiB, 0x44);
	cr_assert_eq(secondary_checkpoint(r), 0);
	cr_assert_geq(retained(r), 64 * KiB, "spares with pages are kept");
	view_fill(d, 0, 64 * KiB, 0x55);
	before = atomic_load(&frees_here);
	cr_assert_eq(secondary_failover(r), 0);
	cr_assert_eq(atomic_load(&frees_here), before,
		     "%d stores freed by the failover's caller",
		     atomic_load(&frees_here) - before);
	secondary_wait_commit(r);
	cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	expect_disk(d, 0, 64 * KiB, 0x55);
	secondary_free(r);
	cr_assert_geq(atomic_load(&frees), 4, "every store is freed in the end");
}
