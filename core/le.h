/* SPDX-License-Identifier: MIT */
/* Little-endian integers at any byte address, for colofs's on-disk
 * formats (the failover journal, the activity log, the dirty bitmap).
 */
#ifndef COLOFS_LE_H
#define COLOFS_LE_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void
le_put32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof v);
}

static inline void
le_put64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof v);
}

static inline uint32_t
le_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof v);
	return le32toh(v);
}

static inline uint64_t
le_get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return le64toh(v);
}

#endif
