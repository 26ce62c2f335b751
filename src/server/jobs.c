/*
 * certfleetd's jobs API and rotation protocol (DESIGN §5-7, docs/protocol.md,
 * docs/certfleetd.md "Jobs and rotation").
 *
 * mqtt.c hands over every device message whose broker stamp verified; this
 * module parses its topic (cf_proto_topic_parse), checks it against the
 * authorization table {request, who may ask, in which state, handler},
 * decodes the payload with cf_proto, applies it to the store and answers on
 * .../accepted or .../rejected with the stable error codes (clientToken
 * echoed). Every rotation check that fails is a rejection with its code, a
 * rotation.rejected event, and no certificate issued. Whatever a request
 * changes (execution, certificates, rotation record) changes in one store
 * transaction, so a crash leaves either all of it or none.
 *
 * Owns nothing long-lived: each request is handled to the end on the
 * reactor thread.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "certfleetd.h"
#include "cf_job.h"
#include "cf_jobspec.h"
#include "cf_keyq.h"
#include "cf_proto.h"
#include "cf_util.h"

#define ROTATE_OPERATION "ROTATE_CERTIFICATE"

/* One request being handled. */
typedef struct {
	cfd *d;
	cf_store *st;
	cf_proto_topic topic;
	const char *principal; /* cf-principal: the sender's TLS certificate id (verified stamp) */
	const char *client_id; /* cf-client-id (verified stamp) */
	const void *payload;
	size_t len;
	char token[CF_PROTO_TOKEN_MAX + 1]; /* clientToken, once decoded */
	cf_exec_rec exec;      /* the execution, for handlers that need one */
	cf_key_alg key_alg;    /* the rotation job's keyAlgorithm (custody_preamble) */
	int has_exec;
} jreq;

/* Who may ask (besides the broker's rule that only the thing uses its topics). */
typedef enum {
	WHO_THING,    /* the thing's own client id, any of its certificates */
	WHO_CUSTODY,  /* the thing, and the handler checks principal and custody signature */
} who_rule;

/* In which state the thing's execution must be before the handler runs. */
typedef enum {
	STATE_ANY,         /* no execution needed ($next/get), or the handler decides (update) */
	STATE_IN_PROGRESS, /* the execution of the request's job exists and is IN_PROGRESS */
} state_rule;

typedef struct {
	cf_proto_kind kind;
	const char *name;
	who_rule who;
	state_rule state;
	void (*fn)(jreq *q);
} jobs_route;

/* ---- replies -------------------------------------------------------------------- */

static void
publish_reply(jreq *q, cf_proto_reply kind, const char *payload)
{
	cf_proto_topic t = q->topic;
	char topic[CF_PROTO_TOPIC_MAX];

	t.reply = kind;
	if (cf_proto_topic_format(topic, sizeof(topic), q->d->topic_prefix, &t) != 0) {
		cf_log(CF_LOG_ERROR, "cannot format reply topic", "error=%s", cf_error_last());
		return;
	}
	if (cfd_mqtt_publish(q->d, topic, payload) != 0)
		cf_log(CF_LOG_ERROR, "cannot publish reply", "topic=%s error=%s", topic, cf_error_last());
}

/* Encodes and publishes a rejection; state (may be NULL) is the execution's current one. */
static void
reject(jreq *q, cf_proto_code code, const cf_exec_rec *state, const char *message)
{
	cf_proto_rejection rej;
	char *text = NULL;

	cf_proto_rejection_set(&rej, code, q->token, "%s", message);
	if (state != NULL) {
		rej.has_state = 1;
		rej.state.status = state->status;
		rej.state.version_number = state->version;
	}
	if (cf_proto_encode_rejection(&text, &rej) != 0) {
		cf_log(CF_LOG_ERROR, "cannot encode rejection", "error=%s", cf_error_last());
		return;
	}
	cf_log(CF_LOG_INFO, "request rejected", "thing=%s request=%s code=%s reason=%s",
	    q->topic.thing, q->topic.job_id[0] ? q->topic.job_id : "-", cf_proto_code_name(code),
	    message);
	publish_reply(q, CF_PROTO_REJECTED, text);
	free(text);
}

/*
 * A refused rotation request: recorded as rotation.rejected {request, jobId,
 * errorCode, reason, principal} in its own transaction (whatever the request
 * had begun was rolled back first), then answered.
 */
static void
reject_rotation(jreq *q, const char *request, const char *job_id, cf_proto_code code,
    const char *fmt, ...) CF_PRINTF(5, 6);

static void
reject_rotation(jreq *q, const char *request, const char *job_id, cf_proto_code code,
    const char *fmt, ...)
{
	char msg[CF_PROTO_MESSAGE_MAX + 1];
	json_t *detail;
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	detail = json_pack("{s:s, s:s, s:s, s:s, s:s}", "request", request, "jobId", job_id,
	    "errorCode", cf_proto_code_name(code), "reason", msg, "principal",
	    q->principal ? q->principal : "");
	if (detail == NULL || (text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS)) == NULL ||
	    cf_store_event_append(q->st, "rotation.rejected", q->topic.thing, text) != 0)
		cf_log(CF_LOG_ERROR, "cannot record rotation rejection", "thing=%s error=%s",
		    q->topic.thing, cf_error_last());
	free(text);
	json_decref(detail);
	reject(q, code, NULL, msg);
}

/* The thing's next pending execution as notify-next / $next/get/accepted JSON. */
static int
encode_next(char **out, cf_store *st, const char *thing, const char *token)
{
	cf_proto_execution e;
	cf_exec_rec rec;
	cf_job_rec job;
	json_t *doc = NULL;
	int r;

	memset(&e, 0, sizeof(e));
	memset(&rec, 0, sizeof(rec));
	memset(&job, 0, sizeof(job));
	if (token != NULL)
		snprintf(e.client_token, sizeof(e.client_token), "%s", token);
	r = cf_store_exec_next_pending(st, &rec, thing);
	if (r == CF_ENOTFOUND) {
		r = cf_proto_encode_execution(out, &e);
		goto out;
	}
	if (r != 0 || (r = cf_store_job_get(st, &job, rec.job_id)) != 0)
		goto out;
	if ((doc = json_loads(job.document, 0, NULL)) == NULL ||
	    (r = cf_alg_validate(&e.doc.key_alg, &e.doc.sig_alg,
	    json_string_value(json_object_get(doc, "keyAlgorithm")),
	    json_string_value(json_object_get(doc, "signingAlgorithm")))) != 0) {
		if (doc == NULL)
			cf_error_set("job %s: the stored document is not JSON", job.id);
		r = r ? r : CF_ERROR;
		goto out;
	}
	e.present = 1;
	snprintf(e.job_id, sizeof(e.job_id), "%s", rec.job_id);
	e.status = rec.status;
	e.execution_number = rec.execution_number;
	e.version_number = rec.version;
	r = cf_proto_encode_execution(out, &e);
out:
	json_decref(doc);
	cf_job_rec_clear(&job);
	cf_exec_rec_clear(&rec);
	return r;
}

void
cfd_jobs_notify_next(cfd *d, const char *thing)
{
	cf_proto_topic t;
	char topic[CF_PROTO_TOPIC_MAX];
	char *text = NULL;

	memset(&t, 0, sizeof(t));
	snprintf(t.thing, sizeof(t.thing), "%s", thing);
	t.kind = CF_PROTO_NOTIFY_NEXT;
	t.reply = CF_PROTO_REQUEST;
	if (encode_next(&text, cf_ca_store(d->ca), thing, NULL) != 0 ||
	    cf_proto_topic_format(topic, sizeof(topic), d->topic_prefix, &t) != 0 ||
	    cfd_mqtt_publish(d, topic, text) != 0)
		cf_log(CF_LOG_ERROR, "cannot notify next execution", "thing=%s error=%s", thing,
		    cf_error_last());
	else
		cf_log(CF_LOG_DEBUG, "notify-next published", "thing=%s", thing);
	free(text);
}

/* ---- rotation helpers ------------------------------------------------------------------ */

/* 1 if the job is a rotation (its operation), else 0; *alg is its keyAlgorithm. */
static int
job_is_rotation(cf_store *st, const char *job_id, cf_key_alg *alg)
{
	cf_job_rec job;
	json_t *doc = NULL;
	int yes;

	memset(&job, 0, sizeof(job));
	yes = cf_store_job_get(st, &job, job_id) == 0 && strcmp(job.operation, ROTATE_OPERATION) == 0 &&
	    (doc = json_loads(job.document, 0, NULL)) != NULL &&
	    cf_key_alg_parse(alg, json_string_value(json_object_get(doc, "keyAlgorithm"))) == 0;
	json_decref(doc);
	cf_job_rec_clear(&job);
	return yes;
}

/* The public key of a stored certificate. */
static int
cert_key(cf_key **out, cf_store *st, const char *cert_id)
{
	cf_cert_rec rec;
	int r;

	memset(&rec, 0, sizeof(rec));
	/* Only the key: cf_cert_pubkey_from_pem reads it without OpenSSL's decoder. */
	if ((r = cf_store_cert_get(st, &rec, cert_id)) != 0 ||
	    (r = cf_cert_pubkey_from_pem(out, rec.pem, strlen(rec.pem))) != 0)
		goto out;
out:
	cf_cert_rec_clear(&rec);
	return r;
}

/*
 * Takes a certificate a rotation no longer needs out of use: INACTIVE. One
 * an operator already revoked stays REVOKED — REVOKED is terminal, and the
 * store refusing REVOKED -> INACTIVE must not fail (and roll back) the whole
 * execution end, which would leave it IN_PROGRESS and the engine retrying
 * its timeout every pass.
 */
static int
retire_cert(cf_store *st, const char *cert_id)
{
	cf_cert_rec rec;
	int r;

	memset(&rec, 0, sizeof(rec));
	if ((r = cf_store_cert_get(st, &rec, cert_id)) == 0 && rec.status != CF_CERT_REVOKED)
		r = cf_store_cert_set_status(st, cert_id, CF_CERT_INACTIVE, 0);
	cf_cert_rec_clear(&rec);
	return r;
}

/*
 * The CSR checks cf_ca_issue_parsed makes, one by one, so that each failure
 * gets its own errorCode. 0 with the parsed and verified CSR in *out (issued
 * from without a second parse or verify), or the code to reject with
 * (message in cf_error).
 */
static int
check_csr(cf_proto_code *code, cf_csr **out, cf_key **pub, cfd *d, const cf_proto_create *c,
    const char *thing)
{
	cf_csr *csr = NULL;
	cf_keyq_result kq;
	int r;

	*code = CF_PROTO_CSR_INVALID;
	if ((r = cf_csr_parse(&csr, c->csr, c->csr_len)) != 0 || (r = cf_csr_verify(csr)) != 0) {
		cf_error_prefix("CSR");
		goto out;
	}
	*code = CF_PROTO_CSR_SUBJECT_MISMATCH;
	if ((r = cf_csr_check_subject(csr, thing)) != 0)
		goto out;
	*code = CF_PROTO_WEAK_KEY;
	if ((r = cf_keyq_check_csr(&kq, cf_ca_policy(d->ca), csr)) != 0)
		goto out;
	if (kq.flags != 0) {
		cf_error_set("CSR refused by key policy: %s", kq.detail);
		r = CF_EREJECTED;
		goto out;
	}
	*code = CF_PROTO_CSR_INVALID;
	if ((r = cf_csr_pubkey(pub, csr)) != 0)
		goto out;
	*out = csr;
	csr = NULL;
	r = 0;
out:
	cf_csr_free(csr);
	return r;
}

/*
 * The thing's current certificate for a create: the rotation's old one when
 * the execution already has a rotation, else the principal itself if it is
 * an ACTIVE certificate of this thing. 0, or CF_EREJECTED.
 */
static int
current_cert(char out[CF_ID_LEN + 1], cf_store *st, const cf_rotation_rec *rot, int has_rot,
    const char *thing, const char *principal)
{
	cf_cert_rec rec;
	int r = CF_EREJECTED;

	memset(&rec, 0, sizeof(rec));
	if (has_rot) {
		if (strcmp(rot->old_cert, principal) != 0) {
			cf_error_set("the connection's certificate is not the one this rotation replaces");
			goto out;
		}
		snprintf(out, CF_ID_LEN + 1, "%s", rot->old_cert);
		r = 0;
		goto out;
	}
	if (strlen(principal) != CF_ID_LEN || cf_store_cert_get(st, &rec, principal) != 0 ||
	    strcmp(rec.thing, thing) != 0 || rec.status != CF_CERT_ACTIVE) {
		cf_error_set("the connection's certificate is not an ACTIVE certificate of %s", thing);
		goto out;
	}
	snprintf(out, CF_ID_LEN + 1, "%s", rec.id);
	r = 0;
out:
	cf_cert_rec_clear(&rec);
	return r;
}

/* ---- handlers ----------------------------------------------------------------------------- */

static void
h_next_get(jreq *q)
{
	cf_proto_next_get m;
	cf_proto_code why = CF_PROTO_INVALID_REQUEST;
	char *text = NULL;

	if (cf_proto_decode_next_get(&m, q->payload, q->len, &why) != 0) {
		reject(q, why, NULL, cf_error_last());
		return;
	}
	snprintf(q->token, sizeof(q->token), "%s", m.client_token);
	if (encode_next(&text, q->st, q->topic.thing, m.client_token) != 0) {
		reject(q, CF_PROTO_INTERNAL_ERROR, NULL, cf_error_last());
		return;
	}
	publish_reply(q, CF_PROTO_ACCEPTED, text);
	free(text);
}

/* statusDetails as a JSON object text. */
static char *
details_json(const cf_proto_update *u)
{
	json_t *o = json_object();
	char *text;
	size_t i;

	for (i = 0; o != NULL && i < u->n_details; i++)
		json_object_set_new(o, u->details[i].key, json_string(u->details[i].value));
	text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	return text;
}

/* A notification about execution e and its rotation (borrowed strings). */
static void
notice_of(cfd_notice *n, const char *kind, const cf_exec_rec *e, const cf_rotation_rec *rot,
    const char *reason)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->thing = e->thing;
	n->job_id = e->job_id;
	n->status = cf_proto_status_name(e->status);
	n->execution_number = e->execution_number;
	n->reason = reason;
	n->old_cert = rot->old_cert;
	n->new_cert = rot->new_cert;
}

/*
 * What an execution's end means for its rotation (DESIGN §6), inside the
 * caller's transaction:
 *   SUCCEEDED after committed        -> old certificate INACTIVE, rotation succeeded
 *   TIMED_OUT/CANCELED after committed
 *                                    -> indeterminate: both kept, settled when the
 *                                       device next connects (cfd_rotation_connected)
 *   anything else after created or committed (FAILED/REJECTED: the device rolled
 *   back; TIMED_OUT/CANCELED before commit; SUCCEEDED without a commit)
 *                                    -> new certificate INACTIVE, rotation failed
 * No rotation record: nothing was issued, nothing to undo. *rot_out is the
 * record as read (zeroed when there is none), for the caller's notification.
 */
static int
settle_rotation(cfd *d, cf_rotation_rec *rot_out, const cf_exec_rec *e, const char *reason)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_rotation_rec rot;
	const char *retire = NULL;
	cf_rotation_state to;
	cfd_notice n;
	int r;

	memset(&rot, 0, sizeof(rot));
	memset(rot_out, 0, sizeof(*rot_out));
	r = cf_store_rotation_get(st, &rot, e->job_id, e->thing, e->execution_number);
	if (r == CF_ENOTFOUND)
		return 0;
	if (r == 0)
		*rot_out = rot;
	if (r != 0)
		return r;
	if (rot.state != CF_ROTATION_CREATED && rot.state != CF_ROTATION_COMMITTED)
		return 0;
	if (rot.state == CF_ROTATION_COMMITTED && e->status == CF_EXEC_SUCCEEDED) {
		retire = rot.old_cert;
		to = CF_ROTATION_SUCCEEDED;
	} else if (rot.state == CF_ROTATION_COMMITTED &&
	    (e->status == CF_EXEC_TIMED_OUT || e->status == CF_EXEC_CANCELED)) {
		to = CF_ROTATION_INDETERMINATE;
	} else {
		retire = rot.new_cert;
		to = CF_ROTATION_FAILED;
	}
	if (retire != NULL && retire[0] != '\0' && (r = retire_cert(st, retire)) != 0)
		return r;
	if ((r = cf_store_rotation_set_state(st, e->job_id, e->thing, e->execution_number, to,
	    reason)) != 0)
		return r;
	cf_log(CF_LOG_INFO, "rotation settled", "thing=%s job=%s state=%s deactivated=%s", e->thing,
	    e->job_id, cf_rotation_state_name(to), retire ? retire : "-");
	if (to != CF_ROTATION_INDETERMINATE)
		return 0;
	notice_of(&n, "rotation.indeterminate", e, &rot, reason);
	return cfd_notify(d, &n);
}

int
cfd_execution_ended(cfd *d, const cf_exec_rec *e, const char *reason)
{
	static const char *const kinds[CF_EXEC__COUNT] = {
		[CF_EXEC_FAILED] = "execution.failed",
		[CF_EXEC_TIMED_OUT] = "execution.timed_out",
		[CF_EXEC_REJECTED] = "execution.rejected",
	};
	cf_rotation_rec rot;
	cfd_notice n;
	int r;

	if ((r = settle_rotation(d, &rot, e, reason)) != 0)
		return r;
	if (e->status < 0 || e->status >= CF_EXEC__COUNT || kinds[e->status] == NULL)
		return 0;
	notice_of(&n, kinds[e->status], e, &rot, reason);
	return cfd_notify(d, &n);
}

int
cfd_rotation_connected(cfd *d, const char *thing, const char *principal)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_rotation_rec *rots = NULL;
	const char *retire;
	cf_rotation_state to;
	size_t n = 0, i;
	int r, settled = 0;

	if (principal == NULL || strlen(principal) != CF_ID_LEN)
		return 0;
	if ((r = cf_store_rotation_find_cert(st, &rots, &n, principal)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (rots[i].state != CF_ROTATION_INDETERMINATE || strcmp(rots[i].thing, thing) != 0)
			continue;
		if (strcmp(principal, rots[i].new_cert) == 0) {
			retire = rots[i].old_cert;
			to = CF_ROTATION_SUCCEEDED;
		} else {
			retire = rots[i].new_cert;
			to = CF_ROTATION_FAILED;
		}
		if ((r = cf_store_begin(st)) != 0)
			goto out;
		if ((r = retire_cert(st, retire)) != 0 ||
		    (r = cf_store_rotation_set_state(st, rots[i].job_id, thing,
		    rots[i].execution_number, to, "the device connected with this certificate")) != 0 ||
		    (r = cf_store_commit(st)) != 0) {
			cf_store_rollback(st);
			goto out;
		}
		settled++;
		cf_log(CF_LOG_INFO, "indeterminate rotation settled", "thing=%s job=%s principal=%s "
		    "state=%s deactivated=%s", thing, rots[i].job_id, principal,
		    cf_rotation_state_name(to), retire);
	}
	r = settled;
out:
	cf_rotation_recs_free(rots, n);
	return r;
}

static void
h_update(jreq *q)
{
	cf_proto_update u;
	cf_proto_update_accepted acc;
	cf_proto_code why = CF_PROTO_INVALID_REQUEST;
	cf_exec_rec cur, next;
	cf_job_exec je, jn;
	char *text = NULL, *details = NULL;
	const char *reason;
	int r, began = 0;

	memset(&u, 0, sizeof(u));
	memset(&cur, 0, sizeof(cur));
	memset(&acc, 0, sizeof(acc));
	if (cf_proto_decode_update(&u, q->payload, q->len, &why) != 0) {
		reject(q, why, NULL, cf_error_last());
		goto out;
	}
	snprintf(q->token, sizeof(q->token), "%s", u.client_token);
	r = cf_store_exec_get(q->st, &cur, q->topic.job_id, q->topic.thing, 0);
	if (r != 0) {
		reject(q, r == CF_ENOTFOUND ? CF_PROTO_RESOURCE_NOT_FOUND : CF_PROTO_INTERNAL_ERROR, NULL,
		    cf_error_last());
		goto out;
	}
	je.status = cur.status;
	je.execution_number = cur.execution_number;
	je.version_number = cur.version;
	je.retries_failed = cur.retries_failed;
	je.retries_timed_out = cur.retries_timed_out;
	if (cf_job_update(&jn, &why, &je, u.status, u.expected_version) != 0) {
		reject(q, why, &cur, cf_error_last());
		goto out;
	}
	if ((details = details_json(&u)) == NULL) {
		reject(q, CF_PROTO_INTERNAL_ERROR, NULL, "out of memory");
		goto out;
	}
	next = cur;
	next.status = jn.status;
	next.version = jn.version_number;
	next.status_details = details;
	next.last_updated_at = 0;
	if (cur.status == CF_EXEC_QUEUED && jn.status == CF_EXEC_IN_PROGRESS)
		next.started_at = cf_time_now();
	if (jn.status == CF_EXEC_IN_PROGRESS)
		next.last_step_at = cf_time_now();
	if ((r = cf_store_begin(q->st)) != 0) {
		reject(q, CF_PROTO_INTERNAL_ERROR, NULL, cf_error_last());
		goto out;
	}
	began = 1;
	r = cf_store_exec_update(q->st, &next, cur.version);
	if (r == CF_ESTATE) {
		/* Another writer won: answer with the state that is there now. */
		cf_store_rollback(q->st);
		began = 0;
		cf_exec_rec_clear(&cur);
		memset(&cur, 0, sizeof(cur));
		if (cf_store_exec_get(q->st, &cur, q->topic.job_id, q->topic.thing, 0) == 0)
			reject(q, CF_PROTO_VERSION_MISMATCH, &cur, "the execution changed meanwhile");
		else
			reject(q, CF_PROTO_VERSION_MISMATCH, NULL, "the execution changed meanwhile");
		goto out;
	}
	if (r != 0)
		goto fail;
	if (cf_job_status_terminal(next.status)) {
		reason = cf_proto_update_detail(&u, "reason");
		if ((r = cfd_execution_ended(q->d, &next,
		    reason ? reason : cf_proto_status_name(next.status))) != 0)
			goto fail;
		cf_failpoint("certfleetd.terminal");
	}
	if ((r = cf_store_commit(q->st)) != 0)
		goto fail;
	began = 0;
	if (cf_job_status_terminal(next.status)) {
		cfd_notify_wake(q->d);
		cfd_engine_kick(q->d);
	}
	cf_log(CF_LOG_INFO, "execution updated", "thing=%s job=%s from=%s to=%s version=%jd",
	    q->topic.thing, q->topic.job_id, cf_proto_status_name(cur.status),
	    cf_proto_status_name(next.status), (intmax_t)next.version);
	acc.state.status = next.status;
	acc.state.version_number = next.version;
	snprintf(acc.client_token, sizeof(acc.client_token), "%s", q->token);
	if (cf_proto_encode_update_accepted(&text, &acc) != 0) {
		cf_log(CF_LOG_ERROR, "cannot encode update answer", "error=%s", cf_error_last());
		goto out;
	}
	publish_reply(q, CF_PROTO_ACCEPTED, text);
	if (cf_job_status_terminal(next.status))
		cfd_jobs_notify_next(q->d, q->topic.thing);
	goto out;
fail:
	if (began)
		cf_store_rollback(q->st);
	began = 0;
	reject(q, CF_PROTO_INTERNAL_ERROR, NULL, cf_error_last());
out:
	if (began)
		cf_store_rollback(q->st);
	free(text);
	free(details);
	cf_exec_rec_clear(&cur);
	cf_proto_update_clear(&u);
}

/*
 * The checks common to create and commit, in DESIGN §6's order: an
 * execution of this job for this thing that is IN_PROGRESS, of a rotation
 * job, asked by the thing's own client id. Fills q->exec. 0, or rejected.
 */
static int
custody_preamble(jreq *q, const char *request, const char *job_id)
{
	int r;

	r = cf_store_exec_get(q->st, &q->exec, job_id, q->topic.thing, 0);
	if (r == CF_ENOTFOUND) {
		reject_rotation(q, request, job_id, CF_PROTO_NOT_IN_PROGRESS,
		    "%s has no execution of job %s", q->topic.thing, job_id);
		return CF_EREJECTED;
	}
	if (r != 0) {
		reject_rotation(q, request, job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		return r;
	}
	q->has_exec = 1;
	if (q->exec.status != CF_EXEC_IN_PROGRESS) {
		reject_rotation(q, request, job_id, CF_PROTO_NOT_IN_PROGRESS,
		    "the execution of job %s is %s, not IN_PROGRESS", job_id,
		    cf_proto_status_name(q->exec.status));
		return CF_EREJECTED;
	}
	if (!job_is_rotation(q->st, job_id, &q->key_alg)) {
		reject_rotation(q, request, job_id, CF_PROTO_NOT_A_ROTATION,
		    "job %s is not a certificate rotation", job_id);
		return CF_EREJECTED;
	}
	if (q->client_id == NULL || strcmp(q->client_id, q->topic.thing) != 0) {
		reject_rotation(q, request, job_id, CF_PROTO_CLIENT_ID_MISMATCH,
		    "the client id is not the thing %s", q->topic.thing);
		return CF_EREJECTED;
	}
	return 0;
}

static void
h_create(jreq *q)
{
	cf_proto_create c;
	cf_proto_create_accepted acc;
	cf_proto_code why = CF_PROTO_INVALID_REQUEST;
	cf_rotation_rec rot, upd;
	cf_cert_rec issued;
	cf_key *old_key = NULL, *new_pub = NULL, *prev_key = NULL;
	cf_csr *csr = NULL;
	char msg[CF_PROTO_CUSTODY_MAX], old_id[CF_ID_LEN + 1], *text = NULL;
	cf_key_alg csr_alg;
	int64_t t0;
	int has_rot, r, began = 0, reuse = 0;

	memset(&c, 0, sizeof(c));
	memset(&acc, 0, sizeof(acc));
	memset(&rot, 0, sizeof(rot));
	memset(&issued, 0, sizeof(issued));
	if (cf_failpoint("certfleetd.create.drop"))
		return;
	if (cf_proto_decode_create(&c, q->payload, q->len, &why) != 0) {
		reject_rotation(q, "create", "", why, "%s", cf_error_last());
		goto out;
	}
	snprintf(q->token, sizeof(q->token), "%s", c.client_token);
	if (custody_preamble(q, "create", c.job_id) != 0)
		goto out;
	r = cf_store_rotation_get(q->st, &rot, c.job_id, q->topic.thing, q->exec.execution_number);
	if (r != 0 && r != CF_ENOTFOUND) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	has_rot = r == 0;
	if (has_rot && rot.state != CF_ROTATION_CREATED) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_REPLAY,
		    "the rotation of job %s is already %s", c.job_id, cf_rotation_state_name(rot.state));
		goto out;
	}
	if (current_cert(old_id, q->st, &rot, has_rot, q->topic.thing, q->principal) != 0) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_PRINCIPAL_MISMATCH, "%s", cf_error_last());
		goto out;
	}
	if (cert_key(&old_key, q->st, old_id) != 0) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	if (cf_proto_custody_create_msg(msg, c.job_id, q->topic.thing, c.csr, c.csr_len) != 0 ||
	    cf_proto_custody_verify(old_key, msg, c.signature) != 0) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_BAD_SIGNATURE,
		    "the signature is not the current key's over %s", msg);
		goto out;
	}
	if (check_csr(&why, &csr, &new_pub, q->d, &c, q->topic.thing) != 0) {
		reject_rotation(q, "create", c.job_id, why, "%s", cf_error_last());
		goto out;
	}
	if (cf_key_alg_of(&csr_alg, new_pub) != 0 || csr_alg != q->key_alg) {
		reject_rotation(q, "create", c.job_id, CF_PROTO_WEAK_KEY,
		    "the CSR's key is not %s, the job's keyAlgorithm",
		    cf_key_alg_name(q->key_alg));
		goto out;
	}
	/*
	 * A repeated create while the rotation is created: the same new key gets
	 * the same certificate (the device lost the answer); another key gets a
	 * fresh certificate and the previous new one is deactivated, so the
	 * thing never holds more than the old and one new certificate.
	 */
	if (has_rot && rot.new_cert[0] != '\0' && cert_key(&prev_key, q->st, rot.new_cert) == 0 &&
	    cf_key_equal_public(prev_key, new_pub) == 1)
		reuse = 1;
	if ((r = cf_store_begin(q->st)) != 0)
		goto fail;
	began = 1;
	if (reuse) {
		if ((r = cf_store_cert_get(q->st, &issued, rot.new_cert)) != 0)
			goto fail;
	} else {
		if (has_rot && rot.new_cert[0] != '\0' && (r = retire_cert(q->st, rot.new_cert)) != 0)
			goto fail;
		t0 = cfd_mono_us();
		r = cf_ca_issue_parsed(q->d->ca, &issued, csr, q->topic.thing, 1, CF_CERT_ACTIVE, 0);
		cfd_metrics_issue(q->d, cfd_mono_us() - t0);
		if (r != 0)
			goto fail;
		memset(&upd, 0, sizeof(upd));
		snprintf(upd.job_id, sizeof(upd.job_id), "%s", c.job_id);
		snprintf(upd.thing, sizeof(upd.thing), "%s", q->topic.thing);
		upd.execution_number = q->exec.execution_number;
		snprintf(upd.old_cert, sizeof(upd.old_cert), "%s", old_id);
		snprintf(upd.new_cert, sizeof(upd.new_cert), "%s", issued.id);
		upd.state = CF_ROTATION_CREATED;
		if ((r = cf_store_rotation_upsert(q->st, &upd)) != 0)
			goto fail;
	}
	memcpy(acc.certificate_id, issued.id, sizeof(acc.certificate_id));
	acc.certificate_pem = issued.pem;
	snprintf(acc.client_token, sizeof(acc.client_token), "%s", q->token);
	if ((r = cf_ca_chain_pem(q->d->ca, &acc.chain_pem)) != 0 ||
	    (r = cf_proto_encode_create_accepted(&text, &acc)) != 0)
		goto fail;
	if ((r = cf_store_commit(q->st)) != 0)
		goto fail;
	began = 0;
	cf_failpoint("certfleetd.create.before-answer");
	cf_log(CF_LOG_INFO, reuse ? "rotation create repeated" : "rotation certificate issued",
	    "thing=%s job=%s old=%s new=%s", q->topic.thing, c.job_id, old_id, issued.id);
	publish_reply(q, CF_PROTO_ACCEPTED, text);
	goto out;
fail:
	if (began)
		cf_store_rollback(q->st);
	began = 0;
	/* cf_ca_issue_parsed repeats check_csr's checks: a refusal here is still the CSR's. */
	reject_rotation(q, "create", c.job_id,
	    r == CF_EREJECTED ? CF_PROTO_CSR_INVALID : CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
out:
	if (began)
		cf_store_rollback(q->st);
	acc.certificate_pem = NULL; /* borrowed from issued */
	cf_proto_create_accepted_clear(&acc);
	free(text);
	cf_key_free(old_key);
	cf_key_free(new_pub);
	cf_key_free(prev_key);
	cf_csr_free(csr);
	cf_cert_rec_clear(&issued);
	cf_proto_create_clear(&c);
}

static void
h_commit(jreq *q)
{
	cf_proto_commit c;
	cf_proto_commit_accepted acc;
	cf_proto_code why = CF_PROTO_INVALID_REQUEST;
	cf_rotation_rec rot;
	cf_key *new_key = NULL;
	char msg[CF_PROTO_CUSTODY_MAX], *text = NULL;
	int r, again;

	memset(&c, 0, sizeof(c));
	memset(&acc, 0, sizeof(acc));
	memset(&rot, 0, sizeof(rot));
	if (cf_failpoint("certfleetd.commit.drop"))
		return;
	if (cf_proto_decode_commit(&c, q->payload, q->len, &why) != 0) {
		reject_rotation(q, "commit", "", why, "%s", cf_error_last());
		goto out;
	}
	snprintf(q->token, sizeof(q->token), "%s", c.client_token);
	if (custody_preamble(q, "commit", c.job_id) != 0)
		goto out;
	r = cf_store_rotation_get(q->st, &rot, c.job_id, q->topic.thing, q->exec.execution_number);
	if (r == CF_ENOTFOUND) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_CERTIFICATE_MISMATCH,
		    "no certificate was created for job %s", c.job_id);
		goto out;
	}
	if (r != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	/*
	 * A repeated commit of the committed rotation (the device lost the
	 * answer) passes the same checks below and gets the same answer, with
	 * nothing changed; any other commit of a rotation that left created is
	 * a Replay.
	 */
	again = rot.state == CF_ROTATION_COMMITTED && strcmp(c.certificate_id, rot.new_cert) == 0;
	if (rot.state != CF_ROTATION_CREATED && !again) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_REPLAY,
		    "the rotation of job %s is already %s", c.job_id, cf_rotation_state_name(rot.state));
		goto out;
	}
	if (strcmp(c.certificate_id, rot.new_cert) != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_CERTIFICATE_MISMATCH,
		    "certificate %s is not the one issued for job %s", c.certificate_id, c.job_id);
		goto out;
	}
	if (q->principal == NULL || strcmp(q->principal, rot.new_cert) != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_PRINCIPAL_MISMATCH,
		    "commit must come over a connection made with the new certificate");
		goto out;
	}
	if (cert_key(&new_key, q->st, rot.new_cert) != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	if (cf_proto_custody_commit_msg(msg, c.job_id, q->topic.thing, c.certificate_id) != 0 ||
	    cf_proto_custody_verify(new_key, msg, c.signature) != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_BAD_SIGNATURE,
		    "the signature is not the new key's over %s", msg);
		goto out;
	}
	if (!again && cf_store_rotation_set_state(q->st, c.job_id, q->topic.thing,
	    q->exec.execution_number, CF_ROTATION_COMMITTED, NULL) != 0) {
		reject_rotation(q, "commit", c.job_id, CF_PROTO_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	cf_failpoint("certfleetd.commit.before-answer");
	cf_log(CF_LOG_INFO, again ? "rotation commit repeated" : "rotation committed",
	    "thing=%s job=%s new=%s", q->topic.thing, c.job_id, rot.new_cert);
	memcpy(acc.certificate_id, c.certificate_id, sizeof(acc.certificate_id));
	snprintf(acc.client_token, sizeof(acc.client_token), "%s", q->token);
	if (cf_proto_encode_commit_accepted(&text, &acc) != 0) {
		cf_log(CF_LOG_ERROR, "cannot encode commit answer", "error=%s", cf_error_last());
		goto out;
	}
	publish_reply(q, CF_PROTO_ACCEPTED, text);
out:
	free(text);
	cf_key_free(new_key);
	cf_proto_commit_clear(&c);
}

/* ---- the table and the entry point ---------------------------------------------------------- */

/*
 * {request, who may ask, in which state, handler}. The broker lets only the
 * thing itself publish below things/<thing>/ and mqtt.c has checked the
 * stamp and that cf-client-id is that thing; create and commit then check
 * the principal and the custody signature themselves, after the execution
 * (their state rule), because the order of the checks is DESIGN §6's.
 */
static const jobs_route routes[] = {
	{ CF_PROTO_NEXT_GET, "$next/get", WHO_THING, STATE_ANY, h_next_get },
	{ CF_PROTO_UPDATE, "update", WHO_THING, STATE_ANY, h_update },
	{ CF_PROTO_CREATE, "certificate/create", WHO_CUSTODY, STATE_IN_PROGRESS, h_create },
	{ CF_PROTO_COMMIT, "certificate/commit", WHO_CUSTODY, STATE_IN_PROGRESS, h_commit },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

void
cfd_jobs_on_message(cfd *d, const char *topic, const void *payload, size_t len,
    const char *principal, const char *client_id)
{
	jreq q;
	size_t i;

	memset(&q, 0, sizeof(q));
	q.d = d;
	q.st = cf_ca_store(d->ca);
	q.principal = principal;
	q.client_id = client_id;
	q.payload = payload;
	q.len = len;
	if (cf_proto_topic_parse(&q.topic, d->topic_prefix, topic, strlen(topic)) != 0) {
		cf_log(CF_LOG_DEBUG, "not a jobs topic", "topic=%s error=%s", topic, cf_error_last());
		return;
	}
	/* Replies and notifications are ours (no-local keeps them away; be safe anyway). */
	if (q.topic.reply != CF_PROTO_REQUEST)
		return;
	for (i = 0; i < N_ROUTES; i++) {
		if (routes[i].kind != q.topic.kind)
			continue;
		/* WHO_THING and WHO_CUSTODY both start with the thing's own client id. */
		if ((client_id == NULL || strcmp(client_id, q.topic.thing) != 0) &&
		    routes[i].who == WHO_THING) {
			reject(&q, CF_PROTO_CLIENT_ID_MISMATCH, NULL, "the client id is not the thing");
			goto out;
		}
		cf_log(CF_LOG_DEBUG, "jobs request", "thing=%s request=%s principal=%s", q.topic.thing,
		    routes[i].name, principal);
		routes[i].fn(&q);
		goto out;
	}
	cf_log(CF_LOG_DEBUG, "ignored device message", "topic=%s", topic);
out:
	cf_exec_rec_clear(&q.exec);
}

/* ---- creating rotation jobs (the API and the mitigation rules) -------------------------- */

int
cfd_jobs_insert_rotation(cfd *d, char job_id_out[CF_PROTO_JOB_ID_MAX + 1],
    const cfd_rotation_job *spec, const char *const *things, size_t n)
{
	cf_store *st = cf_ca_store(d->ca);
	char gen_id[CF_PROTO_JOB_ID_MAX + 1];
	unsigned char rnd[4];
	int64_t now = cf_time_now();
	json_t *doc = NULL;
	cf_job_rec job;
	size_t i;
	int r = CF_ERROR, began = 0;

	memset(&job, 0, sizeof(job));
	if (spec->job_id == NULL) {
		if ((r = cf_random_bytes(rnd, sizeof(rnd))) != 0)
			goto out;
		snprintf(gen_id, sizeof(gen_id), "%s-%jd-%02x%02x%02x%02x",
		    spec->id_prefix ? spec->id_prefix : "rotate", (intmax_t)now, rnd[0], rnd[1], rnd[2],
		    rnd[3]);
	} else {
		snprintf(gen_id, sizeof(gen_id), "%s", spec->job_id);
	}
	doc = json_pack("{s:s, s:s, s:s}", "operation", ROTATE_OPERATION, "keyAlgorithm",
	    cf_key_alg_name(spec->key_alg), "signingAlgorithm", cf_sig_alg_name(spec->sig_alg));
	snprintf(job.id, sizeof(job.id), "%s", gen_id);
	snprintf(job.operation, sizeof(job.operation), ROTATE_OPERATION);
	job.document = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	job.targets = (char *)spec->targets_json;
	job.config = (char *)spec->config_json;
	job.comment = (char *)spec->comment;
	job.selection = spec->selection;
	/* The engine starts a job whose schedule does not allow it yet. */
	job.status = cf_job_schedule_may_start(&spec->config->schedule, now) ?
	    CF_JOB_STATE_IN_PROGRESS : CF_JOB_STATE_SCHEDULED;
	if (job.document == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	began = 1;
	if ((r = cf_store_job_insert(st, &job)) != 0)
		goto out;
	for (i = 0; i < n; i++)
		if ((r = cf_store_job_target_add(st, NULL, job.id, things[i], now)) != 0)
			goto out;
	if ((r = cf_store_commit(st)) != 0)
		goto out;
	began = 0;
	cf_log(CF_LOG_INFO, "rotation job created", "job=%s things=%zu selection=%s key_algorithm=%s "
	    "status=%s source=%s", job.id, n,
	    spec->selection == CF_JOB_SELECTION_CONTINUOUS ? "CONTINUOUS" : "SNAPSHOT",
	    cf_key_alg_name(spec->key_alg), cf_job_state_name(job.status),
	    spec->source ? spec->source : "api");
	if (job_id_out != NULL)
		memcpy(job_id_out, job.id, sizeof(job.id));
	cfd_engine_pass(d);
	r = 0;
out:
	if (began)
		cf_store_rollback(st);
	free(job.document);
	json_decref(doc);
	return r;
}

int
cfd_jobs_create_rotation(cfd *d, char *job_id_out, const char *const *things, size_t n,
    const char *key_alg, const char *config_json, const char *comment)
{
	cf_jobspec_targets tg;
	cf_jobspec_config cfg;
	cfd_rotation_job spec;
	char *tg_in = NULL, *tg_text = NULL, *cfg_text = NULL;
	json_t *names = NULL, *obj = NULL;
	size_t i;
	int r = CF_ERROR;

	memset(&tg, 0, sizeof(tg));
	memset(&spec, 0, sizeof(spec));
	if (n == 0) {
		cf_error_set("a rotation job needs at least one thing");
		return CF_EINVAL;
	}
	if ((r = cf_alg_validate(&spec.key_alg, &spec.sig_alg, key_alg, NULL)) != 0)
		return r;
	r = CF_ERROR;
	if ((names = json_array()) == NULL)
		goto oom;
	for (i = 0; i < n; i++)
		if (json_array_append_new(names, json_string(things[i])) != 0)
			goto oom;
	if ((obj = json_pack("{s:O}", "things", names)) == NULL ||
	    (tg_in = json_dumps(obj, JSON_COMPACT)) == NULL)
		goto oom;
	/* The same validation as POST /v1/jobs: names, duplicates, sizes. */
	if ((r = cf_jobspec_targets_parse(&tg, tg_in)) != 0 ||
	    (r = cf_jobspec_targets_dump(&tg_text, &tg)) != 0 ||
	    (r = cf_jobspec_config_parse(&cfg, config_json)) != 0 ||
	    (r = cf_jobspec_config_dump(&cfg_text, &cfg)) != 0)
		goto out;
	spec.targets_json = tg_text;
	spec.config_json = cfg_text;
	spec.config = &cfg;
	spec.selection = CF_JOB_SELECTION_SNAPSHOT;
	spec.comment = comment;
	spec.id_prefix = "mitigate";
	spec.source = "mitigation";
	r = cfd_jobs_insert_rotation(d, job_id_out, &spec, (const char *const *)tg.things,
	    tg.n_things);
	goto out;
oom:
	cf_error_set("out of memory");
out:
	cf_jobspec_targets_clear(&tg);
	free(tg_in);
	free(tg_text);
	free(cfg_text);
	json_decref(names);
	json_decref(obj);
	return r;
}
