/*
 * cf_store — the registry: things, groups, CAs, certificates, jobs, job
 * executions, rotation records and the append-only, hash-chained event log
 * (DESIGN §4).
 *
 * Callers see only this interface. cf_store.c holds the back-end-neutral
 * rules (status transitions, the event chain, validation) and dispatches
 * storage to a back end through struct cf_store_ops (cf_store_backend.h):
 * SQLite in WAL mode today (cf_store_sqlite.c); PostgreSQL is added as a
 * second ops table without touching callers.
 *
 * Every mutator records its own event in the same transaction, so a change
 * without its event cannot be committed. Mutators called outside
 * cf_store_begin()/cf_store_commit() run in a transaction of their own.
 *
 * Records returned through out are owned by the caller: *_rec_clear() for
 * one, *_recs_free() for an array. Lookups by id also accept a unique
 * prefix of at least 8 hex characters (CF_EINVAL if ambiguous).
 */
#ifndef CF_STORE_H
#define CF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_keyq.h"
#include "cf_pki.h"
#include "cf_proto.h"
#include "cf_util.h"

typedef struct cf_store cf_store;

#define CF_STORE_CREATE 0x1   /* create the database if missing */
/*
 * Read-only, for the broker plugin: never migrates or writes, fails with
 * CF_EINVAL if the schema is not exactly this program's, and waits at most
 * 100 ms for a lock (a broker callback must never stall).
 */
#define CF_STORE_READONLY 0x2

/* ---- certificate (and CA) status: the one place transitions are decided */

typedef enum {
	CF_CERT_PENDING_ACTIVATION,
	CF_CERT_ACTIVE,
	CF_CERT_INACTIVE,
	CF_CERT_REVOKED,
	CF_CERT__STATUS_COUNT
} cf_cert_status;

const char *cf_cert_status_name(cf_cert_status s);
int cf_cert_status_parse(cf_cert_status *out, const char *name) CF_MUST_CHECK;
/*
 * 0 if from -> to is allowed: PENDING_ACTIVATION -> ACTIVE, ACTIVE <-> INACTIVE,
 * PENDING_ACTIVATION -> INACTIVE, any non-revoked -> REVOKED, and from == to
 * (a no-op). CF_ESTATE naming both states otherwise (REVOKED is terminal).
 */
int cf_cert_status_check(cf_cert_status from, cf_cert_status to) CF_MUST_CHECK;

/* ---- opening ----------------------------------------------------------- */

/*
 * Opens the store at uri (a file path for SQLite) and migrates its schema
 * to the current version. CF_ENOTFOUND if the file is missing and flags
 * lacks CF_STORE_CREATE; CF_ECORRUPT if it is not a certfleet database or
 * is damaged; CF_EINVAL if its schema is newer than this program's.
 */
int cf_store_open(cf_store **out, const char *uri, int flags) CF_MUST_CHECK;
void cf_store_close(cf_store *st);
int cf_store_schema_version(cf_store *st); /* after migration */

/* An explicit write transaction (nestable; only the outermost commits). */
int cf_store_begin(cf_store *st) CF_MUST_CHECK;
int cf_store_commit(cf_store *st) CF_MUST_CHECK;
void cf_store_rollback(cf_store *st);

/* ---- things -------------------------------------------------------------- */

typedef struct {
	char name[CF_NAME_MAX + 1];
	char *attributes; /* JSON object text, "{}" when none */
	int64_t created_at;
} cf_thing_rec;

/* attributes_json: a JSON object of string values, or NULL. CF_EEXISTS / CF_EINVAL. */
int cf_store_thing_create(cf_store *st, const char *name, const char *attributes_json) CF_MUST_CHECK;
int cf_store_thing_get(cf_store *st, cf_thing_rec *out, const char *name) CF_MUST_CHECK;
int cf_store_thing_list(cf_store *st, cf_thing_rec **out, size_t *out_n) CF_MUST_CHECK;
/*
 * Deletes a thing and its group memberships. CF_ESTATE while it holds an
 * ACTIVE or PENDING_ACTIVATION certificate; INACTIVE and REVOKED ones are
 * kept and detached (thing becomes "").
 */
int cf_store_thing_delete(cf_store *st, const char *name) CF_MUST_CHECK;
/* Replaces a thing's attributes (same rules as create; event thing.updated). CF_ENOTFOUND / CF_EINVAL. */
int cf_store_thing_set_attributes(cf_store *st, const char *name,
    const char *attributes_json) CF_MUST_CHECK;
void cf_thing_rec_clear(cf_thing_rec *r);
void cf_thing_recs_free(cf_thing_rec *r, size_t n);

/* ---- groups ---------------------------------------------------------------- */

typedef struct {
	char name[CF_NAME_MAX + 1];
	char *query;   /* NULL for a static group; "k=v,k2=v2" (all must match) for a dynamic one */
	int64_t created_at;
	size_t members; /* current member count */
} cf_group_rec;

/* query NULL: static. A dynamic query is "key=value" terms joined by ','; CF_EINVAL otherwise. */
int cf_store_group_create(cf_store *st, const char *name, const char *query) CF_MUST_CHECK;
/* Adds a thing to a static group (no-op if already in). CF_EINVAL for a dynamic group. */
int cf_store_group_add(cf_store *st, const char *group, const char *thing) CF_MUST_CHECK;
/*
 * Removes a thing from a static group (event group.member_removed).
 * CF_ENOTFOUND for an unknown group or a thing that is not a member;
 * CF_EINVAL for a dynamic group.
 */
int cf_store_group_remove(cf_store *st, const char *group, const char *thing) CF_MUST_CHECK;
int cf_store_group_list(cf_store *st, cf_group_rec **out, size_t *out_n) CF_MUST_CHECK;
/* Thing names in the group (dynamic groups evaluated now), sorted. Free with cf_strv_free. */
int cf_store_group_members(cf_store *st, char ***out, size_t *out_n, const char *group) CF_MUST_CHECK;
void cf_group_rec_clear(cf_group_rec *r);
void cf_group_recs_free(cf_group_rec *r, size_t n);
void cf_strv_free(char **v, size_t n);

/* ---- certificate authorities ---------------------------------------------- */

typedef enum { CF_CA_ROOT, CF_CA_INTERMEDIATE } cf_ca_role;

typedef struct {
	char id[CF_ID_LEN + 1];         /* fingerprint */
	char name[CF_NAME_MAX + 1];
	cf_ca_role role;
	char parent_id[CF_ID_LEN + 1];  /* "" for a root */
	cf_cert_status status;          /* ACTIVE, INACTIVE or REVOKED */
	int is_issuer;                  /* the one intermediate that issues device certificates */
	char serial[CF_SERIAL_LEN + 1];
	int64_t not_before, not_after, created_at, revoked_at;
	int revoke_reason;
	char key_alg[32];
	int key_bits;
	char key_ref[1024];             /* key file (relative to the data dir) or pkcs11: URI */
	int64_t crl_number;             /* last CRL number issued, 0 = none yet */
	char *pem;
} cf_ca_rec;

int cf_store_ca_insert(cf_store *st, const cf_ca_rec *ca) CF_MUST_CHECK;
/* By id, unique id prefix (>= 8) or name. */
int cf_store_ca_get(cf_store *st, cf_ca_rec *out, const char *ref) CF_MUST_CHECK;
int cf_store_ca_list(cf_store *st, cf_ca_rec **out, size_t *out_n) CF_MUST_CHECK;
int cf_store_ca_get_issuer(cf_store *st, cf_ca_rec *out) CF_MUST_CHECK; /* CF_ENOTFOUND if none */
/* Makes this ACTIVE intermediate the issuer (clears the flag elsewhere). CF_EINVAL / CF_ESTATE otherwise. */
int cf_store_ca_set_issuer(cf_store *st, const char *id) CF_MUST_CHECK;
/*
 * Status change with cf_cert_status_check rules; an issuer that stops being
 * ACTIVE (revoked or deactivated) stops being the issuer.
 */
int cf_store_ca_set_status(cf_store *st, const char *id, cf_cert_status to, int reason) CF_MUST_CHECK;
/* Increments and returns the CA's CRL number. */
int cf_store_ca_next_crl_number(cf_store *st, int64_t *out, const char *id) CF_MUST_CHECK;
void cf_ca_rec_clear(cf_ca_rec *r);
void cf_ca_recs_free(cf_ca_rec *r, size_t n);

/* ---- certificates ----------------------------------------------------------- */

typedef struct {
	char id[CF_ID_LEN + 1];
	char serial[CF_SERIAL_LEN + 1];
	char ca_id[CF_ID_LEN + 1];
	char thing[CF_NAME_MAX + 1];    /* "" when attached to no thing */
	cf_cert_status status;
	int64_t not_before, not_after, created_at, updated_at, revoked_at;
	int revoke_reason;
	char key_alg[32];               /* cf_key_alg name, or OpenSSL's description if none fits */
	int key_bits;
	char sig_alg[64];
	char *pem;
	/*
	 * Key facts, computed by cf_store_cert_insert from pem, or from the
	 * parsed certificate cf_store_cert_insert_parsed is given (what the
	 * caller puts here is ignored): the SPKI SHA-256 fingerprint, and the cf_keyq
	 * flags and detail under the key policy whose fingerprint is keyq_policy
	 * (cf_keyq_policy_fingerprint). All "" / 0 if the PEM does not parse
	 * (the audit then parses it itself and reports why).
	 */
	char spki_sha256[CF_ID_LEN + 1];
	unsigned keyq_flags;
	char keyq_policy[CF_KEYQ_POLICY_FP_LEN + 1];
	char *keyq_detail;              /* NULL when clean; owned like pem */
} cf_cert_rec;

/* A certificate's key facts alone (computing them, or updating them by id). */
typedef struct {
	char id[CF_ID_LEN + 1];
	char spki_sha256[CF_ID_LEN + 1];
	unsigned keyq_flags;
	char keyq_policy[CF_KEYQ_POLICY_FP_LEN + 1];
	char *keyq_detail; /* owned by whoever filled it; NULL means "" */
} cf_cert_keyq;

typedef struct {
	int status;              /* a cf_cert_status, or -1 for any */
	const char *thing;       /* NULL for any */
	const char *ca_id;       /* NULL for any */
	int64_t not_after_before; /* 0 for any: only certificates with not_after < this */
} cf_cert_filter;

/*
 * The key policy cf_store_cert_insert evaluates new certificates under
 * (borrowed: it must outlive st or be replaced). NULL, the initial value:
 * cf_keyq's default policy. cf_ca_open sets the configured one.
 */
int cf_store_set_keyq_policy(cf_store *st, const cf_keyq_policy *p) CF_MUST_CHECK;
/*
 * The key facts of pem under p (NULL: the default policy), whose
 * fingerprint is policy_fp: exactly what cf_store_cert_insert stores.
 * out->id is left as it is; out->keyq_detail is malloc()ed (NULL when
 * clean: free() it). CF_EINVAL with the facts cleared if the PEM does not
 * parse.
 */
int cf_cert_keyq_compute(cf_cert_keyq *out, const char *pem, const cf_keyq_policy *p,
    const char policy_fp[CF_KEYQ_POLICY_FP_LEN + 1]) CF_MUST_CHECK;
/*
 * CF_EEXISTS for a duplicate id; CF_ENOTFOUND for an unknown thing or CA;
 * CF_ESTATE if the thing would get a third ACTIVE certificate. Computes
 * and stores the key facts (spki_sha256, keyq_*) from the PEM: one parse
 * at issuance instead of one per audit.
 */
int cf_store_cert_insert(cf_store *st, const cf_cert_rec *cert) CF_MUST_CHECK;
/*
 * cf_store_cert_insert for a caller that holds the certificate parsed:
 * parsed (borrowed) must be cert->pem as a cf_cert (the CA hands over the
 * object it just encoded). The key facts are computed from it, the same
 * bytes as from the PEM (cf_keyq_check_cert_spki) without decoding the
 * certificate again: a third of the CA path's time in OpenSSL 3.0. The
 * store does not check that parsed matches the PEM. parsed NULL: exactly
 * cf_store_cert_insert.
 */
int cf_store_cert_insert_parsed(cf_store *st, const cf_cert_rec *cert, const cf_cert *parsed)
    CF_MUST_CHECK;
int cf_store_cert_get(cf_store *st, cf_cert_rec *out, const char *ref) CF_MUST_CHECK;
/* Sorted by created_at then id. f may be NULL. */
int cf_store_cert_list(cf_store *st, cf_cert_rec **out, size_t *out_n, const cf_cert_filter *f) CF_MUST_CHECK;
/*
 * Changes status under cf_cert_status_check (same status: no-op, no event).
 * reason is the RFC 5280 code for REVOKED (ignored otherwise). CF_ESTATE if
 * activating would give the thing a third ACTIVE certificate.
 */
int cf_store_cert_set_status(cf_store *st, const char *id, cf_cert_status to, int reason) CF_MUST_CHECK;
void cf_cert_rec_clear(cf_cert_rec *r);
void cf_cert_recs_free(cf_cert_rec *r, size_t n);

/* ---- event log --------------------------------------------------------------- */

typedef struct {
	int64_t seq;          /* 1, 2, 3 ... */
	int64_t ts;
	char type[64];        /* "cert.issued", "cert.status", "ca.created" ... */
	char subject[256];    /* what it is about: a certificate id, thing or CA name */
	char *detail;         /* JSON object text */
	char prev_hash[CF_ID_LEN + 1]; /* hash of seq-1, 64 zeros for the first */
	char hash[CF_ID_LEN + 1];
} cf_event_rec;

/*
 * Appends an event (in the current transaction, or its own). hash =
 * SHA-256 over prev_hash, seq, ts, type, subject and detail (see
 * docs/event-log.md). detail_json NULL means "{}".
 */
int cf_store_event_append(cf_store *st, const char *type, const char *subject,
    const char *detail_json) CF_MUST_CHECK;
/* Events with ts >= since (0: all), in order; at most limit (0: no limit). */
int cf_store_event_list(cf_store *st, cf_event_rec **out, size_t *out_n, int64_t since,
    size_t limit) CF_MUST_CHECK;
/*
 * Recomputes the chain. 0 if intact (count and head hash filled in);
 * CF_ECORRUPT with *first_bad = the first event whose hash or link is
 * wrong, and a message naming it.
 */
int cf_store_event_verify(cf_store *st, int64_t *count, int64_t *first_bad,
    char head[CF_ID_LEN + 1]) CF_MUST_CHECK;
void cf_event_recs_free(cf_event_rec *r, size_t n);

/* The newest event's seq (0 for an empty log): one primary-key lookup. */
int cf_store_event_head(cf_store *st, int64_t *out) CF_MUST_CHECK;

/* Events with seq > after, in order, at most limit (0: no limit). Cheap: walks the primary key. */
int cf_store_event_list_after(cf_store *st, cf_event_rec **out, size_t *out_n, int64_t after,
    size_t limit) CF_MUST_CHECK;

/* ---- connections seen by the broker (not hash-chained: they are observations) ---- */

#define CF_CONN_REF_MAX 47

typedef struct {
	int64_t id;
	char ref[CF_CONN_REF_MAX + 1];/* the broker plugin's id of this network connection */
	char client_id[256];          /* as the client sent it (may be hostile: stored, never trusted) */
	char principal[CF_ID_LEN + 1];/* certificate id of the TLS client certificate */
	char kind[16];                /* "device", "claim" or "service" */
	char peer[64];                /* "127.0.0.1:50432" */
	int64_t connected_at;
	int64_t disconnected_at;      /* 0 while (as far as certfleetd knows) connected */
	char reason[64];              /* why it ended: "client", "kicked", "broker-restart" ... */
} cf_conn_rec;

/* Records a connection (id is assigned; ref must be non-empty, [A-Za-z0-9_.:-]). */
int cf_store_connection_open(cf_store *st, const cf_conn_rec *c) CF_MUST_CHECK;
/*
 * Ends the open connection the broker called ref. CF_ENOTFOUND if none is
 * open under that ref (already closed, or never seen).
 */
int cf_store_connection_close(cf_store *st, const char *ref, int64_t at,
    const char *reason) CF_MUST_CHECK;
/* Ends every open connection (the broker restarted: they are gone). *out_n = how many. */
int cf_store_connection_close_all(cf_store *st, int64_t at, const char *reason, size_t *out_n) CF_MUST_CHECK;
/* Newest first. client_id NULL: all; open_only: only those not ended; limit 0: no limit. */
int cf_store_connection_list(cf_store *st, cf_conn_rec **out, size_t *out_n,
    const char *client_id, int open_only, size_t limit) CF_MUST_CHECK;
void cf_conn_recs_free(cf_conn_rec *r, size_t n);

/* ---- jobs, job executions and rotation records (DESIGN §6, §7) ---------------- */

/*
 * The store keeps what the jobs engine decides (cf_job.h holds the rules of
 * the execution state machine); it checks what every record must satisfy
 * whoever writes it: ids and names, JSON, allowed values, the job's own
 * status table, the rotation state table, one live execution per (job,
 * thing), and the versionNumber compare-and-set. Every mutator appends its
 * event (job.*, execution.*, rotation.*) in its transaction.
 */

#define CF_JOB_OPERATION_MAX 63 /* [A-Z0-9_], e.g. ROTATE_CERTIFICATE */
#define CF_JOB_COMMENT_MAX 1024
#define CF_JOB_JSON_MAX 65536   /* bytes of each JSON column */

typedef enum {
	CF_JOB_STATE_SCHEDULED,   /* created, not started (schedule or rollout not begun) */
	CF_JOB_STATE_IN_PROGRESS,
	CF_JOB_STATE_CANCELED,    /* terminal */
	CF_JOB_STATE_COMPLETED,   /* terminal */
	CF_JOB_STATE__COUNT
} cf_job_state;

/* "SCHEDULED" ...; "UNKNOWN" out of range. */
const char *cf_job_state_name(cf_job_state s);
int cf_job_state_parse(cf_job_state *out, const char *name) CF_MUST_CHECK;

typedef enum { CF_JOB_SELECTION_SNAPSHOT, CF_JOB_SELECTION_CONTINUOUS } cf_job_selection;

typedef struct {
	char id[CF_PROTO_JOB_ID_MAX + 1];     /* [A-Za-z0-9_-]{1,64} */
	char operation[CF_JOB_OPERATION_MAX + 1];
	char *document;   /* JSON object (the job document sent to devices) */
	char *targets;    /* JSON object or array (things, groups, certificate queries) */
	cf_job_selection selection;
	char *config;     /* JSON object: rollout, abort, timeouts, retries, schedule (opaque here); NULL = {} */
	cf_job_state status;
	int force_canceled;
	char *comment;    /* NULL or text without control characters */
	int64_t created_at, updated_at, completed_at; /* completed_at 0 until CANCELED/COMPLETED */
} cf_job_rec;

/*
 * Inserts a job (status SCHEDULED or IN_PROGRESS; created_at 0 = now). JSON
 * columns are stored compact with sorted keys. CF_EEXISTS for a duplicate
 * id, CF_EINVAL for a bad id, operation, JSON or value. Event job.created.
 */
int cf_store_job_insert(cf_store *st, const cf_job_rec *job) CF_MUST_CHECK;
int cf_store_job_get(cf_store *st, cf_job_rec *out, const char *id) CF_MUST_CHECK;
/* Sorted by created_at then id. status: a cf_job_state, or -1 for any. */
int cf_store_job_list(cf_store *st, cf_job_rec **out, size_t *out_n, int status) CF_MUST_CHECK;
/*
 * SCHEDULED -> IN_PROGRESS | CANCELED | COMPLETED, IN_PROGRESS -> CANCELED |
 * COMPLETED; CANCELED and COMPLETED are terminal (CF_ESTATE); the same
 * status is a no-op without an event. force marks a cancel as a force-cancel;
 * comment (may be NULL) is kept. Event job.status {from, to, force, comment}.
 */
int cf_store_job_set_status(cf_store *st, const char *id, cf_job_state to, int force,
    const char *comment) CF_MUST_CHECK;
void cf_job_rec_clear(cf_job_rec *r);
void cf_job_recs_free(cf_job_rec *r, size_t n);

typedef struct {
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	char thing[CF_NAME_MAX + 1];
	int64_t execution_number; /* >= 1: 1 for the first attempt, + 1 per retry */
	cf_exec_status status;
	int64_t version;          /* versionNumber >= 1, + 1 on every accepted change */
	char *status_details;     /* JSON object of string values ("{}" when none); NULL = {} */
	int64_t queued_at, started_at, last_updated_at, last_step_at; /* 0 = not yet */
	int retries_failed;       /* retries already made after FAILED (cf_job_exec) */
	int retries_timed_out;    /* ... after TIMED_OUT */
} cf_exec_rec;

/*
 * Queues an execution of job for e->thing: status must be QUEUED. The
 * first attempt of a (job, thing) is execution 1 with version 1; a retry is
 * the latest execution_number + 1 with a version above the latest one's
 * (versionNumber never repeats for a (job, thing)), and only once the latest
 * is terminal. e->execution_number 0 means "the next one", any other value
 * must be exactly it; e->version 0 means the lowest allowed, any other must
 * not be below it (CF_ESTATE otherwise, as when a live execution exists). CF_ENOTFOUND for an unknown job or thing, CF_ESTATE if
 * the job is CANCELED or COMPLETED. queued_at and last_updated_at 0 = now.
 * Event execution.queued.
 */
int cf_store_exec_insert(cf_store *st, const cf_exec_rec *e) CF_MUST_CHECK;
/* The execution execution_number of (job, thing); 0 = the latest one. CF_ENOTFOUND. */
int cf_store_exec_get(cf_store *st, cf_exec_rec *out, const char *job_id, const char *thing,
    int64_t execution_number) CF_MUST_CHECK;
/*
 * Compare-and-set: writes next's status, version, status_details, times and
 * retry counters to the execution (next->job_id, thing, execution_number)
 * only if its stored version equals expected_version, in one UPDATE ...
 * WHERE version = expected_version. next->version must be expected_version
 * + 1 (CF_EINVAL). CF_ENOTFOUND if there is no such execution; CF_ESTATE
 * with "version mismatch" (the row is left as it was) if the stored version
 * differs, e.g. another writer won. last_updated_at 0 = now. The transition
 * itself is the caller's (cf_job_update / cf_job_server_move). Event
 * execution.status {from, to, version}.
 */
int cf_store_exec_update(cf_store *st, const cf_exec_rec *next, int64_t expected_version) CF_MUST_CHECK;
/*
 * DESIGN's $next for a thing, across jobs: its oldest IN_PROGRESS execution,
 * else its oldest QUEUED one (by queued_at, then job id). CF_ENOTFOUND when
 * nothing is pending.
 */
int cf_store_exec_next_pending(cf_store *st, cf_exec_rec *out, const char *thing) CF_MUST_CHECK;
/* A job's executions (every attempt), by thing then execution_number. status -1 = any; limit 0 = all. */
int cf_store_exec_list(cf_store *st, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int status, size_t limit) CF_MUST_CHECK;
/* Counts per status of the latest attempt of each thing of a job (counts[CF_EXEC_QUEUED] ...). */
int cf_store_exec_counts(cf_store *st, int64_t counts[CF_EXEC__COUNT], const char *job_id) CF_MUST_CHECK;
/*
 * IN_PROGRESS executions (of job_id, or of every job when NULL) that may
 * have timed out: last_step_at <= step_at_or_before (when that is > 0) or
 * started_at <= started_at_or_before (when > 0). With step_at_or_before =
 * now - step_s, "<=" matches cf_job_timed_out (the deadline itself is
 * late). By last_step_at; limit 0 = all.
 */
int cf_store_exec_list_stale(cf_store *st, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int64_t step_at_or_before, int64_t started_at_or_before, size_t limit) CF_MUST_CHECK;
void cf_exec_rec_clear(cf_exec_rec *r);
void cf_exec_recs_free(cf_exec_rec *r, size_t n);

/*
 * A rotation's server-side record (DESIGN §6), one per execution:
 *   created -> committed | failed
 *   committed -> succeeded | indeterminate | failed
 *   indeterminate -> succeeded | failed   (the principal the device next connects with wins)
 * succeeded and failed are terminal.
 */
typedef enum {
	CF_ROTATION_CREATED,
	CF_ROTATION_COMMITTED,
	CF_ROTATION_INDETERMINATE,
	CF_ROTATION_SUCCEEDED,
	CF_ROTATION_FAILED,
	CF_ROTATION__COUNT
} cf_rotation_state;

/* "created" ...; "unknown" out of range. */
const char *cf_rotation_state_name(cf_rotation_state s);
int cf_rotation_state_parse(cf_rotation_state *out, const char *name) CF_MUST_CHECK;

typedef struct {
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	char thing[CF_NAME_MAX + 1];
	int64_t execution_number;
	char old_cert[CF_ID_LEN + 1]; /* the certificate the device rotates away from */
	char new_cert[CF_ID_LEN + 1]; /* "" until issued */
	cf_rotation_state state;
	int64_t created_at, updated_at;
} cf_rotation_rec;

/*
 * Records a rotation in state created for an existing execution (r->state
 * must be CF_ROTATION_CREATED; CF_ENOTFOUND without the execution). If the
 * record exists and is still created, its certificates are replaced (a
 * repeated create: the old one must be the same and an issued new one can
 * be replaced but not cleared); identical: no-op, no event. CF_ESTATE
 * otherwise, and once it has left created. Events rotation.created, or rotation.updated {previous_new_cert}.
 */
int cf_store_rotation_upsert(cf_store *st, const cf_rotation_rec *r) CF_MUST_CHECK;
int cf_store_rotation_get(cf_store *st, cf_rotation_rec *out, const char *job_id,
    const char *thing, int64_t execution_number) CF_MUST_CHECK;
/*
 * Moves a rotation under the table above (same state: no-op). committed
 * needs new_cert. reason (may be NULL) goes in the event. CF_ESTATE
 * otherwise. Event rotation.<state> {from, to, old_cert, new_cert, reason}.
 */
int cf_store_rotation_set_state(cf_store *st, const char *job_id, const char *thing,
    int64_t execution_number, cf_rotation_state to, const char *reason) CF_MUST_CHECK;
/* Rotations whose old or new certificate is cert_id (full id), oldest first. */
int cf_store_rotation_find_cert(cf_store *st, cf_rotation_rec **out, size_t *out_n,
    const char *cert_id) CF_MUST_CHECK;
void cf_rotation_recs_free(cf_rotation_rec *r, size_t n);

/* Rotations in state (e.g. indeterminate), oldest updated first; limit 0 = all. */
int cf_store_rotation_list_state(cf_store *st, cf_rotation_rec **out, size_t *out_n,
    cf_rotation_state state, size_t limit) CF_MUST_CHECK;

/* ---- job targets: the engine's work list (schema v4) ---------------------------- */

/*
 * The things a job is for, frozen at creation for a SNAPSHOT job and grown
 * (and shrunk) by the engine for a CONTINUOUS one. The rollout releases
 * targets: releasing one queues its execution (the caller does both in one
 * transaction). A target is unreleased (released_at 0, removed_at 0),
 * released, or removed (left a CONTINUOUS job's targets before its
 * execution ended). These rows are the engine's bookkeeping, not registry
 * facts: they append no events of their own; what they lead to does
 * (execution.queued, execution.status, job.status).
 */
typedef struct {
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	char thing[CF_NAME_MAX + 1];
	int64_t added_at, released_at, removed_at; /* 0 = not (yet) */
} cf_job_target_rec;

typedef enum {
	CF_TARGETS_ALL,
	CF_TARGETS_UNRELEASED, /* neither released nor removed, oldest added first, then by thing */
	CF_TARGETS_RELEASED,   /* released and not removed */
} cf_targets_which;

/*
 * Adds thing to job's targets at now (0 = now). *added (may be NULL) is 1
 * if a row was inserted or a removed target came back (its released_at and
 * removed_at are cleared: it will be released again as a new attempt), 0
 * if it was already there. CF_ENOTFOUND for an unknown job or thing,
 * CF_ESTATE if the job is CANCELED or COMPLETED.
 */
int cf_store_job_target_add(cf_store *st, int *added, const char *job_id, const char *thing,
    int64_t now) CF_MUST_CHECK;
/* Sorted by thing unless said otherwise; limit 0 = all. */
int cf_store_job_target_list(cf_store *st, cf_job_target_rec **out, size_t *out_n,
    const char *job_id, cf_targets_which which, size_t limit) CF_MUST_CHECK;
void cf_job_target_recs_free(cf_job_target_rec *r, size_t n);
/* Marks an unreleased target released at now (0 = now). CF_ENOTFOUND; CF_ESTATE if released or removed. */
int cf_store_job_target_release(cf_store *st, const char *job_id, const char *thing,
    int64_t now) CF_MUST_CHECK;
/* Marks a target removed at now (0 = now); already removed: no-op. CF_ENOTFOUND. */
int cf_store_job_target_remove(cf_store *st, const char *job_id, const char *thing,
    int64_t now) CF_MUST_CHECK;

typedef struct {
	int64_t total;              /* rows, whatever their state */
	int64_t unreleased;
	int64_t released;           /* released and not removed */
	int64_t removed;
	int64_t first_released_at;  /* 0 if none released */
	int64_t released_since;     /* released (and not removed) with released_at >= since */
} cf_job_target_stats;

/* One indexed query. */
int cf_store_job_target_stats(cf_store *st, cf_job_target_stats *out, const char *job_id,
    int64_t since) CF_MUST_CHECK;

/* ---- notification outbox (schema v4) -------------------------------------------- */

/*
 * Notifications (docs/notifications.md) are written to an outbox in the
 * transaction of what they report, so none is lost to a crash; certfleetd's
 * delivery thread sends them (webhook, exec hook) with retries and marks
 * each row delivered or given up. One row per (notification, sink).
 */
#define CF_NOTIFY_SINK_MAX 15   /* "webhook", "exec" */
#define CF_NOTIFY_KIND_MAX 63   /* "execution.failed" ... */
#define CF_NOTIFY_PAYLOAD_MAX 16384

typedef enum {
	CF_NOTIFY_PENDING,   /* waiting for its next attempt */
	CF_NOTIFY_DELIVERED, /* terminal */
	CF_NOTIFY_GAVE_UP,   /* terminal: attempts exhausted */
	CF_NOTIFY__COUNT
} cf_notify_state;

/* "PENDING", "DELIVERED", "GAVE_UP"; "UNKNOWN" otherwise. */
const char *cf_notify_state_name(cf_notify_state s);

typedef struct {
	int64_t id;                          /* > 0, increasing */
	char sink[CF_NOTIFY_SINK_MAX + 1];
	char kind[CF_NOTIFY_KIND_MAX + 1];
	char *payload;                       /* JSON object text */
	cf_notify_state state;
	int attempts;                        /* made so far */
	int64_t created_at, next_at, updated_at;
	char last_error[256];                /* "" if none */
} cf_notify_rec;

/*
 * Queues payload (a JSON object, <= CF_NOTIFY_PAYLOAD_MAX bytes) for sink,
 * due at once; *id (may be NULL) is its id. CF_EINVAL for a bad sink or
 * kind ([a-z0-9._-]) or payload. No event: the caller's own event records
 * what happened; the outbox only delivers it.
 */
int cf_store_notify_enqueue(cf_store *st, int64_t *id, const char *sink, const char *kind,
    const char *payload) CF_MUST_CHECK;
/*
 * PENDING rows with next_at <= now, oldest first (due the longest: by
 * next_at, then id); limit 0 = all.
 */
int cf_store_notify_due(cf_store *st, cf_notify_rec **out, size_t *out_n, int64_t now,
    size_t limit) CF_MUST_CHECK;
/*
 * Records an attempt on a PENDING row: attempts + 1, last_error (may be
 * NULL), and the new state: DELIVERED, PENDING again with next_at, or
 * GAVE_UP. CF_ENOTFOUND; CF_ESTATE if the row is not PENDING.
 */
int cf_store_notify_attempted(cf_store *st, int64_t id, cf_notify_state to, int64_t next_at,
    const char *error) CF_MUST_CHECK;
/* Newest first; state -1 = any; limit 0 = all. */
int cf_store_notify_list(cf_store *st, cf_notify_rec **out, size_t *out_n, int state,
    size_t limit) CF_MUST_CHECK;
void cf_notify_rec_clear(cf_notify_rec *r);
void cf_notify_recs_free(cf_notify_rec *r, size_t n);

/* ---- audits, findings, suppressions, mitigation actions (schema v5) ----------- */

/*
 * What cf_audit (DESIGN §8) decides is kept here: one row per audit run,
 * its findings (written in one transaction with the audit's finish), the
 * suppressions per (check, resource) and the mitigation actions taken on
 * findings. The rules (which checks exist, what a finding means) are
 * cf_audit's; the store checks the shape of every record.
 */
#define CF_AUDIT_CHECK_MAX 63     /* [A-Z0-9_] */
#define CF_AUDIT_RESOURCE_MAX 255 /* a certificate id, thing name, client id ... */
#define CF_AUDIT_DETAIL_MAX 511
#define CF_AUDIT_COMMENT_MAX 511

typedef enum {
	CF_SEV_LOW,
	CF_SEV_MEDIUM,
	CF_SEV_HIGH,
	CF_SEV_CRITICAL,
	CF_SEV__COUNT
} cf_severity;

/* "LOW" ... "CRITICAL"; "UNKNOWN" out of range. */
const char *cf_severity_name(cf_severity s);
int cf_severity_parse(cf_severity *out, const char *name) CF_MUST_CHECK; /* case-insensitive */

typedef struct {
	int64_t id;                 /* > 0, increasing */
	int64_t started_at, finished_at; /* finished_at 0 while running (or if it died) */
	char trigger[16];           /* "on_demand" or "scheduled" */
	char *checks;               /* JSON array of check names */
	char *counts;               /* JSON object ({} until finished) */
} cf_audit_rec;

typedef struct {
	int64_t id, audit_id;
	char check[CF_AUDIT_CHECK_MAX + 1];
	cf_severity severity;
	char resource_type[32];     /* DEVICE_CERTIFICATE, CA_CERTIFICATE, THING, CLIENT_ID, POLICY */
	char resource_id[CF_AUDIT_RESOURCE_MAX + 1];
	char reason_code[64];
	char detail[CF_AUDIT_DETAIL_MAX + 1];
	int suppressed;
} cf_finding_rec;

typedef struct {
	int64_t audit_id;           /* 0: any */
	int severity;               /* a cf_severity, or -1 for any */
	const char *check;          /* NULL: any */
} cf_finding_filter;

typedef struct {
	char check[CF_AUDIT_CHECK_MAX + 1];
	char resource_id[CF_AUDIT_RESOURCE_MAX + 1];
	int64_t until;              /* 0: forever; else suppressed while now < until */
	char comment[CF_AUDIT_COMMENT_MAX + 1];
	int64_t created_at;
} cf_suppression_rec;

typedef struct {
	int64_t id, finding_id;
	char action[32];            /* deactivate, revoke, deactivate-ca, quarantine, rotate, notify */
	char status[16];            /* "succeeded", "noop" (already done) or "failed" */
	char detail[CF_AUDIT_DETAIL_MAX + 1];
	int64_t created_at;
} cf_mitigation_rec;

/*
 * Starts an audit (finished_at 0): trigger "on_demand" or "scheduled",
 * checks_json a JSON array of names. *out = its id. Event audit.started.
 */
int cf_store_audit_start(cf_store *st, int64_t *out, const char *trigger,
    const char *checks_json) CF_MUST_CHECK;
/*
 * Finishes audit id in one transaction: inserts the n findings (their id
 * and audit_id are assigned; text fields are checked: CF_EINVAL, nothing
 * written), sets finished_at and counts (a JSON object). CF_ENOTFOUND for
 * an unknown audit, CF_ESTATE if it is already finished. Event
 * audit.finished {findings, suppressed}.
 */
int cf_store_audit_finish(cf_store *st, int64_t id, const cf_finding_rec *findings, size_t n,
    const char *counts_json) CF_MUST_CHECK;
/* id 0: the latest finished audit. CF_ENOTFOUND. */
int cf_store_audit_get(cf_store *st, cf_audit_rec *out, int64_t id) CF_MUST_CHECK;
/* Newest first; limit 0 = all. */
int cf_store_audit_list(cf_store *st, cf_audit_rec **out, size_t *out_n, size_t limit) CF_MUST_CHECK;
void cf_audit_rec_clear(cf_audit_rec *r);
void cf_audit_recs_free(cf_audit_rec *r, size_t n);

int cf_store_finding_get(cf_store *st, cf_finding_rec *out, int64_t id) CF_MUST_CHECK;
/* By id (audit, then order of discovery). f may be NULL. Free with free(). */
int cf_store_finding_list(cf_store *st, cf_finding_rec **out, size_t *out_n,
    const cf_finding_filter *f) CF_MUST_CHECK;

/*
 * Creates or replaces the suppression of (check, resource_id); created_at
 * 0 = now. CF_EINVAL for a bad check name, resource, comment or an until
 * in the past. Event suppression.created {until, comment, replaced}.
 */
int cf_store_suppression_set(cf_store *st, const cf_suppression_rec *s) CF_MUST_CHECK;
/* CF_ENOTFOUND if there is none. Event suppression.removed. */
int cf_store_suppression_remove(cf_store *st, const char *check,
    const char *resource_id) CF_MUST_CHECK;
/* Sorted by check, resource; expired ones included (the caller compares until). Free with free(). */
int cf_store_suppression_list(cf_store *st, cf_suppression_rec **out, size_t *out_n) CF_MUST_CHECK;

/*
 * Records one mitigation action on a finding (created_at 0 = now; *id may
 * be NULL). CF_ENOTFOUND for an unknown finding. Event mitigation.action
 * {finding, action, status}.
 */
int cf_store_mitigation_record(cf_store *st, int64_t *id, const cf_mitigation_rec *m) CF_MUST_CHECK;
/* The actions on a finding (0: all), oldest first. Free with free(). */
int cf_store_mitigation_list(cf_store *st, cf_mitigation_rec **out, size_t *out_n,
    int64_t finding_id) CF_MUST_CHECK;

/* ---- streaming reads for the audit ---------------------------------------------- */

/*
 * Called once per certificate in one read of the table (no order
 * promised). The record and its pem are borrowed for the call only. A
 * non-zero return stops the walk and is returned.
 */
typedef int (*cf_store_cert_cb)(const cf_cert_rec *cert, void *arg);
int cf_store_cert_foreach(cf_store *st, cf_store_cert_cb cb, void *arg) CF_MUST_CHECK;

/*
 * Writes the key facts of n certificates (by id) in one transaction; an id
 * no longer present is skipped. Derived data: no event.
 */
int cf_store_cert_keyq_update(cf_store *st, const cf_cert_keyq *v, size_t n) CF_MUST_CHECK;

/*
 * Things holding no ACTIVE certificate, sorted: one anti-join on the
 * (thing, status) index. Free with cf_strv_free.
 */
int cf_store_thing_list_without_active(cf_store *st, char ***out, size_t *out_n) CF_MUST_CHECK;

/*
 * Connections open now or that ended at or after since (a look-back
 * window), ordered by connected_at then id: one indexed range plus the
 * open ones.
 */
int cf_store_connection_window(cf_store *st, cf_conn_rec **out, size_t *out_n,
    int64_t since) CF_MUST_CHECK;

/* ---- provisioning by claim (schema v6, DESIGN §9, docs/provisioning.md) ---------- */

/*
 * Templates, claim certificates, provisioned serials and provisioning
 * attempts. A template's spec is a JSON object the store keeps as given
 * (compact, sorted keys); cf_prov_template_parse (cf_prov.h) is its
 * grammar and the caller validates with it before creating. Every mutator
 * appends its event (prov.template_created, claim.created, claim.status,
 * prov.provisioned, prov.serial_released, prov.attempt) in its transaction.
 */
#define CF_PROV_SERIAL_MAX 64
#define CF_PROV_OUTCOME_MAX 47

typedef struct {
	char name[CF_NAME_MAX + 1];
	char *spec;  /* JSON object */
	int64_t created_at;
} cf_prov_template_rec;

/* CF_EEXISTS for a duplicate name; CF_EINVAL for a bad name or spec that is not an object. */
int cf_store_prov_template_create(cf_store *st, const char *name, const char *spec_json) CF_MUST_CHECK;
int cf_store_prov_template_get(cf_store *st, cf_prov_template_rec *out, const char *name) CF_MUST_CHECK;
/* Sorted by name. */
int cf_store_prov_template_list(cf_store *st, cf_prov_template_rec **out, size_t *out_n) CF_MUST_CHECK;
void cf_prov_template_rec_clear(cf_prov_template_rec *r);
void cf_prov_template_recs_free(cf_prov_template_rec *r, size_t n);

typedef enum { CF_CLAIM_ENABLED, CF_CLAIM_DISABLED, CF_CLAIM__STATUS_COUNT } cf_claim_status;

/* "ENABLED", "DISABLED"; "UNKNOWN" out of range. */
const char *cf_claim_status_name(cf_claim_status s);

typedef struct {
	char cert_id[CF_ID_LEN + 1];   /* the claim certificate (in the certificates table) */
	char template_name[CF_NAME_MAX + 1];
	cf_claim_status status;
	char reason[256];              /* why it was last disabled or enabled ("" if never) */
	int64_t created_at, updated_at;
} cf_claim_rec;

/*
 * Marks a registered certificate attached to no thing as a claim of
 * template (ENABLED). CF_ENOTFOUND for an unknown certificate or template,
 * CF_EINVAL for a certificate attached to a thing, CF_EEXISTS if already
 * a claim. Event claim.created {template}.
 */
int cf_store_claim_create(cf_store *st, const char *cert_id, const char *template_name) CF_MUST_CHECK;
/* By full certificate id (exact: the broker plugin's lookup). CF_ENOTFOUND. */
int cf_store_claim_get(cf_store *st, cf_claim_rec *out, const char *cert_id) CF_MUST_CHECK;
/* Sorted by created_at then id; template_name NULL: all. */
int cf_store_claim_list(cf_store *st, cf_claim_rec **out, size_t *out_n,
    const char *template_name) CF_MUST_CHECK;
/*
 * ENABLED <-> DISABLED with a reason (required, <= 255 bytes). Same
 * status: no-op, no event, *changed (may be NULL) 0. Event claim.status
 * {from, to, reason}: the broker plugin kicks a disabled claim's clients.
 */
int cf_store_claim_set_status(cf_store *st, int *changed, const char *cert_id, cf_claim_status to,
    const char *reason) CF_MUST_CHECK;
void cf_claim_recs_free(cf_claim_rec *r, size_t n);

typedef struct {
	char template_name[CF_NAME_MAX + 1];
	char serial[CF_PROV_SERIAL_MAX + 1];
	char thing[CF_NAME_MAX + 1];
	char cert_id[CF_ID_LEN + 1];   /* the certificate issued for it */
	char claim_id[CF_ID_LEN + 1];  /* the claim that asked */
	char client_id[256];           /* the client that asked */
	char key_id[CF_ID_LEN + 1];    /* SHA-256 of the CSR's public key (SPKI DER) */
	int64_t at;
} cf_prov_serial_rec;

/*
 * Records (or, re-provisioning, replaces) a provisioned serial.
 * CF_ENOTFOUND for an unknown template. Event prov.provisioned {template,
 * serial, thing, certificate, claim, clientId}.
 */
int cf_store_prov_serial_put(cf_store *st, const cf_prov_serial_rec *rec) CF_MUST_CHECK;
int cf_store_prov_serial_get(cf_store *st, cf_prov_serial_rec *out, const char *template_name,
    const char *serial) CF_MUST_CHECK;
/* The newest serial provisioned with this public key. CF_ENOTFOUND. */
int cf_store_prov_serial_find_key(cf_store *st, cf_prov_serial_rec *out, const char *key_id) CF_MUST_CHECK;
/* Forgets a serial (it may provision again). CF_ENOTFOUND. Event prov.serial_released {reason}. */
int cf_store_prov_serial_delete(cf_store *st, const char *template_name, const char *serial,
    const char *reason) CF_MUST_CHECK;
/* template_name NULL: all; by at then serial; limit 0 = all. */
int cf_store_prov_serial_list(cf_store *st, cf_prov_serial_rec **out, size_t *out_n,
    const char *template_name, size_t limit) CF_MUST_CHECK;
int cf_store_prov_serial_count(cf_store *st, int64_t *out, const char *template_name) CF_MUST_CHECK;

typedef struct {
	int64_t id;
	char claim_id[CF_ID_LEN + 1];
	char template_name[CF_NAME_MAX + 1]; /* as asked (may be unknown) */
	char serial[CF_PROV_SERIAL_MAX + 1]; /* "" if none was readable */
	char client_id[256];
	char outcome[CF_PROV_OUTCOME_MAX + 1]; /* "accepted" or the errorCode */
	int64_t at;
} cf_prov_attempt_rec;

/* Records an attempt (at 0 = now). Event prov.attempt {template, serial, clientId, outcome}. */
int cf_store_prov_attempt_add(cf_store *st, const cf_prov_attempt_rec *a) CF_MUST_CHECK;
/*
 * Attempts of a claim since (at >= since): *total of them, *denied those
 * whose outcome is not "accepted". One indexed range.
 */
int cf_store_prov_attempt_count(cf_store *st, int64_t *total, int64_t *denied,
    const char *claim_id, int64_t since) CF_MUST_CHECK;


#endif
