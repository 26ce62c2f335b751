/*
 * certfleetd's HTTP API (evhttp on the daemon's reactor), docs/certfleetd.md.
 *
 * Owns the evhttp server bound to api_host:api_port (loopback only) and the
 * route table: {method, path pattern, handler}. Path parameters are
 * validated before any handler runs ({name}: cf_name_valid, {id}: 1 to 64
 * hex characters); handlers call the library and answer with the JSON
 * shapes of docs/cli.md (cf_json.c). Errors are {"error": "..."} with 400,
 * 404, 405, 409 or 500; request bodies are limited to 64 KiB.
 */
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <jansson.h>

#include "certfleetd.h"
#include "cf_jobspec.h"
#include "cf_json.h"
#include "cf_util.h"

#define BODY_MAX (64 * 1024)
#define HEADERS_MAX (16 * 1024)
#define PATH_SEGMENTS 6
#define CONN_LIST_DEFAULT 1000
#define CONN_LIST_MAX 100000

struct cfd_api {
	struct evhttp *http;
};

typedef struct {
	cfd *d;
	struct evhttp_request *req;
	const char *param;             /* the {name} or {id} of the path, or NULL */
	struct evkeyvalq query;
} api_req;

/* ---- replies ------------------------------------------------------------------------ */

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	default: return "other";
	}
}

static void
reply(api_req *a, int code, json_t *j)
{
	struct evbuffer *buf = evbuffer_new();
	char *text = NULL;

	if (j != NULL)
		text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (buf == NULL || text == NULL) {
		code = 500;
		free(text);
		text = strdup("{\"error\":\"out of memory\"}");
	}
	evhttp_add_header(evhttp_request_get_output_headers(a->req), "Content-Type", "application/json");
	if (buf != NULL && text != NULL) {
		evbuffer_add(buf, text, strlen(text));
		evbuffer_add(buf, "\n", 1);
	}
	evhttp_send_reply(a->req, code, code == 200 ? "OK" : NULL, buf);
	cfd_metrics_http(a->d, code);
	cf_log(code >= 500 ? CF_LOG_WARN : CF_LOG_DEBUG, "http", "method=%s path=%s code=%d",
	    method_name(evhttp_request_get_command(a->req)), evhttp_request_get_uri(a->req), code);
	if (buf)
		evbuffer_free(buf);
	free(text);
	json_decref(j);
}

static void reply_error(api_req *a, int code, const char *fmt, ...) CF_PRINTF(3, 4);

static void
reply_error(api_req *a, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply(a, code, json_pack("{s:s}", "error", msg));
}

/* A library failure: the code a caller can act on, and cf_error_last() as the message. */
static void
reply_lib_error(api_req *a, int r)
{
	int code;

	switch (r) {
	case CF_ENOTFOUND: code = 404; break;
	case CF_EINVAL: code = 400; break;
	case CF_ESTATE:
	case CF_EEXISTS:
	case CF_EREJECTED: code = 409; break;
	default: code = 500; break;
	}
	reply_error(a, code, "%s", cf_error_last());
}

/* ---- handlers ------------------------------------------------------------------------ */

static void
h_healthz(api_req *a)
{
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int db_ok;
	const char *mqtt = cfd_mqtt_connected(a->d) ? "connected" : "disconnected";

	/* A cheap primary-key read proves the database answers. */
	db_ok = cf_store_event_list_after(cf_ca_store(a->d->ca), &ev, &n, INT64_MAX - 1, 1) == 0;
	cf_event_recs_free(ev, n);
	if (!db_ok) {
		reply(a, 503, json_pack("{s:s, s:s, s:s, s:s}", "status", "error", "mqtt", mqtt,
		    "database", "error", "error", cf_error_last()));
		return;
	}
	reply(a, 200, json_pack("{s:s, s:s, s:s}", "status", "ok", "mqtt", mqtt, "database", "ok"));
}

static void
h_metrics(api_req *a)
{
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL || cfd_metrics_render(a->d, buf) != 0) {
		if (buf)
			evbuffer_free(buf);
		reply_error(a, 500, "%s", cf_error_last());
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(a->req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(a->req, 200, "OK", buf);
	cfd_metrics_http(a->d, 200);
	evbuffer_free(buf);
}

static void
h_things(api_req *a)
{
	json_t *arr = NULL;
	int r;

	if ((r = cf_json_things(&arr, cf_ca_store(a->d->ca))) != 0)
		reply_lib_error(a, r);
	else
		reply(a, 200, arr);
}

static void
h_thing(api_req *a)
{
	json_t *o = NULL;
	int r;

	if ((r = cf_json_thing(&o, cf_ca_store(a->d->ca), a->param)) != 0)
		reply_lib_error(a, r);
	else
		reply(a, 200, o);
}

static void
h_certs(api_req *a)
{
	cf_cert_rec *certs = NULL;
	cf_cert_filter f = { .status = -1 };
	cf_cert_status s;
	const char *status = evhttp_find_header(&a->query, "status");
	const char *thing = evhttp_find_header(&a->query, "thing");
	size_t n = 0, i;
	json_t *arr;
	int r;

	if (status != NULL) {
		if (cf_cert_status_parse(&s, status) != 0) {
			reply_error(a, 400, "%s", cf_error_last());
			return;
		}
		f.status = (int)s;
	}
	if (thing != NULL) {
		if (!cf_name_valid("thing", thing)) {
			reply_error(a, 400, "%s", cf_error_last());
			return;
		}
		f.thing = thing;
	}
	if ((r = cf_store_cert_list(cf_ca_store(a->d->ca), &certs, &n, &f)) != 0) {
		reply_lib_error(a, r);
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, cf_json_cert(&certs[i], 0));
	cf_cert_recs_free(certs, n);
	reply(a, 200, arr);
}

static void
h_cert(api_req *a)
{
	cf_cert_rec c;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = cf_store_cert_get(cf_ca_store(a->d->ca), &c, a->param)) != 0) {
		reply_lib_error(a, r);
		return;
	}
	reply(a, 200, cf_json_cert(&c, 1));
	cf_cert_rec_clear(&c);
}

static void
h_cert_revoke(api_req *a)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(a->req);
	size_t len = evbuffer_get_length(in);
	json_t *body = NULL, *v;
	json_error_t err;
	cf_cert_rec c;
	int reason = 0, r;

	memset(&c, 0, sizeof(c));
	if (len > BODY_MAX) {
		reply_error(a, 413, "request body larger than %d bytes", BODY_MAX);
		goto out;
	}
	if (len > 0) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &err);
		if (body == NULL || !json_is_object(body)) {
			reply_error(a, 400, "request body is not a JSON object%s%s", body ? "" : ": ",
			    body ? "" : err.text);
			goto out;
		}
		if ((v = json_object_get(body, "reason")) != NULL) {
			if (!json_is_string(v) || cf_pki_reason_parse(&reason, json_string_value(v)) != 0) {
				reply_error(a, 400, "%s", json_is_string(v) ? cf_error_last() :
				    "'reason' must be a string");
				goto out;
			}
		}
	}
	if ((r = cf_store_cert_get(cf_ca_store(a->d->ca), &c, a->param)) != 0) {
		reply_lib_error(a, r);
		goto out;
	}
	/* Revoking a revoked certificate changes nothing (as in the CLI): 200 with it as it is. */
	if (c.status != CF_CERT_REVOKED) {
		cf_cert_rec_clear(&c);
		if ((r = cf_ca_revoke_cert(a->d->ca, a->param, reason)) != 0 ||
		    (r = cf_store_cert_get(cf_ca_store(a->d->ca), &c, a->param)) != 0) {
			reply_lib_error(a, r);
			goto out;
		}
		cf_log(CF_LOG_INFO, "certificate revoked", "id=%s thing=%s reason=%s source=api", c.id,
		    c.thing, cf_pki_reason_name(reason));
	}
	reply(a, 200, cf_json_cert(&c, 0));
out:
	cf_cert_rec_clear(&c);
	json_decref(body);
}

static int
parse_bool(int *out, const char *s)
{
	if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0) {
		*out = 1;
		return 0;
	}
	if (strcmp(s, "0") == 0 || strcmp(s, "false") == 0) {
		*out = 0;
		return 0;
	}
	return CF_EINVAL;
}

static void
h_connections(api_req *a)
{
	const char *client_id = evhttp_find_header(&a->query, "clientId");
	const char *open = evhttp_find_header(&a->query, "open");
	const char *limit = evhttp_find_header(&a->query, "limit");
	cf_conn_rec *conns = NULL;
	size_t n = 0, i;
	int open_only = 0, r;
	long lim = CONN_LIST_DEFAULT;
	char *end;
	json_t *arr;

	if (client_id != NULL && (client_id[0] == '\0' || strlen(client_id) > 255)) {
		reply_error(a, 400, "clientId must be 1 to 255 bytes");
		return;
	}
	if (open != NULL && parse_bool(&open_only, open) != 0) {
		reply_error(a, 400, "open must be 1, 0, true or false");
		return;
	}
	if (limit != NULL) {
		lim = strtol(limit, &end, 10);
		if (*limit == '\0' || *end != '\0' || lim < 1 || lim > CONN_LIST_MAX) {
			reply_error(a, 400, "limit must be a whole number from 1 to %d", CONN_LIST_MAX);
			return;
		}
	}
	if ((r = cf_store_connection_list(cf_ca_store(a->d->ca), &conns, &n, client_id, open_only,
	    (size_t)lim)) != 0) {
		reply_lib_error(a, r);
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, cf_json_conn(&conns[i]));
	cf_conn_recs_free(conns, n);
	reply(a, 200, arr);
}

/* ---- jobs (docs/certfleetd.md "Jobs and rotation") ------------------------------------- */

/* A job as JSON: its record, counts per status, targets and (detail) its executions. */
static int
job_json(json_t **out, cf_store *st, const cf_job_rec *job, int detail)
{
	int64_t counts[CF_EXEC__COUNT];
	cf_job_target_stats ts;
	cf_exec_rec *ex = NULL;
	size_t n = 0, i;
	json_t *o, *c, *arr;
	char t[32];
	int r, s;

	if ((r = cf_store_exec_counts(st, counts, job->id)) != 0 ||
	    (r = cf_store_job_target_stats(st, &ts, job->id, 0)) != 0)
		return r;
	o = json_object();
	json_object_set_new(o, "jobId", json_string(job->id));
	json_object_set_new(o, "operation", json_string(job->operation));
	json_object_set_new(o, "status", json_string(cf_job_state_name(job->status)));
	json_object_set_new(o, "targetSelection", json_string(
	    job->selection == CF_JOB_SELECTION_CONTINUOUS ? "CONTINUOUS" : "SNAPSHOT"));
	json_object_set_new(o, "document", json_loads(job->document, 0, NULL));
	json_object_set_new(o, "targets", json_loads(job->targets, 0, NULL));
	json_object_set_new(o, "config", json_loads(job->config ? job->config : "{}", 0, NULL));
	if (job->comment != NULL)
		json_object_set_new(o, "comment", json_string(job->comment));
	json_object_set_new(o, "forceCanceled", json_boolean(job->force_canceled));
	cf_time_format(t, sizeof(t), job->created_at);
	json_object_set_new(o, "createdAt", json_string(t));
	cf_time_format(t, sizeof(t), job->updated_at);
	json_object_set_new(o, "updatedAt", json_string(t));
	if (job->completed_at != 0) {
		cf_time_format(t, sizeof(t), job->completed_at);
		json_object_set_new(o, "completedAt", json_string(t));
	}
	c = json_object();
	for (s = 0; s < CF_EXEC__COUNT; s++)
		json_object_set_new(c, cf_proto_status_name((cf_exec_status)s), json_integer(counts[s]));
	json_object_set_new(o, "counts", c);
	json_object_set_new(o, "targetCount", json_pack("{s:I, s:I, s:I, s:I}", "total",
	    (json_int_t)ts.total, "unreleased", (json_int_t)ts.unreleased, "released",
	    (json_int_t)ts.released, "removed", (json_int_t)ts.removed));
	if (detail) {
		if ((r = cf_store_exec_list(st, &ex, &n, job->id, -1, 0)) != 0) {
			json_decref(o);
			return r;
		}
		arr = json_array();
		for (i = 0; i < n; i++) {
			json_t *e = json_object();

			json_object_set_new(e, "thing", json_string(ex[i].thing));
			json_object_set_new(e, "executionNumber", json_integer(ex[i].execution_number));
			json_object_set_new(e, "status", json_string(cf_proto_status_name(ex[i].status)));
			json_object_set_new(e, "versionNumber", json_integer(ex[i].version));
			json_object_set_new(e, "statusDetails",
			    json_loads(ex[i].status_details ? ex[i].status_details : "{}", 0, NULL));
			cf_time_format(t, sizeof(t), ex[i].queued_at);
			json_object_set_new(e, "queuedAt", json_string(t));
			if (ex[i].started_at != 0) {
				cf_time_format(t, sizeof(t), ex[i].started_at);
				json_object_set_new(e, "startedAt", json_string(t));
			}
			cf_time_format(t, sizeof(t), ex[i].last_updated_at);
			json_object_set_new(e, "lastUpdatedAt", json_string(t));
			json_array_append_new(arr, e);
		}
		cf_exec_recs_free(ex, n);
		json_object_set_new(o, "executions", arr);
	}
	*out = o;
	return 0;
}

static void
h_jobs(api_req *a)
{
	cf_store *st = cf_ca_store(a->d->ca);
	cf_job_rec *jobs = NULL;
	size_t n = 0, i;
	json_t *arr = NULL, *o;
	int r;

	if ((r = cf_store_job_list(st, &jobs, &n, -1)) != 0) {
		reply_lib_error(a, r);
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++) {
		if ((r = job_json(&o, st, &jobs[i], 0)) != 0) {
			json_decref(arr);
			cf_job_recs_free(jobs, n);
			reply_lib_error(a, r);
			return;
		}
		json_array_append_new(arr, o);
	}
	cf_job_recs_free(jobs, n);
	reply(a, 200, arr);
}

/* Replies with the job's JSON (detail) and code. */
static void
reply_job(api_req *a, const char *id, int code)
{
	cf_store *st = cf_ca_store(a->d->ca);
	cf_job_rec job;
	json_t *o = NULL;
	int r;

	memset(&job, 0, sizeof(job));
	if ((r = cf_store_job_get(st, &job, id)) != 0 || (r = job_json(&o, st, &job, 1)) != 0)
		reply_lib_error(a, r);
	else
		reply(a, code, o);
	cf_job_rec_clear(&job);
}

static void
h_job(api_req *a)
{
	reply_job(a, a->param, 200);
}

/* The request body as a JSON object, or a 400 answered (NULL). */
static json_t *
body_object(api_req *a, int empty_ok)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(a->req);
	size_t len = evbuffer_get_length(in);
	json_error_t err;
	json_t *body;

	if (len == 0 && empty_ok)
		return json_object();
	if (len == 0 || len > BODY_MAX) {
		reply_error(a, 400, "the request body must be a JSON object of at most %d bytes", BODY_MAX);
		return NULL;
	}
	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &err);
	if (body == NULL || !json_is_object(body)) {
		reply_error(a, 400, "request body is not a JSON object%s%s", body ? "" : ": ",
		    body ? "" : err.text);
		json_decref(body);
		return NULL;
	}
	return body;
}

/* An optional string member: 0, or a 400 answered. */
static int
opt_string(api_req *a, const char **out, json_t *body, const char *key)
{
	json_t *v = json_object_get(body, key);

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_is_string(v)) {
		reply_error(a, 400, "'%s' must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static const char *const job_members[] = {
	"jobId", "targets", "things", "targetSelection", "keyAlgorithm", "signingAlgorithm", "config",
	"comment",
};

/*
 * POST /v1/jobs {"jobId"?, "targets": {...} (or the shorthand "things": [...]),
 * "targetSelection"?, "keyAlgorithm", "signingAlgorithm"?, "config"?,
 * "comment"?} (docs/certfleetd.md): validated with cf_jobspec, the targets
 * resolved now and stored with the job in one transaction (nothing is
 * created if anything is wrong), then the engine releases executions under
 * the rollout — the first ones before this answers.
 */
static void
h_job_create(api_req *a)
{
	cf_store *st = cf_ca_store(a->d->ca);
	json_t *body = NULL, *v;
	const char *key, *job_id, *kname, *sname, *sel, *comment;
	cf_jobspec_targets tg;
	cf_jobspec_config cfg;
	cfd_rotation_job spec;
	char *tg_text = NULL, *cfg_text = NULL, *cfg_in = NULL, *tg_in = NULL, **things = NULL;
	char created[CF_PROTO_JOB_ID_MAX + 1];
	size_t n_things = 0;
	int64_t now = cf_time_now();
	cf_key_alg ka;
	cf_sig_alg sa;
	int r;

	memset(&tg, 0, sizeof(tg));
	if ((body = body_object(a, 0)) == NULL)
		goto out;
	json_object_foreach(body, key, v) {
		if (cf_name_index(job_members, sizeof(job_members) / sizeof(job_members[0]), key, 0) < 0) {
			reply_error(a, 400, "unknown member '%s'", key);
			goto out;
		}
	}
	if (opt_string(a, &job_id, body, "jobId") != 0 || opt_string(a, &kname, body, "keyAlgorithm") != 0 ||
	    opt_string(a, &sname, body, "signingAlgorithm") != 0 ||
	    opt_string(a, &sel, body, "targetSelection") != 0 ||
	    opt_string(a, &comment, body, "comment") != 0)
		goto out;
	if (job_id != NULL && !cf_proto_job_id_valid(job_id)) {
		reply_error(a, 400, "'jobId': %s", cf_error_last());
		goto out;
	}
	if (cf_alg_validate(&ka, &sa, kname, sname) != 0) {
		reply_error(a, 400, "%s (keyAlgorithm '%s', signingAlgorithm '%s')", cf_error_last(),
		    kname ? kname : "", sname ? sname : "(default)");
		goto out;
	}
	if (sel != NULL && strcmp(sel, "SNAPSHOT") != 0 && strcmp(sel, "CONTINUOUS") != 0) {
		reply_error(a, 400, "'targetSelection' must be SNAPSHOT or CONTINUOUS, not '%s'", sel);
		goto out;
	}
	if ((json_object_get(body, "targets") != NULL) == (json_object_get(body, "things") != NULL)) {
		reply_error(a, 400, "give 'targets' (or the shorthand 'things'), not both");
		goto out;
	}
	/* "things": [...] is {"targets": {"things": [...]}}. */
	v = json_object_get(body, "targets");
	if (v == NULL) {
		v = json_pack("{s:O}", "things", json_object_get(body, "things"));
		tg_in = v ? json_dumps(v, JSON_COMPACT) : NULL;
		json_decref(v);
	} else {
		tg_in = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	v = json_object_get(body, "config");
	cfg_in = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (tg_in == NULL || (v != NULL && cfg_in == NULL)) {
		reply_error(a, 500, "out of memory");
		goto out;
	}
	if (cf_jobspec_targets_parse(&tg, tg_in) != 0 || cf_jobspec_targets_dump(&tg_text, &tg) != 0) {
		reply_error(a, 400, "%s", cf_error_last());
		goto out;
	}
	if (cf_jobspec_config_parse(&cfg, cfg_in) != 0 || cf_jobspec_config_dump(&cfg_text, &cfg) != 0) {
		reply_error(a, 400, "%s", cf_error_last());
		goto out;
	}
	if ((r = cf_jobspec_targets_resolve(&things, &n_things, st, &tg, cf_ca_policy(a->d->ca),
	    now)) != 0) {
		reply_lib_error(a, r);
		goto out;
	}
	if (n_things == 0 && (sel == NULL || strcmp(sel, "SNAPSHOT") == 0)) {
		reply_error(a, 400, "the targets select no thing (a CONTINUOUS job may start empty)");
		goto out;
	}
	memset(&spec, 0, sizeof(spec));
	spec.job_id = job_id;
	spec.targets_json = tg_text;
	spec.config_json = cfg_text;
	spec.config = &cfg;
	spec.selection = sel && strcmp(sel, "CONTINUOUS") == 0 ? CF_JOB_SELECTION_CONTINUOUS :
	    CF_JOB_SELECTION_SNAPSHOT;
	spec.key_alg = ka;
	spec.sig_alg = sa;
	spec.comment = comment;
	spec.source = "api";
	if ((r = cfd_jobs_insert_rotation(a->d, created, &spec, (const char *const *)things,
	    n_things)) != 0) {
		reply_lib_error(a, r);
		goto out;
	}
	reply_job(a, created, 201);
out:
	free(tg_text);
	free(cfg_text);
	free(tg_in);
	free(cfg_in);
	cf_strv_free(things, n_things);
	cf_jobspec_targets_clear(&tg);
	json_decref(body);
}

/* POST /v1/jobs/{id}/cancel {"force"?: bool, "comment"?: string}. */
static void
h_job_cancel(api_req *a)
{
	json_t *body, *v;
	const char *key, *comment;
	int r, force = 0;

	if ((body = body_object(a, 1)) == NULL)
		return;
	json_object_foreach(body, key, v) {
		if (strcmp(key, "force") != 0 && strcmp(key, "comment") != 0) {
			reply_error(a, 400, "unknown member '%s'", key);
			goto out;
		}
	}
	v = json_object_get(body, "force");
	if (v != NULL && !json_is_boolean(v)) {
		reply_error(a, 400, "'force' must be true or false");
		goto out;
	}
	force = json_is_true(v);
	if (opt_string(a, &comment, body, "comment") != 0)
		goto out;
	if (comment != NULL && (strlen(comment) > CF_JOB_COMMENT_MAX ||
	    strpbrk(comment, "\n\r\t") != NULL)) {
		reply_error(a, 400, "'comment' must be one line of at most %d bytes", CF_JOB_COMMENT_MAX);
		goto out;
	}
	if ((r = cfd_engine_cancel(a->d, a->param, force, comment)) != 0) {
		reply_lib_error(a, r);
		goto out;
	}
	reply_job(a, a->param, 200);
out:
	json_decref(body);
}

/* ---- notifications (docs/notifications.md) --------------------------------------------- */

#define NOTIFY_LIST_DEFAULT 100
#define NOTIFY_LIST_MAX 10000

static json_t *
notify_json(const cf_notify_rec *r)
{
	json_t *o = json_object();
	char t[32];

	json_object_set_new(o, "id", json_integer((json_int_t)r->id));
	json_object_set_new(o, "sink", json_string(r->sink));
	json_object_set_new(o, "kind", json_string(r->kind));
	json_object_set_new(o, "state", json_string(cf_notify_state_name(r->state)));
	json_object_set_new(o, "attempts", json_integer(r->attempts));
	cf_time_format(t, sizeof(t), r->created_at);
	json_object_set_new(o, "createdAt", json_string(t));
	cf_time_format(t, sizeof(t), r->updated_at);
	json_object_set_new(o, "updatedAt", json_string(t));
	if (r->state == CF_NOTIFY_PENDING) {
		cf_time_format(t, sizeof(t), r->next_at);
		json_object_set_new(o, "nextAttemptAt", json_string(t));
	}
	if (r->last_error[0] != '\0')
		json_object_set_new(o, "lastError", json_string(r->last_error));
	/* The payload holds no secret (the webhook secret only signs it). */
	json_object_set_new(o, "payload", r->payload ? json_loads(r->payload, 0, NULL) : json_null());
	return o;
}

/* GET /v1/notifications?state=PENDING|DELIVERED|GAVE_UP&limit=N: outbox rows, newest first. */
static void
h_notifications(api_req *a)
{
	const char *state = evhttp_find_header(&a->query, "state");
	const char *limit = evhttp_find_header(&a->query, "limit");
	cf_notify_rec *recs = NULL;
	size_t n = 0, i;
	long lim = NOTIFY_LIST_DEFAULT;
	char *end;
	int st = -1, s, r;
	json_t *arr;

	if (state != NULL) {
		for (s = 0; s < CF_NOTIFY__COUNT; s++)
			if (strcmp(state, cf_notify_state_name((cf_notify_state)s)) == 0)
				st = s;
		if (st < 0) {
			reply_error(a, 400, "state must be PENDING, DELIVERED or GAVE_UP");
			return;
		}
	}
	if (limit != NULL) {
		lim = strtol(limit, &end, 10);
		if (*limit == '\0' || *end != '\0' || lim < 1 || lim > NOTIFY_LIST_MAX) {
			reply_error(a, 400, "limit must be a whole number from 1 to %d", NOTIFY_LIST_MAX);
			return;
		}
	}
	if ((r = cf_store_notify_list(cf_ca_store(a->d->ca), &recs, &n, st, (size_t)lim)) != 0) {
		reply_lib_error(a, r);
		return;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, notify_json(&recs[i]));
	cf_notify_recs_free(recs, n);
	reply(a, 200, arr);
}

/*
 * POST /v1/notifications/test: queues a "notification.test" for every
 * configured sink and answers 202 {"kind", "ids": [outbox ids]}. The ids are
 * the rows this transaction added (only the reactor inserts into the outbox).
 */
static void
h_notification_test(api_req *a)
{
	cf_store *st = cf_ca_store(a->d->ca);
	cf_notify_rec *before = NULL, *after = NULL;
	size_t nb = 0, na = 0, i;
	int64_t last = 0;
	cfd_notice nt;
	json_t *ids = NULL;
	int r, began = 0;

	if (a->d->notify == NULL) {
		reply_error(a, 409, "no notification sink is configured (set notify_webhook_url or "
		    "notify_exec in certfleet.conf)");
		return;
	}
	memset(&nt, 0, sizeof(nt));
	nt.kind = "notification.test";
	nt.reason = "sent by POST /v1/notifications/test";
	if ((r = cf_store_begin(st)) != 0)
		goto fail;
	began = 1;
	if ((r = cf_store_notify_list(st, &before, &nb, -1, 1)) != 0)
		goto fail;
	last = nb > 0 ? before[0].id : 0;
	if ((r = cfd_notify(a->d, &nt)) != 0 ||
	    (r = cf_store_notify_list(st, &after, &na, -1, CF_NOTIFY_SINK_MAX)) != 0 ||
	    (r = cf_store_commit(st)) != 0)
		goto fail;
	began = 0;
	cfd_notify_wake(a->d);
	ids = json_array();
	for (i = na; i > 0; i--)
		if (after[i - 1].id > last)
			json_array_append_new(ids, json_integer((json_int_t)after[i - 1].id));
	cf_log(CF_LOG_INFO, "test notification queued", "rows=%zu source=api", json_array_size(ids));
	reply(a, 202, json_pack("{s:s, s:o}", "kind", nt.kind, "ids", ids));
	goto out;
fail:
	if (began)
		cf_store_rollback(st);
	reply_lib_error(a, r);
out:
	cf_notify_recs_free(before, nb);
	cf_notify_recs_free(after, na);
}

/* ---- audits (docs/audit.md "In certfleetd") --------------------------------------------- */

/* "checks" / "params": a string "A,B" or an array of strings, into o. 0, or a 400 answered. */
static int
audit_list_member(api_req *a, cf_audit_opts *o, json_t *body, const char *key)
{
	json_t *v = json_object_get(body, key), *e;
	char buf[4096] = "";
	size_t i, len = 0;
	int r;

	if (v == NULL)
		return 0;
	if (json_is_string(v)) {
		snprintf(buf, sizeof(buf), "%s", json_string_value(v));
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, e) {
			if (!json_is_string(e) || len + json_string_length(e) + 2 >= sizeof(buf)) {
				reply_error(a, 400, "'%s' must be strings", key);
				return -1;
			}
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "," : "",
			    json_string_value(e));
		}
	} else {
		reply_error(a, 400, "'%s' must be a string or an array of strings", key);
		return -1;
	}
	if (strcmp(key, "checks") == 0) {
		r = cf_audit_opts_select(o, buf);
	} else {
		char *p, *save = NULL;

		r = 0;
		for (p = strtok_r(buf, ",", &save); p != NULL && r == 0; p = strtok_r(NULL, ",", &save))
			r = cf_audit_opts_param(o, p);
	}
	if (r != 0) {
		reply_error(a, 400, "'%s': %s", key, cf_error_last());
		return -1;
	}
	return 0;
}

/*
 * POST /v1/audits {"checks"?, "params"?, "mitigate"?: bool (true)}: an audit
 * now (trigger on_demand) with certfleet.conf's audit settings, then the
 * mitigation rules unless mitigate is false. 201 {"auditId", "findings",
 * "suppressed", "bySeverity", "actions": [...]}.
 */
static void
h_audit_run(api_req *a)
{
	static const char *const members[] = { "checks", "params", "mitigate" };
	json_t *body, *v, *actions = NULL, *sev;
	const char *key;
	cf_audit_opts o;
	cf_audit_result res;
	size_t i;
	int r;

	if ((body = body_object(a, 1)) == NULL)
		return;
	json_object_foreach(body, key, v) {
		if (cf_name_index(members, sizeof(members) / sizeof(members[0]), key, 0) < 0) {
			reply_error(a, 400, "unknown member '%s'", key);
			goto out;
		}
	}
	v = json_object_get(body, "mitigate");
	if (v != NULL && !json_is_boolean(v)) {
		reply_error(a, 400, "'mitigate' must be true or false");
		goto out;
	}
	o = *cfd_audit_default_opts(a->d);
	o.trigger = "on_demand";
	if (audit_list_member(a, &o, body, "checks") != 0 ||
	    audit_list_member(a, &o, body, "params") != 0)
		goto out;
	if ((actions = json_array()) == NULL) {
		reply_error(a, 500, "out of memory");
		goto out;
	}
	if ((r = cfd_audit_run(a->d, &res, &o, v == NULL || json_is_true(v) ? actions : NULL,
	    v == NULL || json_is_true(v))) != 0) {
		reply_lib_error(a, r);
		goto out;
	}
	sev = json_object();
	for (i = 0; i < CF_SEV__COUNT; i++)
		json_object_set_new(sev, cf_severity_name((cf_severity)i),
		    json_integer((json_int_t)res.by_severity[i]));
	reply(a, 201, json_pack("{s:I, s:I, s:I, s:o, s:O}", "auditId", (json_int_t)res.audit_id,
	    "findings", (json_int_t)res.findings, "suppressed", (json_int_t)res.suppressed,
	    "bySeverity", sev, "actions", actions));
out:
	json_decref(actions);
	json_decref(body);
}

/* ---- routing --------------------------------------------------------------------------- */

typedef enum { P_NONE, P_NAME, P_ID, P_JOB } param_kind;

typedef struct {
	enum evhttp_cmd_type method;
	const char *segs[PATH_SEGMENTS]; /* "{}" marks the parameter */
	param_kind param;
	void (*fn)(api_req *a);
} route;

static const route routes[] = {
	{ EVHTTP_REQ_GET, { "healthz" }, P_NONE, h_healthz },
	{ EVHTTP_REQ_GET, { "metrics" }, P_NONE, h_metrics },
	{ EVHTTP_REQ_GET, { "v1", "things" }, P_NONE, h_things },
	{ EVHTTP_REQ_GET, { "v1", "things", "{}" }, P_NAME, h_thing },
	{ EVHTTP_REQ_GET, { "v1", "certificates" }, P_NONE, h_certs },
	{ EVHTTP_REQ_GET, { "v1", "certificates", "{}" }, P_ID, h_cert },
	{ EVHTTP_REQ_POST, { "v1", "certificates", "{}", "revoke" }, P_ID, h_cert_revoke },
	{ EVHTTP_REQ_GET, { "v1", "connections" }, P_NONE, h_connections },
	{ EVHTTP_REQ_GET, { "v1", "jobs" }, P_NONE, h_jobs },
	{ EVHTTP_REQ_POST, { "v1", "jobs" }, P_NONE, h_job_create },
	{ EVHTTP_REQ_GET, { "v1", "jobs", "{}" }, P_JOB, h_job },
	{ EVHTTP_REQ_POST, { "v1", "jobs", "{}", "cancel" }, P_JOB, h_job_cancel },
	{ EVHTTP_REQ_POST, { "v1", "audits" }, P_NONE, h_audit_run },
	{ EVHTTP_REQ_GET, { "v1", "notifications" }, P_NONE, h_notifications },
	{ EVHTTP_REQ_POST, { "v1", "notifications", "test" }, P_NONE, h_notification_test },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* Splits "/a/b/c" into segments (in place). -1 if malformed or too deep. */
static int
split_path(char *path, char **segs, size_t max)
{
	size_t n = 0;
	char *p = path, *slash;

	if (*p != '/')
		return -1;
	p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		if (n == max)
			return -1;
		segs[n++] = p;
		if ((slash = strchr(p, '/')) == NULL)
			break;
		*slash = '\0';
		p = slash + 1;
		if (*p == '\0')
			break; /* one trailing slash is forgiven */
	}
	return (int)n;
}

static int
matches(const route *rt, char **segs, int n, const char **param)
{
	int i;

	for (i = 0; i < PATH_SEGMENTS && rt->segs[i] != NULL; i++) {
		if (i >= n)
			return 0;
		if (strcmp(rt->segs[i], "{}") == 0)
			*param = segs[i];
		else if (strcmp(rt->segs[i], segs[i]) != 0)
			return 0;
	}
	return i == n;
}

static int
valid_id(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return i >= 1 && i <= CF_ID_LEN;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	api_req a;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *raw = uri ? evhttp_uri_get_path(uri) : NULL, *q, *param = NULL;
	char path[512], *segs[PATH_SEGMENTS], allow[32] = "";
	const route *found = NULL;
	int n = -1;
	size_t i;

	memset(&a, 0, sizeof(a));
	a.d = arg;
	a.req = req;
	TAILQ_INIT(&a.query);
	if (method == EVHTTP_REQ_HEAD)
		method = EVHTTP_REQ_GET;
	if (raw != NULL && strlen(raw) < sizeof(path)) {
		memcpy(path, raw, strlen(raw) + 1);
		n = split_path(path, segs, PATH_SEGMENTS);
	}
	if (n < 0) {
		reply_error(&a, 400, "malformed path");
		goto out;
	}
	q = evhttp_uri_get_query(uri);
	if (q != NULL && evhttp_parse_query_str(q, &a.query) != 0) {
		reply_error(&a, 400, "malformed query string");
		goto out;
	}
	for (i = 0; i < N_ROUTES; i++) {
		if (!matches(&routes[i], segs, n, &param))
			continue;
		if (routes[i].method == method) {
			found = &routes[i];
			break;
		}
		snprintf(allow, sizeof(allow), "%s", routes[i].method == EVHTTP_REQ_POST ? "POST" : "GET, HEAD");
	}
	if (found == NULL) {
		if (allow[0] != '\0') {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
			reply_error(&a, 405, "method not allowed (use %s)", allow);
		} else {
			reply_error(&a, 404, "no such resource");
		}
		goto out;
	}
	if (found->param == P_NAME && !cf_name_valid("thing", param)) {
		reply_error(&a, 400, "%s", cf_error_last());
		goto out;
	}
	if (found->param == P_ID && !valid_id(param)) {
		reply_error(&a, 400, "'%.80s' is not a certificate id (1 to %d hex characters)", param,
		    CF_ID_LEN);
		goto out;
	}
	if (found->param == P_JOB && !cf_proto_job_id_valid(param)) {
		reply_error(&a, 400, "%s", cf_error_last());
		goto out;
	}
	a.param = param;
	found->fn(&a);
out:
	evhttp_clear_headers(&a.query);
}

int
cfd_api_start(cfd *d)
{
	cfd_api *api = NULL;
	int r = CF_ERROR;

	if ((api = calloc(1, sizeof(*api))) == NULL || (api->http = evhttp_new(d->base)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	/* Every method reaches on_request, which answers 405 itself (evhttp would say 501). */
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_body_size(api->http, BODY_MAX);
	evhttp_set_max_headers_size(api->http, HEADERS_MAX);
	evhttp_set_timeout(api->http, 10);
	evhttp_set_gencb(api->http, on_request, d);
	if (evhttp_bind_socket(api->http, d->api_host, (ev_uint16_t)d->api_port) != 0) {
		cf_error_set("cannot listen on %s:%ld (in use, or not a local address)", d->api_host,
		    d->api_port);
		goto out;
	}
	d->api = api;
	api = NULL;
	r = 0;
out:
	if (api != NULL) {
		if (api->http)
			evhttp_free(api->http);
		free(api);
	}
	return r;
}

void
cfd_api_stop(cfd *d)
{
	if (d->api == NULL)
		return;
	evhttp_free(d->api->http);
	free(d->api);
	d->api = NULL;
}
