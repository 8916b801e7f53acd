/* SPDX-License-Identifier: MIT */
/* MOUNT/.colo/ on a primary (mode = primary): the same three files as
 * the secondary's (colo-secondary.c), over the primary engine.
 *
 *   ctl     start | checkpoint | failover | stop | resync [full] [URI]
 *   status  key=value lines: state, dirty bytes, the sync's progress and
 *           rate, why the pair degraded, each disk's secondary
 *   error   the last error and a newline, or nothing
 *
 * A ctl write runs the word in the writer's thread and returns when it
 * has taken effect: start and resync return once connected and syncing
 * (the copy runs in the background: watch state and sync_left_bytes).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.h"
#include "log.h"

#define WORDS "start, checkpoint, failover, stop or resync [full] [URI]"

/* Splits buf into at most 4 blank-separated words (NUL-terminated in
 * copy).  The number of words, or -1 if too many or too long.
 */
static int
split(const char *buf, size_t len, char *copy, size_t cap, char **words)
{
	size_t i, n = 0;
	char *s;

	if (len >= cap)
		return -1;
	memcpy(copy, buf, len);
	copy[len] = '\0';
	for (i = 0; i < len; i++)
		if (copy[i] == '\0' || !isprint((unsigned char)copy[i]))
			if (!isspace((unsigned char)copy[i]))
				return -1;
	s = copy;
	for (;;) {
		while (*s && isspace((unsigned char)*s))
			*s++ = '\0';
		if (*s == '\0')
			break;
		if (n == 4)
			return -1;
		words[n++] = s;
		while (*s && !isspace((unsigned char)*s))
			s++;
	}
	return (int)n;
}

int
colo_primary_ctl(struct primary *p, const char *buf, size_t len,
		 uint64_t off)
{
	char copy[1100], *w[4];
	const char *uri = NULL;
	bool full = false;
	int n, i, rc;

	if (off != 0) {
		primary_record_error(p, "ctl: a write at offset %" PRIu64
				     " (write one command per open, at "
				     "offset 0; nothing was run)", off);
		errno = EINVAL;
		return -1;
	}
	n = split(buf, len, copy, sizeof copy, w);
	if (n <= 0) {
		primary_record_error(p, "ctl: %s command (want " WORDS ")",
				     n == 0 ? "empty" : "unreadable");
		errno = EINVAL;
		return -1;
	}
	if (strcmp(w[0], "resync") == 0 && n <= 3) {
		for (i = 1; i < n; i++) {
			if (strcmp(w[i], "full") == 0 && !full)
				full = true;
			else if (uri == NULL && strstr(w[i], "://") != NULL)
				uri = w[i];
			else
				goto bad;
		}
		rc = primary_resync(p, full, uri);
	} else if (n != 1) {
		goto bad;
	} else if (strcmp(w[0], "start") == 0) {
		rc = primary_start(p);
	} else if (strcmp(w[0], "checkpoint") == 0) {
		rc = primary_checkpoint(p);
	} else if (strcmp(w[0], "failover") == 0) {
		rc = primary_failover(p);
	} else if (strcmp(w[0], "stop") == 0) {
		rc = primary_stop(p);
	} else {
		goto bad;
	}
	if (rc == 0 && strcmp(w[0], "checkpoint") != 0)
		log_info("ctl: %s done, state %s", w[0],
			 primary_state_name(primary_state(p)));
	return rc;
bad:
	primary_record_error(p, "ctl: unknown command '%.64s%s' (want "
			     WORDS ")", w[0], n > 1 ? " ..." : "");
	errno = EINVAL;
	return -1;
}

int
colo_primary_status_text(struct primary *p, const struct config *cfg,
			 const struct colo_status_part *parts, size_t nparts,
			 char **text, size_t *len)
{
	struct primary_status st;
	uint64_t dirty = 0;
	FILE *fp;
	size_t i;

	if (primary_get_status(p, &st) == -1)
		return -1;
	fp = open_memstream(text, len);
	if (fp == NULL) {
		primary_status_release(&st);
		return -1;
	}
	for (i = 0; i < st.ndisks; i++)
		dirty += st.disks[i].dirty_bytes;
	fprintf(fp, "state=%s\n", primary_state_name(st.state));
	/* A secondary protected in place is a primary too. */
	fprintf(fp, "mode=%s\n", config_mode_name(CONFIG_MODE_PRIMARY));
	(void)cfg;
	fprintf(fp, "dirty_bytes=%" PRIu64 "\n", dirty);
	fprintf(fp, "dirty_granularity=%" PRIu64 "\n", st.granularity);
	fprintf(fp, "sync_total_bytes=%" PRIu64 "\n", st.sync_total_bytes);
	fprintf(fp, "sync_done_bytes=%" PRIu64 "\n", st.sync_done_bytes);
	fprintf(fp, "sync_left_bytes=%" PRIu64 "\n",
		st.state == PRIMARY_SYNCING ? dirty : 0);
	fprintf(fp, "sync_rate_bytes=%" PRIu64 "\n", st.sync_rate);
	fprintf(fp, "syncs=%" PRIu64 "\n", st.syncs);
	fprintf(fp, "checkpoints=%" PRIu64 "\n", st.checkpoints);
	fprintf(fp, "split_brain=%d\n", st.split_brain ? 1 : 0);
	fputs("degraded_reason=", fp);
	colo_put_oneline(fp, st.reason);
	fputs("error=", fp);
	colo_put_oneline(fp, st.error);
	colo_put_error_time(fp, st.error_time);
	fprintf(fp, "disks=%zu\n", st.ndisks);
	for (i = 0; i < st.ndisks; i++) {
		const struct primary_disk_status *d = &st.disks[i];

		fprintf(fp, "%s.size=%" PRIu64 "\n", d->name, d->size);
		fprintf(fp, "%s.dirty_bytes=%" PRIu64 "\n", d->name,
			d->dirty_bytes);
		fprintf(fp, "%s.write_bytes=%" PRIu64 "\n", d->name,
			d->write_bytes);
		fprintf(fp, "%s.mirrored_bytes=%" PRIu64 "\n", d->name,
			d->mirrored_bytes);
		fprintf(fp, "%s.link_bytes=%" PRIu64 "\n", d->name,
			d->sent_bytes);
		fprintf(fp, "%s.link_reconnects=%" PRIu64 "\n", d->name,
			d->reconnects);
		fprintf(fp, "%s.secondary=%s\n", d->name, d->uri);
		fprintf(fp, "%s.synced=%d\n", d->name, d->synced ? 1 : 0);
		fprintf(fp, "%s.gi_current=%016" PRIx64 "\n", d->name,
			d->gen.current);
		fprintf(fp, "%s.gi_peer=%016" PRIx64 "\n", d->name,
			d->peer_gen);
		fprintf(fp, "%s.al_active_extents=%u\n", d->name,
			d->al_active);
		fprintf(fp, "%s.al_transactions=%" PRIu64 "\n", d->name,
			d->al_transactions);
		fprintf(fp, "%s.al_write_us=%" PRIu64 "\n", d->name,
			d->al_write_us);
	}
	primary_status_release(&st);
	return colo_status_close(fp, parts, nparts, text);
}

int
colo_primary_error_text(struct primary *p, char **text, size_t *len)
{
	char msg[1024];
	time_t at = primary_last_error(p, msg, sizeof msg);

	return colo_error_line_at(msg, at, text, len);
}
