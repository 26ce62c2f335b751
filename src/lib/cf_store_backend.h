/*
 * cf_store_backend — the contract between cf_store.c and a storage back end.
 *
 * Private to the library. cf_store.c owns every rule (validation, status
 * transitions, the event chain, group evaluation, nesting of transactions);
 * a back end only stores and fetches records, with no policy of its own, so
 * a second back end (PostgreSQL) is one more ops table (docs/store.md).
 *
 * Conventions for every op: return 0 or a negative CF_E* with cf_error set;
 * CF_ENOTFOUND when the named row is absent, CF_EEXISTS on a unique
 * violation, CF_ECORRUPT when stored data cannot be read back. Records
 * handed out through out are owned by the caller (cf_*_rec_clear /
 * cf_*_recs_free). Ops that write are only called inside a transaction
 * opened with begin().
 */
#ifndef CF_STORE_BACKEND_H
#define CF_STORE_BACKEND_H

#include "cf_store.h"

struct cf_store_backend; /* defined by each back end */

/* Which id space a prefix lookup searches. */
typedef enum { CF_STORE_KIND_CA, CF_STORE_KIND_CERT } cf_store_kind;

/* Called for every event in seq order; a non-zero return stops the walk and is returned. */
typedef int (*cf_store_event_cb)(const cf_event_rec *ev, void *arg);

struct cf_store_ops {
	const char *name; /* "sqlite" */

	/*
	 * Opens uri and brings the schema to the back end's current version.
	 * flags: CF_STORE_CREATE. CF_ENOTFOUND, CF_ECORRUPT, CF_EINVAL as in
	 * cf_store_open().
	 */
	int (*open)(struct cf_store_backend **out, const char *uri, int flags);
	void (*close)(struct cf_store_backend *b); /* rolls back an open transaction */
	int (*schema_version)(struct cf_store_backend *b);

	/*
	 * depth is the number of transactions already open: 0 starts the
	 * outermost write transaction, n > 0 a nested one that can be rolled
	 * back on its own (a savepoint). commit/rollback get the depth of the
	 * transaction they end (0 = outermost).
	 */
	int (*begin)(struct cf_store_backend *b, int depth);
	int (*commit)(struct cf_store_backend *b, int depth);
	void (*rollback)(struct cf_store_backend *b, int depth);

	/* things: list sorted by name */
	int (*thing_insert)(struct cf_store_backend *b, const cf_thing_rec *t);
	int (*thing_get)(struct cf_store_backend *b, cf_thing_rec *out, const char *name);
	int (*thing_list)(struct cf_store_backend *b, cf_thing_rec **out, size_t *out_n);
	int (*thing_update)(struct cf_store_backend *b, const cf_thing_rec *t); /* attributes */
	/* Removes the thing and its memberships and detaches its certificates. */
	int (*thing_delete)(struct cf_store_backend *b, const char *name);

	/* groups: list sorted by name, members = static member count (0 for dynamic) */
	int (*group_insert)(struct cf_store_backend *b, const cf_group_rec *g);
	int (*group_get)(struct cf_store_backend *b, cf_group_rec *out, const char *name);
	int (*group_list)(struct cf_store_backend *b, cf_group_rec **out, size_t *out_n);
	/* 0 if added, CF_EEXISTS if the thing already is a member. */
	int (*group_member_add)(struct cf_store_backend *b, const char *group, const char *thing,
	    int64_t ts);
	int (*group_member_remove)(struct cf_store_backend *b, const char *group, const char *thing);
	/* Static members, sorted. Free with cf_strv_free. */
	int (*group_member_list)(struct cf_store_backend *b, char ***out, size_t *out_n,
	    const char *group);

	/* CAs: list sorted by created_at then name */
	int (*ca_insert)(struct cf_store_backend *b, const cf_ca_rec *ca);
	int (*ca_get)(struct cf_store_backend *b, cf_ca_rec *out, const char *id);
	int (*ca_get_by_name)(struct cf_store_backend *b, cf_ca_rec *out, const char *name);
	int (*ca_list)(struct cf_store_backend *b, cf_ca_rec **out, size_t *out_n);
	/* The CA with is_issuer set (there is at most one); CF_ENOTFOUND if none. */
	int (*ca_get_issuer)(struct cf_store_backend *b, cf_ca_rec *out);
	/* Writes status, is_issuer, revoked_at, revoke_reason and crl_number of ca->id. */
	int (*ca_update)(struct cf_store_backend *b, const cf_ca_rec *ca);

	/* certificates: list sorted by created_at then id */
	int (*cert_insert)(struct cf_store_backend *b, const cf_cert_rec *c);
	int (*cert_get)(struct cf_store_backend *b, cf_cert_rec *out, const char *id);
	/* f->thing "" selects certificates attached to no thing. */
	int (*cert_list)(struct cf_store_backend *b, cf_cert_rec **out, size_t *out_n,
	    const cf_cert_filter *f);
	/*
	 * How many certificates thing (not "") has in status, except_id not
	 * counted: one indexed count, no rows read out.
	 */
	int (*cert_count)(struct cf_store_backend *b, size_t *out, const char *thing,
	    cf_cert_status status, const char *except_id);
	/* Writes thing, status, updated_at, revoked_at and revoke_reason of c->id. */
	int (*cert_update)(struct cf_store_backend *b, const cf_cert_rec *c);

	/* Up to max ids of kind starting with prefix (lowercase hex), in out[]. */
	int (*id_prefix)(struct cf_store_backend *b, char (*out)[CF_ID_LEN + 1], size_t *out_n,
	    size_t max, cf_store_kind kind, const char *prefix);

	/* The newest event's seq and hash; 0 and 64 zeros when the log is empty. */
	int (*event_head)(struct cf_store_backend *b, int64_t *seq, char hash[CF_ID_LEN + 1]);
	int (*event_insert)(struct cf_store_backend *b, const cf_event_rec *ev);
	int (*event_list)(struct cf_store_backend *b, cf_event_rec **out, size_t *out_n,
	    int64_t since, size_t limit);
	int (*event_foreach)(struct cf_store_backend *b, cf_store_event_cb cb, void *arg);
	/* Events with seq > after, by primary key. */
	int (*event_list_after)(struct cf_store_backend *b, cf_event_rec **out, size_t *out_n,
	    int64_t after, size_t limit);

	/* connections: conn_close ends the open row with that ref (CF_ENOTFOUND if none) */
	int (*conn_insert)(struct cf_store_backend *b, const cf_conn_rec *c);
	int (*conn_close)(struct cf_store_backend *b, const char *ref, int64_t at, const char *reason);
	int (*conn_close_all)(struct cf_store_backend *b, int64_t at, const char *reason,
	    size_t *out_n);
	int (*conn_list)(struct cf_store_backend *b, cf_conn_rec **out, size_t *out_n,
	    const char *client_id, int open_only, size_t limit);

	/* jobs: list sorted by created_at then id, status -1 = any */
	int (*job_insert)(struct cf_store_backend *b, const cf_job_rec *j);
	int (*job_get)(struct cf_store_backend *b, cf_job_rec *out, const char *id);
	int (*job_list)(struct cf_store_backend *b, cf_job_rec **out, size_t *out_n, int status);
	/* Writes status, force_canceled, comment, updated_at and completed_at of j->id. */
	int (*job_update)(struct cf_store_backend *b, const cf_job_rec *j);

	/* executions */
	int (*exec_insert)(struct cf_store_backend *b, const cf_exec_rec *e);
	/* execution_number 0: the highest one of (job, thing). */
	int (*exec_get)(struct cf_store_backend *b, cf_exec_rec *out, const char *job_id,
	    const char *thing, int64_t execution_number);
	/*
	 * One UPDATE of status, version, status_details, the times and the retry
	 * counters WHERE (job_id, thing, execution_number) match AND version =
	 * expected_version; *out_changed = rows written (0 or 1).
	 */
	int (*exec_update)(struct cf_store_backend *b, const cf_exec_rec *e,
	    int64_t expected_version, int *out_changed);
	/* The thing's execution in status with the smallest queued_at (then job id); CF_ENOTFOUND. */
	int (*exec_oldest)(struct cf_store_backend *b, cf_exec_rec *out, const char *thing,
	    cf_exec_status status);
	/* By thing, execution_number; status -1 = any; limit 0 = all. */
	int (*exec_list)(struct cf_store_backend *b, cf_exec_rec **out, size_t *out_n,
	    const char *job_id, int status, size_t limit);
	/* Adds to counts[status] the latest attempt of each thing of the job (one GROUP BY). */
	int (*exec_counts)(struct cf_store_backend *b, int64_t counts[CF_EXEC__COUNT],
	    const char *job_id);
	/* IN_PROGRESS with last_step_at <= step (if > 0) or started_at <= started (if > 0). */
	int (*exec_stale)(struct cf_store_backend *b, cf_exec_rec **out, size_t *out_n,
	    const char *job_id, int64_t step, int64_t started, size_t limit);

	/* rotations: rotation_update writes old_cert, new_cert, state and updated_at */
	int (*rotation_insert)(struct cf_store_backend *b, const cf_rotation_rec *r);
	int (*rotation_get)(struct cf_store_backend *b, cf_rotation_rec *out, const char *job_id,
	    const char *thing, int64_t execution_number);
	int (*rotation_update)(struct cf_store_backend *b, const cf_rotation_rec *r);
	/* old_cert = id OR new_cert = id, by created_at. */
	int (*rotation_find_cert)(struct cf_store_backend *b, cf_rotation_rec **out, size_t *out_n,
	    const char *cert_id);
	/* In state, by updated_at (then key); limit 0 = all. */
	int (*rotation_list_state)(struct cf_store_backend *b, cf_rotation_rec **out, size_t *out_n,
	    cf_rotation_state state, size_t limit);

	/* job targets: target_update writes added_at, released_at and removed_at of (job, thing) */
	int (*target_insert)(struct cf_store_backend *b, const cf_job_target_rec *t);
	int (*target_get)(struct cf_store_backend *b, cf_job_target_rec *out, const char *job_id,
	    const char *thing);
	int (*target_update)(struct cf_store_backend *b, const cf_job_target_rec *t);
	/* ALL and RELEASED by thing, UNRELEASED by added_at then thing; limit 0 = all. */
	int (*target_list)(struct cf_store_backend *b, cf_job_target_rec **out, size_t *out_n,
	    const char *job_id, cf_targets_which which, size_t limit);
	/* One aggregate over the job's rows (first_released_at counts removed ones too). */
	int (*target_stats)(struct cf_store_backend *b, cf_job_target_stats *out, const char *job_id,
	    int64_t since);

	/* notification outbox: notify_insert assigns the id (*out_id) */
	int (*notify_insert)(struct cf_store_backend *b, int64_t *out_id, const cf_notify_rec *n);
	int (*notify_get)(struct cf_store_backend *b, cf_notify_rec *out, int64_t id);
	/*
	 * Writes state, attempts, next_at, updated_at and last_error of n->id,
	 * only while it is PENDING; *out_changed = rows written (0 or 1).
	 */
	int (*notify_update)(struct cf_store_backend *b, const cf_notify_rec *n, int *out_changed);
	/* PENDING with next_at <= now, by next_at then id; limit 0 = all. */
	int (*notify_due)(struct cf_store_backend *b, cf_notify_rec **out, size_t *out_n,
	    int64_t now, size_t limit);
	/* By id descending; state -1 = any; limit 0 = all. */
	int (*notify_list)(struct cf_store_backend *b, cf_notify_rec **out, size_t *out_n,
	    int state, size_t limit);

	/* audits (schema v5): audit_insert assigns the id; audit_update writes finished_at, counts */
	int (*audit_insert)(struct cf_store_backend *b, int64_t *out_id, const cf_audit_rec *a);
	int (*audit_get)(struct cf_store_backend *b, cf_audit_rec *out, int64_t id); /* 0: latest finished */
	int (*audit_update)(struct cf_store_backend *b, const cf_audit_rec *a);
	int (*audit_list)(struct cf_store_backend *b, cf_audit_rec **out, size_t *out_n, size_t limit);
	/* findings: finding_insert assigns the id */
	int (*finding_insert)(struct cf_store_backend *b, int64_t *out_id, const cf_finding_rec *f);
	int (*finding_get)(struct cf_store_backend *b, cf_finding_rec *out, int64_t id);
	int (*finding_list)(struct cf_store_backend *b, cf_finding_rec **out, size_t *out_n,
	    const cf_finding_filter *f);
	/* suppressions: upsert on (check, resource_id); *replaced = 1 if one existed */
	int (*supp_upsert)(struct cf_store_backend *b, const cf_suppression_rec *s, int *replaced);
	int (*supp_delete)(struct cf_store_backend *b, const char *check, const char *resource_id);
	int (*supp_list)(struct cf_store_backend *b, cf_suppression_rec **out, size_t *out_n);
	/* mitigation actions: mitig_insert assigns the id; list by id, finding 0 = all */
	int (*mitig_insert)(struct cf_store_backend *b, int64_t *out_id, const cf_mitigation_rec *m);
	int (*mitig_list)(struct cf_store_backend *b, cf_mitigation_rec **out, size_t *out_n,
	    int64_t finding_id);
	/* One read of every certificate; the record passed to cb is borrowed. */
	int (*cert_foreach)(struct cf_store_backend *b, cf_store_cert_cb cb, void *arg);
	/* Sets spki_sha256 and keyq_* of certificate v->id (no row: no change). */
	int (*cert_keyq_update)(struct cf_store_backend *b, const cf_cert_keyq *v);
	/* Things with no ACTIVE certificate, sorted (cf_strv_free). */
	int (*thing_without_active)(struct cf_store_backend *b, char ***out, size_t *out_n);
	/* Open connections and those that ended at or after since, by connected_at then id. */
	int (*conn_window)(struct cf_store_backend *b, cf_conn_rec **out, size_t *out_n, int64_t since);
	/*
	 * provisioning (schema v6): lists by name / created_at then id / at then
	 * serial; pserial_get by (template, serial), or the newest row of key_id
	 * when key_id is non-NULL; pserial_put inserts or replaces.
	 */
	int (*ptemplate_insert)(struct cf_store_backend *b, const cf_prov_template_rec *t);
	int (*ptemplate_get)(struct cf_store_backend *b, cf_prov_template_rec *out, const char *name);
	int (*ptemplate_list)(struct cf_store_backend *b, cf_prov_template_rec **out, size_t *out_n);
	int (*claim_insert)(struct cf_store_backend *b, const cf_claim_rec *c);
	int (*claim_get)(struct cf_store_backend *b, cf_claim_rec *out, const char *cert_id);
	int (*claim_list)(struct cf_store_backend *b, cf_claim_rec **out, size_t *out_n,
	    const char *template_name);
	/* Writes status, reason and updated_at. */
	int (*claim_update)(struct cf_store_backend *b, const cf_claim_rec *c);
	int (*pserial_put)(struct cf_store_backend *b, const cf_prov_serial_rec *x);
	int (*pserial_get)(struct cf_store_backend *b, cf_prov_serial_rec *out,
	    const char *template_name, const char *serial, const char *key_id);
	int (*pserial_delete)(struct cf_store_backend *b, const char *template_name,
	    const char *serial);
	int (*pserial_list)(struct cf_store_backend *b, cf_prov_serial_rec **out, size_t *out_n,
	    const char *template_name, size_t limit);
	int (*pserial_count)(struct cf_store_backend *b, int64_t *out, const char *template_name);
	int (*pattempt_insert)(struct cf_store_backend *b, const cf_prov_attempt_rec *a);
	int (*pattempt_count)(struct cf_store_backend *b, int64_t *total, int64_t *denied,
	    const char *claim_id, int64_t since);
};

extern const struct cf_store_ops cf_store_sqlite_ops;

#endif
