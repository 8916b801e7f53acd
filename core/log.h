/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_LOG_H
#define COLOFS_LOG_H

#include <stdbool.h>

/* Where log lines go: stderr (the default, for -f and tests) or syslog
 * (a daemonized colofs).  log_use_syslog switches only when the syslog
 * socket (/dev/log) takes a connection, and returns whether it did:
 * without one (a container), lines stay on stderr rather than go
 * nowhere.  log_set_debug enables log_debug lines.
 */
bool log_use_syslog(const char *ident);
/* Lines go to fd (a log file opened O_APPEND), one write(2) each, with
 * the time and pid in front as syslog would add them.
 */
void log_use_fd(int fd);
void log_set_debug(bool on);

/* printf-style; %m works as in syslog (errno is read on entry). */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Silences stderr logging (unit tests that provoke errors on purpose). */
void log_set_quiet(bool on);

#endif
