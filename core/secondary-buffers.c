/* SPDX-License-Identifier: MIT */
/* The secondary engine's buffers out of service: the reclaim thread that
 * recycles the buffers a checkpoint dropped into spares (or frees them),
 * the spares themselves, and buffer_warm's warmed spares.  See
 * secondary.c for the engine, its locks and why a checkpoint swaps in
 * spares; everything here runs under r->reclaim_lock or on the reclaim
 * thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extmap.h"
#include "log.h"
#include "secondary-internal.h"

void
sec_buffer_free(struct buffer *b)
{
	if (b == NULL)
		return;
	store_free(b->store);
	extmap_free(b->map);
	extmap_free(b->zeros);
	free(b);
}

struct buffer *
sec_buffer_new(struct secondary *r, struct secondary_disk *d, const char *what)
{
	char tag[128];
	struct buffer *b = calloc(1, sizeof *b);

	if (b == NULL)
		return NULL;
	snprintf(tag, sizeof tag, "colofs-%s-%s", d->name, what);
	b->map = extmap_new();
	b->zeros = extmap_new();
	if (b->map == NULL || b->zeros == NULL)
		goto err;
	b->store = r->factory.create(r->factory.opaque, d->size, tag);
	if (b->store == NULL)
		goto err;
	return b;
err:
	{
		int saved = errno;
		sec_buffer_free(b);
		errno = saved;
	}
	return NULL;
}

/* The spares of d's slot, under r->reclaim_lock: take one (or NULL), or
 * keep b as one (false: out of running, or SPARES are there already).
 */
struct buffer *
sec_spare_take(struct secondary_disk *d, enum slot slot)
{
	return d->nspare[slot] > 0 ? d->spare[slot][--d->nspare[slot]] : NULL;
}

static bool
spare_keep(struct secondary *r, struct secondary_disk *d, enum slot slot,
	   struct buffer *b)
{
	if (r->spares_off || d->nspare[slot] == SPARES)
		return false;
	d->spare[slot][d->nspare[slot]++] = b;
	return true;
}

/* Empties b (a buffer a checkpoint dropped) and keeps it as a spare of
 * d's slot, its store's pages trimmed to the retention bound: the largest
 * of the slot's last RETAIN_EPOCHS epochs, and at least buffer_warm.  b
 * is freed instead if that fails or the spares are there already.
 */
static void
recycle(struct secondary *r, struct secondary_disk *d, enum slot slot,
	struct buffer *b)
{
	struct extmap *map = extmap_new(), *zeros = extmap_new();
	uint64_t keep, pages;
	unsigned i;

	pthread_mutex_lock(&r->reclaim_lock);
	keep = r->warm;
	for (i = 0; i < RETAIN_EPOCHS; i++)
		if (d->retain_hist[slot][i] > keep)
			keep = d->retain_hist[slot][i];
	pthread_mutex_unlock(&r->reclaim_lock);
	if (map == NULL || zeros == NULL ||
	    store_recycle(b->store, b->map, keep, &pages) == -1) {
		extmap_free(map);
		extmap_free(zeros);
		sec_buffer_free(b);
		return;
	}
	extmap_free(b->map);
	extmap_free(b->zeros);
	b->map = map;
	b->zeros = zeros;
	pthread_mutex_lock(&r->reclaim_lock);
	d->retain_hist[slot][d->retain_pos[slot]++ % RETAIN_EPOCHS] = pages;
	if (spare_keep(r, d, slot, b))
		b = NULL;
	pthread_mutex_unlock(&r->reclaim_lock);
	sec_buffer_free(b);
}

/* Whether warming goes on: not once out of running or stopping. */
static bool
warm_on(struct secondary *r)
{
	bool on;

	pthread_mutex_lock(&r->reclaim_lock);
	on = !r->spares_off && !r->reclaim_stop;
	pthread_mutex_unlock(&r->reclaim_lock);
	return on;
}

#define WARM_STEP (8 * 1024 * 1024)	/* faulted in between checks */

/* Makes a spare for d's slot with buffer_warm bytes of its store faulted
 * in (a step at a time, giving up once out of running).  A failure costs
 * only speed: it is recorded, and the first epochs fault their pages in.
 */
static void
warm_spare(struct secondary *r, struct secondary_disk *d, enum slot slot)
{
	struct buffer *b = NULL;
	uint64_t want, done = 0, step;

	pthread_mutex_lock(&r->reclaim_lock);
	want = r->warm < d->size ? r->warm : d->size;
	pthread_mutex_unlock(&r->reclaim_lock);
	if (warm_on(r)) {
		b = sec_buffer_new(r, d, slot == SLOT_HIDDEN ? "hidden" : "active");
		if (b == NULL)
			secondary_record_error(r, "%s: buffer_warm: making a "
					       "buffer failed: %s", d->name,
					       strerror(errno));
	}
	while (b != NULL && done < want && warm_on(r)) {
		step = want - done < WARM_STEP ? want - done : WARM_STEP;
		if (store_warm(b->store, done + step) == -1) {
			secondary_record_error(r, "%s: buffer_warm: faulting "
					       "pages in failed: %s", d->name,
					       strerror(errno));
			break;
		}
		done += step;
		atomic_fetch_sub(&r->warming, step);
	}
	atomic_fetch_sub(&r->warming, want - done);
	pthread_mutex_lock(&r->reclaim_lock);
	if (b != NULL && done == want && spare_keep(r, d, slot, b))
		b = NULL;
	pthread_mutex_unlock(&r->reclaim_lock);
	sec_buffer_free(b);
}

/* Frees every spare.  off: keeps none from now on (out of running: a
 * failover or a stop) and frees them in the reclaim thread, since
 * unmapping a store that holds many pages takes milliseconds (12-20 ms
 * for 256 MiB here) that the failover must not wait for; else (a file
 * store out of space) frees them here, to give their blocks back at
 * once.  Returns true if there were any.
 */
bool
sec_drop_spares(struct secondary *r, bool off)
{
	struct buffer *drop[SLOTS * SPARES];
	bool any = false;
	size_t i, n, k;
	int s;

	for (i = 0; i < r->ndisks; i++) {
		pthread_mutex_lock(&r->reclaim_lock);
		if (off)
			r->spares_off = true;
		n = 0;
		for (s = 0; s < SLOTS; s++)
			while ((drop[n] = sec_spare_take(r->disks[i],
						     (enum slot) s)) != NULL)
				n++;
		pthread_mutex_unlock(&r->reclaim_lock);
		for (k = 0; k < n; k++) {
			any = true;
			if (off)
				sec_reclaim(r, drop[k], NULL, SLOT_HIDDEN);
			else
				sec_buffer_free(drop[k]);
		}
	}
	return any;
}

void *
sec_reclaim_main(void *arg)
{
	struct secondary *r = arg;
	struct garbage *g;

	pthread_mutex_lock(&r->reclaim_lock);
	for (;;) {
		while (r->reclaim_list == NULL && !r->reclaim_stop)
			pthread_cond_wait(&r->reclaim_cond, &r->reclaim_lock);
		g = r->reclaim_list;
		if (g == NULL)
			break;		/* stopping and drained */
		r->reclaim_list = NULL;
		r->reclaim_busy = true;
		pthread_mutex_unlock(&r->reclaim_lock);
		while (g != NULL) {
			struct garbage *next = g->next;

			if (g->buf == NULL)
				warm_spare(r, g->d, g->slot);
			else if (g->d)
				recycle(r, g->d, g->slot, g->buf);
			else
				sec_buffer_free(g->buf);
			free(g);
			g = next;
		}
		pthread_mutex_lock(&r->reclaim_lock);
		r->reclaim_busy = false;
		pthread_cond_broadcast(&r->reclaim_done);
	}
	pthread_mutex_unlock(&r->reclaim_lock);
	return NULL;
}

/* Waits until the buffers handed to the reclaim thread are freed.  Returns
 * true if there were any: space a checkpoint freed is free now.
 */
bool
sec_reclaim_drain(struct secondary *r)
{
	bool pending;

	pthread_mutex_lock(&r->reclaim_lock);
	pending = r->reclaim_list != NULL || r->reclaim_busy;
	while (r->reclaim_list != NULL || r->reclaim_busy)
		pthread_cond_wait(&r->reclaim_done, &r->reclaim_lock);
	pthread_mutex_unlock(&r->reclaim_lock);
	return pending;
}

/* Queues work for the reclaim thread (struct garbage).  false: no memory
 * for it.
 */
static bool
reclaim_queue(struct secondary *r, struct buffer *b, struct secondary_disk *d,
	      enum slot slot)
{
	struct garbage *g = malloc(sizeof *g);

	if (g == NULL)
		return false;
	g->buf = b;
	g->d = d;
	g->slot = slot;
	pthread_mutex_lock(&r->reclaim_lock);
	g->next = r->reclaim_list;
	r->reclaim_list = g;
	pthread_cond_signal(&r->reclaim_cond);
	pthread_mutex_unlock(&r->reclaim_lock);
	return true;
}

/* Frees b in the background, or with d set recycles it as d's spare for
 * slot; b is unreachable by any I/O by now.
 */
void
sec_reclaim(struct secondary *r, struct buffer *b, struct secondary_disk *d,
	enum slot slot)
{
	if (b != NULL && !reclaim_queue(r, b, d, slot))
		sec_buffer_free(b);	/* free it here rather than leak it */
}

int
secondary_warm(struct secondary *r, uint64_t bytes)
{
	enum secondary_state state;
	size_t i;
	int s, k;

	pthread_mutex_lock(&r->ctl_lock);
	state = secondary_state(r);
	if (bytes == 0 || state != SECONDARY_NONE) {
		pthread_mutex_unlock(&r->ctl_lock);
		return 0;
	}
	pthread_mutex_lock(&r->reclaim_lock);
	r->warm = bytes;
	pthread_mutex_unlock(&r->reclaim_lock);
	for (k = 0; k < SPARES; k++)
		for (i = 0; i < r->ndisks; i++)
			for (s = 0; s < SLOTS; s++) {
				struct secondary_disk *d = r->disks[i];
				uint64_t n = bytes < d->size ? bytes : d->size;

				atomic_fetch_add(&r->warming, n);
				if (!reclaim_queue(r, NULL, d, (enum slot) s)) {
					atomic_fetch_sub(&r->warming, n);
					pthread_mutex_unlock(&r->ctl_lock);
					return -1;
				}
			}
	pthread_mutex_unlock(&r->ctl_lock);
	return 0;
}
