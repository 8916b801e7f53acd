/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "rangelock.h"

struct waiter {
	struct rangelock *rl;
	uint64_t off, len;
	bool exclusive;
	atomic_int got;
};

static void *
take(void *arg)
{
	struct waiter *w = arg;
	struct rangelock_entry e;

	rangelock_acquire(w->rl, &e, w->off, w->len, w->exclusive);
	atomic_store(&w->got, 1);
	rangelock_release(w->rl, &e);
	return NULL;
}

/* Waits for a condition another thread makes true: polls it every
 * millisecond, up to a deadline far beyond any scheduling delay, and
 * reports whether it came true.  Tests wait for the event, never for a
 * fixed time.
 */
#define DEADLINE_MS 20000

static bool
wait_until(bool (*cond)(void *), void *arg)
{
	int i;

	for (i = 0; i < DEADLINE_MS; i++) {
		if (cond(arg))
			return true;
		usleep(1000);
	}
	return cond(arg);
}

static bool
waiter_got(void *arg)
{
	struct waiter *w = arg;

	return atomic_load(&w->got) == 1;
}

struct queued {
	struct rangelock *rl;
	unsigned n;
};

/* n threads sleep in rangelock_acquire. */
static bool
queued(void *arg)
{
	struct queued *q = arg;
	unsigned w;

	pthread_mutex_lock(&q->rl->lock);
	w = q->rl->waiters;
	pthread_mutex_unlock(&q->rl->lock);
	return w == q->n;
}

struct attempt {
	struct waiter *w;
	struct queued *q;
};

/* The waiter got the lock, or sleeps in the lock's queue. */
static bool
got_or_queued(void *arg)
{
	struct attempt *a = arg;

	return waiter_got(a->w) || queued(a->q);
}

/* Starts a thread that takes the lock while held is held; reports whether
 * it got the lock then (true) or blocked until held was released (false).
 * It waits for the event itself, not for a time: the thread taking the
 * lock, or the thread asleep in the lock's queue (it counts itself a
 * waiter only once it found itself blocked).
 */
static bool
got_it_while_held(struct rangelock *rl, uint64_t off, uint64_t len,
		  bool exclusive, struct rangelock_entry *held)
{
	struct waiter w = { rl, off, len, exclusive, 0 };
	struct queued q = { rl, 1 };
	struct attempt a = { &w, &q };
	pthread_t t;
	bool got;

	pthread_create(&t, NULL, take, &w);
	cr_assert(wait_until(got_or_queued, &a),
		  "the thread neither got the lock nor queued for it");
	got = waiter_got(&w);
	rangelock_release(rl, held);
	cr_assert(wait_until(waiter_got, &w), "the waiter never got the lock");
	pthread_join(t, NULL);
	return got;
}

Test(rangelock, disjoint_ranges_do_not_wait)
{
	struct rangelock rl;
	struct rangelock_entry e;

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 0, 4096, true);
	cr_assert(got_it_while_held(&rl, 4096, 4096, true, &e));
	rangelock_release_all(&rl);
}

Test(rangelock, try_acquire_takes_a_free_range_and_queues_nothing_otherwise)
{
	struct rangelock rl;
	struct rangelock_entry a, b, c;

	rangelock_init(&rl);
	cr_assert(rangelock_try_acquire(&rl, &a, 0, 4096, true));
	/* Overlapping: refused, and not left in the queue. */
	cr_assert_not(rangelock_try_acquire(&rl, &b, 100, 10, false));
	cr_assert_eq(rl.tail, &a, "a refused entry must not stay queued");
	/* Disjoint: taken. */
	cr_assert(rangelock_try_acquire(&rl, &c, 4096, 4096, true));
	rangelock_release(&rl, &a);
	/* Once a is gone, the range is free. */
	cr_assert(rangelock_try_acquire(&rl, &b, 100, 10, false));
	rangelock_release(&rl, &b);
	rangelock_release(&rl, &c);
	cr_assert_null(rl.head);
	rangelock_release_all(&rl);
}

Test(rangelock, overlapping_exclusive_waits)
{
	struct rangelock rl;
	struct rangelock_entry e;

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 0, 4096, true);
	cr_assert_not(got_it_while_held(&rl, 4095, 2, true, &e));
	rangelock_release_all(&rl);
}

Test(rangelock, shared_holders_share)
{
	struct rangelock rl;
	struct rangelock_entry e;

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 0, 4096, false);
	cr_assert(got_it_while_held(&rl, 0, 4096, false, &e));
	rangelock_release_all(&rl);
}

Test(rangelock, shared_waits_for_exclusive)
{
	struct rangelock rl;
	struct rangelock_entry e;

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 100, 10, true);
	cr_assert_not(got_it_while_held(&rl, 0, 101, false, &e));
	rangelock_release_all(&rl);
}

struct order {
	struct rangelock *rl;
	int id;
	int *log;
	atomic_int *n;
};

static void *
append_in_order(void *arg)
{
	struct order *o = arg;
	struct rangelock_entry e;

	rangelock_acquire(o->rl, &e, 0, 10, true);
	o->log[atomic_fetch_add(o->n, 1)] = o->id;
	rangelock_release(o->rl, &e);
	return NULL;
}

Test(rangelock, overlapping_requests_run_in_arrival_order)
{
	struct rangelock rl;
	struct rangelock_entry e;
	pthread_t t[4];
	struct order o[4];
	int log[4], i;
	atomic_int n = 0;
	struct queued q = { &rl, 0 };

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 0, 10, true);
	for (i = 0; i < 4; i++) {
		o[i] = (struct order) { &rl, i, log, &n };
		pthread_create(&t[i], NULL, append_in_order, &o[i]);
		/* it queues before the next one arrives */
		q.n = (unsigned) i + 1;
		cr_assert(wait_until(queued, &q), "request %d never queued", i);
	}
	rangelock_release(&rl, &e);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 4; i++)
		cr_assert_eq(log[i], i, "request %d ran out of order", i);
	rangelock_release_all(&rl);
}
