/* SPDX-License-Identifier: MIT */
/* fs/fuse/colo-secondary.c: the ctl write rule and the metrics' translation of the
 * status.  (The metrics as a real parser reads them: tests/e2e.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/colo.h"
#include "config.h"
#include "support.h"

static struct secondary *r;
static struct config *cfg;

static void
setup(void)
{
	char err[256];

	r = test_secondary(1 << 20, 0, NULL);
	cfg = config_load_string("[colofs]\nmountpoint = /mnt/t\n"
				 "[disk \"vda\"]\nimage = /img/vda\n", "t.ini",
				 err, sizeof err);
	cr_assert_not_null(cfg, "%s", err);
}

static void
teardown(void)
{
	config_free(cfg);
	secondary_free(r);
}

TestSuite(colo, .init = setup, .fini = teardown);

static void
expect_error_has(const char *what)
{
	char msg[512];

	secondary_last_error(r, msg, sizeof msg);
	cr_assert_not_null(strstr(msg, what), "error '%s' lacks '%s'", msg,
			   what);
}

Test(colo, ctl_word_at_offset_0_parses)
{
	enum colo_cmd c;

	cr_assert_eq(colo_secondary_ctl_parse(r, " checkpoint\n", 12, 0, &c),
		     0);
	cr_assert_eq(c, COLO_CMD_CHECKPOINT);
}

Test(colo, protect_parses_its_uri_and_leaves_other_words)
{
	const char *w = " protect full nbd://h:10809/vda\n";
	char uri[COLO_URI_MAX];
	bool full = false;

	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     1);
	cr_assert(full);
	cr_assert_str_eq(uri, "nbd://h:10809/vda");
	w = "protect nbd+unix:///vda?socket=/s\n";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     1);
	cr_assert_not(full);
	cr_assert_str_eq(uri, "nbd+unix:///vda?socket=/s");
	w = "checkpoint\n";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     0);
	w = "protectx nbd://h/vda";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     0);
	w = "protect\n";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     -1);
	cr_assert_eq(errno, EINVAL);
	expect_error_has("protect [full] URI");
	w = "protect nbd://h/vda extra";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     -1);
	w = "protect full";
	cr_assert_eq(colo_secondary_protect_parse(r, w, strlen(w), 0, &full,
						  uri, sizeof uri),
		     -1);
}

Test(colo, ctl_write_at_an_offset_is_einval)
{
	enum colo_cmd c;

	cr_assert_eq(colo_secondary_ctl_parse(r, "stop\n", 5, 11, &c), -1);
	cr_assert_eq(errno, EINVAL);
	expect_error_has("at offset 11");
}

Test(colo, ctl_write_over_the_limit_is_einval)
{
	char buf[COLO_CTL_MAX + 1];
	enum colo_cmd c;

	memset(buf, ' ', sizeof buf);
	memcpy(buf, "stop", 4);
	cr_assert_eq(colo_secondary_ctl_parse(r, buf, COLO_CTL_MAX, 0, &c), 0);
	cr_assert_eq(c, COLO_CMD_STOP);
	cr_assert_eq(colo_secondary_ctl_parse(r, buf, sizeof buf, 0, &c), -1);
	cr_assert_eq(errno, EINVAL);
	expect_error_has("nothing was run");
}

static void
print_part(void *opaque, FILE *fp)
{
	(void)opaque;
	fputs("nbd.listen=unix:/run/x.sock\n"
	      "nbd.requests=7\n"
	      "nbd.no_such_metric=3\n", fp);
}

static char *
metrics(void)
{
	struct colo_status_part part = { print_part, NULL };
	char *text;
	size_t len;

	cr_assert_eq(colo_secondary_metrics_text(r, cfg, &part, 1, &text, &len),
		     0);
	cr_assert_eq(strlen(text), len);
	return text;
}

Test(colo, metrics_map_status_keys_parts_included)
{
	struct secondary_disk *d = secondary_disk_at(r, 0);
	char *text;

	cr_assert_eq(secondary_start(r), 0);
	view_fill(d, 0, 4096, 1);
	text = metrics();
	cr_assert_not_null(strstr(text, "\ncolofs_nbd_requests_total 7\n"),
			   "%s", text);
	cr_assert_not_null(strstr(text, "\ncolofs_disk_written_bytes_total"
				  "{disk=\"vda\",source=\"view\"} 4096\n"),
			   "%s", text);
	cr_assert_not_null(strstr(text, "\ncolofs_state{state=\"running\"} 1\n"),
			   "%s", text);
	/* Unmapped keys and non-numbers are not exported. */
	cr_assert_null(strstr(text, "no_such_metric"), "%s", text);
	cr_assert_null(strstr(text, "x.sock"), "%s", text);
	cr_assert_eq(strcmp(text + strlen(text) - 6, "# EOF\n"), 0, "%s", text);
	free(text);
}

Test(colo, metrics_histogram_counts_checkpoints)
{
	char *text, *p;
	int k;

	cr_assert_eq(secondary_start(r), 0);
	for (k = 0; k < 4; k++)
		cr_assert_eq(secondary_checkpoint(r), 0);
	text = metrics();
	cr_assert_not_null(strstr(text, "\ncolofs_checkpoints_total 4\n"));
	cr_assert_not_null(strstr(text,
		"\ncolofs_checkpoint_duration_seconds_bucket{le=\"+Inf\"} 4\n"),
		"%s", text);
	cr_assert_not_null(strstr(text,
		"\ncolofs_checkpoint_duration_seconds_count 4\n"));
	/* One TYPE line per family. */
	p = strstr(text, "# TYPE colofs_disk_buffered_bytes ");
	cr_assert_not_null(p);
	cr_assert_null(strstr(p + 1, "# TYPE colofs_disk_buffered_bytes "));
	free(text);
}
