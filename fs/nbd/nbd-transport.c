/* SPDX-License-Identifier: MIT */
/* Bytes in and out of a connection: the recv/send pair that nbd-proto.c
 * drives through struct nbd_io.  recv honours the handshake deadline
 * (conn->deadline_ms); send never raises SIGPIPE.  The protocol and
 * connection code see only this pair, whatever carries the bytes: the
 * plain socket, or once STARTTLS succeeded the connection's TLS session
 * (conn->tls, nbd-tls.c).  This is the one place that tells them apart.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "nbd-internal.h"

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
sock_recv(void *ctx, void *buf, size_t len)
{
	struct nbd_conn *c = ctx;
	uint8_t *p = buf;

	if (c->tls)
		return tls_recv(c->tls, buf, len, c->deadline_ms);
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
			/* bounds: a client that talks is evicted last */
			if (n > 0)
				atomic_store_explicit(&c->hs_rx, true,
						      memory_order_relaxed);
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

int
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
	if (c->tls)
		return tls_send(c->tls, iov_in, iovcnt);
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
