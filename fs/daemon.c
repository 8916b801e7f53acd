/* SPDX-License-Identifier: MIT */
/* Daemonizing so that "colofs -c FILE" returns only when the service is up.
 *
 *   parent                     child (setsid)
 *   fork ──────────────────────▶ opens images, mounts, starts the listener
 *   read(pipe) blocks            ready: writes one byte, closes the pipe
 *   exit 0 on the byte           serves until unmounted or signalled
 *   on EOF: waitpid, exit with the child's status
 *
 * The child writes errors to the inherited stderr until it is ready, so a
 * failed start prints its reason where the user looks, and the parent's
 * non-zero exit comes after the child has cleaned up (unmounted) and exited.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "durable.h"
#include "fdio.h"
#include "log.h"

static int ready_fd = -1;	/* the child's end of the pipe */
static char *fallback_dir, *fallback_name;	/* the log without syslog */

void
daemon_log_fallback(const char *state_dir, const char *mountpoint)
{
	char *stem = durable_stem(mountpoint);

	free(fallback_dir);
	free(fallback_name);
	fallback_dir = strdup(state_dir);
	fallback_name = NULL;
	if (stem == NULL || asprintf(&fallback_name, "%s.log", stem) == -1)
		fallback_name = NULL;
	free(stem);
}

/* No syslog daemon: STATE_DIR/ESCAPED.log, appended, said where. */
static void
use_log_file(void)
{
	int dfd, fd;

	if (fallback_dir == NULL || fallback_name == NULL) {
		log_warn("no log file either: the daemon's log is lost "
			 "(run with -f to keep it on stderr)");
		return;
	}
	dfd = fdio_dir_open(fallback_dir);
	fd = dfd == -1 ? -1 : fdio_open_or_create_at(dfd, fallback_name,
						     O_WRONLY | O_APPEND,
						     0600);
	if (fd == -1) {
		log_warn("log file %s/%s: %m: the daemon's log is lost",
			 fallback_dir, fallback_name);
	} else {
		log_warn("logging to %s/%s", fallback_dir, fallback_name);
		log_use_fd(fd);
	}
	if (dfd != -1)
		close(dfd);
}

static void __attribute__((noreturn))
parent_wait(pid_t child, int fd)
{
	char c;
	ssize_t n;
	int st;

	do
		n = read(fd, &c, 1);
	while (n == -1 && errno == EINTR);
	if (n == 1)
		_exit(0);
	/* The child exited (or crashed) before it was ready. */
	while (waitpid(child, &st, 0) == -1) {
		if (errno != EINTR) {
			perror("colofs: waitpid");
			_exit(1);
		}
	}
	if (WIFEXITED(st))
		_exit(WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
	fprintf(stderr, "colofs: the daemon died during start-up (signal %d)\n",
		WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	_exit(1);
}

int
daemon_start(void)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) == -1) {
		log_error("pipe: %m");
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid == -1) {
		log_error("fork: %m");
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		parent_wait(pid, p[0]);
	}
	close(p[0]);
	ready_fd = p[1];
	/* A new session: the terminal's ^C and hangup no longer reach us. */
	if (setsid() == -1)
		log_warn("setsid: %m");
	return 0;
}

void
daemon_quiet(void)
{
	int fd;

	/* Without a syslog daemon (a container), a file in state_dir
	 * rather than nowhere.
	 */
	if (!log_use_syslog("colofs"))
		use_log_file();
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

void
daemon_ready(void)
{
	char c = 'R';

	if (ready_fd == -1)
		return;
	daemon_quiet();
	if (write(ready_fd, &c, 1) != 1)
		log_warn("telling the parent we are ready: %m");
	close(ready_fd);
	ready_fd = -1;
}
