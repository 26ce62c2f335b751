/*
 * cf_audit — the registry audit of DESIGN §8: which certificates, CAs,
 * things, clients and topic rules need attention, as findings with a
 * stable reason code (docs/audit.md).
 *
 * Every check is one row of one table (cf_audit_checks): its name (the
 * reference audit service's where one exists), default severity, resource
 * type, parameter and function. Certificate checks are per-row functions
 * called from ONE read of the certificates table (cf_store_cert_foreach);
 * the others run indexed queries or work on small tables (CAs, the
 * connections look-back window). Device key quality uses the facts stored
 * with each certificate at issuance (cf_store_cert_insert) when they were
 * computed under the audit's key policy (same fingerprint); otherwise the
 * PEM is parsed and checked in the pass, and the new facts are stored
 * after it in one transaction, so the next audit parses nothing. CA PEMs
 * (few) are parsed once per distinct PEM.
 *
 * cf_audit_run records the audit (audit.started), runs the checks, marks
 * the findings that a live suppression covers, and writes every finding in
 * one transaction with the audit's finish (audit.finished). It is what
 * both `certfleet audit run` and certfleetd's scheduler call.
 */
#ifndef CF_AUDIT_H
#define CF_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cf_keyq.h"
#include "cf_store.h"

typedef enum {
	CF_AUDIT_DEVICE_CERTIFICATE_EXPIRING,
	CF_AUDIT_DEVICE_CERTIFICATE_AGE,
	CF_AUDIT_CA_CERTIFICATE_EXPIRING,
	CF_AUDIT_REVOKED_CA_CERTIFICATE_STILL_ACTIVE,
	CF_AUDIT_INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES,
	CF_AUDIT_DEVICE_CERTIFICATE_KEY_QUALITY,
	CF_AUDIT_CA_CERTIFICATE_KEY_QUALITY,
	CF_AUDIT_REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE,
	CF_AUDIT_DEVICE_CERTIFICATE_SHARED,
	CF_AUDIT_CONFLICTING_CLIENT_IDS,
	CF_AUDIT_THING_WITHOUT_ACTIVE_CERTIFICATE,
	CF_AUDIT_UNATTACHED_CERTIFICATE,
	CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE,
	CF_AUDIT_PROVISIONING_CLAIM_MISUSE,
	CF_AUDIT__COUNT
} cf_audit_check;

typedef struct cf_audit_ctx cf_audit_ctx; /* one run's state, private to cf_audit.c */

typedef struct {
	const char *name;          /* DEVICE_CERTIFICATE_EXPIRING_CHECK ... */
	cf_severity severity;      /* default; some reason codes raise it (docs/audit.md) */
	const char *resource_type; /* DEVICE_CERTIFICATE, CA_CERTIFICATE, THING, CLIENT_ID, POLICY */
	const char *param;         /* the parameter's name, NULL if none */
	int64_t param_default;     /* in param_unit */
	const char *param_unit;    /* "days" or "seconds" */
	const char *reasons;       /* the reason codes it can report, space-separated */
	/* Called for each certificate during the one pass (NULL: not a certificate check). */
	int (*on_cert)(cf_audit_ctx *x, const cf_cert_rec *c);
	/* Called once after the pass (NULL: nothing more to do). */
	int (*run)(cf_audit_ctx *x);
} cf_audit_check_def;

/* The table, indexed by cf_audit_check (static). */
extern const cf_audit_check_def cf_audit_checks[CF_AUDIT__COUNT];

/* The check named name (exact), or -1. */
int cf_audit_check_find(const char *name);

typedef struct {
	unsigned char enabled[CF_AUDIT__COUNT]; /* cf_audit_opts_init: all 1 */
	int64_t param[CF_AUDIT__COUNT];         /* in each check's unit; init: the defaults */
	const cf_keyq_policy *keyq;             /* NULL: cf_keyq's default policy */
	const char *topic_prefix;               /* the configured prefix ("cf/"); NULL: not checked */
	const char *broker_config;              /* a mosquitto.conf to inspect; NULL: none */
	const char *trigger;                    /* "on_demand" (init) or "scheduled" */
	int64_t now;                            /* 0: the current time */
} cf_audit_opts;

void cf_audit_opts_init(cf_audit_opts *o);
/*
 * Enables only the checks named in list ("A,B", names as in the table).
 * CF_EINVAL naming the first unknown name (o is then unchanged).
 */
int cf_audit_opts_select(cf_audit_opts *o, const char *list) CF_MUST_CHECK;
/* Sets "CHECK=VALUE" (a check with a parameter, VALUE > 0). CF_EINVAL otherwise. */
int cf_audit_opts_param(cf_audit_opts *o, const char *assignment) CF_MUST_CHECK;

typedef struct {
	int64_t audit_id;
	size_t findings;                       /* all, suppressed included */
	size_t suppressed;
	size_t by_severity[CF_SEV__COUNT];     /* unsuppressed only */
	size_t by_check[CF_AUDIT__COUNT];      /* unsuppressed only */
	/* How the work was done (tests assert the one-pass property with these). */
	size_t cert_passes;                    /* reads of the certificates table: 0 or 1 */
	size_t cert_rows;
	size_t pem_parses;                     /* PEMs parsed for key quality (CAs: distinct) */
	size_t keyq_stored;                    /* device certificates judged by their stored facts */
	size_t keyq_updated;                   /* ... whose facts were recomputed and stored */
} cf_audit_result;

/*
 * Runs an audit of st and stores it with its findings. 0 with *out filled
 * in; on failure the audit stays unfinished (finished_at 0) and nothing of
 * its findings is written.
 */
int cf_audit_run(cf_store *st, cf_audit_result *out, const cf_audit_opts *o) CF_MUST_CHECK;

/* 1 if a suppression in supp (n) covers (check, resource_id) at now, else 0. */
int cf_audit_is_suppressed(const cf_suppression_rec *supp, size_t n, const char *check,
    const char *resource_id, int64_t now);

typedef enum { CF_AUDIT_EXPORT_JSON, CF_AUDIT_EXPORT_CSV, CF_AUDIT_EXPORT_HTML } cf_audit_format;

int cf_audit_format_parse(cf_audit_format *out, const char *name) CF_MUST_CHECK;
/*
 * Writes a report of audit a and its findings (n) to f: JSON (an object
 * with the audit and a findings array), CSV (a header line, RFC 4180
 * quoting) or one self-contained HTML page (every value escaped).
 */
int cf_audit_export(FILE *f, cf_audit_format fmt, const cf_audit_rec *a,
    const cf_finding_rec *findings, size_t n) CF_MUST_CHECK;

/*
 * When certfleetd runs scheduled audits (certfleet.conf audit_schedule or
 * audit_interval, docs/audit.md "In certfleetd"). Times are UTC.
 */
typedef enum {
	CF_AUDIT_SCHED_OFF,
	CF_AUDIT_SCHED_DAILY,    /* daily@HH:MM */
	CF_AUDIT_SCHED_WEEKLY,   /* weekly@<mon..sun>@HH:MM */
	CF_AUDIT_SCHED_MONTHLY,  /* monthly@<1-28>@HH:MM */
	CF_AUDIT_SCHED_INTERVAL, /* every interval seconds */
} cf_audit_sched_kind;

typedef struct {
	cf_audit_sched_kind kind;
	int hour, minute;
	int wday;          /* 0 = Sunday */
	int mday;          /* 1 to 28: every month has it */
	int64_t interval;  /* seconds */
} cf_audit_schedule;

/* "daily@02:30", "weekly@sun@03:00", "monthly@1@04:00", or "off"/"" (OFF). CF_EINVAL. */
int cf_audit_schedule_parse(cf_audit_schedule *out, const char *text) CF_MUST_CHECK;
/* The latest slot of a calendar schedule at or before now; 0 for OFF and INTERVAL. */
int64_t cf_audit_schedule_prev(const cf_audit_schedule *s, int64_t now);
/*
 * 1 when an audit is due at now, the last one having started at last_run:
 * a calendar slot after last_run has come (one run however many slots were
 * missed), or interval seconds have passed. 0 otherwise and for OFF.
 */
int cf_audit_schedule_due(const cf_audit_schedule *s, int64_t last_run, int64_t now);

#endif
