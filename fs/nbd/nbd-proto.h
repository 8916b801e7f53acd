/* SPDX-License-Identifier: MIT */
#ifndef COLOFS_NBD_PROTO_H
#define COLOFS_NBD_PROTO_H

/* The NBD wire protocol, server side (NetworkBlockDevice/nbd doc/proto.md):
 * fixed-newstyle negotiation and the transmission phase with simple
 * replies.  It knows nothing of sockets, threads or the secondary: bytes
 * come and go through a struct nbd_io, requests leave through a struct
 * nbd_session_ops.  nbd.c drives it over sockets; the unit tests and the
 * fuzz target drive it from memory.
 */

#include <stdbool.h>
#include <stddef.h>
#include <endian.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

/* Handshake magics and flags. */
#define NBD_INIT_MAGIC		0x4e42444d41474943ULL	/* "NBDMAGIC" */
#define NBD_OPTS_MAGIC		0x49484156454F5054ULL	/* "IHAVEOPT" */
#define NBD_REP_MAGIC		0x0003e889045565a9ULL
#define NBD_FLAG_FIXED_NEWSTYLE	(1u << 0)
#define NBD_FLAG_NO_ZEROES	(1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE NBD_FLAG_FIXED_NEWSTYLE
#define NBD_FLAG_C_NO_ZEROES	NBD_FLAG_NO_ZEROES

/* Options. */
#define NBD_OPT_EXPORT_NAME	1
#define NBD_OPT_ABORT		2
#define NBD_OPT_LIST		3
#define NBD_OPT_STARTTLS	5
#define NBD_OPT_INFO		6
#define NBD_OPT_GO		7
#define NBD_OPT_STRUCTURED_REPLY 8

/* Option replies. */
#define NBD_REP_ACK		1
#define NBD_REP_SERVER		2
#define NBD_REP_INFO		3
#define NBD_REP_ERR(n)		(0x80000000u + (n))
#define NBD_REP_ERR_UNSUP	NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY	NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID	NBD_REP_ERR(3)
#define NBD_REP_ERR_UNKNOWN	NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN	NBD_REP_ERR(7)
#define NBD_REP_ERR_TLS_REQD	NBD_REP_ERR(5)
#define NBD_REP_ERR_TOO_BIG	NBD_REP_ERR(9)

#define NBD_INFO_EXPORT		0
#define NBD_INFO_NAME		1
#define NBD_INFO_DESCRIPTION	2
#define NBD_INFO_BLOCK_SIZE	3

/* Transmission flags (16 bits, per export). */
#define NBD_FLAG_HAS_FLAGS	(1u << 0)
#define NBD_FLAG_READ_ONLY	(1u << 1)
#define NBD_FLAG_SEND_FLUSH	(1u << 2)
#define NBD_FLAG_SEND_FUA	(1u << 3)
#define NBD_FLAG_SEND_TRIM	(1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN	(1u << 8)

/* Requests and simple replies. */
#define NBD_REQUEST_MAGIC	0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	0x67446698u
#define NBD_REQUEST_SIZE	28
#define NBD_REPLY_SIZE		16

#define NBD_CMD_READ		0
#define NBD_CMD_WRITE		1
#define NBD_CMD_DISC		2
#define NBD_CMD_FLUSH		3
#define NBD_CMD_TRIM		4
#define NBD_CMD_WRITE_ZEROES	6

#define NBD_CMD_FLAG_FUA	(1u << 0)
#define NBD_CMD_FLAG_NO_HOLE	(1u << 1)

/* Errors on the wire. */
#define NBD_EPERM		1
#define NBD_EIO			5
#define NBD_ENOMEM		12
#define NBD_EINVAL		22
#define NBD_ENOSPC		28
#define NBD_EOVERFLOW		75
#define NBD_ENOTSUP		95
#define NBD_ESHUTDOWN		108

/* Limits.  What a client can make us allocate or skip is bounded by
 * these, never by a length it sent.
 */
#define NBD_MAX_PAYLOAD		(32u << 20)	/* BLOCK_SIZE maximum */
#define NBD_PREF_BLOCK		4096u		/* BLOCK_SIZE preferred */
#define NBD_MAX_OPTION_LEN	(64u << 10)	/* larger: close */
#define NBD_MAX_OPTIONS		64		/* per handshake */
#define NBD_MAX_NAME		4096		/* spec: strings <= 4096 */
#define NBD_MAX_WRITE_SKIP	(64u << 20)	/* oversized WRITE: skip up to */

/* How bytes move.  Both return 0 once every byte moved, or -1 with errno
 * (ECONNRESET for a peer that closed, ETIMEDOUT past a deadline).
 */
struct nbd_io {
	int (*recv)(void *ctx, void *buf, size_t len);
	int (*send)(void *ctx, const struct iovec *iov, int iovcnt);
	void *ctx;
};

struct nbd_export_info {
	const char *name;
	const char *description;
	uint64_t size;
	uint16_t tflags;
};

struct nbd_handshake {
	const struct nbd_export_info *exports;
	size_t nexports;
	/* 0 refuses GO and EXPORT_NAME (the secondary is past failover).
	 * NULL: always accepting.
	 */
	int (*accepting)(void *opaque);
	void *opaque;
	/* TLS (proto.md, "TLS support").  starttls NULL: STARTTLS is refused
	 * (ERR_POLICY).  Otherwise, after the ACK went out in plaintext,
	 * starttls runs the TLS handshake on the io's transport and returns
	 * 0 once the io speaks TLS, or -1 with errno (the connection
	 * closes).  tls_required: until then every option but STARTTLS and
	 * ABORT is answered NBD_REP_ERR_TLS_REQD, and EXPORT_NAME (which has
	 * no error reply) closes the connection with EACCES; tls_refused,
	 * if not NULL, is called for each such refusal.
	 */
	int (*starttls)(void *opaque);
	bool tls_required;
	void (*tls_refused)(void *opaque);
	/* NULL, or writes export idx's description (NUL-terminated, at
	 * most len bytes) into buf: sent instead of exports[idx].description
	 * in NBD_INFO_DESCRIPTION and LIST, for a text that changes (the
	 * secondary's generation identifiers, core/gi.h).
	 */
	void (*describe)(void *opaque, size_t idx, char *buf, size_t len);
	/* NULL, or where GO puts the generation the client presented after
	 * the export's name ("NAME colofs-gen=HEX": a colofs primary about
	 * to sync, core/gi.h); 0 when it presented none.
	 */
	uint64_t *presented;
};

/* Sends the greeting and haggles options.  Returns the index of the export
 * the client chose (transmission starts), or -1 with errno: ECONNRESET or
 * ETIMEDOUT (the io failed), EPROTO (bad magic, flags, an option too long
 * or too many), ENOENT (EXPORT_NAME of an unknown export), ESHUTDOWN
 * (refused: not accepting), ECANCELED (the client sent ABORT), EACCES
 * (EXPORT_NAME before the TLS that hs->tls_required asks for), or
 * whatever hs->starttls failed with.
 */
int nbd_negotiate(const struct nbd_io *io, const struct nbd_handshake *hs);

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/* Decodes a 28-byte header: 0, or -1 for a bad magic. */
int nbd_request_decode(const uint8_t hdr[NBD_REQUEST_SIZE],
		       struct nbd_request *req);
/* 0 if req is valid for an export of this size and flags, else the NBD
 * error to answer (EINVAL: unknown command or flag, too long, beyond the
 * end of a read or trim; ENOSPC: a write beyond the end).
 */
uint32_t nbd_request_check(const struct nbd_request *req, uint64_t size,
			   uint16_t tflags);
/* errno -> NBD error (anything unknown -> NBD_EIO). */
uint32_t nbd_errno_to_nbd(int err);

/* Fills the 16-byte simple reply header. */
void nbd_reply_encode(uint8_t out[NBD_REPLY_SIZE], uint64_t cookie,
		      uint32_t nbd_err);

/* What the transmission loop hands on.  Every call gets the opaque. */
struct nbd_session_ops {
	/* A buffer of at least len (> 0) bytes for a WRITE's payload, or
	 * NULL with errno (the request is answered with the mapped error).
	 * May block: that is how the reader stops reading (back-pressure).
	 * READs get none: the submit op finds their buffer when it runs.
	 */
	void *(*get_buf)(void *opaque, size_t len);
	/* Takes back a buffer get_buf gave that was not submitted. */
	void (*put_buf)(void *opaque, void *buf);
	/* Executes a valid request, now or later, and sends its reply.  Owns
	 * buf (a WRITE's, holding the whole payload; NULL for the others and
	 * for length 0).  -1 stops the session.
	 */
	int (*submit)(void *opaque, const struct nbd_request *req, void *buf);
	/* Sends an error reply for a request refused before execution.
	 * 0, or -1 (the send failed: the session stops).
	 */
	int (*reply_error)(void *opaque, uint64_t cookie, uint32_t nbd_err);
};

enum nbd_end {
	NBD_END_DISC,		/* NBD_CMD_DISC: a clean end */
	NBD_END_EOF,		/* the client went away (or recv failed) */
	NBD_END_PROTOCOL,	/* bad magic, unskippable payload */
	NBD_END_STOPPED,	/* an op asked to stop */
};
const char *nbd_end_name(enum nbd_end e);	/* aborts if unknown */

/* Reads requests until the session ends.  Validates each, reads a WRITE's
 * payload in full before handing it on (a payload that never fully arrives
 * is never submitted), answers invalid requests itself.  Does not wait for
 * submitted requests: the caller drains them.
 */
enum nbd_end nbd_transmission(const struct nbd_io *io,
			      const struct nbd_export_info *ex,
			      const struct nbd_session_ops *ops, void *opaque);

/* Big-endian fields of the wire format, for the protocol and its tests. */
static inline void
put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static inline uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline uint32_t
get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline uint64_t
get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

#endif
