/*
 * agent_test — the device side of a rotation: the file key store (layout,
 * adoption of a plain bundle, atomic switch, rollback, cleanup, modes) on a
 * real temp directory, with a test CA made here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_keystore.h"
#include "cf_util.h"

#define THING "sensor-7"

static struct {
	cf_key *root_key, *int_key, *other_key;
	cf_cert *root, *inter, *other_root;
	char *chain_pem;     /* intermediate + root, as in ca-chain.crt */
	char dir[64];        /* per-test temp directory */
} g;

static void
must(int r)
{
	if (r != 0)
		fail_msg("unexpected error %d: %s", r, cf_error_last());
}

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
	free(g.chain_pem);
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
	/* Opening again changes nothing. */
	must(cf_keystore_file_open(&ks, g.dir));
	assert_int_equal(count_gens(g.dir, NULL), 1);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keystore__adopts_plain_bundle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__adoption_resumes_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__refuses_mismatched_or_missing_bundle, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keystore__switch_rollback_cleanup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore__sign_with_either_generation, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
