/* SPDX-License-Identifier: MIT */
/* The NBD server: the exports, the listening socket, every connection;
 * set-up, shutdown and the status lines.
 *
 * Locks, in order: srv->lock > ex->lock > conn->lock (see nbd-conn.c).
 * srv->lock guards the connection list, nconns, stopping and next_id.
 * The counters for the status are atomics.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nbd-internal.h"

struct nbd_server *
nbd_server_new(struct secondary *r, const struct config *cfg)
{
	struct nbd_server *srv;
	int saved;

	srv = calloc(1, sizeof *srv);
	if (srv == NULL)
		return NULL;
	srv->r = r;
	srv->listen_fd = -1;
	srv->wake[0] = srv->wake[1] = -1;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	/* bounds */
	srv->max_conns = cfg->max_connections;
	srv->max_handshakes = cfg->max_handshakes;
	srv->max_per_addr = cfg->max_handshakes_per_address;
	srv->io_timeout_ms = (int)(cfg->io_timeout * 1000);
	budget_init(&srv->budget, cfg->nbd_memory_limit,
		    cfg->nbd_conn_memory_limit);
	ratelimit_init(&srv->rl_refused, "refused connections");
	ratelimit_init(&srv->rl_evicted, "handshakes closed to make room");
	ratelimit_init(&srv->rl_unclean, "unclean disconnects");
	pthread_mutex_init(&srv->tls_lock, NULL);

	srv->exports = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof *srv->exports);
	srv->infos = calloc(cfg->ndisks ? cfg->ndisks : 1, sizeof *srv->infos);
	if (srv->exports == NULL || srv->infos == NULL)
		goto fail;
	for (size_t i = 0; i < cfg->ndisks; i++) {
		struct nbd_export *ex = &srv->exports[i];

		if (export_init(ex, srv, &cfg->disks[i]) == -1)
			goto fail;
		srv->nexports++;
		srv->infos[i] = (struct nbd_export_info){
			.name = ex->name,
			.description = ex->description,
			.size = secondary_disk_size(ex->disk),
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
	if (tls_server_init(srv, cfg) == -1)
		goto fail;
	srv->listen_fd = listen_open(srv, cfg);
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

void
nbd_server_set_describe(struct nbd_server *srv, nbd_describe_fn *fn,
			void *opaque)
{
	srv->describe = fn;
	srv->describe_opaque = opaque;
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
	budget_stop(&srv->budget);	/* no reader or worker waits for bytes */
	for (size_t i = 0; i < srv->nexports; i++)
		export_stop(&srv->exports[i]);	/* nor for a barrier */
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

	for (size_t i = 0; i < srv->nexports; i++)
		export_release(&srv->exports[i]);
	free(srv->exports);
	free(srv->infos);
	if (srv->wake[0] != -1)
		close(srv->wake[0]);
	if (srv->wake[1] != -1)
		close(srv->wake[1]);
	free(srv->unix_path);
	budget_release(&srv->budget);
	ratelimit_release(&srv->rl_refused);
	ratelimit_release(&srv->rl_evicted);
	ratelimit_release(&srv->rl_unclean);
	tls_server_release(srv);
	pthread_mutex_destroy(&srv->tls_lock);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}

void
nbd_server_status(void *opaque, FILE *fp)
{
	struct nbd_server *srv = opaque;

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

	/* bounds: the limits, then what they caught */
	struct nbd_budget_stats st;

	budget_stats(&srv->budget, &st);
	fprintf(fp, "nbd.max_connections=%u\n", srv->max_conns);
	fprintf(fp, "nbd.max_handshakes=%u\n", srv->max_handshakes);
	fprintf(fp, "nbd.max_handshakes_per_address=%u\n", srv->max_per_addr);
	fprintf(fp, "nbd.handshake_timeout_ms=%d\n", NBD_HANDSHAKE_MS);
	fprintf(fp, "nbd.io_timeout_ms=%d\n", srv->io_timeout_ms);
	fprintf(fp, "nbd.memory_limit=%zu\n", srv->budget.limit);
	fprintf(fp, "nbd.conn_memory_limit=%zu\n", srv->budget.conn_limit);
	fprintf(fp, "nbd.memory_used=%zu\n", st.used);
	fprintf(fp, "nbd.memory_pooled=%zu\n", st.pooled);
	fprintf(fp, "nbd.memory_peak=%zu\n", st.peak);
	fprintf(fp, "nbd.memory_waits=%llu\n", (unsigned long long)st.waits);
	fprintf(fp, "nbd.evicted=%llu\n",
		(unsigned long long)atomic_load(&srv->evicted));
	fprintf(fp, "nbd.dropped=%llu\n",
		(unsigned long long)atomic_load(&srv->dropped));
	tls_status(srv, fp);
}

int
nbd_server_reload(struct nbd_server *srv)
{
	return tls_server_reload(srv);
}
