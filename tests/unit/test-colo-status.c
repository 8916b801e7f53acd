/* SPDX-License-Identifier: MIT */
/* fs/fuse/colo-secondary.c: the one status printer (the secondary's lines, then each part's,
 * in order) and the error text.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuse/colo.h"
#include "log.h"
#include "support.h"

static struct secondary *r;
static const struct config cfg = {
	.mode = CONFIG_MODE_SECONDARY,
	.buffer = CONFIG_BUFFER_MEMORY,
};

static void
setup(void)
{
	log_set_quiet(true);
	r = test_secondary(1024 * 1024, 0x11, NULL);
}

static void
teardown(void)
{
	secondary_free(r);
}

TestSuite(colo_status, .init = setup, .fini = teardown);

/* A part prints the lines its opaque points to. */
static char nbd_lines[] = "nbd.connections=1\n";
static char a_lines[] = "a.one=1\na.two=2\n";
static char b_lines[] = "b.one=3\n";
static char no_lines[] = "";

static void
print_lines(void *opaque, FILE *fp)
{
	fputs(opaque, fp);
}

static char *
status(const struct colo_status_part *parts, size_t nparts)
{
	char *text = NULL;
	size_t len = 0;

	cr_assert_eq(colo_secondary_status_text(r, &cfg, parts, nparts, &text,
						&len),
		     0, "colo_secondary_status_text: %s", strerror(errno));
	cr_assert_not_null(text);
	cr_assert_eq(strlen(text), len, "len is the text's length");
	return text;
}

/* Asserts that every line of text is KEY=VALUE and ends with a newline. */
static void
expect_key_value_lines(const char *text)
{
	const char *p, *nl;

	cr_assert(text[0] != '\0', "status is empty");
	for (p = text; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		cr_assert_not_null(nl, "last line unterminated: \"%s\"", p);
		cr_assert(memchr(p, '=', (size_t) (nl - p)) != NULL,
			  "line \"%.*s\" is not key=value", (int) (nl - p), p);
	}
}

Test(colo_status, status_without_parts_is_the_replicas_lines)
{
	char *text = status(NULL, 0);
	const char *last;

	expect_key_value_lines(text);
	cr_assert(strncmp(text, "state=none\n", 11) == 0, "starts: %s", text);
	cr_assert_not_null(strstr(text, "\nmode=secondary\n"));
	cr_assert_not_null(strstr(text, "\nbuffer=memory\n"));
	cr_assert_not_null(strstr(text, "\nerror=\n"));
	cr_assert_not_null(strstr(text, "\ndisks=1\n"));
	cr_assert_not_null(strstr(text, "\nvda.size=1048576\n"));
	/* The secondary's per-disk keys end it. */
	last = strrchr(text, '\n');
	while (last > text && last[-1] != '\n')
		last--;
	cr_assert(strncmp(last, "vda.", 4) == 0, "last line: %s", last);
	free(text);
}

/* The status with these parts is the secondary's lines, then exactly want. */
static void
expect_parts_after_the_replicas(const struct colo_status_part *parts,
				size_t nparts, const char *want)
{
	char *base = status(NULL, 0);
	char *text = status(parts, nparts);
	size_t n = strlen(base);

	cr_assert_eq(strncmp(text, base, n), 0, "the replica's lines first");
	cr_assert_str_eq(text + n, want);
	expect_key_value_lines(text);
	free(base);
	free(text);
}

Test(colo_status, one_part_follows_the_replicas_lines)
{
	struct colo_status_part part = { print_lines, nbd_lines };

	expect_parts_after_the_replicas(&part, 1, "nbd.connections=1\n");
}

Test(colo_status, two_parts_follow_in_order)
{
	struct colo_status_part parts[] = {
		{ print_lines, a_lines },
		{ print_lines, b_lines },
	};

	expect_parts_after_the_replicas(parts, 2,
					"a.one=1\na.two=2\nb.one=3\n");
}

Test(colo_status, a_part_that_prints_nothing_adds_nothing)
{
	struct colo_status_part parts[] = {
		{ print_lines, no_lines },
		{ print_lines, b_lines },
	};

	expect_parts_after_the_replicas(parts, 2, "b.one=3\n");
}

Test(colo_status, status_error_is_on_one_line)
{
	char *text;

	secondary_record_error(r, "first\nsecond\rthird");
	text = status(NULL, 0);
	cr_assert_not_null(strstr(text, "\nerror=first second third\n"),
			   "status: %s", text);
	expect_key_value_lines(text);
	free(text);
}

Test(colo_status, error_text_is_the_message_and_when_it_was_raised_or_nothing)
{
	char *text, want[64], *nl;
	size_t len;
	struct tm tm;
	time_t t0 = time(NULL), at;

	cr_assert_eq(colo_secondary_error_text(r, &text, &len), 0);
	cr_assert_eq(len, 0);
	cr_assert_str_eq(text, "");
	free(text);
	secondary_record_error(r, "checkpoint: refused");
	cr_assert_eq(colo_secondary_error_text(r, &text, &len), 0);
	cr_assert_eq(len, strlen(text));
	nl = strchr(text, '\n');
	cr_assert_not_null(nl);
	cr_assert_eq(strncmp(text, "checkpoint: refused\nraised at ",
			     strlen("checkpoint: refused\nraised at ")), 0,
		     "%s", text);
	memset(&tm, 0, sizeof tm);
	cr_assert_not_null(strptime(nl + 11, "%Y-%m-%dT%H:%M:%SZ", &tm), "%s",
			   text);
	at = timegm(&tm);
	cr_assert(at >= t0 && at <= time(NULL), "%s", text);
	snprintf(want, sizeof want, "%s", nl + 11);
	cr_assert_eq(want[strlen(want) - 1], '\n');
	free(text);
	secondary_clear_error(r);
	cr_assert_eq(colo_secondary_error_text(r, &text, &len), 0);
	cr_assert_eq(len, 0);
	free(text);
	cr_assert_eq(colo_errors_text(secondary_errors(r), &text, &len), 0);
	cr_assert(strstr(text, "Z checkpoint: refused\n") != NULL, "%s", text);
	free(text);
}
