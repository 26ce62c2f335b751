/*
 * cf_prov_agent — the device side of provisioning by claim
 * (docs/provisioning.md), independent of any network, with the same journal
 * discipline as cf_agent: every step writes its state durably (temp file,
 * fsync, rename, fsync of the directory) before its side effect, and every
 * step is idempotent, so a power cut at any point resumes.
 *
 *   (none)     -> generate a key in a pending generation of the key store
 *   requested  {generation, thing, clientToken}: the request may be (re)sent;
 *              after a restart the same key is asked for again (certfleetd
 *              answers a repeated key with the same certificate)
 *   installed  {generation, thing}: certificate and chain are in the pending
 *              generation; it is made active (the claim becomes the backup)
 *              and, unless keep_claim, the claim's generation is discarded
 *   done       {thing}: the device is the thing; provisioning never runs again
 *
 * The journal is <state_dir>/provision.json. The embedder owns the MQTT
 * connection: it connects with the key store's active pair (the claim) as
 * client id cf_prov_agent_thing(), publishes what cf_prov_agent_request()
 * gives and feeds the replies to cf_prov_agent_reply().
 */
#ifndef CF_PROV_AGENT_H
#define CF_PROV_AGENT_H

#include "cf_error.h"
#include "cf_keystore.h"
#include "cf_prov.h"

typedef enum {
	CF_PROV_AGENT_NONE,
	CF_PROV_AGENT_REQUESTED,
	CF_PROV_AGENT_INSTALLED,
	CF_PROV_AGENT_DONE,
	CF_PROV_AGENT__COUNT
} cf_prov_agent_state;

typedef struct {
	const char *template_name;
	const char *pattern;      /* the template's name pattern: the thing name, and the client id */
	const char *prefix;       /* topic prefix, NULL = "cf/" */
	const char *state_dir;
	const cf_prov_params *params;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	int keep_claim;
} cf_prov_agent_opts;

typedef struct cf_prov_agent cf_prov_agent;

/*
 * Reads the journal and finishes an interrupted INSTALLED step (activate,
 * clean up, DONE). ks is borrowed. CF_EINVAL for bad options or a pattern
 * the parameters do not fill, CF_ECORRUPT for an unreadable journal.
 */
int cf_prov_agent_start(cf_prov_agent **out, const cf_prov_agent_opts *o, cf_keystore *ks) CF_MUST_CHECK;
void cf_prov_agent_free(cf_prov_agent *a);

cf_prov_agent_state cf_prov_agent_state_get(const cf_prov_agent *a);
/* The thing name (from the pattern, or from the journal once done). Borrowed. */
const char *cf_prov_agent_thing(const cf_prov_agent *a);

/*
 * The request to publish: generates the key (state REQUESTED) if needed.
 * *topic and *payload are the caller's. CF_ESTATE once INSTALLED or DONE.
 */
int cf_prov_agent_request(cf_prov_agent *a, char **topic, char **payload) CF_MUST_CHECK;

/* The two reply topics to subscribe to (for the thing's client id); caller frees both. */
int cf_prov_agent_reply_topics(const cf_prov_agent *a, char **accepted, char **rejected) CF_MUST_CHECK;

/*
 * A reply. Accepted: the certificate is checked (the pending key's, the
 * expected thing) and installed, the pair switched (state DONE) — 0.
 * Rejected: CF_EREJECTED with *code and the message in cf_error; the state
 * does not change. A message for another request (clientToken) or topic:
 * CF_ENOTFOUND, ignore it.
 */
int cf_prov_agent_reply(cf_prov_agent *a, cf_prov_code *code, const char *topic,
    const void *payload, size_t len) CF_MUST_CHECK;

/* The thing a finished provisioning left in state_dir: 0 and the name, CF_ENOTFOUND if none. */
int cf_prov_agent_done_thing(char out[CF_NAME_MAX + 1], const char *state_dir) CF_MUST_CHECK;

#endif
