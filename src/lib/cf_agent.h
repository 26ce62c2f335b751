/*
 * cf_agent — the device side of a certificate rotation (DESIGN §6) as a
 * state machine with a durable journal, independent of any network.
 *
 * The agent never talks MQTT itself. The program embedding it (the Linux
 * daemon, the simulator, firmware) owns the connection and the clock: it
 * hands the agent a transport (publish, reconnect, a hook after a switch)
 * and a key store (cf_keystore.h), and feeds it events — connected,
 * disconnected, a message, a timer — each with the current time. No
 * globals: thousands of agents can live in one process.
 *
 * Every transition writes the journal (temp file, fsync, rename, fsync of
 * the directory) before the new state's side effect runs, and every
 * state's entry action is idempotent, so cf_agent_start() after a power cut
 * resumes by re-entering the journal's state: the rotation completes or
 * rolls back. docs/agent.md has the states, the journal and the rules.
 */
#ifndef CF_AGENT_H
#define CF_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_keystore.h"

typedef enum {
	CF_AGENT_IDLE,              /* no rotation; asks $next/get on connect */
	CF_AGENT_IN_PROGRESS_SENT,  /* update IN_PROGRESS sent for a rotation job */
	CF_AGENT_KEY_GENERATED,     /* new key generated in a pending generation */
	CF_AGENT_CREATE_SENT,       /* certificate/create sent (CSR, signed with the old key) */
	CF_AGENT_CERT_RECEIVED,     /* certificate verified and installed in the pending generation */
	CF_AGENT_SWITCHED,          /* the pending pair is made active on disk (hook runs) */
	CF_AGENT_RECONNECTING_NEW,  /* reconnecting with the new pair */
	CF_AGENT_VERIFYING,         /* $next/get sent on the new connection */
	CF_AGENT_COMMIT_SENT,       /* certificate/commit sent (signed with the new key) */
	CF_AGENT_COMMITTED,         /* commit accepted: never rolls back from here */
	CF_AGENT_CLEANUP,           /* backup removed, update SUCCEEDED sent */
	CF_AGENT_ROLLING_BACK,      /* old pair made active again, reconnecting with it */
	CF_AGENT_REPORTING_FAILURE, /* update FAILED with statusDetails.reason sent */
	CF_AGENT_DONE,              /* the job ended; back to IDLE */
	CF_AGENT__COUNT
} cf_agent_state;

/* What the agent asks of its embedder. Every callback gets arg. */
typedef struct {
	/*
	 * Publishes payload (JSON, NUL-terminated) on topic. May fail (e.g.
	 * while disconnected): the agent resends on connect and on timeouts.
	 */
	int (*publish)(void *arg, const char *topic, const char *payload);
	/*
	 * Drops the connection and connects again with the key store's active
	 * pair (the bundle paths), then reports connected or disconnected.
	 * There is no pair argument: the agent switches the pair on disk before
	 * it asks, so the active pair is always the one to use.
	 */
	int (*reconnect)(void *arg);
	/* Optional: runs after the active pair changed (switch or rollback) — the hook command. */
	void (*switched)(void *arg, unsigned generation);
	/*
	 * Optional: the current time (epoch seconds). A state's deadline is
	 * then counted from when it is entered, not from the event that began
	 * a chain of moves, so a slow step on the way (a hook that blocks, a
	 * slow key generation) does not eat the next state's timeout. NULL:
	 * the event's time.
	 */
	int64_t (*now)(void *arg);
	void *arg;
} cf_agent_transport;

typedef struct {
	const char *thing;        /* the thing name (the client id) */
	const char *prefix;       /* topic prefix, NULL = "cf/" */
	const char *state_dir;    /* where the journal lives (created 0700) */
	const char *ca_chain_pem; /* trusted CA certificates: intermediates and root(s) */
	/*
	 * Optional: ca_chain_pem already parsed (cf_cert_parse_bundle), borrowed
	 * and shared: it must outlive the agent. For an embedder that runs many
	 * agents with one CA file (the simulator), so that each does not decode
	 * the same certificates again. NULL: the agent parses ca_chain_pem itself
	 * (once, at its first certificate check).
	 */
	cf_cert *const *ca_certs;
	size_t n_ca_certs;
	/* Per-state timeout in seconds; 0 = the table's default (docs/agent.md). */
	int timeout_s[CF_AGENT__COUNT];
	int max_attempts;         /* sends of one request before giving up; 0 = 3 */
	/*
	 * Tests only: called after every durable journal write with the state
	 * just written; a non-zero return stops the agent right there, as a
	 * power cut would: that call and every later one return CF_ESTATE
	 * (cf_agent_start then hands out no agent).
	 */
	int (*journal_hook)(void *arg, cf_agent_state state);
	void *hook_arg;
} cf_agent_opts;

typedef struct cf_agent cf_agent;

/*
 * Creates an agent over ks and t (both borrowed; they must outlive it) and
 * resumes from the journal in o->state_dir, which may change the active
 * pair (a rollback): call it before connecting. Strings in o are copied.
 * CF_EINVAL for bad options, CF_ECORRUPT for an unreadable journal.
 */
int cf_agent_start(cf_agent **out, const cf_agent_opts *o, cf_keystore *ks,
    const cf_agent_transport *t, int64_t now) CF_MUST_CHECK;
void cf_agent_free(cf_agent *a);

/*
 * Events. Each returns 0, or a negative CF_E* when the journal could not be
 * written (the embedder should stop and start again: recovery takes over).
 */
int cf_agent_connected(cf_agent *a, int64_t now) CF_MUST_CHECK;
int cf_agent_disconnected(cf_agent *a, int64_t now) CF_MUST_CHECK;
/* A message on one of the thing's topics (cf/things/<thing>/jobs/#, .../certificate/#). */
int cf_agent_message(cf_agent *a, const char *topic, const void *payload, size_t len,
    int64_t now) CF_MUST_CHECK;
/* Call at or after cf_agent_deadline(). */
int cf_agent_timer(cf_agent *a, int64_t now) CF_MUST_CHECK;

/* When the current state times out (epoch seconds), 0 if it does not. */
int64_t cf_agent_deadline(const cf_agent *a);
cf_agent_state cf_agent_state_get(const cf_agent *a);
/* "IDLE", "CREATE_SENT" ... ("UNKNOWN" out of range). Static string. */
const char *cf_agent_state_name(cf_agent_state s);
/* The current or last job's failure reason ("" if none). Borrowed. */
const char *cf_agent_reason(const cf_agent *a);
/* The current or last job id ("" if none). Borrowed. */
const char *cf_agent_job_id(const cf_agent *a);

#endif
