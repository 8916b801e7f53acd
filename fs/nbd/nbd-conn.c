/* SPDX-License-Identifier: MIT */
/* An NBD connection: its thread, its workers and its requests.
 *
 * Threads
 *
 *   accept thread ──accept()──> connection thread (detached, one per client)
 *                                 │ nbd_negotiate() under a 10 s deadline
 *                                 │   (STARTTLS: the TLS handshake and the
 *                                 │   tls_authz check too, nbd-tls.c)
 *                                 │ nbd_transmission(): reads requests,
 *                                 │   reads a WRITE's payload in full into
 *                                 │   a buffer, queues it
 *                                 ▼
 *                               workers (up to NBD_WORKERS per connection,
 *                                 started on demand): call secondary_primary_*,
 *                                 send the reply, recycle the buffer
 *
 * A connection's reader goes on reading while its workers execute, so
 * requests are pipelined and replies go out in completion order.  At most
 * NBD_MAX_INFLIGHT requests are in flight per connection: the reader waits
 * for a slot.  Payload buffers come from the server's byte budget
 * (nbd-bounds.c): a WRITE's when its payload is about to be read, a READ's
 * when it executes.  Over the budget the reader stops reading.  Workers
 * are per connection so that a client that stops reading its replies
 * stalls only its own connection, and only for io_timeout (SO_SNDTIMEO;
 * a WRITE payload not already whole in the socket has SO_RCVTIMEO while
 * it is read).
 *
 * Admission.  A new connection joins the handshake pool (max_handshakes;
 * past it the oldest unauthenticated one is evicted, see evict_oldest).
 * A TCP source address holds at most max_handshakes_per_address of the
 * pool (admit_source), so a flood from one address cannot crowd out a
 * client from another.  The handshake must end NBD_HANDSHAKE_MS after
 * accept.
 * Once it has chosen an export it leaves the pool for one of the export's
 * max_connections slots, or closes (conn_admit).
 *
 * Ends.  When the transmission loop ends (DISC, EOF, bad magic, ...), the
 * connection thread waits until its in-flight requests have finished and
 * been answered, stops and joins its workers, closes the socket and frees
 * the connection.  An end without DISC that the server did not cause is an
 * unclean disconnect: secondary_note_unclean_disconnect().
 *
 * Reconnects.  QEMU reconnects by itself and may replay writes, so a stale
 * write of a dead connection must not land after its newer twin.  The dead
 * connection's reader may not even have seen its EOF yet when the new one
 * starts, so the rule is broader: before its first request executes, a
 * connection waits until every request submitted on the same export by
 * other connections up to that moment has executed (export_barrier).  For
 * live multi-conn clients (nbdcopy) that is a one-off wait for requests
 * that complete on their own.  It runs before the request takes a buffer
 * from the budget (conn_barrier), with a deadline of NBD_WAIT_MS.  The dead connection's reader may also
 * still find whole requests queued in its socket after the hangup: those
 * are held back, unexecuted, and run only if a DISC follows them (a client
 * may send WRITE, DISC and close without waiting), else dropped -- their
 * client never saw a reply.  A request is counted submitted before the
 * hangup check (see conn_submit), so a barrier that runs after the hangup
 * covers every request the dead connection will run.
 *
 * Failover.  New GO/EXPORT_NAME are refused while !secondary_accepts_primary.
 * A write answered NBD_ESHUTDOWN marks its connection closing: the socket's
 * read side is shut, the reader sees EOF, in-flight requests finish and
 * are answered, then the connection closes (not counted as unclean).
 *
 * Locks, in order: srv->lock > ex->lock > conn->lock.  conn->send_lock is
 * a leaf taken alone.
 *   srv->lock       the connection list, nconns, stopping.
 *   ex->lock        the export's connection list and the barrier waits;
 *                   taken per request only while a barrier waits.
 *   conn->lock      the work queue, in-flight counts, workers, buffers.
 *   conn->send_lock exists to order exactly the socket sends of replies,
 *                   so two workers' replies never interleave on the wire;
 *                   it is held across the send and nothing else.
 * Counters for the status are atomics.
 *
 * Ownership.  The server owns the exports and the listening socket.  A
 * connection is owned by its thread, which frees it; the server only
 * shuts its socket down (under srv->lock, while it is listed) to stop or
 * evict it.  A buffer belongs to the reader until submitted, then to the
 * job; either way it is charged to the connection (c->mem) until given
 * back to the budget.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gi.h"
#include "log.h"
#include "nbd-internal.h"

/* In-flight slots.  The reader takes one before it reads a WRITE's
 * payload (so that it never holds a payload buffer while waiting for a
 * slot: see "Who waits" in nbd-bounds.c) or before it queues any other
 * request; the worker gives it back once the reply is out.
 */
static void
conn_reserve(struct nbd_conn *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->inflight >= NBD_MAX_INFLIGHT)
		pthread_cond_wait(&c->room, &c->lock);
	c->inflight++;
	pthread_mutex_unlock(&c->lock);
}

static void
conn_unreserve(struct nbd_conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->inflight--;
	pthread_cond_signal(&c->room);
	pthread_mutex_unlock(&c->lock);
}

/* A WRITE's payload is about to be read: a slot, a buffer from the
 * budget (waiting, and so not reading the socket, while over a bound),
 * and a limit on how long the payload may stall (io_timeout).
 */
/* The reconnect barrier, once per connection, before its first request
 * takes anything from the budget: a barrier that waited holding a payload
 * buffer could wait for a READ of another connection that waits for that
 * very budget.  Past NBD_WAIT_MS the connection is closed (the client
 * reconnects and its next connection waits again); -1.
 */
static int
conn_barrier(struct nbd_conn *c)
{
	if (c->barrier_done || c->hup)
		return 0;
	if (export_barrier(c, NBD_WAIT_MS) == -1) {
		int err = errno;

		if (err == ETIMEDOUT)
			log_warn("nbd: export %s: conn %llu: the requests of "
				 "other connections did not finish within %d "
				 "ms; closing it", c->ex->name,
				 (unsigned long long)c->id, NBD_WAIT_MS);
		shutdown(c->fd, SHUT_RDWR);
		errno = err;
		return -1;
	}
	c->barrier_done = true;
	return 0;
}

/* Whether the socket holds a plain payload of LEN bytes already: its
 * receive cannot stall, and one ioctl spares the two setsockopts of
 * io_timeout (set, then cleared before the next header) on most small
 * WRITEs.  Any other payload, however small, gets io_timeout: one that
 * stalled untimed pinned its buffer for as long as the client kept the
 * socket open, and with the budget at its minimum (NBD_MAX_PAYLOAD)
 * even 64 KiB held makes every largest request of every connection
 * wait NBD_WAIT_MS and fail, and reconnect barriers wait behind them.
 * Under TLS the socket's bytes are records, not the payload: no.
 */
static bool
payload_queued(struct nbd_conn *c, size_t len)
{
	int n;

	return c->tls == NULL && ioctl(c->fd, FIONREAD, &n) == 0 && n >= 0 &&
	       (size_t)n >= len;
}

static void *
conn_get_buf(void *opaque, size_t len)
{
	struct nbd_conn *c = opaque;
	struct nbd_server *srv = c->srv;
	void *buf;

	if (conn_barrier(c) == -1)
		return NULL;
	if (!c->hup) {
		conn_reserve(c);
		c->reserved = true;
	}
	/* After a hangup nothing is waited for: the client is gone. */
	buf = budget_get(&srv->budget, &c->mem, len, !c->hup);
	if (buf == NULL) {
		if (c->hup)
			c->held_overflow = true;
		if (c->reserved) {
			c->reserved = false;
			conn_unreserve(c);
		}
		return NULL;
	}
	if (srv->io_timeout_ms > 0 && !c->rcvtimeo &&
	    !payload_queued(c, len)) {
		struct timeval tv = {
			.tv_sec = srv->io_timeout_ms / 1000,
			.tv_usec = (srv->io_timeout_ms % 1000) * 1000,
		};

		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		c->rcvtimeo = true;
	}
	return buf;
}

/* Between requests a client may be idle as long as it likes. */
static void
conn_clear_rcvtimeo(struct nbd_conn *c)
{
	struct timeval tv = { 0 };

	if (c->rcvtimeo) {
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		c->rcvtimeo = false;
	}
}

/* The reader's buffer that was not submitted (the payload never came). */
static void
conn_put_buf(void *opaque, void *data)
{
	struct nbd_conn *c = opaque;

	budget_put(&c->srv->budget, &c->mem, data);
	if (c->reserved) {
		c->reserved = false;
		conn_unreserve(c);
	}
}

static int
conn_send_reply(struct nbd_conn *c, uint64_t cookie, uint32_t err,
		const void *data, size_t len)
{
	uint8_t hdr[NBD_REPLY_SIZE];
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof hdr },
		{ .iov_base = (void *)data, .iov_len = err ? 0 : len },
	};
	int rc;

	if (atomic_load(&c->broken)) {
		errno = EPIPE;
		return -1;
	}
	nbd_reply_encode(hdr, cookie, err);
	if (err)
		atomic_fetch_add(&c->srv->request_errors, 1);
	pthread_mutex_lock(&c->send_lock);
	rc = sock_send(c, iov, 2);
	pthread_mutex_unlock(&c->send_lock);
	if (rc == -1 && !atomic_exchange(&c->broken, true)) {
		/* Half a reply may be out: the stream is unusable.  Wake the
		 * reader; its loop ends with EOF.
		 */
		log_debug("nbd: conn %llu: reply not sent: %m",
			  (unsigned long long)c->id);
		shutdown(c->fd, SHUT_RDWR);
	}
	return rc;
}

static int
conn_reply_error(void *opaque, uint64_t cookie, uint32_t err)
{
	return conn_send_reply(opaque, cookie, err, NULL, 0);
}

/* Read only, never written: the source of NO_HOLE's written zeroes. */
static char zeros[1 << 20];

/* WRITE_ZEROES with NO_HOLE: the zeroes must be allocated, so they are
 * written, never punched (a client preallocating on thin storage relies
 * on it).
 */
static int
do_zero_alloc(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	while (len > 0) {
		size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;

		if (secondary_primary_write(d, zeros, n, off) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

static int
do_zero(struct secondary_disk *d, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t n = len < NBD_ZERO_CHUNK ? len : NBD_ZERO_CHUNK;

		if (secondary_primary_zero(d, off, n) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

/* Runs one request against the secondary: 0 or an NBD error.  A READ's
 * buffer is taken here, from the budget, not when the request was parsed:
 * a queued READ pins nothing.
 */
static uint32_t
execute(struct nbd_conn *c, struct nbd_job *j)
{
	struct secondary_disk *d = c->ex->disk;
	const struct nbd_request *q = &j->req;
	void *data = j->buf ? j->buf->data : NULL;
	bool fua = q->flags & NBD_CMD_FLAG_FUA;
	int rc = 0;

	switch (q->type) {
	case NBD_CMD_READ:
		atomic_fetch_add(&c->srv->reads, 1);
		if (q->length == 0)
			break;
		data = budget_get(&c->srv->budget, &c->mem, q->length, true);
		if (data == NULL)
			return nbd_errno_to_nbd(errno);
		j->buf = nbd_buf_of(data);
		rc = secondary_primary_read(d, data, q->length, q->offset);
		if (rc == 0)
			atomic_fetch_add(&c->srv->bytes_read, q->length);
		break;
	case NBD_CMD_WRITE:
		atomic_fetch_add(&c->srv->writes, 1);
		if (q->length)
			rc = secondary_primary_write(d, data, q->length, q->offset);
		if (rc == 0)
			atomic_fetch_add(&c->srv->bytes_written, q->length);
		if (rc == 0 && fua)
			rc = secondary_primary_flush(d);
		break;
	case NBD_CMD_FLUSH:
		atomic_fetch_add(&c->srv->flushes, 1);
		rc = secondary_primary_flush(d);
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		/* TRIM too: the secondary's S must read zeros afterwards. */
		atomic_fetch_add(&c->srv->zeroes, 1);
		if (q->type == NBD_CMD_WRITE_ZEROES &&
		    (q->flags & NBD_CMD_FLAG_NO_HOLE))
			rc = do_zero_alloc(d, q->offset, q->length);
		else
			rc = do_zero(d, q->offset, q->length);
		if (rc == 0 && fua)
			rc = secondary_primary_flush(d);
		break;
	default:
		/* nbd_request_check lets nothing else through. */
		abort();
	}
	return rc == 0 ? 0 : nbd_errno_to_nbd(errno);
}

/* NBD_ESHUTDOWN comes from a failover (the secondary refuses primary
 * writes) or from the server's own stop (the budget fails every wait):
 * the log says which.
 */
static const char *
shutdown_cause(struct nbd_server *srv)
{
	bool stopping;

	pthread_mutex_lock(&srv->lock);
	stopping = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	return stopping ? "shutdown" : "failover";
}

static void *
worker_main(void *arg)
{
	struct nbd_conn *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct nbd_job *j;
		uint32_t err;

		while (c->head == NULL && !c->stop) {
			c->idle++;
			pthread_cond_wait(&c->work, &c->lock);
			c->idle--;
		}
		if (c->head == NULL)
			break;
		j = c->head;
		c->head = j->next;
		if (c->head == NULL)
			c->tail = NULL;
		c->nqueued--;
		pthread_mutex_unlock(&c->lock);

		err = execute(c, j);
		export_mark_completed(c);
		if (err == NBD_ESHUTDOWN && !atomic_exchange(&c->closing, true)) {
			log_info("nbd: export %s: %s: closing connection %llu",
				 c->ex->name, shutdown_cause(c->srv),
				 (unsigned long long)c->id);
		}
		conn_send_reply(c, j->req.cookie, err,
				j->buf ? (void *)j->buf->data : NULL,
				j->req.type == NBD_CMD_READ ? j->req.length : 0);
		if (err == NBD_ESHUTDOWN)
			shutdown(c->fd, SHUT_RD);	/* the reader stops */
		if (j->buf)
			budget_put(&c->srv->budget, &c->mem, j->buf->data);
		free(j);

		pthread_mutex_lock(&c->lock);
		c->inflight--;
		pthread_cond_signal(&c->room);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* 1 if the peer closed or shut down its side (data may still be queued). */
static bool
peer_hung_up(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) == 1 &&
	       (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int conn_enqueue(struct nbd_conn *c, struct nbd_job *j);

/* A request of a client that hung up, not held (see conn_submit). */
static void
conn_drop(struct nbd_conn *c, struct nbd_job *j)
{
	if (j->buf)
		budget_put(&c->srv->budget, &c->mem, j->buf->data);
	free(j);
	atomic_fetch_add(&c->srv->dropped, 1);
}

static int
conn_submit(void *opaque, const struct nbd_request *req, void *buf)
{
	struct nbd_conn *c = opaque;
	struct nbd_job *j;

	conn_clear_rcvtimeo(c);
	if (conn_barrier(c) == -1)
		goto fail;
	j = malloc(sizeof *j);
	if (j == NULL)
		goto fail;
	j->next = NULL;
	j->req = *req;
	j->buf = buf ? nbd_buf_of(buf) : NULL;
	atomic_fetch_add(&c->srv->requests, 1);

	/* A request read after the peer hung up is held back: it is run
	 * only if a DISC follows (a client may pipeline WRITE, DISC, close),
	 * and dropped if the stream just ends, since that client is dead and
	 * will never see the reply.
	 *
	 * Counted first, then the hangup checked (seq_cst): a barrier that
	 * snapshots submitted after the hangup (a reconnect) either saw this
	 * count, and the request completes (run, or held and counted
	 * completed at once), or did not, and then this check comes after
	 * the hangup and sees it.  Either way the barrier covers every
	 * request this connection will ever run.
	 */
	if (!c->hup) {
		atomic_fetch_add(&c->submitted, 1);
		c->hup = peer_hung_up(c->fd);
		if (c->hup)
			export_mark_completed(c);
	}
	if (c->hup) {
		/* Held requests hold no slot (the reader must go on to find
		 * the DISC or the end).  Bounded: READs are dropped at once
		 * (nobody will read the reply); past NBD_MAX_HELD others, or
		 * a WRITE that found no budget, every held request is
		 * dropped, even if a DISC comes.
		 */
		if (c->reserved) {
			c->reserved = false;
			conn_unreserve(c);
		}
		if (req->type == NBD_CMD_READ || c->held_overflow ||
		    c->nheld >= NBD_MAX_HELD) {
			if (req->type != NBD_CMD_READ)
				c->held_overflow = true;
			conn_drop(c, j);
			return 0;
		}
		if (c->held_tail)
			c->held_tail->next = j;
		else
			c->held = j;
		c->held_tail = j;
		c->nheld++;
		return 0;
	}
	return conn_enqueue(c, j);

fail:
	if (buf)
		conn_put_buf(c, buf);
	conn_reply_error(c, req->cookie, NBD_ENOMEM);
	return -1;
}

/* Hands a counted job to the workers, in the slot the reader reserved
 * for its payload, or waiting for one.
 */
static int
conn_enqueue(struct nbd_conn *c, struct nbd_job *j)
{
	pthread_mutex_lock(&c->lock);
	if (c->reserved) {
		c->reserved = false;
	} else {
		while (c->inflight >= NBD_MAX_INFLIGHT)
			pthread_cond_wait(&c->room, &c->lock);
		c->inflight++;
	}
	/* Every queued job needs a worker of its own: a worker signalled
	 * but not yet awake still counts as idle, so comparing idle with 0
	 * let two jobs queued in a row share it.  Then a WRITE could wait
	 * in the queue, holding its payload buffer, behind READs whose
	 * workers waited for that very budget: nothing moved for
	 * NBD_WAIT_MS, the READs failed, and barriers closed reconnecting
	 * clients.  A worker that finishes looks at the queue before it
	 * idles, so with NBD_WORKERS == NBD_MAX_INFLIGHT one is always
	 * there or can be started.
	 */
	if (c->nqueued >= c->idle && c->nworkers < NBD_WORKERS &&
	    pthread_create(&c->workers[c->nworkers], NULL, worker_main, c) == 0)
		c->nworkers++;
	if (c->nworkers == 0) {
		c->inflight--;
		pthread_cond_signal(&c->room);
		pthread_mutex_unlock(&c->lock);
		log_error("nbd: conn %llu: cannot start a worker thread",
			  (unsigned long long)c->id);
		export_mark_completed(c);
		conn_reply_error(c, j->req.cookie, NBD_ENOMEM);
		if (j->buf)
			budget_put(&c->srv->budget, &c->mem, j->buf->data);
		free(j);
		return -1;
	}
	if (c->tail)
		c->tail->next = j;
	else
		c->head = j;
	c->tail = j;
	c->nqueued++;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int
conn_accepting(void *opaque)
{
	struct nbd_conn *c = opaque;
	int yes = secondary_accepts_primary(c->srv->r);

	/* Asked only for GO and EXPORT_NAME: a no is a refusal. */
	if (!yes)
		c->fenced = true;
	return yes;
}

/* Waits for the in-flight requests, then stops and joins the workers. */
static void
conn_drain(struct nbd_conn *c)
{
	unsigned n;

	pthread_mutex_lock(&c->lock);
	while (c->inflight > 0)
		pthread_cond_wait(&c->room, &c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->work);
	n = c->nworkers;
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(c->workers[i], NULL);
}

/* Requests read after the peer hung up (see conn_submit): a DISC after
 * them makes them ordinary requests; otherwise the client is dead and
 * they are dropped unexecuted.
 */
static void
run_or_drop_held(struct nbd_conn *c, bool run)
{
	struct nbd_job *j;

	if (c->held_overflow)
		run = false;
	while ((j = c->held) != NULL) {
		c->held = j->next;
		j->next = NULL;
		if (run) {
			atomic_fetch_add(&c->submitted, 1);
			if (conn_enqueue(c, j) == 0)
				continue;
			run = false;	/* j is freed; drop the rest */
			continue;
		}
		conn_drop(c, j);
	}
	c->held_tail = NULL;
	if (!run && c->nheld)
		log_debug("nbd: conn %llu: dropped %llu requests that arrived after the client hung up",
			  (unsigned long long)c->id,
			  (unsigned long long)c->nheld);
}

void
conn_log_refused(struct nbd_server *srv, const char *why)
{
	atomic_fetch_add(&srv->refused, 1);
	if (ratelimit_allow(&srv->rl_refused, now_ms()))
		log_warn("nbd: refusing a connection: %s", why);
}

/* Leaves the handshake pool for a slot of the export, if one is free
 * (max_connections per export).  0, or -1: the connection closes.
 */
static int
conn_admit(struct nbd_conn *c, struct nbd_export *ex)
{
	struct nbd_server *srv = c->srv;
	const char *why = NULL;

	pthread_mutex_lock(&srv->lock);
	if (c->pending) {
		c->pending = false;
		srv->npending--;
	}
	if (c->evicted)
		why = "";		/* counted when it was evicted */
	else if (ex->nserving >= srv->max_conns)
		why = "export full (max_connections)";
	else {
		ex->nserving++;
		c->authenticated = true;
	}
	pthread_mutex_unlock(&srv->lock);
	if (why == NULL)
		return 0;
	if (*why != '\0')
		conn_log_refused(srv, why);
	return -1;
}

static void
serve(struct nbd_conn *c, size_t idx)
{
	struct nbd_server *srv = c->srv;
	struct nbd_export *ex = &srv->exports[idx];
	static const struct nbd_session_ops ops = {
		.get_buf = conn_get_buf,
		.put_buf = conn_put_buf,
		.submit = conn_submit,
		.reply_error = conn_reply_error,
	};
	struct nbd_io io = { .recv = sock_recv, .send = sock_send, .ctx = c };
	struct timeval tv = {
		.tv_sec = srv->io_timeout_ms / 1000,
		.tv_usec = (srv->io_timeout_ms % 1000) * 1000,
	};
	enum nbd_end end;
	uint64_t lost;

	if (conn_admit(c, ex) == -1)
		return;
	/* A reply that makes no progress for io_timeout ends the
	 * connection: a client that stops reading pins no buffer for long.
	 */
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	export_attach(ex, c);
	atomic_fetch_add(&srv->serving, 1);
	log_debug("nbd: conn %llu: serving export %s",
		  (unsigned long long)c->id, ex->name);

	end = nbd_transmission(&io, &srv->infos[idx], &ops, c);
	pthread_mutex_lock(&c->lock);
	lost = c->inflight;
	pthread_mutex_unlock(&c->lock);
	run_or_drop_held(c, end == NBD_END_DISC);
	if (end != NBD_END_DISC)
		lost += c->nheld;
	conn_drain(c);

	export_detach(ex, c);
	atomic_fetch_sub(&srv->serving, 1);
	pthread_mutex_lock(&srv->lock);
	ex->nserving--;
	pthread_mutex_unlock(&srv->lock);

	bool stopping;

	pthread_mutex_lock(&srv->lock);
	stopping = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	/* Only a client that proved who it is can raise the operator's
	 * resync signal (with TLS off, every client that completed GO).
	 */
	if (end == NBD_END_DISC || atomic_load(&c->closing) || stopping ||
	    !c->authenticated) {
		log_debug("nbd: conn %llu: export %s: closed (%s)",
			  (unsigned long long)c->id, ex->name,
			  nbd_end_name(end));
		return;
	}
	/* The primary went away without DISC: it may have seen errors for
	 * writes that never reached us.
	 */
	atomic_fetch_add(&srv->unclean, 1);
	if (ratelimit_allow(&srv->rl_unclean, now_ms()))
		log_warn("nbd: export %s: connection %llu ended without NBD_CMD_DISC (%s, %llu requests were in flight)",
			 ex->name, (unsigned long long)c->id,
			 end == NBD_END_PROTOCOL ? "protocol error" : "client went away",
			 (unsigned long long)lost);
	char why[256];

	snprintf(why, sizeof why, "nbd export %s, connection %llu ended without NBD_CMD_DISC: %s, %llu requests in flight",
		 ex->name, (unsigned long long)c->id,
		 end == NBD_END_PROTOCOL ? "protocol error" : "client went away",
		 (unsigned long long)lost);
	secondary_note_unclean_disconnect(srv->r, why);
}

static void
conn_free(struct nbd_conn *c)
{
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->send_lock);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->room);
	free(c);
}

static int
conn_starttls(void *opaque)
{
	return tls_session_start(opaque);
}

static void
conn_tls_refused(void *opaque)
{
	struct nbd_conn *c = opaque;

	c->tls_refused = true;
}

/* The export's fixed description, then the server's dynamic text. */
static void
conn_describe(void *opaque, size_t idx, char *buf, size_t len)
{
	struct nbd_conn *c = opaque;
	struct nbd_server *srv = c->srv;
	int n;

	n = snprintf(buf, len, "%s ", srv->infos[idx].description);
	if (n >= 0 && (size_t)n < len)
		srv->describe(srv->describe_opaque, buf + n, len - (size_t)n);
}

/* S may be behind the primary (s_consistent=0) until a primary that will
 * sync it connects: one that presented this disk's current generation
 * (core/gi.h), which it read from the description.  Any other client
 * (nbdinfo, QEMU, a primary of another pair) changes nothing.
 */
static void
note_client(struct nbd_conn *c, uint64_t gen)
{
	struct nbd_server *srv = c->srv;
	char desc[NBD_MAX_NAME + 1];
	struct gi_set gi;

	if (secondary_s_consistent(srv->r))
		return;
	desc[0] = '\0';
	if (srv->describe != NULL)
		srv->describe(srv->describe_opaque, desc, sizeof desc);
	if (gen != 0 && gi_parse(desc, &gi) == 0 && gi.current == gen) {
		log_info("nbd: conn %llu: %s presents this disk's generation "
			 "%016" PRIx64 ": a primary that syncs it",
			 (unsigned long long)c->id, c->peer, gen);
		secondary_note_primary_connected(srv->r);
		return;
	}
	log_info("nbd: conn %llu: %s did not present this disk's generation "
		 "(it presented %016" PRIx64 "): S is still taken to be behind "
		 "its primary (s_consistent=0)", (unsigned long long)c->id,
		 c->peer, gen);
}

static void *
conn_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_server *srv = c->srv;
	struct nbd_handshake hs = {
		.exports = srv->infos,
		.nexports = srv->nexports,
		.accepting = conn_accepting,
		.opaque = c,
	};
	struct nbd_io io = { .recv = sock_recv, .send = sock_send, .ctx = c };
	struct timeval tv = { .tv_sec = NBD_HANDSHAKE_MS / 1000 };
	uint64_t gen = 0;
	int idx;

	/* Now: once the client hung up, getpeername no longer tells. */
	peer_name(c->fd, c->peer, sizeof c->peer);

	/* TLS (nbd-tls.c): STARTTLS turns the io's transport into a session. */
	if (srv->tls != CONFIG_TLS_OFF)
		hs.starttls = conn_starttls;
	hs.tls_required = srv->tls == CONFIG_TLS_REQUIRE;
	hs.tls_refused = conn_tls_refused;
	if (srv->describe != NULL)
		hs.describe = conn_describe;
	hs.presented = &gen;

	/* The handshake deadline covers recv (sock_recv polls) and send,
	 * and counts from accept: time spent waiting for this thread to run
	 * is the client's too, so no connection outlives it.
	 */
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	c->deadline_ms = c->born_ms + NBD_HANDSHAKE_MS;
	atomic_fetch_add(&srv->negotiating, 1);
	idx = nbd_negotiate(&io, &hs);
	atomic_fetch_sub(&srv->negotiating, 1);
	/* Without required TLS, conn_admit marks it authenticated. */
	if (idx < 0 && c->tls_refused && c->tls == NULL) {
		atomic_fetch_add(&srv->tls_plaintext_refused, 1);
		secondary_record_error(srv->r, "nbd: refused %s: no TLS (tls = "
				     "require: the client must use nbds:// "
				     "with the key or certificate)", c->peer);
		if (ratelimit_allow(&srv->rl_refused, now_ms()))
			log_warn("nbd: conn %llu: refused %s: no TLS (tls = "
				 "require: the client must use nbds:// with "
				 "the key or certificate)",
				 (unsigned long long)c->id, c->peer);
	}
	if (idx < 0) {
		if (c->fenced) {
			char why[512];

			snprintf(why, sizeof why, "%s: this disk is past "
				 "failover (state %s) and takes no primary "
				 "writes: the old primary must not write here",
				 c->peer,
				 secondary_state_name(secondary_state(srv->r)));
			conn_log_refused(srv, why);
		}
		log_debug("nbd: conn %llu: negotiation ended: %m",
			  (unsigned long long)c->id);
	} else {
		c->deadline_ms = 0;
		tv.tv_sec = 0;
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		note_client(c, gen);
		serve(c, (size_t)idx);
	}

	tls_session_end(c);
	pthread_mutex_lock(&srv->lock);
	if (c->pending)
		srv->npending--;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);	/* unlisted first: the server never shuts a reused fd */
	srv->nconns--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
	conn_free(c);
	return NULL;
}

/* Under srv->lock: the handshake pool is full, so its oldest
 * unauthenticated connection goes (never an authenticated one), and among
 * those first the oldest that never sent a byte: a reconnect flood of
 * silent sockets then replaces only its own, while a real client, which
 * answers the greeting at once, finishes its handshake.  No connection is
 * evicted before it had NBD_EVICT_MIN_AGE_MS to speak, however fast new
 * ones come: the accept thread waits instead (a flood then waits in the
 * listen backlog).  The evicted thread sees its socket shut and ends; its
 * slot is free at once.
 *
 * Returns 0 (evicted one), -1 (no candidate: all are authenticated), or
 * the milliseconds until the candidate is old enough.
 */
/* Under srv->lock: closes o, an unauthenticated connection in the pool. */
static void
evict(struct nbd_server *srv, struct nbd_conn *o, const char *why)
{
	o->evicted = true;
	o->pending = false;
	srv->npending--;
	shutdown(o->fd, SHUT_RDWR);
	atomic_fetch_add(&srv->evicted, 1);
	if (ratelimit_allow(&srv->rl_evicted, now_ms()))
		log_warn("nbd: %s: closing connection %llu, the oldest "
			 "unauthenticated one", why,
			 (unsigned long long)o->id);
}

/* Under srv->lock: the oldest unauthenticated connection in the pool,
 * among those from source (NULL: all), the silent ones first; *n gets how
 * many there are.
 */
static struct nbd_conn *
oldest_pending(struct nbd_server *srv, const unsigned char *source,
	       unsigned *n)
{
	struct nbd_conn *old = NULL, *silent = NULL;

	*n = 0;
	/* srv->conns is newest first. */
	for (struct nbd_conn *o = srv->conns; o; o = o->next) {
		if (!o->pending || o->evicted || o->authenticated)
			continue;
		if (source != NULL &&
		    memcmp(o->source, source, sizeof o->source) != 0)
			continue;
		(*n)++;
		old = o;
		if (!atomic_load_explicit(&o->hs_rx, memory_order_relaxed))
			silent = o;
	}
	return silent != NULL ? silent : old;
}

static int64_t
evict_oldest(struct nbd_server *srv)
{
	unsigned n;
	struct nbd_conn *old = oldest_pending(srv, NULL, &n);
	int64_t age;

	if (old == NULL)
		return -1;
	age = now_ms() - old->born_ms;
	if (age < NBD_EVICT_MIN_AGE_MS)
		return NBD_EVICT_MIN_AGE_MS - age;
	evict(srv, old, "handshake pool full (max_handshakes)");
	return 0;
}

/* Under srv->lock: a TCP source already holding max_handshakes_per_address
 * connections in the pool gives up its oldest (silent first) if that one
 * had NBD_EVICT_MIN_AGE_MS to speak, else the new connection is refused.
 * Never waits: a flood from one address costs the accept thread nothing
 * and holds at most max_handshakes_per_address slots of the pool, so a
 * client from elsewhere finds one free.  0: admitted, -1: refuse.
 */
static int
admit_source(struct nbd_server *srv, struct nbd_conn *c)
{
	unsigned n;
	struct nbd_conn *old;

	if (!srv->is_tcp)
		return 0;
	old = oldest_pending(srv, c->source, &n);
	if (n < srv->max_per_addr)
		return 0;
	if (now_ms() - old->born_ms < NBD_EVICT_MIN_AGE_MS)
		return -1;
	evict(srv, old, "too many handshakes from one address "
	      "(max_handshakes_per_address)");
	return 0;
}

/* The key max_handshakes_per_address counts by (nbd_conn.source). */
static void
source_of(struct nbd_conn *c, const struct sockaddr_storage *ss)
{
	memset(c->source, 0, sizeof c->source);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		c->source[0] = 4;
		memcpy(c->source + 1, &s4->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
			(const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			c->source[0] = 4;
			memcpy(c->source + 1, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			/* Per /64: one host usually holds a whole /64. */
			c->source[0] = 6;
			memcpy(c->source + 1, s6->sin6_addr.s6_addr, 8);
		}
	}
}

void
conn_spawn(struct nbd_server *srv, int fd,
	   const struct sockaddr_storage *peer)
{
	struct nbd_conn *c;
	pthread_attr_t attr;
	pthread_t tid;
	int one = 1;

	if (srv->is_tcp) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	}
	c = calloc(1, sizeof *c);
	if (c == NULL) {
		log_error("nbd: new connection: %m");
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->room, NULL);

	c->born_ms = now_ms();
	source_of(c, peer);

	pthread_mutex_lock(&srv->lock);
	if (!srv->stopping && admit_source(srv, c) == -1) {
		pthread_mutex_unlock(&srv->lock);
		conn_log_refused(srv, "too many handshakes from one address "
				 "(max_handshakes_per_address)");
		close(fd);
		conn_free(c);
		return;
	}
	while (!srv->stopping && srv->npending >= srv->max_handshakes) {
		int64_t wait = evict_oldest(srv);

		if (wait <= 0)
			break;
		pthread_mutex_unlock(&srv->lock);
		poll(NULL, 0, (int)wait);
		pthread_mutex_lock(&srv->lock);
	}
	if (srv->stopping || srv->npending >= srv->max_handshakes) {
		pthread_mutex_unlock(&srv->lock);
		conn_log_refused(srv, srv->stopping ? "stopping" :
				 "every handshake slot holds an authenticated client");
		close(fd);
		conn_free(c);
		return;
	}
	c->pending = true;
	srv->npending++;
	c->id = ++srv->next_id;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	atomic_fetch_add(&srv->accepted, 1);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, conn_main, c) != 0) {
		log_error("nbd: no thread for a new connection");
		srv->conns = c->next;
		if (c->next)
			c->next->prev = NULL;
		srv->nconns--;
		srv->npending--;
		close(fd);
		conn_free(c);
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&srv->lock);
}
