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

static unsigned flags; /* the last authn's principal flags */

static int
authn(const char *id, const char *client_id, int64_t now, char *reason)
{
	flags = 0xdead;
	return cf_acl_authenticate_device(&flags, cf_ca_store(ca), id, client_id, now, reason, 512);
}

static void
test_authn__active_certificate_of_the_thing_is_accepted(void **state)
{
	char reason[512] = "";

	(void)state;
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), 0);
	assert_int_equal(flags, 0); /* full device access */
	assert_string_equal(reason, "");
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
	assert_non_null(strstr(reason, "issuing CA issuing-1 is REVOKED (cACompromise)"));
	assert_int_equal(flags, 0);
}

/* The issuing CA revoked for reason: accepted rotation-only (retired) or refused. */
static void
revoked_issuer_case(int reason_code, int retired)
{
	char reason[512], want[128];

	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", reason_code, ROOT_PASS), 0);
	if (retired) {
		assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), 0);
		assert_int_equal(flags, CF_ACL_ROTATION_ONLY);
		snprintf(want, sizeof(want), "issuing CA issuing-1 is retired (REVOKED, %s): rotation "
		    "topics only", cf_pki_reason_name(reason_code));
	} else {
		assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
		assert_int_equal(flags, 0);
		snprintf(want, sizeof(want), "issuing CA issuing-1 is REVOKED (%s)",
		    cf_pki_reason_name(reason_code));
	}
	assert_string_equal(reason, want);
}

static void
test_authn__superseded_issuing_ca_is_rotation_only(void **state)
{
	(void)state;
	revoked_issuer_case(4, 1);
}

static void
test_authn__ceased_issuing_ca_is_rotation_only(void **state)
{
	(void)state;
	revoked_issuer_case(5, 1);
}

static void
test_authn__affiliation_changed_issuing_ca_is_rotation_only(void **state)
{
	(void)state;
	revoked_issuer_case(3, 1);
}

static void
test_authn__key_compromised_issuing_ca_is_refused(void **state)
{
	(void)state;
	revoked_issuer_case(1, 0);
}

static void
test_authn__unspecified_revocation_of_issuing_ca_is_refused(void **state)
{
	(void)state;
	revoked_issuer_case(0, 0); /* the CLI's default: the safe side */
}

static void
test_authn__other_reasons_are_refused(void **state)
{
	(void)state;
	revoked_issuer_case(9, 0); /* privilegeWithdrawn: not a retirement either */
}

static void
test_authn__deactivated_issuing_ca_is_refused(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(cf_store_ca_set_status(cf_ca_store(ca), cert.ca_id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_string_equal(reason, "issuing CA issuing-1 is INACTIVE");
	assert_int_equal(flags, 0);
}

/* A retired CA opens nothing the device's own certificate would not: every other step holds. */
static void
test_authn__retired_ca_does_not_excuse_the_certificate(void **state)
{
	char reason[512];

	(void)state;
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 4, ROOT_PASS), 0);
	assert_int_equal(authn(cert.id, "sensor-2", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "is not the certificate's thing"));
	assert_int_equal(flags, 0);
	assert_int_equal(authn(cert.id, "sensor-1", cert.not_after + 1, reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "expired"));
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), cert.id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "is INACTIVE"));
	assert_int_equal(flags, 0);
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), cert.id, CF_CERT_ACTIVE, 0), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), 0);
	assert_int_equal(flags, CF_ACL_ROTATION_ONLY);
	assert_int_equal(cf_ca_revoke_cert(ca, cert.id, 4), 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "is REVOKED"));
	assert_int_equal(flags, 0);
}

/* A root is never retired: superseded or not, a revoked root refuses (the trust anchor is gone). */
static void
test_authn__revoked_root_refuses_even_superseded(void **state)
{
	cf_ca_rec issuing;
	char reason[512];

	(void)state;
	memset(&issuing, 0, sizeof(issuing));
	assert_int_equal(cf_store_ca_get(cf_ca_store(ca), &issuing, cert.ca_id), 0);
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 4, ROOT_PASS), 0);
	/* cf_ca_revoke_ca refuses roots; the store is the only way to get here. */
	assert_int_equal(cf_store_ca_set_status(cf_ca_store(ca), issuing.parent_id, CF_CERT_REVOKED, 4),
	    0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "parent CA "));
	assert_non_null(strstr(reason, " is REVOKED (superseded)"));
	assert_int_equal(flags, 0);
	cf_ca_rec_clear(&issuing);
}

/* Only a revoked intermediate retires: not a root, not an ACTIVE or INACTIVE CA. */
static void
test_authn__what_counts_as_retired(void **state)
{
	cf_ca_rec r;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.role = CF_CA_INTERMEDIATE;
	r.status = CF_CERT_REVOKED;
	r.revoke_reason = 4;
	assert_int_equal(cf_acl_ca_retired(&r), 1);
	r.role = CF_CA_ROOT;
	assert_int_equal(cf_acl_ca_retired(&r), 0);
	r.role = CF_CA_INTERMEDIATE;
	r.status = CF_CERT_INACTIVE;
	assert_int_equal(cf_acl_ca_retired(&r), 0);
	r.status = CF_CERT_ACTIVE;
	assert_int_equal(cf_acl_ca_retired(&r), 0);
	r.status = CF_CERT_REVOKED;
	r.revoke_reason = 2; /* cACompromise */
	assert_int_equal(cf_acl_ca_retired(&r), 0);
	r.revoke_reason = 6; /* certificateHold: not a retirement */
	assert_int_equal(cf_acl_ca_retired(&r), 0);
	assert_int_equal(cf_acl_reason_retires(3) + cf_acl_reason_retires(4) + cf_acl_reason_retires(5), 3);
	assert_int_equal(cf_acl_reason_retires(0) + cf_acl_reason_retires(1) + cf_acl_reason_retires(2) +
	    cf_acl_reason_retires(6) + cf_acl_reason_retires(9) + cf_acl_reason_retires(10) +
	    cf_acl_reason_retires(-1), 0);
}

/* After the roll-over a certificate of the new issuer has full access. */
static void
test_authn__new_issuer_certificate_is_full_access(void **state)
{
	cf_ca_rec int2;
	cf_cert_rec fresh;
	cf_key *key = NULL;
	char *csr = NULL, reason[512];

	(void)state;
	memset(&int2, 0, sizeof(int2));
	memset(&fresh, 0, sizeof(fresh));
	assert_int_equal(cf_ca_create_intermediate(ca, &int2, "issuing-2", CF_KEY_P256, 365, ROOT_PASS,
	    NULL, 1), 0);
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 4, ROOT_PASS), 0);
	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "sensor-1"), 0);
	assert_int_equal(cf_ca_issue_csr(ca, &fresh, csr, strlen(csr), "sensor-1", 30), 0);
	assert_string_equal(fresh.ca_id, int2.id);
	assert_int_equal(authn(fresh.id, "sensor-1", cf_time_now(), reason), 0);
	assert_int_equal(flags, 0);
	assert_int_equal(authn(cert.id, "sensor-1", cf_time_now(), reason), 0);
	assert_int_equal(flags, CF_ACL_ROTATION_ONLY);
	cf_cert_rec_clear(&fresh);
	cf_ca_rec_clear(&int2);
	cf_key_free(key);
	free(csr);
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
	cf_principal p;
	char *csr = NULL, reason[512];

	(void)state;
	memset(&claim, 0, sizeof(claim));
	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "claim.sensors"), 0);
	assert_int_equal(cf_ca_issue_csr_ex(ca, &claim, csr, strlen(csr), "claim.sensors", 0,
	    CF_CERT_ACTIVE, 30), 0);
	assert_string_equal(claim.thing, "");
	/* attached to no thing and not yet a claim: refused either way */
	assert_int_equal(cf_acl_authenticate(&p, st, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "not a claim"));
	assert_int_equal(cf_store_prov_template_create(st, "sensors", "{\"namePattern\":\"s-{S}\"}"), 0);
	assert_int_equal(cf_store_claim_create(st, claim.id, "sensors"), 0);
	assert_int_equal(cf_acl_authenticate(&p, st, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), 0);
	assert_int_equal(p.kind, CF_KIND_CLAIM);
	assert_int_equal(p.flags, 0);
	assert_string_equal(p.id, claim.id);
	/* the device-only decision never takes a claim */
	assert_int_equal(authn(claim.id, "dev-1", cf_time_now(), reason), CF_EREJECTED);
	assert_int_equal(cf_store_claim_set_status(st, NULL, claim.id, CF_CLAIM_DISABLED, "test"), 0);
	assert_int_equal(cf_acl_authenticate(&p, st, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "is DISABLED"));
	/* a claim past its notAfter is refused like any certificate */
	assert_int_equal(cf_store_claim_set_status(st, NULL, claim.id, CF_CLAIM_ENABLED, "test"), 0);
	assert_int_equal(cf_acl_authenticate(&p, st, claim.id, "dev-1", claim.not_after + 1, reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "expired"));
	/* under a retired CA a claim is refused: it has no rotation to make */
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 4, ROOT_PASS), 0);
	assert_int_equal(cf_acl_authenticate(&p, st, claim.id, "dev-1", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	assert_non_null(strstr(reason, "is retired (REVOKED, superseded), and a claim cannot rotate"));
	assert_int_equal(p.flags, 0);
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
	cf_principal p = { .kind = CF_KIND_CLAIM };
	char *csr = NULL, reason[512];

	(void)state;
	memset(&pend, 0, sizeof(pend));
	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, "sensor-1"), 0);
	assert_int_equal(cf_ca_issue_csr_ex(ca, &pend, csr, strlen(csr), "sensor-1", 1,
	    CF_CERT_PENDING_ACTIVATION, 30), 0);
	assert_int_equal(authn(pend.id, "sensor-1", cf_time_now(), reason), CF_EREJECTED);
	assert_non_null(strstr(reason, "PENDING_ACTIVATION"));
	assert_int_equal(cf_acl_authenticate(&p, st, pend.id, "sensor-1", cf_time_now(), reason,
	    sizeof(reason)), 0);
	assert_int_equal(p.kind, CF_KIND_DEVICE);
	assert_int_equal(p.flags, 0);
	assert_int_equal(cf_acl_authenticate(&p, st, pend.id, "sensor-2", cf_time_now(), reason,
	    sizeof(reason)), CF_EREJECTED);
	/* provisioned before a roll-over, first connection after it: rotation-only */
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 5, ROOT_PASS), 0);
	assert_int_equal(cf_acl_authenticate(&p, st, pend.id, "sensor-1", cf_time_now(), reason,
	    sizeof(reason)), 0);
	assert_int_equal(p.kind, CF_KIND_DEVICE);
	assert_int_equal(p.flags, CF_ACL_ROTATION_ONLY);
	assert_non_null(strstr(reason, "retired (REVOKED, cessationOfOperation)"));
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
		cmocka_unit_test_setup_teardown(test_authn__superseded_issuing_ca_is_rotation_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__ceased_issuing_ca_is_rotation_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__affiliation_changed_issuing_ca_is_rotation_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__key_compromised_issuing_ca_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__unspecified_revocation_of_issuing_ca_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__other_reasons_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__deactivated_issuing_ca_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__retired_ca_does_not_excuse_the_certificate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__revoked_root_refuses_even_superseded, setup, teardown),
		cmocka_unit_test(test_authn__what_counts_as_retired),
		cmocka_unit_test_setup_teardown(test_authn__new_issuer_certificate_is_full_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__client_id_must_be_the_thing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__detached_certificate_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__claim_enabled_accepted_disabled_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authn__pending_activation_accepted_for_provisioning_only, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
