/* SPDX-License-Identifier: MIT */
/* fs/nbd/nbd-bounds.c: the payload byte budget and rate-limited warnings. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "log.h"
#include "nbd/nbd-internal.h"

#define MiB ((size_t)1 << 20)

Test(nbd_budget, charges_power_of_two_classes_from_64k)
{
	cr_assert_eq(budget_charge(1), 64 << 10);
	cr_assert_eq(budget_charge(64 << 10), 64 << 10);
	cr_assert_eq(budget_charge((64 << 10) + 1), 128 << 10);
	cr_assert_eq(budget_charge(3 * MiB), 4 * MiB);
	cr_assert_eq(budget_charge(32 * MiB), 32 * MiB);
}

Test(nbd_budget, a_connection_cannot_hold_more_than_its_bound)
{
	struct nbd_budget b;
	size_t held = 0;
	void *p1, *p2;

	budget_init(&b, 256 * MiB, 64 * MiB);
	p1 = budget_get(&b, &held, 32 * MiB, false);
	p2 = budget_get(&b, &held, 20 * MiB, false);
	cr_assert(p1 && p2);
	cr_assert_eq(held, 64 * MiB);
	cr_assert_null(budget_get(&b, &held, 1, false));
	cr_assert_eq(errno, ENOMEM);
	budget_put(&b, &held, p1);
	budget_put(&b, &held, p2);
	cr_assert_eq(held, 0);
	budget_release(&b);
}

Test(nbd_budget, all_connections_together_stay_under_the_limit)
{
	struct nbd_budget b;
	size_t h1 = 0, h2 = 0, h3 = 0;
	struct nbd_budget_stats st;
	void *p1, *p2;

	budget_init(&b, 64 * MiB, 32 * MiB);
	p1 = budget_get(&b, &h1, 32 * MiB, false);
	p2 = budget_get(&b, &h2, 32 * MiB, false);
	cr_assert(p1 && p2);
	cr_assert_null(budget_get(&b, &h3, 4096, false),
		       "a third holder went over the total");
	budget_stats(&b, &st);
	cr_assert_eq(st.used, 64 * MiB);
	cr_assert_eq(st.peak, 64 * MiB);
	budget_put(&b, &h1, p1);
	budget_put(&b, &h2, p2);
	budget_stats(&b, &st);
	cr_assert_eq(st.used, 0);
	cr_assert_leq(st.pooled, 16 * MiB, "the pool keeps at most a quarter");
	budget_release(&b);
}

Test(nbd_budget, pooled_buffers_are_reused_then_reclaimed)
{
	struct nbd_budget b;
	size_t h = 0, h2 = 0;
	struct nbd_budget_stats st;
	void *p, *q;

	budget_init(&b, 64 * MiB, 64 * MiB);
	p = budget_get(&b, &h, MiB, false);
	budget_put(&b, &h, p);
	q = budget_get(&b, &h, MiB - 100, false);
	cr_assert_eq(q, p, "the pooled buffer of the same class comes back");
	budget_put(&b, &h, q);
	budget_stats(&b, &st);
	cr_assert_eq(st.pooled, MiB);
	/* The pool is only a cache: a taker that needs its bytes gets them. */
	p = budget_get(&b, &h2, 32 * MiB, false);
	q = budget_get(&b, &h, 32 * MiB, false);
	cr_assert(p && q, "pooled bytes were not reclaimed");
	budget_stats(&b, &st);
	cr_assert_eq(st.pooled, 0);
	budget_put(&b, &h2, p);
	budget_put(&b, &h, q);
	budget_release(&b);
}

struct waiter {
	struct nbd_budget *b;
	size_t held;
	void *p;
	int err;
};

static void *
wait_main(void *arg)
{
	struct waiter *w = arg;

	w->p = budget_get(w->b, &w->held, 32 * MiB, true);
	w->err = w->p ? 0 : errno;
	return NULL;
}

Test(nbd_budget, a_waiter_proceeds_when_bytes_come_back)
{
	struct nbd_budget b;
	struct waiter w = { .b = &b };
	struct nbd_budget_stats st;
	size_t h = 0;
	pthread_t t;
	void *p;

	budget_init(&b, 32 * MiB, 32 * MiB);
	p = budget_get(&b, &h, 32 * MiB, false);
	cr_assert_not_null(p);
	pthread_create(&t, NULL, wait_main, &w);
	for (int i = 0; i < 500; i++) {
		budget_stats(&b, &st);
		if (st.waits > 0)
			break;
		usleep(10000);
	}
	cr_assert_eq(st.waits, 1, "the second taker did not wait");
	budget_put(&b, &h, p);
	pthread_join(t, NULL);
	cr_assert_not_null(w.p);
	budget_put(&b, &w.held, w.p);
	budget_release(&b);
}

static void *
small_main(void *arg)
{
	struct waiter *w = arg;

	w->p = budget_get(w->b, &w->held, 4096, true);
	w->err = w->p ? 0 : errno;
	return NULL;
}

static void
wait_for_waits(struct nbd_budget *b, uint64_t n)
{
	struct nbd_budget_stats st;

	for (int i = 0; i < 500; i++) {
		budget_stats(b, &st);
		if (st.waits >= n)
			return;
		usleep(10000);
	}
}

/* Waiters are served in turn: a 32 MiB taker waiting for the whole budget
 * is not overtaken by small takers that still fit, or a stream of them
 * (the fuzzers' WRITEs) starves it for NBD_WAIT_MS, its READ fails, and
 * reconnect barriers wait behind it as long.
 */
Test(nbd_budget, a_waiter_is_not_overtaken_by_smaller_takers)
{
	struct nbd_budget b;
	struct waiter big = { .b = &b }, small = { .b = &b };
	struct nbd_budget_stats st;
	size_t h = 0;
	pthread_t tb, ts;
	void *p;

	budget_init(&b, 32 * MiB, 32 * MiB);
	p = budget_get(&b, &h, 4096, false);
	cr_assert_not_null(p);
	pthread_create(&tb, NULL, wait_main, &big);
	wait_for_waits(&b, 1);
	pthread_create(&ts, NULL, small_main, &small);
	wait_for_waits(&b, 2);
	budget_stats(&b, &st);
	cr_assert_eq(st.waits, 2, "a 64 KiB taker overtook a 32 MiB waiter");
	cr_assert_null(small.p);
	budget_put(&b, &h, p);
	pthread_join(tb, NULL);
	cr_assert_not_null(big.p, "the 32 MiB waiter failed: %d", big.err);
	cr_assert_null(small.p);
	budget_put(&b, &big.held, big.p);
	pthread_join(ts, NULL);
	cr_assert_not_null(small.p);
	budget_put(&b, &small.held, small.p);
	budget_release(&b);
}

Test(nbd_budget, stop_fails_every_waiter)
{
	struct nbd_budget b;
	struct waiter w = { .b = &b };
	struct nbd_budget_stats st;
	size_t h = 0;
	pthread_t t;
	void *p;

	budget_init(&b, 32 * MiB, 32 * MiB);
	p = budget_get(&b, &h, 32 * MiB, false);
	pthread_create(&t, NULL, wait_main, &w);
	for (int i = 0; i < 500; i++) {
		budget_stats(&b, &st);
		if (st.waits > 0)
			break;
		usleep(10000);
	}
	budget_stop(&b);
	pthread_join(t, NULL);
	cr_assert_null(w.p);
	cr_assert_eq(w.err, ESHUTDOWN);
	budget_put(&b, &h, p);
	budget_release(&b);
}

Test(nbd_ratelimit, lets_a_burst_through_then_counts_the_rest)
{
	struct nbd_ratelimit rl;
	int allowed = 0;

	log_set_quiet(true);
	ratelimit_init(&rl, "refused connections");
	for (int i = 0; i < 1000; i++)
		allowed += ratelimit_allow(&rl, 1000 + i);
	cr_assert_eq(allowed, NBD_LOG_BURST);
	cr_assert_eq(rl.suppressed, 1000 - NBD_LOG_BURST);
	/* Within the minute, a flush says nothing yet. */
	ratelimit_flush(&rl, 1000 + NBD_LOG_WINDOW_MS - 1);
	cr_assert_eq(rl.suppressed, 1000 - NBD_LOG_BURST);
	/* After it, the summary goes out and a new window opens. */
	ratelimit_flush(&rl, 1000 + NBD_LOG_WINDOW_MS);
	cr_assert_eq(rl.suppressed, 0);
	cr_assert(ratelimit_allow(&rl, 1000 + NBD_LOG_WINDOW_MS + 1));
	ratelimit_release(&rl);
	log_set_quiet(false);
}
