/* SPDX-License-Identifier: MIT */
/* MOUNT/.colo/: how the FT/HA manager drives and watches the secondary.
 *
 *   ctl     write one word: start | checkpoint | stop | failover
 *   status  key=value lines, a snapshot taken when the file is opened
 *   error   the last error message and a newline, or nothing
 *   metrics the status as OpenMetrics text, also written to metrics_file
 *
 * One ctl write is one command: the whole word in one write() at offset
 * 0, at most COLO_CTL_MAX bytes.  The kernel splits a long write into
 * several requests (1 MiB each) and a shell may write in pieces; parsing
 * each piece as a command would run several commands for one write, or
 * half of one.  So a piece that is not the whole write (too long, or at
 * an offset) is refused with EINVAL before anything runs.
 *
 * The metrics are the status, translated: colo_secondary_metrics_text
 * renders the status text from one secondary snapshot, then maps each
 * key=value line through metric_map[] (status key -> metric family,
 * type, unit, labels).
 * A key that another part of the daemon adds to the status (nbd.*, ...)
 * becomes a metric by adding one row there; a key without a row is not
 * exported.  Only the checkpoint duration histogram and the state, which
 * have no key=value form, are rendered from the snapshot directly.
 *
 * A ctl write runs the command in the writer's thread and the write
 * returns only when the command has taken effect (the core's functions are
 * synchronous; failover returns once it is durable and its commit has
 * started).  A refusal fails the write with the core's errno and leaves
 * the reason in the secondary's error, where .colo/error finds it.
 * Nothing here keeps state: the secondary owns the error and the counters,
 * and it serializes control words itself.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errlog.h"
#include "fdio.h"
#include "log.h"

#include "colo.h"

static const char *const cmd_names[] = {
	[COLO_CMD_START] = "start",
	[COLO_CMD_CHECKPOINT] = "checkpoint",
	[COLO_CMD_STOP] = "stop",
	[COLO_CMD_FAILOVER] = "failover",
	[COLO_CMD_START_FORCE] = "start force",
};

const char *
colo_cmd_name(enum colo_cmd c)
{
	if ((size_t)c >= sizeof cmd_names / sizeof cmd_names[0])
		abort();
	return cmd_names[c];
}

int
colo_secondary_ctl_parse(struct secondary *r, const char *buf, size_t len,
			 uint64_t off, enum colo_cmd *out)
{
	size_t b = 0, e = len, i;

	if (off != 0) {
		secondary_record_error(r, "ctl: a write at offset %" PRIu64
				     " (write one command per open, at "
				     "offset 0; nothing was run)", off);
		errno = EINVAL;
		return -1;
	}
	if (len > COLO_CTL_MAX) {
		secondary_record_error(r, "ctl: a write of %zu bytes (one "
				     "command is at most %d bytes, in one "
				     "write; nothing was run)", len,
				     COLO_CTL_MAX);
		errno = EINVAL;
		return -1;
	}
	while (b < e && isspace((unsigned char)buf[b]))
		b++;
	while (e > b && isspace((unsigned char)buf[e - 1]))
		e--;
	if (b == e) {
		secondary_record_error(r, "ctl: empty command (want start, "
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
	secondary_record_error(r, "ctl: unknown command '%s' (want start, "
			     "checkpoint, stop or failover)", word);
	errno = EINVAL;
	return -1;
}

int
colo_secondary_protect_parse(struct secondary *r, const char *buf, size_t len,
			     uint64_t off, bool *full, char *uri, size_t urilen)
{
	const char *w[3], *e = buf + len, *s = buf;
	size_t wl[3], n = 0, i;

	if (off != 0 || len < 7)
		return 0;
	while (s < e && n < 3) {
		while (s < e && isspace((unsigned char) *s))
			s++;
		if (s == e)
			break;
		w[n] = s;
		while (s < e && !isspace((unsigned char) *s))
			s++;
		wl[n] = (size_t) (s - w[n]);
		n++;
	}
	if (n == 0 || wl[0] != 7 || memcmp(w[0], "protect", 7) != 0)
		return 0;
	while (s < e && isspace((unsigned char) *s))
		s++;
	*full = n == 3 && wl[1] == 4 && memcmp(w[1], "full", 4) == 0;
	i = *full ? 2 : 1;
	if (s != e || n != i + 1 || wl[i] >= urilen ||
	    memmem(w[i], wl[i], "://", 3) == NULL) {
		secondary_record_error(r,
				     "ctl: want protect [full] URI (one "
				     "URI, at most %zu bytes)",
				     urilen - 1);
		errno = EINVAL;
		return -1;
	}
	for (size_t k = 0; k < wl[i]; k++) {
		if (!isprint((unsigned char) w[i][k])) {
			secondary_record_error(r, "ctl: protect: the URI is "
						"not printable");
			errno = EINVAL;
			return -1;
		}
	}
	memcpy(uri, w[i], wl[i]);
	uri[wl[i]] = '\0';
	return 1;
}

int
colo_secondary_ctl_run(struct secondary *r, enum colo_cmd c)
{
	switch (c) {
	case COLO_CMD_START: return secondary_start(r);
	case COLO_CMD_CHECKPOINT: return secondary_checkpoint(r);
	case COLO_CMD_STOP: return secondary_stop(r);
	case COLO_CMD_FAILOVER: return secondary_failover(r);
	case COLO_CMD_START_FORCE: return secondary_start_force(r);
	}
	abort();
}

void
colo_put_error_time(FILE *fp, time_t at)
{
	char when[32];

	errlog_time(at, when, sizeof when);
	fprintf(fp, "error_time=%s\n", when);
}

void
colo_put_oneline(FILE *fp, const char *s)
{
	for (; *s; s++)
		fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
	fputc('\n', fp);
}

int
colo_status_close(FILE *fp, const struct colo_status_part *parts,
		  size_t nparts, char **text)
{
	size_t i;

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

/* The status text of one snapshot.  0, or -1 with errno. */
static int
status_render(const struct secondary_status *st, const struct config *cfg,
	      const struct colo_status_part *parts, size_t nparts,
	      char **text, size_t *len)
{
		FILE *fp;
	size_t i;

	fp = open_memstream(text, len);
	if (!fp)
		return -1;
	fprintf(fp, "state=%s\n", secondary_state_name(st->state));
	fprintf(fp, "s_consistent=%d\n", st->s_consistent ? 1 : 0);
	fprintf(fp, "mode=%s\n", config_mode_name(cfg->mode));
	fprintf(fp, "buffer=%s\n", config_buffer_name(cfg->buffer));
	fprintf(fp, "buffer_bytes=%" PRIu64 "\n", st->buffer_bytes);
	fprintf(fp, "buffer_limit=%" PRIu64 "\n", st->buffer_limit);
	fprintf(fp, "buffer_retained_bytes=%" PRIu64 "\n",
		st->buffer_retained_bytes);
	fprintf(fp, "buffer_warming_bytes=%" PRIu64 "\n",
		st->buffer_warming_bytes);
	fprintf(fp, "checkpoints=%" PRIu64 "\n", st->checkpoints);
	fprintf(fp, "last_checkpoint_us=%" PRIu64 "\n",
		st->last_checkpoint_ns / 1000);
	fprintf(fp, "unclean_disconnects=%" PRIu64 "\n",
		st->unclean_disconnects);
	fprintf(fp, "errors=%" PRIu64 "\n", st->errors);
	fputs("error=", fp);
	colo_put_oneline(fp, st->error);
	colo_put_error_time(fp, st->error_time);
	fprintf(fp, "disks=%zu\n", st->ndisks);
	for (i = 0; i < st->ndisks; i++) {
		const struct secondary_disk_status *d = &st->disks[i];

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
		DISK_KEY(view_writes);
		DISK_KEY(view_reads);
		DISK_KEY(view_read_bytes);
		DISK_KEY(overlay_bytes);
		DISK_KEY(map_mem_bytes);
#undef DISK_KEY
	}
	return colo_status_close(fp, parts, nparts, text);
}

int
colo_secondary_status_text(struct secondary *r, const struct config *cfg,
			   const struct colo_status_part *parts, size_t nparts,
			   char **text, size_t *len)
{
	struct secondary_status st;
	int rc, saved;

	if (secondary_get_status(r, &st) == -1)
		return -1;
	rc = status_render(&st, cfg, parts, nparts, text, len);
	saved = errno;
	secondary_status_release(&st);
	errno = saved;
	return rc;
}

int
colo_secondary_error_text(struct secondary *r, char **text, size_t *len)
{
	char msg[1024];
	time_t at = secondary_last_error(r, msg, sizeof msg);

	return colo_error_line_at(msg, at, text, len);
}

int
colo_errors_text(struct errlog *el, char **text, size_t *len)
{
	FILE *fp = open_memstream(text, len);

	if (!fp)
		return -1;
	errlog_history(el, fp);
	return fclose(fp) == EOF ? -1 : 0;
}

int
colo_error_line(const char *msg, char **text, size_t *len)
{
	return colo_error_line_at(msg, 0, text, len);
}

int
colo_error_line_at(const char *msg, time_t at, char **text, size_t *len)
{
	char when[32];
	FILE *fp;

	fp = open_memstream(text, len);
	if (!fp)
		return -1;
	if (*msg) {
		fprintf(fp, "%s\n", msg);
		errlog_time(at, when, sizeof when);
		if (*when)
			fprintf(fp, "raised at %s\n", when);
	}
	return fclose(fp) == EOF ? -1 : 0;
}

/* ---- metrics ---- */

/* One status key as a metric.  key is the key as written, or "*.KEY" for
 * DISK.KEY of every disk (then the sample gets disk="DISK").  Rows of one
 * family are adjacent; label adds a label to the row's samples; scale
 * (0: none) turns the status's unit into the metric's base unit.
 */
struct metric_map {
	const char *key;
	const char *family;
	const char *type;		/* counter | gauge */
	const char *unit;		/* NULL, or the family's name's suffix */
	const char *help;
	const char *label;		/* NULL, or name="value" */
	double scale;
};

static const struct metric_map metric_map[] = {
	{ "checkpoints", "colofs_checkpoints", "counter", NULL,
	  "Checkpoints taken", NULL, 0 },
	{ "last_checkpoint_us", "colofs_last_checkpoint_duration_seconds",
	  "gauge", "seconds", "How long the last checkpoint took in colofs",
	  NULL, 1e-6 },
	{ "buffer_bytes", "colofs_buffered_bytes", "gauge", "bytes",
	  "Bytes held in all buffers of all disks", NULL, 0 },
	{ "buffer_limit", "colofs_buffer_limit_bytes", "gauge", "bytes",
	  "The cap on buffered bytes (buffer_limit; 0: none)", NULL, 0 },
	{ "buffer_retained_bytes", "colofs_buffer_retained_bytes", "gauge",
	  "bytes", "Buffer pages kept from earlier epochs for reuse", NULL, 0 },
	{ "buffer_warming_bytes", "colofs_buffer_warming_bytes", "gauge",
	  "bytes", "Buffer pages buffer_warm has still to fault in", NULL, 0 },
	{ "unclean_disconnects", "colofs_unclean_disconnects", "counter", NULL,
	  "Primaries gone without NBD_CMD_DISC (writes may be missed)",
	  NULL, 0 },
	{ "errors", "colofs_errors", "counter", NULL,
	  "Errors recorded in .colo/error, refused control words included",
	  NULL, 0 },
	{ "disks", "colofs_disks", "gauge", NULL, "Disks replicated", NULL, 0 },
	{ "*.size", "colofs_disk_size_bytes", "gauge", "bytes",
	  "The disk's size", NULL, 0 },
	{ "*.hidden_bytes", "colofs_disk_buffered_bytes", "gauge", "bytes",
	  "Bytes held in the disk's buffer", "buffer=\"hidden\"", 0 },
	{ "*.active_bytes", "colofs_disk_buffered_bytes", "gauge", "bytes",
	  NULL, "buffer=\"active\"", 0 },
	{ "*.hidden_extents", "colofs_disk_buffer_extents", "gauge", NULL,
	  "Extents in the disk's buffer", "buffer=\"hidden\"", 0 },
	{ "*.active_extents", "colofs_disk_buffer_extents", "gauge", NULL,
	  NULL, "buffer=\"active\"", 0 },
	{ "*.commit_remaining_bytes", "colofs_disk_commit_remaining_bytes",
	  "gauge", "bytes", "Bytes the failover commit has still to write",
	  NULL, 0 },
	{ "*.primary_write_bytes", "colofs_disk_written_bytes", "counter",
	  "bytes", "Bytes written to the disk, by source",
	  "source=\"primary\"", 0 },
	{ "*.view_write_bytes", "colofs_disk_written_bytes", "counter",
	  "bytes", NULL, "source=\"view\"", 0 },
	{ "*.view_read_bytes", "colofs_disk_view_read_bytes", "counter",
	  "bytes", "Bytes the VM read from the view", NULL, 0 },
	{ "*.view_reads", "colofs_disk_view_requests", "counter", NULL,
	  "View requests served, by kind", "op=\"read\"", 0 },
	{ "*.view_writes", "colofs_disk_view_requests", "counter", NULL, NULL,
	  "op=\"write\"", 0 },
	{ "*.overlay_bytes", "colofs_disk_overlay_bytes", "gauge", "bytes",
	  "Bytes in the qcow2 image's overlay", NULL, 0 },
	{ "*.map_mem_bytes", "colofs_disk_map_memory_bytes", "gauge", "bytes",
	  "Heap used by the disk's extent maps", NULL, 0 },
	{ "nbd.exports", "colofs_nbd_exports", "gauge", NULL,
	  "NBD exports", NULL, 0 },
	{ "nbd.connections", "colofs_nbd_open_connections", "gauge", NULL,
	  "NBD connections open", NULL, 0 },
	{ "nbd.negotiating", "colofs_nbd_negotiating_connections", "gauge",
	  NULL, "NBD connections still negotiating", NULL, 0 },
	{ "nbd.connections_total", "colofs_nbd_connections", "counter", NULL,
	  "NBD connections accepted", NULL, 0 },
	{ "nbd.refused", "colofs_nbd_refused_connections", "counter", NULL,
	  "NBD connections refused", NULL, 0 },
	{ "nbd.unclean_disconnects", "colofs_nbd_unclean_disconnects",
	  "counter", NULL, "NBD clients gone without NBD_CMD_DISC", NULL, 0 },
	{ "nbd.requests", "colofs_nbd_requests", "counter", NULL,
	  "NBD requests", NULL, 0 },
	{ "nbd.reads", "colofs_nbd_op_requests", "counter", NULL,
	  "NBD requests by command", "op=\"read\"", 0 },
	{ "nbd.writes", "colofs_nbd_op_requests", "counter", NULL, NULL,
	  "op=\"write\"", 0 },
	{ "nbd.flushes", "colofs_nbd_op_requests", "counter", NULL, NULL,
	  "op=\"flush\"", 0 },
	{ "nbd.zeroes", "colofs_nbd_op_requests", "counter", NULL, NULL,
	  "op=\"zero\"", 0 },
	{ "nbd.request_errors", "colofs_nbd_request_errors", "counter", NULL,
	  "NBD requests answered with an error", NULL, 0 },
	{ "nbd.bytes_read", "colofs_nbd_read_bytes", "counter", "bytes",
	  "Bytes read by NBD clients", NULL, 0 },
	{ "nbd.bytes_written", "colofs_nbd_written_bytes", "counter", "bytes",
	  "Bytes written by NBD clients", NULL, 0 },
	/* the listener's bounds (doc/nbd.md, "Bounds") */
	{ "nbd.max_connections", "colofs_nbd_max_connections", "gauge", NULL,
	  "Authenticated NBD connections allowed per export", NULL, 0 },
	{ "nbd.max_handshakes", "colofs_nbd_max_handshakes", "gauge", NULL,
	  "NBD connections allowed in their handshake", NULL, 0 },
	{ "nbd.max_handshakes_per_address",
	  "colofs_nbd_max_handshakes_per_address", "gauge", NULL,
	  "NBD connections allowed in their handshake from one address",
	  NULL, 0 },
	{ "nbd.memory_limit", "colofs_nbd_memory_limit_bytes", "gauge",
	  "bytes", "NBD payload bytes allowed, all connections", NULL, 0 },
	{ "nbd.memory_used", "colofs_nbd_memory_used_bytes", "gauge", "bytes",
	  "NBD payload bytes held by requests", NULL, 0 },
	{ "nbd.memory_peak", "colofs_nbd_memory_peak_bytes", "gauge", "bytes",
	  "Most NBD payload bytes held at once since start", NULL, 0 },
	{ "nbd.memory_waits", "colofs_nbd_memory_waits", "counter", NULL,
	  "Times an NBD reader or worker waited for the byte budget", NULL, 0 },
	{ "nbd.evicted", "colofs_nbd_evicted_handshakes", "counter", NULL,
	  "NBD handshakes closed to make room", NULL, 0 },
	{ "nbd.dropped", "colofs_nbd_dropped_requests", "counter", NULL,
	  "Requests of dead NBD clients dropped unexecuted", NULL, 0 },
	/* TLS and access control */
	{ "nbd.tls_sessions", "colofs_nbd_tls_sessions", "counter", NULL,
	  "TLS handshakes completed and authorized", NULL, 0 },
	{ "nbd.tls_handshake_failures", "colofs_nbd_refusals", "counter",
	  NULL, "NBD clients refused, by reason",
	  "reason=\"tls_handshake\"", 0 },
	{ "nbd.tls_authz_refused", "colofs_nbd_refusals", "counter", NULL,
	  NULL, "reason=\"tls_authz\"", 0 },
	{ "nbd.tls_plaintext_refused", "colofs_nbd_refusals", "counter", NULL,
	  NULL, "reason=\"tls_required\"", 0 },
	{ "nbd.allow_refused", "colofs_nbd_refusals", "counter", NULL, NULL,
	  "reason=\"allow\"", 0 },
	{ "nbd.tls_reloads", "colofs_nbd_tls_reloads", "counter", NULL,
	  "SIGHUP reloads of the TLS credentials, by outcome",
	  "result=\"ok\"", 0 },
	{ "nbd.tls_reload_failures", "colofs_nbd_tls_reloads", "counter", NULL,
	  NULL, "result=\"failed\"", 0 },
	/* the mount and the stop rule */
	{ "disk_files_open", "colofs_disk_files_open", "gauge", NULL,
	  "Disk files open on the mount", NULL, 0 },
	{ "stop_pending", "colofs_stop_pending", "gauge", NULL,
	  "1 while a stop waits for the last disk file to close", NULL, 0 },
};

struct status_line {
	const char *key, *value;
};

/* Splits text (modified) into key=value lines.  -1 with errno. */
static int
split_lines(char *text, struct status_line **out, size_t *n)
{
	struct status_line *v = NULL, *nv;
	size_t cap = 0, i = 0;
	char *line, *next, *eq;

	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (i == cap) {
			cap = cap ? 2 * cap : 64;
			nv = realloc(v, cap * sizeof *v);
			if (!nv) {
				free(v);
				return -1;
			}
			v = nv;
		}
		v[i].key = line;
		v[i].value = eq + 1;
		i++;
	}
	*out = v;
	*n = i;
	return 0;
}

static const char *
find_value(const struct status_line *lines, size_t n, const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(lines[i].key, key) == 0)
			return lines[i].value;
	return NULL;
}

/* A label value: \, " and newline escaped, as OpenMetrics wants. */
static void
put_label_value(FILE *fp, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', fp);
		if (*s == '\n')
			fputs("\\n", fp);
		else
			fputc(*s, fp);
	}
}

static void
put_sample(FILE *fp, const struct metric_map *m, const char *disk,
	   const char *value)
{
	char *end;
	double v;

	/* Status values are decimal integers; anything else is not ours to
	 * guess at.
	 */
	if (*value == '\0' || strspn(value, "0123456789") != strlen(value))
		return;
	fputs(m->family, fp);
	if (strcmp(m->type, "counter") == 0)
		fputs("_total", fp);
	if (disk || m->label) {
		fputc('{', fp);
		if (disk) {
			fputs("disk=\"", fp);
			put_label_value(fp, disk);
			fputc('"', fp);
		}
		if (disk && m->label)
			fputc(',', fp);
		if (m->label)
			fputs(m->label, fp);
		fputc('}', fp);
	}
	if (m->scale == 0) {
		fprintf(fp, " %s\n", value);
		return;
	}
	v = strtod(value, &end) * m->scale;
	fprintf(fp, " %.9g\n", v);
}

static void
put_family(FILE *fp, const char *family, const char *type, const char *unit,
	   const char *help)
{
	fprintf(fp, "# TYPE %s %s\n", family, type);
	if (unit)
		fprintf(fp, "# UNIT %s %s\n", family, unit);
	if (help)
		fprintf(fp, "# HELP %s %s\n", family, help);
}

static void
put_state(FILE *fp, enum secondary_state state)
{
	int s;

	put_family(fp, "colofs_state", "gauge", NULL,
		   "1 for the replica's state, 0 for the others");
	for (s = SECONDARY_NONE; s <= SECONDARY_DONE; s++)
		fprintf(fp, "colofs_state{state=\"%s\"} %d\n",
			secondary_state_name((enum secondary_state)s),
			s == (int)state);
}

static void
put_histogram(FILE *fp, const struct secondary_status *st)
{
	uint64_t cum = 0;
	size_t i;

	put_family(fp, "colofs_checkpoint_duration_seconds", "histogram",
		   "seconds", "How long checkpoints took in colofs");
	for (i = 0; i < SECONDARY_CHECKPOINT_BUCKETS; i++) {
		cum += st->checkpoint_hist[i];
		if (i < SECONDARY_CHECKPOINT_BUCKETS - 1)
			fprintf(fp, "colofs_checkpoint_duration_seconds_bucket"
				"{le=\"%g\"} %" PRIu64 "\n",
				secondary_checkpoint_bucket_ns[i] / 1e9, cum);
		else
			fprintf(fp, "colofs_checkpoint_duration_seconds_bucket"
				"{le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	fprintf(fp, "colofs_checkpoint_duration_seconds_count %" PRIu64 "\n",
		cum);
	fprintf(fp, "colofs_checkpoint_duration_seconds_sum %.9f\n",
		st->checkpoint_ns_sum / 1e9);
}

int
colo_secondary_metrics_text(struct secondary *r, const struct config *cfg,
			    const struct colo_status_part *parts, size_t nparts,
			    char **text, size_t *len)
{
	struct secondary_status st;
	struct status_line *lines = NULL;
	const struct metric_map *m, *prev = NULL;
	char *status = NULL, key[256];
	const char *value;
	size_t slen, nlines = 0, i, d;
	FILE *fp = NULL;
	int ret = -1, saved;

	*text = NULL;
	if (secondary_get_status(r, &st) == -1)
		return -1;
	if (status_render(&st, cfg, parts, nparts, &status, &slen) == -1 ||
	    split_lines(status, &lines, &nlines) == -1)
		goto out;
	fp = open_memstream(text, len);
	if (!fp)
		goto out;
	put_state(fp, st.state);
	put_histogram(fp, &st);
	for (i = 0; i < sizeof metric_map / sizeof metric_map[0]; i++) {
		m = &metric_map[i];
		if (!prev || strcmp(prev->family, m->family) != 0)
			put_family(fp, m->family, m->type, m->unit, m->help);
		prev = m;
		if (strncmp(m->key, "*.", 2) != 0) {
			value = find_value(lines, nlines, m->key);
			if (value)
				put_sample(fp, m, NULL, value);
			continue;
		}
		for (d = 0; d < st.ndisks; d++) {
			snprintf(key, sizeof key, "%s.%s", st.disks[d].name,
				 m->key + 2);
			value = find_value(lines, nlines, key);
			if (value)
				put_sample(fp, m, st.disks[d].name, value);
		}
	}
	put_family(fp, "colofs_build_info", "gauge", NULL,
		   "colofs's version; always 1");
	fprintf(fp, "colofs_build_info{version=\"%s\"} 1\n", COLOFS_VERSION);
	fputs("# EOF\n", fp);
	if (fclose(fp) == EOF) {
		fp = NULL;
		goto out;
	}
	fp = NULL;
	ret = 0;
out:
	saved = errno;
	if (fp)
		fclose(fp);
	if (ret == -1) {
		free(*text);
		*text = NULL;
	}
	free(lines);
	free(status);
	secondary_status_release(&st);
	errno = saved;
	return ret;
}

int
colo_secondary_metrics_write(struct secondary *r, const struct config *cfg,
			     const struct colo_status_part *parts,
			     size_t nparts, const char *path)
{
	const char *name;
	char *text = NULL;
	size_t len;
	int dfd, ret, saved;

	if (colo_secondary_metrics_text(r, cfg, parts, nparts, &text, &len) ==
	    -1) {
		log_error("metrics_file %s: rendering the metrics: %m", path);
		return -1;
	}
	/* The temporary file is NAME.tmp.XXXXXX, made with O_EXCL |
	 * O_NOFOLLOW in the directory's fd (core/fdio.h): a link planted in
	 * a directory others can write steers nothing, and it is not *.prom,
	 * so node_exporter's textfile collector does not read it.  0644:
	 * the collector need not run as root.
	 */
	dfd = fdio_parent_open(path, &name);
	if (dfd == -1) {
		saved = errno;
		log_error("metrics_file %s: its directory: %m", path);
		free(text);
		errno = saved;
		return -1;
	}
	ret = durable_write_mode_at(dfd, name, text, len, 0644);
	saved = errno;
	close(dfd);
	free(text);
	errno = saved;
	return ret == 0 ? 0 : -1;
}
