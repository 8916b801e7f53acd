/* SPDX-License-Identifier: MIT */
/* What a client can make the listener hold: the byte budget for payload
 * buffers, and rate-limited warnings.
 *
 * The budget.  Every payload buffer (a WRITE's payload being received or
 * queued, a READ's data being read or sent) is taken from one budget per
 * server and charged to the connection that holds it:
 *
 *      used = in use (charged to some connection) + pooled (free, kept)
 *      used <= limit                  all connections together
 *      held <= conn_limit             one connection
 *
 * A taker that would go over either bound first frees pooled buffers
 * (they are only a cache), then waits: the reader of a connection stops
 * reading its socket (back-pressure: TCP or the unix socket's buffer
 * fills and the client stops sending) instead of allocating.  Buffers come
 * in power-of-two classes from 64 KiB to NBD_MAX_PAYLOAD, so that a pooled
 * buffer fits the next request of about the same size; the charge is the
 * class, never less than what is allocated.  Both bounds are at least
 * NBD_MAX_PAYLOAD (the config checks it), so a taker that holds nothing
 * always gets a buffer once the others give theirs back: nobody waits on
 * itself.
 *
 * Waiters over the shared bound are served in turn (b->line): a taker
 * that arrives while others wait there queues behind them even if it
 * would fit.  Otherwise a 32 MiB taker, which needs the whole budget at
 * its minimum, starves behind a stream of small ones until NBD_WAIT_MS
 * and fails, and reconnect barriers wait for it that long.  A taker over
 * its own connection's bound waits out of line (only its own requests
 * free it); one that does not wait (a connection that hung up) skips it.
 *
 * Who waits, on what: a reader waits only before it starts reading a
 * payload, while holding no other buffer; a worker waits before executing
 * a READ, holding nothing.  The reconnect barrier (nbd-export.c) runs
 * before the reader takes its first buffer, never while it holds one:
 * otherwise it could wait for a READ of another connection that waits
 * for the barrier's own buffer.  Buffers in use are released by workers
 * that finish executing and sending (sends time out: io_timeout) and by
 * readers that finish receiving (receives time out the same way).  So
 * every wait ends when another request does.  In case that reasoning has
 * a hole, every wait also has a deadline (b->wait_ms, NBD_WAIT_MS; the
 * barrier's too): a taker past it gets ETIMEDOUT and its request fails.
 * budget_stop wakes every waiter for good (the server stops).
 *
 * b->lock is a leaf: taken alone, never across a malloc of a buffer the
 * caller will fill, never across I/O.
 *
 * Rate-limited warnings.  A flood of refused or evicted connections must
 * not flood the log: a limiter lets NBD_LOG_BURST lines through per minute
 * and counts the rest; the next line after the minute (or ratelimit_flush,
 * which the accept thread calls every second) says "N more WHAT in the
 * last minute".
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "nbd-internal.h"

#define BUDGET_MIN_CLASS	16	/* 64 KiB */

static unsigned
class_of(size_t len)
{
	unsigned k = BUDGET_MIN_CLASS;

	while (k < BUDGET_CLASSES + BUDGET_MIN_CLASS - 1 &&
	       ((size_t)1 << k) < len)
		k++;
	return k - BUDGET_MIN_CLASS;
}

size_t
budget_charge(size_t len)
{
	return (size_t)1 << (class_of(len) + BUDGET_MIN_CLASS);
}

void
budget_init(struct nbd_budget *b, size_t limit, size_t conn_limit)
{
	*b = (struct nbd_budget){ .limit = limit, .conn_limit = conn_limit,
				  .wait_ms = NBD_WAIT_MS };
	b->line_tail = &b->line;
	pthread_mutex_init(&b->lock, NULL);
	cond_init_monotonic(&b->cond);
}

static void
free_pool(struct nbd_budget *b, size_t want)
{
	/* Largest classes first: fewest frees for the most bytes. */
	for (int k = BUDGET_CLASSES - 1; k >= 0 && b->pooled > 0; k--) {
		struct nbd_buf *p;

		while ((p = b->pool[k]) != NULL) {
			if (want != SIZE_MAX && b->used + want <= b->limit)
				return;
			b->pool[k] = p->next;
			b->pooled -= p->cap;
			b->used -= p->cap;
			free(p);
		}
	}
}

void
budget_release(struct nbd_budget *b)
{
	free_pool(b, SIZE_MAX);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

void
budget_stop(struct nbd_budget *b)
{
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

/* A place in b->line, on the waiter's stack. */
struct budget_turn {
	struct budget_turn *next;
};

/* Under b->lock: TURN leaves the line (served, timed out or stopped);
 * the next one may fit now.
 */
static void
leave_line(struct nbd_budget *b, struct budget_turn *turn)
{
	struct budget_turn **pp = &b->line;

	while (*pp != turn)
		pp = &(*pp)->next;
	*pp = turn->next;
	if (b->line_tail == &turn->next)
		b->line_tail = pp;
	pthread_cond_broadcast(&b->cond);
}

void *
budget_get(struct nbd_budget *b, size_t *held, size_t len, bool wait)
{
	unsigned k = class_of(len);
	size_t cap = (size_t)1 << (k + BUDGET_MIN_CLASS);
	struct nbd_buf *p = NULL;
	bool waited = false, queued = false;
	struct budget_turn turn = { NULL };
	struct timespec deadline = deadline_in_ms(b->wait_ms);

	pthread_mutex_lock(&b->lock);
	for (;;) {
		bool mine = *held + cap <= b->conn_limit;

		if (b->stopping) {
			if (queued)
				leave_line(b, &turn);
			pthread_mutex_unlock(&b->lock);
			errno = ESHUTDOWN;
			return NULL;
		}
		if (mine && (!wait || b->line == NULL || b->line == &turn)) {
			p = b->pool[k];
			if (p != NULL) {
				b->pool[k] = p->next;
				b->pooled -= cap;
				break;
			}
			if (b->used + cap > b->limit)
				free_pool(b, cap);
			if (b->used + cap <= b->limit) {
				b->used += cap;	/* reserved; allocated below */
				break;
			}
		}
		if (mine && wait && !queued) {
			*b->line_tail = &turn;
			b->line_tail = &turn.next;
			queued = true;
		}
		if (!wait) {
			pthread_mutex_unlock(&b->lock);
			errno = ENOMEM;
			return NULL;
		}
		if (!waited) {
			b->waits++;
			waited = true;
		}
		if (pthread_cond_timedwait(&b->cond, &b->lock, &deadline) ==
		    ETIMEDOUT) {
			if (queued)
				leave_line(b, &turn);
			pthread_mutex_unlock(&b->lock);
			errno = ETIMEDOUT;
			return NULL;
		}
	}
	if (queued)
		leave_line(b, &turn);
	*held += cap;
	if (b->used - b->pooled > b->peak)
		b->peak = b->used - b->pooled;
	pthread_mutex_unlock(&b->lock);

	if (p == NULL) {
		p = malloc(sizeof *p + cap);
		if (p == NULL) {
			pthread_mutex_lock(&b->lock);
			b->used -= cap;
			*held -= cap;
			pthread_cond_broadcast(&b->cond);
			pthread_mutex_unlock(&b->lock);
			errno = ENOMEM;
			return NULL;
		}
		p->cap = cap;
	}
	p->next = NULL;
	return p->data;
}

void
budget_put(struct nbd_budget *b, size_t *held, void *data)
{
	struct nbd_buf *p = nbd_buf_of(data);
	unsigned k = class_of(p->cap);

	pthread_mutex_lock(&b->lock);
	*held -= p->cap;
	/* Keep it for the next request unless the pool holds a quarter of
	 * the budget already; a waiter reclaims pooled bytes anyway.
	 */
	if (!b->stopping && b->pooled + p->cap <= b->limit / 4) {
		p->next = b->pool[k];
		b->pool[k] = p;
		b->pooled += p->cap;
		p = NULL;
	} else {
		b->used -= p->cap;
	}
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	free(p);
}

void
budget_stats(struct nbd_budget *b, struct nbd_budget_stats *st)
{
	pthread_mutex_lock(&b->lock);
	st->used = b->used - b->pooled;
	st->pooled = b->pooled;
	st->peak = b->peak;
	st->waits = b->waits;
	pthread_mutex_unlock(&b->lock);
}

/* ---- rate-limited warnings ---- */

void
ratelimit_init(struct nbd_ratelimit *rl, const char *what)
{
	*rl = (struct nbd_ratelimit){ .what = what };
	pthread_mutex_init(&rl->lock, NULL);
}

void
ratelimit_release(struct nbd_ratelimit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

/* Under rl->lock: closes a window that is over. */
static void
close_window(struct nbd_ratelimit *rl, int64_t now)
{
	if (rl->start == 0 || now - rl->start < NBD_LOG_WINDOW_MS)
		return;
	if (rl->suppressed > 0)
		log_warn("nbd: %llu more %s in the last minute",
			 (unsigned long long)rl->suppressed, rl->what);
	rl->start = 0;
	rl->count = 0;
	rl->suppressed = 0;
}

bool
ratelimit_allow(struct nbd_ratelimit *rl, int64_t now)
{
	bool ok;

	pthread_mutex_lock(&rl->lock);
	close_window(rl, now);
	if (rl->start == 0)
		rl->start = now;
	ok = rl->count < NBD_LOG_BURST;
	if (ok)
		rl->count++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

void
ratelimit_flush(struct nbd_ratelimit *rl, int64_t now)
{
	pthread_mutex_lock(&rl->lock);
	close_window(rl, now);
	pthread_mutex_unlock(&rl->lock);
}
