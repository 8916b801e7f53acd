/* SPDX-License-Identifier: MIT */
/* The primary engine over a fake link: the "secondary" is a buffer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadline.h"
#include "log.h"
#include "primary.h"
#include "support.h"

#define SIZE (1u << 20)
#define G 65536
/* No NBD server takes more in one request (colofs's listener: 32M). */
#define NBD_MAX_REQUEST (32u << 20)

struct fake {
	char *sec;
	uint64_t size;		/* of the disk; SIZE unless a test says */
	bool connected;
	bool refuse_connect;
	bool fail_wait;		/* the secondary stops answering */
	uint64_t sent;
	const char *desc;	/* its export description (gi.h) */
};

static int
f_connect(void *o, size_t i, const char *uri, uint64_t size, char *err,
	  size_t errlen)
{
	struct fake *f = o;

	(void)i;
	(void)uri;
	cr_assert_eq(size, f->size);
	if (f->refuse_connect) {
		snprintf(err, errlen, "refused");
		errno = ECONNREFUSED;
		return -1;
	}
	f->connected = true;
	f->sent = 0;
	return 0;
}

static void
f_disconnect(void *o, size_t i, bool clean)
{
	(void)i;
	(void)clean;
	((struct fake *)o)->connected = false;
}

/* A gate in the link: when armed, the first write submitted waits in
 * f_submit until the test opens it; every write counts as it enters.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool armed, open;
	int entered;
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false,
	   false, 0 };

static void
gate_enter(void)
{
	pthread_mutex_lock(&gate.lock);
	if (++gate.entered == 1)
		while (!gate.open) {
			pthread_cond_broadcast(&gate.cond);
			pthread_cond_wait(&gate.cond, &gate.lock);
		}
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

/* Waits up to ms for n writes to have entered the link: the count. */
static int
gate_wait(int n, unsigned ms)
{
	struct timespec ts = deadline_in_ms(ms);
	int got;

	pthread_mutex_lock(&gate.lock);
	while (gate.entered < n &&
	       pthread_cond_timedwait(&gate.cond, &gate.lock, &ts) == 0)
		;
	got = gate.entered;
	pthread_mutex_unlock(&gate.lock);
	return got;
}

static void *
f_submit(void *o, size_t i, enum primary_op op, const void *buf, uint64_t off,
	 uint64_t len, char *err, size_t errlen)
{
	struct fake *f = o;

	(void)i;
	if (gate.armed && op == PRIMARY_OP_WRITE)
		gate_enter();
	if (!f->connected) {
		snprintf(err, errlen, "not connected");
		errno = ENOTCONN;
		return NULL;
	}
	cr_assert_leq(len, NBD_MAX_REQUEST, "a request of %lu bytes",
		      (unsigned long)len);
	cr_assert_leq(off + len, f->size);
	if (!f->fail_wait) {
		if (op == PRIMARY_OP_WRITE)
			memcpy(f->sec + off, buf, len);
		else if (op == PRIMARY_OP_ZERO || op == PRIMARY_OP_ZERO_ALLOC)
			memset(f->sec + off, 0, len);
		f->sent += op == PRIMARY_OP_FLUSH || op == PRIMARY_OP_READ ?
			   0 : len;
	}
	return malloc(1);
}

static int
f_wait(void *o, void *t, unsigned ms, char *err, size_t errlen)
{
	struct fake *f = o;

	(void)ms;
	free(t);
	if (f->fail_wait) {
		snprintf(err, errlen, "no reply");
		errno = ETIMEDOUT;
		return -1;
	}
	return 0;
}

static uint64_t
f_sent(void *o, size_t i)
{
	(void)i;
	return ((struct fake *)o)->sent;
}

static void
f_desc(void *o, size_t i, char *buf, size_t len)
{
	(void)i;
	snprintf(buf, len, "%s", ((struct fake *)o)->desc);
}

static const struct primary_link_ops fake_ops = {
	f_connect, f_disconnect, f_submit, f_wait, f_sent, NULL, f_desc, NULL,
};

/* The secondary's generations: A, then B after it failed over from A. */
#define GI_A "fake colofs-gi v1 cur=000000000000000a since=1700000000 " \
	"hist=0000000000000000,0000000000000000,0000000000000000," \
	"0000000000000000"
#define GI_B "fake colofs-gi v1 cur=000000000000000b since=1700000100 " \
	"hist=000000000000000a,0000000000000000,0000000000000000," \
	"0000000000000000"

static struct fake fk;
static char *dir;
static char *bm_path;

static unsigned keepalive_ms;

/* A primary over a disk of fk.size bytes, dirty granule gran. */
static struct primary *
make_gran(int fill, uint64_t gran)
{
	struct primary_disk_config dc = {
		.name = "vda",
		.img = test_raw_image(fk.size, fill),
		.uri = "nbd://fake/vda",
		.bitmap_path = bm_path,
	};
	struct primary_config pc = {
		.ndisks = 1, .disks = &dc, .granularity = gran,
		.timeout_ms = 100, .keepalive_ms = keepalive_ms,
		.link = &fake_ops, .link_opaque = &fk,
	};
	struct primary *p = primary_new(&pc);

	cr_assert_not_null(p);
	return p;
}

static struct primary *
make(int fill)
{
	return make_gran(fill, G);
}

/* The secondary's buffer for a disk of size bytes. */
static void
resize(uint64_t size)
{
	free(fk.sec);
	fk.size = size;
	fk.sec = calloc(1, size);
	cr_assert_not_null(fk.sec);
}

static void
setup(void)
{
	memset(&fk, 0, sizeof fk);
	fk.size = SIZE;
	fk.sec = calloc(1, SIZE);
	fk.desc = GI_A;
	keepalive_ms = 0;
	dir = test_temp_dir();
	cr_assert_neq(asprintf(&bm_path, "%s/vda.dirty", dir), -1);
	log_set_quiet(true);
}

static void
teardown(void)
{
	log_set_quiet(false);
	free(fk.sec);
	free(bm_path);
	test_cleanup_dir(dir);
}

static void
wait_state(struct primary *p, enum primary_state s)
{
	primary_wait_sync(p, 5000);
	cr_assert_eq(primary_state(p), s, "state %s, want %s",
		     primary_state_name(primary_state(p)),
		     primary_state_name(s));
}

static uint64_t
dirty(struct primary *p)
{
	struct primary_status st;
	uint64_t n;

	cr_assert_eq(primary_get_status(p, &st), 0);
	n = st.disks[0].dirty_bytes;
	primary_status_release(&st);
	return n;
}

static void
expect_equal(struct primary *p)
{
	char *buf = malloc(fk.size);

	cr_assert_not_null(buf);
	cr_assert_eq(primary_read(primary_find_disk(p, "vda"), buf, fk.size,
				  0), 0);
	cr_assert_eq(memcmp(buf, fk.sec, fk.size), 0, "the secondary differs");
	free(buf);
}

TestSuite(primary, .init = setup, .fini = teardown);

Test(primary, first_start_copies_the_whole_disk_then_mirrors)
{
	struct primary *p = make(0x33);
	struct primary_disk *d = primary_find_disk(p, "vda");
	char buf[4096];

	cr_assert_eq(primary_state(p), PRIMARY_NONE);
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE);
	expect_equal(p);
	memset(buf, 0x44, sizeof buf);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 12345), 0);
	cr_assert_eq(primary_zero(d, 200000, 5000), 0);
	cr_assert_eq(primary_flush(d), 0);
	expect_equal(p);
	cr_assert_eq(dirty(p), 0);
	cr_assert_eq(primary_checkpoint(p), 0);
	primary_free(p);
}

Test(primary, writes_in_none_are_tracked_and_the_next_start_copies_only_them)
{
	struct primary *p = make(0);
	struct primary_disk *d = primary_find_disk(p, "vda");
	char buf[100];

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_stop(p), 0);
	cr_assert_eq(primary_state(p), PRIMARY_NONE);
	memset(buf, 7, sizeof buf);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 3 * G + 10), 0);
	cr_assert_eq(dirty(p), G);
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, G, "sent %lu, want one granule",
		     (unsigned long)fk.sent);
	expect_equal(p);
	primary_free(p);
}

Test(primary, a_secondary_failure_degrades_and_the_checkpoint_says_why)
{
	struct primary *p = make(0);
	struct primary_disk *d = primary_find_disk(p, "vda");
	char buf[100], err[256];

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	fk.fail_wait = true;
	memset(buf, 9, sizeof buf);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 5 * G), 0,
		     "the VM's write must not fail for the secondary");
	cr_assert_eq(primary_state(p), PRIMARY_DEGRADED);
	cr_assert_eq(dirty(p), G);
	cr_assert_eq(primary_checkpoint(p), -1);
	cr_assert_eq(errno, EIO);
	primary_last_error(p, err, sizeof err);
	cr_assert_not_null(strstr(err, "no reply"), "%s", err);
	/* Degraded: tracked, not sent. */
	cr_assert_eq(primary_write(d, buf, sizeof buf, 9 * G), 0);
	cr_assert_eq(dirty(p), 2 * G);
	fk.fail_wait = false;
	cr_assert_eq(primary_start(p), -1);
	cr_assert_eq(errno, EBUSY);
	cr_assert_eq(primary_resync(p, false, NULL), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, 2 * G);
	expect_equal(p);
	cr_assert_eq(primary_checkpoint(p), 0);
	primary_free(p);
}

Test(primary, failover_keeps_tracking_and_resync_full_copies_everything)
{
	struct primary *p = make(0x5a);
	struct primary_disk *d = primary_find_disk(p, "vda");
	char buf[10] = "abcdefghi";

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_failover(p), 0);
	cr_assert_eq(primary_state(p), PRIMARY_FAILOVER);
	cr_assert_eq(primary_checkpoint(p), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 0), 0);
	cr_assert_eq(dirty(p), G);
	cr_assert_eq(primary_resync(p, true, NULL), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE);
	expect_equal(p);
	primary_free(p);
}

Test(primary, a_refused_connection_leaves_the_state_and_says_why)
{
	struct primary *p = make(0);
	char err[256];

	fk.refuse_connect = true;
	cr_assert_eq(primary_start(p), -1);
	cr_assert_eq(primary_state(p), PRIMARY_NONE);
	primary_last_error(p, err, sizeof err);
	cr_assert_not_null(strstr(err, "refused"), "%s", err);
	primary_free(p);
}

Test(primary, the_bitmap_outlives_the_primary)
{
	struct primary *p = make(0);
	struct primary_disk *d = primary_find_disk(p, "vda");
	char buf[10] = "x";

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_failover(p), 0);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 7 * G), 0);
	primary_free(p);
	p = make(0);
	cr_assert_eq(dirty(p), G);
	cr_assert_eq(primary_resync(p, false, NULL), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, G);
	primary_free(p);
}

Test(primary, a_word_with_nothing_to_do_fails_and_says_why)
{
	struct primary *p = make(0);
	char err[512];

	cr_assert_eq(primary_stop(p), -1, "stop in none");
	cr_assert_eq(errno, EINVAL);
	primary_last_error(p, err, sizeof err);
	cr_assert(strstr(err, "stop: ") != NULL, "%s", err);
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_failover(p), 0);
	cr_assert_eq(primary_failover(p), -1, "failover in failover");
	cr_assert_eq(errno, EBUSY);
	primary_last_error(p, err, sizeof err);
	cr_assert(strstr(err, "failover: ") != NULL, "%s", err);
	cr_assert_eq(primary_state(p), PRIMARY_FAILOVER);
	primary_free(p);
}

Test(primary, a_secondary_that_failed_over_since_is_a_split_brain)
{
	struct primary *p = make(0);
	struct primary_disk *d = primary_find_disk(p, "vda");
	struct primary_status st;
	char buf[100], err[2600];

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_failover(p), 0);
	memset(buf, 7, sizeof buf);
	cr_assert_eq(primary_write(d, buf, sizeof buf, 3 * G), 0);
	fk.desc = GI_B;
	fk.sent = 0;
	cr_assert_eq(primary_resync(p, false, NULL), -1);
	cr_assert_eq(errno, EIO);
	primary_last_error(p, err, sizeof err);
	cr_assert_not_null(strstr(err, "split brain on vda"), "%s", err);
	cr_assert_eq(fk.sent, 0, "nothing may be copied");
	cr_assert_eq(primary_state(p), PRIMARY_FAILOVER);
	cr_assert_eq(primary_get_status(p, &st), 0);
	cr_assert(st.split_brain);
	primary_status_release(&st);
	/* This side wins. */
	cr_assert_eq(primary_resync(p, true, NULL), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE);
	expect_equal(p);
	cr_assert_eq(primary_get_status(p, &st), 0);
	cr_assert(!st.split_brain);
	cr_assert_eq(st.disks[0].peer_gen, 0xb);
	primary_status_release(&st);
	primary_free(p);
}

Test(primary, a_secondary_without_generations_gets_a_full_sync)
{
	struct primary *p = make(0);

	fk.desc = "";
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_stop(p), 0);
	fk.sent = 0;
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE, "an unknown peer: full sync");
	primary_free(p);
}

Test(primary, a_new_secondary_behind_the_same_uri_gets_a_full_sync)
{
	struct primary *p = make(0);

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_stop(p), 0);
	fk.desc = "colofs-gi v1 cur=00000000000000cc since=1 hist="
		  "0000000000000000,0000000000000000,0000000000000000,"
		  "0000000000000000";
	fk.sent = 0;
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE, "unrelated generations: full sync");
	primary_free(p);
}

Test(primary, a_hung_idle_secondary_degrades_the_pair_by_keepalive)
{
	struct primary *p;
	char err[512];
	int i;

	keepalive_ms = 20;
	p = make(0);
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	fk.fail_wait = true;	/* no write: only the keepalive can tell */
	for (i = 0; i < 1000 && primary_state(p) != PRIMARY_DEGRADED; i++)
		usleep(10000);
	cr_assert_eq(primary_state(p), PRIMARY_DEGRADED);
	cr_assert_eq(primary_checkpoint(p), -1);
	cr_assert_eq(errno, EIO);
	primary_last_error(p, err, sizeof err);
	cr_assert_not_null(strstr(err, "keepalive"), "%s", err);
	primary_free(p);
}
/* The sync's buffers are smaller than such granules: a dirty granule is
 * copied in pieces, and cleared once all of them are on the secondary.
 * (Under ASan, make check-asan, an overflow of a buffer is a failure too.)
 */
static void
sync_with_granule(uint64_t gran, uint64_t size)
{
	struct primary *p;
	struct primary_disk *d;
	char buf[4096];

	resize(size);
	p = make_gran(0x6c, gran);
	d = primary_find_disk(p, "vda");
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, size);
	expect_equal(p);
	cr_assert_eq(dirty(p), 0);
	/* One byte dirty in the last, short granule and one in the first:
	 * the next start copies those granules whole.
	 */
	cr_assert_eq(primary_stop(p), 0);
	memset(buf, 0x21, sizeof buf);
	cr_assert_eq(primary_write(d, buf, 1, size - 1), 0);
	cr_assert_eq(primary_write(d, buf, sizeof buf, gran / 2), 0);
	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, size <= gran ? size : gran + size % gran,
		     "sent %lu", (unsigned long)fk.sent);
	expect_equal(p);
	cr_assert_eq(dirty(p), 0);
	primary_free(p);
}

Test(primary, a_1m_granule_is_synced_in_pieces_the_buffer_holds)
{
	sync_with_granule(1u << 20, (3u << 20) + 12288);
}

Test(primary, a_64m_granule_is_synced_in_pieces_any_server_takes)
{
	sync_with_granule(64u << 20, (64u << 20) + (1u << 20));
}

Test(primary, a_secondary_with_a_history_of_its_own_is_refused)
{
	struct primary *p = make(0);
	char err[2600];

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(primary_stop(p), 0);
	fk.desc = "colofs-gi v1 cur=00000000000000dd since=1 hist="
		  "00000000000000cc,0000000000000000,0000000000000000,"
		  "0000000000000000";
	fk.sent = 0;
	cr_assert_eq(primary_start(p), -1);
	cr_assert_eq(errno, EIO);
	primary_last_error(p, err, sizeof err);
	cr_assert_not_null(strstr(err, "unrelated data on vda"), "%s", err);
	cr_assert_eq(fk.sent, 0);
	cr_assert_eq(primary_resync(p, true, NULL), 0);
	wait_state(p, PRIMARY_REPLICATING);
	cr_assert_eq(fk.sent, SIZE);
	primary_free(p);
}

/* Concurrent VM writes to one disk (the kernel passes them on together:
 * FOPEN_PARALLEL_DIRECT_WRITES).  One that overlaps a write in progress
 * waits for it, so both sides apply the two in the same order; one that
 * does not overlap goes on meanwhile.
 */
struct wr {
	struct primary_disk *d;
	int byte;
	uint64_t off;
};

static void *
write_thread(void *arg)
{
	struct wr *w = arg;
	char *buf = malloc(G);

	cr_assert_not_null(buf);
	memset(buf, w->byte, G);
	cr_assert_eq(primary_write(w->d, buf, G, w->off), 0);
	free(buf);
	return NULL;
}

static void
held_write_then(uint64_t off2, int want_entered)
{
	struct primary *p = make(0);
	struct wr a, b;
	pthread_t ta, tb;
	char got[3 * G];
	int i;

	cr_assert_eq(primary_start(p), 0);
	wait_state(p, PRIMARY_REPLICATING);
	a = (struct wr){ primary_find_disk(p, "vda"), 0x11, 0 };
	b = (struct wr){ a.d, 0x22, off2 };
	cond_init_monotonic(&gate.cond);
	gate.armed = true;
	cr_assert_eq(pthread_create(&ta, NULL, write_thread, &a), 0);
	cr_assert_eq(gate_wait(1, 5000), 1, "the first write never came");
	cr_assert_eq(pthread_create(&tb, NULL, write_thread, &b), 0);
	/* The overlapping write must not reach the link while the first
	 * is held: give it the time it would need to get there.
	 */
	cr_assert_eq(gate_wait(2, want_entered == 2 ? 5000 : 300),
		     want_entered, "%d write(s) in the link, want %d",
		     gate.entered, want_entered);
	pthread_mutex_lock(&gate.lock);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	gate.armed = false;
	expect_equal(p);
	cr_assert_eq(primary_read(a.d, got, sizeof got, 0), 0);
	for (i = 0; i < 3 * G; i++) {
		int want = (uint64_t)i >= off2 && (uint64_t)i < off2 + G ? 0x22
			 : i < G ? 0x11 : 0;

		cr_assert_eq(got[i], want, "byte %d is %#x, want %#x", i,
			     got[i], want);
	}
	primary_free(p);
}

Test(primary, an_overlapping_write_waits_for_the_one_in_progress)
{
	held_write_then(G / 2, 1);
}

Test(primary, a_write_elsewhere_goes_on_while_one_is_in_progress)
{
	held_write_then(2 * G, 2);
}
