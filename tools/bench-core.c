/* SPDX-License-Identifier: MIT */
/* Core benchmark: the engine without FUSE or NBD.  Prints figures, never
 * fails on them (machines here are shared and noisy).
 *
 *  1. checkpoint latency against bytes buffered (1 MiB .. 1 GiB in each of
 *     hidden and active), memory and file buffers;
 *  2. throughput of view reads, view writes and primary writes (with the
 *     save into hidden) for 4 KiB and 1 MiB operations, as a ratio to
 *     plain pread/pwrite on a raw file of the same size;
 *  3. extent map metadata bytes per extent;
 *  4. what a crash-safe failover costs: the time from "failover" until
 *     the buffers and journals are durable (the state hook says failover)
 *     and until done, for memory buffers without and with a durable dir
 *     (copied and fsync'ed there) and for file buffers (linked, fsync'ed);
 *  5. steady-state epochs: the same writes epoch after epoch, each ended by
 *     a checkpoint; per epoch the throughput, the page faults the process
 *     took (getrusage minflt: the engine's threads included) and the
 *     checkpoint's duration.  Recycled buffers fault nothing in from the
 *     third epoch on (the first two fill fresh stores); memory buffers
 *     also when each epoch writes another place of the disk (wandering),
 *     and from the first epoch on with buffer_warm (the warming's speed
 *     printed first).
 *
 * Usage: bench-core [--quick] [--dir DIR] [--only PART]
 *   DIR: where images go (/tmp); PART: extmap, checkpoint, epochs,
 *   throughput or failover (default: all)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "extmap.h"
#include "fdio.h"
#include "image.h"
#include "log.h"
#include "secondary.h"
#include "store.h"

#define MiB ((uint64_t) 1024 * 1024)
#define GiB (1024 * MiB)

static const char *dir = "/tmp";
static const char *only;
static int quick;

static int
part(const char *name)
{
	return only == NULL || strcmp(only, name) == 0;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *) a, y = *(const double *) b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static char *
temp_image(uint64_t size)
{
	char *path;
	int fd;

	if (asprintf(&path, "%s/colofs-bench.XXXXXX", dir) == -1)
		exit(1);
	fd = mkstemp(path);
	if (fd == -1 || ftruncate(fd, size) == -1) {
		perror(path);
		exit(1);
	}
	/* Allocated, as a real disk image is: reading holes is not the
	 * thing to measure.
	 */
	if (fallocate(fd, 0, 0, size) == -1)
		perror("fallocate");
	close(fd);
	return path;
}

/* warm: buffer_warm's bytes, faulted in before start (0: none); the
 * start waits for it, and *warm_s (if not NULL) gets how long.
 */
static struct secondary *
open_secondary_warm(const char *path, struct store_factory *f, uint64_t warm,
		    double *warm_s)
{
	struct secondary *r = secondary_new(f);
	struct image *img = image_open(path, IMAGE_FORMAT_RAW, NULL, "vda");
	double t = now();

	if (r == NULL || img == NULL || !secondary_add_disk(r, "vda", img) ||
	    secondary_warm(r, warm) == -1 || secondary_start(r) == -1) {
		fprintf(stderr, "bench: cannot open a replica on %s\n", path);
		exit(1);
	}
	if (warm_s)
		*warm_s = now() - t;
	return r;
}

static struct secondary *
open_secondary(const char *path, struct store_factory *f)
{
	return open_secondary_warm(path, f, 0, NULL);
}

static double hook_t;

static int
failover_hook(void *opaque, enum secondary_state next, bool journaled)
{
	(void) opaque;
	(void) journaled;
	if (next == SECONDARY_FAILOVER)
		hook_t = now();
	return 0;
}

static void
bench_failover(const char *kind, struct store_factory f, bool durable)
{
	uint64_t size = quick ? 32 * MiB : 1 * GiB, half = size / 4, off;
	char *buf = malloc(MiB), *path = temp_image(size), *jdir;
	struct secondary *r;
	struct secondary_disk *d;
	double t0, t1;

	if (asprintf(&jdir, "%s/colofs-bench-j.XXXXXX", dir) == -1 ||
	    mkdtemp(jdir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	r = secondary_new(&f);
	if (r == NULL || (durable && secondary_set_durable(r, jdir, jdir,
							 "bench") == -1)) {
		perror("replica");
		exit(1);
	}
	secondary_set_state_hook(r, failover_hook, NULL);
	d = secondary_add_disk(r, "vda", image_open(path, IMAGE_FORMAT_RAW,
						  NULL, "vda"));
	if (d == NULL || secondary_start(r) == -1) {
		perror("replica");
		exit(1);
	}
	memset(buf, 0x5a, MiB);
	for (off = 0; off < half; off += MiB) {
		secondary_primary_write(d, buf, MiB, off);
		secondary_view_write(d, buf, MiB, off + half);
	}
	sync();
	t0 = now();
	secondary_failover(r);
	secondary_wait_commit(r);
	t1 = now();
	printf("  %-30s %5llu MiB buffered: durable after %8.1f ms, "
	       "done after %8.1f ms\n", kind,
	       (unsigned long long) (2 * half / MiB), (hook_t - t0) * 1e3,
	       (t1 - t0) * 1e3);
	secondary_free(r);
	unlink(path);
	rmdir(jdir);
	free(jdir);
	free(path);
	free(buf);
}

static void
bench_checkpoint(const char *kind, struct store_factory f)
{
	uint64_t sizes[] = { 1 * MiB, 16 * MiB, 256 * MiB, 1 * GiB };
	int nsizes = quick ? 2 : 4, reps = quick ? 2 : 3, i, k;
	char *buf = malloc(MiB);
	char *path = temp_image(quick ? 32 * MiB : 1 * GiB);
	struct secondary *r = open_secondary(path, &f);
	struct secondary_disk *d = secondary_disk_at(r, 0);

	memset(buf, 0x5a, MiB);
	printf("checkpoint latency, %s buffers (median of %d):\n", kind, reps);
	for (i = 0; i < nsizes; i++) {
		double t[8];

		for (k = 0; k < reps; k++) {
			uint64_t off;
			double t0;

			for (off = 0; off < sizes[i]; off += MiB) {
				secondary_view_write(d, buf, MiB, off);
				secondary_primary_write(d, buf, MiB, off);
			}
			t0 = now();
			if (secondary_checkpoint(r) == -1) {
				perror("checkpoint");
				exit(1);
			}
			t[k] = now() - t0;
			usleep(200000);	/* let the reclaim thread finish */
		}
		printf("  %5llu MiB in hidden + %5llu MiB in active: "
		       "%8.3f ms\n", (unsigned long long) (sizes[i] / MiB),
		       (unsigned long long) (sizes[i] / MiB),
		       median(t, reps) * 1e3);
	}
	secondary_free(r);
	unlink(path);
	free(path);
	free(buf);
}

static long
minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* Each epoch: span of 1 MiB view writes and span of 1 MiB primary writes
 * (each saving S's old bytes into hidden), then a checkpoint.  wander: each
 * epoch writes another of 4 places of the disk (a guest's writes move
 * over its disk), else the same place every epoch.
 */
static void
bench_epochs(const char *kind, struct store_factory f, int wander, int warm)
{
	uint64_t span = quick ? 32 * MiB : 256 * MiB, off, at;
	int places = wander ? 4 : 1;
	int epochs = quick ? 4 : 6, e;
	char *path = temp_image(2 * span * places);
	double warm_s;
	struct secondary *r = open_secondary_warm(path, &f, warm ? span : 0,
						  &warm_s);
	struct secondary_disk *d = secondary_disk_at(r, 0);
	char *buf = aligned_alloc(4096, MiB);

	memset(buf, 0x5a, MiB);
	for (off = 0; off < 2 * span * places; off += MiB) /* S's page cache */
		secondary_primary_read(d, buf, MiB, off);
	printf("%s epochs, %s buffers (%llu MiB view + %llu MiB "
	       "primary writes of 1 MiB, %s, then a checkpoint):\n",
	       wander ? "wandering" : "steady-state", kind,
	       (unsigned long long) (span / MiB),
	       (unsigned long long) (span / MiB),
	       wander ? "each epoch at another place" : "the same place");
	if (warm)
		printf("  buffer_warm = %llu MiB: 4 stores warmed before start "
		       "in %.3f s (%.0f MiB/s)\n",
		       (unsigned long long) (span / MiB), warm_s,
		       4 * span / MiB / warm_s);
	printf("  %-6s %9s %12s %12s %14s\n", "epoch", "MiB/s", "page faults",
	       "faults/MiB", "checkpoint ms");
	for (e = 1; e <= epochs; e++) {
		long f0 = minflt(), faults;
		double t0 = now(), t1, tc;

		at = (uint64_t) ((e - 1) % places) * span;
		for (off = 0; off < span; off += MiB) {
			if (secondary_view_write(d, buf, MiB, at + off) == -1 ||
			    secondary_primary_write(d, buf, MiB, places * span +
						    at + off) == -1) {
				perror("write");
				exit(1);
			}
		}
		t1 = now();
		faults = minflt() - f0;
		if (secondary_checkpoint(r) == -1) {
			perror("checkpoint");
			exit(1);
		}
		tc = now() - t1;
		printf("  %-6d %9.0f %12ld %12.1f %14.3f\n", e,
		       2 * span / MiB / (t1 - t0), faults,
		       (double) faults / (2 * span / MiB), tc * 1e3);
	}
	secondary_free(r);
	unlink(path);
	free(path);
	free(buf);
}

typedef int (*io_fn)(void *ctx, char *buf, size_t len, uint64_t off);

static double
run_io(io_fn fn, void *ctx, size_t bs, uint64_t total, uint64_t span,
       int random)
{
	char *buf = aligned_alloc(4096, bs);
	uint64_t n = total / bs, i, st = 12345;
	double t0;

	memset(buf, 0x77, bs);
	t0 = now();
	for (i = 0; i < n; i++) {
		uint64_t off;

		if (random) {
			st = st * 6364136223846793005ULL + 1442695040888963407ULL;
			off = (st >> 11) % (span / bs) * bs;
		} else
			off = (i * bs) % span;
		if (fn(ctx, buf, bs, off) == -1) {
			perror("io");
			exit(1);
		}
	}
	free(buf);
	return total / (now() - t0) / MiB;
}

static int
plain_read(void *ctx, char *buf, size_t len, uint64_t off)
{
	return full_pread(*(int *) ctx, buf, len, off);
}

static int
plain_write(void *ctx, char *buf, size_t len, uint64_t off)
{
	return full_pwrite(*(int *) ctx, buf, len, off);
}

static int
view_read(void *ctx, char *buf, size_t len, uint64_t off)
{
	return secondary_view_read(ctx, buf, len, off);
}

static int
view_write(void *ctx, char *buf, size_t len, uint64_t off)
{
	return secondary_view_write(ctx, buf, len, off);
}

static int
primary_write(void *ctx, char *buf, size_t len, uint64_t off)
{
	return secondary_primary_write(ctx, buf, len, off);
}

static int
primary_read(void *ctx, char *buf, size_t len, uint64_t off)
{
	return secondary_primary_read(ctx, buf, len, off);
}

static void
row(size_t bs, const char *op, double c, double p)
{
	printf("  %-8zu %-26s %9.0f %9.0f %6.2fx\n", bs, op, c, p, c / p);
}

/* First touch: colofs into empty buffers against plain writes into a
 * fresh sparse file (both allocate pages); rewrite: both again over what
 * they hold.  Reads follow the writes, so both are warm.
 */
static void
bench_throughput(void)
{
	uint64_t span = quick ? 64 * MiB : 512 * MiB;
	size_t sizes[] = { 4096, MiB };
	int i;

	printf("throughput (MiB/s, page cache, %llu MiB span, memory "
	       "buffers; 4 KiB random, 1 MiB sequential):\n",
	       (unsigned long long) (span / MiB));
	printf("  %-8s %-26s %9s %9s %7s\n", "op size", "operation",
	       "colofs", "plain", "ratio");
	for (i = 0; i < 2; i++) {
		size_t bs = sizes[i];
		int rnd = bs == 4096;
		uint64_t total = rnd ? (quick ? 16 : 128) * MiB : span;
		char *path = temp_image(span), *plain = temp_image(span);
		int fd = open(plain, O_RDWR);
		struct store_factory f = store_memory_factory();
		struct secondary *r = open_secondary(path, &f);
		struct secondary_disk *d = secondary_disk_at(r, 0);
		double p, c;

		p = run_io(plain_write, &fd, bs, total, span, rnd);
		c = run_io(view_write, d, bs, total, span, rnd);
		row(bs, "view write, first touch", c, p);
		p = run_io(plain_write, &fd, bs, total, span, rnd);
		c = run_io(view_write, d, bs, total, span, rnd);
		row(bs, "view write, rewrite", c, p);
		p = run_io(plain_read, &fd, bs, total, span, rnd);
		c = run_io(view_read, d, bs, total, span, rnd);
		row(bs, "view read", c, p);
		secondary_checkpoint(r);
		/* Warm S's page cache: measure the engine, not the disk. */
		run_io(primary_read, d, MiB, span, span, 0);
		p = run_io(plain_write, &fd, bs, total, span, rnd);
		c = run_io(primary_write, d, bs, total, span, rnd);
		row(bs, "primary write, with save", c, p);
		p = run_io(plain_write, &fd, bs, total, span, rnd);
		c = run_io(primary_write, d, bs, total, span, rnd);
		row(bs, "primary write, saved", c, p);
		secondary_free(r);
		close(fd);
		unlink(path);
		unlink(plain);
		free(path);
		free(plain);
	}
}

static void
bench_extmap(void)
{
	struct extmap *em = extmap_new();
	uint64_t i, st = 1, n = quick ? 100000 : 1000000;

	for (i = 0; i < n; i++) {
		st = st * 6364136223846793005ULL + 1442695040888963407ULL;
		extmap_insert(em, (st >> 20) % (64 * n) * 8192, 4096);
	}
	printf("extent map: %zu extents, %zu bytes, %.1f bytes per extent\n",
	       extmap_count(em), extmap_mem_bytes(em),
	       (double) extmap_mem_bytes(em) / extmap_count(em));
	extmap_free(em);
}

int
main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--quick] [--dir DIR] "
				"[--only PART]\n", argv[0]);
			return 2;
		}
	}
	if (part("extmap"))
		bench_extmap();
	if (part("checkpoint")) {
		bench_checkpoint("memory", store_memory_factory());
		bench_checkpoint("file", store_file_factory(dir));
	}
	if (part("epochs")) {
		bench_epochs("memory", store_memory_factory(), 0, 0);
		bench_epochs("file", store_file_factory(dir), 0, 0);
		bench_epochs("memory", store_memory_factory(), 1, 0);
		bench_epochs("memory", store_memory_factory(), 1, 1);
	}
	if (part("throughput"))
		bench_throughput();
	if (part("failover")) {
		printf("failover (buffers and journals durable before the "
		       "commit):\n");
		bench_failover("memory, no durable dir",
			       store_memory_factory(), false);
		bench_failover("memory, durable dir", store_memory_factory(),
			       true);
		bench_failover("file, durable dir", store_file_factory(dir),
			       true);
	}
	return 0;
}
