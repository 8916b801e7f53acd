/* SPDX-License-Identifier: MIT */
/* A stress driver for the engine that needs no test framework, so that it
 * runs under ThreadSanitizer (criterion's arena does not).  Threads issue
 * overlapping primary writes, view writes and view reads while the main
 * thread runs checkpoints, then a failover or a stop under load; the
 * third run's failover is durable (a journal and buffer files in a temp
 * dir), so view writes during its commit append to the journal from
 * several threads at once; the stop's run starts with buffer_warm (the
 * reclaim thread makes the spares while status is read), and a last run
 * frees the engine while it warms.  Exits non-zero on an I/O error or
 * when V differs from S at the end.
 *
 * Usage: stress [SECONDS-PER-PHASE]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "secondary.h"
#include "store.h"

#define SIZE (4 * 1024 * 1024)
#define THREADS 6

static atomic_bool stop_flag;
static atomic_int io_errors;

struct worker {
	struct secondary_disk *d;
	int id;
};

static uint64_t
next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 17;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = malloc(65536);
	uint64_t st = w->id + 1;

	while (!atomic_load(&stop_flag)) {
		uint64_t off = next(&st) % SIZE, len = next(&st) % 65536 + 1;
		int ret, kind = (w->id + next(&st)) % 3;

		if (off + len > SIZE)
			len = SIZE - off;
		memset(buf, w->id * 16 + (st & 15), len);
		if (kind == 0)
			ret = secondary_primary_write(w->d, buf, len, off);
		else if (kind == 1)
			ret = secondary_view_write(w->d, buf, len, off);
		else
			ret = secondary_view_read(w->d, buf, len, off);
		/* Primary writes are refused once failover starts. */
		if (ret == -1 && !(kind == 0 && errno == ESHUTDOWN))
			atomic_fetch_add(&io_errors, 1);
	}
	free(buf);
	return NULL;
}

enum end { END_STOP, END_FAILOVER, END_DURABLE_FAILOVER };

static int
run(int seconds, enum end end)
{
	struct store_factory f = store_memory_factory();
	struct secondary *r = secondary_new(&f);
	char path[] = "/tmp/colofs-stress.XXXXXX";
	int fd = mkstemp(path), i, fails = 0;
	struct worker w[THREADS];
	pthread_t t[THREADS];
	unsigned char *a = malloc(SIZE), *b = malloc(SIZE);
	struct secondary_disk *d;
	struct secondary_status st;

	char dir[] = "/tmp/colofs-stress-dir.XXXXXX";

	unlink(path);
	if (ftruncate(fd, SIZE) == -1)
		return 1;
	d = secondary_add_disk(r, "vda", image_raw_from_fd(fd, path));
	if (d == NULL)
		return 1;
	if (end == END_DURABLE_FAILOVER &&
	    (mkdtemp(dir) == NULL || secondary_set_durable(r, dir, dir, "s")))
		return 1;
	if (end == END_STOP) {
		if (secondary_warm(r, SIZE) == -1)
			return 1;
		for (i = 0; i < 10; i++)
			if (secondary_get_status(r, &st) == 0)
				secondary_status_release(&st);
	}
	if (secondary_start(r) == -1)
		return 1;
	atomic_store(&stop_flag, false);
	for (i = 0; i < THREADS; i++) {
		w[i] = (struct worker) { d, i };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (i = 0; i < seconds * 20; i++) {
		usleep(50000);
		if (secondary_checkpoint(r) == -1)
			fails++;
		if (secondary_get_status(r, &st) == 0)
			secondary_status_release(&st);
	}
	if (end != END_STOP)
		fails += secondary_failover(r) == -1;
	else
		fails += secondary_stop(r) == -1;
	usleep(200000);		/* I/O goes on during the commit */
	atomic_store(&stop_flag, true);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	secondary_wait_commit(r);
	if (secondary_state(r) != SECONDARY_DONE)
		fails++;
	if (secondary_view_read(d, a, SIZE, 0) || secondary_primary_read(d, b, SIZE, 0)
	    || memcmp(a, b, SIZE) != 0)
		fails++;
	secondary_free(r);
	if (end == END_DURABLE_FAILOVER && rmdir(dir) == -1) {
		perror(dir);		/* the journal or a buffer file left */
		fails++;
	}
	free(a);
	free(b);
	printf("stress: %s under load: %s\n",
	       end == END_STOP ? "stop" : end == END_FAILOVER ? "failover"
			       : "durable failover",
	       fails || atomic_load(&io_errors) ? "FAILED" : "ok");
	return fails || atomic_load(&io_errors);
}

/* buffer_warm under way (four stores of several steps) when the engine
 * is freed: the warming gives up, nothing leaks or races.
 */
static int
warm_then_free(void)
{
	struct store_factory f = store_memory_factory();
	struct secondary *r = secondary_new(&f);
	char path[] = "/tmp/colofs-stress.XXXXXX";
	int fd = mkstemp(path);
	struct secondary_status st;
	uint64_t size = 64 * 1024 * 1024;

	unlink(path);
	if (ftruncate(fd, size) == -1 ||
	    secondary_add_disk(r, "vda", image_raw_from_fd(fd, path)) == NULL ||
	    secondary_warm(r, size) == -1)
		return 1;
	usleep(20000);
	if (secondary_get_status(r, &st) == 0)
		secondary_status_release(&st);
	secondary_free(r);
	printf("stress: freed while warming: ok\n");
	return 0;
}

int
main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 2;

	log_set_quiet(true);
	return run(seconds, END_FAILOVER) | run(seconds, END_STOP) |
	       run(seconds, END_DURABLE_FAILOVER) | warm_then_free();
}
