/* SPDX-License-Identifier: MIT */
/* Threads issue overlapping primary writes, view writes and reads while
 * checkpoints run between and during them.  Each primary writer owns a
 * region, so S is known exactly afterwards; view writes go anywhere.
 * After each round's final checkpoint V must equal S byte for byte, and
 * S must hold each writer's last pattern.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "secondary.h"
#include "support.h"

#define SIZE (8 * 1024 * 1024)
#define WRITERS 4
#define REGION (SIZE / WRITERS)

struct worker {
	struct secondary_disk *d;
	int id;
	uint64_t seed;
	int ops;
	unsigned char last;	/* primary writers: the final fill byte */
	atomic_int *errors;
};

static void *
primary_writer(void *arg)
{
	struct worker *w = arg;
	uint64_t st = w->seed;
	unsigned char *buf = malloc(REGION);
	int i;

	for (i = 0; i < w->ops; i++) {
		uint64_t off = test_rand(&st) % REGION;
		uint64_t len = test_rand(&st) % 65536 + 1;

		if (off + len > REGION)
			len = REGION - off;
		memset(buf, w->id * 16 + i % 16, len);
		if (secondary_primary_write(w->d, buf, len,
					  (uint64_t) w->id * REGION + off))
			atomic_fetch_add(w->errors, 1);
	}
	/* Finish by writing the whole region once: S is then known. */
	w->last = 0xa0 + w->id;
	memset(buf, w->last, REGION);
	if (secondary_primary_write(w->d, buf, REGION,
				  (uint64_t) w->id * REGION))
		atomic_fetch_add(w->errors, 1);
	free(buf);
	return NULL;
}

static void *
view_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t st = w->seed;
	unsigned char *buf = malloc(65536);
	int i;

	for (i = 0; i < w->ops; i++) {
		uint64_t off = test_rand(&st) % SIZE;
		uint64_t len = test_rand(&st) % 65536 + 1;
		int ret;

		if (off + len > SIZE)
			len = SIZE - off;
		if (i % 2) {
			memset(buf, 0x50 + w->id, len);
			ret = secondary_view_write(w->d, buf, len, off);
		} else
			ret = secondary_view_read(w->d, buf, len, off);
		if (ret)
			atomic_fetch_add(w->errors, 1);
	}
	free(buf);
	return NULL;
}

Test(concurrency, overlapping_io_across_checkpoints, .timeout = 300)
{
	struct secondary *r;
	struct secondary_disk *d;
	int round, i;
	atomic_int errors = 0;

	log_set_quiet(true);
	r = test_secondary(SIZE, 0x11, NULL);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_start(r), 0);
	for (round = 0; round < 8; round++) {
		pthread_t t[WRITERS + 3];
		struct worker w[WRITERS + 3];

		for (i = 0; i < WRITERS + 3; i++) {
			w[i] = (struct worker) {
				.d = d, .id = i < WRITERS ? i : i - WRITERS,
				.seed = round * 100 + i, .ops = 200,
				.errors = &errors,
			};
			pthread_create(&t[i], NULL, i < WRITERS ?
				       primary_writer : view_worker, &w[i]);
		}
		for (i = 0; i < 5; i++)	/* checkpoints during the I/O */
			cr_assert_eq(secondary_checkpoint(r), 0);
		for (i = 0; i < WRITERS + 3; i++)
			pthread_join(t[i], NULL);
		cr_assert_eq(atomic_load(&errors), 0);
		cr_assert_eq(secondary_checkpoint(r), 0);
		for (i = 0; i < WRITERS; i++) {
			expect_disk(d, (uint64_t) i * REGION, REGION,
				    w[i].last);
			expect_view(d, (uint64_t) i * REGION, REGION,
				    w[i].last);
		}
	}
	secondary_free(r);
}

struct racer {
	struct secondary_disk *d;
	atomic_bool *stop;
	atomic_int *bad;
};

/* Reads a range that only the primary writes, always as whole writes of
 * one byte: any view read must see a single byte value, never a mix of
 * epochs within one read (a checkpoint is atomic against in-flight I/O).
 */
static void *
torn_reader(void *arg)
{
	struct racer *rc = arg;
	unsigned char buf[65536];
	size_t i;

	while (!atomic_load(rc->stop)) {
		if (secondary_view_read(rc->d, buf, sizeof buf, 0) != 0) {
			atomic_fetch_add(rc->bad, 1);
			continue;
		}
		for (i = 1; i < sizeof buf; i++)
			if (buf[i] != buf[0]) {
				atomic_fetch_add(rc->bad, 1);
				break;
			}
	}
	return NULL;
}

Test(concurrency, reads_never_see_half_a_checkpoint, .timeout = 120)
{
	struct secondary *r;
	struct secondary_disk *d;
	atomic_bool stop = false;
	atomic_int bad = 0;
	struct racer rc;
	pthread_t t[2];
	unsigned char buf[65536];
	int i;

	log_set_quiet(true);
	r = test_secondary(1024 * 1024, 0x11, NULL);
	d = secondary_disk_at(r, 0);
	cr_assert_eq(secondary_start(r), 0);
	rc = (struct racer) { d, &stop, &bad };
	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, torn_reader, &rc);
	for (i = 0; i < 2000; i++) {
		memset(buf, i & 0xff, sizeof buf);
		cr_assert_eq(secondary_primary_write(d, buf, sizeof buf, 0), 0);
		cr_assert_eq(secondary_checkpoint(r), 0);
	}
	atomic_store(&stop, true);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(atomic_load(&bad), 0, "%d torn reads", atomic_load(&bad));
	secondary_free(r);
}
