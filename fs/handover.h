/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_HANDOVER_H
#define COLOFS_HANDOVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The worker's half of live restart (fs/handover.c); the holder's half is
 * fs/holder.c.  The FUSE file system and the NBD listener call this half,
 * and it calls neither, so that the holder can use both without a circle.
 *
 * Live restart: the kernel's side of the service (the /dev/fuse file, the
 * mount, the NBD listening socket) outlives the process that serves it.
 *
 *   holder (colofs --holder)           worker (the same binary, re-executed)
 *   mounts, binds, makes the state  ─▶ LISTEN_FDS=4
 *   memfd; never reads /dev/fuse       LISTEN_FDNAMES=fuse:nbd:state:ready
 *   waitpid: crash or "restart" ──────▶ a new worker, the same fds
 *   exit 0 of the worker: unmount, exit 0
 *
 * The worker finds its fds the way a systemd service finds its stored ones
 * (sd_listen_fds_with_names), so the same worker code resumes under a
 * holder and under systemd's file-descriptor store (see sd_fdstore_msg).
 *
 * Exit codes of a worker, as the holder reads them:
 *   0                    stopped on purpose: the holder unmounts, exits 0
 *   HOLDER_EXIT_RESTART  a planned restart (ctl "restart"): at once
 *   anything else        a crash: again, at once; with a back-off that
 *                        grows from the fourth worker in a row that
 *                        dies within a second of its start
 * A first worker that fails before it is ready ends the holder with its
 * status, nothing mounted (as a plain colofs start would).
 */
/* fds are handed over from 3 on (systemd's SD_LISTEN_FDS_START), at most: */
#define LISTEN_FDS_START 3
#define HANDOVER_MAX_FDS 8

#define HOLDER_EXIT_RESTART 75

/* The state memfd, shared by the holder and every worker.  Fixed layout,
 * offsets only; one writer per field (noted).  The saved INIT is the
 * kernel's request (header and fuse_init_in) and our reply, as first
 * negotiated: a new worker replays the request into its session and
 * checks that the reply is the same bytes.
 */
#define HOLDER_STATE_MAGIC 0x636f6c6fu /* "colo" */
#define HOLDER_STATE_VERSION 1
#define HOLDER_INIT_MAX 256

struct holder_state {
	uint32_t magic, version; /* holder, at creation */
	/* Worker: in and out written, then init_valid set (release). */
	atomic_uint init_valid;
	uint32_t init_in_len, init_out_len;
	uint8_t init_in[HOLDER_INIT_MAX];
	uint8_t init_out[HOLDER_INIT_MAX];
	/* Holder: counted and stamped before it starts a worker again. */
	atomic_uint restarts;
	atomic_ullong died_ns; /* CLOCK_MONOTONIC; 0: none */
	/* Worker: the kernel's open disk files (fusefs counts them here,
	 * so that a stop after a restart still waits for the VM's).
	 */
	atomic_uint disk_opens;
	/* Worker: the last restart's pause, old worker's death to RESEND. */
	atomic_ullong last_restart_ms;
};

/* ---- worker side ---- */

/* Whether this process is a holder's worker (LISTEN_FDS names "ready").
 * Call it before daemon_start: LISTEN_PID names the process systemd or
 * the holder started, and the fds are read once, then kept.
 */
bool handover_is_worker(void);
/* Whether a mounted FUSE session was handed over (LISTEN_FDS names
 * "fuse"): to a worker by its holder, or to a holder by systemd's fd
 * store after the last holder died.
 */
bool handover_has_mount(void);
/* The fd handed over as name ("fuse", "nbd"), once; -1 if none. */
int handover_take_fd(const char *name);
/* The shared state, or NULL outside a holder / fd store. */
struct holder_state *handover_state(void);
/* Tells the holder that the worker serves; unless foreground, logging
 * moves to syslog and stdio to /dev/null (as daemon_ready does).
 */
void handover_ready(bool foreground);
/* A planned restart was asked for (ctl "restart"): the session loop ends
 * and the process must exit with handover_exit_status.
 */
void handover_request_restart(void);
bool handover_restart_requested(void);
/* Whether a planned restart can be done now; if not, errno and a reason. */
int handover_restart_check(const char **why);
/* rc mapped for the holder: HOLDER_EXIT_RESTART after a planned restart. */
int handover_exit_status(int rc);
/* Test hook: if $var names a file, the first caller that finds it removes
 * it and never returns (a request in flight when the test kills the
 * worker).  A no-op otherwise.  COLOFS_TEST_HANG: a disk write;
 * COLOFS_TEST_HANG_INIT: FUSE_INIT, before its reply.
 */
void handover_test_hang(const char *var);
/* Test hook: if $var names a file, the first caller renames it to
 * FILE.held and waits until that is removed.  COLOFS_TEST_HOLD_CTL: a
 * secondary's ctl word, before it writes back the disks' dirty pages;
 * COLOFS_TEST_HOLD_WRITE: a disk write.
 */
void handover_test_hold(const char *var);
/* Test hook: true for the first caller that finds and removes the file
 * $var names.  COLOFS_TEST_ESTALE_ONCE: a read of a .colo file answers
 * ESTALE, as a read of a file an older colofs opened may across a live
 * restart (struct snap in fusefs.c).
 */
bool handover_test_once(const char *var);
/* .colo/status lines: pid=, restarts=, last_restart_ms=. */
void handover_status(void *opaque, FILE *fp);

#endif
