/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_DURABLE_H
#define COLOFS_DURABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "gi.h"
#include "secondary.h"

/* The daemon's state file policy (durable.c): what each state found at
 * start-up becomes, and the hook that keeps the file in step.
 */
struct durable;

/* Reads the state file of cfg (creating state_dir if needed), puts the
 * secondary (its disks added, in none) in the state that follows, writes the
 * file back with a new generation and installs the hook (a failover found
 * interrupted waits in none for durable_resume).  demote: leave
 * done for none (the operator's way out of the fence).  discard_local
 * (with demote): a new generation without history, so that the primary
 * resolves a split brain by copying its whole disk here.  NULL on failure,
 * with the reason logged: the daemon must not start.
 */
struct durable *durable_open(const struct config *cfg, struct secondary *r,
			     bool demote, bool discard_local);
/* Resumes the failover commit that durable_open found interrupted, if
 * any: called once whatever watches S's writes (protect's tap) is in
 * place, since the commit starts writing S at once.  0, or -1 with the
 * reason logged (the daemon must not start).
 */
int durable_resume(struct durable *du);
void durable_free(struct durable *du);		/* NULL is a no-op */

/* A planned restart in running (live restart, holder.c): with no I/O in
 * flight, hands the buffers over through the durable directories
 * (secondary_handover) and records "running, journaled" in the state file,
 * which the next durable_open resumes exactly.  0, or -1 after logging
 * (the next start then comes back in none, as after a crash).
 */
int durable_handover(struct durable *du);
/* A planned restart in none: records "none, journaled" in the state file,
 * which the next durable_open takes as "keep the generation" (the epoch a
 * reconnecting primary looks for, gi.h).  Logs a failure (the next start
 * then draws a new one, as after a crash).
 */
void durable_hand_epoch(struct durable *du);

/* The instance's identity: the mountpoint escaped as systemd-escape
 * --path does (/srv/vm1 -> srv-vm1), which names every per-disk file in
 * state_dir and buffer_dir.  malloc'd, or NULL.
 */
char *durable_stem(const char *mountpoint);
/* Takes the instance lock STATE_DIR/STEM.lock (made if missing, never
 * removed): the fd that holds it until closed, or -1 with the reason
 * logged (EAGAIN: another daemon holds it; the message names it).
 */
int durable_lock(const char *state_dir, const char *stem);
/* A primary's bitmap path, STATE_DIR/STEM.DISK.dirty, malloc'd; NULL
 * (logged) on ENOMEM, or when only a bitmap of the old name
 * STATE_DIR/DISK.dirty exists: the message gives the mv that migrates
 * it.
 */
char *durable_bitmap_path(const char *state_dir, const char *stem,
			  const char *disk);
/* The generation identifiers as gi_format writes them, for the NBD
 * export description (an nbd_describe_fn).
 */
void durable_describe(void *opaque, char *buf, size_t len);
/* --discard-failover: the operator's way out when an interrupted
 * failover cannot be finished (a journal or buffer file lost or damaged).
 * Renames the journals and buffer files of cfg to NAME.discarded and
 * writes the state file back without journaled, so that the start goes
 * to done (still fenced) with .colo/error saying S may mix the primary's
 * and the VM's data.  0; 1 when there is no interrupted failover; -1
 * (logged).
 */
int durable_discard_failover(const struct config *cfg);

/* The generation identifiers now (core/gi.h). */
void durable_gi(struct durable *du, struct gi_set *out);
/* A returning primary (fs/protect.c): gen, the generation of the pair it
 * left, becomes current (the old current moves to the history), durably.
 * 0, or -1 with errno (logged).
 */
int durable_adopt_gi(struct durable *du, uint64_t gen);

/* Status lines (a colo_status_fn). */
void durable_status(void *opaque, FILE *fp);
/* Protect in place (fs/protect.c): the URI a done disk was protected
 * with, kept across restarts until --demote, or NULL; and its recording
 * (0, or -1 with errno, logged).
 */
const char *durable_protected(struct durable *du);
int durable_set_protected(struct durable *du, const char *uri);

#endif
