/* SPDX-License-Identifier: MIT */
/* Logging for every layer.  Lines go to stderr with a level prefix, or to
 * syslog once the daemon has detached.  errno is preserved across each call
 * so that callers can log and then return -1 with errno still set.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

/* Atomic: the daemon moves to syslog once it is ready, while threads
 * that started before (the NBD listener's) may be logging.
 */
static atomic_bool use_syslog;
static atomic_bool debug_on;
static atomic_bool quiet;

void
log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	use_syslog = true;
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
	if (use_syslog)
		syslog(prio, "%s", msg);
	else if (!quiet)
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
