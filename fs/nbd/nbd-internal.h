/* SPDX-License-Identifier: MIT */
/* The NBD listener's private header: the structures its files share, the
 * bounds, and an extern block per file (as nbdkit's server/internal.h).
 *
 *   nbd-proto.c      the wire protocol, no sockets or threads (nbd-proto.h)
 *   nbd-transport.c  bytes in and out of a connection: socket or TLS
 *   nbd-tls.c        TLS credentials, sessions, handshake, authorization
 *   nbd-conn.c       a connection: its thread, its workers, its requests
 *   nbd-export.c     an export: its connections and the reconnect barrier
 *   nbd-listen.c     the listening socket and the accept thread
 *   nbd-server.c     the server: set-up, shutdown, status (nbd.h)
 *   nbd-bounds.c     the payload byte budget, rate-limited warnings
 */
#ifndef COLOFS_NBD_INTERNAL_H
#define COLOFS_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "config.h"
#include "deadline.h"
#include "nbd-proto.h"
#include "nbd.h"
#include "secondary.h"

#define NBD_HANDSHAKE_MS	10000
#define NBD_MAX_INFLIGHT	16	/* requests per connection */
#define NBD_WORKERS		NBD_MAX_INFLIGHT
#define NBD_ZERO_CHUNK		(64ull << 20)
#define NBD_STOP_GRACE_MS	3000
/* The longest any wait in the listener lasts (a reconnect barrier, a
 * buffer from the budget); past it the request fails, see nbd-bounds.c.
 */
#define NBD_WAIT_MS		60000
/* bounds */
#define NBD_MAX_CONNS		1024	/* the most max_connections may be */
#define NBD_EVICT_MIN_AGE_MS	500	/* a handshake's time to speak */
#define NBD_MAX_HELD		256	/* requests held after a hangup */
#define NBD_LOG_BURST		5	/* warnings of a kind per minute */
#define NBD_LOG_WINDOW_MS	60000
#define BUDGET_CLASSES		10	/* 64 KiB .. 32 MiB */

struct nbd_conn;
struct tls_creds;		/* nbd-tls.c: one generation of credentials */
struct tls_session;		/* nbd-tls.c: one connection's TLS session */

struct nbd_export {
	struct nbd_server *srv;
	struct secondary_disk *disk;
	char *name;
	char *description;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a counter moved, a connection left */
	struct nbd_conn *conns;		/* serving ones; protected by lock */
	/* Barrier waiters; changed under lock, read without it (see
	 * conn_mark_completed).
	 */
	atomic_uint waiters;
	bool stopping;			/* the server stops; lock */
	/* bounds */
	unsigned nserving;		/* authenticated conns; srv->lock */
};

struct nbd_buf {
	struct nbd_buf *next;
	size_t cap;
	max_align_t data[];
};

static inline struct nbd_buf *
nbd_buf_of(void *data)
{
	return (struct nbd_buf *)((char *)data - offsetof(struct nbd_buf, data));
}

/* The payload byte budget (nbd-bounds.c).  lock is a leaf. */
struct budget_turn;			/* nbd-bounds.c */

struct nbd_budget {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* bytes came back, or stop */
	size_t limit, conn_limit;	/* fixed at init */
	int wait_ms;			/* longest wait; NBD_WAIT_MS at init */
	size_t used;			/* in use + pooled; lock */
	size_t pooled;			/* lock */
	size_t peak;			/* of in use; lock */
	uint64_t waits;			/* takers that had to wait; lock */
	bool stopping;			/* lock */
	struct nbd_buf *pool[BUDGET_CLASSES];	/* free, per class; lock */
	struct budget_turn *line, **line_tail;	/* waiters, in turn; lock */
};

struct nbd_budget_stats {
	size_t used, pooled, peak;
	uint64_t waits;
};

struct nbd_ratelimit {
	pthread_mutex_t lock;		/* a leaf */
	const char *what;		/* "refused connections" */
	int64_t start;			/* of the window; 0: none; lock */
	unsigned count;			/* lines let through; lock */
	uint64_t suppressed;		/* lock */
};

struct nbd_server {
	struct secondary *r;
	int listen_fd;
	int wake[2];			/* wakes the accept thread */
	char *unix_path;		/* unlinked at free, or NULL */
	bool is_tcp;			/* TCP_NODELAY and keepalive for clients */
	char addr[160];			/* what we listen on, for status */
	size_t nexports;
	struct nbd_export *exports;
	struct nbd_export_info *infos;	/* parallel to exports */
	nbd_describe_fn *describe;	/* set before start, or NULL */
	void *describe_opaque;
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

	/* TLS and access control (nbd-tls.c, nbd-listen.c) */
	const struct config *cfg;	/* outlives the server */
	enum config_tls tls;
	pthread_mutex_t tls_lock;	/* a leaf: guards tls_creds only */
	struct tls_creds *tls_creds;	/* current generation; tls_lock */
	atomic_uint_fast64_t tls_sessions;	/* handshakes done, authorized */
	atomic_uint_fast64_t tls_handshake_failures;
	atomic_uint_fast64_t tls_authz_refused;
	atomic_uint_fast64_t tls_plaintext_refused;	/* connections */
	atomic_uint_fast64_t tls_reloads, tls_reload_failures;
	atomic_uint_fast64_t allow_refused;

	/* bounds: fixed at set-up, except where a lock is named */
	unsigned max_conns;		/* authenticated, per export */
	unsigned max_handshakes;	/* unauthenticated, all exports */
	unsigned max_per_addr;		/* the same, from one source */
	int io_timeout_ms;		/* no progress on a payload or reply */
	unsigned npending;		/* in the handshake; srv->lock */
	struct nbd_budget budget;
	struct nbd_ratelimit rl_refused, rl_evicted, rl_unclean;
	atomic_uint_fast64_t evicted;	/* handshakes closed to make room */
	atomic_uint_fast64_t dropped;	/* requests of a dead client */
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
	unsigned inflight;		/* reserved + queued + executing; lock */
	unsigned nworkers, idle;	/* lock */
	unsigned nqueued;		/* jobs at head..tail; lock */
	bool stop;			/* workers exit when idle; lock */
	pthread_t workers[NBD_WORKERS];	/* lock */

	pthread_mutex_t send_lock;	/* see the top of the file */

	/* TLS */
	/* Set by the connection thread during the handshake, before any
	 * worker exists; read by the transport afterwards.
	 */
	struct tls_session *tls;	/* NULL: plaintext */
	bool tls_refused;		/* a plaintext option got TLS_REQD */
	bool fenced;			/* GO refused: past failover */
	char peer[160];			/* for refusals: set at start */
	/* The client may use an export: TLS (when required) is up and its
	 * identity passed tls_authz; without required TLS, once it chose
	 * an export.  Set by the connection thread before serving.
	 */
	bool authenticated;

	/* bounds */
	bool pending;			/* counted in srv->npending; srv->lock */
	/* The source, for max_handshakes_per_address: the family and the
	 * IPv4 address (IPv4-mapped IPv6 too) or the IPv6 /64 prefix; zero
	 * for a unix socket.  Set before the connection is listed.
	 */
	unsigned char source[20];
	bool evicted;			/* closed to make room; srv->lock */
	atomic_bool hs_rx;		/* the client sent handshake bytes */
	int64_t born_ms;		/* accepted at (now_ms) */
	bool reserved;			/* reader: holds an in-flight slot */
	bool rcvtimeo;			/* reader: SO_RCVTIMEO is set */
	bool held_overflow;		/* reader: held requests were lost */
	size_t mem;			/* budget bytes held; budget.lock */
};

/* nbd-transport.c */
int64_t now_ms(void);
int sock_recv(void *ctx, void *buf, size_t len);
int sock_send(void *ctx, const struct iovec *iov, int iovcnt);

/* nbd-tls.c */
int tls_server_init(struct nbd_server *srv, const struct config *cfg);
void tls_server_release(struct nbd_server *srv);
int tls_server_reload(struct nbd_server *srv);
int tls_session_start(struct nbd_conn *c);	/* 0, or -1: close */
void tls_session_end(struct nbd_conn *c);
int tls_recv(struct tls_session *t, void *buf, size_t len,
	     int64_t deadline_ms);
int tls_send(struct tls_session *t, const struct iovec *iov, int iovcnt);
void tls_status(struct nbd_server *srv, FILE *fp);

/* nbd-conn.c */
void conn_spawn(struct nbd_server *srv, int fd,
		const struct sockaddr_storage *peer);
void conn_log_refused(struct nbd_server *srv, const char *why);

/* nbd-export.c */
int export_init(struct nbd_export *ex, struct nbd_server *srv,
		const struct config_disk *cd);
void export_release(struct nbd_export *ex);
void export_attach(struct nbd_export *ex, struct nbd_conn *c);
void export_detach(struct nbd_export *ex, struct nbd_conn *c);
int export_barrier(struct nbd_conn *c, int wait_ms);
void export_stop(struct nbd_export *ex);	/* ends every barrier wait */
void export_mark_completed(struct nbd_conn *c);

/* nbd-bounds.c (timed waits: core/deadline.h) */
size_t budget_charge(size_t len);	/* what a buffer of len costs */
void budget_init(struct nbd_budget *b, size_t limit, size_t conn_limit);
void budget_release(struct nbd_budget *b);
/* A buffer of at least len (<= NBD_MAX_PAYLOAD) bytes, charged to *held.
 * Over a bound it waits (wait), at most b->wait_ms (then ETIMEDOUT), or
 * fails with ENOMEM; ESHUTDOWN once stopped, ENOMEM if malloc fails.
 */
void *budget_get(struct nbd_budget *b, size_t *held, size_t len, bool wait);
void budget_put(struct nbd_budget *b, size_t *held, void *data);
void budget_stop(struct nbd_budget *b);	/* wakes and fails every wait */
void budget_stats(struct nbd_budget *b, struct nbd_budget_stats *st);
void ratelimit_init(struct nbd_ratelimit *rl, const char *what);
void ratelimit_release(struct nbd_ratelimit *rl);
/* true: log this one (now: now_ms()). */
bool ratelimit_allow(struct nbd_ratelimit *rl, int64_t now);
/* Logs "N more WHAT in the last minute" once the minute is over. */
void ratelimit_flush(struct nbd_ratelimit *rl, int64_t now);

/* nbd-listen.c */
int listen_open(struct nbd_server *srv, const struct config *cfg);
void *accept_main(void *arg);
/* "a.b.c.d:port", "[v6]:port" or "a unix socket client" into buf. */
void sockaddr_name(const struct sockaddr_storage *ss, char *buf, size_t len);
/* The peer of a connected socket, for a log line ("unix socket pid N"
 * where SO_PEERCRED tells).
 */
void peer_name(int fd, char *buf, size_t len);

#endif
