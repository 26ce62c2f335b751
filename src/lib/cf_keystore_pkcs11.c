/*
 * cf_keystore_pkcs11 — cf_keystore with the private keys in a PKCS#11 token
 * (layout in cf_keystore.h, design in docs/pkcs11.md).
 *
 * The journal discipline is the file store's: a generation directory
 * appears under its final name only once complete (built as .gen-<n>.tmp,
 * fsynced, renamed) and disappears by being renamed to .gen-<n>.del first;
 * the active generation changes only by renaming a new `current` symlink
 * over the old one and fsyncing the directory. The token cannot take part
 * in that rename, so the directory is the record: a key pair is generated
 * in the token before its directory is renamed into place and destroyed
 * after its directory is renamed away, and any "<object>-gen-<n>" pair with
 * no gen-<n> directory (a crash in between) is destroyed by the next
 * generate, rollback, cleanup or open. Each key pair has a fresh random
 * CKA_ID named in gen-<n>/key.uri, so a generation number reused after a
 * rollback never names an older key.
 */
#include "cf_keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_p11.h"
#include "cf_keystore_gen.h"
#include "cf_util.h"

#define KS_PATH 1024
#define KS_MAX_FILE (64 * 1024)
#define URI_NAME "key.uri"
#define CERT_NAME CF_KSGEN_CERT
#define CHAIN_NAME CF_KSGEN_CHAIN
#define KEY_NAME CF_KSGEN_KEY /* a file bundle's key, adopted into the token */

typedef struct {
	cf_keystore ks; /* handed out; st points back here */
	char dir[KS_PATH];
	cf_ksgen gen; /* the shared generation operations (cf_keystore_gen.c) */
	char prefix[96]; /* "<object>-gen-" */
	cf_p11 *p11;
} ks_p11;

static int
gen_label(char *out, size_t len, const ks_p11 *k, unsigned gen)
{
	return cf_strfmt(out, len, "%s%u", k->prefix, gen);
}

/* "<digits>" with no leading zero, >= 1; 0 otherwise. */
static unsigned
parse_num(const char *s)
{
	unsigned long n;
	char *end;

	if (s[0] < '1' || s[0] > '9')
		return 0;
	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || n > UINT_MAX / 2)
		return 0;
	return (unsigned)n;
}

static int
destroy_gen_objects(void *st, unsigned gen)
{
	const ks_p11 *k = st;
	char label[128];
	int r;

	if ((r = gen_label(label, sizeof(label), k, gen)) != 0)
		return r;
	return cf_p11_destroy(k->p11, label);
}

typedef struct {
	const ks_p11 *k;
	unsigned keep; /* never destroyed: the active generation */
	unsigned orphans[64];
	size_t n;
} sweep_ctx;

static int
sweep_one(const char *label, void *arg)
{
	sweep_ctx *c = arg;
	char path[KS_PATH];
	unsigned g = parse_num(label + strlen(c->k->prefix));
	size_t i;

	if (g == 0 || g == c->keep || cf_ksgen_path(path, sizeof(path), c->k->dir, g, NULL) != 0 ||
	    cf_ksgen_exists(path))
		return 0;
	for (i = 0; i < c->n; i++)
		if (c->orphans[i] == g)
			return 0;
	if (c->n < sizeof(c->orphans) / sizeof(c->orphans[0]))
		c->orphans[c->n++] = g;
	return 0;
}

/* Destroys token key pairs with no generation directory (never the active one's). */
static int
sweep_token(void *st, unsigned active)
{
	ks_p11 *k = st;
	sweep_ctx c;
	size_t i;
	int r;

	memset(&c, 0, sizeof(c));
	c.k = k;
	c.keep = active;
	if ((r = cf_p11_list(k->p11, k->prefix, sweep_one, &c)) != 0)
		return r;
	for (i = 0; i < c.n && r == 0; i++)
		r = destroy_gen_objects(k, c.orphans[i]);
	return r;
}

static int
read_uri(char *out, size_t len, const ks_p11 *k, unsigned gen)
{
	char path[KS_PATH], *s = NULL;
	size_t n;
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, gen, URI_NAME)) != 0 ||
	    (r = cf_file_read(&s, &n, path, CF_P11_URI_MAX)) != 0)
		return r;
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	if (strncmp(s, "pkcs11:", 7) != 0) {
		cf_error_set("%s: not a pkcs11: URI", path);
		r = CF_ECORRUPT;
	} else {
		r = cf_strfmt(out, len, "%s", s);
	}
	free(s);
	return r;
}

static int
load_key(cf_key **out, const ks_p11 *k, unsigned gen)
{
	char uri[CF_P11_URI_MAX];
	int r;

	if ((r = read_uri(uri, sizeof(uri), k, gen)) != 0)
		return r;
	return cf_p11_load_key(out, k->p11, uri);
}

static int
load_cert(cf_cert **out, const ks_p11 *k, unsigned gen)
{
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, gen, CERT_NAME)) != 0)
		return r;
	return cf_cert_load(out, path);
}

static int
check_pair(void *st, unsigned gen)
{
	const ks_p11 *k = st;
	int r;
	cf_key *key = NULL;
	cf_cert *cert = NULL;

	if ((r = load_key(&key, k, gen)) != 0 || (r = load_cert(&cert, k, gen)) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("%s/gen-%u: the certificate does not hold the token key's public key",
		    k->dir, gen);
		r = CF_ECORRUPT;
	}
out:
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

/* Writes a small new file in a temp directory (O_EXCL, fsynced). */
static int
write_new(const char *dir, const char *name, const char *data, mode_t mode)
{
	char path[KS_PATH];
	int r;

	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", dir, name)) != 0)
		return r;
	return cf_file_write_atomic(path, data, strlen(data), mode);
}

/* Builds generation gen (key URI, optional certificate and chain) in a temp dir, renames it in. */
static int
build_gen(const ks_p11 *k, unsigned gen, const char *uri, const char *cert_pem,
    const char *chain_pem)
{
	int r;
	char tmp[KS_PATH], final[KS_PATH], line[CF_P11_URI_MAX + 2];

	if ((r = cf_strfmt(tmp, sizeof(tmp), "%s/.gen-%u.tmp", k->dir, gen)) != 0 ||
	    (r = cf_ksgen_path(final, sizeof(final), k->dir, gen, NULL)) != 0 ||
	    (r = cf_strfmt(line, sizeof(line), "%s\n", uri)) != 0)
		return r;
	(void)cf_rmtree(tmp);
	if (mkdir(tmp, 0700) != 0) {
		cf_error_set("mkdir %s: %s", tmp, strerror(errno));
		return CF_ERROR;
	}
	if ((r = write_new(tmp, URI_NAME, line, 0600)) != 0 ||
	    (cert_pem != NULL && (r = write_new(tmp, CERT_NAME, cert_pem, 0644)) != 0) ||
	    (chain_pem != NULL && (r = write_new(tmp, CHAIN_NAME, chain_pem, 0644)) != 0) ||
	    (r = cf_fsync_dir(tmp)) != 0)
		goto out;
	if (rename(tmp, final) != 0) {
		cf_error_set("rename %s: %s", final, strerror(errno));
		r = CF_ERROR;
		goto out;
	}
	r = cf_fsync_dir(k->dir);
out:
	if (r != 0)
		(void)cf_rmtree(tmp);
	return r;
}

/* ---- operations ------------------------------------------------------- */

static int
ks_status(void *st, cf_keystore_status *out)
{
	return cf_ksgen_status(&((ks_p11 *)st)->gen, out);
}

static int
ks_generate(void *st, unsigned *out, cf_key_alg alg)
{
	ks_p11 *k = st;
	unsigned active;
	char *chain = NULL, uri[CF_P11_URI_MAX], label[128];
	int r;

	if ((r = cf_ksgen_read_active(&active, k->dir)) != 0 ||
	    (r = cf_ksgen_scan(&k->gen, active, NULL, NULL, 1, 0)) != 0 ||
	    (r = cf_ksgen_read_chain(&chain, k->dir, active)) != 0 ||
	    (r = gen_label(label, sizeof(label), k, active + 1)) != 0 ||
	    (r = cf_p11_generate(uri, sizeof(uri), k->p11, label, alg)) != 0)
		goto out;
	/* The key pair exists, its directory not yet: a crash here leaves an orphan, swept later. */
	(void)cf_failpoint("keystore.pkcs11.generated");
	if ((r = build_gen(k, active + 1, uri, NULL, chain)) != 0) {
		if (cf_p11_destroy(k->p11, label) != 0) {
			/* the sweep takes it; the build's error is the one to report */
		}
		goto out;
	}
	*out = active + 1;
out:
	free(chain);
	return r;
}

static int
ks_csr(void *st, char **out_pem, unsigned gen, cf_sig_alg sig, const char *thing)
{
	cf_key *key = NULL;
	int r;

	if ((r = load_key(&key, st, gen)) == 0)
		r = cf_csr_create(out_pem, key, sig, thing);
	cf_key_free(key);
	return r;
}

static int
ks_sign(void *st, unsigned char **out, size_t *out_len, unsigned gen, cf_sig_alg sig,
    const void *data, size_t len)
{
	cf_key *key = NULL;
	int r;

	if ((r = load_key(&key, st, gen)) == 0)
		r = cf_key_sign(out, out_len, key, sig, data, len);
	cf_key_free(key);
	return r;
}

static int
ks_public_key(void *st, cf_key **out, unsigned gen)
{
	char uri[CF_P11_URI_MAX];
	int r;

	if ((r = read_uri(uri, sizeof(uri), st, gen)) != 0)
		return r;
	return cf_p11_load_public(out, ((ks_p11 *)st)->p11, uri);
}

static int
ks_certificate(void *st, cf_cert **out, unsigned gen)
{
	return load_cert(out, st, gen);
}

static int
ks_install_cert(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_p11 *k = st;
	unsigned active;
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_read_active(&active, k->dir)) != 0)
		goto out;
	if (gen == active) {
		cf_error_set("generation %u is active; its certificate cannot change", gen);
		r = CF_ESTATE;
		goto out;
	}
	if ((r = load_key(&key, k, gen)) != 0 || (r = cf_cert_parse(&cert, pem, len)) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("the certificate does not hold generation %u's public key", gen);
		r = CF_EINVAL;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, gen, CERT_NAME)) != 0 ||
	    (r = cf_file_write_atomic(path, pem, len, 0644)) != 0)
		goto out;
out:
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

static int
ks_chain(void *st, char **out_pem, unsigned gen)
{
	return cf_ksgen_chain(out_pem, ((const ks_p11 *)st)->dir, gen);
}

static int
ks_install_chain(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_p11 *k = st;
	unsigned active;
	cf_cert **certs = NULL;
	size_t n = 0;
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_read_active(&active, k->dir)) != 0)
		goto out;
	if (gen == active) {
		cf_error_set("generation %u is active; its CA chain cannot change", gen);
		r = CF_ESTATE;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, gen, NULL)) != 0)
		goto out;
	if (!cf_ksgen_exists(path)) {
		cf_error_set("generation %u does not exist", gen);
		r = CF_ENOTFOUND;
		goto out;
	}
	if ((r = cf_cert_parse_bundle(&certs, &n, pem, len)) != 0) {
		r = CF_EINVAL;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, gen, CHAIN_NAME)) != 0 ||
	    (r = cf_file_write_atomic(path, pem, len, 0644)) != 0)
		goto out;
out:
	cf_cert_list_free(certs, n);
	return r;
}

static int
ks_activate(void *st, unsigned gen)
{
	return cf_ksgen_activate(&((ks_p11 *)st)->gen, gen);
}

static int
ks_rollback(void *st, unsigned gen)
{
	return cf_ksgen_rollback(&((ks_p11 *)st)->gen, gen);
}

static int
ks_cleanup(void *st)
{
	return cf_ksgen_cleanup(&((ks_p11 *)st)->gen);
}

static int
ks_locate(void *st, char *key_out, size_t key_len, char *cert_out, size_t cert_len, unsigned gen)
{
	int r;

	if ((r = read_uri(key_out, key_len, st, gen)) != 0)
		return r;
	return cf_ksgen_path(cert_out, cert_len, ((const ks_p11 *)st)->dir, gen, CERT_NAME);
}

static void
ks_free(void *st)
{
	ks_p11 *k = st;

	if (k == NULL)
		return;
	cf_p11_free(k->p11);
	free(k);
}

static const cf_keystore_ops pkcs11_ops = {
	.status = ks_status,
	.generate = ks_generate,
	.csr = ks_csr,
	.sign = ks_sign,
	.public_key = ks_public_key,
	.certificate = ks_certificate,
	.install_cert = ks_install_cert,
	.chain = ks_chain,
	.install_chain = ks_install_chain,
	.activate = ks_activate,
	.rollback = ks_rollback,
	.cleanup = ks_cleanup,
	.locate = ks_locate,
	.free = ks_free,
};

/* ---- opening and adoption ---------------------------------------------- */

/* Overwrites a file's bytes with zeros (fsynced), then unlinks it and fsyncs the directory. */
static int
shred(const ks_p11 *k, const char *path)
{
	struct stat st;
	char zero[4096];
	off_t off = 0;
	ssize_t n;
	int fd;

	memset(zero, 0, sizeof(zero));
	if ((fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		if (fstat(fd, &st) == 0)
			while (off < st.st_size) {
				n = write(fd, zero, (size_t)(st.st_size - off) < sizeof(zero) ?
				    (size_t)(st.st_size - off) : sizeof(zero));
				if (n <= 0)
					break;
				off += n;
			}
		(void)fsync(fd);
		(void)close(fd);
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		cf_error_set("unlink %s: %s", path, strerror(errno));
		return CF_ERROR;
	}
	return cf_fsync_dir(k->dir);
}

/*
 * Imports a file bundle's device.key into the token as generation 1.
 * Until device.key is gone every step is redone from it after a crash:
 * `current` is removed first, so a half-adopted store is never opened as
 * a finished one.
 */
static int
adopt(ks_p11 *k)
{
	int r;
	char path[KS_PATH], uri[CF_P11_URI_MAX], label[128], *cert_pem = NULL, *chain_pem = NULL;
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	unsigned active;

	if ((r = cf_ksgen_read_active(&active, k->dir)) == 0 && active != 1) {
		cf_error_set("%s: a plain device.key beside a key store at generation %u; remove the "
		    "stale device.key", k->dir, active);
		return CF_ECORRUPT;
	}
	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, KEY_NAME)) != 0 ||
	    (r = cf_key_load(&key, path, NULL)) != 0)
		goto out;
	/* device.crt is plain, or (a crash mid-adoption) a link into gen-1. */
	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, CERT_NAME)) != 0)
		goto out;
	if (cf_file_read(&cert_pem, NULL, path, KS_MAX_FILE) != 0 &&
	    ((r = cf_ksgen_path(path, sizeof(path), k->dir, 1, CERT_NAME)) != 0 ||
	    (r = cf_file_read(&cert_pem, NULL, path, KS_MAX_FILE)) != 0))
		goto out;
	if ((r = cf_cert_parse(&cert, cert_pem, strlen(cert_pem))) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("%s: device.crt does not hold device.key's public key; not adopting it",
		    k->dir);
		r = CF_ECORRUPT;
		goto out;
	}
	if (cf_ksgen_plain_file(k->dir, CHAIN_NAME) == 1) {
		if ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, CHAIN_NAME)) != 0 ||
		    (r = cf_file_read(&chain_pem, NULL, path, KS_MAX_FILE)) != 0)
			goto out;
	} else if ((r = cf_ksgen_read_chain(&chain_pem, k->dir, 1)) != 0) {
		goto out;
	}
	if ((r = cf_strfmt(path, sizeof(path), "%s/current", k->dir)) != 0)
		goto out;
	if (unlink(path) == 0 && (r = cf_fsync_dir(k->dir)) != 0)
		goto out;
	if ((r = cf_ksgen_scan(&k->gen, 0, NULL, NULL, 0, 1)) != 0 ||
	    (r = gen_label(label, sizeof(label), k, 1)) != 0 ||
	    (r = cf_p11_destroy(k->p11, label)) != 0 ||
	    (r = cf_p11_import(uri, sizeof(uri), k->p11, label, key)) != 0 ||
	    (r = build_gen(k, 1, uri, cert_pem, chain_pem)) != 0 ||
	    (r = cf_ksgen_set_current(k->dir, 1)) != 0 ||
	    (r = cf_ksgen_link_current(k->dir, CERT_NAME)) != 0 ||
	    (chain_pem != NULL && (r = cf_ksgen_link_current(k->dir, CHAIN_NAME)) != 0))
		goto out;
	(void)cf_failpoint("keystore.pkcs11.before-key-removal");
	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, KEY_NAME)) != 0 ||
	    (r = shred(k, path)) != 0)
		goto out;
out:
	cf_cert_free(cert);
	free(cert_pem);
	free(chain_pem);
	cf_key_free(key);
	return r;
}

/*
 * A plain dir/ca-chain.crt moves into the active generation and becomes a
 * link through `current`; a missing link to an existing chain is redone.
 */
static int
adopt_chain(const ks_p11 *k, unsigned active)
{
	char path[KS_PATH], gpath[KS_PATH], *pem = NULL;
	int r, c = cf_ksgen_plain_file(k->dir, CHAIN_NAME);

	if (c == 0 || (c < 0 && c != CF_ENOTFOUND))
		return c;
	if ((r = cf_ksgen_path(gpath, sizeof(gpath), k->dir, active, CHAIN_NAME)) != 0)
		return r;
	if (c == CF_ENOTFOUND)
		return cf_ksgen_exists(gpath) ? cf_ksgen_link_current(k->dir, CHAIN_NAME) : 0;
	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, CHAIN_NAME)) != 0 ||
	    (r = cf_file_read(&pem, NULL, path, KS_MAX_FILE)) != 0 ||
	    (r = cf_file_write_atomic(gpath, pem, strlen(pem), 0644)) != 0 ||
	    (r = cf_ksgen_link_current(k->dir, CHAIN_NAME)) != 0)
		goto out;
out:
	free(pem);
	return r;
}

/*
 * A bundle provisioned in the token: a plain device.crt (no device.key)
 * whose key pair the operator generated in the token, labelled
 * "<object>-gen-1" (e.g. pkcs11-tool --keypairgen, then a CSR through the
 * engine and `certfleet thing create --csr`). It becomes generation 1 as
 * it is; for tokens that cannot import a key (tpm2-pkcs11) this is the way
 * in. CF_ENOTFOUND if the token has no such key.
 */
static int
adopt_provisioned(ks_p11 *k)
{
	char path[KS_PATH], uri[CF_P11_URI_MAX], label[128], *cert_pem = NULL, *chain_pem = NULL;
	cf_p11_key_attrs a;
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	int r;

	if ((r = gen_label(label, sizeof(label), k, 1)) != 0 ||
	    (r = cf_p11_key_attrs_get(&a, k->p11, label)) != 0)
		return r;
	if (!a.found) {
		cf_error_set("%s: no device.key, no key store, and no key '%s' in the token", k->dir,
		    label);
		return CF_ENOTFOUND;
	}
	if ((r = cf_p11_uri(uri, sizeof(uri), k->p11, label)) != 0 ||
	    (r = cf_p11_load_key(&key, k->p11, uri)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, CERT_NAME)) != 0 ||
	    (r = cf_file_read(&cert_pem, NULL, path, KS_MAX_FILE)) != 0 ||
	    (r = cf_cert_parse(&cert, cert_pem, strlen(cert_pem))) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("%s: device.crt does not hold the public key of token key '%s'", k->dir,
		    label);
		r = CF_ECORRUPT;
		goto out;
	}
	if (cf_ksgen_plain_file(k->dir, CHAIN_NAME) == 1 &&
	    ((r = cf_strfmt(path, sizeof(path), "%s/%s", k->dir, CHAIN_NAME)) != 0 ||
	    (r = cf_file_read(&chain_pem, NULL, path, KS_MAX_FILE)) != 0))
		goto out;
	/*
	 * Without `current` no generation is the record yet: a gen-1 left by an
	 * interrupted adoption is rebuilt, other generations and token leftovers
	 * go — but never the provisioned key pair itself (kept as generation 1).
	 */
	if ((r = cf_ksgen_path(path, sizeof(path), k->dir, 1, NULL)) != 0)
		goto out;
	(void)cf_rmtree(path);
	if ((r = cf_ksgen_scan(&k->gen, 1, NULL, NULL, 0, 1)) != 0 ||
	    (r = build_gen(k, 1, uri, cert_pem, chain_pem)) != 0 ||
	    (r = cf_ksgen_set_current(k->dir, 1)) != 0 ||
	    (r = cf_ksgen_link_current(k->dir, CERT_NAME)) != 0 ||
	    (chain_pem != NULL && (r = cf_ksgen_link_current(k->dir, CHAIN_NAME)) != 0))
		goto out;
out:
	cf_cert_free(cert);
	free(cert_pem);
	free(chain_pem);
	cf_key_free(key);
	return r;
}

int
cf_keystore_pkcs11_open(cf_keystore **out, const char *dir, const cf_keystore_pkcs11_opts *o)
{
	int r = CF_ERROR, c;
	ks_p11 *k = NULL;
	unsigned active;
	char *pin = NULL;
	const char *object = o->object != NULL && o->object[0] != '\0' ? o->object : "certfleet";

	if (o->module == NULL || o->token == NULL || o->pin_file == NULL) {
		cf_error_set("the PKCS#11 key store needs a module, a token label and a PIN file");
		return CF_EINVAL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	k->ks.ops = &pkcs11_ops;
	k->ks.st = k;
	k->gen.dir = k->dir;
	k->gen.st = k;
	k->gen.check_pair = check_pair;
	k->gen.forget = destroy_gen_objects;
	k->gen.sweep = sweep_token;
	if ((r = cf_strfmt(k->dir, sizeof(k->dir), "%s", dir)) != 0 ||
	    (r = cf_strfmt(k->prefix, sizeof(k->prefix), "%s-gen-", object)) != 0 ||
	    (r = cf_p11_pin_read(&pin, o->pin_file)) != 0 ||
	    (r = cf_p11_open(&k->p11, o->module, o->token, pin)) != 0)
		goto out;
	if (cf_ksgen_plain_file(k->dir, KEY_NAME) == 1) {
		if ((r = adopt(k)) != 0)
			goto out;
	} else if ((r = cf_ksgen_read_active(&active, k->dir)) != 0) {
		if (r == CF_ENOTFOUND && cf_ksgen_plain_file(k->dir, CERT_NAME) != 1)
			cf_error_set("%s: no device.key, no device.crt and no PKCS#11 key store", dir);
		if (r != CF_ENOTFOUND || cf_ksgen_plain_file(k->dir, CERT_NAME) != 1 || (r = adopt_provisioned(k)) != 0)
			goto out;
	} else {
		/* A link lost (or an adoption cut short after `current`): redo it. */
		c = cf_ksgen_plain_file(k->dir, CERT_NAME);
		if ((c == 1 || c == CF_ENOTFOUND) &&
		    (r = cf_ksgen_link_current(k->dir, CERT_NAME)) != 0)
			goto out;
		if ((r = adopt_chain(k, active)) != 0)
			goto out;
	}
	if ((r = cf_ksgen_read_active(&active, k->dir)) != 0 ||
	    (r = cf_ksgen_scan(&k->gen, active, NULL, NULL, 0, 0)) != 0 ||
	    (r = sweep_token(k, active)) != 0 || (r = check_pair(k, active)) != 0)
		goto out;
	*out = &k->ks;
	k = NULL;
out:
	cf_secret_free(pin, 0);
	ks_free(k);
	return r;
}

cf_p11 *
cf_keystore_pkcs11_token(cf_keystore *ks)
{
	if (ks == NULL || ks->ops != &pkcs11_ops)
		return NULL;
	return ((ks_p11 *)ks->st)->p11;
}
