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

#endif
