/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the config parser (fs/config.c, over inih).  The input
 * is the file's text.  Invariants: config_load_string fails with a reason
 * or yields a config whose --dump-config text loads again and dumps to the
 * same text (but for its first line, the file's name).  Build and run: tests/fuzz/run-files [SECONDS] [WORKDIR].
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

static char *
dump(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	if (fp == NULL)
		abort();
	config_dump(c, fp);
	if (fclose(fp) != 0)
		abort();
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024] = "", *text = malloc(size + 1), *one, *two;
	struct config *c, *again;

	if (text == NULL)
		abort();
	log_set_quiet(true);
	memcpy(text, data, size);
	text[size] = '\0';
	c = config_load_string(text, "f.ini", err, sizeof err);
	free(text);
	if (c == NULL) {
		assert(err[0] != '\0');
		return 0;
	}
	one = dump(c);
	again = config_load_string(one, "dump.ini", err, sizeof err);
	if (again == NULL) {
		fprintf(stderr, "the dump does not load: %s\n%s", err, one);
		abort();
	}
	two = dump(again);
	/* The first line names the file it was read from. */
	assert(strcmp(strchr(one, '\n'), strchr(two, '\n')) == 0);
	free(one);
	free(two);
	config_free(again);
	config_free(c);
	return 0;
}
