/* SPDX-License-Identifier: MIT */
/* TLS on the NBD listener, with GnuTLS: credentials, one session per
 * connection, the handshake and the authorization of the peer.
 *
 * Credentials.  A struct tls_creds is one generation of what the config
 * names: the PSK table read from tls_psk_file (psktool's "username:hexkey"
 * lines, QEMU's DIR/keys.psk) and the X.509 credentials from
 * tls_certificates (ca-cert.pem, server-cert.pem, server-key.pem, optional
 * ca-crl.pem), plus the priority string.  The server holds the current one
 * (srv->tls_creds under srv->tls_lock, a leaf lock taken for the pointer
 * swap only); every session takes a reference at its start and drops it
 * at its end, so SIGHUP (tls_server_reload) builds a new generation and
 * swaps it in while established sessions keep theirs; the old one goes
 * with its last session.  A reload that fails keeps the current one.
 *
 *   srv->tls_creds ──> creds gen 2 (refs: server + new sessions)
 *   session A ───────> creds gen 1 (refs: sessions still on it)
 *
 * The PSK table is ours (gnutls_psk_set_server_credentials_function), not
 * GnuTLS's file reader, so that the file is read once per generation and
 * a broken file is reported at start and at reload rather than at every
 * handshake.
 *
 * Sessions.  The connection thread runs the handshake after the STARTTLS
 * ACK (nbd-proto.c), under the connection's handshake deadline, on the
 * blocking socket (GnuTLS's own fd transport).  Then the identity (the PSK
 * username, or the client certificate's distinguished name) is checked
 * against tls_authz.  Only a session that passed both is set on the
 * connection (c->tls), and from then on nbd-transport.c sends and receives
 * through it.  GnuTLS lets one thread receive while another sends on the
 * same session; sends are serialized by the connection's send_lock.
 *
 * Refusals are counted (status) and warned about at most once a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "nbd-internal.h"

#define TLS_PSK_FILE_MAX	(1u << 20)
#define TLS_PSK_MAX_KEYS	4096
#define TLS_PSK_USER_MAX	128	/* psktool's limit is lower */
#define TLS_RECORD		16384	/* TLS's maximum plaintext record */
#define TLS_IDENTITY_MAX	1024
#define TLS_BYE_MS		1000

/* TLS 1.2 or newer (proto.md), AEAD ciphers only, AES-GCM first and our
 * order over the client's: with AES-NI, GnuTLS's AES-128-GCM runs at
 * gigabytes a second where ChaCha20-Poly1305 (which libnbd's clients
 * would pick) is an order of magnitude slower (gnutls-cli
 * --benchmark-ciphers).  Plus the PSK key exchanges QEMU uses.
 */
#define TLS_PRIORITY		"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:" \
				"-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
				"+CHACHA20-POLY1305:%SERVER_PRECEDENCE"
#define TLS_PRIORITY_PSK	TLS_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"

struct psk_key {
	char *user;
	gnutls_datum_t key;
};

struct tls_creds {
	atomic_uint refs;
	struct psk_key *keys;		/* NULL unless PSK */
	size_t nkeys;
	gnutls_psk_server_credentials_t psk;
	gnutls_certificate_credentials_t x509;
	gnutls_priority_t prio;
	bool verify_peer;
};

struct tls_session {
	gnutls_session_t s;
	struct tls_creds *creds;
	unsigned timeout_ms;		/* the record timeout now set */
	char identity[TLS_IDENTITY_MAX];
	char unknown_user[130];		/* a PSK user not in the file */
	char psk_user[130];		/* the PSK user whose key we gave */
};

static void
creds_unref(struct tls_creds *cr)
{
	if (cr == NULL || atomic_fetch_sub(&cr->refs, 1) != 1)
		return;
	if (cr->psk)
		gnutls_psk_free_server_credentials(cr->psk);
	if (cr->x509)
		gnutls_certificate_free_credentials(cr->x509);
	if (cr->prio)
		gnutls_priority_deinit(cr->prio);
	for (size_t i = 0; i < cr->nkeys; i++) {
		free(cr->keys[i].user);
		if (cr->keys[i].key.data) {
			gnutls_memset(cr->keys[i].key.data, 0,
				      cr->keys[i].key.size);
			gnutls_free(cr->keys[i].key.data);
		}
	}
	free(cr->keys);
	free(cr);
}

/* Reads a whole small file. NULL (logged) on failure. */
static char *
read_small_file(const char *path, size_t max, size_t *lenp)
{
	char *buf = NULL;
	size_t len = 0;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		goto fail;
	buf = malloc(max + 1);
	if (buf == NULL)
		goto fail;
	for (;;) {
		ssize_t n = read(fd, buf + len, max + 1 - len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	close(fd);
	buf[len] = '\0';
	*lenp = len;
	return buf;
fail:
	saved = errno;
	log_error("tls: %s: %m", path);
	if (fd != -1)
		close(fd);
	if (buf)
		gnutls_memset(buf, 0, len);
	free(buf);
	errno = saved;
	return NULL;
}

/* psktool's format: "username:hexkey" per line.  Blank lines and lines
 * starting with '#' are skipped; anything else malformed is an error
 * (naming the line, never the key).
 */
static int
psk_load(struct tls_creds *cr, const char *path)
{
	size_t len, lineno = 0;
	char *buf, *line, *next;
	int rc = -1;

	buf = read_small_file(path, TLS_PSK_FILE_MAX, &len);
	if (buf == NULL)
		return -1;
	for (line = buf; line != NULL && *line != '\0'; line = next) {
		char *colon, *end;
		gnutls_datum_t hex, key;
		struct psk_key *k;

		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		end = line + strlen(line);
		if (end > line && end[-1] == '\r')
			*--end = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		colon = strchr(line, ':');
		if (colon == NULL || colon == line ||
		    colon - line > TLS_PSK_USER_MAX || colon[1] == '\0') {
			log_error("tls: %s:%zu: expected username:hexkey",
				  path, lineno);
			goto out;
		}
		*colon = '\0';
		for (size_t i = 0; i < cr->nkeys; i++) {
			if (strcmp(cr->keys[i].user, line) == 0) {
				log_error("tls: %s:%zu: duplicate username '%s'",
					  path, lineno, line);
				goto out;
			}
		}
		hex.data = (unsigned char *)colon + 1;
		hex.size = (unsigned)(end - (colon + 1));
		if (gnutls_hex_decode2(&hex, &key) < 0 || key.size == 0) {
			log_error("tls: %s:%zu: the key of '%s' is not hexadecimal",
				  path, lineno, line);
			goto out;
		}
		if (cr->nkeys == TLS_PSK_MAX_KEYS) {
			gnutls_free(key.data);
			log_error("tls: %s: more than %u keys", path,
				  TLS_PSK_MAX_KEYS);
			goto out;
		}
		k = realloc(cr->keys, (cr->nkeys + 1) * sizeof *k);
		if (k == NULL) {
			gnutls_free(key.data);
			log_error("tls: %s: %m", path);
			goto out;
		}
		cr->keys = k;
		k[cr->nkeys].key = key;
		k[cr->nkeys].user = strdup(line);
		cr->nkeys++;
		if (k[cr->nkeys - 1].user == NULL) {
			log_error("tls: %s: %m", path);
			goto out;
		}
	}
	if (cr->nkeys == 0) {
		log_error("tls: %s: no keys", path);
		goto out;
	}
	rc = 0;
out:
	gnutls_memset(buf, 0, len);
	free(buf);
	return rc;
}

/* GnuTLS asks for the key of username (from the handshake): a copy in
 * key->data (GnuTLS frees it), or -1 for an unknown user.
 */
static int
psk_lookup(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
	struct tls_session *t = gnutls_session_get_ptr(s);
	const struct tls_creds *cr = t->creds;

	for (size_t i = 0; i < cr->nkeys; i++) {
		if (strcmp(cr->keys[i].user, username) != 0)
			continue;
		key->data = gnutls_malloc(cr->keys[i].key.size);
		if (key->data == NULL)
			return -1;
		memcpy(key->data, cr->keys[i].key.data, cr->keys[i].key.size);
		key->size = cr->keys[i].key.size;
		/* The handshake may fail before GnuTLS records the user. */
		snprintf(t->psk_user, sizeof t->psk_user, "%s", username);
		return 0;
	}
	/* GnuTLS then says "Error in password/key file.", which reads as
	 * if our file were broken: say what it is (tls_refused).
	 */
	snprintf(t->unknown_user, sizeof t->unknown_user, "%s", username);
	return -1;
}

static int
x509_load(struct tls_creds *cr, const char *dir)
{
	char ca[PATH_MAX], crl[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	int rc;

	snprintf(ca, sizeof ca, "%s/ca-cert.pem", dir);
	snprintf(crl, sizeof crl, "%s/ca-crl.pem", dir);
	snprintf(cert, sizeof cert, "%s/server-cert.pem", dir);
	snprintf(key, sizeof key, "%s/server-key.pem", dir);

	rc = gnutls_certificate_allocate_credentials(&cr->x509);
	if (rc < 0)
		goto gnutls_fail;
	rc = gnutls_certificate_set_x509_trust_file(cr->x509, ca,
						    GNUTLS_X509_FMT_PEM);
	if (rc <= 0) {
		log_error("tls: %s: %s", ca, rc == 0 ? "no certificate" :
			  gnutls_strerror(rc));
		return -1;
	}
	if (access(crl, F_OK) == 0) {
		rc = gnutls_certificate_set_x509_crl_file(cr->x509, crl,
							  GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			log_error("tls: %s: %s", crl, gnutls_strerror(rc));
			return -1;
		}
	}
	rc = gnutls_certificate_set_x509_key_file(cr->x509, cert, key,
						  GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		log_error("tls: %s, %s: %s", cert, key, gnutls_strerror(rc));
		return -1;
	}
	gnutls_certificate_set_known_dh_params(cr->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
gnutls_fail:
	log_error("tls: %s: %s", dir, gnutls_strerror(rc));
	return -1;
}

/* A new generation from what cfg names.  NULL (logged) on failure. */
static struct tls_creds *
creds_load(const struct config *cfg)
{
	struct tls_creds *cr;
	int rc;

	cr = calloc(1, sizeof *cr);
	if (cr == NULL) {
		log_error("tls: %m");
		return NULL;
	}
	atomic_init(&cr->refs, 1);
	cr->verify_peer = cfg->tls_verify_peer;
	if (cfg->tls_psk_file) {
		if (psk_load(cr, cfg->tls_psk_file) == -1)
			goto fail;
		rc = gnutls_psk_allocate_server_credentials(&cr->psk);
		if (rc < 0) {
			log_error("tls: %s", gnutls_strerror(rc));
			goto fail;
		}
		gnutls_psk_set_server_credentials_function(cr->psk, psk_lookup);
		gnutls_psk_set_server_known_dh_params(cr->psk,
						      GNUTLS_SEC_PARAM_MEDIUM);
	}
	if (cfg->tls_certificates && x509_load(cr, cfg->tls_certificates) == -1)
		goto fail;
	rc = gnutls_priority_init(&cr->prio, cr->psk ? TLS_PRIORITY_PSK :
				  TLS_PRIORITY, NULL);
	if (rc < 0) {
		log_error("tls: priority: %s", gnutls_strerror(rc));
		goto fail;
	}
	return cr;
fail:
	creds_unref(cr);
	return NULL;
}

int
tls_server_init(struct nbd_server *srv, const struct config *cfg)
{
	srv->cfg = cfg;
	srv->tls = cfg->tls;
	if (cfg->tls == CONFIG_TLS_OFF)
		return 0;
	srv->tls_creds = creds_load(cfg);
	if (srv->tls_creds == NULL) {
		errno = EINVAL;
		return -1;
	}
	log_info("nbd: TLS %s (%s%s%s)", config_tls_name(cfg->tls),
		 cfg->tls_psk_file ? "PSK" : "",
		 cfg->tls_psk_file && cfg->tls_certificates ? ", " : "",
		 cfg->tls_certificates ? (cfg->tls_verify_peer ?
			"X.509, client certificates required" : "X.509") : "");
	return 0;
}

void
tls_server_release(struct nbd_server *srv)
{
	creds_unref(srv->tls_creds);
	srv->tls_creds = NULL;
}

int
nbd_tls_check(const struct config *cfg)
{
	struct tls_creds *cr;

	if (cfg->tls == CONFIG_TLS_OFF)
		return 0;
	cr = creds_load(cfg);
	if (cr == NULL)
		return -1;
	creds_unref(cr);
	return 0;
}

int
tls_server_reload(struct nbd_server *srv)
{
	struct tls_creds *cr, *old;

	if (srv->tls == CONFIG_TLS_OFF) {
		log_info("nbd: reload: TLS is off, no credentials to read");
		return 0;
	}
	cr = creds_load(srv->cfg);
	if (cr == NULL) {
		atomic_fetch_add(&srv->tls_reload_failures, 1);
		log_error("nbd: reload: keeping the credentials in use");
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&srv->tls_lock);
	old = srv->tls_creds;
	srv->tls_creds = cr;
	pthread_mutex_unlock(&srv->tls_lock);
	creds_unref(old);
	atomic_fetch_add(&srv->tls_reloads, 1);
	log_info("nbd: reload: TLS credentials read again; established sessions keep theirs");
	return 0;
}

/* A refused TLS client: counted by the caller, logged (rate-limited,
 * with the peer) and left in .colo/error, in terms of the fix.
 */
static void __attribute__((format(printf, 3, 4)))
tls_refused(struct nbd_conn *c, uint64_t count, const char *fmt, ...)
{
	struct nbd_server *srv = c->srv;
	char why[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	secondary_record_error(srv->r, "nbd: refused %s: TLS: %s", c->peer, why);
	if (ratelimit_allow(&srv->rl_refused, now_ms()))
		log_warn("nbd: conn %llu: refused %s: TLS: %s (%llu so far)",
			 (unsigned long long)c->id, c->peer, why,
			 (unsigned long long)count);
}

/* Why a handshake failed, for the operator: GnuTLS's strings name the
 * alert, not the cause ("An illegal parameter has been received" is a
 * wrong PSK key).
 */
static void
handshake_why(struct tls_session *t, const struct config *cfg, int rc,
	      char *buf, size_t len)
{
	const char *user = t->psk_user;

	if (t->unknown_user[0]) {
		snprintf(buf, len, "PSK user '%s' is not in tls_psk_file %.256s "
			 "(add the client's key there, or fix its username)",
			 t->unknown_user, cfg->tls_psk_file ?
			 cfg->tls_psk_file : "?");
	} else if (*user &&
		   (rc == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
		    rc == GNUTLS_E_DECRYPTION_FAILED ||
		    rc == GNUTLS_E_ERROR_IN_FINISHED_PACKET)) {
		snprintf(buf, len, "wrong key for PSK user '%.128s' (the "
			 "client's key differs from the one in tls_psk_file "
			 "%.256s)", user,
			 cfg->tls_psk_file ? cfg->tls_psk_file : "?");
	} else if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t out = { NULL, 0 };
		unsigned status = gnutls_session_get_verify_cert_status(t->s);

		if (gnutls_certificate_verification_status_print(
			    status, GNUTLS_CRT_X509, &out, 0) == 0)
			snprintf(buf, len, "the client's certificate: %.300s "
				 "(tls_certificates' CA, CRL and clock decide)",
				 (const char *)out.data);
		else
			snprintf(buf, len, "the client's certificate did not "
				 "verify");
		gnutls_free(out.data);
	} else if (rc == GNUTLS_E_NO_CERTIFICATE_FOUND ||
		   rc == GNUTLS_E_CERTIFICATE_REQUIRED) {
		snprintf(buf, len, "the client sent no certificate "
			 "(tls_verify_peer requires one)");
	} else if (rc == GNUTLS_E_TIMEDOUT) {
		snprintf(buf, len, "the handshake did not finish in time");
	} else if (rc == GNUTLS_E_PREMATURE_TERMINATION ||
		   rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
		   rc == GNUTLS_E_PULL_ERROR || rc == GNUTLS_E_PUSH_ERROR) {
		snprintf(buf, len, "the client hung up during the handshake "
			 "(did it reject our certificate or key?)");
	} else {
		snprintf(buf, len, "handshake failed: %s", gnutls_strerror(rc));
	}
}

static void
session_free(struct tls_session *t)
{
	if (t == NULL)
		return;
	if (t->s)
		gnutls_deinit(t->s);
	creds_unref(t->creds);
	free(t);
}

/* The peer's identity, "" if it has none: the PSK username, or the
 * distinguished name of its (verified) certificate.
 */
static void
session_identity(struct tls_session *t)
{
	gnutls_session_t s = t->s;

	t->identity[0] = '\0';
	switch (gnutls_auth_get_type(s)) {
	case GNUTLS_CRD_PSK: {
		const char *u = gnutls_psk_server_get_username(s);

		if (u)
			snprintf(t->identity, sizeof t->identity, "%s", u);
		break;
	}
	case GNUTLS_CRD_CERTIFICATE: {
		const gnutls_datum_t *peers;
		unsigned n = 0;
		gnutls_x509_crt_t crt;
		gnutls_datum_t dn = { NULL, 0 };

		peers = gnutls_certificate_get_peers(s, &n);
		if (peers == NULL || n == 0 || gnutls_x509_crt_init(&crt) < 0)
			break;
		if (gnutls_x509_crt_import(crt, &peers[0],
					   GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0)
			snprintf(t->identity, sizeof t->identity, "%.*s",
				 (int)dn.size, (const char *)dn.data);
		gnutls_free(dn.data);
		gnutls_x509_crt_deinit(crt);
		break;
	}
	default:
		break;
	}
}

static bool
authorized(const struct config *cfg, const char *identity)
{
	if (cfg->nauthz == 0)
		return true;
	if (identity[0] == '\0')
		return false;
	for (size_t i = 0; i < cfg->nauthz; i++)
		if (strcmp(cfg->authz[i], identity) == 0)
			return true;
	return false;
}

int
tls_session_start(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;
	struct tls_session *t;
	int rc;

	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -1;
	pthread_mutex_lock(&srv->tls_lock);
	t->creds = srv->tls_creds;
	atomic_fetch_add(&t->creds->refs, 1);
	pthread_mutex_unlock(&srv->tls_lock);

	/* No session tickets: every connection does a full handshake, so
	 * every identity is checked against today's credentials.
	 */
	rc = gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL |
			 GNUTLS_NO_TICKETS);
	if (rc < 0) {
		t->s = NULL;
		goto gnutls_fail;
	}
	gnutls_session_set_ptr(t->s, t);
	rc = gnutls_priority_set(t->s, t->creds->prio);
	if (rc == 0 && t->creds->psk)
		rc = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, t->creds->psk);
	if (rc == 0 && t->creds->x509)
		rc = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE,
					    t->creds->x509);
	if (rc < 0)
		goto gnutls_fail;
	if (t->creds->x509 && t->creds->verify_peer) {
		/* The client must send a certificate the CA signed, valid
		 * now and not revoked; checked during the handshake.
		 */
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->s, NULL, 0);
	}
	gnutls_transport_set_int(t->s, c->fd);

	for (;;) {
		int64_t left = c->deadline_ms ? c->deadline_ms - now_ms() : 0;

		if (c->deadline_ms && left <= 0) {
			rc = GNUTLS_E_TIMEDOUT;
			break;
		}
		gnutls_handshake_set_timeout(t->s, c->deadline_ms ?
					     (unsigned)left : 0);
		rc = gnutls_handshake(t->s);
		if (rc == 0 || gnutls_error_is_fatal(rc) ||
		    rc == GNUTLS_E_TIMEDOUT)
			break;
	}
	if (rc < 0) {
		char why[600];

		atomic_fetch_add(&srv->tls_handshake_failures, 1);
		handshake_why(t, srv->cfg, rc, why, sizeof why);
		tls_refused(c, atomic_load(&srv->tls_handshake_failures), "%s",
			    why);
		session_free(t);
		errno = rc == GNUTLS_E_TIMEDOUT ? ETIMEDOUT : EACCES;
		return -1;
	}

	session_identity(t);
	if (!authorized(srv->cfg, t->identity)) {
		atomic_fetch_add(&srv->tls_authz_refused, 1);
		tls_refused(c, atomic_load(&srv->tls_authz_refused),
			    "identity '%s' is not "
			    "in tls_authz (add it there, or give the client "
			    "another key or certificate)", t->identity);
		session_free(t);
		errno = EACCES;
		return -1;
	}
	atomic_fetch_add(&srv->tls_sessions, 1);
	log_debug("nbd: conn %llu: TLS up (%s, %s), identity '%s'",
		  (unsigned long long)c->id,
		  gnutls_protocol_get_name(gnutls_protocol_get_version(t->s)),
		  gnutls_cipher_get_name(gnutls_cipher_get(t->s)), t->identity);
	c->tls = t;
	/* Read under srv->lock by the eviction (nbd-conn.c). */
	pthread_mutex_lock(&c->srv->lock);
	c->authenticated = true;
	pthread_mutex_unlock(&c->srv->lock);
	return 0;

gnutls_fail:
	log_error("nbd: conn %llu: TLS: %s", (unsigned long long)c->id,
		  gnutls_strerror(rc));
	session_free(t);
	errno = EIO;
	return -1;
}

void
tls_session_end(struct nbd_conn *c)
{
	struct tls_session *t = c->tls;
	struct timeval tv = { .tv_sec = TLS_BYE_MS / 1000 };

	if (t == NULL)
		return;
	/* close_notify, if the peer still listens; never wait long. */
	if (!atomic_load(&c->broken)) {
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		gnutls_bye(t->s, GNUTLS_SHUT_WR);
	}
	c->tls = NULL;
	session_free(t);
}

int
tls_recv(struct tls_session *t, void *buf, size_t len, int64_t deadline_ms)
{
	uint8_t *p = buf;

	while (len > 0) {
		unsigned timeout = 0;
		ssize_t n;

		if (deadline_ms) {
			int64_t left = deadline_ms - now_ms();

			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			timeout = (unsigned)left;
		}
		if (timeout != t->timeout_ms) {
			gnutls_record_set_timeout(t->s, timeout);
			t->timeout_ms = timeout;
		}
		n = gnutls_record_recv(t->s, p, len);
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		/* Without a deadline, E_AGAIN is the socket's SO_RCVTIMEO
		 * (io_timeout on a stalled payload, nbd-conn.c): the end, as
		 * on a plain socket.
		 */
		if (n == GNUTLS_E_AGAIN && deadline_ms)
			continue;
		if (n == GNUTLS_E_AGAIN) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (n == GNUTLS_E_TIMEDOUT) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (n <= 0) {
			if (n < 0 && n != GNUTLS_E_PREMATURE_TERMINATION)
				log_debug("nbd: TLS recv: %s",
					  gnutls_strerror((int)n));
			errno = ECONNRESET;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
send_all(struct tls_session *t, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = gnutls_record_send(t->s, p, len);

		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0) {
			/* E_AGAIN: the send timeout of the handshake. */
			errno = n == GNUTLS_E_AGAIN ? ETIMEDOUT : EPIPE;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Small pieces (a reply header and the start of its data) share one
 * record; large ones go straight to GnuTLS in whole records, without a
 * copy.
 */
int
tls_send(struct tls_session *t, const struct iovec *iov, int iovcnt)
{
	uint8_t stage[TLS_RECORD];
	size_t used = 0;

	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;

		while (n > 0) {
			size_t take;

			if (used == 0 && n >= TLS_RECORD) {
				take = n - n % TLS_RECORD;
				if (send_all(t, p, take) == -1)
					return -1;
				p += take;
				n -= take;
				continue;
			}
			take = n < TLS_RECORD - used ? n : TLS_RECORD - used;
			memcpy(stage + used, p, take);
			used += take;
			p += take;
			n -= take;
			if (used == TLS_RECORD) {
				if (send_all(t, stage, used) == -1)
					return -1;
				used = 0;
			}
		}
	}
	return used ? send_all(t, stage, used) : 0;
}

void
tls_status(struct nbd_server *srv, FILE *fp)
{
	fprintf(fp, "nbd.tls=%s\n", config_tls_name(srv->tls));
	fprintf(fp, "nbd.tls_sessions=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_sessions));
	fprintf(fp, "nbd.tls_handshake_failures=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_handshake_failures));
	fprintf(fp, "nbd.tls_authz_refused=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_authz_refused));
	fprintf(fp, "nbd.tls_plaintext_refused=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_plaintext_refused));
	fprintf(fp, "nbd.tls_reloads=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_reloads));
	fprintf(fp, "nbd.tls_reload_failures=%llu\n",
		(unsigned long long)atomic_load(&srv->tls_reload_failures));
	fprintf(fp, "nbd.allow_refused=%llu\n",
		(unsigned long long)atomic_load(&srv->allow_refused));
}
