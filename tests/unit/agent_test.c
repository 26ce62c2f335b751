/*
 * agent_test — the device side of a rotation: the file key store (layout,
 * adoption of a plain bundle, atomic switch, rollback, cleanup, modes) on a
 * real temp directory, with a test CA made here; and the agent's state
 * machine driven through a scripted transport — a small fake certfleetd
 * that answers (or, per scenario, drops or rejects) each request and checks
 * the custody signatures — walking every edge of the table, every failure
 * path, and a simulated power cut right after every journal write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cf_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cf_agent.h"
#include "cf_keystore.h"
#include "cf_proto.h"
#include "cf_util.h"

#define THING "sensor-7"

static struct {
	cf_key *root_key, *int_key, *other_key, *int_b_key, *evil_root_key, *evil_int_key;
	cf_cert *root, *inter, *other_root, *inter_b, *evil_root, *evil_int;
	char *chain_pem;     /* intermediate + root, as in ca-chain.crt */
	char *chain_b_pem;   /* a second intermediate (B) under the same root + root */
	char *inter_b_pem;   /* B alone */
	char *evil_chain_pem; /* an attacker's intermediate + a self-made root named like ours */
	char dir[64];        /* per-test temp directory */
} g;

static char *
issue_pem(const char *csr_pem, const char *thing, const cf_cert *issuer, const cf_key *issuer_key)
{
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	char *pem = NULL;

	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&cert, csr, thing, 30, 0, issuer, issuer_key));
	must(cf_cert_to_pem(&pem, cert));
	cf_cert_free(cert);
	cf_csr_free(csr);
	return pem;
}

/*
 * A device certificate our intermediate would never issue: the CSR's key
 * with subject CN cn and subjectAltName san, built by hand with OpenSSL
 * (cf_pki_issue_device always names the CSR's thing in both).
 */
static char *
forge_pem(const char *csr_pem, const char *cn, const char *san)
{
	BIO *bio;
	X509_REQ *req;
	X509 *x = X509_new(), *issuer;
	EVP_PKEY *ikey;
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	BUF_MEM *bm;
	char *kp = NULL, *ip = NULL, *out;
	static const struct { int nid; const char *v; } exts[] = {
		{NID_basic_constraints, "critical,CA:FALSE"},
		{NID_key_usage, "critical,digitalSignature"},
		{NID_ext_key_usage, "clientAuth"},
		{NID_subject_key_identifier, "hash"},
		{NID_authority_key_identifier, "keyid:always"},
	};
	size_t i;

	bio = BIO_new_mem_buf(csr_pem, -1);
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	BIO_free(bio);
	must(cf_key_to_pem(&kp, g.int_key, NULL));
	bio = BIO_new_mem_buf(kp, -1);
	ikey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	must(cf_cert_to_pem(&ip, g.inter));
	bio = BIO_new_mem_buf(ip, -1);
	issuer = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(req);
	assert_non_null(ikey);
	assert_non_null(issuer);
	assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0), 1);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(issuer)), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -300));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, X509_REQ_get0_pubkey(req)), 1);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].v));
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_non_null(ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san));
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(x, ikey, EVP_sha256()) > 0);
	bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	BIO_get_mem_ptr(bio, &bm);
	out = strndup(bm->data, bm->length);
	BIO_free(bio);
	X509_NAME_free(name);
	X509_free(x);
	X509_free(issuer);
	X509_REQ_free(req);
	EVP_PKEY_free(ikey);
	cf_secret_free(kp, 0);
	free(ip);
	return out;
}

/* The bundle's ca-chain.crt as PEM (malloc). */
static char *
bundle_chain(void)
{
	char path[256], *pem = NULL;

	snprintf(path, sizeof(path), "%s/ca-chain.crt", g.dir);
	must(cf_file_read(&pem, NULL, path, 1 << 16));
	return pem;
}

/* A plain bundle as `certfleet thing create --bundle` writes it. */
static void
make_bundle(const char *dir, cf_key_alg alg)
{
	cf_key *key = NULL;
	char *csr = NULL, *pem = NULL, path[256];

	must(cf_key_generate(&key, alg));
	must(cf_csr_create(&csr, key, cf_sig_alg_default(alg), THING));
	pem = issue_pem(csr, THING, g.inter, g.int_key);
	snprintf(path, sizeof(path), "%s/device.key", dir);
	must(cf_key_save(path, key, NULL));
	snprintf(path, sizeof(path), "%s/device.crt", dir);
	must(cf_file_write_atomic(path, pem, strlen(pem), 0644));
	snprintf(path, sizeof(path), "%s/ca-chain.crt", dir);
	must(cf_file_write_atomic(path, g.chain_pem, strlen(g.chain_pem), 0644));
	free(pem);
	free(csr);
	cf_key_free(key);
}

/* The bundle paths name a matching pair; returns the certificate's id. */
static void
assert_bundle_matches(const char *dir, char id_out[CF_ID_LEN + 1])
{
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/device.key", dir);
	must(cf_key_load(&key, path, NULL));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/device.crt", dir);
	must(cf_cert_load(&cert, path));
	assert_true(cf_cert_matches_key(cert, key));
	if (id_out != NULL)
		must(cf_cert_fingerprint(id_out, cert));
	cf_cert_free(cert);
	cf_key_free(key);
}

/* Number of gen-* entries and of leftover temp names in dir. */
static int
count_gens(const char *dir, int *temps)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0, t = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "gen-", 4) == 0)
			n++;
		if (e->d_name[0] == '.' && (strstr(e->d_name, ".tmp") || strstr(e->d_name, ".del")))
			t++;
	}
	closedir(d);
	if (temps)
		*temps = t;
	return n;
}

/* Every private key file in every generation is 0600. */
static void
assert_key_modes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];
	struct stat st;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "gen-", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s/device.key", dir, e->d_name);
		assert_int_equal(lstat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	closedir(d);
}

/* PEM of a followed by b (malloc). */
static char *
concat_pem(const cf_cert *a, const cf_cert *b)
{
	char *x = NULL, *y = NULL, *out;

	must(cf_cert_to_pem(&x, a));
	must(cf_cert_to_pem(&y, b));
	out = malloc(strlen(x) + strlen(y) + 1);
	assert_non_null(out);
	strcpy(out, x);
	strcat(out, y);
	free(x);
	free(y);
	return out;
}

static int
group_setup(void **state)
{
	char *a = NULL, *b = NULL;

	(void)state;
	must(cf_key_generate(&g.root_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.root, g.root_key, "Test Root", 3650));
	must(cf_key_generate(&g.int_key, CF_KEY_P256));
	must(cf_pki_make_intermediate(&g.inter, g.int_key, "Test Issuing", 365, g.root, g.root_key));
	must(cf_key_generate(&g.other_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.other_root, g.other_key, "Other Root", 3650));
	must(cf_key_generate(&g.int_b_key, CF_KEY_P256));
	must(cf_pki_make_intermediate(&g.inter_b, g.int_b_key, "Test Issuing B", 365, g.root,
	    g.root_key));
	/* The attacker's root carries our root's name; only its key differs. */
	must(cf_key_generate(&g.evil_root_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.evil_root, g.evil_root_key, "Test Root", 3650));
	must(cf_key_generate(&g.evil_int_key, CF_KEY_P256));
	must(cf_pki_make_intermediate(&g.evil_int, g.evil_int_key, "Test Issuing B", 365, g.evil_root,
	    g.evil_root_key));
	g.chain_b_pem = concat_pem(g.inter_b, g.root);
	g.evil_chain_pem = concat_pem(g.evil_int, g.evil_root);
	must(cf_cert_to_pem(&g.inter_b_pem, g.inter_b));
	must(cf_cert_to_pem(&a, g.inter));
	must(cf_cert_to_pem(&b, g.root));
	g.chain_pem = malloc(strlen(a) + strlen(b) + 1);
	strcpy(g.chain_pem, a);
	strcat(g.chain_pem, b);
	free(a);
	free(b);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	cf_key_free(g.root_key);
	cf_key_free(g.int_key);
	cf_key_free(g.other_key);
	cf_cert_free(g.root);
	cf_cert_free(g.inter);
	cf_cert_free(g.other_root);
	cf_key_free(g.int_b_key);
	cf_key_free(g.evil_root_key);
	cf_key_free(g.evil_int_key);
	cf_cert_free(g.inter_b);
	cf_cert_free(g.evil_root);
	cf_cert_free(g.evil_int);
	free(g.chain_pem);
	free(g.chain_b_pem);
	free(g.evil_chain_pem);
	free(g.inter_b_pem);
	return 0;
}

static int
setup(void **state)
{
	(void)state;
	snprintf(g.dir, sizeof(g.dir), "/tmp/cf-agent-XXXXXX");
	return mkdtemp(g.dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	return cf_rmtree(g.dir);
}

/* ---- key store ---------------------------------------------------------- */

/* Generates a pending pair in ks and installs a certificate for it. */
static unsigned
ks_prepare(cf_keystore *ks, cf_key_alg alg)
{
	unsigned gen;
	char *csr = NULL, *pem = NULL;

	must(ks->ops->generate(ks->st, &gen, alg));
	must(ks->ops->csr(ks->st, &csr, gen, cf_sig_alg_default(alg), THING));
	pem = issue_pem(csr, THING, g.inter, g.int_key);
	must(ks->ops->install_cert(ks->st, gen, pem, strlen(pem)));
	free(pem);
	free(csr);
	return gen;
}

/*
 * The store remembers the pair install_cert checked (digests of both files)
 * so that activate does not decode it again; a file changed in between
 * must still be caught: the switch refuses a pending generation whose
 * certificate, or whose key, is no longer the pair that was checked.
 */
static void
test_keystore__activate_rechecks_changed_files(void **state)
{
	cf_keystore *ks = NULL;
	cf_keystore_status s;
	cf_key *other = NULL;
	char *csr = NULL, *pem = NULL, *saved = NULL, path[256];
	size_t saved_len = 0;
	unsigned gen;

	(void)state;
	make_bundle(g.dir, CF_KEY_P256);
	must(cf_keystore_file_open(&ks, g.dir));
	must(cf_key_generate(&other, CF_KEY_P256));
	must(cf_csr_create(&csr, other, CF_SIG_ECDSA_SHA256, THING));
	pem = issue_pem(csr, THING, g.inter, g.int_key);

	/* The certificate replaced by a valid one for another key. */
	gen = ks_prepare(ks, CF_KEY_P256);
	snprintf(path, sizeof(path), "%s/gen-%u/device.crt", g.dir, gen);
	must(cf_file_read(&saved, &saved_len, path, 1 << 16));
	must(cf_file_write_atomic(path, pem, strlen(pem), 0644));
	assert_int_equal(ks->ops->activate(ks->st, gen), CF_ECORRUPT);
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 1);
	/* Put back, the same bytes as checked: the switch goes through. */
	must(cf_file_write_atomic(path, saved, saved_len, 0644));
	must(ks->ops->activate(ks->st, gen));
	must(ks->ops->cleanup(ks->st));
	free(saved);
	saved = NULL;

	/* The key replaced by another (its certificate left alone). */
	gen = ks_prepare(ks, CF_KEY_P256);
	snprintf(path, sizeof(path), "%s/gen-%u/device.key", g.dir, gen);
	must(unlink(path) == 0 ? 0 : -1);
	must(cf_key_save(path, other, NULL));
	assert_int_equal(ks->ops->activate(ks->st, gen), CF_ECORRUPT);
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, gen - 1);

	/* And a store opened afresh checks the pair it finds (nothing remembered). */
	cf_keystore_free(ks);
	ks = NULL;
	must(cf_keystore_file_open(&ks, g.dir));
	gen = ks_prepare(ks, CF_KEY_P256);
	cf_keystore_free(ks);
	ks = NULL;
	must(cf_keystore_file_open(&ks, g.dir));
	must(ks->ops->activate(ks->st, gen));
	cf_keystore_free(ks);
	cf_key_free(other);
	free(pem);
	free(csr);
}

static void
test_keystore__adopts_plain_bundle(void **state)
{
	cf_keystore *ks = NULL;
	cf_keystore_status s;
	char before[CF_ID_LEN + 1], after[CF_ID_LEN + 1], path[256], target[64];
	ssize_t n;

	(void)state;
	make_bundle(g.dir, CF_KEY_P256);
	assert_bundle_matches(g.dir, before);
	must(cf_keystore_file_open(&ks, g.dir));
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 1);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.backup, 0);
	assert_bundle_matches(g.dir, after);
	assert_string_equal(before, after);
	snprintf(path, sizeof(path), "%s/device.key", g.dir);
	n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "current/device.key");
	assert_key_modes(g.dir);
	cf_keystore_free(ks);
	/* Opening again changes nothing, and leaves names that are not its own alone. */
	snprintf(path, sizeof(path), "%s/.notes.tmp", g.dir);
	must(cf_file_write_atomic(path, "x", 1, 0600));
	must(cf_keystore_file_open(&ks, g.dir));
	assert_int_equal(count_gens(g.dir, NULL), 1);
	assert_int_equal(access(path, F_OK), 0);
	cf_keystore_free(ks);
}

static void
test_keystore__adoption_resumes_after_crash(void **state)
{
	cf_keystore *ks = NULL;
	char path[256], id[CF_ID_LEN + 1], id2[CF_ID_LEN + 1];
	int temps;

	(void)state;
	make_bundle(g.dir, CF_KEY_ED25519);
	assert_bundle_matches(g.dir, id);
	/* A crash while gen-1 was being built: a half temp directory. */
	snprintf(path, sizeof(path), "%s/.gen-1.tmp", g.dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/.gen-1.tmp/device.key", g.dir);
	must(cf_file_write_atomic(path, "partial", 7, 0600));
	must(cf_keystore_file_open(&ks, g.dir));
	cf_keystore_free(ks);
	assert_bundle_matches(g.dir, id2);
	assert_string_equal(id, id2);
	assert_int_equal(count_gens(g.dir, &temps), 1);
	assert_int_equal(temps, 0);

	/* A crash between the two links: device.key a link, device.crt still a file. */
	snprintf(path, sizeof(path), "%s/device.crt", g.dir);
	assert_int_equal(unlink(path), 0);
	{
		char *pem = NULL, src[256];
		snprintf(src, sizeof(src), "%s/gen-1/device.crt", g.dir);
		must(cf_file_read(&pem, NULL, src, 1 << 16));
		must(cf_file_write_atomic(path, pem, strlen(pem), 0644));
		free(pem);
	}
	must(cf_keystore_file_open(&ks, g.dir));
	cf_keystore_free(ks);
	assert_bundle_matches(g.dir, id2);
	assert_string_equal(id, id2);
}

static void
test_keystore__refuses_mismatched_or_missing_bundle(void **state)
{
	cf_keystore *ks = NULL;
	cf_key *other = NULL;
	char path[256];

	(void)state;
	assert_int_equal(cf_keystore_file_open(&ks, g.dir), CF_ENOTFOUND);
	make_bundle(g.dir, CF_KEY_P256);
	must(cf_key_generate(&other, CF_KEY_P256));
	snprintf(path, sizeof(path), "%s/device.key", g.dir);
	must(cf_key_save(path, other, NULL));
	cf_key_free(other);
	assert_int_equal(cf_keystore_file_open(&ks, g.dir), CF_ECORRUPT);
	assert_null(ks);
	assert_int_equal(count_gens(g.dir, NULL), 0);
}

static void
test_keystore__switch_rollback_cleanup(void **state)
{
	cf_keystore *ks = NULL;
	cf_keystore_status s;
	char id1[CF_ID_LEN + 1], id2[CF_ID_LEN + 1], id[CF_ID_LEN + 1];
	unsigned gen;
	cf_key *wrong = NULL;
	char *csr = NULL, *pem = NULL;

	(void)state;
	make_bundle(g.dir, CF_KEY_P256);
	assert_bundle_matches(g.dir, id1);
	must(cf_keystore_file_open(&ks, g.dir));

	/* A certificate for another key is refused; the pending gen stays cert-less. */
	must(ks->ops->generate(ks->st, &gen, CF_KEY_ED25519));
	assert_int_equal(gen, 2);
	must(cf_key_generate(&wrong, CF_KEY_P256));
	must(cf_csr_create(&csr, wrong, CF_SIG_ECDSA_SHA256, THING));
	pem = issue_pem(csr, THING, g.inter, g.int_key);
	assert_int_equal(ks->ops->install_cert(ks->st, gen, pem, strlen(pem)), CF_EINVAL);
	assert_int_equal(ks->ops->activate(ks->st, gen), CF_ENOTFOUND);
	assert_int_equal(ks->ops->install_cert(ks->st, 1, pem, strlen(pem)), CF_ESTATE);
	free(pem);
	free(csr);
	cf_key_free(wrong);

	/* generate again discards the first pending generation. */
	gen = ks_prepare(ks, CF_KEY_ED25519);
	assert_int_equal(gen, 2);
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 1);
	assert_int_equal(s.pending, 2);
	assert_true(s.pending_has_cert);
	assert_bundle_matches(g.dir, id);
	assert_string_equal(id, id1); /* still the old pair */

	must(ks->ops->activate(ks->st, gen));
	must(ks->ops->activate(ks->st, gen)); /* idempotent */
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 2);
	assert_int_equal(s.backup, 1);
	assert_int_equal(s.pending, 0);
	assert_bundle_matches(g.dir, id2);
	assert_string_not_equal(id2, id1);
	assert_int_equal(ks->ops->activate(ks->st, 1), CF_ESTATE);

	/* Roll back: the old pair is back, the new one gone. */
	must(ks->ops->rollback(ks->st, 1));
	must(ks->ops->rollback(ks->st, 1)); /* idempotent */
	assert_bundle_matches(g.dir, id);
	assert_string_equal(id, id1);
	assert_int_equal(count_gens(g.dir, NULL), 1);
	assert_int_equal(ks->ops->rollback(ks->st, 2), CF_ENOTFOUND);

	/* Rotate for real and clean up: only the new generation remains. */
	gen = ks_prepare(ks, CF_KEY_P256);
	assert_int_equal(gen, 2);
	must(ks->ops->activate(ks->st, gen));
	must(ks->ops->cleanup(ks->st));
	must(ks->ops->cleanup(ks->st));
	assert_int_equal(count_gens(g.dir, NULL), 1);
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 2);
	assert_int_equal(s.backup, 0);
	assert_bundle_matches(g.dir, NULL);
	assert_key_modes(g.dir);
	cf_keystore_free(ks);

	/* A reopened store agrees. */
	must(cf_keystore_file_open(&ks, g.dir));
	must(ks->ops->status(ks->st, &s));
	assert_int_equal(s.active, 2);
	cf_keystore_free(ks);
}

static void
test_keystore__sign_with_either_generation(void **state)
{
	cf_keystore *ks = NULL;
	cf_key *pub = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	unsigned gen;
	char key[256], crt[256];

	(void)state;
	make_bundle(g.dir, CF_KEY_P256);
	must(cf_keystore_file_open(&ks, g.dir));
	gen = ks_prepare(ks, CF_KEY_ED25519);
	must(ks->ops->sign(ks->st, &sig, &sig_len, 1, CF_SIG_ECDSA_SHA256, "abc", 3));
	must(ks->ops->public_key(ks->st, &pub, 1));
	must(cf_key_verify(pub, CF_SIG_ECDSA_SHA256, "abc", 3, sig, sig_len));
	cf_key_free(pub);
	free(sig);
	must(ks->ops->sign(ks->st, &sig, &sig_len, gen, CF_SIG_ED25519, "abc", 3));
	must(ks->ops->public_key(ks->st, &pub, gen));
	must(cf_key_verify(pub, CF_SIG_ED25519, "abc", 3, sig, sig_len));
	cf_key_free(pub);
	free(sig);
	must(ks->ops->locate(ks->st, key, sizeof(key), crt, sizeof(crt), gen));
	assert_int_equal(access(key, R_OK), 0);
	assert_int_equal(access(crt, R_OK), 0);
	cf_keystore_free(ks);
}

/*
 * The CA chain is kept per generation and moves with the pair: adopted from
 * the plain bundle into gen-1, copied into a new generation, replaced only
 * in a pending one, switched by activate and brought back by rollback; a
 * generation from before chains were kept gets a copy when it is switched to.
 */
static void
test_keystore__chain_switches_with_the_pair(void **state)
{
	cf_keystore *ks = NULL;
	char path[256], target[64], *pem = NULL, *link_pem;
	unsigned gen, gen3;
	ssize_t n;

	(void)state;
	make_bundle(g.dir, CF_KEY_P256);
	must(cf_keystore_file_open(&ks, g.dir));
	snprintf(path, sizeof(path), "%s/ca-chain.crt", g.dir);
	n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	target[n] = '\0';
	assert_string_equal(target, "current/ca-chain.crt");
	must(ks->ops->chain(ks->st, &pem, 1));
	assert_string_equal(pem, g.chain_pem);
	free(pem);

	gen = ks_prepare(ks, CF_KEY_P256);
	must(ks->ops->chain(ks->st, &pem, gen));
	assert_string_equal(pem, g.chain_pem); /* a copy of the active one's */
	free(pem);
	assert_int_equal(ks->ops->install_chain(ks->st, 1, g.chain_b_pem, strlen(g.chain_b_pem)),
	    CF_ESTATE);
	assert_int_equal(ks->ops->install_chain(ks->st, gen, "junk", 4), CF_EINVAL);
	assert_int_equal(ks->ops->install_chain(ks->st, 9, g.chain_b_pem, strlen(g.chain_b_pem)),
	    CF_ENOTFOUND);
	{
		/* The chain it already has (generate's copy): left as it is, not written again. */
		struct stat before, after;

		snprintf(path, sizeof(path), "%s/gen-%u/ca-chain.crt", g.dir, gen);
		assert_int_equal(stat(path, &before), 0);
		must(ks->ops->install_chain(ks->st, gen, g.chain_pem, strlen(g.chain_pem)));
		assert_int_equal(stat(path, &after), 0);
		assert_true(before.st_ino == after.st_ino); /* an atomic write would be a new file */
		/* A prefix of it is other bytes: checked (and refused, it holds no whole certificate). */
		assert_int_equal(ks->ops->install_chain(ks->st, gen, g.chain_pem, 40), CF_EINVAL);
	}
	must(ks->ops->install_chain(ks->st, gen, g.chain_b_pem, strlen(g.chain_b_pem)));
	link_pem = bundle_chain();
	assert_string_equal(link_pem, g.chain_pem); /* nothing in use changed */
	free(link_pem);
	must(ks->ops->activate(ks->st, gen));
	link_pem = bundle_chain();
	assert_string_equal(link_pem, g.chain_b_pem);
	free(link_pem);
	must(ks->ops->rollback(ks->st, 1));
	link_pem = bundle_chain();
	assert_string_equal(link_pem, g.chain_pem);
	free(link_pem);

	/* A pending generation without a chain (made before chains were kept). */
	gen3 = ks_prepare(ks, CF_KEY_P256);
	snprintf(path, sizeof(path), "%s/gen-%u/ca-chain.crt", g.dir, gen3);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(ks->ops->chain(ks->st, &pem, gen3), CF_ENOTFOUND);
	must(ks->ops->activate(ks->st, gen3));
	link_pem = bundle_chain();
	assert_string_equal(link_pem, g.chain_pem);
	free(link_pem);
	cf_keystore_free(ks);

	/* An adopted store whose ca-chain.crt is still a plain file (an older agent): moved in. */
	snprintf(path, sizeof(path), "%s/ca-chain.crt", g.dir);
	assert_int_equal(unlink(path), 0);
	must(cf_file_write_atomic(path, g.chain_b_pem, strlen(g.chain_b_pem), 0644));
	must(cf_keystore_file_open(&ks, g.dir));
	n = readlink(path, target, sizeof(target) - 1);
	assert_true(n > 0);
	must(ks->ops->chain(ks->st, &pem, gen3));
	assert_string_equal(pem, g.chain_b_pem);
	free(pem);
	cf_keystore_free(ks);
}

/* ---- the agent, through a scripted transport ---------------------------- */

typedef enum {
	F_NONE,
	F_CREATE_REJECT,
	F_CREATE_DROP,
	F_CERT_WRONG_KEY,
	F_CERT_OTHER_CA,
	F_CERT_WRONG_ID,
	F_NEW_REFUSED,
	F_VERIFY_DROP,
	F_VERIFY_REJECT,
	F_COMMIT_REJECT,
	F_COMMIT_DROP,
	F_IN_PROGRESS_REJECT,
	F_BAD_DOCUMENT,
	F_STALE_VERSION, /* the final update first meets a VersionMismatch */
	F_CERT_SAN_OTHER_THING, /* CN names this thing, the SAN URI another */
	F_CERT_CN_OTHER_THING,  /* the SAN URI names this thing, the CN another */
	F_CERT_ATTACKER_CHAIN,  /* issued under a self-made root sent along in chainPem */
	F_CANCEL,               /* force-canceled while the create is in flight */
} fault;

typedef struct {
	int conn; /* 0 message, 1 connected, 2 disconnected */
	char topic[256];
	char *payload;
} event;

#define PFX "cf/things/" THING "/"
#define MAX_TRACE 128

typedef struct {
	cf_agent *agent;
	cf_keystore *ks;
	fault fault;
	cf_key_alg alg;
	event q[32];
	size_t qn;
	int64_t now;
	/* the server's view */
	char status[32];
	int64_t version;
	char reason[300];
	char issued_id[CF_ID_LEN + 1];
	char conn_id[CF_ID_LEN + 1]; /* the certificate the current connection uses */
	int connected;
	int custody_bad; /* a custody signature did not verify */
	int creates, commits, hooks;
	int bumped;
	/* the journal hook */
	cf_agent_state trace[MAX_TRACE];
	size_t ntrace;
	int crash_state; /* -1: none */
	int cut_after_publish_in; /* -1: none; else cut the power once the server acted on a request */
	int cut_pending;
	int issuer_b;     /* the server issues from intermediate B (not in the device's chain) */
	int cancel_at;    /* -1: none; else the server force-cancels once the agent writes this state */
	int cancel_quiet; /* ... without a notify-next */
	int canceled;
	int failed_after_cancel; /* FAILED updates the agent sent after the cancel */
	int exec_no;      /* the execution's number (0: 1); a later job of the same agent counts up */
	cf_cert **ca_certs; /* non-NULL: boot hands the agent this parse of its CA file (shared) */
	size_t n_ca_certs;
} fake;

static void
push(fake *f, int conn, const char *suffix, char *payload)
{
	assert_true(f->qn < sizeof(f->q) / sizeof(f->q[0]));
	f->q[f->qn].conn = conn;
	snprintf(f->q[f->qn].topic, sizeof(f->q[f->qn].topic), PFX "%s", suffix ? suffix : "");
	f->q[f->qn].payload = payload;
	f->qn++;
}

static void
reply(fake *f, const char *suffix, json_t *o)
{
	push(f, 0, suffix, json_dumps(o, JSON_COMPACT));
	json_decref(o);
}

static void
rejected(fake *f, const char *suffix, const char *code)
{
	reply(f, suffix, json_pack("{s:s, s:s}", "errorCode", code, "errorMessage", "scripted"));
}

static void
bundle_id(char out[CF_ID_LEN + 1])
{
	char path[256];
	cf_cert *c = NULL;

	snprintf(path, sizeof(path), "%s/device.crt", g.dir);
	must(cf_cert_load(&c, path));
	must(cf_cert_fingerprint(out, c));
	cf_cert_free(c);
}

/* The custody signature verifies with the connection's certificate's key, as certfleetd checks it. */
static void
check_custody(fake *f, const char *msg, const char *b64)
{
	char path[256];
	cf_cert *c = NULL;
	cf_key *pub = NULL;

	snprintf(path, sizeof(path), "%s/device.crt", g.dir);
	must(cf_cert_load(&c, path));
	must(cf_cert_pubkey(&pub, c));
	if (cf_proto_custody_verify(pub, msg, b64) != 0)
		f->custody_bad = 1;
	cf_key_free(pub);
	cf_cert_free(c);
}

static json_t *
execution(fake *f)
{
	if (strcmp(f->status, "QUEUED") != 0 && strcmp(f->status, "IN_PROGRESS") != 0)
		return json_object();
	return json_pack("{s:{s:s, s:s, s:{s:s, s:s, s:s}, s:i, s:I}}", "execution", "jobId", "job-1",
	    "status", f->status, "jobDocument", "operation", "ROTATE_CERTIFICATE", "keyAlgorithm",
	    f->fault == F_BAD_DOCUMENT ? "RSA-1024" : cf_key_alg_name(f->alg), "signingAlgorithm",
	    cf_sig_alg_name(cf_sig_alg_default(f->alg)), "executionNumber", f->exec_no ? f->exec_no : 1,
	    "versionNumber",
	    (json_int_t)f->version);
}

static void
serve_create(fake *f, const char *payload)
{
	cf_proto_create req;
	const char *csr;
	char msg[CF_PROTO_CUSTODY_MAX], *pem = NULL, *other_csr = NULL;
	const char *chain = g.chain_pem;
	cf_key *k = NULL;
	cf_cert *c = NULL;

	f->creates++;
	memset(&req, 0, sizeof(req));
	must(cf_proto_decode_create(&req, payload, strlen(payload), NULL));
	assert_string_equal(req.job_id, "job-1");
	csr = req.csr;
	must(cf_proto_custody_create_msg(msg, req.job_id, THING, req.csr, req.csr_len));
	check_custody(f, msg, req.signature);
	if (f->fault == F_CREATE_DROP)
		goto out;
	if (f->fault == F_CREATE_REJECT) {
		rejected(f, "certificate/create/rejected", "WeakKey");
		goto out;
	}
	if (f->fault == F_CERT_WRONG_KEY) {
		must(cf_key_generate(&k, CF_KEY_P256));
		must(cf_csr_create(&other_csr, k, CF_SIG_ECDSA_SHA256, THING));
		pem = issue_pem(other_csr, THING, g.inter, g.int_key);
	} else if (f->fault == F_CERT_OTHER_CA) {
		pem = issue_pem(csr, THING, g.other_root, g.other_key);
	} else if (f->fault == F_CERT_SAN_OTHER_THING) {
		pem = forge_pem(csr, THING, "URI:urn:certfleet:thing:sensor-8");
	} else if (f->fault == F_CERT_CN_OTHER_THING) {
		pem = forge_pem(csr, "sensor-8", "URI:urn:certfleet:thing:" THING);
	} else if (f->fault == F_CERT_ATTACKER_CHAIN) {
		pem = issue_pem(csr, THING, g.evil_int, g.evil_int_key);
		chain = g.evil_chain_pem;
	} else if (f->issuer_b) {
		pem = issue_pem(csr, THING, g.inter_b, g.int_b_key);
		chain = g.chain_b_pem;
	} else {
		pem = issue_pem(csr, THING, g.inter, g.int_key);
	}
	must(cf_cert_parse(&c, pem, strlen(pem)));
	must(cf_cert_fingerprint(f->issued_id, c));
	reply(f, "certificate/create/accepted", json_pack("{s:s, s:s, s:s}", "certificateId",
	    f->fault == F_CERT_WRONG_ID ? "00" : f->issued_id, "certificatePem", pem, "chainPem",
	    chain));
out:
	cf_cert_free(c);
	cf_key_free(k);
	free(other_csr);
	free(pem);
	cf_proto_create_clear(&req);
}

static int
fake_publish(void *arg, const char *topic, const char *payload)
{
	fake *f = arg;
	json_t *req;
	const char *rest, *st;
	char suffix[128], msg[CF_PROTO_CUSTODY_MAX];
	int is_new;

	assert_true(f->connected);
	assert_int_equal(strncmp(topic, PFX, strlen(PFX)), 0);
	rest = topic + strlen(PFX);
	req = json_loads(payload, 0, NULL);
	assert_non_null(req);
	is_new = f->issued_id[0] != '\0' && strcmp(f->conn_id, f->issued_id) == 0;
	if (f->canceled && strcmp(rest, "jobs/job-1/update") == 0) {
		/* The execution is terminal: nothing the device says changes it. */
		st = json_string_value(json_object_get(req, "status"));
		if (strcmp(st, "FAILED") == 0)
			f->failed_after_cancel++;
		reply(f, "jobs/job-1/update/rejected", json_pack("{s:s, s:s, s:{s:s, s:I}}", "errorCode",
		    "TerminalStateReached", "errorMessage", "execution canceled", "executionState",
		    "status", f->status, "versionNumber", (json_int_t)f->version));
	} else if (f->canceled && strcmp(rest, "certificate/create") == 0) {
		f->creates++;
		rejected(f, "certificate/create/rejected", "NotInProgress");
	} else if (f->canceled && strcmp(rest, "certificate/commit") == 0) {
		f->commits++;
		rejected(f, "certificate/commit/rejected", "NotInProgress");
	} else if (strcmp(rest, "jobs/$next/get") == 0) {
		if (is_new && f->fault == F_VERIFY_DROP)
			;
		else if (is_new && f->fault == F_VERIFY_REJECT)
			rejected(f, "jobs/$next/get/rejected", "InternalError");
		else
			reply(f, "jobs/$next/get/accepted", execution(f));
	} else if (strcmp(rest, "jobs/job-1/update") == 0) {
		st = json_string_value(json_object_get(req, "status"));
		snprintf(suffix, sizeof(suffix), "jobs/job-1/update/%s", "rejected");
		if (f->fault == F_IN_PROGRESS_REJECT && strcmp(st, "IN_PROGRESS") == 0) {
			rejected(f, suffix, "InvalidStateTransition");
		} else if (f->fault == F_STALE_VERSION && strcmp(st, "SUCCEEDED") == 0 && !f->bumped) {
			f->bumped = 1;
			f->version += 5; /* e.g. the operator touched the execution */
			reply(f, suffix, json_pack("{s:s, s:s, s:{s:s, s:I}}", "errorCode", "VersionMismatch",
			    "errorMessage", "stale", "executionState", "status", f->status, "versionNumber",
			    (json_int_t)f->version));
		} else if (json_integer_value(json_object_get(req, "expectedVersion")) != f->version) {
			reply(f, suffix, json_pack("{s:s, s:s, s:{s:s, s:I}}", "errorCode", "VersionMismatch",
			    "errorMessage", "stale", "executionState", "status", f->status, "versionNumber",
			    (json_int_t)f->version));
		} else {
			snprintf(f->status, sizeof(f->status), "%s", st);
			f->version++;
			if (strcmp(st, "FAILED") == 0)
				snprintf(f->reason, sizeof(f->reason), "%s", json_string_value(json_object_get(
				    json_object_get(req, "statusDetails"), "reason")));
			reply(f, "jobs/job-1/update/accepted", json_pack("{s:{s:s, s:I}}", "executionState",
			    "status", f->status, "versionNumber", (json_int_t)f->version));
		}
	} else if (strcmp(rest, "certificate/create") == 0) {
		serve_create(f, payload);
	} else if (strcmp(rest, "certificate/commit") == 0) {
		cf_proto_commit cm;

		f->commits++;
		memset(&cm, 0, sizeof(cm));
		must(cf_proto_decode_commit(&cm, payload, strlen(payload), NULL));
		must(cf_proto_custody_commit_msg(msg, cm.job_id, THING, cm.certificate_id));
		check_custody(f, msg, cm.signature);
		assert_string_equal(cm.certificate_id, f->issued_id);
		cf_proto_commit_clear(&cm);
		/* The principal of a commit must be the new certificate. */
		assert_true(is_new);
		if (f->fault == F_COMMIT_REJECT)
			rejected(f, "certificate/commit/rejected", "PrincipalMismatch");
		else if (f->fault != F_COMMIT_DROP)
			reply(f, "certificate/commit/accepted", json_pack("{s:s}", "certificateId",
			    f->issued_id));
	} else {
		fail_msg("unexpected publish on %s", topic);
	}
	json_decref(req);
	/* The server has acted and queued its answer; the device loses power before reading it. */
	if (f->agent != NULL && (int)cf_agent_state_get(f->agent) == f->cut_after_publish_in) {
		f->cut_after_publish_in = -1;
		f->cut_pending = 1;
	}
	return 0;
}

/* Connects with whatever pair the bundle paths name; the broker refuses the new one on F_NEW_REFUSED. */
static void
fake_connect(fake *f)
{
	char id[CF_ID_LEN + 1];

	bundle_id(id);
	if (f->fault == F_NEW_REFUSED && strcmp(id, f->issued_id) == 0) {
		push(f, 2, NULL, NULL);
		return;
	}
	snprintf(f->conn_id, sizeof(f->conn_id), "%s", id);
	push(f, 1, NULL, NULL);
}

static int
fake_reconnect(void *arg)
{
	fake *f = arg;

	f->connected = 0;
	fake_connect(f);
	return 0;
}

static void
fake_switched(void *arg, unsigned gen)
{
	fake *f = arg;

	(void)gen;
	f->hooks++;
}

static int
fake_hook(void *arg, cf_agent_state st)
{
	fake *f = arg;

	if (f->ntrace < MAX_TRACE)
		f->trace[f->ntrace++] = st;
	if ((int)st == f->cancel_at) {
		/* An operator force-cancels the execution at this moment. */
		f->cancel_at = -1;
		f->canceled = 1;
		f->version++;
		snprintf(f->status, sizeof(f->status), "CANCELED");
		if (!f->cancel_quiet)
			reply(f, "jobs/notify-next", json_object());
	}
	if ((int)st == f->crash_state) {
		f->crash_state = -1;
		return 1;
	}
	return 0;
}

static void
drop_queue(fake *f)
{
	size_t i;

	for (i = 0; i < f->qn; i++)
		free(f->q[i].payload);
	f->qn = 0;
}

/* A power cut: the agent and key store objects go, the directory stays, messages in flight are lost. */
static void
power_cut(fake *f)
{
	cf_agent_free(f->agent);
	cf_keystore_free(f->ks);
	f->agent = NULL;
	f->ks = NULL;
	f->connected = 0;
	drop_queue(f);
}

static void
boot(fake *f)
{
	cf_agent_opts o;
	cf_agent_transport t = {.publish = fake_publish, .reconnect = fake_reconnect,
	    .switched = fake_switched, .arg = f};
	char state_dir[128];
	int r;

	memset(&o, 0, sizeof(o));
	snprintf(state_dir, sizeof(state_dir), "%s/state", g.dir);
	o.thing = THING;
	o.state_dir = state_dir;
	o.ca_chain_pem = g.chain_pem;
	o.ca_certs = f->ca_certs;
	o.n_ca_certs = f->n_ca_certs;
	o.journal_hook = fake_hook;
	o.hook_arg = f;
	must(cf_keystore_file_open(&f->ks, g.dir));
	r = cf_agent_start(&f->agent, &o, f->ks, &t, f->now);
	if (r == CF_ESTATE) {
		assert_null(f->agent); /* the power cut came while it started */
		return;
	}
	must(r);
	fake_connect(f); /* the daemon connects once the agent has started */
}

/* Delivers queued events and fires timers until the agent rests (or stops). Returns 1 if it stopped. */
static int
pump(fake *f)
{
	int steps, r = 0;
	event e;

	if (f->agent == NULL)
		return 1;
	for (steps = 0; steps < 200; steps++) {
		if (f->qn > 0) {
			e = f->q[0];
			memmove(&f->q[0], &f->q[1], (f->qn - 1) * sizeof(f->q[0]));
			f->qn--;
			f->now += 1;
			if (e.conn == 1) {
				f->connected = 1;
				r = cf_agent_connected(f->agent, f->now);
			} else if (e.conn == 2) {
				f->connected = 0;
				r = cf_agent_disconnected(f->agent, f->now);
			} else {
				r = cf_agent_message(f->agent, e.topic, e.payload, strlen(e.payload), f->now);
			}
			free(e.payload);
		} else if (cf_agent_deadline(f->agent) != 0) {
			f->now = cf_agent_deadline(f->agent);
			r = cf_agent_timer(f->agent, f->now);
		} else {
			return 0;
		}
		if (r == CF_ESTATE)
			return 1;
		must(r);
		if (f->cut_pending) {
			f->cut_pending = 0;
			return 1;
		}
	}
	fail_msg("the agent did not come to rest (in %s, job %s)",
	    cf_agent_state_name(cf_agent_state_get(f->agent)), f->status);
	return 0;
}

static void
fake_init(fake *f, cf_key_alg bundle_alg, cf_key_alg alg, fault flt)
{
	memset(f, 0, sizeof(*f));
	f->alg = alg;
	f->fault = flt;
	f->now = 1000000;
	f->crash_state = -1;
	f->cut_after_publish_in = -1;
	f->cancel_at = flt == F_CANCEL ? CF_AGENT_CREATE_SENT : -1;
	snprintf(f->status, sizeof(f->status), "QUEUED");
	make_bundle(g.dir, bundle_alg);
}

static void
fake_done(fake *f)
{
	power_cut(f);
}

/* The outcome on disk and at the server: SUCCEEDED with the new pair, or FAILED with the old. */
static void
assert_converged(fake *f, const char *old_id)
{
	char id[CF_ID_LEN + 1], *chain;
	int temps;

	assert_int_equal(cf_agent_state_get(f->agent), CF_AGENT_IDLE);
	assert_int_equal(cf_agent_deadline(f->agent), 0);
	assert_false(f->custody_bad);
	assert_bundle_matches(g.dir, id);
	assert_key_modes(g.dir);
	assert_int_equal(count_gens(g.dir, &temps), 1);
	assert_int_equal(temps, 0);
	chain = bundle_chain();
	if (strcmp(f->status, "SUCCEEDED") == 0) {
		assert_string_equal(id, f->issued_id);
		assert_string_not_equal(id, old_id);
		/* A new intermediate comes with the new pair, ahead of the chain the device had. */
		assert_non_null(strstr(chain, g.chain_pem));
		assert_int_equal(strstr(chain, g.inter_b_pem) != NULL, f->issuer_b);
		assert_int_equal(strlen(chain), strlen(g.chain_pem) + (f->issuer_b ? strlen(g.inter_b_pem) : 0));
	} else if (strcmp(f->status, "CANCELED") == 0) {
		/* Rolled back, and not reported: the execution had ended already. */
		assert_string_equal(id, old_id);
		assert_string_equal(chain, g.chain_pem);
		assert_int_equal(f->failed_after_cancel, 0);
		assert_non_null(strstr(cf_agent_reason(f->agent), "canceled by the server"));
	} else {
		assert_string_equal(f->status, "FAILED");
		assert_string_equal(id, old_id);
		assert_string_equal(chain, g.chain_pem); /* the old chain came back with the old pair */
		assert_true(strlen(f->reason) > 0);
	}
	free(chain);
}

static void
rotate(cf_key_alg from, cf_key_alg to)
{
	fake f;
	char old_id[CF_ID_LEN + 1];

	fake_init(&f, from, to, F_NONE);
	bundle_id(old_id);
	boot(&f);
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "SUCCEEDED");
	assert_converged(&f, old_id);
	assert_int_equal(f.creates, 1);
	assert_int_equal(f.commits, 1);
	assert_int_equal(f.hooks, 1);
	assert_string_equal(f.conn_id, f.issued_id); /* connected with the new pair */
	{
		cf_key *k = NULL;
		cf_key_alg alg;
		char path[256];

		snprintf(path, sizeof(path), "%s/device.key", g.dir);
		must(cf_key_load(&k, path, NULL));
		must(cf_key_alg_of(&alg, k));
		assert_int_equal(alg, to);
		cf_key_free(k);
	}
	fake_done(&f);
}

static void
test_agent__rotates_p256(void **state)
{
	(void)state;
	rotate(CF_KEY_P256, CF_KEY_P256);
}

static void
test_agent__rotates_ed25519(void **state)
{
	(void)state;
	rotate(CF_KEY_P256, CF_KEY_ED25519);
}

static void
test_agent__rotates_rsa2048_to_p384(void **state)
{
	(void)state;
	rotate(CF_KEY_RSA2048, CF_KEY_P384);
}

/*
 * The table's edges, each walked by a scenario below (and nothing else is
 * taken): from -> to.
 */
#define E(a, b) {CF_AGENT_##a, CF_AGENT_##b}
static const cf_agent_state edges[][2] = {
	E(IDLE, IN_PROGRESS_SENT), E(IDLE, REPORTING_FAILURE),
	E(IN_PROGRESS_SENT, KEY_GENERATED), E(IN_PROGRESS_SENT, DONE),
	E(KEY_GENERATED, CREATE_SENT),
	E(CREATE_SENT, CERT_RECEIVED), E(CREATE_SENT, ROLLING_BACK),
	E(CERT_RECEIVED, SWITCHED),
	E(SWITCHED, RECONNECTING_NEW),
	E(RECONNECTING_NEW, VERIFYING), E(RECONNECTING_NEW, ROLLING_BACK),
	E(VERIFYING, COMMIT_SENT), E(VERIFYING, ROLLING_BACK),
	E(COMMIT_SENT, COMMITTED), E(COMMIT_SENT, ROLLING_BACK),
	E(COMMITTED, CLEANUP),
	E(CLEANUP, DONE),
	E(ROLLING_BACK, REPORTING_FAILURE), E(ROLLING_BACK, DONE),
	E(REPORTING_FAILURE, DONE),
	E(DONE, IDLE),
};

static const struct {
	const char *name;
	fault fault;
	const char *outcome;
	const char *reason; /* a substring of statusDetails.reason */
	cf_agent_state last_before_rollback;
} scenarios[] = {
	{"happy path", F_NONE, "SUCCEEDED", NULL, CF_AGENT__COUNT},
	{"create rejected", F_CREATE_REJECT, "FAILED", "WeakKey", CF_AGENT_CREATE_SENT},
	{"create never answered", F_CREATE_DROP, "FAILED", "create not answered", CF_AGENT_CREATE_SENT},
	{"certificate for another key", F_CERT_WRONG_KEY, "FAILED", "new key", CF_AGENT_CREATE_SENT},
	{"certificate from another CA", F_CERT_OTHER_CA, "FAILED", "certificate refused",
	    CF_AGENT_CREATE_SENT},
	{"certificate id mismatch", F_CERT_WRONG_ID, "FAILED", "certificate refused", CF_AGENT_CREATE_SENT},
	{"new pair refused", F_NEW_REFUSED, "FAILED", "could not connect", CF_AGENT_RECONNECTING_NEW},
	{"no $next/get answer", F_VERIFY_DROP, "FAILED", "no $next/get answer", CF_AGENT_VERIFYING},
	{"$next/get rejected", F_VERIFY_REJECT, "FAILED", "InternalError", CF_AGENT_VERIFYING},
	{"commit rejected", F_COMMIT_REJECT, "FAILED", "PrincipalMismatch", CF_AGENT_COMMIT_SENT},
	{"commit never answered", F_COMMIT_DROP, "FAILED", "commit not answered", CF_AGENT_COMMIT_SENT},
	{"IN_PROGRESS refused", F_IN_PROGRESS_REJECT, "QUEUED", NULL, CF_AGENT__COUNT},
	{"unknown key algorithm", F_BAD_DOCUMENT, "FAILED", "RSA-1024", CF_AGENT__COUNT},
	{"stale version on SUCCEEDED", F_STALE_VERSION, "SUCCEEDED", NULL, CF_AGENT__COUNT},
	{"SAN URI names another thing", F_CERT_SAN_OTHER_THING, "FAILED",
	    "URI 'urn:certfleet:thing:sensor-8' is not urn:certfleet:thing:" THING, CF_AGENT_CREATE_SENT},
	{"CN names another thing", F_CERT_CN_OTHER_THING, "FAILED", "CN 'sensor-8' is not the thing",
	    CF_AGENT_CREATE_SENT},
	{"chain to an attacker's root", F_CERT_ATTACKER_CHAIN, "FAILED", "certificate refused",
	    CF_AGENT_CREATE_SENT},
	{"force-canceled during create", F_CANCEL, "CANCELED", NULL, CF_AGENT_CREATE_SENT},
};

static void
test_agent__every_edge_and_failure(void **state)
{
	int seen[sizeof(edges) / sizeof(edges[0])] = {0};
	size_t s, i, k;
	fake f;
	char old_id[CF_ID_LEN + 1];

	(void)state;
	for (s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++) {
		fake_init(&f, CF_KEY_P256, CF_KEY_P256, scenarios[s].fault);
		bundle_id(old_id);
		boot(&f);
		assert_int_equal(pump(&f), 0);
		if (strcmp(f.status, scenarios[s].outcome) != 0)
			fail_msg("%s: job %s, expected %s (reason '%s', agent '%s')", scenarios[s].name,
			    f.status, scenarios[s].outcome, f.reason, cf_agent_reason(f.agent));
		if (strcmp(f.status, "QUEUED") != 0)
			assert_converged(&f, old_id);
		if (scenarios[s].reason != NULL && strstr(f.reason, scenarios[s].reason) == NULL)
			fail_msg("%s: reason '%s' lacks '%s'", scenarios[s].name, f.reason, scenarios[s].reason);
		for (i = 1; i < f.ntrace; i++) {
			for (k = 0; k < sizeof(edges) / sizeof(edges[0]); k++)
				if (edges[k][0] == f.trace[i - 1] && edges[k][1] == f.trace[i])
					break;
			if (k == sizeof(edges) / sizeof(edges[0]))
				fail_msg("%s: undeclared edge %s -> %s", scenarios[s].name,
				    cf_agent_state_name(f.trace[i - 1]), cf_agent_state_name(f.trace[i]));
			seen[k] = 1;
			if (f.trace[i] == CF_AGENT_ROLLING_BACK)
				assert_int_equal(f.trace[i - 1], scenarios[s].last_before_rollback);
		}
		fake_done(&f);
		assert_int_equal(cf_rmtree(g.dir), 0);
		assert_int_equal(mkdir(g.dir, 0700), 0);
	}
	for (k = 0; k < sizeof(edges) / sizeof(edges[0]); k++)
		if (!seen[k])
			fail_msg("edge %s -> %s never walked", cf_agent_state_name(edges[k][0]),
			    cf_agent_state_name(edges[k][1]));
}

/*
 * A power cut right after each journal write, in every state a rotation
 * passes through (on the success path and on a rollback path): a new agent
 * started from the directory converges — completes or rolls back — with a
 * matching pair, 0600 keys and one generation left.
 */
static void
crash_matrix(fault flt, int issuer_b)
{
	int st;
	fake f;
	char old_id[CF_ID_LEN + 1];
	int visited[CF_AGENT__COUNT] = {0};
	size_t i;

	/* Which states this path writes. */
	fake_init(&f, CF_KEY_P256, CF_KEY_ED25519, flt);
	f.issuer_b = issuer_b;
	boot(&f);
	assert_int_equal(pump(&f), 0);
	for (i = 0; i < f.ntrace; i++)
		visited[f.trace[i]] = 1;
	fake_done(&f);
	assert_int_equal(cf_rmtree(g.dir), 0);
	assert_int_equal(mkdir(g.dir, 0700), 0);

	for (st = 0; st < CF_AGENT__COUNT; st++) {
		if (!visited[st])
			continue;
		fake_init(&f, CF_KEY_P256, CF_KEY_ED25519, flt);
		f.issuer_b = issuer_b;
		bundle_id(old_id);
		f.crash_state = st;
		boot(&f);
		assert_int_equal(pump(&f), 1); /* the power cut came */
		power_cut(&f);
		boot(&f);
		assert_int_equal(pump(&f), 0);
		if (strcmp(f.status, "SUCCEEDED") != 0 && strcmp(f.status, "FAILED") != 0)
			fail_msg("crash in %s: job ended %s", cf_agent_state_name((cf_agent_state)st), f.status);
		if (flt == F_NONE && strcmp(f.status, "SUCCEEDED") != 0)
			fail_msg("crash in %s: rolled back (%s)", cf_agent_state_name((cf_agent_state)st),
			    f.reason);
		assert_converged(&f, old_id);
		print_message("power cut after writing %-17s -> %s (%d create, %d commit)\n",
		    cf_agent_state_name((cf_agent_state)st), f.status, f.creates, f.commits);
		fake_done(&f);
		assert_int_equal(cf_rmtree(g.dir), 0);
		assert_int_equal(mkdir(g.dir, 0700), 0);
	}
}

/*
 * A power cut after the server acted on each request but before its answer
 * arrived: the restarted agent sends it again and must cope with the
 * server's second answer (a second certificate, a repeated commit, a
 * VersionMismatch on an update that was applied).
 */
static void
test_agent__crash_with_answer_in_flight(void **state)
{
	static const struct {
		fault flt;
		cf_agent_state st;
		const char *outcome;
	} cuts[] = {
		{F_NONE, CF_AGENT_IDLE, "SUCCEEDED"},
		{F_NONE, CF_AGENT_IN_PROGRESS_SENT, "SUCCEEDED"},
		{F_NONE, CF_AGENT_CREATE_SENT, "SUCCEEDED"},
		{F_NONE, CF_AGENT_VERIFYING, "SUCCEEDED"},
		{F_NONE, CF_AGENT_COMMIT_SENT, "SUCCEEDED"},
		{F_NONE, CF_AGENT_CLEANUP, "SUCCEEDED"},
		{F_COMMIT_REJECT, CF_AGENT_COMMIT_SENT, "FAILED"},
		{F_COMMIT_REJECT, CF_AGENT_REPORTING_FAILURE, "FAILED"},
	};
	size_t i;
	fake f;
	char old_id[CF_ID_LEN + 1];

	(void)state;
	for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		fake_init(&f, CF_KEY_P256, CF_KEY_P256, cuts[i].flt);
		bundle_id(old_id);
		f.cut_after_publish_in = cuts[i].st;
		boot(&f);
		assert_int_equal(pump(&f), 1);
		power_cut(&f);
		boot(&f);
		assert_int_equal(pump(&f), 0);
		if (strcmp(f.status, cuts[i].outcome) != 0)
			fail_msg("cut with an answer in flight in %s: job %s (%s)",
			    cf_agent_state_name(cuts[i].st), f.status, f.reason);
		assert_converged(&f, old_id);
		print_message("power cut with the answer in flight in %-17s -> %s (%d create, %d commit)\n",
		    cf_agent_state_name(cuts[i].st), f.status, f.creates, f.commits);
		fake_done(&f);
		assert_int_equal(cf_rmtree(g.dir), 0);
		assert_int_equal(mkdir(g.dir, 0700), 0);
	}
}

static void
test_agent__crash_after_every_journal_write_success_path(void **state)
{
	(void)state;
	crash_matrix(F_NONE, 0);
}

static void
test_agent__crash_after_every_journal_write_rollback_path(void **state)
{
	(void)state;
	crash_matrix(F_COMMIT_REJECT, 0);
	crash_matrix(F_NEW_REFUSED, 0);
}

/*
 * Intermediate roll-over: the device trusts root + intermediate A; the new
 * certificate comes from intermediate B (same root), sent in chainPem. It
 * verifies against the device's root with B as untrusted material, and B
 * joins the new generation's ca-chain.crt (assert_converged checks the
 * chain after every outcome). A power cut at every state must keep chain
 * and pair together: the new chain with the new pair, the old with the old.
 */
static void
test_agent__intermediate_rollover(void **state)
{
	fake f;
	char old_id[CF_ID_LEN + 1], *chain;

	(void)state;
	fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_NONE);
	f.issuer_b = 1;
	bundle_id(old_id);
	boot(&f);
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "SUCCEEDED");
	assert_converged(&f, old_id);
	chain = bundle_chain();
	assert_non_null(strstr(chain, g.inter_b_pem));
	free(chain);
	fake_done(&f);
	crash_matrix(F_NONE, 1);
	crash_matrix(F_COMMIT_REJECT, 1);
	crash_matrix(F_NEW_REFUSED, 1);
}

/*
 * Three rotations by one agent instance (its CA file is parsed once and
 * kept): after a roll-over to intermediate B the chain in use (B + A +
 * root) differs from the CA file; a second rotation from B verifies against
 * it and leaves it as it is (B is not added twice); a third, under a
 * self-made root sent along in chainPem, is still refused — the kept CA
 * file is the only source of roots.
 */
static void
rotations_after_rollover(int shared)
{
	fake f;
	char old_id[CF_ID_LEN + 1], *chain;
	cf_cert **ca = NULL;
	size_t n_ca = 0;

	fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_NONE);
	if (shared) {
		must(cf_cert_parse_bundle(&ca, &n_ca, g.chain_pem, strlen(g.chain_pem)));
		f.ca_certs = ca;
		f.n_ca_certs = n_ca;
	}
	f.issuer_b = 1;
	bundle_id(old_id);
	boot(&f);
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "SUCCEEDED");
	assert_converged(&f, old_id);

	/* The next job, same agent, same intermediate B. */
	bundle_id(old_id);
	snprintf(f.status, sizeof(f.status), "QUEUED");
	f.issued_id[0] = '\0';
	f.exec_no = 2;
	reply(&f, "jobs/notify-next", execution(&f));
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "SUCCEEDED");
	assert_converged(&f, old_id);
	assert_int_equal(f.creates, 2);
	chain = bundle_chain();
	assert_ptr_equal(strstr(chain, g.inter_b_pem), chain); /* B once, first */
	assert_null(strstr(chain + strlen(g.inter_b_pem), g.inter_b_pem));
	free(chain);

	/* And one under an attacker's root: refused, the pair and chain in use stay. */
	bundle_id(old_id);
	f.fault = F_CERT_ATTACKER_CHAIN;
	f.issuer_b = 1; /* assert_converged: B stays in the chain in use */
	snprintf(f.status, sizeof(f.status), "QUEUED");
	f.issued_id[0] = '\0';
	f.exec_no = 3;
	reply(&f, "jobs/notify-next", execution(&f));
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "FAILED");
	assert_non_null(strstr(f.reason, "certificate refused"));
	chain = bundle_chain();
	assert_ptr_equal(strstr(chain, g.inter_b_pem), chain);
	assert_null(strstr(chain, g.evil_chain_pem));
	free(chain);
	bundle_id(f.conn_id);
	assert_string_equal(f.conn_id, old_id);
	fake_done(&f);
	/* The agent only borrowed the shared parse: it is still whole (ASan would see a double free). */
	if (shared) {
		char fp[CF_ID_LEN + 1];
		size_t i;

		for (i = 0; i < n_ca; i++)
			must(cf_cert_fingerprint(fp, ca[i]));
		cf_cert_list_free(ca, n_ca);
	}
}

static void
test_agent__rotations_after_rollover_same_instance(void **state)
{
	(void)state;
	rotations_after_rollover(0);
}

/* The same with the CA file parsed by the embedder and shared (cf_agent_opts.ca_certs). */
static void
test_agent__rotations_with_shared_ca_certs(void **state)
{
	(void)state;
	rotations_after_rollover(1);
}

/*
 * A chain under a self-made root (named like the device's) is refused, and
 * nothing of it is installed — also when it rides along with an otherwise
 * good rotation: a root from the message is never trusted or stored.
 */
static void
test_agent__attacker_chain_refused(void **state)
{
	fake f;
	char old_id[CF_ID_LEN + 1];

	(void)state;
	fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_CERT_ATTACKER_CHAIN);
	bundle_id(old_id);
	boot(&f);
	assert_int_equal(pump(&f), 0);
	assert_string_equal(f.status, "FAILED");
	assert_non_null(strstr(f.reason, "certificate refused"));
	assert_converged(&f, old_id);
	fake_done(&f);
}

/*
 * The server force-cancels the execution between IN_PROGRESS_SENT and
 * COMMIT_SENT. The agent learns it from notify-next, or (quiet) from the
 * rejection of its next request or the $next/get on the new connection, or
 * after a power cut at that very moment; each time it rolls back (old pair
 * and chain, one generation), reports nothing (no FAILED) and is IDLE.
 */
static void
test_agent__cancel_before_commit_rolls_back_silently(void **state)
{
	static const cf_agent_state at[] = {
		CF_AGENT_IN_PROGRESS_SENT, CF_AGENT_KEY_GENERATED, CF_AGENT_CREATE_SENT,
		CF_AGENT_CERT_RECEIVED, CF_AGENT_SWITCHED, CF_AGENT_RECONNECTING_NEW,
		CF_AGENT_VERIFYING, CF_AGENT_COMMIT_SENT,
	};
	static const char *const how[] = {"notify-next", "quiet", "power cut"};
	size_t i;
	int mode;
	fake f;
	char old_id[CF_ID_LEN + 1];

	(void)state;
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		for (mode = 0; mode < 3; mode++) {
			fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_NONE);
			f.issuer_b = 1; /* the new chain must not survive either */
			bundle_id(old_id);
			f.cancel_at = at[i];
			f.cancel_quiet = mode != 0;
			if (mode == 2)
				f.crash_state = at[i];
			boot(&f);
			if (mode == 2) {
				assert_int_equal(pump(&f), 1);
				power_cut(&f);
				boot(&f);
			}
			assert_int_equal(pump(&f), 0);
			if (strcmp(f.status, "CANCELED") != 0)
				fail_msg("cancel in %s (%s): job %s", cf_agent_state_name(at[i]), how[mode],
				    f.status);
			assert_converged(&f, old_id);
			print_message("canceled in %-16s (%-11s) -> %s\n", cf_agent_state_name(at[i]),
			    how[mode], cf_agent_reason(f.agent));
			fake_done(&f);
			assert_int_equal(cf_rmtree(g.dir), 0);
			assert_int_equal(mkdir(g.dir, 0700), 0);
		}
	}
}

/* Once COMMITTED the agent never rolls back: a cancel then leaves the new pair (the server resolves it). */
static void
test_agent__cancel_after_commit_keeps_the_new_pair(void **state)
{
	fake f;
	char old_id[CF_ID_LEN + 1], id[CF_ID_LEN + 1];
	int mode, temps;

	(void)state;
	for (mode = 0; mode < 2; mode++) {
		fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_NONE);
		bundle_id(old_id);
		f.cancel_at = CF_AGENT_COMMITTED;
		if (mode == 1) {
			f.cancel_quiet = 1;
			f.crash_state = CF_AGENT_COMMITTED;
		}
		boot(&f);
		if (mode == 1) {
			assert_int_equal(pump(&f), 1);
			power_cut(&f);
			boot(&f);
		}
		assert_int_equal(pump(&f), 0);
		assert_string_equal(f.status, "CANCELED");
		assert_int_equal(cf_agent_state_get(f.agent), CF_AGENT_IDLE);
		assert_bundle_matches(g.dir, id);
		assert_string_equal(id, f.issued_id);
		assert_string_not_equal(id, old_id);
		assert_int_equal(count_gens(g.dir, &temps), 1);
		assert_int_equal(temps, 0);
		assert_int_equal(f.failed_after_cancel, 0);
		fake_done(&f);
		assert_int_equal(cf_rmtree(g.dir), 0);
		assert_int_equal(mkdir(g.dir, 0700), 0);
	}
}

static void
test_agent__corrupt_journal_is_refused(void **state)
{
	fake f;
	char path[256];
	cf_agent_opts o;
	cf_agent_transport t = {.publish = fake_publish, .reconnect = fake_reconnect, .arg = &f};
	cf_agent *a = NULL;

	(void)state;
	fake_init(&f, CF_KEY_P256, CF_KEY_P256, F_NONE);
	must(cf_keystore_file_open(&f.ks, g.dir));
	snprintf(path, sizeof(path), "%s/state", g.dir);
	must(cf_mkdir_p(path, 0700));
	snprintf(path, sizeof(path), "%s/state/agent.journal", g.dir);
	{
		const char *bad = "{\"version\": 1, \"state\": \"NOPE\"}";

		must(cf_file_write_atomic(path, bad, strlen(bad), 0600));
	}
	memset(&o, 0, sizeof(o));
	o.thing = THING;
	snprintf(path, sizeof(path), "%s/state", g.dir);
	o.state_dir = path;
	o.ca_chain_pem = g.chain_pem;
	assert_int_equal(cf_agent_start(&a, &o, f.ks, &t, 0), CF_ECORRUPT);
	assert_null(a);
	o.thing = "bad thing";
	assert_int_equal(cf_agent_start(&a, &o, f.ks, &t, 0), CF_EINVAL);
	cf_keystore_free(f.ks);
}

static void
test_agent__state_names(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < CF_AGENT__COUNT; i++)
		assert_true(strlen(cf_agent_state_name((cf_agent_state)i)) > 0);
	assert_string_equal(cf_agent_state_name(CF_AGENT__COUNT), "UNKNOWN");
	assert_string_equal(cf_agent_state_name(CF_AGENT_RECONNECTING_NEW), "RECONNECTING_NEW");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keystore__adopts_plain_bundle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__adoption_resumes_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__refuses_mismatched_or_missing_bundle, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keystore__switch_rollback_cleanup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__activate_rechecks_changed_files, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keystore__sign_with_either_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__chain_switches_with_the_pair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__rotates_p256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__rotates_ed25519, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__rotates_rsa2048_to_p384, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__every_edge_and_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__crash_after_every_journal_write_success_path,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__crash_after_every_journal_write_rollback_path,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__crash_with_answer_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__intermediate_rollover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__rotations_after_rollover_same_instance, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_agent__rotations_with_shared_ca_certs, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_agent__attacker_chain_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__cancel_before_commit_rolls_back_silently, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_agent__cancel_after_commit_keeps_the_new_pair, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_agent__corrupt_journal_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent__state_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
