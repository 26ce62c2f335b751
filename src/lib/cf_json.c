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
