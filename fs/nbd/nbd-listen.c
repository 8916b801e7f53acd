/* SPDX-License-Identifier: MIT */
/* The listening socket and the accept thread.  The address was parsed and
 * checked by the config (struct config_listen): here it is only bound.
 * A stale unix socket of an earlier run is replaced; any other file at
 * that path is kept and the listen fails.
 *
 * Access.  The unix socket gets listen_mode (0600 by default) and
 * listen_group between bind and listen: until listen() nobody can
 * connect, so its mode never depends on the umask, even for an instant.
 * A TCP client whose address is outside allow is closed right after
 * accept, before it costs a thread or sees a byte.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "handover.h"
#include "log.h"
#include "nbd-internal.h"

/* Is the peer inside one of cfg's allow networks?  Always, for a unix
 * socket or an empty list.  IPv4 clients of an IPv6 socket
 * (::ffff:a.b.c.d) are matched as IPv4.
 */
static bool
allowed(const struct config *cfg, const struct sockaddr_storage *ss)
{
	const uint8_t *a;
	int family = ss->ss_family;

	if (cfg->nallow == 0 || (family != AF_INET && family != AF_INET6))
		return true;
	if (family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
	} else {
		const struct in6_addr *a6 =
			&((const struct sockaddr_in6 *)ss)->sin6_addr;

		a = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			a += 12;
		}
	}
	for (size_t i = 0; i < cfg->nallow; i++) {
		const struct config_net *n = &cfg->allow_nets[i];
		unsigned full = n->bits / 8, rest = n->bits % 8;

		if (n->family != family)
			continue;
		if (memcmp(a, n->addr, full) != 0)
			continue;
		if (rest && ((a[full] ^ n->addr[full]) &
			     (uint8_t)(0xff << (8 - rest))))
			continue;
		return true;
	}
	return false;
}

void
sockaddr_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char hb[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, hb, sizeof hb);
		snprintf(buf, len, "%s:%u", hb, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
			(const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, hb, sizeof hb);
		snprintf(buf, len, "[%s]:%u", hb, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, len, "a unix socket client");
	}
}

void
peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct ucred cred;
	socklen_t cl = sizeof cred;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1) {
		snprintf(buf, len, "?");
		return;
	}
	if (ss.ss_family == AF_UNIX &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0) {
		snprintf(buf, len, "unix socket pid %d", (int)cred.pid);
		return;
	}
	sockaddr_name(&ss, buf, len);
}

void *
accept_main(void *arg)
{
	struct nbd_server *srv = arg;
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};
		struct sockaddr_storage ss;
		socklen_t sl;
		int fd;
		int64_t now = now_ms();

		/* Every second: say how many warnings the last minute
		 * swallowed (nbd-bounds.c).
		 */
		ratelimit_flush(&srv->rl_refused, now);
		ratelimit_flush(&srv->rl_evicted, now);
		ratelimit_flush(&srv->rl_unclean, now);
		if (poll(pfd, 2, 1000) == -1) {
			if (errno == EINTR)
				continue;
			log_error("nbd: poll: %m");
			break;
		}
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		sl = sizeof ss;
		fd = accept4(srv->listen_fd, (struct sockaddr *)&ss, &sl,
			     SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == ECONNABORTED || errno == EPROTO)
				continue;
			/* EMFILE and the like: back off, do not spin. */
			log_error("nbd: accept: %m");
			poll(NULL, 0, 100);
			continue;
		}
		if (!allowed(srv->cfg, &ss)) {
			char peer[160];

			atomic_fetch_add(&srv->allow_refused, 1);
			sockaddr_name(&ss, peer, sizeof peer);
			secondary_record_error(srv->r, "nbd: refused %s: not in "
					     "allow (add its network to allow "
					     "= in %s)", peer, srv->cfg->path);
			if (ratelimit_allow(&srv->rl_refused, now))
				log_warn("nbd: refusing a connection: %s is not "
					 "in allow (add its network to allow = "
					 "in %s)", peer, srv->cfg->path);
			close(fd);
			continue;
		}
		conn_spawn(srv, fd, &ss);
	}
	return NULL;
}

static int
listen_unix(struct nbd_server *srv, const char *path, mode_t mode, gid_t gid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof sa.sun_path) {
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
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == -1) {
		log_error("nbd: listen on unix:%s: %m", path);
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	/* Not connectable before listen(): set its mode and group first,
	 * never through a link swapped in since the bind.
	 */
	if (fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) == -1 ||
	    (gid != (gid_t)-1 && lchown(path, (uid_t)-1, gid) == -1) ||
	    listen(fd, SOMAXCONN) == -1) {
		log_error("nbd: listen on unix:%s: %m", path);
		int saved = errno;

		close(fd);
		unlink(path);
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
	snprintf(srv->addr, sizeof srv->addr, "unix:%s", path);
	return fd;
}

static int
listen_inet(struct nbd_server *srv, const char *host, const char *port)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	}, *res, *ai;
	int fd = -1, rc, saved = 0;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		errno = EINVAL;
		log_error("nbd: listen: %s port %s: %s", host, port,
			  gai_strerror(rc));
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
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
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
		log_error("nbd: listen on %s port %s: %m", host, port);
		return -1;
	}

	/* Say where we really are (port 0 picks one). */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
		sockaddr_name(&ss, srv->addr, sizeof srv->addr);
	return fd;
}

int
listen_open(struct nbd_server *srv, const struct config *cfg)
{
	const struct config_listen *l = &cfg->listen_addr;
	int fd;

	srv->is_tcp = l->kind == CONFIG_LISTEN_TCP;
	/* A holder's socket (holder.c): bound already, and not ours to
	 * unlink (unix_path stays NULL).
	 */
	fd = handover_take_fd("nbd");
	if (fd != -1) {
		if (l->kind == CONFIG_LISTEN_UNIX)
			snprintf(srv->addr, sizeof srv->addr, "unix:%.150s",
				 l->path);
		else
			snprintf(srv->addr, sizeof srv->addr, "%.120s:%s",
				 l->host, l->port);
		return fd;
	}
	if (l->kind == CONFIG_LISTEN_UNIX)
		return listen_unix(srv, l->path, cfg->listen_mode,
				   cfg->listen_gid);
	return listen_inet(srv, l->host, l->port);
}

int
nbd_listen_bind(const struct config *cfg)
{
	struct nbd_server tmp;
	int fd;

	memset(&tmp, 0, sizeof tmp);
	fd = listen_open(&tmp, cfg);
	free(tmp.unix_path);
	return fd;
}
