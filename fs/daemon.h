/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_DAEMON_H
#define COLOFS_DAEMON_H

/* Daemonizing with a readiness pipe.
 *
 * daemon_start forks.  The parent never returns from it: it waits until
 * the child calls daemon_ready (exit 0) or exits (the parent exits with the
 * child's status).  Until it is ready the child keeps the parent's stderr,
 * so its error messages reach the user who started it.
 * Call it before any thread exists.  0 in the child, -1 with errno if the
 * fork failed (no child then).
 */
int daemon_start(void);

/* In the child: tells the parent that the service is up, moves logging to
 * syslog and points stdin, stdout and stderr at /dev/null.  Without a
 * syslog daemon listening on /dev/log (a container), logging goes to the
 * file that daemon_log_fallback named: STATE_DIR/ESCAPED.log (ESCAPED:
 * the mountpoint as systemd-escape --path writes it), appended.
 */
void daemon_ready(void);
/* Logging to syslog, stdin, stdout and stderr to /dev/null: what
 * daemon_ready does, for a process that tells its parent otherwise.
 */
void daemon_quiet(void);
void daemon_log_fallback(const char *state_dir, const char *mountpoint);

#endif
