/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_COLO_H
#define COLOFS_COLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "config.h"
#include "primary.h"
#include "secondary.h"

#ifndef COLOFS_VERSION
#define COLOFS_VERSION "0.1.0"		/* the Makefile's VERSION wins */
#endif

/* The contents of MOUNT/.colo/: the control word parser and the status and
 * error texts.  Knows nothing of FUSE.
 */
enum colo_cmd {
	COLO_CMD_START,
	COLO_CMD_CHECKPOINT,
	COLO_CMD_STOP,
	COLO_CMD_FAILOVER,
	COLO_CMD_START_FORCE,		/* "start force" */
};
const char *colo_cmd_name(enum colo_cmd c);	/* aborts if unknown */

/* The longest ctl write: one command, with room for blanks around it. */
#define COLO_CTL_MAX 64

/* Parses one command from a ctl write: a word, optionally surrounded by
 * blanks and newlines, written whole at offset 0 (off) in at most
 * COLO_CTL_MAX bytes.  0, or -1 with errno = EINVAL and the reason
 * recorded in the secondary's error.
 */
int colo_secondary_ctl_parse(struct secondary *r, const char *buf, size_t len,
			     uint64_t off, enum colo_cmd *out);
/* "protect [full] URI" (a done secondary becomes the primary of URI,
 * fs/protect.c): 1 and *full, uri (at most COLO_URI_MAX - 1 bytes) when
 * the write is one; 0 when it is not (colo_secondary_ctl_parse then
 * judges it); -1 with errno = EINVAL and the reason recorded when it is
 * malformed.
 */
#define COLO_URI_MAX 1024
int colo_secondary_protect_parse(struct secondary *r, const char *buf,
				 size_t len, uint64_t off, bool *full,
				 char *uri, size_t urilen);
/* Runs it: 0, or -1 with errno (the reason is in the secondary's error). */
int colo_secondary_ctl_run(struct secondary *r, enum colo_cmd c);

/* A part of the daemon that adds key=value lines of its own to the status
 * (the NBD listener: "nbd.connections=1").  .colo/ knows the parts only
 * through this.
 */
typedef void colo_status_fn(void *opaque, FILE *fp);

struct colo_status_part {
	colo_status_fn *print;
	void *opaque;
};

/* The text of .colo/status (the secondary's key=value lines, then each
 * part's, in order) and .colo/error (the last error and a newline, or
 * nothing), malloc'd.  0, or -1 with errno.
 */
int colo_secondary_status_text(struct secondary *r, const struct config *cfg,
			       const struct colo_status_part *parts,
			       size_t nparts, char **text, size_t *len);
int colo_secondary_error_text(struct secondary *r, char **text, size_t *len);
/* .colo/errors (either role's errlog): the last errors raised, cleared or
 * not, one "TIME MESSAGE" line each, oldest first.  0, or -1 with errno.
 */
int colo_errors_text(struct errlog *el, char **text, size_t *len);
/* Shared by the secondary's and the primary's texts: a value on one line
 * (newlines become blanks, so the status stays one key per line), and
 * the .colo/error text of msg (msg and a newline, or nothing; malloc'd;
 * 0, or -1 with errno).
 */
void colo_put_oneline(FILE *fp, const char *s);
int colo_error_line(const char *msg, char **text, size_t *len);
/* The same with the line "raised at TIME" after msg (at 0: none), and
 * the status line error_time=TIME (empty for 0).
 */
int colo_error_line_at(const char *msg, time_t at, char **text,
		       size_t *len);
void colo_put_error_time(FILE *fp, time_t at);
/* Ends a status text begun with open_memstream(text, ...) on fp: each
 * part's lines, in order, then the stream closed.  0, or -1 with errno
 * and *text freed.
 */
int colo_status_close(FILE *fp, const struct colo_status_part *parts,
		      size_t nparts, char **text);

/* The status as OpenMetrics text (.colo/metrics), from one snapshot:
 * every status key that has a row in colo-secondary.c's metric_map, the state, the
 * checkpoint duration histogram and colofs_build_info, malloc'd.  0, or
 * -1 with errno.
 */
int colo_secondary_metrics_text(struct secondary *r, const struct config *cfg,
				const struct colo_status_part *parts,
				size_t nparts, char **text, size_t *len);
/* Writes the same to path atomically (durable_write, core/fdio.h: a fresh
 * PATH.tmp.XXXXXX made with O_EXCL | O_NOFOLLOW, fsync'd, renamed over
 * path, the directory fsync'd).  0, or -1 with errno (logged).
 */
int colo_secondary_metrics_write(struct secondary *r, const struct config *cfg,
				 const struct colo_status_part *parts,
				 size_t nparts, const char *path);
/* The same on a primary (colo-primary.c).  colo_primary_ctl parses and
 * runs one ctl write (at offset 0, else EINVAL and nothing runs): 0, or -1 with errno and the reason in p's error.
 */
int colo_primary_ctl(struct primary *p, const char *buf, size_t len,
		     uint64_t off);
int colo_primary_status_text(struct primary *p, const struct config *cfg,
			     const struct colo_status_part *parts,
			     size_t nparts, char **text, size_t *len);
int colo_primary_error_text(struct primary *p, char **text, size_t *len);

#endif
