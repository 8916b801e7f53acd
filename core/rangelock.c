/* SPDX-License-Identifier: MIT */
/* Range locks: first come, first served per byte range.
 *
 * Every holder and every waiter is on one list in arrival order.  An entry
 * may proceed once no entry ahead of it overlaps it, except that shared
 * entries do not block each other.  So overlapping requests run in the
 * order they arrived (a primary write and a view read of the same range
 * are ordered), and requests on disjoint ranges never wait for each other.
 *
 * The list is short (one entry per request in flight on a disk), so the
 * scan is linear.  lock protects the list; waiters sleep on cond, which is
 * broadcast when an entry leaves.  A range lock exists to order I/O, so
 * its holder does block on I/O while holding it: that is its purpose.
 */
#include <assert.h>

#include "rangelock.h"

void
rangelock_init(struct rangelock *rl)
{
	pthread_mutex_init(&rl->lock, NULL);
	pthread_cond_init(&rl->cond, NULL);
	rl->head = rl->tail = NULL;
	rl->waiters = 0;
}

void
rangelock_release_all(struct rangelock *rl)
{
	assert(rl->head == NULL);
	pthread_cond_destroy(&rl->cond);
	pthread_mutex_destroy(&rl->lock);
}

static bool
blocked(const struct rangelock_entry *e)
{
	const struct rangelock_entry *o;

	for (o = e->prev; o != NULL; o = o->prev) {
		if (o->start < e->end && e->start < o->end &&
		    (o->exclusive || e->exclusive))
			return true;
	}
	return false;
}

void
rangelock_acquire(struct rangelock *rl, struct rangelock_entry *e,
		  uint64_t off, uint64_t len, bool exclusive)
{
	e->start = off;
	e->end = off + len;
	if (len == 0)
		e->end = off + 1;	/* still ordered against its neighbours */
	e->exclusive = exclusive;
	e->next = NULL;
	pthread_mutex_lock(&rl->lock);
	e->prev = rl->tail;
	if (rl->tail)
		rl->tail->next = e;
	else
		rl->head = e;
	rl->tail = e;
	while (blocked(e)) {
		rl->waiters++;
		pthread_cond_wait(&rl->cond, &rl->lock);
		rl->waiters--;
	}
	pthread_mutex_unlock(&rl->lock);
}

bool
rangelock_try_acquire(struct rangelock *rl, struct rangelock_entry *e,
		      uint64_t off, uint64_t len, bool exclusive)
{
	bool ok;

	e->start = off;
	e->end = len == 0 ? off + 1 : off + len;
	e->exclusive = exclusive;
	e->next = NULL;
	pthread_mutex_lock(&rl->lock);
	e->prev = rl->tail;
	ok = !blocked(e);
	if (ok) {
		if (rl->tail)
			rl->tail->next = e;
		else
			rl->head = e;
		rl->tail = e;
	}
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

void
rangelock_release(struct rangelock *rl, struct rangelock_entry *e)
{
	pthread_mutex_lock(&rl->lock);
	if (e->prev)
		e->prev->next = e->next;
	else
		rl->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		rl->tail = e->prev;
	if (rl->waiters > 0)
		pthread_cond_broadcast(&rl->cond);
	pthread_mutex_unlock(&rl->lock);
}
