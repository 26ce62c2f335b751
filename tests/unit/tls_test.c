/*
 * Unit tests for cf_tls (src/lib/cf_tls.c) with the key cache that lends
 * it keys (cf_keystore_cache_key): a client context whose key came from
 * the cache completes a real mutual-TLS handshake (in memory, BIO pair)
 * with a server that requires and verifies its certificate; a key that is
 * not the certificate's is refused by the context; bad arguments are
 * refused.
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cf_keystore.h"
#include "cf_pki.h"
#include "cf_tls.h"
#include "cf_util.h"

#define THING "tls-1"

static struct {
	cf_key *ca_key, *srv_key;
	cf_cert *ca, *srv;
	char dir[64];
	char ca_path[128], srv_path[128], dev_crt[128];
} g;

static void
write_cert(const char *path, const cf_cert *c)
{
	char *pem = NULL;

	must(cf_cert_to_pem(&pem, c));
	must(cf_file_write_atomic(path, pem, strlen(pem), 0644));
	free(pem);
}

static int
group_setup(void **state)
{
	cf_key *pub = NULL;

	(void)state;
	must(cf_key_generate(&g.ca_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.ca, g.ca_key, "TLS Test Root", 365));
	must(cf_key_generate(&g.srv_key, CF_KEY_P256));
	must(cf_key_dup(&pub, g.srv_key));
	must(cf_pki_issue_tls(&g.srv, pub, "broker", "DNS:localhost", 1, 30, g.ca, g.ca_key));
	cf_key_free(pub);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	cf_key_free(g.ca_key);
	cf_key_free(g.srv_key);
	cf_cert_free(g.ca);
	cf_cert_free(g.srv);
	return 0;
}

/* A device bundle (device.key, device.crt issued by the root) as a cached file store. */
static int
setup(void **state)
{
	cf_keystore *file = NULL, *ks = NULL;
	cf_key *key = NULL;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	char path[256], *csr_pem = NULL;

	snprintf(g.dir, sizeof(g.dir), "/tmp/cf-tls-XXXXXX");
	if (mkdtemp(g.dir) == NULL)
		return -1;
	snprintf(g.ca_path, sizeof(g.ca_path), "%s/ca.crt", g.dir);
	snprintf(g.srv_path, sizeof(g.srv_path), "%s/server.crt", g.dir);
	snprintf(g.dev_crt, sizeof(g.dev_crt), "%s/device.crt", g.dir);
	write_cert(g.ca_path, g.ca);
	write_cert(g.srv_path, g.srv);
	must(cf_key_generate(&key, CF_KEY_P256));
	must(cf_csr_create(&csr_pem, key, cf_sig_alg_default(CF_KEY_P256), THING));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&cert, csr, THING, 30, 0, g.ca, g.ca_key));
	write_cert(g.dev_crt, cert);
	snprintf(path, sizeof(path), "%s/device.key", g.dir);
	must(cf_key_save(path, key, NULL));
	cf_cert_free(cert);
	cf_csr_free(csr);
	free(csr_pem);
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

/* Runs both ends over a BIO pair until both finished or one failed; 1 if both completed. */
static int
handshake(SSL *client, SSL *server)
{
	int i, c = 0, s = 0, rc;

	for (i = 0; i < 100 && (c != 1 || s != 1); i++) {
		if (c != 1) {
			rc = SSL_do_handshake(client);
			if (rc == 1)
				c = 1;
			else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ)
				return 0;
		}
		if (s != 1) {
			rc = SSL_do_handshake(server);
			if (rc == 1)
				s = 1;
			else if (SSL_get_error(server, rc) != SSL_ERROR_WANT_READ)
				return 0;
		}
	}
	return c == 1 && s == 1;
}

/* A server that requires a client certificate under the test root. */
static SSL_CTX *
server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate_file(ctx, g.srv_path, SSL_FILETYPE_PEM), 1);
	must(cf_tls_ctx_use_key(ctx, g.srv_key));
	assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, g.ca_path, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return ctx;
}

/* 1 if a client with key (and device.crt) completes a mutual-TLS handshake. */
static int
connects_with(const cf_key *key)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method()), *sctx = server_ctx();
	SSL *c, *s;
	BIO *cb = NULL, *sb = NULL;
	X509 *peer;
	int ok;

	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_load_verify_locations(cctx, g.ca_path, NULL), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	assert_int_equal(SSL_CTX_use_certificate_file(cctx, g.dev_crt, SSL_FILETYPE_PEM), 1);
	must(cf_tls_ctx_use_key(cctx, key));
	c = SSL_new(cctx);
	s = SSL_new(sctx);
	assert_true(c != NULL && s != NULL);
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	ok = handshake(c, s);
	if (ok) {
		/* The server verified the client's certificate: the key signed for it. */
		peer = SSL_get1_peer_certificate(s);
		assert_non_null(peer);
		assert_int_equal(SSL_get_verify_result(s), X509_V_OK);
		X509_free(peer);
	}
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return ok;
}

static void
test_tls__handshake_with_the_cached_key(void **state)
{
	cf_keystore *ks = *state;
	cf_keystore_status st;
	const cf_key *key = NULL;

	must(ks->ops->status(ks->st, &st));
	must(cf_keystore_cache_key(&key, ks, st.active));
	assert_non_null(key);
	assert_true(connects_with(key));
	/* Lent, not handed over: the cache still holds it, and a second context works too. */
	assert_true(connects_with(key));
}

static void
test_tls__a_key_that_is_not_the_certificates_fails(void **state)
{
	cf_keystore *ks = *state;
	const cf_key *key = NULL;
	SSL_CTX *ctx;
	unsigned gen;

	/* The pending generation's new key with the active certificate. */
	must(ks->ops->generate(ks->st, &gen, CF_KEY_P256));
	must(cf_keystore_cache_key(&key, ks, gen));
	ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate_file(ctx, g.dev_crt, SSL_FILETYPE_PEM), 1);
	assert_int_equal(cf_tls_ctx_use_key(ctx, key), CF_ERROR);
	assert_non_null(strstr(cf_error_last(), "refused the key"));
	assert_int_equal(SSL_CTX_check_private_key(ctx), 0); /* and the context has no key */
	ERR_clear_error();
	SSL_CTX_free(ctx);
}

static void
test_tls__bad_arguments(void **state)
{
	cf_keystore *ks = *state, *file = NULL;
	cf_keystore_status st;
	const cf_key *key = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	must(ks->ops->status(ks->st, &st));
	must(cf_keystore_cache_key(&key, ks, st.active));
	assert_int_equal(cf_tls_ctx_use_key(NULL, key), CF_EINVAL);
	assert_int_equal(cf_tls_ctx_use_key(ctx, NULL), CF_EINVAL);
	/* Only a key cache lends keys; a generation that does not exist has none. */
	must(cf_keystore_file_open(&file, g.dir));
	assert_int_equal(cf_keystore_cache_key(&key, file, st.active), CF_EINVAL);
	assert_int_equal(cf_keystore_cache_key(&key, NULL, st.active), CF_EINVAL);
	assert_int_not_equal(cf_keystore_cache_key(&key, ks, st.active + 7), 0);
	cf_keystore_free(file);
	SSL_CTX_free(ctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tls__handshake_with_the_cached_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls__a_key_that_is_not_the_certificates_fails, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tls__bad_arguments, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
