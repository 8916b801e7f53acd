/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_GI_H
#define COLOFS_GI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Generation identifiers, as DRBD keeps them (gi.c).
 *
 * Each side of a pair keeps a current generation (a random 64-bit id,
 * never 0) and the last GI_HISTORY ones.  A side starts a new generation
 * whenever its data may start to differ from its peer's in a way the
 * peer cannot know: a secondary when it is promoted (failover, or stop
 * from running) or discards its data (--demote --discard-local); a
 * primary when a pair
 * forms and when it leaves it (degraded, failover, stop, a crash).
 *
 * NBD carries information one way only, server to client, so the pair is
 * named by the secondary's generation: the secondary sends its set in
 * NBD_INFO_DESCRIPTION, the primary records the current one when a sync
 * begins (its dirty bitmap counts against it), and compares before the
 * next sync:
 *
 *   rule  the secondary says              verdict        the sync
 *   ----  ------------------------------  -------------  -------------
 *   1     nothing (QEMU, an old colofs)   GI_UNKNOWN     full
 *   2     anything; none recorded         GI_FIRST       full
 *   3     cur = recorded                  GI_SAME        incremental
 *   4     recorded in its history         GI_SPLIT_BRAIN refused (EIO);
 *                                                        "resync full"
 *   5     another, with no history        GI_NEW         full
 *   6     another, with a history without GI_UNRELATED   refused (EIO);
 *         the recorded one                               "resync full"
 *
 * Rule 4 is DRBD's split brain (drbd_uuid_compare rules 90/100): the
 * secondary failed over after the generation the primary's bits count
 * against, so it holds writes the primary does not, and a copy of the
 * primary's dirty granules would leave a mix of both histories.  Rule 5
 * is a new or wiped secondary (a fresh state file, --discard-local).
 * Rule 6 is DRBD's "unrelated data" (-1000): a disk with a past of its
 * own (another pair's, or one that failed over more than GI_HISTORY
 * times since), which a full sync would overwrite unasked.
 */
#define GI_HISTORY 4
#define GI_TEXT_MAX 160 /* gi_format's text, with its NUL */

struct gi_set {
	uint64_t current;	      /* 0: none yet */
	int64_t since;		      /* when current began, Unix seconds */
	uint64_t history[GI_HISTORY]; /* newest first; 0: empty */
};

/* The verdicts; the value is the rule's number. */
enum gi_verdict {
	GI_UNKNOWN = 1,
	GI_FIRST = 2,
	GI_SAME = 3,
	GI_SPLIT_BRAIN = 4,
	GI_NEW = 5,
	GI_UNRELATED = 6,
};
const char *gi_verdict_name(enum gi_verdict v); /* aborts if unknown */

/* Starts a new generation: current moves to the history (if set), a
 * fresh random one (getrandom) becomes current, since = now.  0, or -1
 * with errno (logged).
 */
int gi_new(struct gi_set *g);
/* Forgets the history: the data is not the one the old generations
 * named (--discard-local).
 */
void gi_clear_history(struct gi_set *g);

/* "colofs-gi v1 cur=%016x since=%lld hist=%016x,..." into buf (at least
 * GI_TEXT_MAX bytes).
 */
void gi_format(const struct gi_set *g, char *buf, size_t len);
/* Finds and parses the text gi_format makes anywhere in s (an export
 * description).  0 and *g; 1 when s holds none (s may be NULL); -1 when
 * it is there but malformed.
 */
int gi_parse(const char *s, struct gi_set *g);

/* The pieces of that text, for the state file (statefile.c): one id as
 * 16 hex digits, the history as GI_HISTORY of them joined by commas.
 * The parsers want exactly that and the end of s: 0, or -1.
 */
int gi_parse_id(const char *s, uint64_t *out);
int gi_parse_history(const char *s, uint64_t history[GI_HISTORY]);
void gi_format_history(const uint64_t history[GI_HISTORY], char *buf,
		       size_t len);

/* The table above: recorded is the peer generation the primary's bitmap
 * counts against (0: none); peer NULL when the peer sent no set.
 */
enum gi_verdict gi_compare(uint64_t recorded, const struct gi_set *peer);

/* The leftover of a returning primary (fs/protect.c): a disk that was a
 * primary in the pair named by generation G, and comes back as a
 * secondary, takes G as its current generation and sends, after its set,
 * the granules it wrote that never reached its secondary:
 *
 *   colofs-left v1 gran=65536 runs=S+N,S+N,...
 *
 * (S and N in granules, lower-case hex; "runs=" alone: none; "runs=all":
 * it cannot tell, as after a crash while replicating).  The new primary
 * copies them with its own dirty ones, rolling them back.
 * gi_format_left writes it from the runs, 0, or -1 if it does not fit in
 * len (the caller then does not offer an incremental sync).
 */
#define GI_LEFT_MAX 3000 /* the leftover's text, with its NUL, at most */
struct gi_left_run {
	uint64_t start, count;	/* granules */
};
int gi_format_left(uint64_t gran, const struct gi_left_run *runs, size_t n,
		   char *buf, size_t len);
/* "runs=all" (cannot fail with len >= GI_LEFT_MAX). */
void gi_format_left_all(uint64_t gran, char *buf, size_t len);
/* Finds the leftover in s and calls mark for each run (bytes, clipped to
 * size).  1: none in s; 0: all marked; -1: malformed, out of the disk, or
 * a mark failed (errno EINVAL or the mark's): the caller copies
 * everything.
 */
int gi_parse_left(const char *s, uint64_t size,
		  int (*mark)(void *opaque, uint64_t off, uint64_t len),
		  void *opaque);

/* A colofs secondary's incarnation, after its set in the description:
 *
 *   colofs-run v1 state=running epoch=32-HEX-DIGITS
 *
 * epoch is the state file's generation (statefile.h): drawn at every
 * start of the process, kept only by a planned restart that hands the
 * state over (running, durable_handover), and drawn again at a failover.
 * So the same epoch (and the same generation identifier) means nothing
 * the secondary acknowledged was lost: its primary may reconnect to it
 * and re-send what was unanswered (primary-link.c).  state is the
 * replica's state name.
 */
#define GI_RUN_EPOCH_LEN 32
void gi_format_run(const char *state, const char *epoch, char *buf,
		   size_t len);
/* Whether the secondary described by now is the one described by then
 * (two export descriptions): the same generation identifier, the same
 * epoch, and a state that takes a primary's writes (none or running).
 * true, or false and why (a sentence) in why.
 */
bool gi_same_incarnation(const char *then, const char *now, char *why,
			 size_t len);

#endif
