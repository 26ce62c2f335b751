/*
 * cf_json — JSON views of registry records (jansson), shared by the CLI's
 * --json output and certfleetd's REST API. Each returns a new reference
 * (json_decref) or NULL on allocation failure.
 */
#ifndef CF_JSON_H
#define CF_JSON_H

#include <jansson.h>

#include "cf_store.h"

json_t *cf_json_cert(const cf_cert_rec *r, int with_pem);
json_t *cf_json_ca(const cf_ca_rec *r);
json_t *cf_json_event(const cf_event_rec *r);
json_t *cf_json_conn(const cf_conn_rec *r);

/*
 * Things, read from the store: every thing as {name, attributes,
 * activeCertificate} (one pass over things and ACTIVE certificates), and
 * one thing as {name, attributes, groups, certificates}. 0, or the
 * store's error (CF_ENOTFOUND for an unknown thing).
 */
int cf_json_things(json_t **out, cf_store *st) CF_MUST_CHECK;
int cf_json_thing(json_t **out, cf_store *st, const char *name) CF_MUST_CHECK;

#endif
