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
 * CTAP 2.1 extensions, large blobs, authenticatorConfig (ext_test.go):
 *   make-cred ... [--hmac-secret] [--cred-protect 1|2|3] [--cred-blob TEXT]
 *             [--large-blob-key] [--min-pin-len N]
 *             (FIDO_EXT_HMAC_SECRET, fido_cred_set_prot, fido_cred_set_blob,
 *              FIDO_EXT_LARGEBLOB_KEY (key stored in the --cred file),
 *              fido_cred_set_pin_minlen: the output must equal N)
 *   get-assert ... [--hmac-salt HEX32|HEX64] [--cred-blob TEXT|--cred-blob ""]
 *             [--large-blob-key]
 *             (prints "get-assert: [i] hmac-secret=HEX"; --cred-blob requests
 *              FIDO_EXT_CRED_BLOB and checks the returned blob; --large-blob-key
 *              checks the key against the --cred file)
 *   largeblob-set (--cred FILE|--key HEX) --data TEXT [--pin PIN]
 *   largeblob-get (--cred FILE|--key HEX) [--data TEXT]   (expected content)
 *   largeblob-remove (--cred FILE|--key HEX) [--pin PIN]
 *   largeblob-array --size N [--pin PIN]  (fido_dev_largeblob_set_array with
 *                                          a serialized array of exactly N
 *                                          bytes, then get_array compares)
 *   toggle-always-uv [--pin PIN]          (fido_dev_toggle_always_uv)
 *   set-pin-minlen [--len N] [--rpid ID ...] [--force] [--pin PIN]
 *                                         (fido_dev_set_pin_minlen,
 *                                          _minlen_rpid, _force_pin_change)
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
#include <fido/config.h>
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
	/* CTAP 2.1 extensions */
	bool hmac_secret;
	int cred_protect;
	const char *cred_blob;
	bool large_blob_key;
	int min_pin_len;
	const char *hmac_salt;
	const char *key;
	const char *data;
	long size;
	long len;
	const char *rpid[MAX_CREDS];
	int nrpid;
	bool force;
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
	unsigned char lbk[32];	/* largeBlobKey from makeCredential */
	size_t lbklen;
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
	if (c->lbklen > 0) {
		fprintf(f, "lbk ");
		for (size_t i = 0; i < c->lbklen; i++)
			fprintf(f, "%02x", c->lbk[i]);
		fprintf(f, "\n");
	}
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
		else if (strcmp(key, "lbk") == 0)
			ok |= unhex(val, c->lbk, sizeof(c->lbk), &c->lbklen);
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
	names = fido_cbor_info_extensions_ptr(ci);
	for (size_t i = 0; i < fido_cbor_info_extensions_len(ci); i++)
		printf("info: extension %s\n", names[i]);
	printf("info: maxcredbloblen %llu\n",
	    (unsigned long long)fido_cbor_info_maxcredbloblen(ci));
	printf("info: maxlargeblob %llu\n",
	    (unsigned long long)fido_cbor_info_maxlargeblob(ci));
	printf("info: minpinlen %llu\n",
	    (unsigned long long)fido_cbor_info_minpinlen(ci));
	printf("info: maxrpid_minpinlen %llu\n",
	    (unsigned long long)fido_cbor_info_maxrpid_minpinlen(ci));
	printf("info: new_pin_required %d\n",
	    fido_cbor_info_new_pin_required(ci));
	printf("info: rk_remaining %lld\n",
	    (long long)fido_cbor_info_rk_remaining(ci));
	printf("info: supports_cred_prot=%d\n", fido_dev_supports_cred_prot(dev));
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

/*
 * Extension outputs of a new credential: credProtect level, largeBlobKey
 * (kept in cf for the --cred file), minPinLength. libfido2 itself checks in
 * fido_cred_verify_self() that the authData extensions are exactly the
 * requested ones (hmac-secret, credProtect, credBlob, minPinLength).
 */
static int
check_cred_ext(const fido_cred_t *cred, const struct opts *o,
    struct credfile *cf)
{
	size_t n;

	if (o->cred_protect != 0) {
		printf("make-cred: cred-protect=%d\n", fido_cred_prot(cred));
		if (fido_cred_prot(cred) != o->cred_protect)
			fail("make-cred: credProtect %d, want %d",
			    fido_cred_prot(cred), o->cred_protect);
	}
	if (o->min_pin_len > 0) {
		printf("make-cred: pin-minlen=%zu\n", fido_cred_pin_minlen(cred));
		if (fido_cred_pin_minlen(cred) != (size_t)o->min_pin_len)
			fail("make-cred: minPinLength %zu, want %d",
			    fido_cred_pin_minlen(cred), o->min_pin_len);
	}
	n = fido_cred_largeblob_key_len(cred);
	if (o->large_blob_key) {
		printf("make-cred: largeblob-key=");
		hexprint(fido_cred_largeblob_key_ptr(cred), n);
		printf("\n");
		if (o->rk && n != 32)
			fail("make-cred: largeBlobKey is %zu bytes, want 32", n);
		if (!o->rk && n != 0)
			fail("make-cred: largeBlobKey for a non-discoverable "
			    "credential (must be ignored)");
		if (n > sizeof(cf->lbk))
			return -1;
		memcpy(cf->lbk, fido_cred_largeblob_key_ptr(cred), n);
		cf->lbklen = n;
	} else if (n != 0)
		fail("make-cred: largeBlobKey returned although not requested");
	return failures ? -1 : 0;
}

static int
cmd_make_cred(fido_dev_t *dev, const struct opts *o)
{
	fido_cred_t *cred = NULL;
	struct credfile cf, ex;
	unsigned char cdh[32], uid[32];
	const char *fmt;
	uint8_t flags;
	int type = cose_alg(o->alg), r, ret = -1, ext;

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
	ext = (o->hmac_secret ? FIDO_EXT_HMAC_SECRET : 0) |
	    (o->large_blob_key ? FIDO_EXT_LARGEBLOB_KEY : 0);
	if ((ext != 0 && fido_cred_set_extensions(cred, ext) != FIDO_OK) ||
	    (o->cred_protect != 0 &&
	    fido_cred_set_prot(cred, o->cred_protect) != FIDO_OK) ||
	    (o->cred_blob != NULL && fido_cred_set_blob(cred,
	    (const unsigned char *)o->cred_blob, strlen(o->cred_blob)) !=
	    FIDO_OK) ||
	    (o->min_pin_len > 0 &&
	    fido_cred_set_pin_minlen(cred, (size_t)o->min_pin_len) != FIDO_OK)) {
		fail("make-cred: setting extensions");
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

	if (check_cred_ext(cred, o, &cf) < 0)
		goto out;

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

/* Extension outputs of assertion idx (after fido_assert_verify). */
static void
check_assert_ext(const fido_assert_t *a, size_t idx, const struct opts *o,
    const struct credfile *c)
{
	size_t n;

	if (o->hmac_salt != NULL) {
		n = fido_assert_hmac_secret_len(a, idx);
		printf("get-assert: [%zu] hmac-secret=", idx);
		hexprint(fido_assert_hmac_secret_ptr(a, idx), n);
		printf("\n");
		if (n != strlen(o->hmac_salt) / 2)
			fail("get-assert: [%zu] hmac-secret output is %zu bytes, "
			    "want %zu", idx, n, strlen(o->hmac_salt) / 2);
	} else if (fido_assert_hmac_secret_len(a, idx) != 0)
		fail("get-assert: [%zu] hmac-secret output not requested", idx);
	if (o->cred_blob != NULL) {
		n = fido_assert_blob_len(a, idx);
		printf("get-assert: [%zu] cred-blob=%.*s\n", idx, (int)n,
		    n ? (const char *)fido_assert_blob_ptr(a, idx) : "");
		if (n != strlen(o->cred_blob) || (n > 0 &&
		    memcmp(fido_assert_blob_ptr(a, idx), o->cred_blob, n) != 0))
			fail("get-assert: [%zu] credBlob differs from \"%s\"",
			    idx, o->cred_blob);
	}
	n = fido_assert_largeblob_key_len(a, idx);
	if (o->large_blob_key) {
		printf("get-assert: [%zu] largeblob-key=", idx);
		hexprint(fido_assert_largeblob_key_ptr(a, idx), n);
		printf("\n");
		if (n != c->lbklen || (n > 0 && memcmp(
		    fido_assert_largeblob_key_ptr(a, idx), c->lbk, n) != 0))
			fail("get-assert: [%zu] largeBlobKey differs from the "
			    "makeCredential one", idx);
	} else if (n != 0)
		fail("get-assert: [%zu] largeBlobKey not requested", idx);
}

static int
cmd_get_assert(fido_dev_t *dev, const struct opts *o)
{
	fido_assert_t *a = NULL;
	struct credfile cf[MAX_CREDS];
	unsigned char cdh[32], salt[64];
	size_t saltlen = 0;
	const char *rp = o->rp;
	int r, ret = -1, ext = 0;

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
	if (o->hmac_salt != NULL) {
		if (unhex(o->hmac_salt, salt, sizeof(salt), &saltlen) < 0 ||
		    (saltlen != 32 && saltlen != 64)) {
			fail("get-assert: --hmac-salt must be 32 or 64 bytes of hex");
			goto out;
		}
		ext |= FIDO_EXT_HMAC_SECRET;
	}
	ext |= (o->cred_blob != NULL ? FIDO_EXT_CRED_BLOB : 0) |
	    (o->large_blob_key ? FIDO_EXT_LARGEBLOB_KEY : 0);
	if ((ext != 0 && fido_assert_set_extensions(a, ext) != FIDO_OK) ||
	    (o->hmac_salt != NULL &&
	    fido_assert_set_hmac_salt(a, salt, saltlen) != FIDO_OK)) {
		fail("get-assert: setting extensions");
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
		check_assert_ext(a, i, o, c);
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
/* Large blobs, authenticatorConfig */

/* The largeBlobKey from --key HEX or from the --cred file. */
static int
lb_key(const struct opts *o, unsigned char key[32])
{
	struct credfile cf;
	size_t n = 0;

	if (o->key != NULL) {
		if (unhex(o->key, key, 32, &n) < 0 || n != 32) {
			fail("--key must be 32 bytes of hex");
			return -1;
		}
		return 0;
	}
	if (o->ncred == 0) {
		fail("need --key HEX or --cred FILE");
		return -1;
	}
	if (cred_load(o->cred[0], &cf) < 0)
		return -1;
	if (cf.lbklen != 32) {
		fail("%s has no largeBlobKey (make-cred --large-blob-key --rk)",
		    o->cred[0]);
		return -1;
	}
	memcpy(key, cf.lbk, 32);
	return 0;
}

static int
cmd_largeblob_set(fido_dev_t *dev, const struct opts *o)
{
	unsigned char key[32];
	int r;

	if (lb_key(o, key) < 0 || o->data == NULL) {
		fail("largeblob-set: need a key and --data");
		return -1;
	}
	r = check_result(o, "fido_dev_largeblob_set", fido_dev_largeblob_set(dev,
	    key, sizeof(key), (const unsigned char *)o->data, strlen(o->data),
	    o->pin));
	if (r == 0)
		printf("largeblob-set: ok %zu bytes\n", strlen(o->data));
	return r >= 0 ? 0 : -1;
}

static int
cmd_largeblob_get(fido_dev_t *dev, const struct opts *o)
{
	unsigned char key[32], *out = NULL;
	size_t outlen = 0;
	int r;

	if (lb_key(o, key) < 0)
		return -1;
	r = check_result(o, "fido_dev_largeblob_get", fido_dev_largeblob_get(dev,
	    key, sizeof(key), &out, &outlen));
	if (r == 0) {
		printf("largeblob-get: ok %zu bytes: %.*s\n", outlen, (int)outlen,
		    (const char *)out);
		if (o->data != NULL && (outlen != strlen(o->data) ||
		    memcmp(out, o->data, outlen) != 0))
			fail("largeblob-get: content differs from \"%s\"", o->data);
	}
	free(out);
	return r >= 0 && failures == 0 ? 0 : -1;
}

static int
cmd_largeblob_remove(fido_dev_t *dev, const struct opts *o)
{
	unsigned char key[32];
	int r;

	if (lb_key(o, key) < 0)
		return -1;
	r = check_result(o, "fido_dev_largeblob_remove",
	    fido_dev_largeblob_remove(dev, key, sizeof(key), o->pin));
	if (r == 0)
		printf("largeblob-remove: ok\n");
	return r >= 0 ? 0 : -1;
}

/*
 * Writes a serialized large-blob array of exactly o->size bytes (CBOR array
 * holding one byte string, plus libfido2's 16-byte hash trailer) through
 * fido_dev_largeblob_set_array, which splits it into maxMsgSize-64 fragments,
 * and reads it back with fido_dev_largeblob_get_array.
 */
static int
cmd_largeblob_array(fido_dev_t *dev, const struct opts *o)
{
	unsigned char *arr = NULL, *got = NULL;
	size_t n, len, gotlen = 0;
	int r, ret = -1;

	if (o->size < 20 + 256 || o->size > 65535) {
		fail("largeblob-array: --size must be within 276..65535");
		return -1;
	}
	n = (size_t)o->size - 16 - 4;	/* array(1) + bstr header(3) + n */
	len = n + 4;
	if ((arr = malloc(len)) == NULL)
		return -1;
	arr[0] = 0x81;
	arr[1] = 0x59;
	arr[2] = (unsigned char)(n >> 8);
	arr[3] = (unsigned char)n;
	random_bytes(arr + 4, n);
	r = check_result(o, "fido_dev_largeblob_set_array",
	    fido_dev_largeblob_set_array(dev, arr, len, o->pin));
	if (r != 0) {
		ret = r > 0 ? 0 : -1;
		goto out;
	}
	printf("largeblob-array: set ok %ld bytes serialized\n", o->size);
	if ((r = fido_dev_largeblob_get_array(dev, &got, &gotlen)) != FIDO_OK) {
		fail("largeblob-array: fido_dev_largeblob_get_array: %s",
		    fido_strerr(r));
		goto out;
	}
	printf("largeblob-array: get ok %zu bytes\n", gotlen);
	if (gotlen != len || memcmp(got, arr, len) != 0)
		fail("largeblob-array: read back %zu bytes, differs from the "
		    "%zu written", gotlen, len);
	ret = failures ? -1 : 0;
out:
	free(arr);
	free(got);
	return ret;
}

static int
cmd_toggle_always_uv(fido_dev_t *dev, const struct opts *o)
{
	fido_cbor_info_t *ci;
	char **names;
	const bool *vals;
	int r, auv = -1;

	r = check_result(o, "fido_dev_toggle_always_uv",
	    fido_dev_toggle_always_uv(dev, o->pin));
	if (r != 0)
		return r > 0 ? 0 : -1;
	if ((ci = fido_cbor_info_new()) == NULL ||
	    fido_dev_get_cbor_info(dev, ci) != FIDO_OK) {
		fail("toggle-always-uv: getInfo");
		fido_cbor_info_free(&ci);
		return -1;
	}
	names = fido_cbor_info_options_name_ptr(ci);
	vals = fido_cbor_info_options_value_ptr(ci);
	for (size_t i = 0; i < fido_cbor_info_options_len(ci); i++)
		if (strcmp(names[i], "alwaysUv") == 0)
			auv = vals[i];
	printf("toggle-always-uv: ok alwaysUv=%d\n", auv);
	fido_cbor_info_free(&ci);
	return auv < 0 ? -1 : 0;
}

static int
cmd_set_pin_minlen(fido_dev_t *dev, const struct opts *o)
{
	int r;

	if (o->len > 0) {
		r = check_result(o, "fido_dev_set_pin_minlen",
		    fido_dev_set_pin_minlen(dev, (size_t)o->len, o->pin));
		if (r != 0)
			return r > 0 ? 0 : -1;
		printf("set-pin-minlen: ok minlen=%ld\n", o->len);
	}
	if (o->nrpid > 0) {
		r = check_result(o, "fido_dev_set_pin_minlen_rpid",
		    fido_dev_set_pin_minlen_rpid(dev, o->rpid, (size_t)o->nrpid,
		    o->pin));
		if (r != 0)
			return r > 0 ? 0 : -1;
		printf("set-pin-minlen: ok rpids=%d\n", o->nrpid);
	}
	if (o->force) {
		r = check_result(o, "fido_dev_force_pin_change",
		    fido_dev_force_pin_change(dev, o->pin));
		if (r != 0)
			return r > 0 ? 0 : -1;
		printf("set-pin-minlen: ok force\n");
	}
	return 0;
}

/* ------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: fido2_sockdev SOCKET COMMAND [options]\n"
	    "commands: info make-cred get-assert set-pin change-pin credman "
	    "reset retries\n"
	    "          largeblob-set largeblob-get largeblob-remove "
	    "largeblob-array\n"
	    "          toggle-always-uv set-pin-minlen\n"
	    "options: --rk --pin PIN --new-pin PIN --alg es256|eddsa|rs256 "
	    "--rp ID --user NAME\n"
	    "         --cred FILE (repeatable) --exclude FILE --discoverable "
	    "--expect FIDO_ERR_X\n"
	    "         --expect-retries N\n"
	    "         --hmac-secret --cred-protect N --cred-blob TEXT "
	    "--large-blob-key\n"
	    "         --min-pin-len N --hmac-salt HEX --key HEX --data TEXT "
	    "--size N\n"
	    "         --len N --rpid ID (repeatable) --force\n");
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
		} else if (strcmp(a, "--hmac-secret") == 0)
			o.hmac_secret = true;
		else if (strcmp(a, "--large-blob-key") == 0)
			o.large_blob_key = true;
		else if (strcmp(a, "--force") == 0)
			o.force = true;
		else if (strcmp(a, "--cred-protect") == 0) {
			NEEDARG();
			o.cred_protect = atoi(v);
		} else if (strcmp(a, "--cred-blob") == 0) {
			NEEDARG();
			o.cred_blob = v;
		} else if (strcmp(a, "--min-pin-len") == 0) {
			NEEDARG();
			o.min_pin_len = atoi(v);
		} else if (strcmp(a, "--hmac-salt") == 0) {
			NEEDARG();
			o.hmac_salt = v;
		} else if (strcmp(a, "--key") == 0) {
			NEEDARG();
			o.key = v;
		} else if (strcmp(a, "--data") == 0) {
			NEEDARG();
			o.data = v;
		} else if (strcmp(a, "--size") == 0) {
			NEEDARG();
			o.size = atol(v);
		} else if (strcmp(a, "--len") == 0) {
			NEEDARG();
			o.len = atol(v);
		} else if (strcmp(a, "--rpid") == 0) {
			NEEDARG();
			if (o.nrpid == MAX_CREDS)
				usage();
			o.rpid[o.nrpid++] = v;
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
	else if (strcmp(o.cmd, "largeblob-set") == 0)
		ret = cmd_largeblob_set(dev, &o);
	else if (strcmp(o.cmd, "largeblob-get") == 0)
		ret = cmd_largeblob_get(dev, &o);
	else if (strcmp(o.cmd, "largeblob-remove") == 0)
		ret = cmd_largeblob_remove(dev, &o);
	else if (strcmp(o.cmd, "largeblob-array") == 0)
		ret = cmd_largeblob_array(dev, &o);
	else if (strcmp(o.cmd, "toggle-always-uv") == 0)
		ret = cmd_toggle_always_uv(dev, &o);
	else if (strcmp(o.cmd, "set-pin-minlen") == 0)
		ret = cmd_set_pin_minlen(dev, &o);
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
