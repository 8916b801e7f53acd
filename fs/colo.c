/* SPDX-License-Identifier: MIT */
/* MOUNT/.colo/: how the FT/HA manager drives and watches the replica.
 *
 *   ctl     write one word: start | checkpoint | stop | failover
 *   status  key=value lines, a snapshot taken when the file is opened
 *   error   the last error message and a newline, or nothing
 *
 * A ctl write runs the command in the writer's thread and the write
 * returns only when the command has taken effect (the core's functions are
 * synchronous; failover returns once its commit has started).  A refusal
 * fails the write with the core's errno and leaves the reason in the
 * replica's error, where .colo/error finds it.  Nothing here keeps state:
 * the replica owns the error and the counters, and it serializes control
 * words itself.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.h"

static const char *const cmd_names[] = {
	[COLO_CMD_START] = "start",
	[COLO_CMD_CHECKPOINT] = "checkpoint",
	[COLO_CMD_STOP] = "stop",
	[COLO_CMD_FAILOVER] = "failover",
};

const char *
colo_cmd_name(enum colo_cmd c)
{
	if ((size_t)c >= sizeof cmd_names / sizeof cmd_names[0])
		abort();
	return cmd_names[c];
}

int
colo_cmd_parse(struct replica *r, const char *buf, size_t len,
	       enum colo_cmd *out)
{
	size_t b = 0, e = len, i;

	while (b < e && isspace((unsigned char)buf[b]))
		b++;
	while (e > b && isspace((unsigned char)buf[e - 1]))
		e--;
	if (b == e) {
		replica_record_error(r, "ctl: empty command (want start, "
				     "checkpoint, stop or failover)");
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < sizeof cmd_names / sizeof cmd_names[0]; i++) {
		if (strlen(cmd_names[i]) == e - b &&
		    memcmp(cmd_names[i], buf + b, e - b) == 0) {
			*out = (enum colo_cmd)i;
			return 0;
		}
	}
	/* Quote a printable prefix of what we got, no more. */
	char word[64];
	size_t n = 0;

	for (i = b; i < e && n < sizeof word - 4; i++)
		word[n++] = isprint((unsigned char)buf[i]) ? buf[i] : '?';
	if (i < e) {
		memcpy(word + n, "...", 3);
		n += 3;
	}
	word[n] = '\0';
	replica_record_error(r, "ctl: unknown command '%s' (want start, "
			     "checkpoint, stop or failover)", word);
	errno = EINVAL;
	return -1;
}

int
colo_cmd_run(struct replica *r, enum colo_cmd c)
{
	switch (c) {
	case COLO_CMD_START: return replica_start(r);
	case COLO_CMD_CHECKPOINT: return replica_checkpoint(r);
	case COLO_CMD_STOP: return replica_stop(r);
	case COLO_CMD_FAILOVER: return replica_failover(r);
	}
	abort();
}

/* The error on one line, so that status stays one key per line. */
static void
put_oneline(FILE *fp, const char *s)
{
	for (; *s; s++)
		fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
	fputc('\n', fp);
}

int
colo_status_text(struct replica *r, const struct config *cfg,
		 const struct colo_status_part *parts, size_t nparts,
		 char **text, size_t *len)
{
	struct replica_status st;
	FILE *fp;
	size_t i;

	if (replica_get_status(r, &st) == -1)
		return -1;
	fp = open_memstream(text, len);
	if (!fp) {
		replica_status_release(&st);
		return -1;
	}
	fprintf(fp, "state=%s\n", replica_state_name(st.state));
	fprintf(fp, "mode=%s\n", config_mode_name(cfg->mode));
	fprintf(fp, "buffer=%s\n", config_buffer_name(cfg->buffer));
	fprintf(fp, "buffer_bytes=%" PRIu64 "\n", st.buffer_bytes);
	fprintf(fp, "buffer_limit=%" PRIu64 "\n", st.buffer_limit);
	fprintf(fp, "checkpoints=%" PRIu64 "\n", st.checkpoints);
	fprintf(fp, "last_checkpoint_us=%" PRIu64 "\n",
		st.last_checkpoint_ns / 1000);
	fprintf(fp, "unclean_disconnects=%" PRIu64 "\n",
		st.unclean_disconnects);
	fputs("error=", fp);
	put_oneline(fp, st.error);
	fprintf(fp, "disks=%zu\n", st.ndisks);
	for (i = 0; i < st.ndisks; i++) {
		const struct replica_disk_status *d = &st.disks[i];

#define DISK_KEY(key) \
		fprintf(fp, "%s." #key "=%" PRIu64 "\n", d->name, d->key)
		DISK_KEY(size);
		DISK_KEY(hidden_bytes);
		DISK_KEY(hidden_extents);
		DISK_KEY(active_bytes);
		DISK_KEY(active_extents);
		DISK_KEY(commit_remaining_bytes);
		DISK_KEY(primary_write_bytes);
		DISK_KEY(view_write_bytes);
		DISK_KEY(overlay_bytes);
		DISK_KEY(map_mem_bytes);
#undef DISK_KEY
	}
	replica_status_release(&st);
	for (i = 0; i < nparts; i++)
		parts[i].print(parts[i].opaque, fp);
	if (fclose(fp) == EOF) {
		int saved = errno;

		free(*text);
		*text = NULL;
		errno = saved;
		return -1;
	}
	return 0;
}

int
colo_error_text(struct replica *r, char **text, size_t *len)
{
	char msg[1024];
	size_t n;

	replica_last_error(r, msg, sizeof msg);
	n = strlen(msg);
	*text = malloc(n + 2);
	if (!*text)
		return -1;
	memcpy(*text, msg, n);
	if (n)
		(*text)[n++] = '\n';
	(*text)[n] = '\0';
	*len = n;
	return 0;
}
