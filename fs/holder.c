/* SPDX-License-Identifier: MIT */
/* The holder: the process that keeps the kernel's side of live restart
 * (handover.h has the picture and the exit codes; handover.c is the
 * worker's half).
 *
 * Why a holder.  The kernel keeps a FUSE connection as long as one open
 * file of it exists; the mount and the VM's open disk files live on it.
 * When the only process holding /dev/fuse dies, the kernel aborts the
 * connection and every open file answers ENOTCONN.  The holder keeps a
 * copy of that file, and of the NBD listening socket, in a process that
 * does no I/O at all: it mounts, binds, starts the worker, and then only
 * waits for signals and for the worker's death.  It has nothing to crash
 * on.  It must not hold accepted NBD connections: a half-read NBD stream
 * cannot be resumed, and QEMU reconnects by itself.
 *
 * Order on a crash.  The holder reaps the dead worker before it starts the
 * next one: the new worker asks the kernel to resend the requests the old
 * one had read, and a request still being served by a live old worker
 * would run twice.
 *
 * The hand-over uses systemd's convention (LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES, fds from 3 on), so that the worker's side is the same
 * under the holder and under systemd's fd store.
 *
 * Signals.  The holder takes SIGTERM, SIGINT, SIGHUP and SIGCHLD through a
 * signalfd and forwards the first three to the worker: a stop is the
 * worker's decision (it waits for the VM's disk files to close), and it
 * says so by exiting 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "fuse/fusefs.h"
#include "holder.h"
#include "log.h"
#include "nbd/nbd.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* ---- holder side ---- */

struct holder {
	const struct config *cfg;
	bool foreground;
	char **argv;
	char exe[PATH_MAX];
	void *mount; /* fusefs_hold's */
	int fds[HANDOVER_MAX_FDS];
	const char *names[HANDOVER_MAX_FDS];
	size_t nfds;
	struct holder_state *st;
	int sfd; /* signalfd */
	pid_t worker;
	int ready_rd; /* the worker's readiness pipe */
	bool adopted; /* the fds came from systemd */
};

/* Moves fds to 3, 4, ... in a forked child, without clobbering one with
 * another on the way, and execs the worker.  Async-signal-safe calls only
 * after the fork, but setenv: the holder has no other thread.
 */
static void __attribute__((noreturn))
exec_worker(struct holder *h, int ready_wr)
{
	int tmp[HANDOVER_MAX_FDS + 1];
	char buf[256], num[32];
	size_t i, n = h->nfds;
	sigset_t none;

	for (i = 0; i < n; i++)
		tmp[i] = fcntl(h->fds[i], F_DUPFD_CLOEXEC, 64);
	tmp[n] = fcntl(ready_wr, F_DUPFD_CLOEXEC, 64);
	for (i = 0; i <= n; i++) {
		if (tmp[i] < 0 ||
		    dup2(tmp[i], LISTEN_FDS_START + (int) i) == -1)
			_exit(127);
	}
	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		strcat(buf, h->names[i]);
		strcat(buf, ":");
	}
	strcat(buf, "ready");
	snprintf(num, sizeof num, "%zu", n + 1);
	setenv("LISTEN_FDS", num, 1);
	snprintf(num, sizeof num, "%ld", (long) getpid());
	setenv("LISTEN_PID", num, 1);
	setenv("LISTEN_FDNAMES", buf, 1);
	snprintf(num, sizeof num, "%ld", (long) getppid());
	setenv("COLOFS_HOLDER_PID", num, 1);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* A process group of its own: a terminal's ^C (or a signal to the
	 * holder's group) reaches the holder only, which passes it on once;
	 * twice would force a stop under the VM.
	 */
	setpgid(0, 0);
	execv(h->exe, h->argv);
	/* The log may be syslog here: say it there. */
	log_error("holder: exec %s: %m", h->exe);
	_exit(127);
}

static int
spawn(struct holder *h)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) == -1) {
		log_error("holder: pipe: %m");
		return -1;
	}
	pid = fork();
	if (pid == -1) {
		log_error("holder: fork: %m");
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0)
		exec_worker(h, p[1]);
	close(p[1]);
	if (h->ready_rd != -1)
		close(h->ready_rd);
	h->ready_rd = p[0];
	h->worker = pid;
	log_info("holder: worker %ld started", (long) pid);
	return 0;
}

static void
describe(int st, char *buf, size_t size)
{
	if (WIFEXITED(st))
		snprintf(buf, size, "exited %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "killed by SIG%s",
			 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st))
						    : "?");
	else
		snprintf(buf, size, "status %d", st);
}

/* Waits for the worker's readiness byte or its death.  1 ready, 0 died
 * (*st set), -1 on a holder error, -2 on a stop signal with no worker.
 * Signals are forwarded meanwhile.
 */
static int
wait_event(struct holder *h, int *st, bool *ready)
{
	struct pollfd pf[2];
	struct signalfd_siginfo si;
	char c;
	pid_t got;

	for (;;) {
		pf[0] = (struct pollfd) { .fd = h->sfd, .events = POLLIN };
		pf[1] = (struct pollfd) { .fd = h->ready_rd, .events = POLLIN };
		if (poll(pf, h->ready_rd != -1 ? 2 : 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			log_error("holder: poll: %m");
			return -1;
		}
		if (h->ready_rd != -1 && pf[1].revents) {
			ssize_t n = read(h->ready_rd, &c, 1);

			close(h->ready_rd);
			h->ready_rd = -1;
			if (n == 1) {
				*ready = true;
				return 1;
			}
		}
		if (!(pf[0].revents & POLLIN))
			continue;
		if (read(h->sfd, &si, sizeof si) != sizeof si)
			continue;
		if (si.ssi_signo != SIGCHLD) {
			if (h->worker > 0)
				kill(h->worker, (int) si.ssi_signo);
			else if (si.ssi_signo != SIGHUP)
				return -2; /* a stop, and nobody to ask */
			continue;
		}
		got = waitpid(h->worker, st, WNOHANG);
		if (got == h->worker) {
			h->worker = -1;
			return 0;
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}

/* Waits ms, or less if a stop signal comes (-1).  SIGHUP and SIGCHLD
 * (no worker runs) are dropped.
 */
static int
pause_ms(struct holder *h, unsigned ms)
{
	uint64_t end = now_ns() + (uint64_t) ms * 1000000u, now;
	struct pollfd pf = { .fd = h->sfd, .events = POLLIN };
	struct signalfd_siginfo si;

	while ((now = now_ns()) < end) {
		if (poll(&pf, 1, (int) ((end - now) / 1000000u) + 1) <= 0)
			continue;
		if (read(h->sfd, &si, sizeof si) == sizeof si &&
		    (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT ||
		     si.ssi_signo == SIGQUIT))
			return -1;
	}
	return 0;
}

static int map_state(struct holder *h, int fd, bool fresh);

static int
make_state(struct holder *h)
{
	int fd = memfd_create("colofs-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd == -1 || ftruncate(fd, sizeof *h->st) == -1) {
		log_error("holder: memfd: %m");
		if (fd != -1)
			close(fd);
		return -1;
	}
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	return map_state(h, fd, true);
}

/* Maps the state memfd fd (a new one: initialised) and lists it. */
static int
map_state(struct holder *h, int fd, bool fresh)
{
	h->st = mmap(NULL, sizeof *h->st, PROT_READ | PROT_WRITE, MAP_SHARED,
		     fd, 0);
	if (h->st == MAP_FAILED) {
		log_error("holder: mmap: %m");
		h->st = NULL;
		close(fd);
		return -1;
	}
	if (fresh) {
		h->st->magic = HOLDER_STATE_MAGIC;
		h->st->version = HOLDER_STATE_VERSION;
	} else if (h->st->magic != HOLDER_STATE_MAGIC ||
		   h->st->version != HOLDER_STATE_VERSION) {
		log_error("holder: the stored state has version %u, not %u",
			  h->st->version, HOLDER_STATE_VERSION);
		close(fd);
		return -1;
	}
	h->fds[h->nfds] = fd;
	h->names[h->nfds++] = "state";
	return 0;
}

/* The fds systemd kept for us (FDSTORE) after the last holder died: the
 * mount lives on, and the next worker resumes it.  0 adopted, 1 none,
 * -1 unusable.
 */
static int
adopt(struct holder *h)
{
	int fuse = handover_take_fd("fuse"), mem, nbd;

	if (fuse < 0)
		return 1;
	mem = handover_take_fd("state");
	if (mem < 0) {
		log_error("holder: the fd store has the FUSE file but not the "
			  "state: unmount %s and start again",
			  h->cfg->mountpoint);
		close(fuse);
		return -1;
	}
	if (map_state(h, mem, false) == -1) {
		close(fuse);
		return -1;
	}
	nbd = handover_take_fd("nbd");
	if (nbd < 0 && h->cfg->listen)
		nbd = nbd_listen_bind(h->cfg);
	if (nbd >= 0) {
		h->fds[h->nfds] = nbd;
		h->names[h->nfds++] = "nbd";
	}
	h->fds[h->nfds] = fuse;
	h->names[h->nfds++] = "fuse";
	h->adopted = true;
	atomic_fetch_add(&h->st->restarts, 1);
	atomic_store(&h->st->died_ns, now_ns());
	log_info("holder: resuming %s from the fd store", h->cfg->mountpoint);
	return 0;
}

static int
setup(struct holder *h)
{
	sigset_t set;
	ssize_t n;
	int fd, rc;

	n = readlink("/proc/self/exe", h->exe, sizeof h->exe - 1);
	if (n <= 0) {
		log_error("holder: /proc/self/exe: %m");
		return -1;
	}
	h->exe[n] = '\0';
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	h->sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (h->sfd == -1) {
		log_error("holder: signalfd: %m");
		return -1;
	}
	rc = adopt(h);
	if (rc <= 0)
		return rc;
	if (make_state(h) == -1)
		return -1;
	if (h->cfg->listen) {
		fd = nbd_listen_bind(h->cfg);
		if (fd == -1)
			return -1;
		h->fds[h->nfds] = fd;
		h->names[h->nfds++] = "nbd";
	}
	h->mount = fusefs_hold(h->cfg, &fd);
	if (!h->mount)
		return -1;
	h->fds[h->nfds] = fd;
	h->names[h->nfds++] = "fuse";
	/* Under systemd (FileDescriptorStoreMax=), a copy of each: if this
	 * holder dies, the unit's restart hands them to the next one.
	 */
	for (size_t i = 0; i < h->nfds; i++) {
		rc = sd_fdstore(h->fds[i], h->names[i]);
		if (rc == -1)
			log_warn("holder: FDSTORE of %s: %m", h->names[i]);
		else if (rc == 0)
			log_debug("holder: %s is in systemd's fd store",
				  h->names[i]);
	}
	return 0;
}

int
holder_main(const struct config *cfg, bool foreground, char **argv)
{
	struct holder h = {
		.cfg = cfg,
		.foreground = foreground,
		.argv = argv,
		.sfd = -1,
		.worker = -1,
		.ready_rd = -1,
	};
	unsigned backoff = 0, quick = 0;
	uint64_t started = 0;
	bool ready = false, served = false;
	char how[64];
	int st = 0, rc = 1, ev;

	if (setup(&h) == -1)
		goto out;
	for (;;) {
		started = now_ns();
		if (spawn(&h) == -1)
			goto out;
		ready = false;
		while ((ev = wait_event(&h, &st, &ready)) == 1) {
			if (!served) {
				if (!foreground)
					daemon_ready();
				log_info("holder %ld: worker %ld serves %s",
					 (long) getpid(), (long) h.worker,
					 cfg->mountpoint);
			}
			served = true;
		}
		if (ev < 0)
			goto out;
		describe(st, how, sizeof how);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			log_info("holder: worker %s: stopping", how);
			rc = 0;
			goto out;
		}
		if (!served) {
			log_error("holder: the first worker %s before it was "
				  "ready",
				  how);
			rc = WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st)
							      : 1;
			goto out;
		}
		atomic_store(&h.st->died_ns, now_ns());
		atomic_fetch_add(&h.st->restarts, 1);
		if (WIFEXITED(st) && WEXITSTATUS(st) == HOLDER_EXIT_RESTART) {
			log_info("holder: planned restart");
			quick = 0;
			continue;
		}
		/* Workers that keep dying within a second (a bad binary, a
		 * request that kills every worker it is resent to): slow
		 * down, from the fourth in a row.
		 */
		quick = now_ns() - started < 1000000000ull ? quick + 1 : 0;
		backoff = 0;
		if (quick > 3)
			backoff = quick - 3 > 6 ? BACKOFF_MAX_MS
						: BACKOFF_MIN_MS << (quick - 4);
		if (backoff > BACKOFF_MAX_MS)
			backoff = BACKOFF_MAX_MS;
		log_error("holder: worker %s; starting another%s", how,
			  backoff ? " after a pause" : "");
		if (backoff && pause_ms(&h, backoff) == -1) {
			log_info("holder: stop signal while no worker runs: "
				 "stopping");
			rc = 1;
			goto out;
		}
	}
out:
	if (h.worker > 0) {
		kill(h.worker, SIGKILL);
		waitpid(h.worker, NULL, 0);
	}
	fusefs_hold_release(h.mount);
	for (size_t i = 0; i < h.nfds; i++) {
		if (strcmp(h.names[i], "fuse") != 0 || h.adopted)
			close(h.fds[i]);
	}
	/* An adopted mount has no libfuse session here to unmount it. */
	if (h.adopted && umount2(cfg->mountpoint, MNT_DETACH) == -1 &&
	    errno != EINVAL) /* unmounted already (fusermount3 -u) */
		log_warn("holder: umount %s: %m", cfg->mountpoint);
	if (cfg->listen && cfg->listen_addr.kind == CONFIG_LISTEN_UNIX)
		unlink(cfg->listen_addr.path);
	if (h.ready_rd != -1)
		close(h.ready_rd);
	if (h.sfd != -1)
		close(h.sfd);
	return rc;
}

/* ---- systemd's fd store ---- */

int
sd_fdstore_msg(char *buf, size_t size, const char *name)
{
	size_t n = strlen(name);
	int len;

	/* systemd: at most 255 characters, printable ASCII, no ':'. */
	if (n == 0 || n > 255) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (name[i] <= ' ' || name[i] >= 127 || name[i] == ':') {
			errno = EINVAL;
			return -1;
		}
	}
	len = snprintf(buf, size, "FDSTORE=1\nFDNAME=%s\n", name);
	if (len < 0 || (size_t) len >= size) {
		errno = ENOSPC;
		return -1;
	}
	return len;
}

int
sd_fdstore(int fd, const char *name)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char msg[300];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov;
	struct msghdr mh;
	struct cmsghdr *cm;
	socklen_t salen;
	int len, s, rc;

	if (!path || !*path)
		return 1;
	len = sd_fdstore_msg(msg, sizeof msg, name);
	if (len < 0)
		return -1;
	if ((path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof sa.sun_path) {
		errno = EINVAL;
		return -1;
	}
	strcpy(sa.sun_path, path);
	salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) +
			     strlen(path));
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* the abstract namespace */
	else
		salen++;
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s == -1)
		return -1;
	iov = (struct iovec) { .iov_base = msg, .iov_len = (size_t) len };
	memset(&u, 0, sizeof u);
	mh = (struct msghdr) {
		.msg_name = &sa,
		.msg_namelen = salen,
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof u.buf,
	};
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	rc = sendmsg(s, &mh, MSG_NOSIGNAL) == len ? 0 : -1;
	close(s);
	return rc;
}
