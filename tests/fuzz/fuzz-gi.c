/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the generation identifiers' text (core/gi.c):
 * what a peer's NBD export description or a state file hands the parser.
 * Invariants: the parsers never read past the NUL and never crash; what
 * gi_parse accepts, gi_format writes back to a text that parses to the
 * same set; gi_compare is total; gi_parse_left (a returning primary's
 * unreplicated granules) marks only ranges inside the disk;
 * gi_same_incarnation (a reconnecting primary's check) is total.
 *
 * Build and run: tests/fuzz/run-files [SECONDS-EACH] (after make).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_SIZE (UINT64_C(1) << 30)

static int
mark_inside(void *opaque, uint64_t off, uint64_t len)
{
	(void)opaque;
	if (len == 0 || off >= DISK_SIZE || len > DISK_SIZE - off)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), text[GI_TEXT_MAX], why[256];
	uint64_t id, hist[GI_HISTORY];
	struct gi_set g, again;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (gi_parse(s, &g) == 0) {
		gi_format(&g, text, sizeof text);
		if (gi_parse(text, &again) != 0 ||
		    memcmp(&g, &again, sizeof g) != 0)
			abort();
		(void)gi_compare(g.history[0], &g);
		(void)gi_compare(g.current, &g);
	}
	(void)gi_parse_id(s, &id);
	(void)gi_parse_history(s, hist);
	(void)gi_parse_left(s, DISK_SIZE, mark_inside, NULL);
	(void)gi_same_incarnation(s, "", why, sizeof why);
	(void)gi_same_incarnation("", s, why, sizeof why);
	(void)gi_same_incarnation(s, s, why, sizeof why);
	free(s);
	return 0;
}
