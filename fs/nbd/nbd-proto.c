/* SPDX-License-Identifier: MIT */
/* The NBD protocol, server side: negotiation and the request loop.
 *
 * Everything here is driven by bytes from the client, so every length the
 * client sends is checked against a fixed bound before it sizes anything:
 *
 *   option length   <= NBD_MAX_OPTION_LEN (64 KiB), else the connection
 *                      closes (we never skip an unbounded amount);
 *   options         <= NBD_MAX_OPTIONS per handshake, else close;
 *   export names    <= NBD_MAX_NAME, no NUL;
 *   READ/WRITE      <= NBD_MAX_PAYLOAD (32 MiB), else EINVAL; a WRITE's
 *                      payload is skipped (<= NBD_MAX_WRITE_SKIP) to keep
 *                      the framing, or the connection closes;
 *   offset+length   checked as "offset > size || length > size - offset",
 *                      which cannot wrap.
 *
 * Framing invariant: every option and every request is consumed in full
 * (payload included) before the next header is read, or the session ends.
 * There is no partial state between two options, so the negotiation is a
 * plain loop; the handshake deadline lives in the io (nbd-transport.c).
 *
 * TLS (proto.md, "TLS support").  When the caller requires it, every
 * option before a successful STARTTLS is refused with ERR_TLS_REQD (ABORT
 * aside), and EXPORT_NAME, which cannot carry an error, closes.  STARTTLS
 * is acknowledged in plaintext, then hs->starttls turns the io's
 * transport into a TLS session: the same recv/send carry on, so nothing
 * below knows which one it speaks.  No greeting is sent again, and a
 * second STARTTLS is ERR_INVALID.
 *
 * No state is shared: a negotiation or a session uses only its io, its
 * arguments and its stack, so any number run in parallel.  Buffers for
 * payloads come from ops->get_buf and belong to whoever holds them: the
 * loop until it submits, then the submit op.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-proto.h"

static int
send_buf(const struct nbd_io *io, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return io->send(io->ctx, &iov, 1);
}

/* Reads and drops len bytes, in small pieces (len is bounded by callers). */
static int
skip_bytes(const struct nbd_io *io, uint64_t len)
{
	uint8_t scratch[4096];

	while (len > 0) {
		size_t n = len < sizeof scratch ? (size_t)len : sizeof scratch;

		if (io->recv(io->ctx, scratch, n) == -1)
			return -1;
		len -= n;
	}
	return 0;
}

/* One option reply: header, then up to two pieces of data. */
static int
send_rep(const struct nbd_io *io, uint32_t opt, uint32_t type,
	 const void *d1, size_t l1, const void *d2, size_t l2)
{
	uint8_t hdr[20];
	struct iovec iov[3];
	int n = 0;

	put64(hdr, NBD_REP_MAGIC);
	put32(hdr + 8, opt);
	put32(hdr + 12, type);
	put32(hdr + 16, (uint32_t)(l1 + l2));
	iov[n++] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof hdr };
	if (l1)
		iov[n++] = (struct iovec){ .iov_base = (void *)d1, .iov_len = l1 };
	if (l2)
		iov[n++] = (struct iovec){ .iov_base = (void *)d2, .iov_len = l2 };
	return io->send(io->ctx, iov, n);
}

/* An error reply with a fixed message (never a client's string). */
static int
send_err(const struct nbd_io *io, uint32_t opt, uint32_t type,
	 const char *msg)
{
	return send_rep(io, opt, type, msg, strlen(msg), NULL, 0);
}

static int
find_export(const struct nbd_handshake *hs, const char *name,
	    size_t len)
{
	if (len == 0)		/* "" is the default export: the first */
		return hs->nexports > 0 ? 0 : -1;
	for (size_t i = 0; i < hs->nexports; i++) {
		const char *n = hs->exports[i].name;

		if (strlen(n) == len && memcmp(n, name, len) == 0)
			return (int)i;
	}
	return -1;
}

static bool
accepting(const struct nbd_handshake *hs)
{
	return hs->accepting == NULL || hs->accepting(hs->opaque);
}

/* Export idx's description: hs->describe's into buf, or the fixed one
 * (NULL if none).
 */
static const char *
description(const struct nbd_handshake *hs, size_t idx, char *buf,
	    size_t len)
{
	if (hs->describe == NULL)
		return hs->exports[idx].description;
	buf[0] = '\0';
	hs->describe(hs->opaque, idx, buf, len);
	return buf;
}

static int
send_list(const struct nbd_io *io, const struct nbd_handshake *hs)
{
	char dbuf[NBD_MAX_NAME + 1];

	for (size_t i = 0; i < hs->nexports; i++) {
		const struct nbd_export_info *ex = &hs->exports[i];
		size_t nlen = strlen(ex->name);
		const char *desc = description(hs, i, dbuf, sizeof dbuf);
		uint8_t head[4 + NBD_MAX_NAME];

		if (nlen > NBD_MAX_NAME)
			nlen = NBD_MAX_NAME;
		put32(head, (uint32_t)nlen);
		memcpy(head + 4, ex->name, nlen);
		if (send_rep(io, NBD_OPT_LIST, NBD_REP_SERVER, head, 4 + nlen,
			     desc ? desc : "", desc ? strnlen(desc, NBD_MAX_NAME) :
			     0) == -1)
			return -1;
	}
	return send_rep(io, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0, NULL, 0);
}

/* NBD_OPT_INFO / NBD_OPT_GO.  data holds the whole option (len bytes).
 * Returns the export index (GO: transmission starts), -2 when the option
 * was answered and haggling goes on, or -1 with errno (io failure).
 */
#define PRESENTED " colofs-gen="
#define PRESENTED_LEN (sizeof PRESENTED - 1 + 16)

/* A colofs primary's export name ends with the generation it syncs
 * against (primary-link.c): that generation, and *namelen without it; or
 * 0 and the name as is.  Disk names have no blank (config.c), so a name
 * of another kind cannot look like one.
 */
static uint64_t
presented(const char *name, uint32_t *namelen)
{
	const char *t;
	uint64_t v = 0;
	size_t i;

	if (*namelen <= PRESENTED_LEN)
		return 0;
	t = name + *namelen - PRESENTED_LEN;
	if (memcmp(t, PRESENTED, sizeof PRESENTED - 1) != 0)
		return 0;
	t += sizeof PRESENTED - 1;
	for (i = 0; i < 16; i++) {
		char ch = t[i];

		if (ch >= '0' && ch <= '9')
			v = v << 4 | (uint64_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v = v << 4 | (uint64_t)(ch - 'a' + 10);
		else
			return 0;
	}
	*namelen -= (uint32_t)PRESENTED_LEN;
	return v;
}

static int
opt_info_go(const struct nbd_io *io, const struct nbd_handshake *hs,
	    uint32_t opt, const uint8_t *data, uint32_t len)
{
	uint32_t namelen;
	uint16_t ninfos;
	const char *name;
	const uint8_t *infos;
	unsigned requested = 0;
	uint64_t gen;
	int idx;

	/* Lengths are checked by subtraction: nothing here can wrap. */
	if (len < 6)
		goto invalid;
	namelen = get32(data);
	if (namelen > len - 6)
		goto invalid;
	ninfos = get16(data + 4 + namelen);
	if ((uint64_t)len != 6 + (uint64_t)namelen + 2 * (uint64_t)ninfos)
		goto invalid;
	name = (const char *)data + 4;
	if (namelen > NBD_MAX_NAME || memchr(name, '\0', namelen))
		goto invalid;
	infos = data + 6 + namelen;
	for (uint16_t i = 0; i < ninfos; i++) {
		uint16_t t = get16(infos + 2 * i);

		if (t <= NBD_INFO_BLOCK_SIZE)
			requested |= 1u << t;	/* unknown: ignored */
	}

	gen = presented(name, &namelen);
	idx = find_export(hs, name, namelen);
	if (idx < 0) {
		if (send_err(io, opt, NBD_REP_ERR_UNKNOWN,
			     "no such export") == -1)
			return -1;
		return -2;
	}
	if (opt == NBD_OPT_GO && !accepting(hs)) {
		if (send_err(io, opt, NBD_REP_ERR_SHUTDOWN,
			     "the secondary no longer accepts primary writes (failover)") == -1)
			return -1;
		return -2;
	}

	const struct nbd_export_info *ex = &hs->exports[idx];
	char dbuf[NBD_MAX_NAME + 1];
	const char *desc;
	uint8_t b[14];

	/* NBD_INFO_EXPORT always: clients (QEMU) need it unasked. */
	put16(b, NBD_INFO_EXPORT);
	put64(b + 2, ex->size);
	put16(b + 10, ex->tflags);
	if (send_rep(io, opt, NBD_REP_INFO, b, 12, NULL, 0) == -1)
		return -1;
	if (requested & (1u << NBD_INFO_NAME)) {
		put16(b, NBD_INFO_NAME);
		if (send_rep(io, opt, NBD_REP_INFO, b, 2, ex->name,
			     strnlen(ex->name, NBD_MAX_NAME)) == -1)
			return -1;
	}
	desc = requested & (1u << NBD_INFO_DESCRIPTION) ?
	       description(hs, (size_t)idx, dbuf, sizeof dbuf) : NULL;
	if (desc != NULL) {
		put16(b, NBD_INFO_DESCRIPTION);
		if (send_rep(io, opt, NBD_REP_INFO, b, 2, desc,
			     strnlen(desc, NBD_MAX_NAME)) == -1)
			return -1;
	}
	/* Sent even unasked: a client that did not ask may ignore it, and
	 * min 1 keeps QEMU from read-modify-write through NBD.
	 */
	put16(b, NBD_INFO_BLOCK_SIZE);
	put32(b + 2, 1);
	put32(b + 6, NBD_PREF_BLOCK);
	put32(b + 10, NBD_MAX_PAYLOAD);
	if (send_rep(io, opt, NBD_REP_INFO, b, 14, NULL, 0) == -1)
		return -1;
	if (send_rep(io, opt, NBD_REP_ACK, NULL, 0, NULL, 0) == -1)
		return -1;
	if (opt == NBD_OPT_GO && hs->presented != NULL)
		*hs->presented = gen;
	return opt == NBD_OPT_GO ? idx : -2;

invalid:
	if (send_err(io, opt, NBD_REP_ERR_INVALID, "malformed option") == -1)
		return -1;
	return -2;
}

static int
opt_export_name(const struct nbd_io *io,
		const struct nbd_handshake *hs, const uint8_t *data,
		uint32_t len, bool no_zeroes)
{
	uint8_t rep[8 + 2 + 124];
	int idx;

	/* No way to answer an error here: the spec says close. */
	if (len > NBD_MAX_NAME || memchr(data, '\0', len)) {
		errno = EPROTO;
		return -1;
	}
	idx = find_export(hs, (const char *)data, len);
	if (idx < 0) {
		errno = ENOENT;
		return -1;
	}
	if (!accepting(hs)) {
		errno = ESHUTDOWN;
		return -1;
	}
	memset(rep, 0, sizeof rep);
	put64(rep, hs->exports[idx].size);
	put16(rep + 8, hs->exports[idx].tflags);
	if (send_buf(io, rep, no_zeroes ? 10 : sizeof rep) == -1)
		return -1;
	return idx;
}

int
nbd_negotiate(const struct nbd_io *io, const struct nbd_handshake *hs)
{
	uint8_t greet[18], cf[4], oh[16];
	uint8_t *data = NULL;
	uint32_t cflags;
	bool no_zeroes, tls_up = false;
	int ret = -1, saved;

	put64(greet, NBD_INIT_MAGIC);
	put64(greet + 8, NBD_OPTS_MAGIC);
	put16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (send_buf(io, greet, sizeof greet) == -1 ||
	    io->recv(io->ctx, cf, 4) == -1)
		return -1;
	cflags = get32(cf);
	/* Unknown bits, or an old non-fixed client: we speak fixed only. */
	if ((cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) ||
	    !(cflags & NBD_FLAG_C_FIXED_NEWSTYLE)) {
		errno = EPROTO;
		return -1;
	}
	no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

	data = malloc(NBD_MAX_OPTION_LEN);
	if (data == NULL)
		return -1;
	for (int n = 0;; n++) {
		uint32_t opt, len;

		if (n >= NBD_MAX_OPTIONS) {
			errno = EPROTO;
			goto out;
		}
		if (io->recv(io->ctx, oh, sizeof oh) == -1)
			goto out;
		opt = get32(oh + 8);
		len = get32(oh + 12);
		if (get64(oh) != NBD_OPTS_MAGIC || len > NBD_MAX_OPTION_LEN) {
			errno = EPROTO;
			goto out;
		}
		if (io->recv(io->ctx, data, len) == -1)
			goto out;

		/* TLS required and not up yet: only STARTTLS and ABORT. */
		if (hs->tls_required && !tls_up && opt != NBD_OPT_STARTTLS &&
		    opt != NBD_OPT_ABORT) {
			if (hs->tls_refused)
				hs->tls_refused(hs->opaque);
			if (opt == NBD_OPT_EXPORT_NAME) {
				errno = EACCES;
				goto out;
			}
			if (send_err(io, opt, NBD_REP_ERR_TLS_REQD,
				     "TLS is required: send NBD_OPT_STARTTLS first") == -1)
				goto out;
			continue;
		}

		switch (opt) {
		case NBD_OPT_EXPORT_NAME:
			ret = opt_export_name(io, hs, data, len, no_zeroes);
			goto out;
		case NBD_OPT_ABORT:
			/* The client may not wait for this ACK: ignore errors. */
			send_rep(io, opt, NBD_REP_ACK, NULL, 0, NULL, 0);
			errno = ECANCELED;
			goto out;
		case NBD_OPT_LIST:
			if (len != 0) {
				if (send_err(io, opt, NBD_REP_ERR_INVALID,
					     "LIST takes no data") == -1)
					goto out;
			} else if (send_list(io, hs) == -1) {
				goto out;
			}
			break;
		case NBD_OPT_STARTTLS:
			if (len != 0) {
				if (send_err(io, opt, NBD_REP_ERR_INVALID,
					     "STARTTLS takes no data") == -1)
					goto out;
			} else if (hs->starttls == NULL) {
				if (send_err(io, opt, NBD_REP_ERR_POLICY,
					     "TLS is not enabled on this server") == -1)
					goto out;
			} else if (tls_up) {
				if (send_err(io, opt, NBD_REP_ERR_INVALID,
					     "TLS is already on") == -1)
					goto out;
			} else {
				if (send_rep(io, opt, NBD_REP_ACK, NULL, 0,
					     NULL, 0) == -1 ||
				    hs->starttls(hs->opaque) == -1)
					goto out;
				tls_up = true;
			}
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO: {
			int r = opt_info_go(io, hs, opt, data, len);

			if (r == -1)
				goto out;
			if (r >= 0) {
				ret = r;
				goto out;
			}
			break;
		}
		default:
			/* STRUCTURED_REPLY, META_CONTEXT, EXTENDED_HEADERS,
			 * anything unknown: the payload is consumed already.
			 */
			if (send_err(io, opt, NBD_REP_ERR_UNSUP,
				     "option not supported") == -1)
				goto out;
			break;
		}
	}
out:
	saved = errno;
	free(data);
	errno = saved;
	return ret;
}

int
nbd_request_decode(const uint8_t hdr[NBD_REQUEST_SIZE],
		   struct nbd_request *req)
{
	if (get32(hdr) != NBD_REQUEST_MAGIC)
		return -1;
	req->flags = get16(hdr + 4);
	req->type = get16(hdr + 6);
	req->cookie = get64(hdr + 8);
	req->offset = get64(hdr + 16);
	req->length = get32(hdr + 24);
	return 0;
}

static bool
beyond(const struct nbd_request *req, uint64_t size)
{
	return req->offset > size || req->length > size - req->offset;
}

uint32_t
nbd_request_check(const struct nbd_request *req, uint64_t size,
		  uint16_t tflags)
{
	bool ro = tflags & NBD_FLAG_READ_ONLY;

	if (req->flags & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE))
		return NBD_EINVAL;
	if ((req->flags & NBD_CMD_FLAG_NO_HOLE) &&
	    req->type != NBD_CMD_WRITE_ZEROES)
		return NBD_EINVAL;
	if ((req->flags & NBD_CMD_FLAG_FUA) && !(tflags & NBD_FLAG_SEND_FUA))
		return NBD_EINVAL;

	switch (req->type) {
	case NBD_CMD_READ:
		if (req->length > NBD_MAX_PAYLOAD || beyond(req, size))
			return NBD_EINVAL;
		return 0;
	case NBD_CMD_WRITE:
		if (ro)
			return NBD_EPERM;
		if (req->length > NBD_MAX_PAYLOAD)
			return NBD_EINVAL;
		return beyond(req, size) ? NBD_ENOSPC : 0;
	case NBD_CMD_DISC:
		return 0;
	case NBD_CMD_FLUSH:
		return (tflags & NBD_FLAG_SEND_FLUSH) ? 0 : NBD_EINVAL;
	case NBD_CMD_TRIM:
		if (!(tflags & NBD_FLAG_SEND_TRIM))
			return NBD_EINVAL;
		if (ro)
			return NBD_EPERM;
		return beyond(req, size) ? NBD_EINVAL : 0;
	case NBD_CMD_WRITE_ZEROES:
		if (!(tflags & NBD_FLAG_SEND_WRITE_ZEROES))
			return NBD_EINVAL;
		if (ro)
			return NBD_EPERM;
		return beyond(req, size) ? NBD_ENOSPC : 0;
	default:
		return NBD_EINVAL;
	}
}

uint32_t
nbd_errno_to_nbd(int err)
{
	switch (err) {
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case EIO:
		return NBD_EIO;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

const char *
nbd_end_name(enum nbd_end e)
{
	switch (e) {
	case NBD_END_DISC: return "disc";
	case NBD_END_EOF: return "eof";
	case NBD_END_PROTOCOL: return "protocol";
	case NBD_END_STOPPED: return "stopped";
	}
	abort();
}

void
nbd_reply_encode(uint8_t out[NBD_REPLY_SIZE], uint64_t cookie,
		 uint32_t nbd_err)
{
	put32(out, NBD_SIMPLE_REPLY_MAGIC);
	put32(out + 4, nbd_err);
	put64(out + 8, cookie);
}

/* A WRITE that will not be executed: keep the framing by consuming its
 * payload (bounded), then answer err.  0 to go on, or -1 and *end.
 */
static int
refuse_write(const struct nbd_io *io,
	     const struct nbd_session_ops *ops, void *opaque,
	     const struct nbd_request *req, uint32_t err,
	     enum nbd_end *end)
{
	if (req->length > NBD_MAX_WRITE_SKIP) {
		/* Too much to skip: answer, then close (as qemu-nbd). */
		ops->reply_error(opaque, req->cookie, err);
		*end = NBD_END_PROTOCOL;
		return -1;
	}
	if (skip_bytes(io, req->length) == -1 ||
	    ops->reply_error(opaque, req->cookie, err) == -1) {
		*end = NBD_END_EOF;
		return -1;
	}
	return 0;
}

enum nbd_end
nbd_transmission(const struct nbd_io *io,
		 const struct nbd_export_info *ex,
		 const struct nbd_session_ops *ops, void *opaque)
{
	uint8_t hdr[NBD_REQUEST_SIZE];
	struct nbd_request req;

	for (;;) {
		uint32_t err;
		void *buf = NULL;

		if (io->recv(io->ctx, hdr, sizeof hdr) == -1)
			return NBD_END_EOF;
		/* The framing is lost: nothing safe to answer. */
		if (nbd_request_decode(hdr, &req) == -1)
			return NBD_END_PROTOCOL;
		if (req.type == NBD_CMD_DISC)
			return NBD_END_DISC;
		err = nbd_request_check(&req, ex->size, ex->tflags);

		if (req.type == NBD_CMD_WRITE) {
			enum nbd_end e;

			if (err == 0 && req.length > 0) {
				buf = ops->get_buf(opaque, req.length);
				if (buf == NULL)
					err = nbd_errno_to_nbd(errno);
			}
			if (err) {
				if (buf)
					ops->put_buf(opaque, buf);
				if (refuse_write(io, ops, opaque, &req, err,
						 &e) == -1)
					return e;
				continue;
			}
			/* The whole payload, or nothing is applied. */
			if (req.length > 0 &&
			    io->recv(io->ctx, buf, req.length) == -1) {
				ops->put_buf(opaque, buf);
				return NBD_END_EOF;
			}
		}
		/* A READ's buffer is the submit op's business, when it
		 * executes: a queued READ must pin no memory.
		 */

		if (err) {
			if (ops->reply_error(opaque, req.cookie, err) == -1)
				return NBD_END_EOF;
			continue;
		}
		if (ops->submit(opaque, &req, buf) == -1)
			return NBD_END_STOPPED;
	}
}
