//go:build ignore
// (The constraint above keeps the go tool from treating this file as part of
// package interop; it is compiled separately with gcc by interop_test.go.)

/*
 * fido2_sockdev: drive authd with libfido2 (>= 1.12) over its CTAPHID Unix
 * socket instead of a hidraw node.
 *
 * libfido2 only opens hidraw paths by itself, so this program installs its
 * own I/O functions with fido_dev_set_io_functions():
 *   open  = connect(2) to the Unix stream socket given as the device path;
 *   write = libfido2 passes 65 bytes (byte 0 is the HID report ID 0x00); send
 *           the 64-byte report that follows and return 65;
 *   read  = receive exactly one 64-byte report (honouring libfido2's timeout).
 * Each connection is one "process" opening the device.
 *
 * Build: gcc -Wall -Werror -o fido2_sockdev fido2_sockdev.c \
 *            $(pkg-config --cflags --libs libfido2)
 *
 * Usage: fido2_sockdev SOCKET COMMAND [options]
 *   info                              getInfo through libfido2
 *   make-cred [--rk] [--pin PIN] [--alg es256|eddsa|rs256] [--rp ID]
 *             [--user NAME] [--cred FILE] [--exclude FILE]
 *   get-assert [--pin PIN] [--rp ID] --cred FILE [--cred FILE ...]
 *             [--discoverable]       (no allow list; verify every result
 *                                     against the --cred files)
 *   set-pin --pin PIN
 *   change-pin --pin OLD --new-pin NEW
 *   credman --pin PIN --rp ID [--cred FILE]
 *   reset
 *   retries [--expect-retries N]
 * Common options:
 *   --expect FIDO_ERR_NAME   the operation must fail with exactly this
 *                            libfido2 error (fido_strerr name); exit 0 then
 *
 * make-cred verifies the attestation with fido_cred_verify_self() (packed
 * self attestation) and stores rp, type, credential id, public key, user id
 * and signature counter in --cred FILE. get-assert verifies every assertion
 * with fido_assert_verify() and that public key, and that the signature
 * counter went up (then updates FILE).
 *
 * Output: one "name: key=value ..." line per fact, "FAIL: ..." lines on
 * failures, and a final "OK <command>" or "FAILED <command>". Exit status 0
 * only on success (or on the --expect'ed error).
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fido.h>
#include <fido/credman.h>
#include <fido/eddsa.h>
#include <fido/es256.h>

#define REPORT_LEN 64
#define MAX_CREDS 8
#define DEFAULT_TIMEOUT_MS 30000

/* ------------------------------------------------------------------ */
/* Socket-backed HID I/O */

struct sockdev {
	int fd;
};

static void *
sock_open(const char *path)
{
	struct sockaddr_un sa;
	struct sockdev *d;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "sock_open: path too long: %s\n", path);
		return NULL;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		perror("sock_open: socket");
		return NULL;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "sock_open: connect %s: %s\n", path,
		    strerror(errno));
		close(fd);
		return NULL;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		close(fd);
		return NULL;
	}
	d->fd = fd;
	return d;
}

static void
sock_close(void *handle)
{
	struct sockdev *d = handle;

	if (d == NULL)
		return;
	close(d->fd);
	free(d);
}

/* libfido2 asks for one report (64 bytes); ms < 0 means wait forever. */
static int
sock_read(void *handle, unsigned char *buf, size_t len, int ms)
{
	struct sockdev *d = handle;
	struct pollfd pfd;
	size_t got = 0;
	ssize_t n;
	int r;

	if (len != REPORT_LEN) {
		fprintf(stderr, "sock_read: unexpected len %zu\n", len);
		return -1;
	}
	while (got < len) {
		pfd.fd = d->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if ((r = poll(&pfd, 1, ms)) < 0) {
			if (errno == EINTR)
				continue;
			perror("sock_read: poll");
			return -1;
		}
		if (r == 0) {
			fprintf(stderr, "sock_read: timeout after %d ms\n", ms);
			return -1;
		}
		if ((n = read(d->fd, buf + got, len - got)) < 0) {
			if (errno == EINTR)
				continue;
			perror("sock_read: read");
			return -1;
		}
		if (n == 0) {
			fprintf(stderr, "sock_read: daemon closed the socket\n");
			return -1;
		}
		got += (size_t)n;
	}
	return (int)len;
}

/* libfido2 writes report ID (0x00) + 64-byte report = 65 bytes. */
static int
sock_write(void *handle, const unsigned char *buf, size_t len)
{
	struct sockdev *d = handle;
	size_t off = 1, sent = 0;
	ssize_t n;

	if (len != REPORT_LEN + 1 || buf[0] != 0x00) {
		fprintf(stderr, "sock_write: unexpected len %zu / report id\n",
		    len);
		return -1;
	}
	while (sent < REPORT_LEN) {
		n = send(d->fd, buf + off + sent, REPORT_LEN - sent,
		    MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("sock_write: send");
			return -1;
		}
		sent += (size_t)n;
	}
	return (int)len;
}

/* ------------------------------------------------------------------ */
/* Options, output */

struct opts {
	const char *sock;
	const char *cmd;
	const char *pin;
	const char *new_pin;
	const char *alg;
	const char *rp;
	const char *user;
	const char *cred[MAX_CREDS];
	int ncred;
	const char *exclude;
	const char *expect;
	int expect_retries;
	bool rk;
	bool discoverable;
};

static int failures;

static void
fail(const char *fmt, ...)
{
	va_list ap;

	failures++;
	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void
hexprint(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static int
unhex(const char *s, unsigned char *out, size_t max, size_t *outlen)
{
	size_t n = strlen(s);
	unsigned int b;

	if (n % 2 != 0 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		if (sscanf(s + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	*outlen = n / 2;
	return 0;
}

static void
random_bytes(unsigned char *p, size_t n)
{
	if (getrandom(p, n, 0) != (ssize_t)n) {
		perror("getrandom");
		exit(1);
	}
}

static int
cose_alg(const char *name)
{
	if (name == NULL || strcmp(name, "es256") == 0)
		return COSE_ES256;
	if (strcmp(name, "eddsa") == 0)
		return COSE_EDDSA;
	if (strcmp(name, "rs256") == 0)
		return COSE_RS256;
	fprintf(stderr, "unknown --alg %s\n", name);
	exit(2);
}

static const char *
alg_name(int type)
{
	switch (type) {
	case COSE_ES256:
		return "es256";
	case COSE_EDDSA:
		return "eddsa";
	case COSE_RS256:
		return "rs256";
	default:
		return "unknown";
	}
}

/*
 * Returns 1 if r is the --expect'ed error (and prints it), 0 if r is
 * FIDO_OK and nothing was expected, -1 otherwise (and reports a failure).
 */
static int
check_result(const struct opts *o, const char *what, int r)
{
	if (o->expect != NULL) {
		if (r != FIDO_OK && strcmp(fido_strerr(r), o->expect) == 0) {
			printf("expected-error: %s %s (%d)\n", what,
			    fido_strerr(r), r);
			return 1;
		}
		fail("%s: want %s, got %s (%d)", what, o->expect,
		    fido_strerr(r), r);
		return -1;
	}
	if (r != FIDO_OK) {
		fail("%s: %s (%d)", what, fido_strerr(r), r);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Credential files */

struct credfile {
	char rp[256];
	int type;
	int rk;
	unsigned char id[1024];
	size_t idlen;
	unsigned char pk[256];
	size_t pklen;
	unsigned char user[64];
	size_t userlen;
	uint32_t sigcount;
};

static int
cred_save(const char *path, const struct credfile *c)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL) {
		fail("open %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "rp %s\ntype %d\nrk %d\nid ", c->rp, c->type, c->rk);
	for (size_t i = 0; i < c->idlen; i++)
		fprintf(f, "%02x", c->id[i]);
	fprintf(f, "\npk ");
	for (size_t i = 0; i < c->pklen; i++)
		fprintf(f, "%02x", c->pk[i]);
	fprintf(f, "\nuser ");
	for (size_t i = 0; i < c->userlen; i++)
		fprintf(f, "%02x", c->user[i]);
	fprintf(f, "\nsigcount %u\n", c->sigcount);
	if (fclose(f) != 0) {
		fail("write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
cred_load(const char *path, struct credfile *c)
{
	char line[4096], key[32], val[4000];
	FILE *f;
	int ok = 0;

	memset(c, 0, sizeof(*c));
	if ((f = fopen(path, "r")) == NULL) {
		fail("open %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		val[0] = '\0';
		if (sscanf(line, "%31s %3999s", key, val) < 1)
			continue;
		if (strcmp(key, "rp") == 0) {
			if (strlen(val) >= sizeof(c->rp))
				ok = -1;
			else
				memcpy(c->rp, val, strlen(val) + 1);
		}
		else if (strcmp(key, "type") == 0)
			c->type = atoi(val);
		else if (strcmp(key, "rk") == 0)
			c->rk = atoi(val);
		else if (strcmp(key, "id") == 0)
			ok |= unhex(val, c->id, sizeof(c->id), &c->idlen);
		else if (strcmp(key, "pk") == 0)
			ok |= unhex(val, c->pk, sizeof(c->pk), &c->pklen);
		else if (strcmp(key, "user") == 0)
			ok |= unhex(val, c->user, sizeof(c->user), &c->userlen);
		else if (strcmp(key, "sigcount") == 0)
			c->sigcount = (uint32_t)strtoul(val, NULL, 10);
	}
	fclose(f);
	if (ok != 0 || c->idlen == 0 || c->pklen == 0) {
		fail("%s: malformed credential file", path);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Commands */

static int
cmd_info(fido_dev_t *dev, const struct opts *o)
{
	fido_cbor_info_t *ci;
	char **names;
	const bool *vals;
	const uint8_t *protos;
	bool v20 = false, v21 = false, v21pre = false, es256 = false;
	bool eddsa = false;
	bool p1 = false, p2 = false;
	int r;

	if ((ci = fido_cbor_info_new()) == NULL)
		return -1;
	if ((r = check_result(o, "fido_dev_get_cbor_info",
	    fido_dev_get_cbor_info(dev, ci))) != 0) {
		fido_cbor_info_free(&ci);
		return r > 0 ? 0 : -1;
	}
	names = fido_cbor_info_versions_ptr(ci);
	for (size_t i = 0; i < fido_cbor_info_versions_len(ci); i++) {
		printf("info: version %s\n", names[i]);
		v20 |= strcmp(names[i], "FIDO_2_0") == 0;
		v21 |= strcmp(names[i], "FIDO_2_1") == 0;
		v21pre |= strcmp(names[i], "FIDO_2_1_PRE") == 0;
	}
	printf("info: aaguid ");
	hexprint(fido_cbor_info_aaguid_ptr(ci), fido_cbor_info_aaguid_len(ci));
	printf("\n");
	names = fido_cbor_info_options_name_ptr(ci);
	vals = fido_cbor_info_options_value_ptr(ci);
	for (size_t i = 0; i < fido_cbor_info_options_len(ci); i++)
		printf("info: option %s=%s\n", names[i],
		    vals[i] ? "true" : "false");
	for (size_t i = 0; i < fido_cbor_info_algorithm_count(ci); i++) {
		int cose = fido_cbor_info_algorithm_cose(ci, i);
		printf("info: algorithm %s %d\n",
		    fido_cbor_info_algorithm_type(ci, i), cose);
		es256 |= cose == COSE_ES256;
		eddsa |= cose == COSE_EDDSA;
	}
	protos = fido_cbor_info_protocols_ptr(ci);
	for (size_t i = 0; i < fido_cbor_info_protocols_len(ci); i++) {
		printf("info: pin protocol %u\n", protos[i]);
		p1 |= protos[i] == 1;
		p2 |= protos[i] == 2;
	}
	printf("info: maxmsgsiz %llu\n",
	    (unsigned long long)fido_cbor_info_maxmsgsiz(ci));
	printf("info: fido2=%d has_pin=%d supports_credman=%d "
	    "supports_permissions=%d supports_pin=%d\n",
	    fido_dev_is_fido2(dev), fido_dev_has_pin(dev),
	    fido_dev_supports_credman(dev), fido_dev_supports_permissions(dev),
	    fido_dev_supports_pin(dev));
	/* FIDO_2_1 needs hmac-secret/credProtect; FIDO_2_1_PRE is fine too. */
	if (!v20 || (!v21 && !v21pre))
		fail("info: versions must include FIDO_2_0 and FIDO_2_1 or "
		    "FIDO_2_1_PRE");
	if (!es256 || !eddsa)
		fail("info: algorithms must include ES256 (-7) and EdDSA (-8)");
	if (!p1 || !p2)
		fail("info: pin protocols must include 1 and 2");
	if (!fido_dev_is_fido2(dev) || !fido_dev_supports_credman(dev) ||
	    !fido_dev_supports_permissions(dev) || !fido_dev_supports_pin(dev))
		fail("info: libfido2 should see fido2, credman, permissions, "
		    "pin support");
	fido_cbor_info_free(&ci);
	return 0;
}

static int
cmd_make_cred(fido_dev_t *dev, const struct opts *o)
{
	fido_cred_t *cred = NULL;
	struct credfile cf, ex;
	unsigned char cdh[32], uid[32];
	const char *fmt;
	uint8_t flags;
	int type = cose_alg(o->alg), r, ret = -1;

	memset(&cf, 0, sizeof(cf));
	random_bytes(cdh, sizeof(cdh));
	random_bytes(uid, sizeof(uid));
	if ((cred = fido_cred_new()) == NULL)
		goto out;
	if (fido_cred_set_type(cred, type) != FIDO_OK ||
	    fido_cred_set_clientdata_hash(cred, cdh, sizeof(cdh)) != FIDO_OK ||
	    fido_cred_set_rp(cred, o->rp, "libfido2 interop") != FIDO_OK ||
	    fido_cred_set_user(cred, uid, sizeof(uid), o->user, o->user,
	    NULL) != FIDO_OK ||
	    (o->rk && fido_cred_set_rk(cred, FIDO_OPT_TRUE) != FIDO_OK)) {
		fail("make-cred: setting up fido_cred_t");
		goto out;
	}
	if (o->exclude != NULL) {
		if (cred_load(o->exclude, &ex) < 0 ||
		    fido_cred_exclude(cred, ex.id, ex.idlen) != FIDO_OK)
			goto out;
	}
	r = fido_dev_make_cred(dev, cred, o->pin);
	if ((r = check_result(o, "fido_dev_make_cred", r)) != 0) {
		ret = r > 0 ? 0 : -1;
		goto out;
	}

	fmt = fido_cred_fmt(cred);
	flags = fido_cred_flags(cred);
	printf("make-cred: ok type=%s rk=%d fmt=%s flags=0x%02x sigcount=%u "
	    "idlen=%zu pklen=%zu\n", alg_name(fido_cred_type(cred)), o->rk,
	    fmt ? fmt : "(null)", flags, fido_cred_sigcount(cred),
	    fido_cred_id_len(cred), fido_cred_pubkey_len(cred));
	if (fido_cred_type(cred) != type)
		fail("make-cred: credential type %d, want %d",
		    fido_cred_type(cred), type);
	if ((flags & 0x01) == 0 || (flags & 0x40) == 0)
		fail("make-cred: flags 0x%02x lack UP/AT", flags);
	if (o->pin != NULL && (flags & 0x04) == 0)
		fail("make-cred: flags 0x%02x lack UV although a PIN was used",
		    flags);
	if (fmt != NULL && strcmp(fmt, "none") == 0) {
		/* No signature to check; the assertion check still uses pk. */
		printf("make-cred: attestation none (attStmt len=%zu)\n",
		    fido_cred_attstmt_len(cred));
	} else {
		if (fido_cred_x5c_len(cred) != 0)
			fail("make-cred: unexpected x5c in self attestation");
		r = fido_cred_verify_self(cred);
		printf("make-cred: verify_self=%s\n", fido_strerr(r));
		if (r != FIDO_OK)
			fail("make-cred: fido_cred_verify_self: %s",
			    fido_strerr(r));
	}

	if (o->ncred > 0) {
		snprintf(cf.rp, sizeof(cf.rp), "%s", o->rp);
		cf.type = fido_cred_type(cred);
		cf.rk = o->rk;
		cf.idlen = fido_cred_id_len(cred);
		cf.pklen = fido_cred_pubkey_len(cred);
		if (cf.idlen > sizeof(cf.id) || cf.pklen > sizeof(cf.pk)) {
			fail("make-cred: credential id/public key too large");
			goto out;
		}
		memcpy(cf.id, fido_cred_id_ptr(cred), cf.idlen);
		memcpy(cf.pk, fido_cred_pubkey_ptr(cred), cf.pklen);
		memcpy(cf.user, uid, sizeof(uid));
		cf.userlen = sizeof(uid);
		cf.sigcount = fido_cred_sigcount(cred);
		if (cred_save(o->cred[0], &cf) < 0)
			goto out;
	}
	ret = failures ? -1 : 0;
out:
	fido_cred_free(&cred);
	return ret;
}

static int
verify_one(const fido_assert_t *a, size_t idx, struct credfile *c)
{
	es256_pk_t *es = NULL;
	eddsa_pk_t *ed = NULL;
	const void *pk = NULL;
	int r = FIDO_ERR_INTERNAL;

	if (c->type == COSE_ES256) {
		if ((es = es256_pk_new()) == NULL ||
		    es256_pk_from_ptr(es, c->pk, c->pklen) != FIDO_OK)
			goto out;
		pk = es;
	} else if (c->type == COSE_EDDSA) {
		if ((ed = eddsa_pk_new()) == NULL ||
		    eddsa_pk_from_ptr(ed, c->pk, c->pklen) != FIDO_OK)
			goto out;
		pk = ed;
	} else {
		fail("get-assert: unsupported credential type %d", c->type);
		goto out;
	}
	r = fido_assert_verify(a, idx, c->type, pk);
out:
	es256_pk_free(&es);
	eddsa_pk_free(&ed);
	return r;
}

static int
cmd_get_assert(fido_dev_t *dev, const struct opts *o)
{
	fido_assert_t *a = NULL;
	struct credfile cf[MAX_CREDS];
	unsigned char cdh[32];
	const char *rp = o->rp;
	int r, ret = -1;

	if (o->ncred == 0 && !o->discoverable) {
		fail("get-assert: need --cred FILE (or --discoverable)");
		return -1;
	}
	for (int i = 0; i < o->ncred; i++)
		if (cred_load(o->cred[i], &cf[i]) < 0)
			return -1;
	if (o->ncred > 0 && strcmp(o->rp, "example.org") == 0)
		rp = cf[0].rp;
	random_bytes(cdh, sizeof(cdh));
	if ((a = fido_assert_new()) == NULL)
		goto out;
	if (fido_assert_set_clientdata_hash(a, cdh, sizeof(cdh)) != FIDO_OK ||
	    fido_assert_set_rp(a, rp) != FIDO_OK ||
	    fido_assert_set_up(a, FIDO_OPT_TRUE) != FIDO_OK) {
		fail("get-assert: setting up fido_assert_t");
		goto out;
	}
	if (!o->discoverable)
		for (int i = 0; i < o->ncred; i++)
			if (fido_assert_allow_cred(a, cf[i].id,
			    cf[i].idlen) != FIDO_OK) {
				fail("get-assert: fido_assert_allow_cred");
				goto out;
			}
	r = fido_dev_get_assert(dev, a, o->pin);
	if ((r = check_result(o, "fido_dev_get_assert", r)) != 0) {
		ret = r > 0 ? 0 : -1;
		goto out;
	}
	printf("get-assert: ok count=%zu rp=%s\n", fido_assert_count(a), rp);
	for (size_t i = 0; i < fido_assert_count(a); i++) {
		const unsigned char *id = fido_assert_id_ptr(a, i);
		size_t idlen = fido_assert_id_len(a, i);
		uint8_t flags = fido_assert_flags(a, i);
		uint32_t sc = fido_assert_sigcount(a, i);
		struct credfile *c = NULL;
		int k;

		for (k = 0; k < o->ncred; k++)
			if (cf[k].idlen == idlen &&
			    memcmp(cf[k].id, id, idlen) == 0) {
				c = &cf[k];
				break;
			}
		printf("get-assert: [%zu] flags=0x%02x sigcount=%u id=", i,
		    flags, sc);
		hexprint(id, idlen);
		printf("\n");
		if (c == NULL) {
			fail("get-assert: [%zu] credential not in any --cred "
			    "file", i);
			continue;
		}
		if ((flags & 0x01) == 0)
			fail("get-assert: [%zu] UP flag missing", i);
		if (o->pin != NULL && (flags & 0x04) == 0)
			fail("get-assert: [%zu] UV flag missing although a "
			    "PIN was used", i);
		r = verify_one(a, i, c);
		printf("get-assert: [%zu] verify=%s type=%s\n", i,
		    fido_strerr(r), alg_name(c->type));
		if (r != FIDO_OK)
			fail("get-assert: [%zu] fido_assert_verify: %s", i,
			    fido_strerr(r));
		if (sc <= c->sigcount)
			fail("get-assert: [%zu] signature counter %u not above "
			    "%u", i, sc, c->sigcount);
		if (o->discoverable && fido_assert_user_id_len(a, i) > 0 &&
		    (fido_assert_user_id_len(a, i) != c->userlen ||
		    memcmp(fido_assert_user_id_ptr(a, i), c->user,
		    c->userlen) != 0))
			fail("get-assert: [%zu] user id mismatch", i);
		c->sigcount = sc;
		if (cred_save(o->cred[k], c) < 0)
			goto out;
	}
	if (o->discoverable && (int)fido_assert_count(a) != o->ncred)
		fail("get-assert: %zu discoverable assertions, want %d",
		    fido_assert_count(a), o->ncred);
	ret = failures ? -1 : 0;
out:
	fido_assert_free(&a);
	return ret;
}

static int
cmd_set_pin(fido_dev_t *dev, const struct opts *o)
{
	int r;

	if (o->pin == NULL) {
		fail("set-pin: need --pin");
		return -1;
	}
	r = check_result(o, "fido_dev_set_pin",
	    fido_dev_set_pin(dev, o->pin, NULL));
	if (r == 0)
		printf("set-pin: ok\n");
	return r >= 0 ? 0 : -1;
}

static int
cmd_change_pin(fido_dev_t *dev, const struct opts *o)
{
	int r;

	if (o->pin == NULL || o->new_pin == NULL) {
		fail("change-pin: need --pin OLD --new-pin NEW");
		return -1;
	}
	r = check_result(o, "fido_dev_set_pin(change)",
	    fido_dev_set_pin(dev, o->new_pin, o->pin));
	if (r == 0)
		printf("change-pin: ok\n");
	return r >= 0 ? 0 : -1;
}

static int
cmd_retries(fido_dev_t *dev, const struct opts *o)
{
	int n = -1, r;

	r = check_result(o, "fido_dev_get_retry_count",
	    fido_dev_get_retry_count(dev, &n));
	if (r != 0)
		return r > 0 ? 0 : -1;
	printf("retries: %d\n", n);
	if (o->expect_retries >= 0 && n != o->expect_retries)
		fail("retries: got %d, want %d", n, o->expect_retries);
	return failures ? -1 : 0;
}

static int
cmd_reset(fido_dev_t *dev, const struct opts *o)
{
	int r;

	r = check_result(o, "fido_dev_reset", fido_dev_reset(dev));
	if (r == 0)
		printf("reset: ok\n");
	return r >= 0 ? 0 : -1;
}

static int
get_rks(fido_dev_t *dev, const struct opts *o, fido_credman_rk_t **rk)
{
	int r;

	fido_credman_rk_free(rk);
	if ((*rk = fido_credman_rk_new()) == NULL)
		return -1;
	if ((r = fido_credman_get_dev_rk(dev, o->rp, *rk, o->pin)) !=
	    FIDO_OK) {
		fail("credman: fido_credman_get_dev_rk(%s): %s", o->rp,
		    fido_strerr(r));
		return -1;
	}
	return 0;
}

static int
cmd_credman(fido_dev_t *dev, const struct opts *o)
{
	fido_credman_metadata_t *md = NULL;
	fido_credman_rp_t *rp = NULL;
	fido_credman_rk_t *rk = NULL;
	fido_cred_t *upd = NULL;
	const fido_cred_t *c;
	struct credfile cf;
	unsigned char delid[1024];
	size_t delidlen = 0, before;
	bool found = false;
	int r, ret = -1;

	if (o->pin == NULL) {
		fail("credman: need --pin");
		return -1;
	}
	if ((md = fido_credman_metadata_new()) == NULL ||
	    (rp = fido_credman_rp_new()) == NULL)
		goto out;

	if ((r = fido_credman_get_dev_metadata(dev, md, o->pin)) != FIDO_OK) {
		if (check_result(o, "fido_credman_get_dev_metadata", r) > 0)
			ret = 0;
		goto out;
	}
	printf("credman: metadata existing=%llu remaining=%llu\n",
	    (unsigned long long)fido_credman_rk_existing(md),
	    (unsigned long long)fido_credman_rk_remaining(md));
	if (fido_credman_rk_existing(md) == 0)
		fail("credman: no discoverable credentials");

	if ((r = fido_credman_get_dev_rp(dev, rp, o->pin)) != FIDO_OK) {
		fail("credman: fido_credman_get_dev_rp: %s", fido_strerr(r));
		goto out;
	}
	for (size_t i = 0; i < fido_credman_rp_count(rp); i++) {
		printf("credman: rp %s name=%s\n", fido_credman_rp_id(rp, i),
		    fido_credman_rp_name(rp, i) ? fido_credman_rp_name(rp, i) :
		    "");
		found |= strcmp(fido_credman_rp_id(rp, i), o->rp) == 0;
	}
	if (!found)
		fail("credman: rp %s not enumerated", o->rp);

	if (get_rks(dev, o, &rk) < 0)
		goto out;
	before = fido_credman_rk_count(rk);
	printf("credman: rk count=%zu rp=%s\n", before, o->rp);
	for (size_t i = 0; i < before; i++) {
		c = fido_credman_rk(rk, i);
		printf("credman: rk [%zu] type=%s user=%s id=", i,
		    alg_name(fido_cred_type(c)),
		    fido_cred_user_name(c) ? fido_cred_user_name(c) : "");
		hexprint(fido_cred_id_ptr(c), fido_cred_id_len(c));
		printf("\n");
	}
	if (before == 0) {
		fail("credman: no credentials for %s", o->rp);
		goto out;
	}

	/* Pick the credential to update and delete: --cred FILE or rk[0]. */
	c = fido_credman_rk(rk, 0);
	if (o->ncred > 0) {
		if (cred_load(o->cred[0], &cf) < 0)
			goto out;
		c = NULL;
		for (size_t i = 0; i < before; i++) {
			const fido_cred_t *x = fido_credman_rk(rk, i);
			if (fido_cred_id_len(x) == cf.idlen &&
			    memcmp(fido_cred_id_ptr(x), cf.id, cf.idlen) == 0)
				c = x;
		}
		if (c == NULL) {
			fail("credman: credential from %s not enumerated",
			    o->cred[0]);
			goto out;
		}
	}
	if ((upd = fido_cred_new()) == NULL ||
	    fido_cred_set_id(upd, fido_cred_id_ptr(c),
	    fido_cred_id_len(c)) != FIDO_OK ||
	    fido_cred_set_user(upd, fido_cred_user_id_ptr(c),
	    fido_cred_user_id_len(c), "renamed-by-libfido2", "Renamed",
	    NULL) != FIDO_OK) {
		fail("credman: building update");
		goto out;
	}
	delidlen = fido_cred_id_len(c);
	memcpy(delid, fido_cred_id_ptr(c), delidlen);
	if ((r = fido_credman_set_dev_rk(dev, upd, o->pin)) != FIDO_OK) {
		fail("credman: fido_credman_set_dev_rk: %s", fido_strerr(r));
		goto out;
	}
	if (get_rks(dev, o, &rk) < 0)
		goto out;
	found = false;
	for (size_t i = 0; i < fido_credman_rk_count(rk); i++) {
		const fido_cred_t *x = fido_credman_rk(rk, i);
		if (fido_cred_id_len(x) == delidlen &&
		    memcmp(fido_cred_id_ptr(x), delid, delidlen) == 0 &&
		    fido_cred_user_name(x) != NULL &&
		    strcmp(fido_cred_user_name(x), "renamed-by-libfido2") == 0)
			found = true;
	}
	if (found)
		printf("credman: update ok\n");
	else
		fail("credman: user name not updated");

	if ((r = fido_credman_del_dev_rk(dev, delid, delidlen, o->pin)) !=
	    FIDO_OK) {
		fail("credman: fido_credman_del_dev_rk: %s", fido_strerr(r));
		goto out;
	}
	if (before == 1) {
		/* Enumerating an RP without credentials is NO_CREDENTIALS. */
		fido_credman_rk_free(&rk);
		if ((rk = fido_credman_rk_new()) == NULL)
			goto out;
		r = fido_credman_get_dev_rk(dev, o->rp, rk, o->pin);
		if (r == FIDO_OK && fido_credman_rk_count(rk) == 0)
			printf("credman: delete ok (rp now empty)\n");
		else if (r == FIDO_ERR_NO_CREDENTIALS)
			printf("credman: delete ok (%s)\n", fido_strerr(r));
		else
			fail("credman: after delete: %s count=%zu",
			    fido_strerr(r), fido_credman_rk_count(rk));
	} else {
		if (get_rks(dev, o, &rk) < 0)
			goto out;
		if (fido_credman_rk_count(rk) == before - 1)
			printf("credman: delete ok (count=%zu)\n",
			    fido_credman_rk_count(rk));
		else
			fail("credman: %zu credentials after delete, want %zu",
			    fido_credman_rk_count(rk), before - 1);
	}
	r = fido_credman_del_dev_rk(dev, delid, delidlen, o->pin);
	printf("credman: delete again -> %s\n", fido_strerr(r));
	if (r != FIDO_ERR_NO_CREDENTIALS)
		fail("credman: deleting twice: %s, want "
		    "FIDO_ERR_NO_CREDENTIALS", fido_strerr(r));
	ret = failures ? -1 : 0;
out:
	fido_cred_free(&upd);
	fido_credman_rk_free(&rk);
	fido_credman_rp_free(&rp);
	fido_credman_metadata_free(&md);
	return ret;
}

/* ------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fido2_sockdev SOCKET COMMAND [options]\n"
	    "commands: info make-cred get-assert set-pin change-pin credman "
	    "reset retries\n"
	    "options: --rk --pin PIN --new-pin PIN --alg es256|eddsa|rs256 "
	    "--rp ID --user NAME\n"
	    "         --cred FILE (repeatable) --exclude FILE --discoverable "
	    "--expect FIDO_ERR_X\n"
	    "         --expect-retries N\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	fido_dev_io_t io = {sock_open, sock_close, sock_read, sock_write};
	struct opts o;
	fido_dev_t *dev = NULL;
	const char *tmo;
	int r, ret;

	memset(&o, 0, sizeof(o));
	o.rp = "example.org";
	o.user = "alice";
	o.expect_retries = -1;
	if (argc < 3)
		usage();
	o.sock = argv[1];
	o.cmd = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDARG() do { if (v == NULL) usage(); i++; } while (0)
		if (strcmp(a, "--rk") == 0)
			o.rk = true;
		else if (strcmp(a, "--discoverable") == 0)
			o.discoverable = true;
		else if (strcmp(a, "--pin") == 0) {
			NEEDARG();
			o.pin = v;
		} else if (strcmp(a, "--new-pin") == 0) {
			NEEDARG();
			o.new_pin = v;
		} else if (strcmp(a, "--alg") == 0) {
			NEEDARG();
			o.alg = v;
		} else if (strcmp(a, "--rp") == 0) {
			NEEDARG();
			o.rp = v;
		} else if (strcmp(a, "--user") == 0) {
			NEEDARG();
			o.user = v;
		} else if (strcmp(a, "--cred") == 0) {
			NEEDARG();
			if (o.ncred == MAX_CREDS)
				usage();
			o.cred[o.ncred++] = v;
		} else if (strcmp(a, "--exclude") == 0) {
			NEEDARG();
			o.exclude = v;
		} else if (strcmp(a, "--expect") == 0) {
			NEEDARG();
			o.expect = v;
		} else if (strcmp(a, "--expect-retries") == 0) {
			NEEDARG();
			o.expect_retries = atoi(v);
		} else
			usage();
#undef NEEDARG
	}

	signal(SIGPIPE, SIG_IGN);
	fido_init(getenv("FIDO_DEBUG") != NULL ? FIDO_DEBUG : 0);
	if ((dev = fido_dev_new()) == NULL) {
		fail("fido_dev_new");
		goto done;
	}
	if ((r = fido_dev_set_io_functions(dev, &io)) != FIDO_OK) {
		fail("fido_dev_set_io_functions: %s", fido_strerr(r));
		goto done;
	}
	tmo = getenv("AUTHD_INTEROP_TIMEOUT_MS");
	if ((r = fido_dev_set_timeout(dev, tmo ? atoi(tmo) :
	    DEFAULT_TIMEOUT_MS)) != FIDO_OK) {
		fail("fido_dev_set_timeout: %s", fido_strerr(r));
		goto done;
	}
	if ((r = fido_dev_open(dev, o.sock)) != FIDO_OK) {
		fail("fido_dev_open(%s): %s", o.sock, fido_strerr(r));
		goto done;
	}
	printf("open: ok proto=%u version=%u.%u.%u flags=0x%02x\n",
	    fido_dev_protocol(dev), fido_dev_major(dev), fido_dev_minor(dev),
	    fido_dev_build(dev), fido_dev_flags(dev));

	if (strcmp(o.cmd, "info") == 0)
		ret = cmd_info(dev, &o);
	else if (strcmp(o.cmd, "make-cred") == 0)
		ret = cmd_make_cred(dev, &o);
	else if (strcmp(o.cmd, "get-assert") == 0)
		ret = cmd_get_assert(dev, &o);
	else if (strcmp(o.cmd, "set-pin") == 0)
		ret = cmd_set_pin(dev, &o);
	else if (strcmp(o.cmd, "change-pin") == 0)
		ret = cmd_change_pin(dev, &o);
	else if (strcmp(o.cmd, "credman") == 0)
		ret = cmd_credman(dev, &o);
	else if (strcmp(o.cmd, "reset") == 0)
		ret = cmd_reset(dev, &o);
	else if (strcmp(o.cmd, "retries") == 0)
		ret = cmd_retries(dev, &o);
	else {
		fprintf(stderr, "unknown command %s\n", o.cmd);
		usage();
	}
	if (ret != 0 && failures == 0)
		fail("%s failed", o.cmd);
	fido_dev_close(dev);
done:
	fido_dev_free(&dev);
	printf("%s %s\n", failures ? "FAILED" : "OK", o.cmd);
	return failures ? 1 : 0;
}
