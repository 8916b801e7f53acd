/* SPDX-License-Identifier: MIT */
/* Extent maps: which byte ranges of a disk a buffer holds.
 *
 * A map is a sorted sequence of disjoint, non-adjacent ranges [start, end).
 * It is stored as a two-level B-tree-like array: a growable array of
 * pointers to leaves, each leaf a sorted array of up to LEAF_CAP ranges.
 *
 *   leaves[] --> [ r0 r1 ... r126 ] [ r127 ... ] [ ... ]
 *
 * Invariants:
 *  - ranges are sorted across leaves and never overlap or touch (an insert
 *    merges with its neighbours), so ends are sorted too;
 *  - no leaf is empty; an empty map has no leaves.
 *
 * Lookups binary-search the leaves by their last range's end, then the
 * leaf: O(log n).  An update deletes a run of ranges and inserts at most
 * two in its place; a full leaf splits in two, so an update moves at most
 * one leaf's worth of ranges plus the leaf pointer array (n / LEAF_CAP
 * pointers) on a split.  A range costs 16 bytes in a leaf; leaves are at
 * least half full after a split, so a map costs about 16 to 32 bytes per
 * range (extmap_mem_bytes measures it).
 *
 * Removing ranges can leave leaves less than half full; maps are emptied
 * wholesale at checkpoint and only shrink by removal during a failover
 * commit, which drains them, so leaves are not merged back.
 *
 * Not thread-safe: the owner holds its lock around every call.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "extmap.h"

#define LEAF_CAP 127	/* a leaf is 2040 bytes: one 2 KiB allocation */

struct range {
	uint64_t start, end;
};

struct leaf {
	uint32_t n;
	struct range r[LEAF_CAP];
};

struct extmap {
	struct leaf **leaves;
	size_t nleaves, cap;
	size_t count;
	uint64_t bytes;
};

struct pos {
	size_t li, ri;		/* leaf index, range index in that leaf */
};

struct extmap *
extmap_new(void)
{
	return calloc(1, sizeof(struct extmap));
}

void
extmap_free(struct extmap *em)
{
	size_t i;

	if (em == NULL)
		return;
	for (i = 0; i < em->nleaves; i++)
		free(em->leaves[i]);
	free(em->leaves);
	free(em);
}

/* The first range whose end is > off, or >= off when touching counts.
 * Returns li == nleaves when there is none.
 */
static struct pos
find(const struct extmap *em, uint64_t off, bool touching)
{
	size_t lo = 0, hi = em->nleaves;
	struct pos p;
	const struct leaf *l;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t e;

		l = em->leaves[mid];
		e = l->r[l->n - 1].end;
		if (touching ? e >= off : e > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	p.li = lo;
	p.ri = 0;
	if (lo == em->nleaves)
		return p;
	l = em->leaves[lo];
	hi = l->n;
	lo = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t e = l->r[mid].end;

		if (touching ? e >= off : e > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	p.ri = lo;
	return p;
}

static const struct range *
at(const struct extmap *em, struct pos p)
{
	return &em->leaves[p.li]->r[p.ri];
}

static bool
advance(const struct extmap *em, struct pos *p)
{
	if (++p->ri >= em->leaves[p->li]->n) {
		p->li++;
		p->ri = 0;
	}
	return p->li < em->nleaves;
}

/* Puts leaf l at index li; the pointer array has room (reserved). */
static void
insert_leaf(struct extmap *em, size_t li, struct leaf *l)
{
	l->n = 0;
	memmove(&em->leaves[li + 1], &em->leaves[li],
		(em->nleaves - li) * sizeof *em->leaves);
	em->leaves[li] = l;
	em->nleaves++;
}

static void
remove_leaf(struct extmap *em, size_t li)
{
	free(em->leaves[li]);
	memmove(&em->leaves[li], &em->leaves[li + 1],
		(em->nleaves - li - 1) * sizeof *em->leaves);
	em->nleaves--;
}

/* Replaces the k ranges from p with the m ranges of repl (m <= 2).  The
 * caller has checked that the result stays sorted and disjoint.  All
 * memory is reserved first, so that on ENOMEM the map is unchanged.  At
 * most one leaf splits: after a split both halves have room.
 */
static int
splice(struct extmap *em, struct pos p, size_t k, const struct range *repl,
       size_t m)
{
	struct leaf *spare = NULL;
	size_t i, li, ri;

	if (m > 0) {
		if (em->nleaves + 1 > em->cap) {
			size_t ncap = em->cap ? em->cap * 2 : 4;
			struct leaf **nl = realloc(em->leaves,
						   ncap * sizeof *nl);

			if (nl == NULL)
				return -1;
			em->leaves = nl;
			em->cap = ncap;
		}
		spare = malloc(sizeof *spare);
		if (spare == NULL)
			return -1;
	}

	/* Delete the run.  Only the first leaf keeps ranges before it. */
	li = p.li;
	ri = p.ri;
	while (k > 0) {
		struct leaf *l = em->leaves[li];
		size_t t = l->n - ri < k ? l->n - ri : k;

		for (i = 0; i < t; i++) {
			em->bytes -= l->r[ri + i].end - l->r[ri + i].start;
			em->count--;
		}
		memmove(&l->r[ri], &l->r[ri + t],
			(l->n - ri - t) * sizeof *l->r);
		l->n -= t;
		k -= t;
		if (l->n == 0)
			remove_leaf(em, li);	/* the next one moves to li */
		else if (k > 0)
			li++;
		ri = 0;
	}

	/* Insert where the run began.  If that leaf went away (it held only
	 * the run), li now names the leaf after it, and index 0 is right;
	 * past the last leaf, append to the last one.
	 */
	li = p.li;
	ri = p.ri;
	if (li >= em->nleaves) {
		if (em->nleaves == 0 && m > 0) {
			insert_leaf(em, 0, spare);
			spare = NULL;
		}
		li = em->nleaves ? em->nleaves - 1 : 0;
		ri = em->nleaves ? em->leaves[li]->n : 0;
	}
	for (i = 0; i < m; i++) {
		struct leaf *l = em->leaves[li];

		if (l->n == LEAF_CAP) {
			struct leaf *nl = spare;
			size_t half = LEAF_CAP / 2;

			spare = NULL;
			insert_leaf(em, li + 1, nl);
			memcpy(nl->r, &l->r[half],
			       (LEAF_CAP - half) * sizeof *l->r);
			nl->n = LEAF_CAP - half;
			l->n = half;
			if (ri > half) {
				li++;
				ri -= half;
				l = nl;
			}
		}
		memmove(&l->r[ri + 1], &l->r[ri], (l->n - ri) * sizeof *l->r);
		l->r[ri] = repl[i];
		l->n++;
		em->bytes += repl[i].end - repl[i].start;
		em->count++;
		ri++;
	}
	free(spare);
	return 0;
}

static int
check_range(uint64_t off, uint64_t len)
{
	if (off + len < off) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
extmap_insert(struct extmap *em, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	struct range merged = { off, end };
	struct pos p, q;
	size_t k = 0;

	if (check_range(off, len) == -1)
		return -1;
	if (len == 0)
		return 0;
	p = find(em, off, true);
	q = p;
	if (q.li < em->nleaves) {
		do {
			const struct range *r = at(em, q);

			if (r->start > end)
				break;
			if (r->start < merged.start)
				merged.start = r->start;
			if (r->end > merged.end)
				merged.end = r->end;
			k++;
		} while (advance(em, &q));
	}
	/* Already wholly present: nothing to do. */
	if (k == 1 && merged.start == at(em, p)->start &&
	    merged.end == at(em, p)->end)
		return 0;
	return splice(em, p, k, &merged, 1);
}

int
extmap_remove(struct extmap *em, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	struct range keep[2];
	struct pos p, q;
	size_t k = 0, m = 0;
	uint64_t first_start = 0, last_end = 0;

	if (check_range(off, len) == -1)
		return -1;
	if (len == 0)
		return 0;
	p = find(em, off, false);
	q = p;
	if (q.li < em->nleaves) {
		do {
			const struct range *r = at(em, q);

			if (r->start >= end)
				break;
			if (k == 0)
				first_start = r->start;
			last_end = r->end;
			k++;
		} while (advance(em, &q));
	}
	if (k == 0)
		return 0;
	if (first_start < off)
		keep[m++] = (struct range) { first_start, off };
	if (last_end > end)
		keep[m++] = (struct range) { end, last_end };
	return splice(em, p, k, keep, m);
}

int
extmap_next(const struct extmap *em, uint64_t off, uint64_t *start,
	    uint64_t *end)
{
	struct pos p = find(em, off, false);
	const struct range *r;

	if (p.li >= em->nleaves)
		return 0;
	r = at(em, p);
	*start = r->start > off ? r->start : off;
	*end = r->end;
	return 1;
}

int
extmap_contains(const struct extmap *em, uint64_t off, uint64_t len)
{
	uint64_t s, e;

	if (len == 0)
		return 1;
	return extmap_next(em, off, &s, &e) && s == off && e >= off + len;
}

size_t
extmap_count(const struct extmap *em)
{
	return em->count;
}

uint64_t
extmap_bytes(const struct extmap *em)
{
	return em->bytes;
}

size_t
extmap_mem_bytes(const struct extmap *em)
{
	return sizeof *em + em->cap * sizeof *em->leaves +
		em->nleaves * sizeof(struct leaf);
}

uint64_t
extmap_bytes_in(const struct extmap *em, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, pos = off, s, e, n = 0;

	while (pos < end && extmap_next(em, pos, &s, &e) && s < end) {
		n += (e < end ? e : end) - s;
		pos = e;
	}
	return n;
}
