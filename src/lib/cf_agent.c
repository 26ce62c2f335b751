/*
 * cf_agent — the rotation state machine of the device (DESIGN §6): a table
 * of states with entry, message, connect and timeout handlers, a durable
 * journal written before every side effect, and recovery that re-enters
 * the journal's state. Owns the journal file; borrows the key store and
 * the transport. Messages go through cf_proto. docs/agent.md describes the
 * states and the rules.
 */
#include "cf_agent.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_base64.h"
#include "cf_proto.h"
#include "cf_util.h"

#define REASON_MAX 256
#define AGENT_PATH_MAX 1024
#define STAY CF_AGENT__COUNT /* a handler's "no transition" */

/* What survives a power cut: written whole before each side effect. */
typedef struct {
	cf_agent_state state;
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	int64_t execution_number;
	int64_t version_number;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	unsigned old_gen, new_gen;
	int switched;          /* the new pair has been made active at least once */
	int canceled;          /* the server ended the execution before commit: no FAILED report */
	char certificate_id[CF_ID_LEN + 1];
	int attempts;          /* sends of the current state's request */
	char reason[REASON_MAX];
} journal;

struct cf_agent {
	journal j;
	cf_keystore *ks;
	cf_agent_transport t;
	char thing[CF_NAME_MAX + 1];
	char prefix[64];
	char journal_path[AGENT_PATH_MAX];
	char *ca_chain_pem;
	/*
	 * ca_chain_pem parsed (or the embedder's shared parse, o->ca_certs),
	 * on the first certificate check, and kept: it never changes for this
	 * agent, and decoding certificates is the dearest part of a check in
	 * OpenSSL 3.0 (docs/agent.md). Whether each one is self-signed (a
	 * trusted root) beside it.
	 */
	cf_cert *const *trusted;
	cf_cert **trusted_own; /* trusted, when the agent parsed it itself */
	int *trusted_root;
	size_t n_trusted;
	int timeout_s[CF_AGENT__COUNT];
	int max_attempts;
	int (*journal_hook)(void *arg, cf_agent_state state);
	void *hook_arg;
	int connected;
	int halted; /* the test hook simulated a power cut */
	int64_t now, deadline;
};

/* A message on one of the thing's topics: its parsed topic and the raw payload. */
typedef struct {
	cf_proto_topic topic;
	int accepted; /* .../accepted (notify-next counts as accepted) */
	const void *payload;
	size_t len;
} agent_msg;

static int journal_write(cf_agent *a);

/* ---- messages (cf_proto) ------------------------------------------------ */

/* A custody signature over msg with generation gen's key: its key algorithm's default, base64. */
static int
custody_sign(char **out, cf_agent *a, unsigned gen, const char *msg)
{
	int r;
	cf_key *pub = NULL;
	cf_key_alg alg;
	unsigned char *sig = NULL;
	size_t sig_len = 0;

	if ((r = a->ks->ops->public_key(a->ks->st, &pub, gen)) != 0 || (r = cf_key_alg_of(&alg, pub)) != 0 ||
	    (r = a->ks->ops->sign(a->ks->st, &sig, &sig_len, gen, cf_sig_alg_default(alg), msg,
	    strlen(msg))) != 0 || (r = cf_base64_encode(out, sig, sig_len)) != 0)
		goto out;
out:
	free(sig);
	cf_key_free(pub);
	return r;
}

/*
 * Publishes payload (owned, freed here) as a request of kind. Failures are
 * not errors: the request is sent again on connect and on its timeout.
 */
static void
send_request(cf_agent *a, cf_proto_kind kind, char *payload)
{
	cf_proto_topic t;
	char topic[CF_PROTO_TOPIC_MAX];

	memset(&t, 0, sizeof(t));
	snprintf(t.thing, sizeof(t.thing), "%s", a->thing);
	t.kind = kind;
	t.reply = CF_PROTO_REQUEST;
	if (kind == CF_PROTO_UPDATE)
		snprintf(t.job_id, sizeof(t.job_id), "%s", a->j.job_id);
	if (payload != NULL && a->connected &&
	    cf_proto_topic_format(topic, sizeof(topic), a->prefix, &t) == 0)
		(void)a->t.publish(a->t.arg, topic, payload);
	free(payload);
}

static void
send_update(cf_agent *a, cf_exec_status status)
{
	cf_proto_update u;
	char *payload = NULL;

	memset(&u, 0, sizeof(u));
	u.status = status;
	u.expected_version = a->j.version_number;
	if ((status != CF_EXEC_FAILED || cf_proto_update_set_detail(&u, "reason", a->j.reason) == 0) &&
	    cf_proto_encode_update(&payload, &u) == 0)
		send_request(a, CF_PROTO_UPDATE, payload);
	cf_proto_update_clear(&u);
}

static void
send_next_get(cf_agent *a)
{
	cf_proto_next_get m;
	char *payload = NULL;

	memset(&m, 0, sizeof(m));
	if (cf_proto_encode_next_get(&payload, &m) == 0)
		send_request(a, CF_PROTO_NEXT_GET, payload);
}

static void set_reason(cf_agent *a, const char *fmt, ...) CF_PRINTF(2, 3);

/* A rejection's "errorCode: errorMessage" into the journal's reason. */
static void
set_reason_from(cf_agent *a, const char *what, const agent_msg *m)
{
	cf_proto_rejection rej;

	if (cf_proto_decode_rejection(&rej, m->payload, m->len, NULL) != 0)
		set_reason(a, "%s rejected (unreadable answer)", what);
	else
		set_reason(a, "%s rejected: %s: %s", what, cf_proto_code_name(rej.code), rej.message);
}

static void
set_reason(cf_agent *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->j.reason, sizeof(a->j.reason), fmt, ap);
	va_end(ap);
}

/*
 * 1 if m says that our execution is no longer the thing's current one —
 * the server canceled (force-canceled) or timed it out: a notify-next or
 * $next/get answer that shows another execution or none, or a rejection of
 * our update, create or commit with TerminalStateReached or NotInProgress.
 * The reason goes into the journal.
 */
static int
execution_gone(cf_agent *a, const agent_msg *m)
{
	cf_proto_execution ex;
	cf_proto_rejection rej;
	json_t *root = NULL;
	const char *id = NULL;
	json_int_t en = 0;
	int gone = 0;

	switch (m->topic.kind) {
	case CF_PROTO_NOTIFY_NEXT:
	case CF_PROTO_NEXT_GET:
		if (!m->accepted)
			break;
		if (cf_proto_decode_execution(&ex, m->payload, m->len, NULL) == 0) {
			gone = !ex.present || strcmp(ex.job_id, a->j.job_id) != 0 ||
			    ex.execution_number != a->j.execution_number ||
			    (ex.status != CF_EXEC_QUEUED && ex.status != CF_EXEC_IN_PROGRESS);
		} else if ((root = json_loadb(m->payload, m->len, 0, NULL)) != NULL &&
		    json_unpack(root, "{s:{s:s, s:I}}", "execution", "jobId", &id, "executionNumber",
		    &en) == 0) {
			/* Another execution whose document this device cannot read; garbage is ignored. */
			gone = strcmp(id, a->j.job_id) != 0 || en != a->j.execution_number;
		}
		if (gone)
			set_reason(a, "canceled by the server: %s no longer shows execution %lld of %s",
			    m->topic.kind == CF_PROTO_NOTIFY_NEXT ? "notify-next" : "$next/get",
			    (long long)a->j.execution_number, a->j.job_id);
		break;
	case CF_PROTO_UPDATE:
	case CF_PROTO_CREATE:
	case CF_PROTO_COMMIT:
		if (m->accepted || (m->topic.kind == CF_PROTO_UPDATE &&
		    strcmp(m->topic.job_id, a->j.job_id) != 0) ||
		    cf_proto_decode_rejection(&rej, m->payload, m->len, NULL) != 0 ||
		    (rej.code != CF_PROTO_TERMINAL_STATE_REACHED && rej.code != CF_PROTO_NOT_IN_PROGRESS))
			break;
		gone = 1;
		set_reason(a, "canceled by the server: %s rejected: %s: %s",
		    m->topic.kind == CF_PROTO_UPDATE ? "update" :
		    m->topic.kind == CF_PROTO_CREATE ? "create" : "commit",
		    cf_proto_code_name(rej.code), rej.message);
		break;
	default:
		break;
	}
	json_decref(root);
	return gone;
}

/*
 * Before COMMITTED a terminal execution means: undo what was done on the
 * device and say nothing (the server already ended it; a FAILED would be
 * refused). Nothing to undo before a key was made.
 */
static cf_agent_state
cancel_rotation(cf_agent *a)
{
	a->j.canceled = 1;
	return a->j.old_gen == 0 ? CF_AGENT_DONE : CF_AGENT_ROLLING_BACK;
}

/* ---- handlers --------------------------------------------------------- */

static cf_agent_state
idle_enter(cf_agent *a)
{
	send_next_get(a);
	return STAY;
}

/* A rotation execution in notify-next or $next/get/accepted becomes our job. */
static cf_agent_state
idle_message(cf_agent *a, const agent_msg *m)
{
	cf_proto_execution ex;
	json_t *root = NULL;
	const char *id = NULL;
	json_int_t en = 0, vn = 0;
	char why[REASON_MAX];
	cf_agent_state next = STAY;

	if ((m->topic.kind != CF_PROTO_NOTIFY_NEXT && m->topic.kind != CF_PROTO_NEXT_GET) || !m->accepted)
		return STAY;
	if (cf_proto_decode_execution(&ex, m->payload, m->len, NULL) != 0) {
		/*
		 * An execution this device cannot run (another operation, an unknown
		 * algorithm): fail it with the reason rather than leave it queued.
		 */
		snprintf(why, sizeof(why), "job document: %s", cf_error_last());
		if ((root = json_loadb(m->payload, m->len, 0, NULL)) == NULL ||
		    json_unpack(root, "{s:{s:s, s:I, s:I}}", "execution", "jobId", &id, "executionNumber",
		    &en, "versionNumber", &vn) != 0 || !cf_proto_job_id_valid(id) ||
		    (strcmp(id, a->j.job_id) == 0 && en == a->j.execution_number))
			goto out;
		memset(&a->j, 0, sizeof(a->j));
		snprintf(a->j.job_id, sizeof(a->j.job_id), "%s", id);
		snprintf(a->j.reason, sizeof(a->j.reason), "%s", why);
		a->j.execution_number = en;
		a->j.version_number = vn;
		next = CF_AGENT_REPORTING_FAILURE;
		goto out;
	}
	if (!ex.present || (ex.status != CF_EXEC_QUEUED && ex.status != CF_EXEC_IN_PROGRESS))
		goto out;
	/* The execution this agent just ended (e.g. its IN_PROGRESS was refused) is not retried. */
	if (strcmp(ex.job_id, a->j.job_id) == 0 && ex.execution_number == a->j.execution_number)
		goto out;
	memset(&a->j, 0, sizeof(a->j));
	snprintf(a->j.job_id, sizeof(a->j.job_id), "%s", ex.job_id);
	a->j.execution_number = ex.execution_number;
	a->j.version_number = ex.version_number;
	a->j.key_alg = ex.doc.key_alg;
	a->j.sig_alg = ex.doc.sig_alg;
	next = CF_AGENT_IN_PROGRESS_SENT;
out:
	json_decref(root);
	return next;
}

static cf_agent_state
in_progress_enter(cf_agent *a)
{
	send_update(a, CF_EXEC_IN_PROGRESS);
	return STAY;
}

static int
update_reply_ours(const cf_agent *a, const agent_msg *m)
{
	return m->topic.kind == CF_PROTO_UPDATE && strcmp(m->topic.job_id, a->j.job_id) == 0;
}

static cf_agent_state
in_progress_message(cf_agent *a, const agent_msg *m)
{
	cf_proto_update_accepted acc;
	cf_proto_rejection rej;

	if (execution_gone(a, m))
		return cancel_rotation(a);
	if (!update_reply_ours(a, m))
		return STAY;
	if (!m->accepted && cf_proto_decode_rejection(&rej, m->payload, m->len, NULL) == 0 &&
	    rej.code == CF_PROTO_VERSION_MISMATCH && rej.has_state &&
	    rej.state.status == CF_EXEC_IN_PROGRESS) {
		/* Our first IN_PROGRESS was applied and its answer lost (a restart): carry on. */
		a->j.version_number = rej.state.version_number;
		return CF_AGENT_KEY_GENERATED;
	}
	if (!m->accepted) {
		/* Nothing changed on the device: the job is not ours to run now. */
		set_reason_from(a, "update IN_PROGRESS", m);
		return CF_AGENT_DONE;
	}
	if (cf_proto_decode_update_accepted(&acc, m->payload, m->len, NULL) == 0)
		a->j.version_number = acc.state.version_number;
	return CF_AGENT_KEY_GENERATED;
}

static cf_agent_state
key_enter(cf_agent *a)
{
	cf_keystore_status s;

	if (a->ks->ops->status(a->ks->st, &s) != 0) {
		set_reason(a, "key store: %s", cf_error_last());
		return CF_AGENT_ROLLING_BACK;
	}
	/* Nothing was switched yet, so the active generation is the old pair. */
	a->j.old_gen = s.active;
	if (a->ks->ops->generate(a->ks->st, &a->j.new_gen, a->j.key_alg) != 0) {
		set_reason(a, "key generation failed: %s", cf_error_last());
		return CF_AGENT_ROLLING_BACK;
	}
	return CF_AGENT_CREATE_SENT;
}

/* CREATE_SENT's entry: a CSR from the pending key, signed for custody with the old key. */
static cf_agent_state
create_enter(cf_agent *a)
{
	char *csr = NULL, *sig = NULL, *payload = NULL, msg[CF_PROTO_CUSTODY_MAX];
	cf_agent_state next = STAY;
	cf_proto_create c;

	if (a->ks->ops->csr(a->ks->st, &csr, a->j.new_gen, a->j.sig_alg, a->thing) != 0 ||
	    cf_proto_custody_create_msg(msg, a->j.job_id, a->thing, csr, strlen(csr)) != 0 ||
	    custody_sign(&sig, a, a->j.old_gen, msg) != 0)
		goto fail;
	memset(&c, 0, sizeof(c));
	snprintf(c.job_id, sizeof(c.job_id), "%s", a->j.job_id);
	c.csr = csr;
	c.csr_len = strlen(csr);
	c.signature = sig;
	if (cf_proto_encode_create(&payload, &c) != 0)
		goto fail;
	send_request(a, CF_PROTO_CREATE, payload);
	goto out;
fail:
	set_reason(a, "cannot make the create request: %s", cf_error_last());
	next = CF_AGENT_ROLLING_BACK;
out:
	free(csr);
	free(sig);
	return next;
}

#define MAX_CHAIN 16

/* Appends pem to *buf (malloc'ed, NUL-terminated). */
static int
append_pem(char **buf, size_t *len, const char *pem)
{
	size_t n = strlen(pem);
	char *p;

	if ((p = realloc(*buf, *len + n + 1)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	memcpy(p + *len, pem, n + 1);
	*buf = p;
	*len += n;
	return 0;
}

/* 1 if a certificate with c's fingerprint is among list[0..n). */
static int
cert_listed(const cf_cert *c, cf_cert *const *list, size_t n)
{
	char a[CF_ID_LEN + 1], b[CF_ID_LEN + 1];
	size_t i;

	if (cf_cert_fingerprint(a, c) != 0)
		return 0;
	for (i = 0; i < n; i++)
		if (cf_cert_fingerprint(b, list[i]) == 0 && strcmp(a, b) == 0)
			return 1;
	return 0;
}

/* The device's own CA file, parsed once (a->trusted); 0 or an error. */
static int
trusted_load(cf_agent *a)
{
	cf_cert_info ci;
	size_t i;
	int r;

	if (a->trusted_root != NULL)
		return 0;
	if (a->trusted == NULL) {
		if ((r = cf_cert_parse_bundle(&a->trusted_own, &a->n_trusted, a->ca_chain_pem,
		    strlen(a->ca_chain_pem))) != 0)
			return r;
		a->trusted = a->trusted_own;
	}
	if ((a->trusted_root = calloc(a->n_trusted + 1, sizeof(*a->trusted_root))) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto fail;
	}
	for (i = 0; i < a->n_trusted; i++) {
		if ((r = cf_cert_info_get(&ci, a->trusted[i])) != 0)
			goto fail;
		a->trusted_root[i] = ci.self_signed;
	}
	return 0;
fail:
	free(a->trusted_root);
	a->trusted_root = NULL;
	if (a->trusted_own != NULL) {
		cf_cert_list_free(a->trusted_own, a->n_trusted);
		a->trusted_own = NULL;
		a->trusted = NULL;
		a->n_trusted = 0;
	}
	return r;
}

/*
 * The issued certificate must hold the pending key, be the id the server
 * named, name the thing (CN and SAN URI), and chain (clientAuth) to a root
 * of the device's own CA file. Intermediates may come from the device's
 * current chain or from the reply's chainPem (an intermediate roll-over);
 * a root from the reply is never trusted. *chain_out (caller frees) is the
 * CA chain for the new generation: the received intermediates that chain
 * to a trusted root and are not known yet, then the current chain.
 *
 * Outside a roll-over the three chains are the same text; a chain equal to
 * one already parsed is not parsed again (its certificates would add
 * nothing: not roots, intermediates already listed, nothing new).
 */
static int
verify_cert(char **chain_out, cf_agent *a, const char *pem, const char *id, const char *chain_pem)
{
	int r;
	cf_cert *cert = NULL, **current = NULL, **extra = NULL;
	cf_cert *const *cur_list;
	cf_cert *ints[3 * MAX_CHAIN], *roots[MAX_CHAIN];
	size_t n_current = 0, n_cur_list, n_extra = 0, n_int = 0, n_roots = 0, i, len = 0;
	cf_key *pub = NULL;
	cf_cert_info info, ci;
	char *cur_pem = NULL, *chain = NULL, *p = NULL;

	*chain_out = NULL;
	if ((r = cf_cert_parse(&cert, pem, strlen(pem))) != 0 ||
	    (r = a->ks->ops->public_key(a->ks->st, &pub, a->j.new_gen)) != 0)
		goto out;
	if (!cf_cert_matches_key(cert, pub)) {
		cf_error_set("the certificate does not hold the new key");
		r = CF_EREJECTED;
		goto out;
	}
	if ((r = cf_cert_info_get(&info, cert)) != 0)
		goto out;
	if (id == NULL || strcmp(info.id, id) != 0) {
		cf_error_set("the certificate is not %s (got %.16s)", id ? id : "(no id)", info.id);
		r = CF_EREJECTED;
		goto out;
	}
	/* Every name the device profile writes (CN and SAN URI) must be this thing. */
	if ((r = cf_cert_check_thing(cert, a->thing)) != 0) {
		cf_error_prefix("not a certificate for thing %s", a->thing);
		goto out;
	}
	/* The chain in use: the key store's for the old generation, else the CA file. */
	if (a->ks->ops->chain == NULL || a->ks->ops->chain(a->ks->st, &cur_pem, a->j.old_gen) != 0) {
		free(cur_pem);
		if ((cur_pem = strdup(a->ca_chain_pem)) == NULL) {
			cf_error_set("out of memory");
			r = CF_ERROR;
			goto out;
		}
	}
	if ((r = trusted_load(a)) != 0)
		goto out;
	/* Only the device's own CA file decides which roots are trusted. */
	for (i = 0; i < a->n_trusted; i++)
		if (a->trusted_root[i] && n_roots < MAX_CHAIN)
			roots[n_roots++] = a->trusted[i];
		else if (!a->trusted_root[i] && n_int < sizeof(ints) / sizeof(ints[0]))
			ints[n_int++] = a->trusted[i];
	cur_list = a->trusted;
	n_cur_list = a->n_trusted;
	if (strcmp(cur_pem, a->ca_chain_pem) != 0) {
		if ((r = cf_cert_parse_bundle(&current, &n_current, cur_pem, strlen(cur_pem))) != 0)
			goto out;
		cur_list = current;
		n_cur_list = n_current;
	}
	if (chain_pem != NULL && chain_pem[0] != '\0' && strcmp(chain_pem, cur_pem) != 0 &&
	    (r = cf_cert_parse_bundle(&extra, &n_extra, chain_pem, strlen(chain_pem))) != 0)
		goto out;
	for (i = 0; i < n_current + n_extra; i++) {
		cf_cert *c = i < n_current ? current[i] : extra[i - n_current];

		if ((r = cf_cert_info_get(&ci, c)) != 0)
			goto out;
		if (!ci.self_signed && n_int < sizeof(ints) / sizeof(ints[0]))
			ints[n_int++] = c;
	}
	if ((r = cf_pki_verify_chain(cert, ints, n_int, roots, n_roots, NULL, 0, 1)) != 0)
		goto out;
	/* New intermediates: CAs from the reply that chain to a trusted root themselves. */
	for (i = 0; i < n_extra; i++) {
		if (cf_cert_info_get(&ci, extra[i]) != 0 || ci.self_signed || !ci.is_ca ||
		    cert_listed(extra[i], cur_list, n_cur_list) ||
		    cf_pki_verify_chain(extra[i], ints, n_int, roots, n_roots, NULL, 0, 0) != 0)
			continue;
		if ((r = cf_cert_to_pem(&p, extra[i])) != 0 || (r = append_pem(&chain, &len, p)) != 0)
			goto out;
		free(p);
		p = NULL;
	}
	if ((r = append_pem(&chain, &len, cur_pem)) != 0)
		goto out;
	*chain_out = chain;
	chain = NULL;
out:
	free(p);
	free(chain);
	free(cur_pem);
	cf_cert_list_free(current, n_current);
	cf_cert_list_free(extra, n_extra);
	cf_key_free(pub);
	cf_cert_free(cert);
	return r;
}

static cf_agent_state
create_message(cf_agent *a, const agent_msg *m)
{
	cf_proto_create_accepted acc;
	cf_agent_state next = CF_AGENT_ROLLING_BACK;
	char *chain = NULL;

	memset(&acc, 0, sizeof(acc));
	if (execution_gone(a, m))
		return cancel_rotation(a);
	if (m->topic.kind != CF_PROTO_CREATE)
		return STAY;
	if (!m->accepted) {
		set_reason_from(a, "create", m);
		goto out;
	}
	if (cf_proto_decode_create_accepted(&acc, m->payload, m->len, NULL) != 0 ||
	    verify_cert(&chain, a, acc.certificate_pem, acc.certificate_id, acc.chain_pem) != 0) {
		set_reason(a, "certificate refused: %s", cf_error_last());
		goto out;
	}
	/*
	 * Installing into the pending generation changes nothing in use; it is
	 * redone safely. The chain first: once the certificate is there the
	 * generation counts as complete, and the switch takes both at once.
	 */
	if (a->ks->ops->install_chain != NULL &&
	    a->ks->ops->install_chain(a->ks->st, a->j.new_gen, chain, strlen(chain)) != 0) {
		set_reason(a, "cannot install the CA chain: %s", cf_error_last());
		goto out;
	}
	if (a->ks->ops->install_cert(a->ks->st, a->j.new_gen, acc.certificate_pem,
	    strlen(acc.certificate_pem)) != 0) {
		set_reason(a, "cannot install the certificate: %s", cf_error_last());
		goto out;
	}
	snprintf(a->j.certificate_id, sizeof(a->j.certificate_id), "%s", acc.certificate_id);
	next = CF_AGENT_CERT_RECEIVED;
out:
	free(chain);
	cf_proto_create_accepted_clear(&acc);
	return next;
}

static cf_agent_state
cert_enter(cf_agent *a)
{
	cf_keystore_status s;

	if (a->ks->ops->status(a->ks->st, &s) != 0 ||
	    (s.active != a->j.new_gen && (s.pending != a->j.new_gen || !s.pending_has_cert))) {
		set_reason(a, "the new pair is missing from the key store");
		return CF_AGENT_ROLLING_BACK;
	}
	return CF_AGENT_SWITCHED;
}

static cf_agent_state
switched_enter(cf_agent *a)
{
	if (a->ks->ops->activate(a->ks->st, a->j.new_gen) != 0) {
		set_reason(a, "cannot switch to the new pair: %s", cf_error_last());
		return CF_AGENT_ROLLING_BACK;
	}
	if (a->t.switched != NULL)
		a->t.switched(a->t.arg, a->j.new_gen);
	return CF_AGENT_RECONNECTING_NEW;
}

static cf_agent_state
reconnect_enter(cf_agent *a)
{
	a->connected = 0;
	(void)a->t.reconnect(a->t.arg);
	return STAY;
}

/* Messages still coming from the old connection: only a cancel matters. */
static cf_agent_state
reconnect_message(cf_agent *a, const agent_msg *m)
{
	return execution_gone(a, m) ? cancel_rotation(a) : STAY;
}

static cf_agent_state
reconnect_connect(cf_agent *a)
{
	(void)a;
	return CF_AGENT_VERIFYING;
}

static cf_agent_state
verify_enter(cf_agent *a)
{
	send_next_get(a);
	return STAY;
}

static cf_agent_state
verify_message(cf_agent *a, const agent_msg *m)
{
	cf_proto_execution ex;

	if (execution_gone(a, m))
		return cancel_rotation(a);
	if (m->topic.kind != CF_PROTO_NEXT_GET)
		return STAY;
	if (!m->accepted) {
		set_reason_from(a, "$next/get on the new connection", m);
		return CF_AGENT_ROLLING_BACK;
	}
	if (cf_proto_decode_execution(&ex, m->payload, m->len, NULL) != 0 || !ex.present ||
	    strcmp(ex.job_id, a->j.job_id) != 0 || ex.status != CF_EXEC_IN_PROGRESS) {
		set_reason(a, "the job is no longer in progress on the new connection");
		return CF_AGENT_ROLLING_BACK;
	}
	a->j.version_number = ex.version_number;
	return CF_AGENT_COMMIT_SENT;
}

static cf_agent_state
commit_enter(cf_agent *a)
{
	char msg[CF_PROTO_CUSTODY_MAX], *payload = NULL;
	cf_proto_commit c;
	cf_agent_state next = STAY;

	memset(&c, 0, sizeof(c));
	if (cf_proto_custody_commit_msg(msg, a->j.job_id, a->thing, a->j.certificate_id) != 0 ||
	    custody_sign(&c.signature, a, a->j.new_gen, msg) != 0)
		goto fail;
	snprintf(c.job_id, sizeof(c.job_id), "%s", a->j.job_id);
	snprintf(c.certificate_id, sizeof(c.certificate_id), "%s", a->j.certificate_id);
	if (cf_proto_encode_commit(&payload, &c) != 0)
		goto fail;
	send_request(a, CF_PROTO_COMMIT, payload);
	goto out;
fail:
	set_reason(a, "cannot make the commit request: %s", cf_error_last());
	next = CF_AGENT_ROLLING_BACK;
out:
	cf_proto_commit_clear(&c);
	return next;
}

static cf_agent_state
commit_message(cf_agent *a, const agent_msg *m)
{
	if (execution_gone(a, m))
		return cancel_rotation(a);
	if (m->topic.kind != CF_PROTO_COMMIT)
		return STAY;
	if (!m->accepted) {
		set_reason_from(a, "commit", m);
		return CF_AGENT_ROLLING_BACK;
	}
	return CF_AGENT_COMMITTED;
}

static cf_agent_state
committed_enter(cf_agent *a)
{
	(void)a;
	return CF_AGENT_CLEANUP;
}

static cf_agent_state
cleanup_enter(cf_agent *a)
{
	/* A failed cleanup leaves a stale backup, not a wrong pair: the next start retries it. */
	(void)a->ks->ops->cleanup(a->ks->st);
	send_update(a, CF_EXEC_SUCCEEDED);
	return STAY;
}

/* CLEANUP and REPORTING_FAILURE: the final update's answer ends the job. */
static cf_agent_state
final_message(cf_agent *a, const agent_msg *m)
{
	cf_proto_rejection rej;

	if (!update_reply_ours(a, m))
		return STAY;
	if (!m->accepted && cf_proto_decode_rejection(&rej, m->payload, m->len, NULL) == 0 &&
	    rej.code == CF_PROTO_VERSION_MISMATCH && rej.has_state &&
	    rej.state.status == CF_EXEC_IN_PROGRESS && a->j.attempts + 1 < a->max_attempts) {
		/* A stale expectedVersion: resend with the server's. */
		a->j.version_number = rej.state.version_number;
		a->j.attempts++;
		if (journal_write(a) != 0)
			return STAY;
		send_update(a, a->j.state == CF_AGENT_CLEANUP ? CF_EXEC_SUCCEEDED : CF_EXEC_FAILED);
		return STAY;
	}
	return CF_AGENT_DONE;
}

/* The old pair is in place (and connected, if it had to reconnect): report, or not if canceled. */
static cf_agent_state
rollback_finished(cf_agent *a)
{
	if (a->j.canceled)
		return CF_AGENT_DONE;
	return a->connected ? CF_AGENT_REPORTING_FAILURE : STAY;
}

static cf_agent_state
rollback_enter(cf_agent *a)
{
	cf_keystore_status s;
	int moved = 0;

	if (a->j.old_gen == 0) {
		/* Failed before a key was made: nothing on disk to undo. */
		return rollback_finished(a);
	}
	if (a->ks->ops->status(a->ks->st, &s) == 0)
		moved = s.active != a->j.old_gen;
	if (a->ks->ops->rollback(a->ks->st, a->j.old_gen) != 0) {
		/* Retried on the timeout; the journal keeps saying ROLLING_BACK. */
		return STAY;
	}
	if (moved && a->t.switched != NULL)
		a->t.switched(a->t.arg, a->j.old_gen);
	if (a->j.switched || moved) {
		a->connected = 0;
		(void)a->t.reconnect(a->t.arg);
		return STAY;
	}
	return rollback_finished(a);
}

static cf_agent_state
rollback_connect(cf_agent *a)
{
	cf_keystore_status s;

	/* Only once the old pair is back in place. */
	if (a->j.old_gen != 0 && (a->ks->ops->status(a->ks->st, &s) != 0 || s.active != a->j.old_gen))
		return STAY;
	return a->j.canceled ? CF_AGENT_DONE : CF_AGENT_REPORTING_FAILURE;
}

static cf_agent_state
rollback_timeout(cf_agent *a)
{
	return rollback_enter(a);
}

static cf_agent_state
report_enter(cf_agent *a)
{
	send_update(a, CF_EXEC_FAILED);
	return STAY;
}

static cf_agent_state
done_enter(cf_agent *a)
{
	(void)a;
	return CF_AGENT_IDLE;
}

/* Resends the state's request (entry again) until max_attempts, then gives up. */
static cf_agent_state resend_or(cf_agent *a, cf_agent_state give_up, const char *why);

static cf_agent_state
in_progress_timeout(cf_agent *a)
{
	return resend_or(a, CF_AGENT_DONE, "update IN_PROGRESS not answered");
}

static cf_agent_state
create_timeout(cf_agent *a)
{
	return resend_or(a, CF_AGENT_ROLLING_BACK, "create not answered in time");
}

static cf_agent_state
reconnect_timeout(cf_agent *a)
{
	set_reason(a, "the new pair could not connect (refused or no answer)");
	return CF_AGENT_ROLLING_BACK;
}

static cf_agent_state
verify_timeout(cf_agent *a)
{
	/* Resent like create and commit: a broker restart can lose the first one. */
	return resend_or(a, CF_AGENT_ROLLING_BACK, "no $next/get answer on the new connection in time");
}

static cf_agent_state
commit_timeout(cf_agent *a)
{
	return resend_or(a, CF_AGENT_ROLLING_BACK, "commit not answered in time");
}

static cf_agent_state
final_timeout(cf_agent *a)
{
	return resend_or(a, CF_AGENT_DONE, NULL);
}

/* On (re)connect a waiting state sends its request again: entries are idempotent. */
static cf_agent_state
resend_connect(cf_agent *a)
{
	switch (a->j.state) {
	case CF_AGENT_CLEANUP:
		send_update(a, CF_EXEC_SUCCEEDED); /* not cleanup_enter: the backup is gone already */
		return STAY;
	case CF_AGENT_IDLE:
		return idle_enter(a);
	case CF_AGENT_IN_PROGRESS_SENT:
		return in_progress_enter(a);
	case CF_AGENT_CREATE_SENT:
		return create_enter(a);
	case CF_AGENT_VERIFYING:
		return verify_enter(a);
	case CF_AGENT_COMMIT_SENT:
		return commit_enter(a);
	case CF_AGENT_REPORTING_FAILURE:
		return report_enter(a);
	default:
		return STAY;
	}
}

typedef cf_agent_state (*enter_fn)(cf_agent *a);
typedef cf_agent_state (*message_fn)(cf_agent *a, const agent_msg *m);

static const struct {
	enter_fn on_enter;
	message_fn on_message;
	enter_fn on_timeout;
	enter_fn on_connect;
	int timeout_s;
} states[CF_AGENT__COUNT] = {
	[CF_AGENT_IDLE] = {.on_enter = idle_enter, .on_message = idle_message,
	    .on_connect = resend_connect},
	[CF_AGENT_IN_PROGRESS_SENT] = {.on_enter = in_progress_enter, .on_message = in_progress_message,
	    .on_timeout = in_progress_timeout, .on_connect = resend_connect, .timeout_s = 30},
	[CF_AGENT_KEY_GENERATED] = {.on_enter = key_enter},
	[CF_AGENT_CREATE_SENT] = {.on_enter = create_enter, .on_message = create_message,
	    .on_timeout = create_timeout, .on_connect = resend_connect, .timeout_s = 60},
	[CF_AGENT_CERT_RECEIVED] = {.on_enter = cert_enter},
	[CF_AGENT_SWITCHED] = {.on_enter = switched_enter},
	[CF_AGENT_RECONNECTING_NEW] = {.on_enter = reconnect_enter, .on_message = reconnect_message,
	    .on_timeout = reconnect_timeout, .on_connect = reconnect_connect, .timeout_s = 60},
	[CF_AGENT_VERIFYING] = {.on_enter = verify_enter, .on_message = verify_message,
	    .on_timeout = verify_timeout, .on_connect = resend_connect, .timeout_s = 10},
	[CF_AGENT_COMMIT_SENT] = {.on_enter = commit_enter, .on_message = commit_message,
	    .on_timeout = commit_timeout, .on_connect = resend_connect, .timeout_s = 60},
	[CF_AGENT_COMMITTED] = {.on_enter = committed_enter},
	[CF_AGENT_CLEANUP] = {.on_enter = cleanup_enter, .on_message = final_message,
	    .on_timeout = final_timeout, .on_connect = resend_connect, .timeout_s = 30},
	[CF_AGENT_ROLLING_BACK] = {.on_enter = rollback_enter, .on_timeout = rollback_timeout,
	    .on_connect = rollback_connect, .timeout_s = 60},
	[CF_AGENT_REPORTING_FAILURE] = {.on_enter = report_enter, .on_message = final_message,
	    .on_timeout = final_timeout, .on_connect = resend_connect, .timeout_s = 30},
	[CF_AGENT_DONE] = {.on_enter = done_enter},
};

static const char *const state_names[CF_AGENT__COUNT] = {
	[CF_AGENT_IDLE] = "IDLE",
	[CF_AGENT_IN_PROGRESS_SENT] = "IN_PROGRESS_SENT",
	[CF_AGENT_KEY_GENERATED] = "KEY_GENERATED",
	[CF_AGENT_CREATE_SENT] = "CREATE_SENT",
	[CF_AGENT_CERT_RECEIVED] = "CERT_RECEIVED",
	[CF_AGENT_SWITCHED] = "SWITCHED",
	[CF_AGENT_RECONNECTING_NEW] = "RECONNECTING_NEW",
	[CF_AGENT_VERIFYING] = "VERIFYING",
	[CF_AGENT_COMMIT_SENT] = "COMMIT_SENT",
	[CF_AGENT_COMMITTED] = "COMMITTED",
	[CF_AGENT_CLEANUP] = "CLEANUP",
	[CF_AGENT_ROLLING_BACK] = "ROLLING_BACK",
	[CF_AGENT_REPORTING_FAILURE] = "REPORTING_FAILURE",
	[CF_AGENT_DONE] = "DONE",
};

const char *
cf_agent_state_name(cf_agent_state s)
{
	return (unsigned)s < CF_AGENT__COUNT ? state_names[s] : "UNKNOWN";
}

static int
state_parse(cf_agent_state *out, const char *name)
{
	int i;

	for (i = 0; name != NULL && i < CF_AGENT__COUNT; i++)
		if (strcmp(state_names[i], name) == 0) {
			*out = (cf_agent_state)i;
			return 0;
		}
	return CF_EINVAL;
}

static int
timeout_of(const cf_agent *a, cf_agent_state s)
{
	return a->timeout_s[s] > 0 ? a->timeout_s[s] : states[s].timeout_s;
}

static cf_agent_state
resend_or(cf_agent *a, cf_agent_state give_up, const char *why)
{
	if (a->j.attempts + 1 >= a->max_attempts) {
		if (why != NULL)
			set_reason(a, "%s", why);
		return give_up;
	}
	a->j.attempts++;
	if (journal_write(a) != 0)
		return STAY;
	return resend_connect(a);
}

/* ---- journal ---------------------------------------------------------- */

static int
journal_write(cf_agent *a)
{
	int r;
	char *text = NULL;
	json_t *o;

	o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:s, s:s, s:i, s:i, s:b, s:b, s:s, s:i, s:s}",
	    "version", 1, "state", cf_agent_state_name(a->j.state), "jobId", a->j.job_id,
	    "executionNumber", (json_int_t)a->j.execution_number,
	    "versionNumber", (json_int_t)a->j.version_number,
	    "keyAlgorithm", cf_key_alg_name(a->j.key_alg), "signingAlgorithm", cf_sig_alg_name(a->j.sig_alg),
	    "oldGeneration", (int)a->j.old_gen, "newGeneration", (int)a->j.new_gen,
	    "switched", a->j.switched, "canceled", a->j.canceled, "certificateId", a->j.certificate_id,
	    "attempts", a->j.attempts, "reason", a->j.reason);
	if (o == NULL || (text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER)) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	r = cf_file_write_atomic(a->journal_path, text, strlen(text), 0600);
out:
	free(text);
	json_decref(o);
	return r;
}

static int
journal_read(cf_agent *a)
{
	int r;
	char *text = NULL;
	json_t *o = NULL;
	json_error_t err;
	const char *st = NULL, *job = "", *cid = "", *reason = "", *kname = NULL, *sname = NULL;
	json_int_t en = 0, vn = 0;
	int version = 0, og = 0, ng = 0, sw = 0, cancel = 0, att = 0;

	memset(&a->j, 0, sizeof(a->j));
	if ((r = cf_file_read(&text, NULL, a->journal_path, 65536)) != 0) {
		if (r == CF_ENOTFOUND) {
			a->j.state = CF_AGENT_IDLE;
			r = 0;
		}
		goto out;
	}
	if ((o = json_loads(text, 0, &err)) == NULL ||
	    json_unpack(o, "{s:i, s:s, s:s, s:I, s:I, s:s, s:s, s:i, s:i, s:b, s?b, s:s, s:i, s:s}",
	    "version", &version, "state", &st, "jobId", &job, "executionNumber", &en,
	    "versionNumber", &vn, "keyAlgorithm", &kname, "signingAlgorithm", &sname,
	    "oldGeneration", &og, "newGeneration", &ng, "switched", &sw, "canceled", &cancel,
	    "certificateId", &cid,
	    "attempts", &att, "reason", &reason) != 0 || version != 1 ||
	    state_parse(&a->j.state, st) != 0 || strlen(job) > CF_PROTO_JOB_ID_MAX || strlen(cid) > CF_ID_LEN ||
	    og < 0 || ng < 0 || cf_key_alg_parse(&a->j.key_alg, kname) != 0 ||
	    cf_sig_alg_parse(&a->j.sig_alg, sname) != 0) {
		cf_error_set("%s: not a valid agent journal", a->journal_path);
		r = CF_ECORRUPT;
		goto out;
	}
	snprintf(a->j.job_id, sizeof(a->j.job_id), "%s", job);
	snprintf(a->j.certificate_id, sizeof(a->j.certificate_id), "%s", cid);
	snprintf(a->j.reason, sizeof(a->j.reason), "%s", reason);
	a->j.execution_number = en;
	a->j.version_number = vn;
	a->j.old_gen = (unsigned)og;
	a->j.new_gen = (unsigned)ng;
	a->j.switched = sw;
	a->j.canceled = cancel;
	a->j.attempts = att;
out:
	json_decref(o);
	free(text);
	return r;
}

/* ---- the engine --------------------------------------------------------- */

/*
 * Enters next (and whatever its entry leads to): the journal first, then
 * the entry action. A halted agent does nothing more.
 */
static int
go(cf_agent *a, cf_agent_state next)
{
	int r;

	while (next != STAY) {
		if (next == CF_AGENT_SWITCHED)
			a->j.switched = 1;
		if (next == CF_AGENT_DONE || next == CF_AGENT_IDLE) {
			/* Keep the last job's id and reason for cf_agent_reason(); forget the rest. */
			a->j.old_gen = a->j.new_gen = 0;
			a->j.switched = a->j.canceled = 0;
		}
		a->j.state = next;
		a->j.attempts = 0;
		if ((r = journal_write(a)) != 0)
			return r;
		if (a->journal_hook != NULL && a->journal_hook(a->hook_arg, next) != 0) {
			a->halted = 1;
			cf_error_set("agent stopped by the journal hook after writing %s",
			    cf_agent_state_name(next));
			return CF_ESTATE;
		}
		if (a->t.now != NULL)
			a->now = a->t.now(a->t.arg);
		a->deadline = timeout_of(a, next) > 0 ? a->now + timeout_of(a, next) : 0;
		next = states[next].on_enter != NULL ? states[next].on_enter(a) : STAY;
	}
	return 0;
}

int
cf_agent_start(cf_agent **out, const cf_agent_opts *o, cf_keystore *ks, const cf_agent_transport *t,
    int64_t now)
{
	int r = CF_EINVAL, i;
	cf_agent *a = NULL;

	if (o->thing == NULL || !cf_name_valid("thing", o->thing) || o->state_dir == NULL ||
	    o->ca_chain_pem == NULL || t->publish == NULL || t->reconnect == NULL) {
		if (o->thing != NULL && cf_name_valid("thing", o->thing))
			cf_error_set("agent options: state_dir, ca_chain_pem, publish and reconnect "
			    "are required");
		goto out;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL || (a->ca_chain_pem = strdup(o->ca_chain_pem)) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	a->ks = ks;
	a->t = *t;
	if (o->ca_certs != NULL && o->n_ca_certs > 0) {
		a->trusted = o->ca_certs;
		a->n_trusted = o->n_ca_certs;
	}
	a->now = now;
	a->max_attempts = o->max_attempts > 0 ? o->max_attempts : 3;
	a->journal_hook = o->journal_hook;
	a->hook_arg = o->hook_arg;
	for (i = 0; i < CF_AGENT__COUNT; i++)
		a->timeout_s[i] = o->timeout_s[i];
	if ((r = cf_strfmt(a->thing, sizeof(a->thing), "%s", o->thing)) != 0 ||
	    (r = cf_strfmt(a->prefix, sizeof(a->prefix), "%s", o->prefix ? o->prefix : "cf/")) != 0 ||
	    (r = cf_mkdir_p(o->state_dir, 0700)) != 0 ||
	    (r = cf_strfmt(a->journal_path, sizeof(a->journal_path), "%s/agent.journal", o->state_dir)) != 0 ||
	    (r = journal_read(a)) != 0)
		goto out;
	/* Recovery: re-enter the journal's state; every entry action is idempotent. */
	if ((r = go(a, a->j.state)) != 0)
		goto out;
	*out = a;
	a = NULL;
out:
	cf_agent_free(a);
	return r;
}

void
cf_agent_free(cf_agent *a)
{
	if (a == NULL)
		return;
	free(a->ca_chain_pem);
	if (a->trusted_own != NULL)
		cf_cert_list_free(a->trusted_own, a->n_trusted);
	free(a->trusted_root);
	free(a);
}

int
cf_agent_connected(cf_agent *a, int64_t now)
{
	if (a->halted)
		return CF_ESTATE;
	a->now = now;
	a->connected = 1;
	if (states[a->j.state].on_connect == NULL)
		return 0;
	return go(a, states[a->j.state].on_connect(a));
}

int
cf_agent_disconnected(cf_agent *a, int64_t now)
{
	if (a->halted)
		return CF_ESTATE;
	a->now = now;
	a->connected = 0;
	return 0;
}

int
cf_agent_message(cf_agent *a, const char *topic, const void *payload, size_t len, int64_t now)
{
	agent_msg m;

	if (a->halted)
		return CF_ESTATE;
	a->now = now;
	memset(&m, 0, sizeof(m));
	/* Not ours to answer: a device ignores what it cannot read. */
	if (cf_proto_topic_parse(&m.topic, a->prefix, topic, strlen(topic)) != 0 ||
	    strcmp(m.topic.thing, a->thing) != 0 ||
	    (m.topic.reply == CF_PROTO_REQUEST && m.topic.kind != CF_PROTO_NOTIFY_NEXT))
		return 0;
	m.accepted = m.topic.reply != CF_PROTO_REJECTED;
	m.payload = payload;
	m.len = len;
	if (states[a->j.state].on_message == NULL)
		return 0;
	return go(a, states[a->j.state].on_message(a, &m));
}

int
cf_agent_timer(cf_agent *a, int64_t now)
{
	cf_agent_state s = a->j.state;

	if (a->halted)
		return CF_ESTATE;
	a->now = now;
	if (a->deadline == 0 || now < a->deadline || states[s].on_timeout == NULL)
		return 0;
	a->deadline = now + timeout_of(a, s);
	return go(a, states[s].on_timeout(a));
}

int64_t
cf_agent_deadline(const cf_agent *a)
{
	return a->deadline;
}

cf_agent_state
cf_agent_state_get(const cf_agent *a)
{
	return a->j.state;
}

const char *
cf_agent_reason(const cf_agent *a)
{
	return a->j.reason;
}

const char *
cf_agent_job_id(const cf_agent *a)
{
	return a->j.job_id;
}
