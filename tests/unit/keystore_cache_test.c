/*
 * Unit tests for cf_keystore_cache (src/lib/cf_keystore_cache.c): the cached
 * keys are the inner store's keys, also after a rollback makes a generation
 * number come back with a new key, and every write still reaches the files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_keystore.h"
#include "cf_pki.h"
#include "cf_util.h"

#define THING "cached-1"

static struct {
	cf_key *ca_key;
	cf_cert *ca;
	char dir[64];
} g;

static char *
issue_pem(const cf_key *key)
{
	char *csr_pem = NULL, *pem = NULL;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;

	must(cf_csr_create(&csr_pem, key, cf_sig_alg_default(CF_KEY_P256), THING));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&cert, csr, THING, 30, 0, g.ca, g.ca_key));
	must(cf_cert_to_pem(&pem, cert));
	cf_cert_free(cert);
	cf_csr_free(csr);
	free(csr_pem);
	return pem;
}

static int
group_setup(void **state)
{
	(void)state;
	must(cf_key_generate(&g.ca_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.ca, g.ca_key, "Cache Test Root", 365));
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	cf_key_free(g.ca_key);
	cf_cert_free(g.ca);
	return 0;
}

/* A temp bundle (device.key, device.crt) opened as a file store, wrapped. */
static int
setup(void **state)
{
	cf_keystore *file = NULL, *ks = NULL;
	cf_key *key = NULL;
	char path[256], *pem;

	snprintf(g.dir, sizeof(g.dir), "/tmp/cf-kscache-XXXXXX");
	if (mkdtemp(g.dir) == NULL)
		return -1;
	must(cf_key_generate(&key, CF_KEY_P256));
	pem = issue_pem(key);
	snprintf(path, sizeof(path), "%s/device.key", g.dir);
	must(cf_key_save(path, key, NULL));
	snprintf(path, sizeof(path), "%s/device.crt", g.dir);
	must(cf_file_write_atomic(path, pem, strlen(pem), 0644));
	free(pem);
	cf_key_free(key);
	must(cf_keystore_file_open(&file, g.dir));
	must(cf_keystore_cache_wrap(&ks, file));
	*state = ks;
	return 0;
}

static int
teardown(void **state)
{
	cf_keystore_free(*state);
	return cf_rmtree(g.dir);
}

/* The key the file store holds for gen, read from its file. */
static cf_key *
file_key(cf_keystore *ks, unsigned gen)
{
	char key_path[4096], cert_path[4096];
	cf_key *key = NULL;

	must(ks->ops->locate(ks->st, key_path, sizeof(key_path), cert_path, sizeof(cert_path), gen));
	must(cf_key_load(&key, key_path, NULL));
	return key;
}

static void
assert_signs_as_file(cf_keystore *ks, unsigned gen)
{
	static const char msg[] = "custody";
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	cf_key *fk = file_key(ks, gen), *pub = NULL;
	cf_sig_alg alg = cf_sig_alg_default(CF_KEY_P256);

	must(ks->ops->sign(ks->st, &sig, &sig_len, gen, alg, msg, sizeof(msg)));
	must(cf_key_verify(fk, alg, msg, sizeof(msg), sig, sig_len));
	must(ks->ops->public_key(ks->st, &pub, gen));
	assert_true(cf_key_equal_public(pub, fk));
	free(sig);
	cf_key_free(pub);
	cf_key_free(fk);
}

static void
test_keystore_cache__signs_with_the_stores_keys(void **state)
{
	cf_keystore *ks = *state;
	cf_keystore_status st;
	unsigned gen;

	must(ks->ops->status(ks->st, &st));
	assert_signs_as_file(ks, st.active);
	assert_signs_as_file(ks, st.active); /* from the cache now */
	must(ks->ops->generate(ks->st, &gen, CF_KEY_P256));
	assert_int_equal(gen, st.active + 1);
	assert_signs_as_file(ks, gen);
	assert_signs_as_file(ks, st.active);
}

static void
test_keystore_cache__reused_generation_number_gets_the_new_key(void **state)
{
	cf_keystore *ks = *state;
	cf_keystore_status st;
	cf_key *first = NULL, *second = NULL;
	unsigned gen, again;

	must(ks->ops->status(ks->st, &st));
	must(ks->ops->generate(ks->st, &gen, CF_KEY_P256));
	must(ks->ops->public_key(ks->st, &first, gen));
	/* A rollback discards gen; the next generate makes the same number with a new key. */
	must(ks->ops->rollback(ks->st, st.active));
	must(ks->ops->generate(ks->st, &again, CF_KEY_P256));
	assert_int_equal(again, gen);
	must(ks->ops->public_key(ks->st, &second, again));
	assert_false(cf_key_equal_public(first, second));
	assert_signs_as_file(ks, again);
	/* And a generate without a rollback replaces the pending one too. */
	cf_key_free(first);
	first = second;
	second = NULL;
	must(ks->ops->generate(ks->st, &again, CF_KEY_P256));
	assert_int_equal(again, gen);
	must(ks->ops->public_key(ks->st, &second, again));
	assert_false(cf_key_equal_public(first, second));
	assert_signs_as_file(ks, again);
	cf_key_free(first);
	cf_key_free(second);
}

static void
test_keystore_cache__full_rotation_reaches_the_files(void **state)
{
	cf_keystore *ks = *state;
	cf_keystore_status st;
	cf_key *pub = NULL;
	char *csr_pem = NULL, *pem;
	cf_csr *csr = NULL;
	unsigned gen, old;

	must(ks->ops->status(ks->st, &st));
	old = st.active;
	must(ks->ops->generate(ks->st, &gen, CF_KEY_P256));
	must(ks->ops->csr(ks->st, &csr_pem, gen, cf_sig_alg_default(CF_KEY_P256), THING));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_csr_verify(csr));
	must(ks->ops->public_key(ks->st, &pub, gen));
	{
		cf_key *pending;

		pending = file_key(ks, gen);
		assert_true(cf_key_equal_public(pub, pending));
		cf_key_free(pending);
	}
	/* install_cert still checks the pair: a certificate for another key is refused. */
	{
		cf_key *other = NULL;

		must(cf_key_generate(&other, CF_KEY_P256));
		pem = issue_pem(other);
		assert_int_equal(ks->ops->install_cert(ks->st, gen, pem, strlen(pem)), CF_EINVAL);
		free(pem);
		cf_key_free(other);
	}
	pem = issue_pem(pub);
	must(ks->ops->install_cert(ks->st, gen, pem, strlen(pem)));
	must(ks->ops->activate(ks->st, gen));
	must(ks->ops->cleanup(ks->st));
	must(ks->ops->status(ks->st, &st));
	assert_int_equal(st.active, gen);
	assert_int_equal(st.backup, 0);
	assert_true(old < gen);
	assert_signs_as_file(ks, gen);
	free(pem);
	free(csr_pem);
	cf_csr_free(csr);
	cf_key_free(pub);
}

static void
test_keystore_cache__refuses_a_store_without_locate(void **state)
{
	static const cf_keystore_ops no_locate = { 0 };
	cf_keystore inner = { &no_locate, NULL }, *ks = NULL;

	(void)state;
	assert_int_equal(cf_keystore_cache_wrap(&ks, &inner), CF_EINVAL);
	assert_int_equal(cf_keystore_cache_wrap(&ks, NULL), CF_EINVAL);
	assert_null(ks);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keystore_cache__signs_with_the_stores_keys, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_keystore_cache__reused_generation_number_gets_the_new_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keystore_cache__full_rotation_reaches_the_files,
		    setup, teardown),
		cmocka_unit_test(test_keystore_cache__refuses_a_store_without_locate),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
