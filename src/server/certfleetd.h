/*
 * certfleetd — private interface between the daemon's modules.
 *
 * One struct cfd holds everything the reactor owns: the libevent base, the
 * data directory (cf_ca: configuration, registry, issuing signer), the
 * settings read from certfleet.conf, the MQTT client, the HTTP API and the
 * metrics counters. main.c builds and tears it down; mqtt.c, api.c and
 * metrics.c each own their part. Everything runs on the one reactor thread,
 * except notify.c's delivery thread (its own store handle, see below).
 */
#ifndef CFD_H
#define CFD_H

#include <limits.h>
#include <stdint.h>

#include <event2/event.h>
#include <jansson.h>

#include "cf_audit.h"
#include "cf_ca.h"
#include "cf_jobspec.h"
#include "cf_log.h"
#include "cf_stamp.h"

#define CFD_TOPIC_PREFIX_MAX 64

typedef struct cfd_mqtt cfd_mqtt;
typedef struct cfd_api cfd_api;
typedef struct cfd_engine cfd_engine;
typedef struct cfd_notifier cfd_notifier; /* not cfd_notify: that is the function */
typedef struct cfd_auditor cfd_auditor;   /* not cfd_audit: the functions' prefix */
typedef struct cfd_prov cfd_prov;

/* HTTP status codes counted separately; anything else lands in "other". */
#define CFD_HTTP_CODES 10
/* Issuance latency histogram buckets (metrics.c: 1 ms ... 5 s, then +Inf). */
#define CFD_ISSUE_BUCKETS 12

typedef struct {
	uint64_t mqtt_reconnects;
	uint64_t mqtt_received;
	uint64_t mqtt_accepted;
	uint64_t dropped_unstamped;
	uint64_t dropped_malformed;
	uint64_t conn_connected;
	uint64_t conn_disconnected;
	uint64_t conn_refused;
	uint64_t http_by_code[CFD_HTTP_CODES];
	uint64_t http_other;
	uint64_t audits_run;          /* by certfleetd (scheduled and POST /v1/audits) */
	uint64_t audits_failed;
	/* cf_ca_issue_csr's latency (jobs.c), cumulative Prometheus buckets in cfd_metrics_issue. */
	uint64_t issue_bucket[CFD_ISSUE_BUCKETS];
	uint64_t issue_count;
	uint64_t issue_sum_us;
} cfd_metrics;

typedef struct cfd {
	struct event_base *base;
	cf_ca *ca;
	const char *dir;
	const char *log_file;        /* --log-file, NULL: stderr */
	int log_level_forced;        /* --log-level given: it wins over certfleet.conf */

	/* certfleet.conf */
	char mqtt_host[256];
	long mqtt_port;
	char api_host[256];
	long api_port;
	char topic_prefix[CFD_TOPIC_PREFIX_MAX + 1];
	char service_cert[PATH_MAX];
	char service_key[PATH_MAX];
	char broker_cafile[PATH_MAX];
	char stamp_key_file[PATH_MAX];
	cf_stamp_key stamp_key;

	cfd_mqtt *mqtt;
	cfd_api *api;
	cfd_engine *engine;
	cfd_notifier *notify;
	cfd_auditor *auditor;
	cfd_prov *prov;
	cfd_metrics metrics;
	int stopping;
} cfd;

/* mqtt.c: the libmosquitto client driven by the reactor. */
int cfd_mqtt_start(cfd *d) CF_MUST_CHECK;
/* Sends DISCONNECT (the broker keeps the session) and frees the client. */
void cfd_mqtt_stop(cfd *d);
int cfd_mqtt_connected(const cfd *d);
/* Publishes payload (NUL-terminated JSON) at QoS 1. CF_ESTATE while disconnected. */
int cfd_mqtt_publish(cfd *d, const char *topic, const char *payload) CF_MUST_CHECK;

/*
 * jobs.c: the MQTT jobs API and rotation protocol. A device message whose
 * stamp verified (principal and client_id are the stamped values).
 */
void cfd_jobs_on_message(cfd *d, const char *topic, const void *payload, size_t len,
    const char *principal, const char *client_id);
/* Publishes notify-next to thing: its next pending execution, or {}. */
void cfd_jobs_notify_next(cfd *d, const char *thing);
/*
 * An execution e (its new state, already written) has ended: settles its
 * rotation (DESIGN §6: retire the old or the new certificate, or flag it
 * indeterminate) and queues the notifications (FAILED, TIMED_OUT, REJECTED,
 * indeterminate), all inside the caller's transaction.
 */
int cfd_execution_ended(cfd *d, const cf_exec_rec *e, const char *reason) CF_MUST_CHECK;
/*
 * thing connected with principal: every indeterminate rotation of it is
 * settled — the principal it uses wins, the other certificate is retired.
 * Each in its own transaction. The number settled, or a negative CF_E*.
 */
int cfd_rotation_connected(cfd *d, const char *thing, const char *principal);

/* A ROTATE_CERTIFICATE job to store (jobs.c): everything in it already validated. */
typedef struct {
	const char *job_id;               /* NULL: "<id_prefix>-<time>-<8 hex>" */
	const char *id_prefix;            /* NULL: "rotate" */
	const char *targets_json;         /* canonical (cf_jobspec_targets_dump) */
	const char *config_json;          /* canonical (cf_jobspec_config_dump); NULL: {} */
	const cf_jobspec_config *config;  /* the same, parsed (its schedule decides the status) */
	cf_job_selection selection;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	const char *comment;              /* NULL: none */
	const char *source;               /* for the log: "api", "mitigation" */
} cfd_rotation_job;

/*
 * Stores the job and a target for each of things (n, resolved and
 * existing) in one transaction, then runs an engine pass so that its first
 * executions go out now. job_id_out (may be NULL) gets the id. The store's
 * error otherwise (CF_EEXISTS for a taken id), nothing stored.
 */
int cfd_jobs_insert_rotation(cfd *d, char job_id_out[CF_PROTO_JOB_ID_MAX + 1],
    const cfd_rotation_job *spec, const char *const *things, size_t n) CF_MUST_CHECK;
/*
 * A SNAPSHOT rotation job for things (n >= 1; each must exist: CF_ENOTFOUND)
 * to key_alg (a cf_key_alg name, its default signing algorithm) with
 * config_json (a job config as in POST /v1/jobs, NULL: {}), validated as
 * the API validates. job_id_out (CF_PROTO_JOB_ID_MAX + 1 bytes, may be
 * NULL) gets the generated id ("mitigate-..."). CF_EINVAL for a bad
 * algorithm or config.
 */
int cfd_jobs_create_rotation(cfd *d, char *job_id_out, const char *const *things, size_t n,
    const char *key_alg, const char *config_json, const char *comment) CF_MUST_CHECK;

/*
 * engine.c: the jobs engine's clock (DESIGN §7, docs/jobs.md "The engine"):
 * one timer that schedules, releases targets under the rollout, times
 * out, retries, aborts, completes jobs, follows CONTINUOUS targets and
 * resolves indeterminate rotations. Everything it does is decided by
 * cf_job and recorded in the store, so a restart carries on.
 */
int cfd_engine_start(cfd *d) CF_MUST_CHECK;
void cfd_engine_stop(cfd *d);
/* Runs a pass soon (an execution ended). */
void cfd_engine_kick(cfd *d);
/* Runs a pass now (a job was created: its first executions go out before the API answers). */
void cfd_engine_pass(cfd *d);
/*
 * Cancels a job: QUEUED executions CANCELED, IN_PROGRESS ones too when
 * force (their rotations undone as for a timeout), the unreleased targets
 * never released; job CANCELED with comment. CF_ENOTFOUND; CF_ESTATE for a
 * job already CANCELED or COMPLETED.
 */
int cfd_engine_cancel(cfd *d, const char *job_id, int force, const char *comment) CF_MUST_CHECK;

/*
 * notify.c: notifications (docs/notifications.md). cfd_notify queues one
 * for every configured sink into the store's outbox inside the caller's
 * transaction (no sink configured: nothing); a delivery thread with its own
 * store handle sends them with retries and backoff: a webhook (HTTP POST
 * of the JSON, X-Certfleet-Signature: sha256=<hex HMAC-SHA256 of the body
 * with the configured secret>) and an exec hook (the JSON on stdin).
 */
typedef struct {
	const char *kind;       /* "execution.failed", "execution.timed_out", "execution.rejected",
	                           "rotation.indeterminate", "job.aborted" ... */
	const char *thing;      /* NULL if none */
	const char *job_id;     /* NULL if none */
	const char *status;     /* the execution's (or job's) status name, NULL if none */
	int64_t execution_number; /* 0 if none */
	const char *reason;     /* NULL if none */
	const char *old_cert;   /* certificate ids, NULL or "" if none */
	const char *new_cert;
	const cf_finding_rec *finding; /* "audit.finding": the finding, NULL otherwise */
} cfd_notice;

/* Reads the notify_* settings; starts the thread when a sink is configured. */
int cfd_notify_start(cfd *d) CF_MUST_CHECK;
void cfd_notify_stop(cfd *d);
/* Queues n for every sink (in the caller's transaction, if one is open). */
int cfd_notify(cfd *d, const cfd_notice *n) CF_MUST_CHECK;
/* Wakes the delivery thread (call after the transaction committed). */
void cfd_notify_wake(cfd *d);

/*
 * prov.c: provisioning by claim (docs/provisioning.md). A message on
 * <prefix>provisioning/<template>/provision whose stamp verified (principal:
 * the claim certificate).
 */
void cfd_prov_on_message(cfd *d, const char *topic, const void *payload, size_t len,
    const char *principal, const char *client_id);
/*
 * A client connected (already recorded): a claim connected from more
 * clients at once than its template allows is disabled; a device's
 * PENDING_ACTIVATION certificate becomes ACTIVE.
 */
void cfd_prov_connected(cfd *d, const char *kind, const char *client_id, const char *principal);
/* Deletes provisioned certificates never activated in time; the number swept, or a negative CF_E*. */
int cfd_prov_sweep(cfd *d, int64_t now);
/* The sweep's timer (provision_sweep_s, default 60). */
int cfd_prov_start(cfd *d) CF_MUST_CHECK;
void cfd_prov_stop(cfd *d);

/* api.c: the HTTP API on api_host:api_port. */
int cfd_api_start(cfd *d) CF_MUST_CHECK;
void cfd_api_stop(cfd *d);

/* metrics.c */
struct evbuffer;
/* Prometheus text format 0.0.4; registry gauges are read from the store now. */
int cfd_metrics_render(cfd *d, struct evbuffer *out) CF_MUST_CHECK;
void cfd_metrics_http(cfd *d, int code);
/* One certificate issuance that took us microseconds (the latency histogram). */
void cfd_metrics_issue(cfd *d, int64_t us);
/* CLOCK_MONOTONIC in microseconds. */
int64_t cfd_mono_us(void);

/*
 * audit.c: scheduled audits and automatic mitigation rules (docs/audit.md
 * "In certfleetd"). cfd_audit_start reads audit_* and mitigation_* from
 * certfleet.conf (CF_EINVAL naming the setting) and, with a schedule,
 * starts the timer.
 */
int cfd_audit_start(cfd *d) CF_MUST_CHECK;
void cfd_audit_stop(cfd *d);
/* The options of certfleet.conf (audit_checks, audit_params, policy, broker config). Borrowed. */
const cf_audit_opts *cfd_audit_default_opts(const cfd *d);
/*
 * Runs an audit with o (its trigger included) on the reactor, then (if
 * mitigate) the mitigation rules on its findings; each action taken is appended to
 * actions ({finding, action, status, detail}) when that is not NULL. The
 * audit's error (nothing mitigated) otherwise; failed actions are recorded,
 * not returned.
 */
int cfd_audit_run(cfd *d, cf_audit_result *out, const cf_audit_opts *o, json_t *actions,
    int mitigate) CF_MUST_CHECK;


#endif
