/*
 * cf_json — JSON views of registry records, shared by the CLI's --json
 * output and certfleetd's REST API (docs/cli.md, "JSON shapes"). Keys are
 * camelCase; times are RFC 3339 UTC strings. Returns new references.
 */
#include "cf_json.h"

#include <string.h>

#include "cf_util.h"

static void
set_time(json_t *o, const char *key, int64_t t)
{
	char buf[32];

	cf_time_format(buf, sizeof(buf), t);
	json_object_set_new(o, key, json_string(buf));
}

json_t *
cf_json_cert(const cf_cert_rec *r, int with_pem)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "serial", json_string(r->serial));
	json_object_set_new(o, "caId", json_string(r->ca_id));
	json_object_set_new(o, "thing", r->thing[0] ? json_string(r->thing) : json_null());
	json_object_set_new(o, "status", json_string(cf_cert_status_name(r->status)));
	set_time(o, "notBefore", r->not_before);
	set_time(o, "notAfter", r->not_after);
	json_object_set_new(o, "keyAlgorithm", json_string(r->key_alg));
	json_object_set_new(o, "keyBits", json_integer(r->key_bits));
	json_object_set_new(o, "signatureAlgorithm", json_string(r->sig_alg));
	set_time(o, "createdAt", r->created_at);
	if (r->status == CF_CERT_REVOKED) {
		set_time(o, "revokedAt", r->revoked_at);
		json_object_set_new(o, "revokeReason", json_string(cf_pki_reason_name(r->revoke_reason)));
	}
	if (with_pem && r->pem != NULL)
		json_object_set_new(o, "pem", json_string(r->pem));
	return o;
}

json_t *
cf_json_ca(const cf_ca_rec *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "role", json_string(r->role == CF_CA_ROOT ? "root" : "intermediate"));
	json_object_set_new(o, "status", json_string(cf_cert_status_name(r->status)));
	json_object_set_new(o, "issuer", json_boolean(r->is_issuer));
	json_object_set_new(o, "parentId", r->parent_id[0] ? json_string(r->parent_id) : json_null());
	json_object_set_new(o, "serial", json_string(r->serial));
	set_time(o, "notBefore", r->not_before);
	set_time(o, "notAfter", r->not_after);
	json_object_set_new(o, "keyAlgorithm", json_string(r->key_alg));
	json_object_set_new(o, "crlNumber", json_integer(r->crl_number));
	if (r->status == CF_CERT_REVOKED) {
		set_time(o, "revokedAt", r->revoked_at);
		json_object_set_new(o, "revokeReason", json_string(cf_pki_reason_name(r->revoke_reason)));
	}
	return o;
}

json_t *
cf_json_event(const cf_event_rec *r)
{
	json_t *o = json_object(), *detail;
	json_error_t err;

	json_object_set_new(o, "seq", json_integer(r->seq));
	set_time(o, "time", r->ts);
	json_object_set_new(o, "type", json_string(r->type));
	json_object_set_new(o, "subject", json_string(r->subject));
	/* A detail that does not parse (a tampered row) is shown as it is stored. */
	detail = json_loads(r->detail ? r->detail : "{}", 0, &err);
	json_object_set_new(o, "detail", detail ? detail : json_string(r->detail));
	json_object_set_new(o, "prevHash", json_string(r->prev_hash));
	json_object_set_new(o, "hash", json_string(r->hash));
	return o;
}

json_t *
cf_json_conn(const cf_conn_rec *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(r->id));
	json_object_set_new(o, "ref", json_string(r->ref));
	json_object_set_new(o, "clientId", json_string(r->client_id));
	json_object_set_new(o, "principal", json_string(r->principal));
	json_object_set_new(o, "kind", json_string(r->kind));
	json_object_set_new(o, "peer", json_string(r->peer));
	set_time(o, "connectedAt", r->connected_at);
	if (r->disconnected_at != 0) {
		set_time(o, "disconnectedAt", r->disconnected_at);
		json_object_set_new(o, "reason", json_string(r->reason));
	}
	return o;
}

/* A stored attributes text as an object ({} if it does not parse: never fails a listing). */
static json_t *
attributes(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text ? text : "{}", 0, &err);

	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return json_object();
	}
	return j;
}

static int
oom(void)
{
	cf_error_set("out of memory");
	return CF_ERROR;
}

int
cf_json_things(json_t **out, cf_store *st)
{
	cf_thing_rec *things = NULL;
	cf_cert_rec *certs = NULL;
	cf_cert_filter f = { .status = CF_CERT_ACTIVE };
	size_t n = 0, n_certs = 0, i;
	json_t *arr = NULL, *active = NULL, *o, *id;
	int r;

	if ((r = cf_store_thing_list(st, &things, &n)) != 0 ||
	    (r = cf_store_cert_list(st, &certs, &n_certs, &f)) != 0)
		goto out;
	/* thing -> its first ACTIVE certificate, so the listing is one pass, not things x certs. */
	if ((active = json_object()) == NULL || (arr = json_array()) == NULL) {
		r = oom();
		goto out;
	}
	for (i = 0; i < n_certs; i++)
		if (certs[i].thing[0] != '\0' && json_object_get(active, certs[i].thing) == NULL)
			json_object_set_new(active, certs[i].thing, json_string(certs[i].id));
	for (i = 0; i < n; i++) {
		if ((o = json_object()) == NULL || json_array_append_new(arr, o) != 0) {
			r = oom();
			goto out;
		}
		id = json_object_get(active, things[i].name);
		json_object_set_new(o, "name", json_string(things[i].name));
		json_object_set_new(o, "attributes", attributes(things[i].attributes));
		json_object_set(o, "activeCertificate", id ? id : json_null());
	}
	*out = arr;
	arr = NULL;
out:
	json_decref(arr);
	json_decref(active);
	cf_thing_recs_free(things, n);
	cf_cert_recs_free(certs, n_certs);
	return r;
}

int
cf_json_thing(json_t **out, cf_store *st, const char *name)
{
	cf_thing_rec t;
	cf_group_rec *groups = NULL;
	cf_cert_rec *certs = NULL;
	cf_cert_filter f = { .status = -1, .thing = name };
	char **members = NULL;
	size_t n_groups = 0, n_certs = 0, n_members = 0, i, k;
	json_t *o = NULL, *garr, *carr;
	int r;

	memset(&t, 0, sizeof(t));
	if ((r = cf_store_thing_get(st, &t, name)) != 0 ||
	    (r = cf_store_group_list(st, &groups, &n_groups)) != 0 ||
	    (r = cf_store_cert_list(st, &certs, &n_certs, &f)) != 0)
		goto out;
	if ((o = json_object()) == NULL || (garr = json_array()) == NULL ||
	    (carr = json_array()) == NULL) {
		r = oom();
		goto out;
	}
	json_object_set_new(o, "name", json_string(t.name));
	json_object_set_new(o, "attributes", attributes(t.attributes));
	json_object_set_new(o, "groups", garr);
	json_object_set_new(o, "certificates", carr);
	/* Dynamic groups have no stored membership: ask each group (few groups, many things). */
	for (i = 0; i < n_groups; i++) {
		if ((r = cf_store_group_members(st, &members, &n_members, groups[i].name)) != 0)
			goto out;
		for (k = 0; k < n_members; k++)
			if (strcmp(members[k], t.name) == 0)
				json_array_append_new(garr, json_string(groups[i].name));
		cf_strv_free(members, n_members);
		members = NULL;
		n_members = 0;
	}
	for (i = 0; i < n_certs; i++)
		json_array_append_new(carr, cf_json_cert(&certs[i], 0));
	*out = o;
	o = NULL;
out:
	json_decref(o);
	cf_thing_rec_clear(&t);
	cf_group_recs_free(groups, n_groups);
	cf_cert_recs_free(certs, n_certs);
	return r;
}
