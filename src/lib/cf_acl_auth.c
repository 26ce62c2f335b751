/*
 * cf_acl_auth — the broker's CONNECT decision against the registry
 * (cf_acl_authenticate_device, cf_acl_authenticate; declared in cf_acl.h,
 * docs/broker.md). Apart from cf_acl.c because it reads the store: a
 * program that only needs the pure topic rules (certfleet-agent:
 * cf_acl_prefix_check) then links neither the store nor SQLite.
 */
#include "cf_acl.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cf_pki.h"
#include "cf_store.h"

#define CA_DEPTH_MAX 4 /* issuing CA, its parent ... */

/* A registry failure: not the client's fault, and the reason says so. */
static int
registry_error(int r, char *reason, size_t reason_len, const char *what, const char *id)
{
	if (r == CF_ENOTFOUND) {
		snprintf(reason, reason_len, "%s %s is not registered", what, id);
		return CF_EREJECTED;
	}
	snprintf(reason, reason_len, "registry error looking up %s %s: %s", what, id, cf_error_last());
	return r;
}

/*
 * The CONNECT decision: out's kind and flags (CF_ACL_ROTATION_ONLY under a
 * retired CA). provisioning: also accept a PENDING_ACTIVATION certificate
 * of its thing (a provisioned device's first connection) and an ACTIVE
 * certificate attached to no thing that is an ENABLED claim
 * (CF_KIND_CLAIM; never under a retired CA: a claim cannot rotate).
 */
static int
authenticate(cf_principal *out, cf_store *st, const char *cert_id, const char *client_id,
    int64_t now, char *reason, size_t reason_len, int provisioning)
{
	cf_claim_rec cl;
	cf_cert_rec c;
	cf_ca_rec ca;
	char ref[CF_ID_LEN + 1], cid[CF_ACL_PRINTABLE_MAX], thing[CF_ACL_PRINTABLE_MAX];
	char retired[CF_NAME_MAX + 64] = "";
	int depth, r;

	out->kind = CF_KIND_DEVICE;
	out->flags = 0;
	if (reason_len > 0)
		reason[0] = '\0';
	memset(&c, 0, sizeof(c));
	memset(&ca, 0, sizeof(ca));
	if ((r = cf_store_cert_get(st, &c, cert_id)) != 0) {
		r = registry_error(r, reason, reason_len, "certificate", cert_id);
		goto out;
	}
	r = CF_EREJECTED;
	if (strcmp(c.id, cert_id) != 0) { /* lookups accept prefixes; a principal is exact */
		snprintf(reason, reason_len, "certificate %s is not registered", cert_id);
		goto out;
	}
	if (c.status != CF_CERT_ACTIVE &&
	    !(provisioning && c.status == CF_CERT_PENDING_ACTIVATION && c.thing[0] != '\0')) {
		snprintf(reason, reason_len, "certificate %s is %s", cert_id,
		    cf_cert_status_name(c.status));
		goto out;
	}
	if (now > c.not_after || now < c.not_before) {
		snprintf(reason, reason_len, "certificate %s %s", cert_id,
		    now > c.not_after ? "expired" : "is not valid yet");
		goto out;
	}
	/*
	 * The issuing CA and every CA above it must be ACTIVE in the registry,
	 * or retired: then the device may connect to rotate, and no more.
	 */
	snprintf(ref, sizeof(ref), "%s", c.ca_id);
	for (depth = 0; ref[0] != '\0'; depth++) {
		if (depth == CA_DEPTH_MAX) {
			snprintf(reason, reason_len, "CA chain of certificate %s is too long", cert_id);
			goto out;
		}
		cf_ca_rec_clear(&ca);
		if ((r = cf_store_ca_get(st, &ca, ref)) != 0) {
			r = registry_error(r, reason, reason_len, "CA", ref);
			goto out;
		}
		r = CF_EREJECTED;
		if (cf_acl_ca_retired(&ca)) {
			if (retired[0] == '\0')
				snprintf(retired, sizeof(retired), "%s CA %s is retired (REVOKED, %s)",
				    depth == 0 ? "issuing" : "parent", ca.name,
				    cf_pki_reason_name(ca.revoke_reason));
		} else if (ca.status == CF_CERT_REVOKED) {
			snprintf(reason, reason_len, "%s CA %s is REVOKED (%s)",
			    depth == 0 ? "issuing" : "parent", ca.name,
			    cf_pki_reason_name(ca.revoke_reason));
			goto out;
		} else if (ca.status != CF_CERT_ACTIVE) {
			snprintf(reason, reason_len, "%s CA %s is %s", depth == 0 ? "issuing" : "parent",
			    ca.name, cf_cert_status_name(ca.status));
			goto out;
		}
		snprintf(ref, sizeof(ref), "%s", ca.parent_id);
	}
	if (provisioning && c.thing[0] == '\0') {
		if ((r = cf_store_claim_get(st, &cl, c.id)) != 0) {
			r = registry_error(r, reason, reason_len, "claim certificate", cert_id);
			if (r == CF_EREJECTED)
				snprintf(reason, reason_len, "certificate %s is attached to no thing and is "
				    "not a claim", cert_id);
			goto out;
		}
		r = CF_EREJECTED;
		if (cl.status != CF_CLAIM_ENABLED) {
			snprintf(reason, reason_len, "claim certificate %s is %s", cert_id,
			    cf_claim_status_name(cl.status));
			goto out;
		}
		if (retired[0] != '\0') {
			snprintf(reason, reason_len, "claim certificate %s: %s, and a claim cannot rotate",
			    cert_id, retired);
			goto out;
		}
		out->kind = CF_KIND_CLAIM;
		r = 0;
		goto out;
	}
	if (c.thing[0] == '\0' || client_id == NULL || strcmp(c.thing, client_id) != 0) {
		snprintf(reason, reason_len, "client id '%s' is not the certificate's thing '%s'",
		    cf_acl_printable(cid, client_id), cf_acl_printable(thing, c.thing));
		goto out;
	}
	if (retired[0] != '\0') {
		snprintf(reason, reason_len, "%s: rotation topics only", retired);
		out->flags = CF_ACL_ROTATION_ONLY;
	}
	r = 0;
out:
	cf_ca_rec_clear(&ca);
	cf_cert_rec_clear(&c);
	return r;
}

int
cf_acl_authenticate_device(unsigned *out, cf_store *st, const char *cert_id,
    const char *client_id, int64_t now, char *reason, size_t reason_len)
{
	cf_principal p;
	int r;

	r = authenticate(&p, st, cert_id, client_id, now, reason, reason_len, 0);
	*out = r == 0 ? p.flags : 0;
	return r;
}

int
cf_acl_authenticate(cf_principal *out, cf_store *st, const char *cert_id, const char *client_id,
    int64_t now, char *reason, size_t reason_len)
{
	int r;

	r = authenticate(out, st, cert_id, client_id, now, reason, reason_len, 1);
	if (r != 0)
		out->flags = 0;
	else
		memmove(out->id, cert_id, CF_ID_LEN + 1); /* matched exactly; may be out->id itself */
	return r;
}
