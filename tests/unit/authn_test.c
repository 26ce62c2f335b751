/*
 * Unit tests for cf_acl_authenticate_device: the broker's CONNECT decision
 * for device certificates, against a real registry made by cf_ca_init.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_acl.h"
#include "cf_ca.h"
#include "cf_util.h"

#define ROOT_PASS "correct horse battery staple"

static char base[64], dir[128];
static cf_ca *ca;
static cf_cert_rec cert; /* sensor-1's ACTIVE certificate */

static int
setup(void **state)
{
	cf_ca_init_opts o;
	cf_key *key = NULL;
	char *csr = NULL;
	int r = -1;

	(void)state;
	snprintf(base, sizeof(base), "/tmp/cf-authn-XXXXXX");
	if (mkdtemp(base) == NULL)
		return -1;
	snprintf(dir, sizeof(dir), "%s/data", base);
	cf_ca_init_opts_default(&o);
	memset(&cert, 0, sizeof(cert));
	if (cf_ca_init(dir, &o, ROOT_PASS, NULL) != 0 || cf_ca_open(&ca, dir) != 0 ||
	    cf_key_generate(&key, CF_KEY_P256) != 0 ||
	    cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "sensor-1") != 0 ||
	    cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL) != 0 ||
	    cf_ca_issue_csr(ca, &cert, csr, strlen(csr), "sensor-1", 30) != 0)
		goto out;
	r = 0;
out:
	cf_key_free(key);
	free(csr);
	if (r != 0) {
		/* cmocka skips teardown when setup fails: undo it here. */
		print_error("setup: %s\n", cf_error_last());
		cf_cert_rec_clear(&cert);
		cf_ca_close(ca);
		ca = NULL;
		cf_rmtree(base);
	}
	return r;
}

static int
teardown(void **state)
{
	(void)state;
	cf_cert_rec_clear(&cert);
	cf_ca_close(ca);
	ca = NULL;
	return cf_rmtree(base);
}

static int
authn(const char *id, const char *client_id, int64_t now, char *reason)
{
	return cf_acl_authenticate_device(cf_ca_store(ca), id, client_id, now, reason, 512);
}

static void
test_authn__active_certificate_of_the_thing_is_accepted(void **state)
{
	char reason[512] = "";

	(void)state;
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), 0);
}

static void
test_authn__unknown_and_prefix_ids_are_refused(void **state)
{
	char reason[512], prefix[CF_ID_LEN + 1];

	(void)state;
	assert_int_equal(authn("00000000000000000000000000000000000000000000000000000000000000ff",
	    "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "not registered"));
	/* The store accepts unique prefixes for operators; a principal must match exactly. */
	snprintf(prefix, sizeof(prefix), "%.16s", cert.id);
	assert_int_equal(authn(prefix, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "not registered"));
}

static void
test_authn__inactive_and_revoked_are_refused(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), cert.id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "INACTIVE"));
	assert_int_equal(cf_ca_revoke_cert(ca, cert.id, 1), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "REVOKED"));
}

static void
test_authn__outside_validity_is_refused(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(authn(cert.id, "sensor-1", cert.not_after + 1, reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "expired"));
	assert_int_equal(authn(cert.id, "sensor-1", cert.not_before - 1, reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "not valid yet"));
}

static void
test_authn__revoked_issuing_ca_is_refused(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 2, ROOT_PASS), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "issuing CA issuing-1 is REVOKED"));
}

static void
test_authn__client_id_must_be_the_thing(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(authn(cert.id, "sensor-2", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "'sensor-2' is not the certificate's thing 'sensor-1'"));
	assert_int_equal(authn(cert.id, NULL, cf_time_now(), reason), CF_EREJECTED);
	assert_int_equal(authn(cert.id, "sensor-1/", cf_time_now(), reason), CF_EREJECTED);
	/* A hostile client id cannot put a line break into the reason (it is logged). */
	assert_int_equal(authn(cert.id, "x\nlevel=error msg=forged", cf_time_now(), reason),
	    CF_EREJECTED);
	assert_null(strchr(reason, '\n'));
}

static void
test_authn__detached_certificate_is_refused(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), cert.id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(cf_store_thing_delete(cf_ca_store(ca), "sensor-1"), 0);
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), cert.id, CF_CERT_ACTIVE, 0), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "is not the certificate's thing ''"));
}

/* Provisioning (cf_acl_authenticate): claims, and a provisioned device's PENDING_ACTIVATION certificate. */
static void
test_authn__claim_enabled_accepted_disabled_refused(void **state)
{
	cf_store *st = cf_ca_store(ca);
	cf_cert_rec claim;
	cf_key *key = NULL;
	cf_acl_kind kind;
	char *csr = NULL, reason[512];

	(void)state;
	memset(&claim, 0, sizeof(claim));
	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "claim.sensors"), 0);
	assert_int_equal(cf_ca_issue_csr_ex(ca, &claim, csr, strlen(csr), "claim.sensors", 0,
	    CF_CERT_ACTIVE, 30), 0);
	assert_string_equal(claim.thing, "");
	/* attached to no thing and not yet a claim: refused either way */
	assert_int_equal(cf_acl_authenticate(st, &kind, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "not a claim"));
	assert_int_equal(cf_store_prov_template_create(st, "sensors", "{\"namePattern\":\"s-{S}\"}"), 0);
	assert_int_equal(cf_store_claim_create(st, claim.id, "sensors"), 0);
	assert_int_equal(cf_acl_authenticate(st, &kind, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), 0);
	assert_int_equal(kind, CF_KIND_CLAIM);
	/* the device-only decision never takes a claim */
	assert_int_equal(authn(claim.id, "dev-1", cf_time_now(), reason), CF_EREJECTED);
	assert_int_equal(cf_store_claim_set_status(st, NULL, claim.id, CF_CLAIM_DISABLED, "test"), 0);
	assert_int_equal(cf_acl_authenticate(st, &kind, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "is DISABLED"));
	/* a claim past its notAfter is refused like any certificate */
	assert_int_equal(cf_store_claim_set_status(st, NULL, claim.id, CF_CLAIM_ENABLED, "test"), 0);
	assert_int_equal(cf_acl_authenticate(st, &kind, claim.id, "dev-1", claim.not_after + 1, reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "expired"));
	cf_cert_rec_clear(&claim);
	cf_key_free(key);
	free(csr);
}

static void
test_authn__pending_activation_accepted_for_provisioning_only(void **state)
{
	cf_store *st = cf_ca_store(ca);
	cf_cert_rec pend;
	cf_key *key = NULL;
	cf_acl_kind kind = CF_KIND_CLAIM;
	char *csr = NULL, reason[512];

	(void)state;
	memset(&pend, 0, sizeof(pend));
	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "sensor-1"), 0);
	assert_int_equal(cf_ca_issue_csr_ex(ca, &pend, csr, strlen(csr), "sensor-1", 1,
	    CF_CERT_PENDING_ACTIVATION, 30), 0);
	assert_int_equal(authn(pend.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "PENDING_ACTIVATION"));
	assert_int_equal(cf_acl_authenticate(st, &kind, pend.id, "sensor-1", cf_time_now(), reason,
	    sizeof(reason)), 0);
	assert_int_equal(kind, CF_KIND_DEVICE);
	assert_int_equal(cf_acl_authenticate(st, &kind, pend.id, "sensor-2", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	cf_cert_rec_clear(&pend);
	cf_key_free(key);
	free(csr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_authn__active_certificate_of_the_thing_is_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__unknown_and_prefix_ids_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__inactive_and_revoked_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__outside_validity_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__revoked_issuing_ca_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__client_id_must_be_the_thing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__detached_certificate_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__claim_enabled_accepted_disabled_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__pending_activation_accepted_for_provisioning_only, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
