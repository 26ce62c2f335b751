/*
 * alg_test — the algorithm tables of cf_pki: names and aliases, and all 60
 * key × signing algorithm pairs. Every valid pair must really sign (a CSR
 * that verifies, raw data that verifies); every invalid pair and unknown
 * name is CF_EINVAL naming both values. One key per algorithm, generated
 * once (RSA-3072 is slow under the sanitizers).
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

#include "cf_pki.h"

static cf_key *keys[CF_KEY__COUNT];

static const char *const key_names[CF_KEY__COUNT] = {
	"RSA-2048", "RSA-3072", "ECDSA-P256", "ECDSA-P384", "ECDSA-P521", "ED25519",
};

static const char *const sig_names[CF_SIG__COUNT] = {
	"SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA",
	"SHA256WITHRSAANDMGF1", "SHA384WITHRSAANDMGF1", "SHA512WITHRSAANDMGF1",
	"ECDSA-WITH-SHA256", "ECDSA-WITH-SHA384", "ECDSA-WITH-SHA512", "ED25519",
};

/* The expected table, written out independently of the implementation. */
static int
pair_valid(int k, int s)
{
	int rsa_key = k == CF_KEY_RSA2048 || k == CF_KEY_RSA3072;
	int ec_key = k == CF_KEY_P256 || k == CF_KEY_P384 || k == CF_KEY_P521;

	if (rsa_key)
		return s >= CF_SIG_SHA256_RSA && s <= CF_SIG_SHA512_RSA_PSS;
	if (ec_key)
		return s >= CF_SIG_ECDSA_SHA256 && s <= CF_SIG_ECDSA_SHA512;
	return s == CF_SIG_ED25519;
}

/* What OpenSSL calls the CSR's signature algorithm for each signing algorithm. */
static const char *const csr_sig_ln[CF_SIG__COUNT] = {
	"sha256WithRSAEncryption", "sha384WithRSAEncryption", "sha512WithRSAEncryption",
	"rsassaPss", "rsassaPss", "rsassaPss",
	"ecdsa-with-SHA256", "ecdsa-with-SHA384", "ecdsa-with-SHA512", "ED25519",
};

static int
group_setup(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		if (cf_key_generate(&keys[i], (cf_key_alg)i) != 0)
			return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++)
		cf_key_free(keys[i]);
	return 0;
}

static void
test_alg__canonical_names_roundtrip(void **state)
{
	cf_key_alg k;
	cf_sig_alg s;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		assert_string_equal(cf_key_alg_name((cf_key_alg)i), key_names[i]);
		must(cf_key_alg_parse(&k, key_names[i]));
		assert_int_equal(k, i);
	}
	for (i = 0; i < CF_SIG__COUNT; i++) {
		assert_string_equal(cf_sig_alg_name((cf_sig_alg)i), sig_names[i]);
		must(cf_sig_alg_parse(&s, sig_names[i]));
		assert_int_equal(s, i);
	}
	assert_string_equal(cf_key_alg_name(CF_KEY__COUNT), "unknown");
	assert_string_equal(cf_sig_alg_name(CF_SIG__COUNT), "unknown");
}

static void
test_alg__aliases_and_case(void **state)
{
	static const struct {
		const char *name;
		cf_key_alg alg;
	} aliases[] = {
		{ "rsa-2048", CF_KEY_RSA2048 }, { "RSA3072", CF_KEY_RSA3072 },
		{ "P-256", CF_KEY_P256 }, { "p256", CF_KEY_P256 }, { "ecdsa-p-256", CF_KEY_P256 },
		{ "prime256v1", CF_KEY_P256 }, { "P-384", CF_KEY_P384 }, { "P384", CF_KEY_P384 },
		{ "secp384r1", CF_KEY_P384 }, { "P-521", CF_KEY_P521 }, { "p521", CF_KEY_P521 },
		{ "ed25519", CF_KEY_ED25519 }, { "Ed25519", CF_KEY_ED25519 },
	};
	cf_key_alg k;
	cf_sig_alg s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
		must(cf_key_alg_parse(&k, aliases[i].name));
		assert_int_equal(k, aliases[i].alg);
	}
	must(cf_sig_alg_parse(&s, "sha256withrsaandmgf1"));
	assert_int_equal(s, CF_SIG_SHA256_RSA_PSS);
	must(cf_sig_alg_parse(&s, "ecdsa-with-sha384"));
	assert_int_equal(s, CF_SIG_ECDSA_SHA384);
}

static void
test_alg__unknown_names_are_einval(void **state)
{
	cf_key_alg k;
	cf_sig_alg s;

	(void)state;
	assert_int_equal(cf_key_alg_parse(&k, "RSA-1024"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "RSA-1024"));
	assert_non_null(strstr(cf_error_last(), "ECDSA-P256")); /* lists the valid ones */
	assert_int_equal(cf_key_alg_parse(&k, NULL), CF_EINVAL);
	assert_int_equal(cf_sig_alg_parse(&s, "SHA1WITHRSA"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "SHA1WITHRSA"));
	assert_int_equal(cf_sig_alg_parse(&s, ""), CF_EINVAL);

	assert_int_equal(cf_alg_validate(&k, &s, "DSA-2048", "SHA256WITHRSA"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "DSA-2048"));
	assert_non_null(strstr(cf_error_last(), "SHA256WITHRSA"));
	assert_int_equal(cf_alg_validate(&k, &s, "RSA-2048", "MD5WITHRSA"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "RSA-2048"));
	assert_non_null(strstr(cf_error_last(), "MD5WITHRSA"));
	assert_int_equal(cf_alg_validate(&k, &s, NULL, "ED25519"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "ED25519"));
	assert_int_equal(cf_alg_validate(&k, &s, "", "ED25519"), CF_EINVAL);
	assert_int_equal(cf_alg_validate(&k, &s, "bogus", "bogus-sig"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "bogus"));
	assert_non_null(strstr(cf_error_last(), "bogus-sig"));
}

static void
test_alg__default_signing_algorithm(void **state)
{
	static const cf_sig_alg want[CF_KEY__COUNT] = {
		CF_SIG_SHA256_RSA, CF_SIG_SHA256_RSA, CF_SIG_ECDSA_SHA256,
		CF_SIG_ECDSA_SHA384, CF_SIG_ECDSA_SHA512, CF_SIG_ED25519,
	};
	cf_key_alg k;
	cf_sig_alg s;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		assert_int_equal(cf_sig_alg_default((cf_key_alg)i), want[i]);
		must(cf_alg_validate(&k, &s, key_names[i], NULL));
		assert_int_equal(k, i);
		assert_int_equal(s, want[i]);
	}
}

/* The 60 pairs through cf_alg_validate, with the table written out above. */
static void
test_alg__validate_all_60_pairs(void **state)
{
	cf_key_alg k;
	cf_sig_alg s;
	int ki, si, n_valid = 0, n_invalid = 0;

	(void)state;
	for (ki = 0; ki < CF_KEY__COUNT; ki++) {
		for (si = 0; si < CF_SIG__COUNT; si++) {
			int r = cf_alg_validate(&k, &s, key_names[ki], sig_names[si]);

			if (pair_valid(ki, si)) {
				if (r != 0)
					fail_msg("%s + %s refused: %s", key_names[ki], sig_names[si],
					    cf_error_last());
				assert_int_equal(k, ki);
				assert_int_equal(s, si);
				n_valid++;
			} else {
				if (r != CF_EINVAL)
					fail_msg("%s + %s accepted", key_names[ki], sig_names[si]);
				assert_non_null(strstr(cf_error_last(), key_names[ki]));
				assert_non_null(strstr(cf_error_last(), sig_names[si]));
				n_invalid++;
			}
		}
	}
	assert_int_equal(n_valid, 22);
	assert_int_equal(n_invalid, 38);
	must(cf_alg_validate(NULL, NULL, "p-384", "ecdsa-with-sha512"));
	assert_int_equal(cf_alg_validate(&k, &s, "RSA-2048", "ECDSA-WITH-SHA256"), CF_EINVAL);
	assert_string_equal(cf_error_last(),
	    "signing algorithm ECDSA-WITH-SHA256 cannot be used with key algorithm RSA-2048");
}

/* Every valid pair makes a CSR that verifies; every invalid one makes nothing. */
static void
test_alg__all_60_pairs_sign_csr(void **state)
{
	char *pem = NULL, name[64];
	cf_csr *csr = NULL;
	int ki, si, r;

	(void)state;
	for (ki = 0; ki < CF_KEY__COUNT; ki++) {
		for (si = 0; si < CF_SIG__COUNT; si++) {
			r = cf_csr_create(&pem, keys[ki], (cf_sig_alg)si, "alg-thing");
			if (!pair_valid(ki, si)) {
				if (r != CF_EINVAL)
					fail_msg("CSR %s + %s: %d", key_names[ki], sig_names[si], r);
				assert_non_null(strstr(cf_error_last(), sig_names[si]));
				continue;
			}
			if (r != 0)
				fail_msg("CSR %s + %s: %s", key_names[ki], sig_names[si],
				    cf_error_last());
			must(cf_csr_parse(&csr, pem, strlen(pem)));
			if (cf_csr_verify(csr) != 0)
				fail_msg("CSR %s + %s does not verify: %s", key_names[ki],
				    sig_names[si], cf_error_last());
			must(cf_csr_check_subject(csr, "alg-thing"));
			must(cf_csr_sig_name(name, sizeof(name), csr));
			assert_string_equal(name, csr_sig_ln[si]);
			cf_csr_free(csr);
			csr = NULL;
			free(pem);
			pem = NULL;
		}
	}
}

/* The same pairs over raw data: sign, verify, and a flipped bit refused. */
static void
test_alg__all_60_pairs_sign_raw(void **state)
{
	static const char msg[] = "job-1|thing-1|0123456789abcdef";
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int ki, si, r;

	(void)state;
	for (ki = 0; ki < CF_KEY__COUNT; ki++) {
		for (si = 0; si < CF_SIG__COUNT; si++) {
			r = cf_key_sign(&sig, &sig_len, keys[ki], (cf_sig_alg)si, msg, sizeof(msg));
			if (!pair_valid(ki, si)) {
				assert_int_equal(r, CF_EINVAL);
				assert_int_equal(cf_key_verify(keys[ki], (cf_sig_alg)si, msg,
				    sizeof(msg), (const unsigned char *)"x", 1), CF_EINVAL);
				continue;
			}
			must(r);
			must(cf_key_verify(keys[ki], (cf_sig_alg)si, msg, sizeof(msg), sig, sig_len));
			/* Another message, a flipped bit, another key: all refused. */
			assert_int_equal(cf_key_verify(keys[ki], (cf_sig_alg)si, msg,
			    sizeof(msg) - 1, sig, sig_len), CF_EREJECTED);
			sig[sig_len / 2] ^= 0x10;
			assert_int_equal(cf_key_verify(keys[ki], (cf_sig_alg)si, msg, sizeof(msg),
			    sig, sig_len), CF_EREJECTED);
			sig[sig_len / 2] ^= 0x10;
			free(sig);
			sig = NULL;
		}
	}
}

/* PSS signatures carry a salt as long as the digest: check with the raw key. */
static void
test_alg__pss_is_randomised_and_cross_hash_refused(void **state)
{
	static const char msg[] = "pss";
	unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;

	(void)state;
	must(cf_key_sign(&a, &alen, keys[CF_KEY_RSA2048], CF_SIG_SHA256_RSA_PSS, msg, 3));
	must(cf_key_sign(&b, &blen, keys[CF_KEY_RSA2048], CF_SIG_SHA256_RSA_PSS, msg, 3));
	assert_int_equal(alen, 256);
	assert_int_equal(alen, blen);
	assert_memory_not_equal(a, b, alen); /* salted */
	/* A PSS signature is not a PKCS#1 v1.5 one, nor PSS with another hash. */
	assert_int_equal(cf_key_verify(keys[CF_KEY_RSA2048], CF_SIG_SHA256_RSA, msg, 3, a, alen),
	    CF_EREJECTED);
	assert_int_equal(cf_key_verify(keys[CF_KEY_RSA2048], CF_SIG_SHA384_RSA_PSS, msg, 3, a,
	    alen), CF_EREJECTED);
	free(a);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alg__canonical_names_roundtrip),
		cmocka_unit_test(test_alg__aliases_and_case),
		cmocka_unit_test(test_alg__unknown_names_are_einval),
		cmocka_unit_test(test_alg__default_signing_algorithm),
		cmocka_unit_test(test_alg__validate_all_60_pairs),
		cmocka_unit_test(test_alg__all_60_pairs_sign_csr),
		cmocka_unit_test(test_alg__all_60_pairs_sign_raw),
		cmocka_unit_test(test_alg__pss_is_randomised_and_cross_hash_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
