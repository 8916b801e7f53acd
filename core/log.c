/* SPDX-License-Identifier: MIT */
/* Logging for every layer.  Lines go to stderr with a level prefix, or to
 * syslog once the daemon has detached; where no syslog daemon listens, to
 * the file the daemon names (log_use_fd).  errno is preserved across each call
 * so that callers can log and then return -1 with errno still set.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Atomic: the daemon moves to syslog once it is ready, while threads
 * that started before (the NBD listener's) may be logging.
 */
static atomic_bool use_syslog;
static atomic_int log_fd = -1;
static atomic_bool debug_on;
static atomic_bool quiet;

/* Whether a syslog daemon listens on /dev/log (glibc's syslog would
 * drop every line without a word if not).
 */
static bool
syslog_reachable(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ok;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", "/dev/log");
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return false;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	if (!ok) {
		/* rsyslog and journald listen on a datagram socket; some
		 * others on a stream one.
		 */
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1)
			return false;
		ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	}
	close(fd);
	return ok;
}

void
log_use_fd(int fd)
{
	atomic_store(&log_fd, fd);
}

bool
log_use_syslog(const char *ident)
{
	if (!syslog_reachable()) {
		log_warn("no syslog daemon on /dev/log");
		return false;
	}
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	use_syslog = true;
	return true;
}

void
log_set_debug(bool on)
{
	debug_on = on;
}

void
log_set_quiet(bool on)
{
	quiet = on;
}

static void
vlog(int prio, const char *level, const char *fmt, va_list ap)
{
	int saved = errno;
	char msg[1024];

	/* vsnprintf in glibc expands %m from errno, as syslog does. */
	errno = saved;
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (use_syslog) {
		syslog(prio, "%s", msg);
	} else if (atomic_load(&log_fd) != -1) {
		char line[1200], when[32];
		struct tm tm;
		time_t now = time(NULL);
		int n;

		if (!gmtime_r(&now, &tm) ||
		    !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm))
			when[0] = '\0';
		n = snprintf(line, sizeof line, "%s colofs[%d]: %s%s\n", when,
			     (int)getpid(), level, msg);
		if (n > (int)sizeof line - 1)
			n = (int)sizeof line - 1;
		/* A failed write has nowhere left to be reported. */
		(void)!write(log_fd, line, (size_t)n);
	} else if (!quiet)
		fprintf(stderr, "colofs: %s%s\n", level, msg);
	errno = saved;
}

#define DEFINE_LOG(fn, prio, level)					\
	void								\
	fn(const char *fmt, ...)					\
	{								\
		va_list ap;						\
		va_start(ap, fmt);					\
		vlog(prio, level, fmt, ap);				\
		va_end(ap);						\
	}

DEFINE_LOG(log_error, LOG_ERR, "error: ")
DEFINE_LOG(log_warn, LOG_WARNING, "warning: ")
DEFINE_LOG(log_info, LOG_INFO, "")

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!debug_on)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, "debug: ", fmt, ap);
	va_end(ap);
}
