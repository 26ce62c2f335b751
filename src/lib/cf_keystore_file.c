/*
 * cf_keystore_file — the file implementation of cf_keystore: numbered
 * generation directories in the bundle directory and a `current` symlink
 * that names the active one (layout in cf_keystore.h, docs/agent.md).
 *
 * Crash safety rests on three rules. A generation directory appears under
 * its final name only once complete (built as .gen-<n>.tmp, fsynced,
 * renamed); it disappears by being renamed back to a temp name first, so a
 * half-deleted generation is never mistaken for a real one. The active
 * generation changes only by renaming a new `current` symlink over the old
 * one, followed by an fsync of the directory. Leftover temp names are
 * removed on open. The generation directories, the switch and the scan are
 * cf_keystore_gen.c's, shared with the PKCS#11 store; this file owns the key
 * file, the pair check and adoption. Key PEM buffers are wiped; nothing here
 * logs key material.
 */
#include "cf_keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_keystore_gen.h"
#include "cf_util.h"

#define KS_PATH 1024
#define KS_MAX_FILE (64 * 1024)
#define KEY_NAME CF_KSGEN_KEY
#define CERT_NAME CF_KSGEN_CERT
#define CHAIN_NAME CF_KSGEN_CHAIN

typedef struct {
	cf_keystore ks; /* handed out; st points back here */
	char dir[KS_PATH];
	cf_ksgen gen; /* the shared generation operations (cf_keystore_gen.c) */
	/*
	 * The last pair found to match (install_cert, check_pair): its
	 * generation and the SHA-256 of the key file's and the certificate
	 * file's bytes. check_pair reads both files every time but decodes them
	 * only if their bytes are not the ones already checked: the same bytes
	 * give the same answer, and OpenSSL 3.0 spends most of a millisecond on
	 * each decode. Digests only: no key material is kept.
	 */
	unsigned pair_gen; /* 0: none */
	char pair_key[CF_ID_LEN + 1], pair_cert[CF_ID_LEN + 1];
} ks_file;

static int
load_key(cf_key **out, const ks_file *f, unsigned gen)
{
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, KEY_NAME)) != 0)
		return r;
	return cf_key_load(out, path, NULL);
}

static int
load_cert(cf_cert **out, const ks_file *f, unsigned gen)
{
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, CERT_NAME)) != 0)
		return r;
	return cf_cert_load(out, path);
}

/* Generation gen's file name, whole (the key's buffer is wiped when freed: read_free). */
static int
read_gen_file(char **out, size_t *out_len, const ks_file *f, unsigned gen, const char *name)
{
	char path[KS_PATH];
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, name)) != 0)
		return r;
	return cf_file_read(out, out_len, path, KS_MAX_FILE);
}

static void
read_free(char *buf, size_t len)
{
	if (buf != NULL)
		cf_secret_free(buf, len + 1);
}

static void
remember_pair(ks_file *f, unsigned gen, const char *key_sha, const char *cert_sha)
{
	f->pair_gen = gen;
	memcpy(f->pair_key, key_sha, sizeof(f->pair_key));
	memcpy(f->pair_cert, cert_sha, sizeof(f->pair_cert));
}

/* 0 if generation gen holds a key and a certificate for it. */
static int
check_pair(void *st, unsigned gen)
{
	ks_file *f = st;
	int r;
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	char *kb = NULL, *cb = NULL, ksha[CF_ID_LEN + 1], csha[CF_ID_LEN + 1];
	size_t kl = 0, cl = 0;

	if ((r = read_gen_file(&kb, &kl, f, gen, KEY_NAME)) != 0 ||
	    (r = read_gen_file(&cb, &cl, f, gen, CERT_NAME)) != 0)
		goto out;
	cf_sha256_hex(ksha, kb, kl);
	cf_sha256_hex(csha, cb, cl);
	if (f->pair_gen == gen && strcmp(ksha, f->pair_key) == 0 && strcmp(csha, f->pair_cert) == 0)
		goto out; /* these very bytes matched already */
	if ((r = cf_key_from_pem(&key, kb, kl, NULL)) != 0 || (r = cf_cert_parse(&cert, cb, cl)) != 0) {
		cf_error_prefix("%s/gen-%u", f->dir, gen);
		goto out;
	}
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("%s/gen-%u: the certificate does not hold the key's public key", f->dir, gen);
		r = CF_ECORRUPT;
		goto out;
	}
	remember_pair(f, gen, ksha, csha);
out:
	read_free(kb, kl);
	free(cb);
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

/* Writes a new file with O_EXCL (never over an existing one), fsyncs it. */
static int
write_excl(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd, r = CF_ERROR;
	size_t off = 0;
	ssize_t n;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)) < 0) {
		cf_error_set("%s: %s", path, strerror(errno));
		return errno == EEXIST ? CF_EEXISTS : CF_ERROR;
	}
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	r = 0;
	goto out;
fail:
	cf_error_set("%s: %s", path, strerror(errno));
out:
	if (close(fd) != 0 && r == 0) {
		cf_error_set("%s: %s", path, strerror(errno));
		r = CF_ERROR;
	}
	return r;
}

/*
 * Builds generation gen from a key (and optionally a certificate and a CA chain) in a
 * temp directory and renames it into place: a gen-<n> is always complete.
 */
static int
build_gen(const ks_file *f, unsigned gen, const cf_key *key, const char *cert_pem,
    const char *chain_pem)
{
	int r;
	char tmp[KS_PATH], path[KS_PATH], final[KS_PATH], *pem = NULL;

	if ((r = cf_strfmt(tmp, sizeof(tmp), "%s/.gen-%u.tmp", f->dir, gen)) != 0 ||
	    (r = cf_ksgen_path(final, sizeof(final), f->dir, gen, NULL)) != 0)
		goto out;
	(void)cf_rmtree(tmp);
	if (mkdir(tmp, 0700) != 0) {
		cf_error_set("mkdir %s: %s", tmp, strerror(errno));
		r = CF_ERROR;
		goto out;
	}
	if ((r = cf_key_to_pem(&pem, key, NULL)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s", tmp, KEY_NAME)) != 0 ||
	    (r = write_excl(path, pem, strlen(pem), 0600)) != 0)
		goto out;
	if (cert_pem != NULL &&
	    ((r = cf_strfmt(path, sizeof(path), "%s/%s", tmp, CERT_NAME)) != 0 ||
	    (r = write_excl(path, cert_pem, strlen(cert_pem), 0644)) != 0))
		goto out;
	if (chain_pem != NULL &&
	    ((r = cf_strfmt(path, sizeof(path), "%s/%s", tmp, CHAIN_NAME)) != 0 ||
	    (r = write_excl(path, chain_pem, strlen(chain_pem), 0644)) != 0))
		goto out;
	if ((r = cf_fsync_dir(tmp)) != 0)
		goto out;
	if (rename(tmp, final) != 0) {
		cf_error_set("rename %s: %s", final, strerror(errno));
		r = CF_ERROR;
		goto out;
	}
	r = cf_fsync_dir(f->dir);
out:
	cf_secret_free(pem, 0);
	if (r != 0)
		(void)cf_rmtree(tmp);
	return r;
}

/* ---- operations ------------------------------------------------------- */

static int
ks_status(void *st, cf_keystore_status *out)
{
	return cf_ksgen_status(&((ks_file *)st)->gen, out);
}

static int
ks_generate(void *st, unsigned *out, cf_key_alg alg)
{
	ks_file *f = st;
	unsigned active;
	cf_key *key = NULL;
	char *chain = NULL;
	int r;

	if ((r = cf_ksgen_read_active(&active, f->dir)) != 0 ||
	    (r = cf_ksgen_scan(&f->gen, active, NULL, NULL, 1, 0)) != 0 ||
	    (r = cf_ksgen_read_chain(&chain, f->dir, active)) != 0 ||
	    (r = cf_key_generate(&key, alg)) != 0 ||
	    (r = build_gen(f, active + 1, key, NULL, chain)) != 0)
		goto out;
	*out = active + 1;
out:
	free(chain);
	cf_key_free(key);
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
	return load_key(out, st, gen);
}

static int
ks_certificate(void *st, cf_cert **out, unsigned gen)
{
	return load_cert(out, st, gen);
}

static int
ks_install_cert(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_file *f = st;
	unsigned active;
	cf_key *key = NULL, *pub = NULL;
	char path[KS_PATH], *kb = NULL, ksha[CF_ID_LEN + 1], csha[CF_ID_LEN + 1];
	size_t kl = 0;
	int r;

	if ((r = cf_ksgen_read_active(&active, f->dir)) != 0)
		goto out;
	if (gen == active) {
		cf_error_set("generation %u is active; its certificate cannot change", gen);
		r = CF_ESTATE;
		goto out;
	}
	if ((r = read_gen_file(&kb, &kl, f, gen, KEY_NAME)) != 0)
		goto out;
	if ((r = cf_key_from_pem(&key, kb, kl, NULL)) != 0) {
		cf_error_prefix("%s/gen-%u", f->dir, gen);
		goto out;
	}
	/* Only the certificate's key is needed here (read without OpenSSL's decoder). */
	if ((r = cf_cert_pubkey_from_pem(&pub, pem, len)) != 0)
		goto out;
	if (!cf_key_equal_public(pub, key)) {
		cf_error_set("the certificate does not hold generation %u's public key", gen);
		r = CF_EINVAL;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, CERT_NAME)) != 0 ||
	    (r = cf_file_write_atomic(path, pem, len, 0644)) != 0)
		goto out;
	/* The switch (activate: check_pair) then finds these bytes checked. */
	cf_sha256_hex(ksha, kb, kl);
	cf_sha256_hex(csha, pem, len);
	remember_pair(f, gen, ksha, csha);
out:
	read_free(kb, kl);
	cf_key_free(pub);
	cf_key_free(key);
	return r;
}

static int
ks_chain(void *st, char **out_pem, unsigned gen)
{
	return cf_ksgen_chain(out_pem, ((const ks_file *)st)->dir, gen);
}

static int
ks_install_chain(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_file *f = st;
	unsigned active;
	cf_cert **certs = NULL;
	size_t n = 0, cur_len = 0;
	char path[KS_PATH], *cur = NULL;
	int r;

	if ((r = cf_ksgen_read_active(&active, f->dir)) != 0)
		goto out;
	if (gen == active) {
		cf_error_set("generation %u is active; its CA chain cannot change", gen);
		r = CF_ESTATE;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, NULL)) != 0)
		goto out;
	if (!cf_ksgen_exists(path)) {
		cf_error_set("generation %u does not exist", gen);
		r = CF_ENOTFOUND;
		goto out;
	}
	/*
	 * Outside a roll-over the chain is the one generate copied from the
	 * active generation: already there, byte for byte, so neither decoded
	 * nor written (and fsynced) again.
	 */
	if (read_gen_file(&cur, &cur_len, f, gen, CHAIN_NAME) == 0 && cur_len == len &&
	    memcmp(cur, pem, len) == 0)
		goto out;
	if ((r = cf_cert_parse_bundle(&certs, &n, pem, len)) != 0) {
		r = CF_EINVAL;
		goto out;
	}
	if ((r = cf_ksgen_path(path, sizeof(path), f->dir, gen, CHAIN_NAME)) != 0 ||
	    (r = cf_file_write_atomic(path, pem, len, 0644)) != 0)
		goto out;
out:
	free(cur);
	cf_cert_list_free(certs, n);
	return r;
}

static int
ks_activate(void *st, unsigned gen)
{
	return cf_ksgen_activate(&((ks_file *)st)->gen, gen);
}

static int
ks_rollback(void *st, unsigned gen)
{
	return cf_ksgen_rollback(&((ks_file *)st)->gen, gen);
}

static int
ks_cleanup(void *st)
{
	return cf_ksgen_cleanup(&((ks_file *)st)->gen);
}

static int
ks_locate(void *st, char *key_out, size_t key_len, char *cert_out, size_t cert_len, unsigned gen)
{
	int r;

	if ((r = cf_ksgen_path(key_out, key_len, ((const ks_file *)st)->dir, gen, KEY_NAME)) != 0)
		return r;
	return cf_ksgen_path(cert_out, cert_len, ((const ks_file *)st)->dir, gen, CERT_NAME);
}

static void
ks_free(void *st)
{
	free(st);
}

static const cf_keystore_ops file_ops = {
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

/*
 * Turns a plain bundle into generation 1. Until device.key is replaced by a
 * symlink (the last step but one) nothing a reader sees has changed, and
 * every earlier step is redone from the plain files after a crash.
 */
static int
adopt(ks_file *f)
{
	int r;
	char path[KS_PATH], *cert_pem = NULL;
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	unsigned g;

	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", f->dir, KEY_NAME)) != 0 ||
	    (r = cf_key_load(&key, path, NULL)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s", f->dir, CERT_NAME)) != 0 ||
	    (r = cf_file_read(&cert_pem, NULL, path, KS_MAX_FILE)) != 0 ||
	    (r = cf_cert_parse(&cert, cert_pem, strlen(cert_pem))) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, key)) {
		cf_error_set("%s: device.crt does not hold device.key's public key; not adopting it",
		    f->dir);
		r = CF_ECORRUPT;
		goto out;
	}
	/* Anything left from an interrupted adoption is redone. */
	if ((r = cf_strfmt(path, sizeof(path), "%s/current", f->dir)) != 0)
		goto out;
	(void)unlink(path);
	if ((r = cf_ksgen_scan(&f->gen, 0, &g, NULL, 0, 1)) != 0 ||
	    (r = build_gen(f, 1, key, cert_pem, NULL)) != 0 ||
	    (r = cf_ksgen_set_current(f->dir, 1)) != 0 ||
	    (r = cf_ksgen_link_current(f->dir, KEY_NAME)) != 0 ||
	    (r = cf_ksgen_link_current(f->dir, CERT_NAME)) != 0)
		goto out;
out:
	cf_cert_free(cert);
	free(cert_pem);
	cf_key_free(key);
	return r;
}

/*
 * A plain dir/ca-chain.crt moves into the active generation and becomes a
 * link through `current`, so that it switches with the pair. Until the
 * rename the plain file is what readers see, and the copy is redone.
 */
static int
adopt_chain(const ks_file *f, unsigned active)
{
	char path[KS_PATH], *pem = NULL;
	int r;

	if ((r = cf_ksgen_plain_file(f->dir, CHAIN_NAME)) != 1)
		return r == CF_ENOTFOUND ? 0 : r;
	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", f->dir, CHAIN_NAME)) != 0 ||
	    (r = cf_file_read(&pem, NULL, path, KS_MAX_FILE)) != 0 ||
	    (r = cf_ksgen_path(path, sizeof(path), f->dir, active, CHAIN_NAME)) != 0 ||
	    (r = cf_file_write_atomic(path, pem, strlen(pem), 0644)) != 0 ||
	    (r = cf_ksgen_link_current(f->dir, CHAIN_NAME)) != 0)
		goto out;
out:
	free(pem);
	return r;
}

int
cf_keystore_file_open(cf_keystore **out, const char *dir)
{
	int r = CF_ERROR, k, c;
	ks_file *f = NULL;
	unsigned active;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	f->gen.dir = f->dir;
	f->gen.st = f;
	f->gen.check_pair = check_pair;
	if ((r = cf_strfmt(f->dir, sizeof(f->dir), "%s", dir)) != 0)
		goto out;
	f->ks.ops = &file_ops;
	f->ks.st = f;
	k = cf_ksgen_plain_file(f->dir, KEY_NAME);
	c = cf_ksgen_plain_file(f->dir, CERT_NAME);
	if (k < 0 && k != CF_ENOTFOUND) {
		r = k;
		goto out;
	}
	if (k == 1) {
		if ((r = adopt(f)) != 0)
			goto out;
	} else if ((r = cf_ksgen_read_active(&active, f->dir)) != 0) {
		if (r == CF_ENOTFOUND)
			cf_error_set("%s: no device.key and no key store", dir);
		goto out;
	} else {
		/* Crash between the two links of an adoption, or a link lost: redo them. */
		if ((c == 1 || c == CF_ENOTFOUND) &&
		    (r = cf_ksgen_link_current(f->dir, CERT_NAME)) != 0)
			goto out;
		if (k == CF_ENOTFOUND && (r = cf_ksgen_link_current(f->dir, KEY_NAME)) != 0)
			goto out;
	}
	if ((r = cf_ksgen_read_active(&active, f->dir)) != 0 ||
	    (r = cf_ksgen_scan(&f->gen, active, NULL, NULL, 0, 0)) != 0 ||
	    (r = check_pair(f, active)) != 0 || (r = adopt_chain(f, active)) != 0)
		goto out;
	*out = &f->ks;
	f = NULL;
out:
	free(f);
	return r;
}
