/* SPDX-License-Identifier: MIT */
/* The primary's link to the secondary: libnbd's asynchronous API, one
 * connection per disk, several requests in flight on each.
 *
 *   writer thread                 poll thread (one per connection)
 *   submit: ticket, nbd_aio_*  ─▶ poll(socket, eventfd)
 *           kick the eventfd      nbd_aio_notify_read/write
 *   wait:   cond, deadline    ◀─  completion callback: ticket done
 *
 * libnbd handles are thread-safe: writers issue commands from their own
 * threads (libnbd starts sending at once), and the poll thread moves the
 * state machine when the socket is ready.  A kick after each command
 * makes the poll thread re-read the direction libnbd wants.
 *
 * Tickets.  A ticket holds a copy of the request's data (libnbd needs
 * its buffer until the reply, and a writer that times out returns before
 * that) and two references: the waiter's and libnbd's.  libnbd's is
 * dropped by the completion callback, or, for commands that never
 * complete, when the handle is closed: every ticket is on its
 * connection's list until then, and closing fails what is left with
 * ENOTCONN.  A command that libnbd refused at submission never calls
 * back.
 *
 * Failure.  A connection that dies by itself (the secondary closed it)
 * is reported to the engine by its poll thread (primary_link_on_lost),
 * so that the pair degrades even when no write is in flight, unless it
 * can be resumed (below).  An
 * abortive disconnect (the engine degrading, under its own
 * lock) must not block: it marks the connection dead, shuts the socket
 * down and wakes the poll thread and the waiters.  The handle is closed
 * (thread joined, tickets failed) by the next connect, a clean
 * disconnect, or primary_link_free.
 *
 * Reconnect.  A colofs secondary restarted on purpose (ctl restart) hands
 * its state to the next process and keeps its epoch (gi.h,
 * gi_same_incarnation).  When a connection to a secondary that described
 * its incarnation dies by itself, the poll thread connects again to the
 * same URI, every RECONNECT_RETRY_MS, for at most secondary_timeout; if
 * it reaches the same incarnation it re-sends the commands libnbd failed
 * with ENOTCONN or the server with ESHUTDOWN (writes, zeroes, flushes and reads are idempotent: the
 * range locks keep overlapping writes out of flight together) and polls
 * on.  Meanwhile those tickets are orphans: on the list, not done, their
 * libnbd reference kept for the next handle, and their waiters wait as
 * for any reply (each for secondary_timeout).  A connection killed by the
 * engine or a timeout (dead) is never resumed: a hung secondary degrades
 * the pair as before.  Another incarnation (checked before NBD GO: a
 * crash draws another epoch), a peer that does not describe one, or no
 * success in time: the engine hears of the loss with its first reason.
 *
 * Locks: c->lock protects the handle pointer's life (read-held while a
 * command is issued, write-held to close it), c->tlock the tickets, the
 * dead flag and the reason; c->tlock is taken inside libnbd's handle
 * lock (in the completion callback), so nothing calls libnbd with it
 * held.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "deadline.h"
#include "gi.h"
#include "log.h"
#include "primary-link.h"

#define CONNECT_TIMEOUT_MS 10000
#define RECONNECT_RETRY_MS 50
/* A server that says nothing of its maximum block size takes 32 MiB
 * (the NBD protocol's advice to clients).
 */
#define DEFAULT_MAX_BLOCK (UINT64_C(32) << 20)

struct ticket {
	struct ticket *prev, *next;	/* on the connection's list */
	struct link_conn *c;
	int refs;			/* protected by c->tlock */
	bool done;			/* protected by c->tlock */
	bool orphan;			/* to re-send; protected by c->tlock */
	int err;			/* protected by c->tlock */
	enum primary_op op;
	bool copy;			/* data holds the payload */
	uint64_t off, len;
	char data[];
};

struct link_conn {
	pthread_rwlock_t lock;
	struct nbd_handle *h;		/* protected by lock */
	bool can_zero, can_flush;	/* of h */
	char *description;		/* of h's export, or NULL; lock */
	atomic_uint_fast64_t max_zero;	/* of h: see link_max_zero */
	pthread_t thread;
	bool thread_running;		/* protected by lock (write) */
	int efd;
	pthread_mutex_t tlock;
	pthread_cond_t tcond;
	struct ticket *tickets;		/* protected by tlock */
	bool dead;			/* protected by tlock */
	char why[640];			/* protected by tlock */
	/* Reconnect (see the top), protected by tlock: whether the peer
	 * described its incarnation and the connection may be resumed (not
	 * while a clean disconnect is under way), whether the poll thread
	 * is reconnecting, and why the connection was lost.
	 */
	bool resumable, reconnecting;
	char lost_why[256];
	char *uri;			/* of h; lock */
	uint64_t size;			/* of the disk */
	uint64_t gen;			/* presented at GO; 0: none */
	atomic_uint_fast64_t sent, reconnects;
	struct primary_link *l;
	size_t index;
	/* Settings from the config. */
	const char *psk_file, *username, *certificates;
	char name[80];
};

struct primary_link {
	size_t n;
	unsigned timeout_ms;		/* secondary_timeout */
	struct link_conn *conns;
	primary_link_lost_fn *lost;	/* set before any connect */
	void *lost_arg;
	primary_link_vouch_fn *vouch;	/* set before any connect, or NULL */
	void *vouch_arg;
};

static void
ticket_put_locked(struct ticket *t)
{
	if (--t->refs == 0)
		free(t);
}

static void
ticket_unlink(struct ticket *t)
{
	struct link_conn *c = t->c;

	if (t->prev)
		t->prev->next = t->next;
	else if (c->tickets == t)
		c->tickets = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

static int
on_complete(void *user_data, int *error)
{
	struct ticket *t = user_data;
	struct link_conn *c = t->c;

	pthread_mutex_lock(&c->tlock);
	/* libnbd fails what was in flight with ENOTCONN when the connection
	 * dies (a server's error is never that), and a colofs secondary
	 * that stops answers ESHUTDOWN, then closes the connection: re-sent
	 * if resumed.
	 */
	if ((*error == ENOTCONN || *error == ESHUTDOWN) && c->resumable &&
	    !c->dead) {
		t->orphan = true;
		pthread_mutex_unlock(&c->tlock);
		return 1;
	}
	t->done = true;
	t->err = *error;
	ticket_unlink(t);
	ticket_put_locked(t);
	pthread_cond_broadcast(&c->tcond);
	pthread_mutex_unlock(&c->tlock);
	return 1;
}

/* Fails the orphans (the connection will not be resumed).  With tlock. */
static void
fail_orphans_locked(struct link_conn *c)
{
	struct ticket *t, *next;

	for (t = c->tickets; t != NULL; t = next) {
		next = t->next;
		if (!t->orphan)
			continue;
		ticket_unlink(t);
		t->orphan = false;
		t->done = true;
		t->err = ENOTCONN;
		ticket_put_locked(t);
	}
	pthread_cond_broadcast(&c->tcond);
}

static void
kick(struct link_conn *c)
{
	uint64_t one = 1;

	if (write(c->efd, &one, sizeof one) == -1 && errno != EAGAIN)
		log_warn("%s: eventfd: %m", c->name);
}

/* True if this call killed it (it was alive). */
static bool
mark_dead(struct link_conn *c, const char *why)
{
	bool first;

	pthread_mutex_lock(&c->tlock);
	first = !c->dead;
	if (first) {
		c->dead = true;
		snprintf(c->why, sizeof c->why, "%s", why);
	}
	pthread_cond_broadcast(&c->tcond);
	pthread_mutex_unlock(&c->tlock);
	return first;
}

/* Kills the connection without blocking: dead, its socket shut down, the
 * poll thread and the waiters woken.  The handle is closed later (see the
 * top).
 */
static void
conn_abort(struct link_conn *c, const char *why)
{
	mark_dead(c, why);
	if (pthread_rwlock_tryrdlock(&c->lock) == 0) {
		if (c->h != NULL && nbd_aio_get_fd(c->h) >= 0)
			shutdown(nbd_aio_get_fd(c->h), SHUT_RDWR);
		pthread_rwlock_unlock(&c->lock);
	}
	kick(c);
}

static bool reconnect(struct link_conn *c, const char *why, char *not,
		      size_t notlen);

/* The poll thread saw the connection die: resumed (true), or dead and
 * the engine told.  Only a handle libnbd took for dead (every command
 * failed back to us) is resumed, not one this thread cannot poll.
 */
static bool
died(struct link_conn *c, struct nbd_handle *h, const char *why)
{
	char msg[256], not[256], full[600];
	bool gone;

	/* First: why is libnbd's thread-local text, which reconnect resets. */
	snprintf(msg, sizeof msg, "%s", why ? why : "the connection closed");
	gone = nbd_aio_is_dead(h) || nbd_aio_is_closed(h);
	not[0] = '\0';
	if (gone && reconnect(c, msg, not, sizeof not))
		return true;
	if (not[0] != '\0')
		snprintf(full, sizeof full, "%s (not resumed: %s)", msg, not);
	else
		snprintf(full, sizeof full, "%s", msg);
	if (mark_dead(c, full) && c->l->lost != NULL)
		c->l->lost(c->l->lost_arg, c->index, full);
	pthread_mutex_lock(&c->tlock);
	fail_orphans_locked(c);
	pthread_mutex_unlock(&c->tlock);
	return false;
}

static void *
poll_main(void *arg)
{
	struct link_conn *c = arg;
	struct nbd_handle *h = c->h;	/* stays until we are joined */
	struct pollfd pfd[2];
	unsigned dir;
	uint64_t junk;
	bool dead;
	int r;

	for (;;) {
		pthread_mutex_lock(&c->tlock);
		dead = c->dead;
		pthread_mutex_unlock(&c->tlock);
		if (dead)
			break;
		if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
			if (!died(c, h, nbd_get_error()))
				break;
			h = c->h;	/* ours: only we and connect set it */
			continue;
		}
		dir = nbd_aio_get_direction(h);
		pfd[0].fd = nbd_aio_get_fd(h);
		pfd[0].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
				(dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
		pfd[0].revents = 0;
		pfd[1].fd = c->efd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		r = poll(pfd, 2, -1);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (!died(c, h, strerror(errno)))
				break;
			h = c->h;
			continue;
		}
		if (pfd[1].revents & POLLIN &&
		    read(c->efd, &junk, sizeof junk) == -1 && errno != EAGAIN)
			log_warn("%s: eventfd: %m", c->name);
		r = 0;
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    (dir & LIBNBD_AIO_DIRECTION_READ))
			r = nbd_aio_notify_read(h);
		if (r == 0 && (pfd[0].revents & (POLLOUT | POLLERR)) &&
		    (dir & LIBNBD_AIO_DIRECTION_WRITE))
			r = nbd_aio_notify_write(h);
		if (r == -1) {
			if (!died(c, h, nbd_get_error()))
				break;
			h = c->h;
		}
	}
	return NULL;
}

/* Joins the poll thread, closes the handle and fails every ticket left.
 * With c->lock write-held.
 */
static void
conn_close(struct link_conn *c)
{
	struct ticket *t;

	if (c->h == NULL)
		return;
	mark_dead(c, "disconnected");
	if (c->thread_running) {
		kick(c);
		pthread_join(c->thread, NULL);
		c->thread_running = false;
	}
	nbd_close(c->h);
	c->h = NULL;
	free(c->description);
	c->description = NULL;
	pthread_mutex_lock(&c->tlock);
	while ((t = c->tickets) != NULL) {
		ticket_unlink(t);
		t->done = true;
		t->err = ENOTCONN;
		ticket_put_locked(t);
	}
	pthread_cond_broadcast(&c->tcond);
	pthread_mutex_unlock(&c->tlock);
}

/* libnbd's last error (this thread's) into err and errno. */
static void
libnbd_failed(char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", nbd_get_error() ? nbd_get_error() :
		 "libnbd failed");
	errno = nbd_get_errno() ? nbd_get_errno() : EIO;
}

/* Whether c was killed (dead).  NULL: no connection to watch. */
static bool
is_dead(struct link_conn *c)
{
	bool dead;

	if (c == NULL)
		return false;
	pthread_mutex_lock(&c->tlock);
	dead = c->dead;
	pthread_mutex_unlock(&c->tlock);
	return dead;
}

/* Polls h until the step under way (connect, or an option) is over, or
 * ms from *t0 passed, or (c not NULL) c was killed.  0, or -1 with errno
 * and err.
 */
static int
handshake_wait(struct nbd_handle *h, const struct timespec *t0, long ms,
	       struct link_conn *c, char *err, size_t errlen)
{
	struct timespec now;
	long left;

	while (nbd_aio_is_connecting(h) || nbd_aio_is_created(h)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = ms - ((now.tv_sec - t0->tv_sec) * 1000 +
			     (now.tv_nsec - t0->tv_nsec) / 1000000);
		if (left <= 0) {
			snprintf(err, errlen, "no answer in %ld ms", ms);
			errno = ETIMEDOUT;
			return -1;
		}
		if (is_dead(c)) {
			snprintf(err, errlen, "disconnected");
			errno = ECANCELED;
			return -1;
		}
		if (nbd_poll(h, (int)(left < 100 ? left : 100)) == -1) {
			libnbd_failed(err, errlen);
			return -1;
		}
	}
	return 0;
}

/* What a handshake learnt of the export. */
struct hs_info {
	char *description;	/* NULL: none sent */
	uint64_t gen;		/* presented at GO (in: again) */
	bool can_zero, can_flush;
	uint64_t max_zero;
};

/* One option (INFO or GO) on h in option mode, waited for.  0 once it
 * is answered (h is ready, or negotiating again after a refusal), or -1.
 */
static int
option(struct nbd_handle *h, bool go_opt, const struct timespec *t0, long ms,
       struct link_conn *c, char *err, size_t errlen)
{
	if ((go_opt ? nbd_aio_opt_go(h, NBD_NULL_COMPLETION)
		    : nbd_aio_opt_info(h, NBD_NULL_COMPLETION)) == -1) {
		libnbd_failed(err, errlen);
		return -1;
	}
	return handshake_wait(h, t0, ms, c, err, errlen);
}

/* The rest of the handshake, h negotiating in option mode: INFO for the
 * description, the engine's choice of the generation to present (again:
 * hi->gen, the one presented before), GO.  A server that refuses the
 * export with the generation appended (not a colofs secondary, or an
 * older one) gets the plain name.  0 once ready, or -1 with errno and
 * err.
 */
static int
go(struct link_conn *c, struct nbd_handle *h, const struct timespec *t0,
   long ms, bool again, struct hs_info *hi, char *err, size_t errlen)
{
	struct primary_link *l = c->l;
	struct link_conn *w = again ? c : NULL;
	char *name = NULL, *tagged = NULL;
	uint64_t gen = again ? hi->gen : 0;
	int rc = -1;

	if (nbd_aio_is_negotiating(h) &&
	    option(h, false, t0, ms, w, err, errlen) == 0 &&
	    nbd_aio_is_negotiating(h))
		hi->description = nbd_get_export_description(h);
	/* Before GO: presenting the generation to another incarnation
	 * would tell it that a primary syncs it (s_consistent).  c's
	 * description is the poll thread's to change (we are it).
	 */
	if (again && !gi_same_incarnation(c->description, hi->description,
					  err, errlen)) {
		errno = ESTALE;
		goto out;
	}
	if (!nbd_aio_is_negotiating(h))
		goto refused;
	name = nbd_get_export_name(h);
	if (name == NULL)
		goto nbd_fail;
	if (!again && l->vouch != NULL)
		gen = l->vouch(l->vouch_arg, c->index,
			       hi->description ? hi->description : "");
	hi->gen = gen;
	if (gen != 0) {
		if (asprintf(&tagged, "%s colofs-gen=%016" PRIx64, name,
			     gen) == -1) {
			tagged = NULL;
			snprintf(err, errlen, "out of memory");
			errno = ENOMEM;
			goto out;
		}
		if (nbd_set_export_name(h, tagged) == -1 ||
		    option(h, true, t0, ms, w, err, errlen) == -1)
			goto out;
		if (nbd_aio_is_negotiating(h) &&
		    nbd_set_export_name(h, name) == -1)
			goto nbd_fail;
	}
	if (nbd_aio_is_negotiating(h) &&
	    option(h, true, t0, ms, w, err, errlen) == -1)
		goto out;
refused:
	if (!nbd_aio_is_ready(h)) {
		snprintf(err, errlen, "%s", nbd_get_error() ? nbd_get_error() :
			 "the handshake failed");
		errno = ECONNREFUSED;
		goto out;
	}
	rc = 0;
	goto out;
nbd_fail:
	libnbd_failed(err, errlen);
out:
	free(tagged);
	free(name);
	return rc;
}

/* A new handle connected to uri and ready, its export checked (size,
 * writable), within ms; again: a reconnect (the generation presented
 * before, and c's death ends it).  The handle and *hi, or NULL with
 * errno and err (hi->description freed).
 */
static struct nbd_handle *
open_handle(struct link_conn *c, const char *uri, uint64_t size, long ms,
	    bool again, struct hs_info *hi, char *err, size_t errlen)
{
	struct nbd_handle *h;
	struct timespec t0;
	int64_t got;

	hi->description = NULL;
	h = nbd_create();
	if (h == NULL)
		goto nbd_fail;
	if ((c->psk_file != NULL &&
	     (nbd_set_tls_psk_file(h, c->psk_file) == -1 ||
	      (c->username != NULL &&
	       nbd_set_tls_username(h, c->username) == -1))) ||
	    (c->certificates != NULL &&
	     nbd_set_tls_certificates(h, c->certificates) == -1))
		goto nbd_fail;
	/* NBD_INFO_DESCRIPTION carries a colofs secondary's generations;
	 * option mode, to read it (NBD_OPT_INFO) before NBD_OPT_GO presents
	 * the generation this primary syncs against (see go()).
	 */
	if (nbd_set_full_info(h, true) == -1 ||
	    nbd_set_opt_mode(h, true) == -1 ||
	    nbd_aio_connect_uri(h, uri) == -1)
		goto nbd_fail;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (handshake_wait(h, &t0, ms, again ? c : NULL, err, errlen) == -1 ||
	    go(c, h, &t0, ms, again, hi, err, errlen) == -1)
		goto fail;
	got = nbd_get_size(h);
	if (got < 0)
		goto nbd_fail;
	if ((uint64_t)got != size) {
		snprintf(err, errlen, "its size is %" PRId64 " bytes, ours %"
			 PRIu64, got, size);
		errno = EINVAL;
		goto fail;
	}
	if (nbd_is_read_only(h) == 1) {
		snprintf(err, errlen, "the export is read-only");
		errno = EROFS;
		goto fail;
	}
	hi->can_zero = nbd_can_zero(h) == 1;
	hi->can_flush = nbd_can_flush(h) == 1;
	/* NULL when the server sent none (QEMU): an unknown peer. */
	if (hi->description == NULL)
		hi->description = nbd_get_export_description(h);
	hi->max_zero = 0;
	if (!hi->can_zero) {
		int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);

		hi->max_zero = max > 0 ? (uint64_t)max : DEFAULT_MAX_BLOCK;
	}
	return h;
nbd_fail:
	libnbd_failed(err, errlen);
fail:
	{
		int saved = errno;

		nbd_close(h);
		free(hi->description);
		hi->description = NULL;
		errno = saved;
	}
	return NULL;
}

/* Makes h (from open_handle) c's.  With c->lock write-held. */
static void
install(struct link_conn *c, struct nbd_handle *h, struct hs_info *hi)
{
	c->h = h;
	free(c->description);
	c->description = hi->description;
	hi->description = NULL;
	c->can_zero = hi->can_zero;
	c->can_flush = hi->can_flush;
	c->gen = hi->gen;
	atomic_store(&c->max_zero, hi->max_zero);
}

/* Issues ticket t's command on c->h.  With c->lock held (read or write)
 * and not tlock.  The cookie, or -1 (never queued: no callback comes).
 */
static int64_t
issue(struct link_conn *c, struct ticket *t)
{
	nbd_completion_callback cb = { .callback = on_complete,
				       .user_data = t };

	switch (t->op) {
	case PRIMARY_OP_WRITE:
		return nbd_aio_pwrite(c->h, t->data, t->len, t->off, cb, 0);
	case PRIMARY_OP_ZERO:
	case PRIMARY_OP_ZERO_ALLOC:
		/* Without WRITE_ZEROES: written zeros, allocated anyway. */
		if (c->can_zero || !t->copy)
			return nbd_aio_zero(c->h, t->len, t->off, cb,
					    t->op == PRIMARY_OP_ZERO_ALLOC ?
					    LIBNBD_CMD_FLAG_NO_HOLE : 0);
		return nbd_aio_pwrite(c->h, t->data, t->len, t->off, cb, 0);
	case PRIMARY_OP_READ:
		/* Into the ticket, which outlives a waiter that gave up. */
		return nbd_aio_pread(c->h, t->data, t->len, t->off, cb, 0);
	case PRIMARY_OP_FLUSH:
		return nbd_aio_flush(c->h, cb, 0);
	}
	return -1;
}

static long
ms_left(const struct timespec *dl)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (dl->tv_sec - now.tv_sec) * 1000 +
	       (dl->tv_nsec - now.tv_nsec) / 1000000;
}

/* The poll thread's attempt to resume c after its connection died (see
 * the top).  true once the new handle is c's and the orphans are sent
 * again; false with the reason in not ("" when c was killed meanwhile:
 * whoever killed it says why).
 */
static bool
reconnect(struct link_conn *c, const char *why, char *not, size_t notlen)
{
	struct primary_link *l = c->l;
	struct timespec dl = deadline_in_ms(l->timeout_ms);
	struct nbd_handle *h = NULL, *old;
	struct hs_info hi;
	struct ticket *t, **resend = NULL;
	struct pollfd pfd;
	size_t n = 0, k;
	char err[256] = "no answer";
	uint64_t junk;
	long left;

	pthread_mutex_lock(&c->tlock);
	if (c->dead || !c->resumable) {
		pthread_mutex_unlock(&c->tlock);
		return false;
	}
	c->reconnecting = true;
	snprintf(c->lost_why, sizeof c->lost_why, "%s", why);
	pthread_mutex_unlock(&c->tlock);
	log_warn("%s: %s; reconnecting to %s (at most %u ms, "
		 "secondary_timeout)", c->name, why, c->uri, l->timeout_ms);
	for (;;) {
		left = ms_left(&dl);
		if (left <= 0) {
			/* A long reason is cut short: still a reason. */
			if (snprintf(not, notlen, "no reconnect in %u ms: %s",
				     l->timeout_ms, err) >= (int) notlen)
				log_debug("%s: reason shortened", c->name);
			goto fail;
		}
		if (is_dead(c))
			goto fail;
		hi.gen = c->gen;
		h = open_handle(c, c->uri, c->size, left, true, &hi, err,
				sizeof err);
		if (h != NULL)
			break;
		if (errno == ESTALE) {
			/* Another incarnation: no point in waiting. */
			snprintf(not, notlen, "%s", err);
			goto fail;
		}
		if (is_dead(c))
			goto fail;
		left = ms_left(&dl);
		pfd.fd = c->efd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (left > 0 && poll(&pfd, 1, left < RECONNECT_RETRY_MS ?
				     (int)left : RECONNECT_RETRY_MS) == 1 &&
		    read(c->efd, &junk, sizeof junk) == -1 && errno != EAGAIN)
			log_warn("%s: eventfd: %m", c->name);
	}
	/* Only try: a connect or close holding the lock joins this thread. */
	while (pthread_rwlock_trywrlock(&c->lock) != 0) {
		if (is_dead(c)) {
			nbd_close(h);
			free(hi.description);
			goto fail;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	old = c->h;
	install(c, h, &hi);
	pthread_mutex_lock(&c->tlock);
	for (t = c->tickets; t != NULL; t = t->next)
		n += t->orphan;
	if (n > 0)
		resend = calloc(n, sizeof *resend);
	k = 0;
	for (t = c->tickets; t != NULL && resend != NULL; t = t->next) {
		if (t->orphan) {
			t->orphan = false;
			resend[k++] = t;
		}
	}
	/* Out of memory: they fail, and the pair degrades. */
	if (n > 0 && resend == NULL)
		fail_orphans_locked(c);
	c->reconnecting = false;
	pthread_mutex_unlock(&c->tlock);
	for (k = 0; resend != NULL && k < n; k++) {
		if (issue(c, resend[k]) == -1) {
			/* h died already: the next round takes it. */
			pthread_mutex_lock(&c->tlock);
			resend[k]->orphan = true;
			pthread_mutex_unlock(&c->tlock);
		}
	}
	pthread_rwlock_unlock(&c->lock);
	nbd_close(old);
	free(resend);
	atomic_fetch_add(&c->reconnects, 1);
	log_info("%s: resumed on %s (the same incarnation); %zu commands "
		 "sent again", c->name, c->uri, n);
	return true;
fail:
	pthread_mutex_lock(&c->tlock);
	c->reconnecting = false;
	pthread_mutex_unlock(&c->tlock);
	return false;
}

static int
link_connect(void *opaque, size_t i, const char *uri, uint64_t size,
	     char *err, size_t errlen)
{
	struct primary_link *l = opaque;
	struct link_conn *c = &l->conns[i];
	struct nbd_handle *h;
	struct hs_info hi = { 0 };
	char why[128], *u;

	pthread_rwlock_wrlock(&c->lock);
	conn_close(c);
	u = strdup(uri);
	if (u == NULL) {
		pthread_rwlock_unlock(&c->lock);
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return -1;
	}
	h = open_handle(c, uri, size, CONNECT_TIMEOUT_MS, false, &hi, err,
			errlen);
	if (h == NULL) {
		int saved = errno;

		free(u);
		pthread_rwlock_unlock(&c->lock);
		errno = saved;
		return -1;
	}
	install(c, h, &hi);
	free(c->uri);
	c->uri = u;
	c->size = size;
	atomic_store(&c->sent, 0);
	pthread_mutex_lock(&c->tlock);
	c->dead = false;
	c->why[0] = '\0';
	c->reconnecting = false;
	c->resumable = c->description != NULL &&
		       gi_same_incarnation(c->description, c->description,
					   why, sizeof why);
	pthread_mutex_unlock(&c->tlock);
	if (pthread_create(&c->thread, NULL, poll_main, c) != 0) {
		nbd_close(c->h);
		c->h = NULL;
		free(c->description);
		c->description = NULL;
		pthread_rwlock_unlock(&c->lock);
		snprintf(err, errlen, "cannot start its thread");
		errno = EAGAIN;
		return -1;
	}
	c->thread_running = true;
	pthread_rwlock_unlock(&c->lock);
	log_info("%s: connected to %s%s", c->name, uri, c->resumable ?
		 " (resumable after a planned restart of the secondary)" : "");
	return 0;
}

static void
link_disconnect(void *opaque, size_t i, bool clean)
{
	struct primary_link *l = opaque;
	struct link_conn *c = &l->conns[i];

	if (!clean) {
		/* Must not block: see the top. */
		conn_abort(c, "disconnected");
		return;
	}
	/* Clean: the replies of the commands in flight, then DISC and the
	 * server's close.  Each wait ends after secondary_timeout: a hung
	 * secondary must not hang the engine's ctl lock (stop).  A command
	 * without a reply by then is failed when the handle closes.
	 */
	pthread_rwlock_wrlock(&c->lock);
	if (c->h != NULL && c->thread_running) {
		struct timespec dl = deadline_in_ms(l->timeout_ms);
		int e = 0;

		pthread_mutex_lock(&c->tlock);
		/* The server's close after DISC is no loss to resume from. */
		c->resumable = false;
		while (c->tickets != NULL && !c->dead && e != ETIMEDOUT)
			e = pthread_cond_timedwait(&c->tcond, &c->tlock, &dl);
		pthread_mutex_unlock(&c->tlock);
		if (e == ETIMEDOUT)
			log_warn("%s: no reply in %u ms (secondary_timeout); "
				 "disconnecting", c->name, l->timeout_ms);
		/* NBD_CMD_DISC, then the server closes: wait a little. */
		if (e != ETIMEDOUT && nbd_aio_disconnect(c->h, 0) == 0) {
			dl = deadline_in_ms(l->timeout_ms < 2000 ? l->timeout_ms :
					 2000);
			kick(c);
			pthread_mutex_lock(&c->tlock);
			while (!c->dead &&
			       pthread_cond_timedwait(&c->tcond, &c->tlock,
						      &dl) == 0)
				;
			pthread_mutex_unlock(&c->tlock);
		}
	}
	conn_close(c);
	pthread_rwlock_unlock(&c->lock);
}

static void *
link_submit(void *opaque, size_t i, enum primary_op op, const void *buf,
	    uint64_t off, uint64_t len, char *err, size_t errlen)
{
	struct primary_link *l = opaque;
	struct link_conn *c = &l->conns[i];
	bool zero = op == PRIMARY_OP_ZERO || op == PRIMARY_OP_ZERO_ALLOC;
	bool copy = op == PRIMARY_OP_WRITE || op == PRIMARY_OP_READ ||
		    (zero && !c->can_zero);
	bool later, gone;
	struct ticket *t;
	int64_t cookie = -1;

	t = malloc(sizeof *t + (copy ? len : 0));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memset(t, 0, sizeof *t);
	t->c = c;
	t->refs = 2;
	t->op = op;
	t->copy = copy;
	t->off = off;
	t->len = len;
	if (op == PRIMARY_OP_WRITE)
		memcpy(t->data, buf, len);
	else if (copy)
		memset(t->data, 0, len);
	pthread_rwlock_rdlock(&c->lock);
	pthread_mutex_lock(&c->tlock);
	if (c->h == NULL || c->dead) {
		snprintf(err, errlen, "%s", c->h == NULL ? "not connected" :
			 c->why);
		pthread_mutex_unlock(&c->tlock);
		pthread_rwlock_unlock(&c->lock);
		free(t);
		errno = ENOTCONN;
		return NULL;
	}
	t->next = c->tickets;
	if (c->tickets)
		c->tickets->prev = t;
	c->tickets = t;
	/* Reconnecting: sent on the next handle (see the top). */
	later = c->reconnecting;
	t->orphan = later;
	pthread_mutex_unlock(&c->tlock);
	if (!later && op == PRIMARY_OP_FLUSH && !c->can_flush) {
		pthread_mutex_lock(&c->tlock);
		ticket_unlink(t);
		t->done = true;
		ticket_put_locked(t);
		pthread_mutex_unlock(&c->tlock);
		pthread_rwlock_unlock(&c->lock);
		return t;
	}
	if (!later)
		cookie = issue(c, t);
	if (!later && cookie == -1) {
		/* Never queued: no callback will come.  On a handle that
		 * died, it waits for the reconnect as an orphan.
		 */
		snprintf(err, errlen, "%s", nbd_get_error());
		gone = nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h);
		pthread_mutex_lock(&c->tlock);
		if (gone && c->resumable && !c->dead) {
			t->orphan = true;
			later = true;
		} else {
			ticket_unlink(t);
			t->refs = 1;
			ticket_put_locked(t);
		}
		pthread_mutex_unlock(&c->tlock);
		if (!later) {
			pthread_rwlock_unlock(&c->lock);
			errno = EIO;
			return NULL;
		}
	}
	if (op != PRIMARY_OP_FLUSH && op != PRIMARY_OP_READ)
		atomic_fetch_add(&c->sent, len);
	pthread_rwlock_unlock(&c->lock);
	kick(c);
	return t;
}

static int
link_wait(void *opaque, void *ticket, unsigned timeout_ms, char *err,
	  size_t errlen)
{
	struct ticket *t = ticket;
	struct link_conn *c = t->c;
	struct timespec dl;
	int rc = 0, e = 0;

	(void)opaque;
	dl = deadline_in_ms(timeout_ms);
	pthread_mutex_lock(&c->tlock);
	while (!t->done && !c->dead && e != ETIMEDOUT)
		e = pthread_cond_timedwait(&c->tcond, &c->tlock, &dl);
	if (t->done && t->err == 0) {
		rc = 0;
	} else if (t->done) {
		/* Failed because the connection was killed (another waiter's
		 * timeout, a lost socket): the cause is the kill's reason,
		 * not the ENOTCONN libnbd completes the command with.
		 */
		snprintf(err, errlen, "%s", c->dead && c->why[0] ? c->why :
			 strerror(t->err));
		errno = t->err;
		rc = -1;
	} else if (c->dead) {
		snprintf(err, errlen, "%s", c->why);
		errno = ENOTCONN;
		rc = -1;
	} else if (c->reconnecting) {
		snprintf(err, errlen, "%s (not resumed in %u ms, "
			 "secondary_timeout)", c->lost_why, timeout_ms);
		errno = ETIMEDOUT;
		rc = -1;
	} else {
		snprintf(err, errlen, "no reply in %u ms (secondary_timeout)",
			 timeout_ms);
		errno = ETIMEDOUT;
		rc = -1;
	}
	ticket_put_locked(t);
	pthread_mutex_unlock(&c->tlock);
	/* A timed-out link is dead, whatever the engine's state: in none
	 * (a stop under way) nobody else would say so, and a clean
	 * disconnect would wait for this reply.
	 */
	if (rc == -1 && errno == ETIMEDOUT) {
		conn_abort(c, err);
		errno = ETIMEDOUT;
	}
	return rc;
}

static void
link_peer_description(void *opaque, size_t i, char *buf, size_t len)
{
	struct primary_link *l = opaque;
	struct link_conn *c = &l->conns[i];

	pthread_rwlock_rdlock(&c->lock);
	snprintf(buf, len, "%s", c->description ? c->description : "");
	pthread_rwlock_unlock(&c->lock);
}

static uint64_t
link_reconnects(void *opaque, size_t i)
{
	struct primary_link *l = opaque;

	return atomic_load(&l->conns[i].reconnects);
}

static uint64_t
link_bytes_sent(void *opaque, size_t i)
{
	struct primary_link *l = opaque;

	return atomic_load(&l->conns[i].sent);
}

/* Without WRITE_ZEROES a zero is a write of zeros: at most the server's
 * maximum block size.  0 (no limit) when it can zero, or before a
 * connect.
 */
static uint64_t
link_max_zero(void *opaque, size_t i)
{
	struct primary_link *l = opaque;

	return atomic_load(&l->conns[i].max_zero);
}

const struct primary_link_ops primary_link_ops = {
	.connect = link_connect,
	.disconnect = link_disconnect,
	.submit = link_submit,
	.wait = link_wait,
	.peer_description = link_peer_description,
	.bytes_sent = link_bytes_sent,
	.max_zero = link_max_zero,
	.reconnects = link_reconnects,
};

struct primary_link *
primary_link_new(const struct config *cfg)
{
	struct primary_link *l;
	size_t i;

	l = calloc(1, sizeof *l);
	if (l == NULL)
		return NULL;
	l->timeout_ms = cfg->secondary_timeout_ms;
	l->conns = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof *l->conns);
	if (l->conns == NULL) {
		free(l);
		return NULL;
	}
	for (i = 0; i < cfg->ndisks; i++) {
		struct link_conn *c = &l->conns[i];

		c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->efd == -1) {
			int saved = errno;

			log_error("eventfd: %m");
			l->n = i;
			primary_link_free(l);
			errno = saved;
			return NULL;
		}
		pthread_rwlock_init(&c->lock, NULL);
		pthread_mutex_init(&c->tlock, NULL);
		cond_init_monotonic(&c->tcond);
		c->l = l;
		c->index = i;
		c->psk_file = cfg->disks[i].tls_psk_file;
		c->username = cfg->disks[i].tls_username;
		c->certificates = cfg->disks[i].tls_certificates;
		snprintf(c->name, sizeof c->name, "%s", cfg->disks[i].name);
		l->n = i + 1;
	}
	return l;
}

void
primary_link_on_lost(struct primary_link *l, primary_link_lost_fn *fn,
		     void *arg)
{
	l->lost = fn;
	l->lost_arg = arg;
}

void
primary_link_on_vouch(struct primary_link *l, primary_link_vouch_fn *fn,
		      void *arg)
{
	l->vouch = fn;
	l->vouch_arg = arg;
}

void
primary_link_free(struct primary_link *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++) {
		struct link_conn *c = &l->conns[i];

		pthread_rwlock_wrlock(&c->lock);
		conn_close(c);
		pthread_rwlock_unlock(&c->lock);
		close(c->efd);
		free(c->uri);
		pthread_rwlock_destroy(&c->lock);
		pthread_mutex_destroy(&c->tlock);
		pthread_cond_destroy(&c->tcond);
	}
	free(l->conns);
	free(l);
}
