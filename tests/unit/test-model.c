/* SPDX-License-Identifier: MIT */
/* Model-based randomized test: seeded sequences of primary writes and
 * zeroes, view writes and zeroes, reads, checkpoints and a final stop or
 * failover, run against the engine and against a trivial reference (two
 * byte arrays, S and V).  Every read and the final state must match byte
 * for byte.  Prints the seed and step on failure.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "replica.h"
#include "support.h"

#define SIZE (1024 * 1024)

struct model {
	unsigned char *s, *v;
	bool running;
};

static void
fill_random(unsigned char *buf, size_t len, uint64_t *st)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = test_rand(st);
}

static void
check_range(struct replica_disk *d, const struct model *m, uint64_t off,
	    size_t len, bool view, uint64_t seed, int step)
{
	unsigned char *buf = malloc(len);
	const unsigned char *want = (view ? m->v : m->s) + off;
	size_t i;

	cr_assert_eq(view ? replica_view_read(d, buf, len, off)
			  : replica_primary_read(d, buf, len, off), 0,
		     "seed %ju step %d: read failed", (uintmax_t) seed, step);
	if (memcmp(buf, want, len) != 0) {
		for (i = 0; buf[i] == want[i]; i++)
			;
		cr_assert_fail("seed %ju step %d: %s byte %ju is 0x%02x, "
			       "model says 0x%02x", (uintmax_t) seed, step,
			       view ? "view" : "disk",
			       (uintmax_t) (off + i), buf[i], want[i]);
	}
	free(buf);
}

static void
run_model(uint64_t seed, const char *dir, bool aligned)
{
	struct replica *r = test_replica(SIZE, 0, dir);
	struct replica_disk *d = replica_disk_at(r, 0);
	struct model m = { calloc(1, SIZE), calloc(1, SIZE), false };
	unsigned char *data = malloc(SIZE);
	uint64_t st = seed;
	int step, steps = 300;

	for (step = 0; step < steps; step++) {
		uint64_t off = test_rand(&st) % SIZE;
		uint64_t len = test_rand(&st) % 3 == 0
			? test_rand(&st) % (SIZE / 4) + 1
			: test_rand(&st) % 20000 + 1;
		unsigned op = test_rand(&st) % 100;

		if (aligned) {
			off &= ~(uint64_t) 4095;
			len = (len + 4095) & ~(uint64_t) 4095;
		}
		if (off + len > SIZE)
			len = SIZE - off;
		if (step == 10 && !m.running) {
			cr_assert_eq(replica_start(r), 0);
			m.running = true;
		}
		if (op < 30) {			/* primary write */
			fill_random(data, len, &st);
			cr_assert_eq(replica_primary_write(d, data, len, off),
				     0, "seed %ju step %d", (uintmax_t) seed,
				     step);
			memcpy(m.s + off, data, len);
			if (!m.running)
				memcpy(m.v + off, data, len);
		} else if (op < 35) {		/* primary zero */
			cr_assert_eq(replica_primary_zero(d, off, len), 0);
			memset(m.s + off, 0, len);
			if (!m.running)
				memset(m.v + off, 0, len);
		} else if (op < 60) {		/* view write */
			fill_random(data, len, &st);
			if (!m.running) {
				cr_assert_eq(replica_view_write(d, data, len,
								off), -1);
				continue;
			}
			cr_assert_eq(replica_view_write(d, data, len, off), 0,
				     "seed %ju step %d", (uintmax_t) seed,
				     step);
			memcpy(m.v + off, data, len);
		} else if (op < 64) {		/* view zero */
			if (!m.running)
				continue;
			cr_assert_eq(replica_view_zero(d, off, len), 0);
			memset(m.v + off, 0, len);
		} else if (op < 80) {
			check_range(d, &m, off, len, true, seed, step);
		} else if (op < 90) {
			check_range(d, &m, off, len, false, seed, step);
		} else if (m.running) {		/* checkpoint */
			cr_assert_eq(replica_checkpoint(r), 0);
			memcpy(m.v, m.s, SIZE);
		}
	}
	check_range(d, &m, 0, SIZE, true, seed, steps);
	check_range(d, &m, 0, SIZE, false, seed, steps);
	if (seed % 2 == 0) {
		cr_assert_eq(replica_stop(r), 0);
		memcpy(m.v, m.s, SIZE);
	} else {
		cr_assert_eq(replica_failover(r), 0);
		check_range(d, &m, 0, SIZE, true, seed, steps + 1);
		replica_wait_commit(r);
		cr_assert_eq(replica_state(r), REPLICA_DONE);
		memcpy(m.s, m.v, SIZE);
	}
	check_range(d, &m, 0, SIZE, true, seed, steps + 2);
	check_range(d, &m, 0, SIZE, false, seed, steps + 2);
	replica_free(r);
	free(m.s);
	free(m.v);
	free(data);
}

static void
run_seeds(const char *dir, bool aligned, uint64_t base)
{
	uint64_t seed, n = getenv("COLOFS_LONG") ? 400 : 40;

	log_set_quiet(true);
	for (seed = base; seed < base + n; seed++)
		run_model(seed, dir, aligned);
}

Test(model, memory_unaligned, .timeout = 300)
{
	run_seeds(NULL, false, 1000);
}

Test(model, memory_aligned, .timeout = 300)
{
	run_seeds(NULL, true, 2000);
}

Test(model, file_unaligned, .timeout = 300)
{
	char *dir = test_temp_dir();

	run_seeds(dir, false, 3000);
	test_cleanup_dir(dir);
}

Test(model, file_aligned, .timeout = 300)
{
	char *dir = test_temp_dir();

	run_seeds(dir, true, 4000);
	test_cleanup_dir(dir);
}
