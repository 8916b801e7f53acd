/* SPDX-License-Identifier: MIT */
/* The NBD listener: sockets and threads around nbd-proto.c.
 *
 * Threads
 *
 *   accept thread ──accept()──> connection thread (detached, one per client)
 *                                 │ nbd_negotiate() under a 10 s deadline
 *                                 │ nbd_transmission(): reads requests,
 *                                 │   reads a WRITE's payload in full into
 *                                 │   a buffer, queues it
 *                                 ▼
 *                               workers (up to NBD_WORKERS per connection,
 *                                 started on demand): call replica_primary_*,
 *                                 send the reply, recycle the buffer
 *
 * A connection's reader goes on reading while its workers execute, so
 * requests are pipelined and replies go out in completion order.  At most
 * NBD_MAX_INFLIGHT requests (and about NBD_MAX_INFLIGHT_BYTES of buffers)
 * are in flight per connection: the reader waits for room.  Workers are per
 * connection so that a client that stops reading its replies stalls only
 * its own connection.
 *
 * Ends.  When the transmission loop ends (DISC, EOF, bad magic, ...), the
 * connection thread waits until its in-flight requests have finished and
 * been answered, stops and joins its workers, closes the socket and frees
 * the connection.  An end without DISC that the server did not cause is an
 * unclean disconnect: replica_note_unclean_disconnect().
 *
 * Reconnects.  QEMU reconnects by itself and may replay writes, so a stale
 * write of a dead connection must not land after its newer twin.  The dead
 * connection's reader may not even have seen its EOF yet when the new one
 * starts, so the rule is broader: before its first request executes, a
 * connection waits until every request submitted on the same export by
 * other connections up to that moment has executed (export_barrier).  For
 * live multi-conn clients (nbdcopy) that is a one-off wait for requests
 * that complete on their own.  The dead connection's reader may also
 * still find whole requests queued in its socket after the hangup: those
 * are held back, unexecuted, and run only if a DISC follows them (a client
 * may send WRITE, DISC and close without waiting), else dropped -- their
 * client never saw a reply.  A request is counted submitted before the
 * hangup check (see conn_submit), so a barrier that runs after the hangup
 * covers every request the dead connection will run.
 *
 * Failover.  New GO/EXPORT_NAME are refused while !replica_accepts_primary.
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
 * shuts its socket down (under srv->lock, while it is listed) to stop it.
 * A buffer belongs to the reader until submitted, then to the job.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nbd-proto.h"
#include "nbd.h"

#define NBD_DEFAULT_PORT	"10809"
#define NBD_HANDSHAKE_MS	10000
#define NBD_MAX_CONNS		128	/* negotiating + serving */
#define NBD_MAX_INFLIGHT	16	/* requests per connection */
#define NBD_MAX_INFLIGHT_BYTES	(64u << 20)
#define NBD_WORKERS		NBD_MAX_INFLIGHT
#define NBD_BUF_CACHE		16	/* recycled buffers per connection */
#define NBD_BUF_CACHE_MAX	(4u << 20)	/* larger ones are freed */
#define NBD_ZERO_CHUNK		(64ull << 20)
#define NBD_STOP_GRACE_MS	3000

struct nbd_conn;

struct nbd_export {
	struct nbd_server *srv;
	struct replica_disk *disk;
	char *name;
	char *description;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a counter moved, a connection left */
	struct nbd_conn *conns;		/* serving ones; protected by lock */
	/* Barrier waiters; changed under lock, read without it (see
	 * conn_mark_completed).
	 */
	atomic_uint waiters;
};

struct nbd_server {
	struct replica *r;
	int listen_fd;
	int wake[2];			/* wakes the accept thread */
	char *unix_path;		/* unlinked at free, or NULL */
	char addr[160];			/* what we listen on, for status */
	size_t nexports;
	struct nbd_export *exports;
	struct nbd_export_info *infos;	/* parallel to exports */
	pthread_t accept_thread;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* nconns dropped */
	struct nbd_conn *conns;		/* protected by lock */
	unsigned nconns;		/* protected by lock */
	bool stopping;			/* protected by lock */
	uint64_t next_id;		/* protected by lock */

	atomic_uint_fast64_t accepted, refused, serving, negotiating;
	atomic_uint_fast64_t unclean, requests, request_errors;
	atomic_uint_fast64_t reads, writes, flushes, zeroes;	/* executed */
	atomic_uint_fast64_t bytes_read, bytes_written;
};

struct nbd_buf {
	struct nbd_buf *next;
	size_t cap;
	max_align_t data[];
};

struct nbd_job {
	struct nbd_job *next;
	struct nbd_request req;
	struct nbd_buf *buf;		/* READ/WRITE with length > 0 */
};

struct nbd_conn {
	struct nbd_server *srv;
	uint64_t id;
	int fd;
	bool is_tcp;
	int64_t deadline_ms;		/* handshake only; 0: none */
	struct nbd_conn *next, *prev;	/* srv->conns; srv->lock */
	struct nbd_export *ex;		/* once negotiated */
	struct nbd_conn *ex_next, *ex_prev;	/* ex->conns; ex->lock */
	/* Requests counted for the reconnect barrier: submitted by the
	 * reader, completed once executed (or held back).  Atomics, taken
	 * without a lock; see conn_submit and conn_mark_completed.
	 */
	atomic_uint_fast64_t submitted, completed;
	bool barrier_done;		/* reader only */
	bool hup;			/* reader only: the peer hung up */
	struct nbd_job *held, *held_tail;	/* reader only, see conn_submit */
	uint64_t nheld;			/* reader only */
	atomic_bool closing;		/* the server ends it (failover) */
	atomic_bool broken;		/* a reply could not be sent */

	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job queued, or stop */
	pthread_cond_t room;		/* a job finished */
	struct nbd_job *head, *tail;	/* protected by lock */
	unsigned inflight;		/* queued + executing; lock */
	size_t inflight_bytes;		/* lock */
	unsigned nworkers, idle;	/* lock */
	bool stop;			/* workers exit when idle; lock */
	pthread_t workers[NBD_WORKERS];	/* lock */
	struct nbd_buf *free_bufs;	/* lock */
	unsigned nfree;			/* lock */

	pthread_mutex_t send_lock;	/* see the top of the file */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- socket io ----------------------------------------------------- */

static int
sock_recv(void *ctx, void *buf, size_t len)
{
	struct nbd_conn *c = ctx;
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n;

		if (c->deadline_ms) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			int64_t left = c->deadline_ms - now_ms();
			int rc;

			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			rc = poll(&pfd, 1, (int)left);
			if (rc == -1 && errno == EINTR)
				continue;
			if (rc == -1)
				return -1;
			if (rc == 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			n = recv(c->fd, p, len, MSG_DONTWAIT);
			if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
				continue;
		} else {
			n = recv(c->fd, p, len, MSG_WAITALL);
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
sock_send(void *ctx, const struct iovec *iov_in, int iovcnt)
{
	struct nbd_conn *c = ctx;
	struct iovec iov[8];
	struct msghdr msg = { .msg_iov = iov };
	int cnt = 0;

	if (iovcnt > 8) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < iovcnt; i++)
		if (iov_in[i].iov_len)
			iov[cnt++] = iov_in[i];
	while (cnt > 0) {
		ssize_t n;

		msg.msg_iovlen = (size_t)cnt;
		/* MSG_NOSIGNAL: a vanished client is EPIPE, never SIGPIPE. */
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		while (cnt > 0 && (size_t)n >= msg.msg_iov[0].iov_len) {
			n -= (ssize_t)msg.msg_iov[0].iov_len;
			msg.msg_iov++;
			cnt--;
		}
		if (cnt > 0) {
			msg.msg_iov[0].iov_base = (uint8_t *)msg.msg_iov[0].iov_base + n;
			msg.msg_iov[0].iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* --- buffers --------------------------------------------------------- */

static struct nbd_buf *
buf_of(void *data)
{
	return (struct nbd_buf *)((uint8_t *)data - offsetof(struct nbd_buf, data));
}

static void *
conn_get_buf(void *opaque, size_t len)
{
	struct nbd_conn *c = opaque;
	struct nbd_buf *b, **pp;

	pthread_mutex_lock(&c->lock);
	for (pp = &c->free_bufs; (b = *pp) != NULL; pp = &b->next) {
		if (b->cap >= len) {
			*pp = b->next;
			c->nfree--;
			pthread_mutex_unlock(&c->lock);
			return b->data;
		}
	}
	pthread_mutex_unlock(&c->lock);

	size_t cap = len < 65536 ? 65536 : len;

	b = malloc(sizeof(*b) + cap);
	if (b == NULL)
		return NULL;
	b->cap = cap;
	return b->data;
}

static void
conn_put_buf(void *opaque, void *data)
{
	struct nbd_conn *c = opaque;
	struct nbd_buf *b = buf_of(data);

	pthread_mutex_lock(&c->lock);
	if (c->nfree < NBD_BUF_CACHE && b->cap <= NBD_BUF_CACHE_MAX) {
		b->next = c->free_bufs;
		c->free_bufs = b;
		c->nfree++;
		b = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(b);
}

/* --- replies --------------------------------------------------------- */

static int
conn_send_reply(struct nbd_conn *c, uint64_t cookie, uint32_t err,
		const void *data, size_t len)
{
	uint8_t hdr[NBD_REPLY_SIZE];
	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
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

/* --- execution ------------------------------------------------------- */

static int
do_zero(struct replica_disk *d, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t n = len < NBD_ZERO_CHUNK ? len : NBD_ZERO_CHUNK;

		if (replica_primary_zero(d, off, n) == -1)
			return -1;
		off += n;
		len -= n;
	}
	return 0;
}

/* Runs one request against the replica: 0 or an NBD error. */
static uint32_t
execute(struct nbd_conn *c, const struct nbd_job *j)
{
	struct replica_disk *d = c->ex->disk;
	const struct nbd_request *q = &j->req;
	void *data = j->buf ? j->buf->data : NULL;
	bool fua = q->flags & NBD_CMD_FLAG_FUA;
	int rc = 0;

	switch (q->type) {
	case NBD_CMD_READ:
		atomic_fetch_add(&c->srv->reads, 1);
		if (q->length)
			rc = replica_primary_read(d, data, q->length, q->offset);
		if (rc == 0)
			atomic_fetch_add(&c->srv->bytes_read, q->length);
		break;
	case NBD_CMD_WRITE:
		atomic_fetch_add(&c->srv->writes, 1);
		if (q->length)
			rc = replica_primary_write(d, data, q->length, q->offset);
		if (rc == 0)
			atomic_fetch_add(&c->srv->bytes_written, q->length);
		if (rc == 0 && fua)
			rc = replica_primary_flush(d);
		break;
	case NBD_CMD_FLUSH:
		atomic_fetch_add(&c->srv->flushes, 1);
		rc = replica_primary_flush(d);
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		/* TRIM too: the replica's S must read zeros afterwards. */
		atomic_fetch_add(&c->srv->zeroes, 1);
		rc = do_zero(d, q->offset, q->length);
		if (rc == 0 && fua)
			rc = replica_primary_flush(d);
		break;
	default:
		/* nbd_request_check lets nothing else through. */
		abort();
	}
	return rc == 0 ? 0 : nbd_errno_to_nbd(errno);
}

static void
conn_mark_completed(struct nbd_conn *c)
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

static void *
worker_main(void *arg)
{
	struct nbd_conn *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct nbd_job *j;
		uint32_t err;
		size_t bytes;

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
		pthread_mutex_unlock(&c->lock);

		err = execute(c, j);
		conn_mark_completed(c);
		if (err == NBD_ESHUTDOWN && !atomic_exchange(&c->closing, true)) {
			log_info("nbd: export %s: failover: closing connection %llu",
				 c->ex->name, (unsigned long long)c->id);
		}
		conn_send_reply(c, j->req.cookie, err,
				j->buf ? (void *)j->buf->data : NULL,
				j->req.type == NBD_CMD_READ ? j->req.length : 0);
		if (err == NBD_ESHUTDOWN)
			shutdown(c->fd, SHUT_RD);	/* the reader stops */
		bytes = j->buf ? j->req.length : 0;
		if (j->buf)
			conn_put_buf(c, j->buf->data);
		free(j);

		pthread_mutex_lock(&c->lock);
		c->inflight--;
		c->inflight_bytes -= bytes;
		pthread_cond_signal(&c->room);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Waits until every request other connections on the export submitted
 * before now has executed (see "Reconnects" at the top).
 */
static void
export_barrier(struct nbd_conn *c)
{
	struct nbd_export *ex = c->ex;
	struct nbd_snap { uint64_t id, target; } snap[NBD_MAX_CONNS];
	size_t n = 0;

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
		pthread_cond_wait(&ex->cond, &ex->lock);
	}
	atomic_fetch_sub(&ex->waiters, 1);
	pthread_mutex_unlock(&ex->lock);
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

static int
conn_submit(void *opaque, const struct nbd_request *req, void *buf)
{
	struct nbd_conn *c = opaque;
	struct nbd_job *j;

	if (!c->barrier_done) {
		export_barrier(c);
		c->barrier_done = true;
	}
	j = malloc(sizeof(*j));
	if (j == NULL)
		goto fail;
	j->next = NULL;
	j->req = *req;
	j->buf = buf ? buf_of(buf) : NULL;
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
			conn_mark_completed(c);
	}
	if (c->hup) {
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

/* Hands a counted job to the workers, waiting for room. */
static int
conn_enqueue(struct nbd_conn *c, struct nbd_job *j)
{
	size_t bytes = j->buf ? j->req.length : 0;

	pthread_mutex_lock(&c->lock);
	while (c->inflight >= NBD_MAX_INFLIGHT ||
	       (c->inflight > 0 &&
		c->inflight_bytes + bytes > NBD_MAX_INFLIGHT_BYTES))
		pthread_cond_wait(&c->room, &c->lock);
	if (c->idle == 0 && c->nworkers < NBD_WORKERS &&
	    pthread_create(&c->workers[c->nworkers], NULL, worker_main, c) == 0)
		c->nworkers++;
	if (c->nworkers == 0) {
		pthread_mutex_unlock(&c->lock);
		log_error("nbd: conn %llu: cannot start a worker thread",
			  (unsigned long long)c->id);
		conn_mark_completed(c);
		conn_reply_error(c, j->req.cookie, NBD_ENOMEM);
		if (j->buf)
			conn_put_buf(c, j->buf->data);
		free(j);
		return -1;
	}
	if (c->tail)
		c->tail->next = j;
	else
		c->head = j;
	c->tail = j;
	c->inflight++;
	c->inflight_bytes += bytes;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- connections ----------------------------------------------------- */

static int
conn_accepting(void *opaque)
{
	struct nbd_conn *c = opaque;

	return replica_accepts_primary(c->srv->r);
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
		if (j->buf)
			conn_put_buf(c, j->buf->data);
		free(j);
	}
	c->held_tail = NULL;
	if (!run && c->nheld)
		log_debug("nbd: conn %llu: dropped %llu requests that arrived after the client hung up",
			  (unsigned long long)c->id,
			  (unsigned long long)c->nheld);
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
	enum nbd_end end;
	uint64_t lost;

	c->ex = ex;
	pthread_mutex_lock(&ex->lock);
	c->ex_next = ex->conns;
	if (ex->conns)
		ex->conns->ex_prev = c;
	ex->conns = c;
	pthread_mutex_unlock(&ex->lock);
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

	pthread_mutex_lock(&ex->lock);
	if (c->ex_prev)
		c->ex_prev->ex_next = c->ex_next;
	else
		ex->conns = c->ex_next;
	if (c->ex_next)
		c->ex_next->ex_prev = c->ex_prev;
	pthread_cond_broadcast(&ex->cond);
	pthread_mutex_unlock(&ex->lock);
	atomic_fetch_sub(&srv->serving, 1);

	bool stopping;

	pthread_mutex_lock(&srv->lock);
	stopping = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	if (end == NBD_END_DISC || atomic_load(&c->closing) || stopping) {
		log_debug("nbd: conn %llu: export %s: closed (%s)",
			  (unsigned long long)c->id, ex->name,
			  nbd_end_name(end));
		return;
	}
	/* The primary went away without DISC: it may have seen errors for
	 * writes that never reached us.
	 */
	atomic_fetch_add(&srv->unclean, 1);
	log_warn("nbd: export %s: connection %llu ended without NBD_CMD_DISC (%s, %llu requests were in flight)",
		 ex->name, (unsigned long long)c->id,
		 end == NBD_END_PROTOCOL ? "protocol error" : "client went away",
		 (unsigned long long)lost);
	char why[256];

	snprintf(why, sizeof(why), "nbd export %s, connection %llu: %s, %llu requests in flight",
		 ex->name, (unsigned long long)c->id,
		 end == NBD_END_PROTOCOL ? "protocol error" : "client went away",
		 (unsigned long long)lost);
	replica_note_unclean_disconnect(srv->r, why);
}

static void
conn_free(struct nbd_conn *c)
{
	struct nbd_buf *b;

	while ((b = c->free_bufs) != NULL) {
		c->free_bufs = b->next;
		free(b);
	}
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->send_lock);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->room);
	free(c);
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
	int idx;

	/* The handshake deadline covers recv (sock_recv polls) and send. */
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->deadline_ms = now_ms() + NBD_HANDSHAKE_MS;
	atomic_fetch_add(&srv->negotiating, 1);
	idx = nbd_negotiate(&io, &hs);
	atomic_fetch_sub(&srv->negotiating, 1);
	if (idx < 0) {
		if (errno == ESHUTDOWN)
			atomic_fetch_add(&srv->refused, 1);
		log_debug("nbd: conn %llu: negotiation ended: %m",
			  (unsigned long long)c->id);
	} else {
		c->deadline_ms = 0;
		tv.tv_sec = 0;
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve(c, (size_t)idx);
	}

	pthread_mutex_lock(&srv->lock);
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

static void
spawn_conn(struct nbd_server *srv, int fd, bool is_tcp)
{
	struct nbd_conn *c;
	pthread_attr_t attr;
	pthread_t tid;
	int one = 1;

	if (is_tcp) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		log_error("nbd: new connection: %m");
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->is_tcp = is_tcp;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->room, NULL);

	pthread_mutex_lock(&srv->lock);
	if (srv->stopping || srv->nconns >= NBD_MAX_CONNS) {
		pthread_mutex_unlock(&srv->lock);
		atomic_fetch_add(&srv->refused, 1);
		log_warn("nbd: refusing a connection: %s",
			 srv->stopping ? "stopping" : "too many connections");
		close(fd);
		conn_free(c);
		return;
	}
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
		close(fd);
		conn_free(c);
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&srv->lock);
}

static void *
accept_main(void *arg)
{
	struct nbd_server *srv = arg;
	bool is_tcp = srv->unix_path == NULL;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};
		int fd;

		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			log_error("nbd: poll: %m");
			break;
		}
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == ECONNABORTED || errno == EPROTO)
				continue;
			/* EMFILE and the like: back off, do not spin. */
			log_error("nbd: accept: %m");
			poll(NULL, 0, 100);
			continue;
		}
		spawn_conn(srv, fd, is_tcp);
	}
	return NULL;
}

/* --- listening ------------------------------------------------------- */

static int
listen_unix(struct nbd_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		log_error("nbd: listen: unix socket path too long: %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	/* A stale socket from an earlier run; anything else is kept. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			log_error("nbd: listen: %s exists and is not a socket",
				  path);
			return -1;
		}
		if (unlink(path) == -1) {
			log_error("nbd: listen: unlink stale %s: %m", path);
			return -1;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_error("nbd: listen: socket: %m");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, SOMAXCONN) == -1) {
		log_error("nbd: listen on unix:%s: %m", path);
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	srv->unix_path = strdup(path);
	if (srv->unix_path == NULL) {
		close(fd);
		unlink(path);
		errno = ENOMEM;
		return -1;
	}
	snprintf(srv->addr, sizeof(srv->addr), "unix:%s", path);
	return fd;
}

/* "HOST:PORT", "[V6]:PORT", "HOST" (port 10809), ":PORT" (any address). */
static int
split_host_port(const char *spec, char *host, size_t hlen,
		char *port, size_t plen)
{
	const char *h = spec, *p = NULL;
	size_t n;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return -1;
		h = spec + 1;
		n = (size_t)(end - h);
		if (end[1] == ':')
			p = end + 2;
	} else {
		const char *colon = strrchr(spec, ':');

		if (colon && strchr(spec, ':') == colon) {
			n = (size_t)(colon - spec);
			p = colon + 1;
		} else {
			n = strlen(spec);	/* bare v6 or bare host */
		}
	}
	if (n >= hlen)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	if (p == NULL || *p == '\0')
		p = NBD_DEFAULT_PORT;
	if (strlen(p) >= plen || strspn(p, "0123456789") != strlen(p))
		return -1;
	strcpy(port, p);
	return 0;
}

static int
listen_inet(struct nbd_server *srv, const char *spec)
{
	char host[128], port[16];
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	}, *res, *ai;
	int fd = -1, rc, saved = 0;

	if (split_host_port(spec, host, sizeof(host), port, sizeof(port))) {
		errno = EINVAL;
		log_error("nbd: listen: cannot parse \"%s\" (HOST:PORT, [V6]:PORT or unix:PATH)",
			  spec);
		return -1;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		errno = EINVAL;
		log_error("nbd: listen: %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, SOMAXCONN) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		errno = saved ? saved : EADDRNOTAVAIL;
		log_error("nbd: listen on %s: %m", spec);
		return -1;
	}

	/* Say where we really are (port 0 picks one). */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char hb[INET6_ADDRSTRLEN] = "?";
	unsigned pt = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, hb, sizeof(hb));
			pt = ntohs(s4->sin_port);
			snprintf(srv->addr, sizeof(srv->addr), "%s:%u", hb, pt);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, hb, sizeof(hb));
			pt = ntohs(s6->sin6_port);
			snprintf(srv->addr, sizeof(srv->addr), "[%s]:%u", hb, pt);
		}
	}
	return fd;
}

/* --- the server ------------------------------------------------------ */

struct nbd_server *
nbd_server_new(struct replica *r, const struct config *cfg)
{
	struct nbd_server *srv;
	int saved;

	if (cfg->listen == NULL || cfg->listen[0] == '\0') {
		errno = EINVAL;
		log_error("nbd: no listen address in the config");
		return NULL;
	}
	/* MSG_NOSIGNAL covers our sends; this covers anything else. */
	signal(SIGPIPE, SIG_IGN);

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return NULL;
	srv->r = r;
	srv->listen_fd = -1;
	srv->wake[0] = srv->wake[1] = -1;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);

	srv->exports = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof(*srv->exports));
	srv->infos = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof(*srv->infos));
	if (srv->exports == NULL || srv->infos == NULL)
		goto fail;
	for (size_t i = 0; i < cfg->ndisks; i++) {
		const struct config_disk *cd = &cfg->disks[i];
		struct nbd_export *ex = &srv->exports[i];
		const char *en = cd->export_name ? cd->export_name : cd->name;

		ex->disk = replica_find_disk(r, cd->name);
		if (ex->disk == NULL) {
			errno = ENOENT;
			log_error("nbd: disk %s is not in the replica", cd->name);
			goto fail;
		}
		if (strlen(en) > NBD_MAX_NAME) {
			errno = EINVAL;
			log_error("nbd: export name of disk %s is too long",
				  cd->name);
			goto fail;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(srv->exports[k].name, en) == 0) {
				errno = EEXIST;
				log_error("nbd: two disks export \"%s\"", en);
				goto fail;
			}
		}
		ex->srv = srv;
		ex->name = strdup(en);
		if (asprintf(&ex->description, "colofs secondary disk %s",
			     cd->name) == -1)
			ex->description = NULL;
		if (ex->name == NULL || ex->description == NULL)
			goto fail;
		pthread_mutex_init(&ex->lock, NULL);
		pthread_cond_init(&ex->cond, NULL);
		srv->nexports++;
		srv->infos[i] = (struct nbd_export_info){
			.name = ex->name,
			.description = ex->description,
			.size = replica_disk_size(ex->disk),
			/* One image fd per disk, shared by every connection:
			 * a FLUSH (fdatasync) covers all of their writes.
			 */
			.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
				  NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
				  NBD_FLAG_SEND_WRITE_ZEROES |
				  NBD_FLAG_CAN_MULTI_CONN,
		};
	}

	if (pipe2(srv->wake, O_CLOEXEC) == -1) {
		log_error("nbd: pipe: %m");
		goto fail;
	}
	if (strncmp(cfg->listen, "unix:", 5) == 0)
		srv->listen_fd = listen_unix(srv, cfg->listen + 5);
	else
		srv->listen_fd = listen_inet(srv, cfg->listen);
	if (srv->listen_fd == -1)
		goto fail;
	log_info("nbd: listening on %s, %zu export(s)", srv->addr,
		 srv->nexports);
	return srv;

fail:
	saved = errno;
	nbd_server_free(srv);
	errno = saved;
	return NULL;
}

int
nbd_server_start(struct nbd_server *srv)
{
	int rc = pthread_create(&srv->accept_thread, NULL, accept_main, srv);

	if (rc != 0) {
		errno = rc;
		log_error("nbd: accept thread: %m");
		return -1;
	}
	srv->started = true;
	return 0;
}

static void
shutdown_conns(struct nbd_server *srv, int how)
{
	for (struct nbd_conn *c = srv->conns; c; c = c->next)
		shutdown(c->fd, how);
}

void
nbd_server_free(struct nbd_server *srv)
{
	struct timespec ts;

	if (srv == NULL)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	if (srv->started) {
		ssize_t n = write(srv->wake[1], "x", 1);

		(void)n;
		pthread_join(srv->accept_thread, NULL);
	}
	if (srv->listen_fd != -1)
		close(srv->listen_fd);
	if (srv->unix_path)
		unlink(srv->unix_path);

	/* Stop reading: sessions end, their in-flight requests finish and
	 * are answered.  Whoever is still there after the grace period
	 * (a client not reading its replies) is cut off.
	 */
	pthread_mutex_lock(&srv->lock);
	shutdown_conns(srv, SHUT_RD);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += NBD_STOP_GRACE_MS / 1000;
	while (srv->nconns > 0) {
		if (pthread_cond_timedwait(&srv->cond, &srv->lock, &ts) ==
		    ETIMEDOUT) {
			shutdown_conns(srv, SHUT_RDWR);
			break;
		}
	}
	while (srv->nconns > 0)
		pthread_cond_wait(&srv->cond, &srv->lock);
	pthread_mutex_unlock(&srv->lock);

	for (size_t i = 0; i < srv->nexports; i++) {
		free(srv->exports[i].name);
		free(srv->exports[i].description);
		pthread_mutex_destroy(&srv->exports[i].lock);
		pthread_cond_destroy(&srv->exports[i].cond);
	}
	/* A half-built export (failure in nbd_server_new) has no lock. */
	if (srv->exports && srv->nexports == 0) {
		free(srv->exports[0].name);
		free(srv->exports[0].description);
	}
	free(srv->exports);
	free(srv->infos);
	if (srv->wake[0] != -1)
		close(srv->wake[0]);
	if (srv->wake[1] != -1)
		close(srv->wake[1]);
	free(srv->unix_path);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}

void
nbd_server_status(struct nbd_server *srv, FILE *fp)
{
	if (srv == NULL)
		return;
	fprintf(fp, "nbd.listen=%s\n", srv->addr);
	fprintf(fp, "nbd.exports=%zu\n", srv->nexports);
	fprintf(fp, "nbd.connections=%llu\n",
		(unsigned long long)atomic_load(&srv->serving));
	fprintf(fp, "nbd.negotiating=%llu\n",
		(unsigned long long)atomic_load(&srv->negotiating));
	fprintf(fp, "nbd.connections_total=%llu\n",
		(unsigned long long)atomic_load(&srv->accepted));
	fprintf(fp, "nbd.refused=%llu\n",
		(unsigned long long)atomic_load(&srv->refused));
	fprintf(fp, "nbd.unclean_disconnects=%llu\n",
		(unsigned long long)atomic_load(&srv->unclean));
	fprintf(fp, "nbd.requests=%llu\n",
		(unsigned long long)atomic_load(&srv->requests));
	fprintf(fp, "nbd.reads=%llu\n",
		(unsigned long long)atomic_load(&srv->reads));
	fprintf(fp, "nbd.writes=%llu\n",
		(unsigned long long)atomic_load(&srv->writes));
	fprintf(fp, "nbd.flushes=%llu\n",
		(unsigned long long)atomic_load(&srv->flushes));
	fprintf(fp, "nbd.zeroes=%llu\n",
		(unsigned long long)atomic_load(&srv->zeroes));
	fprintf(fp, "nbd.request_errors=%llu\n",
		(unsigned long long)atomic_load(&srv->request_errors));
	fprintf(fp, "nbd.bytes_read=%llu\n",
		(unsigned long long)atomic_load(&srv->bytes_read));
	fprintf(fp, "nbd.bytes_written=%llu\n",
		(unsigned long long)atomic_load(&srv->bytes_written));
}
