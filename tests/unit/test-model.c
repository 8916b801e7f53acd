/* SPDX-License-Identifier: MIT */
/* Model-based randomized test: seeded sequences of primary writes and
 * zeroes, view writes and zeroes, reads, checkpoints and a final stop or
 * failover, run against the engine and against a trivial reference (two
 * byte arrays, S and V).  Every read and the final state must match byte
 * for byte.  Prints the seed and step on failure.
 *
 * The second half does the same across a crash, fsx-style: a child
 * process runs a seeded sequence (start, writes, checkpoints, a durable
 * failover, view writes during the commit) with a crash point armed at a
 * seeded place (crashpoint.h: it _exit(137)s there, as kill -9 would),
 * and reports each operation it finished through a pipe.  The parent
 * replays the same sequence on the model up to the last finished
 * operation (the one in flight may have happened or not, byte by byte),
 * restarts the secondary from the files the child left (state file,
 * journal, buffer files) as the daemon would, and compares S.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crashpoint.h"
#include "fdio.h"
#include "log.h"
#include "secondary.h"
#include "statefile.h"
#include "support.h"

#define SIZE (1024 * 1024)

struct model {
	unsigned char *s, *v;
	bool running;
	/* Across a crash: V at the failover, and the bytes view writes
	 * changed after it since the last view flush (their journal records
	 * wait for the flush, so a crash may bring back fo there).
	 */
	unsigned char *fo, *loose;
};

static void
fill_random(unsigned char *buf, size_t len, uint64_t *st)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = test_rand(st);
}

static void
check_range(struct secondary_disk *d, const struct model *m, uint64_t off,
	    size_t len, bool view, uint64_t seed, int step)
{
	unsigned char *buf = malloc(len);
	const unsigned char *want = (view ? m->v : m->s) + off;
	size_t i;

	cr_assert_eq(view ? secondary_view_read(d, buf, len, off)
			  : secondary_primary_read(d, buf, len, off), 0,
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
	struct secondary *r = test_secondary(SIZE, 0, dir);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	struct model m = { calloc(1, SIZE), calloc(1, SIZE), false, NULL, NULL };
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
			cr_assert_eq(secondary_start(r), 0);
			m.running = true;
		}
		if (op < 30) {			/* primary write */
			fill_random(data, len, &st);
			cr_assert_eq(secondary_primary_write(d, data, len, off),
				     0, "seed %ju step %d", (uintmax_t) seed,
				     step);
			memcpy(m.s + off, data, len);
			if (!m.running)
				memcpy(m.v + off, data, len);
		} else if (op < 35) {		/* primary zero */
			cr_assert_eq(secondary_primary_zero(d, off, len), 0);
			memset(m.s + off, 0, len);
			if (!m.running)
				memset(m.v + off, 0, len);
		} else if (op < 60) {		/* view write */
			fill_random(data, len, &st);
			if (!m.running) {
				cr_assert_eq(secondary_view_write(d, data, len,
								off), -1);
				continue;
			}
			cr_assert_eq(secondary_view_write(d, data, len, off), 0,
				     "seed %ju step %d", (uintmax_t) seed,
				     step);
			memcpy(m.v + off, data, len);
		} else if (op < 64) {		/* view zero */
			if (!m.running)
				continue;
			cr_assert_eq(secondary_view_zero(d, off, len), 0);
			memset(m.v + off, 0, len);
		} else if (op < 80) {
			check_range(d, &m, off, len, true, seed, step);
		} else if (op < 90) {
			check_range(d, &m, off, len, false, seed, step);
		} else if (m.running) {		/* checkpoint */
			cr_assert_eq(secondary_checkpoint(r), 0);
			memcpy(m.v, m.s, SIZE);
		}
	}
	check_range(d, &m, 0, SIZE, true, seed, steps);
	check_range(d, &m, 0, SIZE, false, seed, steps);
	if (seed % 2 == 0) {
		cr_assert_eq(secondary_stop(r), 0);
		memcpy(m.v, m.s, SIZE);
	} else {
		cr_assert_eq(secondary_failover(r), 0);
		check_range(d, &m, 0, SIZE, true, seed, steps + 1);
		secondary_wait_commit(r);
		cr_assert_eq(secondary_state(r), SECONDARY_DONE);
		memcpy(m.s, m.v, SIZE);
	}
	check_range(d, &m, 0, SIZE, true, seed, steps + 2);
	check_range(d, &m, 0, SIZE, false, seed, steps + 2);
	secondary_free(r);
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

/* ---- across a crash ---- */

#define CSIZE (8 * 1024 * 1024)
#define RUN_OPS 60		/* operations while running */
#define FAIL_OPS 24		/* view writes and zeroes after failover */

enum cop { C_START, C_PWRITE, C_PZERO, C_VWRITE, C_VZERO, C_CHECKPOINT,
	   C_FAILOVER, C_VFLUSH };

struct cstep {
	enum cop op;
	uint64_t off, len, dseed;
};

/* The whole seeded sequence, the same in the child and the parent. */
static void
crash_steps(uint64_t seed, struct cstep *steps, int *n)
{
	uint64_t st = seed * 0x9e3779b97f4a7c15ULL + 1;
	int i, k = 0;

	steps[k++] = (struct cstep) { C_START, 0, 0, 0 };
	for (i = 0; i < RUN_OPS + FAIL_OPS; i++) {
		struct cstep *c = &steps[k++];
		unsigned op = test_rand(&st) % 100;

		c->off = test_rand(&st) % CSIZE;
		c->len = test_rand(&st) % 4 == 0
			 ? test_rand(&st) % (CSIZE / 8) + 1
			 : test_rand(&st) % 40000 + 1;
		if (c->off + c->len > CSIZE)
			c->len = CSIZE - c->off;
		c->dseed = test_rand(&st);
		if (i >= RUN_OPS)
			c->op = op < 70 ? C_VWRITE : op < 85 ? C_VZERO
							    : C_VFLUSH;
		else if (op < 35)
			c->op = C_PWRITE;
		else if (op < 40)
			c->op = C_PZERO;
		else if (op < 80)
			c->op = C_VWRITE;
		else if (op < 85)
			c->op = C_VZERO;
		else
			c->op = C_CHECKPOINT;
		if (i == RUN_OPS - 1)
			steps[k++] = (struct cstep) { C_FAILOVER, 0, 0, 0 };
	}
	*n = k;
}

/* Where the child dies: a crash point and its pass, from the seed. */
static void
crash_spec(uint64_t seed, char *out, size_t len)
{
	static const char *const points[] = {
		"failover_journal_written", "failover_buffers_linked",
		"failover_buffers_synced", "fsynced.journal",
		"renamed.journal", "failover_journaled", "fsynced.state",
		"renamed.state", "failover_acked", "commit_chunk",
		"failover_view_write", "commit_flushed", "done_before_drop",
		"dropped.journal", "notes_data_synced",
	};
	uint64_t st = seed ^ 0x5bd1e995;
	size_t i = test_rand(&st) % (sizeof points / sizeof points[0] + 1);
	unsigned nth = 1 + test_rand(&st) % 3;

	if (i == sizeof points / sizeof points[0])
		snprintf(out, len, "none");	/* no crash at all */
	else
		snprintf(out, len, "%s:%u", points[i], nth);
}

static const char *crash_dir;

static int
crash_hook(void *opaque, enum secondary_state next, bool journaled)
{
	struct statefile sf = { .state = next, .journaled = journaled };

	(void) opaque;
	memset(sf.generation, '0', STATEFILE_GEN_LEN);
	return statefile_write(crash_dir, "m.state", &sf) == 0 ? 0 : -1;
}

static struct secondary *
crash_secondary(const char *dir, bool file_buffers)
{
	struct store_factory f = file_buffers ? store_file_factory(dir)
					      : store_memory_factory();
	struct secondary *r = secondary_new(&f);
	char path[512];
	int fd;

	cr_assert_not_null(r);
	snprintf(path, sizeof path, "%s/s.img", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_not_null(secondary_add_disk(r, "vda",
					    image_raw_from_fd(fd, path)));
	cr_assert_eq(secondary_set_durable(r, dir, dir, "m"), 0);
	crash_dir = dir;
	secondary_set_state_hook(r, crash_hook, NULL);
	return r;
}

static int
crash_do(struct secondary *r, const struct cstep *c, unsigned char *data)
{
	struct secondary_disk *d = secondary_disk_at(r, 0);
	uint64_t ds = c->dseed;

	switch (c->op) {
	case C_START: return secondary_start(r);
	case C_CHECKPOINT: return secondary_checkpoint(r);
	case C_FAILOVER: return secondary_failover(r);
	case C_VFLUSH: return secondary_view_flush(d);
	case C_PZERO: return secondary_primary_zero(d, c->off, c->len);
	case C_VZERO: return secondary_view_zero(d, c->off, c->len);
	case C_PWRITE:
		fill_random(data, c->len, &ds);
		return secondary_primary_write(d, data, c->len, c->off);
	case C_VWRITE:
		fill_random(data, c->len, &ds);
		return secondary_view_write(d, data, c->len, c->off);
	}
	return -1;
}

/* The model after step c: s and v as run_model keeps them. */
static void
crash_apply(struct model *m, const struct cstep *c, unsigned char *data)
{
	uint64_t ds = c->dseed;

	switch (c->op) {
	case C_START: m->running = true; break;
	case C_CHECKPOINT: memcpy(m->v, m->s, CSIZE); break;
	case C_FAILOVER:			/* V is final */
		m->running = false;
		memcpy(m->fo, m->v, CSIZE);
		break;
	case C_VFLUSH: memset(m->loose, 0, CSIZE); break;
	case C_PZERO:
		memset(m->s + c->off, 0, c->len);
		break;
	case C_PWRITE:
		fill_random(data, c->len, &ds);
		memcpy(m->s + c->off, data, c->len);
		break;
	case C_VZERO:
		memset(m->v + c->off, 0, c->len);
		break;
	case C_VWRITE:
		fill_random(data, c->len, &ds);
		memcpy(m->v + c->off, data, c->len);
		break;
	}
	if ((c->op == C_VWRITE || c->op == C_VZERO) && !m->running)
		memset(m->loose + c->off, 1, c->len);
}

static void
crash_child(const char *dir, bool file_buffers, const struct cstep *steps,
	    int n, const char *spec, int wfd)
{
	unsigned char *data = malloc(CSIZE);
	struct secondary *r;
	int i;

	crash_point_arm(strcmp(spec, "none") ? spec : NULL);
	r = crash_secondary(dir, file_buffers);
	for (i = 0; i < n; i++) {
		if (crash_do(r, &steps[i], data) != 0)
			_exit(3);
		if (write(wfd, &i, sizeof i) != sizeof i)
			_exit(4);
	}
	secondary_wait_commit(r);
	_exit(secondary_state(r) == SECONDARY_DONE ? 0 : 5);
}

static void
run_crash(uint64_t seed, bool file_buffers)
{
	struct cstep *steps = calloc(RUN_OPS + FAIL_OPS + 2, sizeof *steps);
	struct model m = { calloc(1, CSIZE), calloc(1, CSIZE), false,
			   calloc(1, CSIZE), calloc(1, CSIZE) },
		     alt = { calloc(1, CSIZE), calloc(1, CSIZE), false,
			     calloc(1, CSIZE), calloc(1, CSIZE) };
	unsigned char *data = malloc(CSIZE), *got = malloc(CSIZE);
	char *dir = test_temp_dir(), path[512], spec[64], err[256];
	int n, i, last = -1, pfd[2], status, fd, rc;
	const unsigned char *want, *maybe;
	struct statefile sf;
	struct secondary *r;
	pid_t pid;
	size_t b;

	crash_steps(seed, steps, &n);
	crash_spec(seed, spec, sizeof spec);
	snprintf(path, sizeof path, "%s/s.img", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_eq(ftruncate(fd, CSIZE), 0);
	close(fd);
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		crash_child(dir, file_buffers, steps, n, spec, pfd[1]);
	}
	close(pfd[1]);
	while (read(pfd[0], &i, sizeof i) == sizeof i)
		last = i;
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && (WEXITSTATUS(status) == 137 ||
					WEXITSTATUS(status) == 0),
		  "seed %ju (%s): the child ended with status 0x%x",
		  (uintmax_t) seed, spec, status);
	/* The model up to the last finished step; alt also has the one in
	 * flight, whose bytes may be old or new.
	 */
	for (i = 0; i <= last; i++)
		crash_apply(&m, &steps[i], data);
	memcpy(alt.s, m.s, CSIZE);
	memcpy(alt.v, m.v, CSIZE);
	memcpy(alt.fo, m.fo, CSIZE);
	memcpy(alt.loose, m.loose, CSIZE);
	alt.running = m.running;
	if (last + 1 < n)
		crash_apply(&alt, &steps[last + 1], data);

	/* The restart, as fs/durable.c does it. */
	snprintf(path, sizeof path, "%s/m.state", dir);
	err[0] = '\0';
	rc = statefile_read(path, &sf, err, sizeof err);
	cr_assert_neq(rc, -1, "seed %ju (%s): %s", (uintmax_t) seed, spec,
		      err);
	if (rc == 1)			/* killed before the first write */
		sf.state = SECONDARY_NONE;
	r = crash_secondary(dir, file_buffers);
	if (sf.state == SECONDARY_FAILOVER || sf.state == SECONDARY_FAILOVER_FAILED) {
		cr_assert(sf.journaled);
		cr_assert_eq(secondary_resume_failover(r), 0, "seed %ju (%s)",
			     (uintmax_t) seed, spec);
		secondary_wait_commit(r);
		cr_assert_eq(secondary_state(r), SECONDARY_DONE);
	} else if (sf.state == SECONDARY_DONE) {
		cr_assert_eq(secondary_restore_done(r), 0);
	}
	/* Failed over (durably): S is V.  Not: S is as the primary left it. */
	if (sf.state == SECONDARY_NONE || sf.state == SECONDARY_RUNNING) {
		want = m.s;
		maybe = alt.s;
	} else {
		want = m.v;
		maybe = alt.v;
	}
	cr_assert_eq(secondary_primary_read(secondary_disk_at(r, 0), got, CSIZE,
					  0), 0);
	for (b = 0; b < CSIZE; b++)
		if (got[b] != want[b] && got[b] != maybe[b] &&
		    !(want == m.v && (m.loose[b] || alt.loose[b]) &&
		      (got[b] == m.fo[b] || got[b] == alt.fo[b])))
			cr_assert_fail("seed %ju (%s, %s buffers, state file %s,"
				       " %d of %d steps done): S byte %zu is "
				       "0x%02x, model says 0x%02x",
				       (uintmax_t) seed, spec,
				       file_buffers ? "file" : "memory",
				       secondary_state_name(sf.state), last + 1,
				       n, b, got[b], want[b]);
	if (sf.state != SECONDARY_NONE && sf.state != SECONDARY_RUNNING) {
		snprintf(path, sizeof path, "%s/m.vda.journal", dir);
		cr_assert_neq(access(path, F_OK), 0, "seed %ju: journal left",
			      (uintmax_t) seed);
		snprintf(path, sizeof path, "%s/m.vda.active", dir);
		cr_assert_neq(access(path, F_OK), 0, "seed %ju: buffer left",
			      (uintmax_t) seed);
	}
	secondary_free(r);
	test_cleanup_dir(dir);
	free(steps);
	free(m.s);
	free(m.v);
	free(alt.s);
	free(alt.v);
	free(m.fo);
	free(m.loose);
	free(alt.fo);
	free(alt.loose);
	free(data);
	free(got);
}

static void
run_crash_seeds(bool file_buffers, uint64_t base)
{
	uint64_t seed, n = getenv("COLOFS_LONG") ? 300 : 16;

	log_set_quiet(true);
	for (seed = base; seed < base + n; seed++)
		run_crash(seed, file_buffers);
}

Test(model, failover_with_kills_file_buffers, .timeout = 600)
{
	run_crash_seeds(true, 5000);
}

Test(model, failover_with_kills_memory_buffers, .timeout = 600)
{
	run_crash_seeds(false, 6000);
}
