/*
 * cf_prov_agent — provisioning by claim on the device (cf_prov_agent.h):
 * the journal, the key store steps and the reply handling. Owns its copy
 * of the options and the journal's contents; the key store is borrowed.
 */
#include "cf_prov_agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cf_util.h"

#define JOURNAL "provision.json"

static const char *const state_names[CF_PROV_AGENT__COUNT] = {
	[CF_PROV_AGENT_NONE] = "none",
	[CF_PROV_AGENT_REQUESTED] = "requested",
	[CF_PROV_AGENT_INSTALLED] = "installed",
	[CF_PROV_AGENT_DONE] = "done",
};

struct cf_prov_agent {
	cf_keystore *ks;
	char template_name[CF_NAME_MAX + 1];
	char prefix[257];
	char state_dir[4096];
	cf_prov_params params;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	int keep_claim;

	/* the journal */
	cf_prov_agent_state state;
	unsigned generation;
	char thing[CF_NAME_MAX + 1];
	char token[CF_PROTO_TOKEN_MAX + 1];
};

static int
journal_path(char *out, size_t len, const char *state_dir)
{
	return cf_strfmt(out, len, "%s/%s", state_dir, JOURNAL);
}

/* Writes the journal durably (cf_file_write_atomic: temp, fsync, rename, fsync dir). */
static int
journal_write(cf_prov_agent *a, cf_prov_agent_state to)
{
	char path[4200], *text = NULL;
	json_t *o;
	int r;

	o = json_pack("{s:s, s:I, s:s, s:s}", "state", state_names[to], "generation",
	    (json_int_t)a->generation, "thing", a->thing, "clientToken", a->token);
	if (o == NULL || (text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	if ((r = journal_path(path, sizeof(path), a->state_dir)) != 0 ||
	    (r = cf_file_write_atomic(path, text, strlen(text), 0600)) != 0)
		goto out;
	a->state = to;
out:
	free(text);
	json_decref(o);
	return r;
}

/* Reads the journal in state_dir into a; none: state NONE. */
static int
journal_read(cf_prov_agent *a, const char *state_dir)
{
	char path[4200], *text = NULL;
	const char *state, *thing, *token;
	json_t *o = NULL;
	json_error_t jerr;
	json_int_t gen;
	size_t len;
	int r, i;

	a->state = CF_PROV_AGENT_NONE;
	if ((r = journal_path(path, sizeof(path), state_dir)) != 0)
		return r;
	if ((r = cf_file_read(&text, &len, path, 65536)) == CF_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	r = CF_ECORRUPT;
	if ((o = json_loadb(text, len, 0, &jerr)) == NULL ||
	    json_unpack(o, "{s:s, s:I, s:s, s:s}", "state", &state, "generation", &gen, "thing", &thing,
	    "clientToken", &token) != 0 || gen < 0 || gen > 1000000 ||
	    strlen(thing) > CF_NAME_MAX || strlen(token) > CF_PROTO_TOKEN_MAX ||
	    (i = cf_name_index(state_names, CF_PROV_AGENT__COUNT, state, 0)) < 0) {
		cf_error_set("%s: not a provisioning journal", path);
		goto out;
	}
	a->state = (cf_prov_agent_state)i;
	a->generation = (unsigned)gen;
	snprintf(a->thing, sizeof(a->thing), "%s", thing);
	snprintf(a->token, sizeof(a->token), "%s", token);
	r = 0;
out:
	json_decref(o);
	free(text);
	return r;
}

int
cf_prov_agent_done_thing(char out[CF_NAME_MAX + 1], const char *state_dir)
{
	cf_prov_agent a;
	int r;

	memset(&a, 0, sizeof(a));
	if ((r = journal_read(&a, state_dir)) != 0)
		return r;
	if (a.state != CF_PROV_AGENT_DONE) {
		cf_error_set("not provisioned yet");
		return CF_ENOTFOUND;
	}
	memcpy(out, a.thing, sizeof(a.thing));
	return 0;
}

/* INSTALLED -> DONE: activate the new generation, drop the claim's, record DONE. */
static int
finish(cf_prov_agent *a)
{
	int r;

	if ((r = a->ks->ops->activate(a->ks->st, a->generation)) != 0)
		return r;
	if (!a->keep_claim && (r = a->ks->ops->cleanup(a->ks->st)) != 0)
		return r;
	return journal_write(a, CF_PROV_AGENT_DONE);
}

int
cf_prov_agent_start(cf_prov_agent **out, const cf_prov_agent_opts *o, cf_keystore *ks)
{
	cf_prov_agent *a = NULL;
	char thing[CF_NAME_MAX + 1];
	int r = CF_EINVAL;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	a->ks = ks;
	if (o->template_name == NULL || !cf_name_valid("template", o->template_name) ||
	    o->state_dir == NULL || o->params == NULL ||
	    cf_strfmt(a->prefix, sizeof(a->prefix), "%s", o->prefix ? o->prefix : "cf/") != 0 ||
	    cf_strfmt(a->state_dir, sizeof(a->state_dir), "%s", o->state_dir) != 0)
		goto out;
	snprintf(a->template_name, sizeof(a->template_name), "%s", o->template_name);
	a->params = *o->params;
	a->key_alg = o->key_alg;
	a->sig_alg = o->sig_alg;
	a->keep_claim = o->keep_claim;
	if ((r = journal_read(a, o->state_dir)) != 0)
		goto out;
	if (a->state == CF_PROV_AGENT_NONE || a->state == CF_PROV_AGENT_REQUESTED) {
		/* The name the server will give: the client id, and the CSR's subject. */
		if ((r = cf_prov_name_expand(thing, sizeof(thing), o->pattern, &a->params)) != 0) {
			cf_error_prefix("provision_name_pattern");
			r = CF_EINVAL;
			goto out;
		}
		if (a->state == CF_PROV_AGENT_REQUESTED && strcmp(thing, a->thing) != 0)
			a->state = CF_PROV_AGENT_NONE; /* other parameters: start over */
		snprintf(a->thing, sizeof(a->thing), "%s", thing);
	}
	if (a->state == CF_PROV_AGENT_INSTALLED && (r = finish(a)) != 0)
		goto out;
	*out = a;
	a = NULL;
	r = 0;
out:
	cf_prov_agent_free(a);
	return r;
}

void
cf_prov_agent_free(cf_prov_agent *a)
{
	free(a);
}

cf_prov_agent_state
cf_prov_agent_state_get(const cf_prov_agent *a)
{
	return a->state;
}

const char *
cf_prov_agent_thing(const cf_prov_agent *a)
{
	return a->thing;
}

int
cf_prov_agent_reply_topics(const cf_prov_agent *a, char **accepted, char **rejected)
{
	char t[CF_PROTO_TOPIC_MAX];
	int r;

	*accepted = *rejected = NULL;
	if ((r = cf_prov_topic_format(t, sizeof(t), a->prefix, a->template_name, a->thing,
	    CF_PROTO_ACCEPTED)) != 0 || (*accepted = strdup(t)) == NULL ||
	    (r = cf_prov_topic_format(t, sizeof(t), a->prefix, a->template_name, a->thing,
	    CF_PROTO_REJECTED)) != 0 || (*rejected = strdup(t)) == NULL) {
		free(*accepted);
		*accepted = NULL;
		return r != 0 ? r : CF_ERROR;
	}
	return 0;
}

int
cf_prov_agent_request(cf_prov_agent *a, char **topic, char **payload)
{
	cf_keystore_status ks;
	cf_prov_request rq;
	unsigned char rnd[12];
	char t[CF_PROTO_TOPIC_MAX];
	size_t i;
	int r;

	*topic = *payload = NULL;
	memset(&rq, 0, sizeof(rq));
	if (a->state == CF_PROV_AGENT_INSTALLED || a->state == CF_PROV_AGENT_DONE) {
		cf_error_set("already provisioned");
		return CF_ESTATE;
	}
	if ((r = a->ks->ops->status(a->ks->st, &ks)) != 0)
		goto out;
	/* A journalled request whose key is still pending is asked for again with that key. */
	if (a->state != CF_PROV_AGENT_REQUESTED || ks.pending != a->generation || a->generation == 0) {
		if ((r = a->ks->ops->generate(a->ks->st, &a->generation, a->key_alg)) != 0 ||
		    (r = cf_random_bytes(rnd, sizeof(rnd))) != 0)
			goto out;
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(a->token + 2 * i, 3, "%02x", rnd[i]);
		if ((r = journal_write(a, CF_PROV_AGENT_REQUESTED)) != 0)
			goto out;
	}
	if ((r = a->ks->ops->csr(a->ks->st, &rq.csr, a->generation, a->sig_alg, a->thing)) != 0)
		goto out;
	rq.csr_len = strlen(rq.csr);
	rq.params = a->params;
	snprintf(rq.client_token, sizeof(rq.client_token), "%s", a->token);
	if ((r = cf_prov_topic_format(t, sizeof(t), a->prefix, a->template_name, NULL,
	    CF_PROTO_REQUEST)) != 0 || (r = cf_prov_encode_request(payload, &rq)) != 0)
		goto out;
	if ((*topic = strdup(t)) == NULL) {
		r = CF_ERROR;
		goto out;
	}
	r = 0;
out:
	if (r != 0) {
		free(*payload);
		*payload = NULL;
	}
	cf_prov_request_clear(&rq);
	return r;
}

int
cf_prov_agent_reply(cf_prov_agent *a, cf_prov_code *code, const char *topic, const void *payload,
    size_t len)
{
	cf_prov_accepted acc;
	cf_prov_rejection rej;
	char *acc_topic = NULL, *rej_topic = NULL;
	int r;

	memset(&acc, 0, sizeof(acc));
	*code = CF_PROV_INTERNAL_ERROR;
	if ((r = cf_prov_agent_reply_topics(a, &acc_topic, &rej_topic)) != 0)
		goto out;
	r = CF_ENOTFOUND;
	if (a->state != CF_PROV_AGENT_REQUESTED)
		goto out;
	if (strcmp(topic, rej_topic) == 0) {
		if ((r = cf_prov_decode_rejection(&rej, payload, len)) != 0)
			goto out;
		if (rej.client_token[0] != '\0' && strcmp(rej.client_token, a->token) != 0) {
			r = CF_ENOTFOUND;
			goto out;
		}
		*code = rej.code;
		cf_error_set("%s: %s", cf_prov_code_name(rej.code), rej.message);
		r = CF_EREJECTED;
		goto out;
	}
	if (strcmp(topic, acc_topic) != 0)
		goto out;
	if ((r = cf_prov_decode_accepted(&acc, payload, len)) != 0)
		goto out;
	if (acc.client_token[0] != '\0' && strcmp(acc.client_token, a->token) != 0) {
		r = CF_ENOTFOUND;
		goto out;
	}
	if (strcmp(acc.thing, a->thing) != 0) {
		cf_error_set("certfleetd named the thing '%s', not '%s'", acc.thing, a->thing);
		r = CF_EINVAL;
		goto out;
	}
	/* install_cert refuses a certificate that is not the pending key's. */
	if ((r = a->ks->ops->install_cert(a->ks->st, a->generation, acc.certificate_pem,
	    strlen(acc.certificate_pem))) != 0 ||
	    (a->ks->ops->install_chain != NULL && (r = a->ks->ops->install_chain(a->ks->st,
	    a->generation, acc.chain_pem, strlen(acc.chain_pem))) != 0) ||
	    (r = journal_write(a, CF_PROV_AGENT_INSTALLED)) != 0 || (r = finish(a)) != 0)
		goto out;
	r = 0;
out:
	free(acc_topic);
	free(rej_topic);
	cf_prov_accepted_clear(&acc);
	return r;
}
