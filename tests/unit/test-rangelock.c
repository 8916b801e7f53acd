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

/* Starts a thread that takes the lock; reports whether it got it soon. */
static bool
got_it_while_held(struct rangelock *rl, uint64_t off, uint64_t len,
		  bool exclusive, struct rangelock_entry *held)
{
	struct waiter w = { rl, off, len, exclusive, 0 };
	pthread_t t;
	bool got;
	int i;

	pthread_create(&t, NULL, take, &w);
	for (i = 0; i < 200 && !atomic_load(&w.got); i++)
		usleep(1000);
	got = atomic_load(&w.got);
	rangelock_release(rl, held);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&w.got), 1, "the waiter never got the lock");
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

	rangelock_init(&rl);
	rangelock_acquire(&rl, &e, 0, 10, true);
	for (i = 0; i < 4; i++) {
		o[i] = (struct order) { &rl, i, log, &n };
		pthread_create(&t[i], NULL, append_in_order, &o[i]);
		/* let it queue before the next one arrives */
		for (int k = 0; k < 100; k++) {
			pthread_mutex_lock(&rl.lock);
			unsigned w = rl.waiters;
			pthread_mutex_unlock(&rl.lock);
			if (w == (unsigned) i + 1)
				break;
			usleep(1000);
		}
	}
	rangelock_release(&rl, &e);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 4; i++)
		cr_assert_eq(log[i], i, "request %d ran out of order", i);
	rangelock_release_all(&rl);
}
