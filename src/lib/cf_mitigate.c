/*
 * cf_mitigate — the mitigation actions: each a small idempotent step on the
 * registry (through cf_store and cf_ca), recorded with its outcome.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_audit.h"
#include "cf_mitigate.h"
#include "cf_util.h"

static const char *const action_names[CF_MITIGATE__COUNT] = {
	[CF_MITIGATE_DEACTIVATE] = "deactivate",
	[CF_MITIGATE_REVOKE] = "revoke",
	[CF_MITIGATE_DEACTIVATE_CA] = "deactivate-ca",
	[CF_MITIGATE_QUARANTINE] = "quarantine",
	[CF_MITIGATE_ROTATE] = "rotate",
	[CF_MITIGATE_NOTIFY] = "notify",
};

const char *
cf_mitigate_action_name(cf_mitigate_action a)
{
	return (unsigned)a < CF_MITIGATE__COUNT ? action_names[a] : "unknown";
}

int
cf_mitigate_action_parse(cf_mitigate_action *out, const char *name)
{
	int i;

	for (i = 0; name != NULL && i < CF_MITIGATE__COUNT; i++) {
		if (strcmp(name, action_names[i]) == 0) {
			*out = (cf_mitigate_action)i;
			return 0;
		}
	}
	cf_error_set("unknown action '%s' (deactivate, revoke, deactivate-ca, quarantine, rotate "
	    "or notify)", name ? name : "");
	return CF_EINVAL;
}

int
cf_mitigate_finding(cf_store *st, cf_finding_rec *out, int64_t id)
{
	cf_suppression_rec *supp = NULL;
	size_t n = 0;
	int r;

	if ((r = cf_store_finding_get(st, out, id)) != 0)
		return r;
	if ((r = cf_store_suppression_list(st, &supp, &n)) != 0)
		return r;
	if (out->suppressed || cf_audit_is_suppressed(supp, n, out->check, out->resource_id,
	    cf_time_now())) {
		r = CF_ESTATE;
		cf_error_set("finding %lld (%s on %s) is suppressed: a suppressed finding is never "
		    "mitigated", (long long)id, out->check, out->resource_id);
	}
	free(supp);
	return r;
}

int
cf_mitigate_target(cf_store *st, char cert[CF_ID_LEN + 1], char ca[CF_ID_LEN + 1],
    char thing[CF_NAME_MAX + 1], const cf_finding_rec *f)
{
	cf_cert_rec c;
	int r = 0;

	cert[0] = ca[0] = thing[0] = '\0';
	memset(&c, 0, sizeof(c));
	if (strcmp(f->resource_type, "DEVICE_CERTIFICATE") == 0) {
		if ((r = cf_store_cert_get(st, &c, f->resource_id)) != 0)
			return r;
		memcpy(cert, c.id, CF_ID_LEN + 1); /* not its CA: deactivate-ca is for CA findings */
		memcpy(thing, c.thing, strlen(c.thing) + 1);
		cf_cert_rec_clear(&c);
	} else if (strcmp(f->resource_type, "CA_CERTIFICATE") == 0) {
		snprintf(ca, CF_ID_LEN + 1, "%.64s", f->resource_id);
	} else if ((strcmp(f->resource_type, "THING") == 0 ||
	    strcmp(f->resource_type, "CLIENT_ID") == 0) && cf_name_valid("thing", f->resource_id)) {
		memcpy(thing, f->resource_id, strlen(f->resource_id) + 1); /* cf_name_valid: short */
	} else {
		r = CF_EINVAL;
		cf_error_set("finding %lld is about a %s, not a certificate, CA or thing", (long long)f->id,
		    f->resource_type);
	}
	return r;
}

int
cf_mitigate_record(cf_store *st, cf_mitigation_rec *out, int64_t id, cf_mitigate_action a,
    const char *status, const char *detail)
{
	cf_mitigation_rec m;
	size_t i;
	int r;

	memset(&m, 0, sizeof(m));
	m.finding_id = id;
	snprintf(m.action, sizeof(m.action), "%s", cf_mitigate_action_name(a));
	snprintf(m.status, sizeof(m.status), "%s", status);
	snprintf(m.detail, sizeof(m.detail), "%s", detail ? detail : "");
	for (i = 0; m.detail[i]; i++)
		if ((unsigned char)m.detail[i] < 0x20 || m.detail[i] == 0x7f)
			m.detail[i] = ' ';
	if ((r = cf_store_mitigation_record(st, &m.id, &m)) == 0 && out != NULL)
		*out = m;
	return r;
}

/* The local step; *noop = 1 when there was nothing to do. */
static int
act(cf_ca *ca, int *noop, char *what, size_t what_len, cf_mitigate_action a,
    const char *cert, const char *ca_id, const char *thing, const char *group,
    const char *notify_payload)
{
	cf_store *st = cf_ca_store(ca);
	cf_cert_rec c;
	cf_ca_rec car;
	char **members = NULL;
	size_t n = 0, i;
	int r = CF_EINVAL;

	memset(&c, 0, sizeof(c));
	memset(&car, 0, sizeof(car));
	*noop = 0;
	switch (a) {
	case CF_MITIGATE_DEACTIVATE:
	case CF_MITIGATE_REVOKE:
		if (cert[0] == '\0') {
			cf_error_set("the finding names no device certificate");
			break;
		}
		if ((r = cf_store_cert_get(st, &c, cert)) != 0)
			break;
		snprintf(what, what_len, "certificate %.16s... was %s", c.id,
		    cf_cert_status_name(c.status));
		/* Deactivating a revoked certificate: it is already out of use. */
		if (c.status == CF_CERT_REVOKED || (a == CF_MITIGATE_DEACTIVATE &&
		    c.status == CF_CERT_INACTIVE)) {
			*noop = 1;
			break;
		}
		r = a == CF_MITIGATE_REVOKE ? cf_ca_revoke_cert(ca, c.id, 0) :
		    cf_store_cert_set_status(st, c.id, CF_CERT_INACTIVE, 0);
		break;
	case CF_MITIGATE_DEACTIVATE_CA:
		if (ca_id[0] == '\0') {
			cf_error_set("the finding names no CA");
			break;
		}
		if ((r = cf_store_ca_get(st, &car, ca_id)) != 0)
			break;
		snprintf(what, what_len, "CA '%s' was %s", car.name, cf_cert_status_name(car.status));
		if (car.status != CF_CERT_ACTIVE) {
			*noop = 1;
			break;
		}
		r = cf_store_ca_set_status(st, car.id, CF_CERT_INACTIVE, 0);
		break;
	case CF_MITIGATE_QUARANTINE:
		if (thing[0] == '\0') {
			cf_error_set("the finding names no thing (its certificate is attached to none)");
			break;
		}
		/* The quarantine group is static and made on first use. */
		if ((r = cf_store_group_create(st, group, NULL)) == CF_EEXISTS)
			r = 0;
		if (r != 0)
			break;
		if ((r = cf_store_group_members(st, &members, &n, group)) != 0)
			break;
		for (i = 0; i < n && strcmp(members[i], thing) != 0; i++)
			;
		snprintf(what, what_len, "thing '%s' into group '%s'", thing, group);
		if (i < n) {
			*noop = 1;
			break;
		}
		r = cf_store_group_add(st, group, thing);
		break;
	case CF_MITIGATE_NOTIFY:
		/* Through the outbox: certfleetd's delivery thread sends it, with retries. */
		snprintf(what, what_len, "notification queued for webhook");
		r = cf_store_notify_enqueue(st, NULL, "webhook", "audit.finding", notify_payload);
		break;
	default:
		cf_error_set("action %s needs certfleetd (certfleet mitigate does it through the API)",
		    cf_mitigate_action_name(a));
		break;
	}
	cf_strv_free(members, n);
	cf_ca_rec_clear(&car);
	cf_cert_rec_clear(&c);
	return r;
}

int
cf_mitigate_apply(cf_ca *ca, cf_mitigation_rec *out, int64_t id, cf_mitigate_action a,
    const char *quarantine_group)
{
	cf_store *st = cf_ca_store(ca);
	cf_finding_rec f;
	char cert[CF_ID_LEN + 1], ca_id[CF_ID_LEN + 1], thing[CF_NAME_MAX + 1], what[256] = "";
	char detail[CF_AUDIT_DETAIL_MAX + 1], *text;
	json_t *payload;
	int r, noop = 0;

	if (a == CF_MITIGATE_ROTATE || (unsigned)a >= CF_MITIGATE__COUNT) {
		cf_error_set("action %s needs certfleetd", cf_mitigate_action_name(a));
		return CF_EINVAL;
	}
	if ((r = cf_mitigate_finding(st, &f, id)) != 0)
		return r;
	payload = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s}", "finding", (json_int_t)f.id, "check",
	    f.check, "severity", cf_severity_name(f.severity), "resourceType", f.resource_type,
	    "resourceId", f.resource_id, "reasonCode", f.reason_code, "detail", f.detail);
	text = payload ? json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(payload);
	if (text == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	/* A notification is about the finding itself, whatever its resource. */
	r = a == CF_MITIGATE_NOTIFY ? 0 : cf_mitigate_target(st, cert, ca_id, thing, &f);
	if (r == 0)
		r = act(ca, &noop, what, sizeof(what), a, cert, ca_id, thing,
		    quarantine_group ? quarantine_group : CF_MITIGATE_QUARANTINE_GROUP, text);
	free(text);
	if (r == 0) {
		snprintf(detail, sizeof(detail), "%s%s", what, noop ? ": nothing to do" : "");
		return cf_mitigate_record(st, out, id, a, noop ? "noop" : "succeeded", detail);
	}
	snprintf(detail, sizeof(detail), "%s", cf_error_last());
	if (cf_mitigate_record(st, out, id, a, "failed", detail) != 0)
		return CF_ERROR;
	cf_error_set("%s", detail); /* recording replaced nothing, but keep the action's reason */
	return r;
}
