/*
 * certfleetd's provisioning by claim (DESIGN §9, docs/provisioning.md).
 *
 * mqtt.c hands over every message on <prefix>provisioning/<template>/provision
 * whose broker stamp verified; the stamp's principal is the claim
 * certificate, its client id the device's. A request is checked in a fixed
 * order (claim, template, window, rate, parameters, allow-list and hook,
 * CSR, replay, serial, count) and either creates the thing with a
 * PENDING_ACTIVATION certificate — thing, groups, certificate, serial and
 * attempt in one transaction — or is rejected with a stable code
 * (cf_prov_code). Every attempt is recorded. Misuse (cf_prov_code_is_misuse,
 * too many denials, a claim connected from too many clients at once)
 * disables the claim: the claim.status event makes the broker plugin kick
 * its clients, and a provisioning.claim_disabled notification is queued in
 * the same transaction.
 *
 * Also: a device's first connection with its PENDING_ACTIVATION
 * certificate activates it, and a timer sweeps away the certificates (and
 * things) never activated in time. Owns one timer; everything else is
 * handled to the end on the reactor thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "certfleetd.h"
#include "cf_keyq.h"
#include "cf_prov.h"
#include "cf_util.h"

#define RATE_WINDOW_S 60
#define DISABLE_DELAY_MS 250 /* the rejection reaches the client before the broker kicks it */
#define PENDING_MAX 64

/* A claim to disable once its rejection has left (reject()). */
struct pending_disable {
	char claim[CF_ID_LEN + 1];
	char tmpl[CF_NAME_MAX + 1];
	char why[48];
	char message[CF_PROTO_MESSAGE_MAX + 1];
};

struct cfd_prov {
	struct event *tick;
	struct event *later;    /* runs the pending disables */
	struct pending_disable pending[PENDING_MAX];
	size_t n_pending;
};

/* One request being handled. */
typedef struct {
	cfd *d;
	cf_store *st;
	char tmpl_name[CF_NAME_MAX + 1];
	const char *principal; /* the claim certificate (verified stamp) */
	const char *client_id;
	cf_prov_request rq;
	cf_prov_template t;
	cf_claim_rec claim;
	int has_claim;
	char serial[CF_PROV_SERIAL_MAX + 1];
	char thing[CF_NAME_MAX + 1];
	char key_id[CF_ID_LEN + 1];
	cf_csr *csr; /* parsed and verified by check_csr, issued from */
} preq;

/* ---- replies ------------------------------------------------------------------- */

static void
publish(preq *q, cf_proto_reply kind, const char *payload)
{
	char topic[CF_PROTO_TOPIC_MAX];

	if (cf_prov_topic_format(topic, sizeof(topic), q->d->topic_prefix, q->tmpl_name, q->client_id,
	    kind) != 0) {
		cf_log(CF_LOG_ERROR, "cannot format provisioning reply topic", "error=%s",
		    cf_error_last());
		return;
	}
	if (cfd_mqtt_publish(q->d, topic, payload) != 0)
		cf_log(CF_LOG_ERROR, "cannot publish reply", "topic=%s error=%s", topic, cf_error_last());
}

/* Records an attempt (its own transaction); failures are logged, never fatal. */
static void
record_attempt(preq *q, const char *outcome)
{
	cf_prov_attempt_rec a;

	memset(&a, 0, sizeof(a));
	snprintf(a.claim_id, sizeof(a.claim_id), "%s", q->principal);
	snprintf(a.template_name, sizeof(a.template_name), "%s", q->tmpl_name);
	snprintf(a.serial, sizeof(a.serial), "%s", q->serial);
	snprintf(a.client_id, sizeof(a.client_id), "%s", q->client_id);
	snprintf(a.outcome, sizeof(a.outcome), "%s", outcome);
	if (cf_store_prov_attempt_add(q->st, &a) != 0)
		cf_log(CF_LOG_ERROR, "cannot record provisioning attempt", "client_id=%s error=%s",
		    q->client_id, cf_error_last());
}

/*
 * Disables claim_id with why (an errorCode) and message: the status change
 * (event claim.status: the broker kicks its clients) and the notification,
 * in one transaction. Already disabled: nothing.
 */
static void
disable_claim(cfd *d, const char *claim_id, const char *tmpl, const char *why, const char *message)
{
	cf_store *st = cf_ca_store(d->ca);
	char reason[256];
	cfd_notice n;
	int changed = 0, r;

	snprintf(reason, sizeof(reason), "%s: %s", why, message);
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = cf_store_claim_set_status(st, &changed, claim_id, CF_CLAIM_DISABLED, reason)) != 0 ||
	    !changed)
		goto end;
	memset(&n, 0, sizeof(n));
	n.kind = "provisioning.claim_disabled";
	n.status = why;
	n.reason = reason;
	n.old_cert = claim_id; /* the claim certificate (docs/provisioning.md) */
	n.job_id = NULL;
	n.thing = NULL;
	(void)tmpl;
	r = cfd_notify(d, &n);
end:
	if (r == 0)
		r = cf_store_commit(st);
	else
		cf_store_rollback(st);
out:
	if (r != 0) {
		cf_log(CF_LOG_ERROR, "cannot disable claim", "claim=%s error=%s", claim_id,
		    cf_error_last());
		return;
	}
	if (changed) {
		cf_log(CF_LOG_WARN, "claim disabled", "claim=%s template=%s code=%s reason=\"%s\"",
		    claim_id, tmpl, why, message);
		cfd_notify_wake(d);
	}
}

/* 1 if claim_id waits to be disabled: certfleetd already treats it as disabled. */
static int
disable_pending(const cfd *d, const char *claim_id)
{
	size_t i;

	for (i = 0; d->prov != NULL && i < d->prov->n_pending; i++)
		if (strcmp(d->prov->pending[i].claim, claim_id) == 0)
			return 1;
	return 0;
}

static void
on_later(evutil_socket_t fd, short what, void *arg)
{
	cfd *d = arg;
	cfd_prov *p = d->prov;
	size_t i, n = p->n_pending;

	(void)fd;
	(void)what;
	p->n_pending = 0;
	for (i = 0; i < n; i++)
		disable_claim(d, p->pending[i].claim, p->pending[i].tmpl, p->pending[i].why,
		    p->pending[i].message);
}

/*
 * Disables the claim DISABLE_DELAY_MS from now: the reply just published
 * leaves certfleetd (libmosquitto writes it from the reactor) and reaches
 * the client before the claim.status event makes the broker kick it.
 * Meanwhile certfleetd answers the claim's requests with ClaimDisabled.
 */
static void
disable_soon(cfd *d, const char *claim_id, const char *tmpl, const char *why, const char *message)
{
	cfd_prov *p = d->prov;
	struct pending_disable *x;
	struct timeval tv = { 0, DISABLE_DELAY_MS * 1000 };

	if (p == NULL || p->later == NULL || p->n_pending == PENDING_MAX) {
		disable_claim(d, claim_id, tmpl, why, message);
		return;
	}
	if (disable_pending(d, claim_id))
		return;
	x = &p->pending[p->n_pending++];
	snprintf(x->claim, sizeof(x->claim), "%s", claim_id);
	snprintf(x->tmpl, sizeof(x->tmpl), "%s", tmpl);
	snprintf(x->why, sizeof(x->why), "%s", why);
	snprintf(x->message, sizeof(x->message), "%s", message);
	if (event_add(p->later, &tv) != 0) {
		p->n_pending--;
		disable_claim(d, claim_id, tmpl, why, message);
	}
}

/*
 * Rejects q with code: the attempt is recorded, the rejection published to
 * the client's own reply topic, then (misuse, or denials above the
 * template's threshold) the claim is disabled.
 */
static void reject(preq *q, cf_prov_code code, const char *fmt, ...) CF_PRINTF(3, 4);

static void
reject(preq *q, cf_prov_code code, const char *fmt, ...)
{
	cf_prov_rejection rej;
	int64_t total = 0, denied = 0;
	char *text = NULL;
	va_list ap;

	memset(&rej, 0, sizeof(rej));
	rej.code = code;
	va_start(ap, fmt);
	vsnprintf(rej.message, sizeof(rej.message), fmt, ap);
	va_end(ap);
	snprintf(rej.client_token, sizeof(rej.client_token), "%s", q->rq.client_token);
	if (q->has_claim)
		record_attempt(q, cf_prov_code_name(code));
	cf_log(CF_LOG_INFO, "provisioning rejected", "template=%s client_id=%s serial=%s code=%s "
	    "reason=\"%s\"", q->tmpl_name, q->client_id, q->serial[0] ? q->serial : "-",
	    cf_prov_code_name(code), rej.message);
	if (cf_prov_encode_rejection(&text, &rej) == 0)
		publish(q, CF_PROTO_REJECTED, text);
	free(text);
	/* Only an ENABLED claim's misuse is acted on: a disabled one already is. */
	if (!q->has_claim || q->claim.status != CF_CLAIM_ENABLED)
		return;
	if (cf_prov_code_is_misuse(code)) {
		disable_soon(q->d, q->principal, q->tmpl_name, cf_prov_code_name(code), rej.message);
		return;
	}
	if (q->t.max_denials > 0 && code != CF_PROV_INTERNAL_ERROR &&
	    cf_store_prov_attempt_count(q->st, &total, &denied, q->principal,
	    q->claim.updated_at) == 0 && denied >= q->t.max_denials) {
		char msg[128];

		snprintf(msg, sizeof(msg), "%lld requests denied (threshold %d)", (long long)denied,
		    q->t.max_denials);
		disable_soon(q->d, q->principal, q->tmpl_name, "DenialsExceeded", msg);
	}
}

/* ---- checks ----------------------------------------------------------------------- */

/*
 * Runs the template's hook: sh -c command with CF_TEMPLATE, CF_CLIENT_ID and
 * CF_PARAM_<name> for each parameter; exit 0 allows. Killed after the
 * template's timeout (at most CF_PROV_HOOK_TIMEOUT_MAX s: the reactor
 * waits for it). 0 if allowed; CF_EREJECTED with the reason otherwise.
 */
static int
run_hook(const preq *q)
{
	char env[CF_PROV_PARAMS_MAX + 3][CF_NAME_MAX + CF_PROV_PARAM_NAME_MAX + CF_PROV_VALUE_MAX + 32];
	char *envp[CF_PROV_PARAMS_MAX + 4];
	int64_t deadline_ms;
	struct timespec ts;
	size_t i, k = 0;
	int status = 0, fd;
	pid_t p, w;

	snprintf(env[k], sizeof(env[k]), "CF_TEMPLATE=%s", q->tmpl_name);
	envp[k] = env[k];
	k++;
	snprintf(env[k], sizeof(env[k]), "CF_CLIENT_ID=%.64s", q->client_id);
	envp[k] = env[k];
	k++;
	snprintf(env[k], sizeof(env[k]), "PATH=/usr/local/bin:/usr/bin:/bin");
	envp[k] = env[k];
	k++;
	for (i = 0; i < q->rq.params.n; i++, k++) {
		snprintf(env[k], sizeof(env[k]), "CF_PARAM_%s=%s", q->rq.params.name[i],
		    q->rq.params.value[i]);
		envp[k] = env[k];
	}
	envp[k] = NULL;
	if ((p = fork()) < 0) {
		cf_error_set("cannot start the hook: %s", strerror(errno));
		return CF_EREJECTED;
	}
	if (p == 0) {
		char *argv[] = { "sh", "-c", q->t.hook, NULL };

		(void)setpgid(0, 0);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			(void)dup2(fd, 0);
			(void)dup2(fd, 1);
			(void)dup2(fd, 2);
		}
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	(void)setpgid(p, p);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + q->t.hook_timeout_s * 1000;
	for (;;) {
		w = waitpid(p, &status, WNOHANG);
		if (w == p || (w < 0 && errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >= deadline_ms) {
			(void)kill(-p, SIGKILL);
			(void)waitpid(p, &status, 0);
			cf_error_set("the template's hook did not answer within %d s", q->t.hook_timeout_s);
			return CF_EREJECTED;
		}
		(void)poll(NULL, 0, 10);
	}
	if (w == p && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	cf_error_set("the template's hook denied the parameters");
	return CF_EREJECTED;
}

/*
 * The CSR: signature, subject (CN = the thing name), key policy; fills
 * q->key_id and keeps the checked CSR in q->csr for the issuance.
 */
static int
check_csr(cf_prov_code *code, preq *q)
{
	cf_csr *csr = NULL;
	cf_key *pub = NULL;
	cf_keyq_result kq;
	int r;

	*code = CF_PROV_CSR_INVALID;
	if ((r = cf_csr_parse(&csr, q->rq.csr, q->rq.csr_len)) != 0 || (r = cf_csr_verify(csr)) != 0) {
		cf_error_prefix("CSR");
		goto out;
	}
	*code = CF_PROV_CSR_SUBJECT_MISMATCH;
	if ((r = cf_csr_check_subject(csr, q->thing)) != 0)
		goto out;
	*code = CF_PROV_WEAK_KEY;
	if ((r = cf_keyq_check_csr(&kq, cf_ca_policy(q->d->ca), csr)) != 0)
		goto out;
	if (kq.flags != 0) {
		cf_error_set("CSR refused by key policy: %s", kq.detail);
		r = CF_EREJECTED;
		goto out;
	}
	*code = CF_PROV_CSR_INVALID;
	if ((r = cf_csr_pubkey(&pub, csr)) != 0 || (r = cf_key_fingerprint(q->key_id, pub)) != 0)
		goto out;
	cf_csr_free(q->csr);
	q->csr = csr;
	csr = NULL;
	r = 0;
out:
	cf_key_free(pub);
	cf_csr_free(csr);
	return r;
}

/* Answers with cert (and the chain): the request's accepted reply. */
static int
answer(preq *q, const cf_cert_rec *cert)
{
	cf_prov_accepted acc;
	char *text = NULL;
	int r;

	memset(&acc, 0, sizeof(acc));
	snprintf(acc.thing, sizeof(acc.thing), "%s", cert->thing);
	memcpy(acc.certificate_id, cert->id, sizeof(acc.certificate_id));
	acc.certificate_pem = cert->pem;
	snprintf(acc.client_token, sizeof(acc.client_token), "%s", q->rq.client_token);
	if ((r = cf_ca_chain_pem(q->d->ca, &acc.chain_pem)) == 0 &&
	    (r = cf_prov_encode_accepted(&text, &acc)) == 0)
		publish(q, CF_PROTO_ACCEPTED, text);
	free(acc.chain_pem);
	free(text);
	return r;
}

/* The thing (attributes from the template) and its groups, created when missing. */
static int
ensure_thing(preq *q)
{
	cf_thing_rec t;
	cf_group_rec g;
	size_t i;
	int r;

	memset(&t, 0, sizeof(t));
	memset(&g, 0, sizeof(g));
	r = cf_store_thing_get(q->st, &t, q->thing);
	cf_thing_rec_clear(&t);
	if (r == CF_ENOTFOUND)
		r = cf_store_thing_create(q->st, q->thing, q->t.attributes);
	for (i = 0; r == 0 && i < q->t.n_groups; i++) {
		/* A template's group that does not exist yet becomes a static group. */
		r = cf_store_group_create(q->st, q->t.groups[i], NULL);
		if (r == CF_EEXISTS)
			r = 0;
		if (r == 0)
			r = cf_store_group_add(q->st, q->t.groups[i], q->thing);
	}
	return r;
}

/* ---- the request -------------------------------------------------------------------- */

static void
provision(preq *q)
{
	cf_prov_template_rec trec;
	cf_prov_serial_rec prev, rec;
	cf_thing_rec th;
	cf_cert_rec cert, old;
	cf_prov_code code;
	int64_t total = 0, denied = 0, count = 0;
	size_t i;
	int r, began = 0, reprovision = 0;

	memset(&trec, 0, sizeof(trec));
	memset(&cert, 0, sizeof(cert));
	memset(&old, 0, sizeof(old));
	memset(&prev, 0, sizeof(prev));
	if ((r = cf_store_claim_get(q->st, &q->claim, q->principal)) != 0) {
		reject(q, r == CF_ENOTFOUND ? CF_PROV_INVALID_REQUEST : CF_PROV_INTERNAL_ERROR, "%s",
		    r == CF_ENOTFOUND ? "the sender is not a claim certificate" : cf_error_last());
		goto out;
	}
	q->has_claim = 1;
	if (q->claim.status != CF_CLAIM_ENABLED || disable_pending(q->d, q->principal)) {
		q->claim.status = CF_CLAIM_DISABLED; /* nothing more to act on */
		reject(q, CF_PROV_CLAIM_DISABLED, "the claim certificate is DISABLED (%s)",
		    q->claim.reason[0] ? q->claim.reason : "misuse");
		goto out;
	}
	if ((r = cf_store_prov_template_get(q->st, &trec, q->tmpl_name)) != 0) {
		reject(q, r == CF_ENOTFOUND ? CF_PROV_TEMPLATE_UNKNOWN : CF_PROV_INTERNAL_ERROR,
		    "no provisioning template '%s'", q->tmpl_name);
		goto out;
	}
	if (cf_prov_template_parse(&q->t, trec.name, trec.spec) != 0) {
		reject(q, CF_PROV_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	if (strcmp(q->claim.template_name, q->tmpl_name) != 0) {
		reject(q, CF_PROV_TEMPLATE_MISMATCH, "the claim belongs to template '%s'",
		    q->claim.template_name);
		goto out;
	}
	/* What the serial is, as early as it can be known: attempts are recorded by it. */
	if (cf_prov_params_get(&q->rq.params, q->t.serial_param) != NULL)
		snprintf(q->serial, sizeof(q->serial), "%s",
		    cf_prov_params_get(&q->rq.params, q->t.serial_param));
	if (cf_prov_window_check(&q->t, cf_time_now()) != 0) {
		reject(q, CF_PROV_OUTSIDE_WINDOW, "%s", cf_error_last());
		goto out;
	}
	if (q->t.rate_per_minute > 0 &&
	    cf_store_prov_attempt_count(q->st, &total, &denied, q->principal,
	    cf_time_now() - RATE_WINDOW_S + 1) == 0 && total + 1 > q->t.rate_per_minute) {
		reject(q, CF_PROV_RATE_EXCEEDED, "more than %d requests a minute with this claim",
		    q->t.rate_per_minute);
		goto out;
	}
	for (i = 0; i < q->rq.params.n; i++) {
		if (!cf_prov_pattern_uses(q->t.pattern, q->rq.params.name[i])) {
			reject(q, CF_PROV_PARAMETER_NOT_ALLOWED, "parameter '%s' is not used by template "
			    "%s", q->rq.params.name[i], q->tmpl_name);
			goto out;
		}
	}
	if ((r = cf_prov_name_expand(q->thing, sizeof(q->thing), q->t.pattern, &q->rq.params)) != 0) {
		reject(q, r == CF_ENOTFOUND ? CF_PROV_PARAMETER_MISSING : CF_PROV_PARAMETER_NOT_ALLOWED,
		    "%s", cf_error_last());
		goto out;
	}
	if (!cf_prov_allowed(&q->t, q->serial)) {
		reject(q, CF_PROV_PARAMETER_NOT_ALLOWED, "%s '%s' is not on the allow-list",
		    q->t.serial_param, q->serial);
		goto out;
	}
	if (q->t.hook != NULL && run_hook(q) != 0) {
		reject(q, CF_PROV_PARAMETER_NOT_ALLOWED, "%s", cf_error_last());
		goto out;
	}
	if (check_csr(&code, q) != 0) {
		reject(q, code, "%s", cf_error_last());
		goto out;
	}
	/*
	 * A key seen before: the same device asking again for the certificate
	 * it has not used yet (it lost the answer) gets it again; anything else
	 * is a replay.
	 */
	r = cf_store_prov_serial_find_key(q->st, &prev, q->key_id);
	if (r == 0) {
		if (strcmp(prev.template_name, q->tmpl_name) == 0 && strcmp(prev.serial, q->serial) == 0 &&
		    strcmp(prev.client_id, q->client_id) == 0 &&
		    cf_store_cert_get(q->st, &old, prev.cert_id) == 0 &&
		    old.status == CF_CERT_PENDING_ACTIVATION) {
			cf_log(CF_LOG_INFO, "provisioning repeated", "template=%s serial=%s thing=%s",
			    q->tmpl_name, q->serial, old.thing);
			record_attempt(q, "accepted");
			if (answer(q, &old) != 0)
				cf_log(CF_LOG_ERROR, "cannot answer", "error=%s", cf_error_last());
			goto out;
		}
		reject(q, CF_PROV_REQUEST_REPLAYED, "this CSR's key was already provisioned (serial %s)",
		    prev.serial);
		goto out;
	} else if (r != CF_ENOTFOUND) {
		reject(q, CF_PROV_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	r = cf_store_prov_serial_get(q->st, &prev, q->tmpl_name, q->serial);
	if (r == 0 && !q->t.allow_reprovision) {
		reject(q, CF_PROV_SERIAL_ALREADY_PROVISIONED, "%s %s is already provisioned (thing %s)",
		    q->t.serial_param, q->serial, prev.thing);
		goto out;
	} else if (r != 0 && r != CF_ENOTFOUND) {
		reject(q, CF_PROV_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	reprovision = r == 0;
	/*
	 * The name must be free, or be this serial's own thing: a claim never
	 * gets a certificate for a thing an operator (or another serial) owns.
	 */
	memset(&th, 0, sizeof(th));
	r = cf_store_thing_get(q->st, &th, q->thing);
	cf_thing_rec_clear(&th);
	if (r == 0 && !(reprovision && strcmp(prev.thing, q->thing) == 0)) {
		reject(q, CF_PROV_THING_EXISTS, "thing %s exists and was not provisioned as %s %s",
		    q->thing, q->t.serial_param, q->serial);
		goto out;
	} else if (r != 0 && r != CF_ENOTFOUND) {
		reject(q, CF_PROV_INTERNAL_ERROR, "%s", cf_error_last());
		goto out;
	}
	if (!reprovision && q->t.max_count > 0 &&
	    (cf_store_prov_serial_count(q->st, &count, q->tmpl_name) != 0 || count >= q->t.max_count)) {
		reject(q, CF_PROV_LIMIT_REACHED, "template %s has provisioned its maximum of %d",
		    q->tmpl_name, q->t.max_count);
		goto out;
	}

	/* Thing, groups, certificate, serial and attempt: all or nothing. */
	if ((r = cf_store_begin(q->st)) != 0)
		goto fail;
	began = 1;
	if (reprovision) {
		cf_cert_rec_clear(&old);
		if (cf_store_cert_get(q->st, &old, prev.cert_id) == 0 && old.status != CF_CERT_REVOKED &&
		    (r = cf_store_cert_set_status(q->st, old.id, CF_CERT_INACTIVE, 0)) != 0)
			goto fail;
	}
	if ((r = ensure_thing(q)) != 0 ||
	    (r = cf_ca_issue_parsed(q->d->ca, &cert, q->csr, q->thing, 1,
	    CF_CERT_PENDING_ACTIVATION, 0)) != 0)
		goto fail;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.template_name, sizeof(rec.template_name), "%s", q->tmpl_name);
	snprintf(rec.serial, sizeof(rec.serial), "%s", q->serial);
	snprintf(rec.thing, sizeof(rec.thing), "%s", q->thing);
	memcpy(rec.cert_id, cert.id, sizeof(rec.cert_id));
	memcpy(rec.claim_id, q->claim.cert_id, sizeof(rec.claim_id));
	snprintf(rec.client_id, sizeof(rec.client_id), "%s", q->client_id);
	memcpy(rec.key_id, q->key_id, sizeof(rec.key_id));
	if ((r = cf_store_prov_serial_put(q->st, &rec)) != 0)
		goto fail;
	record_attempt(q, "accepted");
	if ((r = cf_store_commit(q->st)) != 0)
		goto fail;
	began = 0;
	cf_log(CF_LOG_INFO, "thing provisioned", "template=%s serial=%s thing=%s certificate=%s "
	    "client_id=%s", q->tmpl_name, q->serial, q->thing, cert.id, q->client_id);
	if (answer(q, &cert) != 0)
		cf_log(CF_LOG_ERROR, "cannot answer", "error=%s", cf_error_last());
	goto out;
fail:
	if (began)
		cf_store_rollback(q->st);
	began = 0;
	reject(q, r == CF_EREJECTED ? CF_PROV_CSR_INVALID : CF_PROV_INTERNAL_ERROR, "%s",
	    cf_error_last());
out:
	if (began)
		cf_store_rollback(q->st);
	cf_cert_rec_clear(&old);
	cf_cert_rec_clear(&cert);
	cf_prov_template_rec_clear(&trec);
}

void
cfd_prov_on_message(cfd *d, const char *topic, const void *payload, size_t len,
    const char *principal, const char *client_id)
{
	preq q;

	memset(&q, 0, sizeof(q));
	q.d = d;
	q.st = cf_ca_store(d->ca);
	q.principal = principal;
	q.client_id = client_id;
	if (cf_prov_topic_parse(q.tmpl_name, d->topic_prefix, topic) != 0) {
		cf_log(CF_LOG_WARN, "dropped provisioning message", "topic=%s reason=\"%s\"", topic,
		    cf_error_last());
		return;
	}
	if (cf_prov_decode_request(&q.rq, payload, len) != 0) {
		/* Recorded against the claim like any denial. */
		if (cf_store_claim_get(q.st, &q.claim, principal) == 0)
			q.has_claim = 1;
		reject(&q, CF_PROV_INVALID_REQUEST, "%s", cf_error_last());
	} else {
		provision(&q);
	}
	cf_prov_request_clear(&q.rq);
	cf_prov_template_clear(&q.t);
	cf_csr_free(q.csr);
}

/* ---- connections ------------------------------------------------------------------- */

/* A claim connected: more distinct clients on it at once than its template allows is misuse. */
static void
claim_connected(cfd *d, const char *principal)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_claim_rec cl;
	cf_prov_template_rec trec;
	cf_prov_template t;
	cf_conn_rec *v = NULL;
	size_t n = 0, i, j, distinct = 0;
	char msg[160];

	memset(&trec, 0, sizeof(trec));
	memset(&t, 0, sizeof(t));
	if (cf_store_claim_get(st, &cl, principal) != 0 || cl.status != CF_CLAIM_ENABLED ||
	    cf_store_prov_template_get(st, &trec, cl.template_name) != 0 ||
	    cf_prov_template_parse(&t, trec.name, trec.spec) != 0 ||
	    cf_store_connection_list(st, &v, &n, NULL, 1, 0) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (strcmp(v[i].principal, principal) != 0)
			continue;
		for (j = 0; j < i; j++)
			if (strcmp(v[j].principal, principal) == 0 &&
			    strcmp(v[j].client_id, v[i].client_id) == 0)
				break;
		if (j == i)
			distinct++;
	}
	if (distinct > (size_t)t.max_concurrent) {
		snprintf(msg, sizeof(msg), "the claim is connected from %zu clients at once (at most %d)",
		    distinct, t.max_concurrent);
		disable_claim(d, principal, cl.template_name, cf_prov_code_name(CF_PROV_CONCURRENT_USE),
		    msg);
	}
out:
	cf_conn_recs_free(v, n);
	cf_prov_template_clear(&t);
	cf_prov_template_rec_clear(&trec);
}

void
cfd_prov_connected(cfd *d, const char *kind, const char *client_id, const char *principal)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_cert_rec c;

	memset(&c, 0, sizeof(c));
	if (strcmp(kind, "claim") == 0) {
		claim_connected(d, principal);
		return;
	}
	if (strcmp(kind, "device") != 0 || cf_store_cert_get(st, &c, principal) != 0)
		goto out;
	/* A provisioned device's first connection with its certificate activates it. */
	if (c.status == CF_CERT_PENDING_ACTIVATION && strcmp(c.thing, client_id) == 0) {
		if (cf_store_cert_set_status(st, c.id, CF_CERT_ACTIVE, 0) != 0)
			cf_log(CF_LOG_ERROR, "cannot activate certificate", "thing=%s certificate=%s "
			    "error=%s", client_id, c.id, cf_error_last());
		else
			cf_log(CF_LOG_INFO, "provisioned certificate activated", "thing=%s certificate=%s",
			    client_id, c.id);
	}
out:
	cf_cert_rec_clear(&c);
}

/* ---- the sweep ----------------------------------------------------------------------- */

/* One serial whose certificate was never used in time: certificate, thing and serial go. */
static int
sweep_one(cf_store *st, const cf_prov_serial_rec *s, const cf_cert_rec *c)
{
	int r;

	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = cf_store_cert_set_status(st, c->id, CF_CERT_INACTIVE, 0)) != 0)
		goto end;
	/* The thing goes too unless it holds another live certificate (re-provisioning). */
	r = cf_store_thing_delete(st, s->thing);
	if (r == CF_ESTATE || r == CF_ENOTFOUND)
		r = 0;
	if (r == 0)
		r = cf_store_prov_serial_delete(st, s->template_name, s->serial,
		    "certificate never activated");
end:
	if (r == 0)
		return cf_store_commit(st);
	cf_store_rollback(st);
	return r;
}

int
cfd_prov_sweep(cfd *d, int64_t now)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_prov_serial_rec *v = NULL;
	cf_prov_template_rec trec;
	cf_prov_template t;
	cf_cert_rec c;
	size_t n = 0, i;
	int r, swept = 0;

	memset(&trec, 0, sizeof(trec));
	memset(&t, 0, sizeof(t));
	memset(&c, 0, sizeof(c));
	if ((r = cf_store_prov_serial_list(st, &v, &n, NULL, 0)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		cf_cert_rec_clear(&c);
		if (cf_store_cert_get(st, &c, v[i].cert_id) != 0 || c.status != CF_CERT_PENDING_ACTIVATION)
			continue;
		if (strcmp(trec.name, v[i].template_name) != 0) {
			cf_prov_template_clear(&t);
			cf_prov_template_rec_clear(&trec);
			if (cf_store_prov_template_get(st, &trec, v[i].template_name) != 0 ||
			    cf_prov_template_parse(&t, trec.name, trec.spec) != 0)
				continue;
		}
		if (now - v[i].at < t.pending_s && (t.window_end == 0 || now < t.window_end))
			continue;
		if ((r = sweep_one(st, &v[i], &c)) != 0) {
			cf_log(CF_LOG_ERROR, "cannot sweep a provisioned certificate", "thing=%s error=%s",
			    v[i].thing, cf_error_last());
			continue;
		}
		swept++;
		cf_log(CF_LOG_INFO, "unused provisioned certificate deleted", "template=%s serial=%s "
		    "thing=%s certificate=%s", v[i].template_name, v[i].serial, v[i].thing, c.id);
	}
	r = swept;
out:
	cf_cert_rec_clear(&c);
	cf_prov_template_clear(&t);
	cf_prov_template_rec_clear(&trec);
	free(v);
	return r;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (cfd_prov_sweep(arg, cf_time_now()) < 0)
		cf_log(CF_LOG_ERROR, "provisioning sweep failed", "error=%s", cf_error_last());
}

int
cfd_prov_start(cfd *d)
{
	long period;
	struct timeval tv;
	cfd_prov *p;
	int r;

	if ((r = cf_config_get_int(&period, cf_ca_config(d->ca), "provision_sweep_s", 1, 86400, 60)) != 0)
		return r;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	d->prov = p;
	tv.tv_sec = period;
	tv.tv_usec = 0;
	if ((p->tick = event_new(d->base, -1, EV_PERSIST, on_tick, d)) == NULL ||
	    (p->later = evtimer_new(d->base, on_later, d)) == NULL || event_add(p->tick, &tv) != 0) {
		cfd_prov_stop(d);
		cf_error_set("cannot start the provisioning sweep's timer");
		return CF_ERROR;
	}
	return 0;
}

void
cfd_prov_stop(cfd *d)
{
	if (d->prov == NULL)
		return;
	if (d->prov->tick != NULL)
		event_free(d->prov->tick);
	/* Disables not yet done are done now: misuse is never forgotten by a stop. */
	if (d->prov->later != NULL) {
		event_free(d->prov->later);
		d->prov->later = NULL;
		on_later(-1, 0, d);
	}
	free(d->prov);
	d->prov = NULL;
}
