/* SPDX-License-Identifier: MIT */
/* An export: one disk of the secondary as the NBD clients see it, the
 * connections serving it, and the reconnect barrier between them (see
 * "Reconnects" in nbd-conn.c).
 *
 * ex->lock guards the export's connection list and the barrier's waits;
 * it is taken per request only while a barrier waits (ex->waiters).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd-internal.h"

int
export_init(struct nbd_export *ex, struct nbd_server *srv,
	    const struct config_disk *cd)
{
	ex->srv = srv;
	ex->disk = secondary_find_disk(srv->r, cd->name);
	if (ex->disk == NULL) {
		errno = ENOENT;
		log_error("nbd: disk %s is not in the replica", cd->name);
		return -1;
	}
	ex->name = strdup(cd->export_name);
	if (asprintf(&ex->description, "colofs secondary disk %s",
		     cd->name) == -1)
		ex->description = NULL;
	if (ex->name == NULL || ex->description == NULL) {
		free(ex->name);
		free(ex->description);
		errno = ENOMEM;
		return -1;
	}
	pthread_mutex_init(&ex->lock, NULL);
	cond_init_monotonic(&ex->cond);
	return 0;
}

void
export_release(struct nbd_export *ex)
{
	free(ex->name);
	free(ex->description);
	pthread_mutex_destroy(&ex->lock);
	pthread_cond_destroy(&ex->cond);
}

void
export_attach(struct nbd_export *ex, struct nbd_conn *c)
{
	c->ex = ex;
	pthread_mutex_lock(&ex->lock);
	c->ex_next = ex->conns;
	if (ex->conns)
		ex->conns->ex_prev = c;
	ex->conns = c;
	pthread_mutex_unlock(&ex->lock);
}

void
export_detach(struct nbd_export *ex, struct nbd_conn *c)
{
	pthread_mutex_lock(&ex->lock);
	if (c->ex_prev)
		c->ex_prev->ex_next = c->ex_next;
	else
		ex->conns = c->ex_next;
	if (c->ex_next)
		c->ex_next->ex_prev = c->ex_prev;
	pthread_cond_broadcast(&ex->cond);
	pthread_mutex_unlock(&ex->lock);
}

void
export_mark_completed(struct nbd_conn *c)
{
	struct nbd_export *ex = c->ex;

	/* Pairs with export_barrier: it raises waiters, then reads
	 * completed; we raise completed, then read waiters (both seq_cst).
	 * One of us sees the other, so no wakeup is lost, and the lock is
	 * taken only while someone waits.
	 */
	atomic_fetch_add(&c->completed, 1);
	if (atomic_load(&ex->waiters) == 0)
		return;
	pthread_mutex_lock(&ex->lock);
	pthread_cond_broadcast(&ex->cond);
	pthread_mutex_unlock(&ex->lock);
}

void
export_stop(struct nbd_export *ex)
{
	pthread_mutex_lock(&ex->lock);
	ex->stopping = true;
	pthread_cond_broadcast(&ex->cond);
	pthread_mutex_unlock(&ex->lock);
}

/* Waits until every request other connections on the export submitted
 * before now has executed (see "Reconnects" at the top), at most wait_ms:
 * 0, or -1 with errno = ETIMEDOUT (or ESHUTDOWN: the server stops).  The caller holds no budget (see "Who
 * waits" in nbd-bounds.c).
 */
int
export_barrier(struct nbd_conn *c, int wait_ms)
{
	struct nbd_export *ex = c->ex;
	struct nbd_snap { uint64_t id, target; } snap[NBD_MAX_CONNS];
	size_t n = 0;
	struct timespec deadline = deadline_in_ms(wait_ms);
	int rc = 0, err = 0;

	pthread_mutex_lock(&ex->lock);
	atomic_fetch_add(&ex->waiters, 1);
	for (struct nbd_conn *o = ex->conns; o; o = o->ex_next)
		if (o != c && o->completed < o->submitted && n < NBD_MAX_CONNS)
			snap[n++] = (struct nbd_snap){ o->id, o->submitted };
	for (;;) {
		size_t k = 0;

		for (size_t i = 0; i < n; i++) {
			struct nbd_conn *o = ex->conns;

			while (o && o->id != snap[i].id)
				o = o->ex_next;
			if (o && o->completed < snap[i].target)
				snap[k++] = snap[i];
		}
		n = k;
		if (n == 0)
			break;
		if (rc == ETIMEDOUT || ex->stopping) {
			err = ex->stopping ? ESHUTDOWN : ETIMEDOUT;
			rc = -1;
			break;
		}
		rc = pthread_cond_timedwait(&ex->cond, &ex->lock, &deadline);
	}
	atomic_fetch_sub(&ex->waiters, 1);
	pthread_mutex_unlock(&ex->lock);
	if (rc == -1)
		errno = err;
	return rc == -1 ? -1 : 0;
}
