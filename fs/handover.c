/* SPDX-License-Identifier: MIT */
/* The worker's half of the hand-over (handover.h): the fds a holder or
 * systemd's fd store passed to this process, the state shared with the
 * holder, and the planned-restart flag.  The FUSE file system and the NBD
 * listener call it; it calls neither (fs/holder.c is the other half).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "daemon.h"
#include "handover.h"
#include "log.h"

struct handed {
	bool parsed;
	size_t n;
	int fd[HANDOVER_MAX_FDS];
	char name[HANDOVER_MAX_FDS][32];
};

static struct handed handed;
static struct holder_state *state;
static atomic_bool restart_requested;

/* Under systemd a worker dies with its holder: the unit's restart then
 * starts a holder with the stored fds, which must not find a worker of
 * the last one still serving (requests would run twice once the new one
 * asks for a resend).  Without systemd nobody would restart anything, so
 * there the worker serves on.
 */
static void
follow_holder(void)
{
	const char *pid = getenv("COLOFS_HOLDER_PID");
	bool worker = false;

	for (size_t i = 0; i < handed.n; i++)
		worker |= strcmp(handed.name[i], "ready") == 0;
	if (!worker || !pid || !getenv("NOTIFY_SOCKET"))
		return;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != (pid_t) strtol(pid, NULL, 10))
		raise(SIGKILL); /* it died before prctl */
}

/* Reads LISTEN_FDS once (sd_listen_fds_with_names), and unsets it, so
 * that nothing this process starts believes the fds are its own.
 */
static void
parse_handed(void)
{
	const char *nfds, *pid, *names;
	char *end, *copy = NULL, *tok, *save = NULL;
	long n;
	size_t i;

	if (handed.parsed)
		return;
	handed.parsed = true;
	nfds = getenv("LISTEN_FDS");
	pid = getenv("LISTEN_PID");
	names = getenv("LISTEN_FDNAMES");
	if (!nfds || !pid || strtol(pid, NULL, 10) != (long) getpid())
		return;
	n = strtol(nfds, &end, 10);
	if (*end || n <= 0 || n > HANDOVER_MAX_FDS)
		return;
	if (names)
		copy = strdup(names);
	tok = copy ? strtok_r(copy, ":", &save) : NULL;
	for (i = 0; i < (size_t) n; i++) {
		handed.fd[i] = LISTEN_FDS_START + (int) i;
		fcntl(handed.fd[i], F_SETFD, FD_CLOEXEC);
		snprintf(handed.name[i], sizeof handed.name[i], "%s",
			 tok ? tok : "unknown");
		tok = tok ? strtok_r(NULL, ":", &save) : NULL;
	}
	handed.n = (size_t) n;
	free(copy);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	follow_holder();
}

static int
find_fd(const char *name, bool take)
{
	int fd;

	parse_handed();
	for (size_t i = 0; i < handed.n; i++) {
		if (handed.fd[i] >= 0 && strcmp(handed.name[i], name) == 0) {
			fd = handed.fd[i];
			if (take)
				handed.fd[i] = -1;
			return fd;
		}
	}
	return -1;
}

bool
handover_is_worker(void)
{
	return find_fd("ready", false) >= 0;
}

bool
handover_has_mount(void)
{
	return find_fd("fuse", false) >= 0;
}

int
handover_take_fd(const char *name)
{
	return find_fd(name, true);
}

struct holder_state *
handover_state(void)
{
	struct holder_state *s;
	int fd;

	if (state)
		return state;
	fd = handover_take_fd("state");
	if (fd < 0)
		return NULL;
	s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s == MAP_FAILED) {
		log_error("holder: mmap of the state: %m");
		return NULL;
	}
	if (s->magic != HOLDER_STATE_MAGIC ||
	    s->version != HOLDER_STATE_VERSION) {
		log_error("holder: the state has version %u, not %u",
			  s->version, HOLDER_STATE_VERSION);
		munmap(s, sizeof *s);
		return NULL;
	}
	state = s;
	return state;
}

void
handover_ready(bool foreground)
{
	int fd = handover_take_fd("ready");
	char c = 'R';

	if (fd < 0)
		return;
	if (!foreground)
		daemon_quiet();
	if (write(fd, &c, 1) != 1)
		log_warn("holder: telling it we are ready: %m");
	close(fd);
}

void
handover_request_restart(void)
{
	atomic_store(&restart_requested, true);
}

bool
handover_restart_requested(void)
{
	return atomic_load(&restart_requested);
}

int
handover_restart_check(const char **why)
{
	if (handover_state() == NULL) {
		*why = "restart: colofs runs without a holder (start it "
		       "with --holder): a restart would unmount the disks";
		errno = EOPNOTSUPP;
		return -1;
	}
	return 0;
}

int
handover_exit_status(int rc)
{
	return handover_restart_requested() ? HOLDER_EXIT_RESTART : rc;
}

void
handover_test_hang(const char *var)
{
	const char *path = getenv(var);

	if (path && unlink(path) == 0) {
		log_info("test hook %s: this request is never answered", var);
		for (;;)
			pause();
	}
}

bool
handover_test_once(const char *var)
{
	const char *path = getenv(var);

	if (path == NULL || unlink(path) != 0)
		return false;
	log_info("test hook %s: this request fails as told", var);
	return true;
}

void
handover_test_hold(const char *var)
{
	const char *path = getenv(var);
	char held[4096];

	if (path == NULL ||
	    snprintf(held, sizeof held, "%s.held", path) >= (int)sizeof held ||
	    rename(path, held) != 0)
		return;
	log_info("test hook %s: this request waits until %s is removed", var,
		 held);
	while (access(held, F_OK) == 0)
		usleep(10000);
}

void
handover_status(void *opaque, FILE *fp)
{
	struct holder_state *s = handover_state();

	(void) opaque;
	fprintf(fp, "pid=%ld\n", (long) getpid());
	fprintf(fp, "restarts=%u\n", s ? atomic_load(&s->restarts) : 0);
	fprintf(fp, "last_restart_ms=%llu\n",
		s ? (unsigned long long) atomic_load(&s->last_restart_ms) : 0);
}
