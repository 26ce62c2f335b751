/*
 * cf_store_sqlite — the SQLite back end of the registry (the default).
 *
 * One connection per cf_store, in WAL mode with synchronous=NORMAL,
 * foreign keys on and a 5 s busy timeout. Owns the schema: migration steps
 * in an ordered array, each applied in its own transaction and recorded in
 * PRAGMA user_version, and the meta table whose 'application' row marks a
 * file as a certfleet database. Statements are prepared once and cached.
 * Holds no policy: every rule lives in cf_store.c (docs/store.md).
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cf_store_backend.h"

#define BUSY_TIMEOUT_MS 5000
#define READONLY_BUSY_MS 100 /* the broker plugin: never stall a broker callback long */
#define APP_MARKER "certfleet"
/*
 * A writer copies the WAL into the database (two fdatasyncs, on the
 * committing thread) once the WAL holds this many pages. SQLite's default,
 * 1000, made every ~90th issuance pay a checkpoint: at 10000 (a WAL of up
 * to ~40 MiB, reused) hot pages are copied once instead of ten times and the
 * syncs are ten times rarer — bench/issuance +15-20 % certificates/s
 * (bench/RESULTS.md). Readers find pages through the WAL index either way.
 */
#define WAL_CHECKPOINT_PAGES "10000"

/* ---- schema -------------------------------------------------------------- */

struct cf_store_backend;
static int backfill_keyq(struct cf_store_backend *b);

/*
 * Each step: its SQL, then (if any) a C step in the same transaction, for
 * data SQL cannot compute.
 */
static const struct migration {
	int version;
	const char *sql;
	int (*after)(struct cf_store_backend *b);
} migrations[] = {
	{ 1,
	    "CREATE TABLE meta (\n"
	    "  key TEXT PRIMARY KEY,\n"
	    "  value TEXT NOT NULL);\n"
	    "INSERT INTO meta(key, value) VALUES ('application', '" APP_MARKER "');\n"
	    "INSERT INTO meta(key, value) VALUES ('created_at', CAST(strftime('%s', 'now') AS TEXT));\n"
	    "CREATE TABLE things (\n"
	    "  name TEXT PRIMARY KEY,\n"
	    "  attributes TEXT NOT NULL DEFAULT '{}',\n"
	    "  created_at INTEGER NOT NULL);\n"
	    "CREATE TABLE thing_groups (\n"
	    "  name TEXT PRIMARY KEY,\n"
	    "  query TEXT,\n" /* NULL: static group */
	    "  created_at INTEGER NOT NULL);\n"
	    "CREATE TABLE group_members (\n"
	    "  group_name TEXT NOT NULL REFERENCES thing_groups(name) ON DELETE CASCADE,\n"
	    "  thing TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,\n"
	    "  added_at INTEGER NOT NULL,\n"
	    "  PRIMARY KEY (group_name, thing)) WITHOUT ROWID;\n"
	    "CREATE INDEX group_members_thing ON group_members(thing);\n"
	    "CREATE TABLE cas (\n"
	    "  id TEXT PRIMARY KEY,\n"
	    "  name TEXT NOT NULL UNIQUE,\n"
	    "  role TEXT NOT NULL CHECK (role IN ('ROOT', 'INTERMEDIATE')),\n"
	    "  parent_id TEXT REFERENCES cas(id),\n"
	    "  status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE', 'REVOKED')),\n"
	    "  is_issuer INTEGER NOT NULL DEFAULT 0 CHECK (is_issuer IN (0, 1)),\n"
	    "  serial TEXT NOT NULL,\n"
	    "  not_before INTEGER NOT NULL,\n"
	    "  not_after INTEGER NOT NULL,\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  revoked_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  revoke_reason INTEGER NOT NULL DEFAULT 0,\n"
	    "  key_alg TEXT NOT NULL,\n"
	    "  key_bits INTEGER NOT NULL,\n"
	    "  key_ref TEXT NOT NULL,\n"
	    "  crl_number INTEGER NOT NULL DEFAULT 0,\n"
	    "  pem TEXT NOT NULL);\n"
	    "CREATE UNIQUE INDEX cas_one_issuer ON cas(is_issuer) WHERE is_issuer = 1;\n"
	    "CREATE INDEX cas_parent ON cas(parent_id);\n"
	    "CREATE TABLE certificates (\n"
	    "  id TEXT PRIMARY KEY,\n"
	    "  serial TEXT NOT NULL,\n"
	    "  ca_id TEXT NOT NULL REFERENCES cas(id),\n"
	    "  thing TEXT REFERENCES things(name),\n" /* NULL: attached to no thing */
	    "  status TEXT NOT NULL CHECK (status IN\n"
	    "    ('PENDING_ACTIVATION', 'ACTIVE', 'INACTIVE', 'REVOKED')),\n"
	    "  not_before INTEGER NOT NULL,\n"
	    "  not_after INTEGER NOT NULL,\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  updated_at INTEGER NOT NULL,\n"
	    "  revoked_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  revoke_reason INTEGER NOT NULL DEFAULT 0,\n"
	    "  key_alg TEXT NOT NULL,\n"
	    "  key_bits INTEGER NOT NULL,\n"
	    "  sig_alg TEXT NOT NULL,\n"
	    "  pem TEXT NOT NULL);\n"
	    "CREATE INDEX certificates_status_not_after ON certificates(status, not_after);\n"
	    "CREATE INDEX certificates_ca_status ON certificates(ca_id, status);\n"
	    "CREATE INDEX certificates_thing_status ON certificates(thing, status);\n"
	    "CREATE INDEX certificates_serial ON certificates(serial);\n"
	    "CREATE TABLE events (\n"
	    "  seq INTEGER PRIMARY KEY,\n"
	    "  ts INTEGER NOT NULL,\n"
	    "  type TEXT NOT NULL,\n"
	    "  subject TEXT NOT NULL,\n"
	    "  detail TEXT NOT NULL,\n"
	    "  prev_hash TEXT NOT NULL,\n"
	    "  hash TEXT NOT NULL);\n"
	    "CREATE INDEX events_ts ON events(ts);\n"
	    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events\n"
	    "  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;\n"
	    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events\n"
	    "  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;\n", NULL },
	/* 2: connections the broker reported (certfleetd writes, audits read). */
	{ 2,
	    "CREATE TABLE connections (\n"
	    "  id INTEGER PRIMARY KEY,\n"
	    "  ref TEXT NOT NULL,\n" /* the broker's id for this one network connection */
	    "  client_id TEXT NOT NULL,\n"
	    "  principal TEXT NOT NULL,\n"
	    "  kind TEXT NOT NULL,\n"
	    "  peer TEXT NOT NULL,\n"
	    "  connected_at INTEGER NOT NULL,\n"
	    "  disconnected_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  reason TEXT NOT NULL DEFAULT '');\n"
	    "CREATE INDEX connections_client ON connections(client_id, id);\n"
	    "CREATE INDEX connections_ref ON connections(ref);\n"
	    "CREATE INDEX connections_principal ON connections(principal, connected_at);\n"
	    "CREATE INDEX connections_open ON connections(id) WHERE disconnected_at = 0;\n", NULL },
	/* 3: jobs, their executions and rotation records (DESIGN §6, §7). */
	{ 3,
	    "CREATE TABLE jobs (\n"
	    "  id TEXT PRIMARY KEY,\n"
	    "  operation TEXT NOT NULL,\n"
	    "  document TEXT NOT NULL,\n"
	    "  targets TEXT NOT NULL,\n"
	    "  selection TEXT NOT NULL CHECK (selection IN ('SNAPSHOT', 'CONTINUOUS')),\n"
	    "  config TEXT NOT NULL DEFAULT '{}',\n"
	    "  status TEXT NOT NULL CHECK (status IN\n"
	    "    ('SCHEDULED', 'IN_PROGRESS', 'CANCELED', 'COMPLETED')),\n"
	    "  force_canceled INTEGER NOT NULL DEFAULT 0 CHECK (force_canceled IN (0, 1)),\n"
	    "  comment TEXT,\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  updated_at INTEGER NOT NULL,\n"
	    "  completed_at INTEGER NOT NULL DEFAULT 0);\n"
	    "CREATE INDEX jobs_status ON jobs(status, created_at);\n"
	    /* No foreign key to things: an execution is history and outlives its thing. */
	    "CREATE TABLE job_executions (\n"
	    "  job_id TEXT NOT NULL REFERENCES jobs(id),\n"
	    "  thing TEXT NOT NULL,\n"
	    "  execution_number INTEGER NOT NULL CHECK (execution_number >= 1),\n"
	    "  status TEXT NOT NULL CHECK (status IN ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED',\n"
	    "    'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED')),\n"
	    "  version INTEGER NOT NULL CHECK (version >= 1),\n"
	    "  status_details TEXT NOT NULL DEFAULT '{}',\n"
	    "  queued_at INTEGER NOT NULL,\n"
	    "  started_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  last_updated_at INTEGER NOT NULL,\n"
	    "  last_step_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  retries_failed INTEGER NOT NULL DEFAULT 0,\n"
	    "  retries_timed_out INTEGER NOT NULL DEFAULT 0,\n"
	    "  PRIMARY KEY (job_id, thing, execution_number)) WITHOUT ROWID;\n"
	    "CREATE INDEX job_executions_pending ON job_executions(thing, status, queued_at);\n"
	    "CREATE INDEX job_executions_job_status ON job_executions(job_id, status);\n"
	    "CREATE INDEX job_executions_timeouts ON job_executions(status, last_step_at);\n"
	    "CREATE TABLE rotations (\n"
	    "  job_id TEXT NOT NULL,\n"
	    "  thing TEXT NOT NULL,\n"
	    "  execution_number INTEGER NOT NULL,\n"
	    "  old_cert TEXT NOT NULL,\n"
	    "  new_cert TEXT,\n" /* NULL until issued */
	    "  state TEXT NOT NULL CHECK (state IN\n"
	    "    ('created', 'committed', 'indeterminate', 'succeeded', 'failed')),\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  updated_at INTEGER NOT NULL,\n"
	    "  PRIMARY KEY (job_id, thing, execution_number),\n"
	    "  FOREIGN KEY (job_id, thing, execution_number)\n"
	    "    REFERENCES job_executions(job_id, thing, execution_number)) WITHOUT ROWID;\n"
	    "CREATE INDEX rotations_new_cert ON rotations(new_cert);\n"
	    "CREATE INDEX rotations_old_cert ON rotations(old_cert);\n", NULL },
	/*
	 * 4: the jobs engine's work list and the notification outbox, and the
	 * index behind the indeterminate-rotation sweep.
	 */
	{ 4,
	    "CREATE INDEX rotations_state ON rotations(state, updated_at);\n"
	    /* A deleted thing leaves every job's targets (executions keep the history). */
	    "CREATE TABLE job_targets (\n"
	    "  job_id TEXT NOT NULL REFERENCES jobs(id),\n"
	    "  thing TEXT NOT NULL REFERENCES things(name) ON DELETE CASCADE,\n"
	    "  added_at INTEGER NOT NULL CHECK (added_at >= 0),\n"
	    "  released_at INTEGER NOT NULL DEFAULT 0 CHECK (released_at >= 0),\n"
	    "  removed_at INTEGER NOT NULL DEFAULT 0 CHECK (removed_at >= 0),\n"
	    "  PRIMARY KEY (job_id, thing)) WITHOUT ROWID;\n"
	    /* The rollout's queue: only unreleased rows, in release order; shrinks as it runs. */
	    "CREATE INDEX job_targets_unreleased ON job_targets(job_id, added_at, thing)\n"
	    "  WHERE released_at = 0 AND removed_at = 0;\n"
	    "CREATE INDEX job_targets_thing ON job_targets(thing);\n"
	    "CREATE TABLE notifications (\n"
	    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	    "  sink TEXT NOT NULL,\n"
	    "  kind TEXT NOT NULL,\n"
	    "  payload TEXT NOT NULL,\n"
	    "  state TEXT NOT NULL CHECK (state IN ('PENDING', 'DELIVERED', 'GAVE_UP')),\n"
	    "  attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  next_at INTEGER NOT NULL,\n"
	    "  updated_at INTEGER NOT NULL,\n"
	    "  last_error TEXT NOT NULL DEFAULT '');\n"
	    "CREATE INDEX notifications_due ON notifications(next_at) WHERE state = 'PENDING';\n", NULL },
	/*
	 * 5: audits (DESIGN §8): runs, their findings, suppressions per (check,
	 * resource) and the mitigation actions taken on findings.
	 */
	{ 5,
	    "CREATE TABLE audits (\n"
	    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	    "  started_at INTEGER NOT NULL,\n"
	    "  finished_at INTEGER NOT NULL DEFAULT 0,\n"
	    "  checks TEXT NOT NULL,\n"
	    "  counts TEXT NOT NULL DEFAULT '{}',\n"
	    "  trigger TEXT NOT NULL CHECK (trigger IN ('on_demand', 'scheduled')));\n"
	    "CREATE TABLE findings (\n"
	    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	    "  audit_id INTEGER NOT NULL REFERENCES audits(id),\n"
	    "  check_name TEXT NOT NULL,\n"
	    "  severity TEXT NOT NULL CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),\n"
	    "  resource_type TEXT NOT NULL,\n"
	    "  resource_id TEXT NOT NULL,\n"
	    "  reason_code TEXT NOT NULL,\n"
	    "  detail TEXT NOT NULL,\n"
	    "  suppressed INTEGER NOT NULL DEFAULT 0 CHECK (suppressed IN (0, 1)));\n"
	    "CREATE INDEX findings_audit ON findings(audit_id, id);\n"
	    "CREATE INDEX findings_check ON findings(check_name, resource_id);\n"
	    "CREATE TABLE suppressions (\n"
	    "  check_name TEXT NOT NULL,\n"
	    "  resource_id TEXT NOT NULL,\n"
	    "  until INTEGER,\n" /* NULL: forever */
	    "  comment TEXT NOT NULL DEFAULT '',\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  PRIMARY KEY (check_name, resource_id)) WITHOUT ROWID;\n"
	    "CREATE TABLE mitigation_actions (\n"
	    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	    "  finding_id INTEGER NOT NULL REFERENCES findings(id),\n"
	    "  action TEXT NOT NULL,\n"
	    "  status TEXT NOT NULL CHECK (status IN ('succeeded', 'noop', 'failed')),\n"
	    "  detail TEXT NOT NULL DEFAULT '',\n"
	    "  created_at INTEGER NOT NULL);\n"
	    "CREATE INDEX mitigation_actions_finding ON mitigation_actions(finding_id, id);\n"
	    /* The audit's look-back window: connections by when they ended. */
	    "CREATE INDEX connections_ended ON connections(disconnected_at);\n", NULL },
	/* 6: provisioning by claim (DESIGN §9, docs/provisioning.md). */
	{ 6,
	    "CREATE TABLE prov_templates (\n"
	    "  name TEXT PRIMARY KEY,\n"
	    "  spec TEXT NOT NULL,\n"
	    "  created_at INTEGER NOT NULL);\n"
	    "CREATE TABLE prov_claims (\n"
	    "  cert_id TEXT PRIMARY KEY REFERENCES certificates(id),\n"
	    "  template TEXT NOT NULL REFERENCES prov_templates(name),\n"
	    "  status TEXT NOT NULL CHECK (status IN ('ENABLED', 'DISABLED')),\n"
	    "  reason TEXT NOT NULL DEFAULT '',\n"
	    "  created_at INTEGER NOT NULL,\n"
	    "  updated_at INTEGER NOT NULL);\n"
	    "CREATE INDEX prov_claims_template ON prov_claims(template, created_at);\n"
	    "CREATE TABLE prov_serials (\n"
	    "  template TEXT NOT NULL REFERENCES prov_templates(name),\n"
	    "  serial TEXT NOT NULL,\n"
	    "  thing TEXT NOT NULL,\n"
	    "  cert_id TEXT NOT NULL,\n"
	    "  claim_id TEXT NOT NULL,\n"
	    "  client_id TEXT NOT NULL,\n"
	    "  key_id TEXT NOT NULL,\n"
	    "  at INTEGER NOT NULL,\n"
	    "  PRIMARY KEY (template, serial)) WITHOUT ROWID;\n"
	    "CREATE INDEX prov_serials_key ON prov_serials(key_id, at);\n"
	    "CREATE INDEX prov_serials_at ON prov_serials(at);\n"
	    "CREATE TABLE prov_attempts (\n"
	    "  id INTEGER PRIMARY KEY,\n"
	    "  claim_id TEXT NOT NULL,\n"
	    "  template TEXT NOT NULL,\n"
	    "  serial TEXT NOT NULL,\n"
	    "  client_id TEXT NOT NULL,\n"
	    "  outcome TEXT NOT NULL,\n"
	    "  at INTEGER NOT NULL);\n"
	    "CREATE INDEX prov_attempts_claim ON prov_attempts(claim_id, at);\n", NULL },
	/*
	 * 7: key facts stored with each certificate (computed at issuance, so an
	 * audit does not parse every PEM): the SPKI SHA-256, and the cf_keyq
	 * flags and detail under the key policy fingerprinted in keyq_policy
	 * ('' = not computed). Existing rows are backfilled under the default
	 * policy by backfill_keyq; the index serves key-identity look-ups.
	 */
	{ 7,
	    "ALTER TABLE certificates ADD COLUMN spki_sha256 TEXT NOT NULL DEFAULT '';\n"
	    "ALTER TABLE certificates ADD COLUMN keyq_flags INTEGER NOT NULL DEFAULT 0;\n"
	    "ALTER TABLE certificates ADD COLUMN keyq_policy TEXT NOT NULL DEFAULT '';\n"
	    "ALTER TABLE certificates ADD COLUMN keyq_detail TEXT NOT NULL DEFAULT '';\n",
	    backfill_keyq },
};

#define SCHEMA_VERSION (migrations[sizeof(migrations) / sizeof(migrations[0]) - 1].version)

/* ---- cached statements -------------------------------------------------------- */

#define CA_COLS "id, name, role, parent_id, status, is_issuer, serial, not_before, not_after, " \
	"created_at, revoked_at, revoke_reason, key_alg, key_bits, key_ref, crl_number, pem"
#define CERT_COLS "id, serial, ca_id, thing, status, not_before, not_after, created_at, " \
	"updated_at, revoked_at, revoke_reason, key_alg, key_bits, sig_alg, pem, spki_sha256, " \
	"keyq_flags, keyq_policy, keyq_detail"
#define EVENT_COLS "seq, ts, type, subject, detail, prev_hash, hash"
#define CONN_COLS "id, client_id, principal, kind, peer, connected_at, disconnected_at, reason, ref"
#define JOB_COLS "id, operation, document, targets, selection, config, status, force_canceled, " \
	"comment, created_at, updated_at, completed_at"
#define EXEC_COLS "job_id, thing, execution_number, status, version, status_details, queued_at, " \
	"started_at, last_updated_at, last_step_at, retries_failed, retries_timed_out"
#define ROT_COLS "job_id, thing, execution_number, old_cert, new_cert, state, created_at, updated_at"
#define TARGET_COLS "job_id, thing, added_at, released_at, removed_at"
#define NOTIFY_COLS "id, sink, kind, payload, state, attempts, created_at, next_at, updated_at, " \
	"last_error"
#define GROUP_SELECT "SELECT g.name, g.query, g.created_at, (SELECT count(*) FROM " \
	"group_members m WHERE m.group_name = g.name) FROM thing_groups g"

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_THING_INSERT,
	S_THING_GET,
	S_THING_LIST,
	S_THING_UPDATE,
	S_THING_DETACH,
	S_THING_UNGROUP,
	S_THING_DELETE,
	S_GROUP_INSERT,
	S_GROUP_GET,
	S_GROUP_LIST,
	S_MEMBER_ADD,
	S_MEMBER_REMOVE,
	S_MEMBER_LIST,
	S_CA_INSERT,
	S_CA_GET,
	S_CA_GET_NAME,
	S_CA_LIST,
	S_CA_ISSUER,
	S_CA_UPDATE,
	S_CA_PREFIX,
	S_CERT_INSERT,
	S_CERT_KEYQ_UPDATE,
	S_CERT_GET,
	S_CERT_UPDATE,
	S_CERT_COUNT,
	S_CERT_PREFIX,
	S_EVENT_HEAD,
	S_EVENT_INSERT,
	S_EVENT_LIST,
	S_EVENT_ALL,
	S_EVENT_AFTER,
	S_CONN_INSERT,
	S_CONN_CLOSE,
	S_CONN_CLOSE_ALL,
	S_CONN_LIST,
	S_JOB_INSERT,
	S_JOB_GET,
	S_JOB_UPDATE,
	S_EXEC_INSERT,
	S_EXEC_GET,
	S_EXEC_LATEST,
	S_EXEC_UPDATE,
	S_EXEC_OLDEST,
	S_EXEC_COUNTS,
	S_ROT_INSERT,
	S_ROT_GET,
	S_ROT_UPDATE,
	S_ROT_FIND,
	S_ROT_STATE,
	S_TARGET_INSERT,
	S_TARGET_GET,
	S_TARGET_UPDATE,
	S_TARGET_ALL,
	S_TARGET_UNRELEASED,
	S_TARGET_RELEASED,
	S_TARGET_STATS,
	S_NOTIFY_INSERT,
	S_NOTIFY_GET,
	S_NOTIFY_UPDATE,
	S_NOTIFY_DUE,
	S_FINDING_INSERT,
	S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	/* One name for every level: savepoints of the same name nest. */
	[S_SAVEPOINT] = "SAVEPOINT cf_nested",
	[S_RELEASE] = "RELEASE cf_nested",
	[S_ROLLBACK_TO] = "ROLLBACK TO cf_nested",
	[S_THING_INSERT] = "INSERT INTO things(name, attributes, created_at) VALUES (?1, ?2, ?3)",
	[S_THING_GET] = "SELECT name, attributes, created_at FROM things WHERE name = ?1",
	[S_THING_LIST] = "SELECT name, attributes, created_at FROM things ORDER BY name",
	[S_THING_UPDATE] = "UPDATE things SET attributes = ?2 WHERE name = ?1",
	[S_THING_DETACH] = "UPDATE certificates SET thing = NULL WHERE thing = ?1",
	[S_THING_UNGROUP] = "DELETE FROM group_members WHERE thing = ?1",
	[S_THING_DELETE] = "DELETE FROM things WHERE name = ?1",
	[S_GROUP_INSERT] = "INSERT INTO thing_groups(name, query, created_at) VALUES (?1, ?2, ?3)",
	[S_GROUP_GET] = GROUP_SELECT " WHERE g.name = ?1",
	[S_GROUP_LIST] = GROUP_SELECT " ORDER BY g.name",
	[S_MEMBER_REMOVE] = "DELETE FROM group_members WHERE group_name = ?1 AND thing = ?2",
	[S_MEMBER_ADD] = "INSERT OR IGNORE INTO group_members(group_name, thing, added_at) "
	    "VALUES (?1, ?2, ?3)",
	[S_MEMBER_LIST] = "SELECT thing FROM group_members WHERE group_name = ?1 ORDER BY thing",
	[S_CA_INSERT] = "INSERT INTO cas(" CA_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
	    "?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
	[S_CA_GET] = "SELECT " CA_COLS " FROM cas WHERE id = ?1",
	[S_CA_GET_NAME] = "SELECT " CA_COLS " FROM cas WHERE name = ?1",
	[S_CA_LIST] = "SELECT " CA_COLS " FROM cas ORDER BY created_at, name",
	[S_CA_ISSUER] = "SELECT " CA_COLS " FROM cas WHERE is_issuer = 1",
	[S_CA_UPDATE] = "UPDATE cas SET status = ?2, is_issuer = ?3, revoked_at = ?4, "
	    "revoke_reason = ?5, crl_number = ?6 WHERE id = ?1",
	/* Ids are lowercase hex, so every id starting with ?1 sorts below ?1 || 'g'. */
	[S_CA_PREFIX] = "SELECT id FROM cas WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT ?2",
	[S_CERT_INSERT] = "INSERT INTO certificates(" CERT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
	[S_CERT_KEYQ_UPDATE] = "UPDATE certificates SET spki_sha256 = ?2, keyq_flags = ?3, "
	    "keyq_policy = ?4, keyq_detail = ?5 WHERE id = ?1",
	[S_CERT_GET] = "SELECT " CERT_COLS " FROM certificates WHERE id = ?1",
	[S_CERT_UPDATE] = "UPDATE certificates SET thing = ?2, status = ?3, updated_at = ?4, "
	    "revoked_at = ?5, revoke_reason = ?6 WHERE id = ?1",
	[S_CERT_PREFIX] = "SELECT id FROM certificates WHERE id >= ?1 AND id < ?1 || 'g' "
	    "ORDER BY id LIMIT ?2",
	/* certificates_thing_status answers it: the active-per-thing limit at every insert. */
	[S_CERT_COUNT] = "SELECT count(*) FROM certificates WHERE thing = ?1 AND status = ?2 "
	    "AND id <> ?3",
	[S_EVENT_HEAD] = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
	[S_EVENT_INSERT] = "INSERT INTO events(" EVENT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[S_EVENT_LIST] = "SELECT " EVENT_COLS " FROM events WHERE ts >= ?1 ORDER BY seq LIMIT ?2",
	[S_EVENT_ALL] = "SELECT " EVENT_COLS " FROM events ORDER BY seq",
	[S_EVENT_AFTER] = "SELECT " EVENT_COLS " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	[S_CONN_INSERT] = "INSERT INTO connections(client_id, principal, kind, peer, connected_at, "
	    "ref) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	/*
	 * "+disconnected_at": without the unary plus SQLite searched
	 * connections_ended for disconnected_at = 0 — every open connection — and
	 * filtered on ref, so each disconnect cost O(open connections); at 10,000
	 * devices that was 15 % of certfleetd (certfleet-sim, bench/rotation).
	 */
	[S_CONN_CLOSE] = "UPDATE connections SET disconnected_at = ?2, reason = ?3 WHERE ref = ?1 "
	    "AND +disconnected_at = 0",
	[S_CONN_CLOSE_ALL] = "UPDATE connections SET disconnected_at = ?1, reason = ?2 "
	    "WHERE disconnected_at = 0",
	[S_CONN_LIST] = "SELECT " CONN_COLS " FROM connections WHERE (?1 IS NULL OR client_id = ?1) "
	    "AND (?2 = 0 OR disconnected_at = 0) ORDER BY id DESC LIMIT ?3",
	[S_JOB_INSERT] = "INSERT INTO jobs(" JOB_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
	    "?10, ?11, ?12)",
	[S_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
	[S_JOB_UPDATE] = "UPDATE jobs SET status = ?2, force_canceled = ?3, comment = ?4, "
	    "updated_at = ?5, completed_at = ?6 WHERE id = ?1",
	[S_EXEC_INSERT] = "INSERT INTO job_executions(" EXEC_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10, ?11, ?12)",
	[S_EXEC_GET] = "SELECT " EXEC_COLS " FROM job_executions WHERE job_id = ?1 AND thing = ?2 "
	    "AND execution_number = ?3",
	[S_EXEC_LATEST] = "SELECT " EXEC_COLS " FROM job_executions WHERE job_id = ?1 AND thing = ?2 "
	    "ORDER BY execution_number DESC LIMIT 1",
	/* The compare-and-set: the version test is in the UPDATE itself. */
	[S_EXEC_UPDATE] = "UPDATE job_executions SET status = ?4, version = ?5, status_details = ?6, "
	    "started_at = ?7, last_updated_at = ?8, last_step_at = ?9, retries_failed = ?10, "
	    "retries_timed_out = ?11 WHERE job_id = ?1 AND thing = ?2 AND execution_number = ?3 "
	    "AND version = ?12",
	[S_EXEC_OLDEST] = "SELECT " EXEC_COLS " FROM job_executions WHERE thing = ?1 AND status = ?2 "
	    "ORDER BY queued_at, job_id, execution_number LIMIT 1",
	/* The latest attempt of each thing: the highest execution_number, by primary key. */
	[S_EXEC_COUNTS] = "SELECT status, count(*) FROM job_executions e WHERE job_id = ?1 AND "
	    "execution_number = (SELECT max(execution_number) FROM job_executions l WHERE "
	    "l.job_id = e.job_id AND l.thing = e.thing) GROUP BY status",
	[S_ROT_INSERT] = "INSERT INTO rotations(" ROT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[S_ROT_GET] = "SELECT " ROT_COLS " FROM rotations WHERE job_id = ?1 AND thing = ?2 AND "
	    "execution_number = ?3",
	[S_ROT_UPDATE] = "UPDATE rotations SET old_cert = ?4, new_cert = ?5, state = ?6, "
	    "updated_at = ?7 WHERE job_id = ?1 AND thing = ?2 AND execution_number = ?3",
	/* Two index lookups rather than one OR scan. */
	[S_ROT_FIND] = "SELECT " ROT_COLS " FROM rotations WHERE old_cert = ?1 UNION "
	    "SELECT " ROT_COLS " FROM rotations WHERE new_cert = ?1 ORDER BY created_at, job_id, "
	    "thing, execution_number",
	[S_ROT_STATE] = "SELECT " ROT_COLS " FROM rotations WHERE state = ?1 ORDER BY updated_at, "
	    "job_id, thing, execution_number LIMIT ?2",
	[S_TARGET_INSERT] = "INSERT INTO job_targets(" TARGET_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_TARGET_GET] = "SELECT " TARGET_COLS " FROM job_targets WHERE job_id = ?1 AND thing = ?2",
	[S_TARGET_UPDATE] = "UPDATE job_targets SET added_at = ?3, released_at = ?4, "
	    "removed_at = ?5 WHERE job_id = ?1 AND thing = ?2",
	[S_TARGET_ALL] = "SELECT " TARGET_COLS " FROM job_targets WHERE job_id = ?1 ORDER BY thing "
	    "LIMIT ?2",
	/* The WHERE repeats the partial index's own, so the planner can use it. */
	[S_TARGET_UNRELEASED] = "SELECT " TARGET_COLS " FROM job_targets WHERE job_id = ?1 AND "
	    "released_at = 0 AND removed_at = 0 ORDER BY added_at, thing LIMIT ?2",
	[S_TARGET_RELEASED] = "SELECT " TARGET_COLS " FROM job_targets WHERE job_id = ?1 AND "
	    "released_at != 0 AND removed_at = 0 ORDER BY thing LIMIT ?2",
	/* One pass over the job's range of the primary key (which holds every column). */
	[S_TARGET_STATS] = "SELECT count(*), "
	    "coalesce(sum(released_at = 0 AND removed_at = 0), 0), "
	    "coalesce(sum(released_at != 0 AND removed_at = 0), 0), "
	    "coalesce(sum(removed_at != 0), 0), "
	    "coalesce(min(CASE WHEN released_at != 0 THEN released_at END), 0), "
	    "coalesce(sum(released_at != 0 AND removed_at = 0 AND released_at >= ?2), 0) "
	    "FROM job_targets WHERE job_id = ?1",
	[S_NOTIFY_INSERT] = "INSERT INTO notifications(sink, kind, payload, state, attempts, "
	    "created_at, next_at, updated_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[S_NOTIFY_GET] = "SELECT " NOTIFY_COLS " FROM notifications WHERE id = ?1",
	[S_NOTIFY_UPDATE] = "UPDATE notifications SET state = ?2, attempts = ?3, next_at = ?4, "
	    "updated_at = ?5, last_error = ?6 WHERE id = ?1 AND state = 'PENDING'",
	/*
	 * An ordered range of the partial index (whose entries end with the id):
	 * no sort, and delivered history is never read. ORDER BY id alone would
	 * make the planner walk the whole table in id order instead.
	 */
	[S_NOTIFY_DUE] = "SELECT " NOTIFY_COLS " FROM notifications WHERE state = 'PENDING' AND "
	    "next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
	[S_FINDING_INSERT] = "INSERT INTO findings(audit_id, check_name, severity, resource_type, "
	    "resource_id, reason_code, detail, suppressed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
};

struct cf_store_backend {
	sqlite3 *db;
	char *path;
	int version;
	sqlite3_stmt *stmt[S__COUNT];
};

/* ---- errors -------------------------------------------------------------- */

/* Maps an SQLite result code to a CF_E* code, with a message naming the file. */
static int
sq_fail(struct cf_store_backend *b, int rc, const char *what)
{
	switch (rc & 0xff) {
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		cf_error_set("%s: not a certfleet database, or damaged (%s)", b->path,
		    sqlite3_errstr(rc));
		return CF_ECORRUPT;
	case SQLITE_CONSTRAINT:
		cf_error_set("%s: %s: %s", b->path, what, sqlite3_errmsg(b->db));
		return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ?
		    CF_EEXISTS : CF_ERROR;
	default:
		cf_error_set("%s: %s: %s", b->path, what,
		    b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
		return CF_ERROR;
	}
}

static int
sq_exec(struct cf_store_backend *b, const char *sql, const char *what)
{
	int rc = sqlite3_exec(b->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(b, rc, what);
}

static int
stmt_get(struct cf_store_backend *b, sqlite3_stmt **out, enum stmt_id id)
{
	int rc;

	if (b->stmt[id] == NULL) {
		rc = sqlite3_prepare_v3(b->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		    &b->stmt[id], NULL);
		if (rc != SQLITE_OK)
			return sq_fail(b, rc, "prepare");
	}
	*out = b->stmt[id];
	return 0;
}

/* Resets a cached statement so it holds no read lock and no borrowed bindings. */
static void
stmt_done(sqlite3_stmt *s)
{
	if (s == NULL)
		return;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Steps a statement that returns no rows. */
static int
step_done(struct cf_store_backend *b, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);

	return rc == SQLITE_DONE ? 0 : sq_fail(b, rc, what);
}

/* Runs a cached statement without parameters or rows. */
static int
run(struct cf_store_backend *b, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, id)) == 0)
		r = step_done(b, s, what);
	stmt_done(s);
	return r;
}

/* ---- binding and reading columns --------------------------------------------- */

static int
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* "" is stored as NULL (no parent, no thing). */
static int
bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	return v == NULL || v[0] == '\0' ? sqlite3_bind_null(s, i) : bind_text(s, i, v);
}

static int
col_copy(struct cf_store_backend *b, char *out, size_t out_len, sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);
	size_t len = v ? strlen(v) : 0;

	if (len >= out_len) {
		cf_error_set("%s: column %s holds %zu characters (at most %zu)", b->path,
		    sqlite3_column_name(s, i), len, out_len - 1);
		return CF_ECORRUPT;
	}
	memcpy(out, v ? v : "", len + 1);
	return 0;
}

/* A malloc()ed copy; NULL stays NULL when nullable, else becomes "". */
static int
col_dup(char **out, sqlite3_stmt *s, int i, int nullable)
{
	const char *v = (const char *)sqlite3_column_text(s, i);

	*out = NULL;
	if (v == NULL && nullable)
		return 0;
	if ((*out = strdup(v ? v : "")) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	return 0;
}

static int
col_status(struct cf_store_backend *b, cf_cert_status *out, sqlite3_stmt *s, int i)
{
	const char *v = (const char *)sqlite3_column_text(s, i);

	if (cf_cert_status_parse(out, v) != 0) {
		cf_error_set("%s: unknown status '%s' in %s", b->path, v ? v : "",
		    sqlite3_column_name(s, i));
		return CF_ECORRUPT;
	}
	return 0;
}

/* Makes room for one more element in *arr (of *cap elements of size each). */
static int
grow(void *arr, size_t *cap, size_t n, size_t size)
{
	void **p = arr, *np;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((np = realloc(*p, ncap * size)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	memset((char *)np + *cap * size, 0, (ncap - *cap) * size);
	*p = np;
	*cap = ncap;
	return 0;
}

/* ---- opening, schema and migrations --------------------------------------------- */

static int
pragma_int(struct cf_store_backend *b, int *out, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int r = 0, rc;

	if ((rc = sqlite3_prepare_v2(b->db, sql, -1, &s, NULL)) != SQLITE_OK) {
		r = sq_fail(b, rc, sql);
		goto out;
	}
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		r = sq_fail(b, rc, sql);
		goto out;
	}
	*out = sqlite3_column_int(s, 0);
out:
	sqlite3_finalize(s);
	return r;
}

/*
 * Decides what the file is before anything writes to it: empty (a new
 * database), a certfleet database, or something else (CF_ECORRUPT). A
 * foreign database is never touched, not even switched to WAL.
 */
static int
identify(struct cf_store_backend *b, int *fresh)
{
	sqlite3_stmt *s = NULL;
	int r, rc, tables = 0;
	const char *v;

	*fresh = 0;
	if ((r = pragma_int(b, &tables, "SELECT count(*) FROM sqlite_master")) != 0)
		goto out;
	if ((r = pragma_int(b, &b->version, "PRAGMA user_version")) != 0)
		goto out;
	if (tables == 0 && b->version == 0) {
		*fresh = 1;
		goto out;
	}
	rc = sqlite3_prepare_v2(b->db, "SELECT value FROM meta WHERE key = 'application'", -1, &s,
	    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT) {
		r = sq_fail(b, rc, "identify");
		goto out;
	}
	v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
	if (v == NULL || strcmp(v, APP_MARKER) != 0) {
		r = CF_ECORRUPT;
		cf_error_set("%s: an SQLite database, but not a certfleet one (no '%s' marker in "
		    "its meta table)", b->path, APP_MARKER);
		goto out;
	}
	if (b->version > SCHEMA_VERSION) {
		r = CF_EINVAL;
		cf_error_set("%s: schema version %d is newer than this program's (%d): upgrade "
		    "certfleet", b->path, b->version, SCHEMA_VERSION);
		goto out;
	}
out:
	sqlite3_finalize(s);
	return r;
}

/* Applies every step above the current version, each in one transaction. */
static int
migrate(struct cf_store_backend *b)
{
	size_t i;
	int r = 0, now;
	char sql[64];

	for (i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		if (migrations[i].version <= b->version)
			continue;
		if ((r = sq_exec(b, "BEGIN IMMEDIATE", "migrate")) != 0)
			goto out;
		/* Another process may have migrated while we waited for the lock. */
		if ((r = pragma_int(b, &now, "PRAGMA user_version")) != 0)
			goto fail;
		if (now >= migrations[i].version) {
			b->version = now;
			if ((r = sq_exec(b, "COMMIT", "migrate")) != 0)
				goto fail;
			continue;
		}
		if ((r = sq_exec(b, migrations[i].sql, "migration")) != 0 ||
		    (migrations[i].after != NULL && (r = migrations[i].after(b)) != 0)) {
			cf_error_prefix("schema migration to version %d", migrations[i].version);
			goto fail;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", migrations[i].version);
		if ((r = sq_exec(b, sql, "migrate")) != 0 || (r = sq_exec(b, "COMMIT", "migrate")) != 0)
			goto fail;
		b->version = migrations[i].version;
	}
out:
	return r;
fail:
	if (!sqlite3_get_autocommit(b->db))
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

static void
sq_close(struct cf_store_backend *b)
{
	size_t i;

	if (b == NULL)
		return;
	if (b->db != NULL && !sqlite3_get_autocommit(b->db))
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	for (i = 0; i < S__COUNT; i++)
		sqlite3_finalize(b->stmt[i]);
	sqlite3_close_v2(b->db);
	free(b->path);
	free(b);
}

static int
sq_open(struct cf_store_backend **out, const char *uri, int flags)
{
	struct cf_store_backend *b = NULL;
	struct stat sb;
	int r = CF_ERROR, rc, exists, fresh = 0;
	int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW;
	sqlite3_stmt *s = NULL;
	const char *mode;

	/* Decide before sqlite3_open_v2, which would create the file. */
	exists = stat(uri, &sb) == 0;
	if (!exists && errno != ENOENT) {
		cf_error_set("%s: %s", uri, strerror(errno));
		goto out;
	}
	if (!exists && (!(flags & CF_STORE_CREATE) || (flags & CF_STORE_READONLY))) {
		r = CF_ENOTFOUND;
		cf_error_set("%s: no such database (certfleet init creates one)", uri);
		goto out;
	}
	if (exists && !S_ISREG(sb.st_mode)) {
		r = CF_EINVAL;
		cf_error_set("%s: not a regular file", uri);
		goto out;
	}
	if (flags & CF_STORE_READONLY)
		oflags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW;
	else if (!exists)
		oflags |= SQLITE_OPEN_CREATE;
	if ((b = calloc(1, sizeof(*b))) == NULL || (b->path = strdup(uri)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	if ((rc = sqlite3_open_v2(uri, &b->db, oflags, NULL)) != SQLITE_OK) {
		r = sq_fail(b, rc, "open");
		goto out;
	}
	sqlite3_extended_result_codes(b->db, 1);
	sqlite3_busy_timeout(b->db, flags & CF_STORE_READONLY ? READONLY_BUSY_MS : BUSY_TIMEOUT_MS);
	if ((r = identify(b, &fresh)) != 0)
		goto out;
	if (fresh && exists && !(flags & CF_STORE_CREATE)) {
		r = CF_ENOTFOUND;
		cf_error_set("%s: empty file, not an initialized database (certfleet init creates "
		    "one)", uri);
		goto out;
	}
	if (flags & CF_STORE_READONLY) {
		/* A reader never migrates: the writer that owns the file does that. */
		if (fresh || b->version != SCHEMA_VERSION) {
			r = fresh ? CF_ENOTFOUND : CF_EINVAL;
			cf_error_set("%s: schema version %d, this program reads only version %d (run "
			    "any certfleet command to migrate it)", uri, b->version, SCHEMA_VERSION);
			goto out;
		}
		if ((r = sq_exec(b, "PRAGMA query_only = ON", "pragmas")) != 0)
			goto out;
		goto opened;
	}
	/* journal_mode answers with the mode in force: "wal" unless it could not switch. */
	if ((rc = sqlite3_prepare_v2(b->db, "PRAGMA journal_mode = WAL", -1, &s, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_step(s)) != SQLITE_ROW) {
		r = sq_fail(b, rc, "journal_mode");
		goto out;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	if (mode == NULL || strcmp(mode, "wal") != 0) {
		r = CF_ERROR;
		cf_error_set("%s: cannot switch to WAL mode (journal mode is %s)", uri,
		    mode ? mode : "unknown");
		goto out;
	}
	sqlite3_finalize(s); /* a statement in progress would block the migrations' COMMIT */
	s = NULL;
	if ((r = sq_exec(b, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
	    "PRAGMA wal_autocheckpoint = " WAL_CHECKPOINT_PAGES, "pragmas")) != 0)
		goto out;
	if ((r = migrate(b)) != 0)
		goto out;
opened:
	*out = b;
	b = NULL;
	r = 0;
out:
	sqlite3_finalize(s);
	sq_close(b);
	return r;
}

static int
sq_schema_version(struct cf_store_backend *b)
{
	return b->version;
}

/* ---- transactions ------------------------------------------------------------- */

static int
sq_begin(struct cf_store_backend *b, int depth)
{
	return run(b, depth == 0 ? S_BEGIN : S_SAVEPOINT, "begin");
}

static int
sq_commit(struct cf_store_backend *b, int depth)
{
	int r;

	if (depth > 0)
		return run(b, S_RELEASE, "commit");
	if ((r = run(b, S_COMMIT, "commit")) != 0 && !sqlite3_get_autocommit(b->db))
		(void)run(b, S_ROLLBACK, "rollback"); /* leave no half-open transaction */
	return r;
}

static void
sq_rollback(struct cf_store_backend *b, int depth)
{
	char saved[1024];

	/* Some errors (SQLITE_FULL, IOERR) already rolled everything back. */
	if (sqlite3_get_autocommit(b->db))
		return;
	snprintf(saved, sizeof(saved), "%s", cf_error_last()); /* keep the caller's reason */
	if (depth == 0)
		(void)run(b, S_ROLLBACK, "rollback");
	else if (run(b, S_ROLLBACK_TO, "rollback") == 0)
		(void)run(b, S_RELEASE, "rollback");
	cf_error_set("%s", saved);
}

/* ---- things --------------------------------------------------------------------- */

static int
thing_row(struct cf_store_backend *b, cf_thing_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->name, sizeof(out->name), s, 0)) != 0 ||
	    (r = col_dup(&out->attributes, s, 1, 0)) != 0)
		return r;
	out->created_at = sqlite3_column_int64(s, 2);
	return 0;
}

static int
sq_thing_insert(struct cf_store_backend *b, const cf_thing_rec *t)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_THING_INSERT)) != 0)
		goto out;
	bind_text(s, 1, t->name);
	bind_text(s, 2, t->attributes ? t->attributes : "{}");
	sqlite3_bind_int64(s, 3, t->created_at);
	r = step_done(b, s, "insert thing");
out:
	stmt_done(s);
	return r;
}

static int
sq_thing_get(struct cf_store_backend *b, cf_thing_rec *out, const char *name)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_THING_GET)) != 0)
		goto out;
	bind_text(s, 1, name);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = thing_row(b, out, s);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no thing named '%s'", name);
	} else {
		r = sq_fail(b, rc, "get thing");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_thing_list(struct cf_store_backend *b, cf_thing_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	cf_thing_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_THING_LIST)) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = thing_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list things");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_thing_recs_free(v, n < cap ? n + 1 : n); /* + the one being filled */
	stmt_done(s);
	return r;
}

static int
sq_thing_update(struct cf_store_backend *b, const cf_thing_rec *t)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_THING_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, t->name);
	bind_text(s, 2, t->attributes ? t->attributes : "{}");
	r = step_done(b, s, "update thing");
out:
	stmt_done(s);
	return r;
}

static int
sq_thing_delete(struct cf_store_backend *b, const char *name)
{
	static const enum stmt_id steps[] = { S_THING_DETACH, S_THING_UNGROUP, S_THING_DELETE };
	sqlite3_stmt *s = NULL;
	size_t i;
	int r = 0;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]) && r == 0; i++) {
		if ((r = stmt_get(b, &s, steps[i])) != 0)
			break;
		bind_text(s, 1, name);
		r = step_done(b, s, "delete thing");
		stmt_done(s);
		s = NULL;
	}
	if (r == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no thing named '%s'", name);
	}
	return r;
}

/* ---- groups ----------------------------------------------------------------------- */

static int
group_row(struct cf_store_backend *b, cf_group_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->name, sizeof(out->name), s, 0)) != 0 ||
	    (r = col_dup(&out->query, s, 1, 1)) != 0)
		return r;
	out->created_at = sqlite3_column_int64(s, 2);
	out->members = (size_t)sqlite3_column_int64(s, 3);
	return 0;
}

static int
sq_group_insert(struct cf_store_backend *b, const cf_group_rec *g)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_GROUP_INSERT)) != 0)
		goto out;
	bind_text(s, 1, g->name);
	if (g->query != NULL)
		bind_text(s, 2, g->query);
	sqlite3_bind_int64(s, 3, g->created_at);
	r = step_done(b, s, "insert group");
out:
	stmt_done(s);
	return r;
}

static int
sq_group_get(struct cf_store_backend *b, cf_group_rec *out, const char *name)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_GROUP_GET)) != 0)
		goto out;
	bind_text(s, 1, name);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = group_row(b, out, s);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no group named '%s'", name);
	} else {
		r = sq_fail(b, rc, "get group");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_group_list(struct cf_store_backend *b, cf_group_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	cf_group_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_GROUP_LIST)) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = group_row(b, &v[n], s)) != 0)
			goto out;
		if (v[n].query != NULL)
			v[n].members = 0; /* counted by cf_store.c */
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list groups");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_group_recs_free(v, n < cap ? n + 1 : n);
	stmt_done(s);
	return r;
}

static int
sq_group_member_add(struct cf_store_backend *b, const char *group, const char *thing, int64_t ts)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_MEMBER_ADD)) != 0)
		goto out;
	bind_text(s, 1, group);
	bind_text(s, 2, thing);
	sqlite3_bind_int64(s, 3, ts);
	if ((r = step_done(b, s, "add group member")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_EEXISTS;
		cf_error_set("'%s' already is a member of '%s'", thing, group);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_group_member_remove(struct cf_store_backend *b, const char *group, const char *thing)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_MEMBER_REMOVE)) != 0)
		goto out;
	bind_text(s, 1, group);
	bind_text(s, 2, thing);
	if ((r = step_done(b, s, "remove group member")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("'%s' is not a member of '%s'", thing, group);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_group_member_list(struct cf_store_backend *b, char ***out, size_t *out_n, const char *group)
{
	sqlite3_stmt *s = NULL;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_MEMBER_LIST)) != 0)
		goto out;
	bind_text(s, 1, group);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = col_dup(&v[n], s, 0, 0)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list group members");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	cf_strv_free(v, n);
	stmt_done(s);
	return r;
}

/* ---- certificate authorities -------------------------------------------------------- */

static int
ca_row(struct cf_store_backend *b, cf_ca_rec *out, sqlite3_stmt *s)
{
	const char *role;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->id, sizeof(out->id), s, 0)) != 0 ||
	    (r = col_copy(b, out->name, sizeof(out->name), s, 1)) != 0 ||
	    (r = col_copy(b, out->parent_id, sizeof(out->parent_id), s, 3)) != 0 ||
	    (r = col_status(b, &out->status, s, 4)) != 0 ||
	    (r = col_copy(b, out->serial, sizeof(out->serial), s, 6)) != 0 ||
	    (r = col_copy(b, out->key_alg, sizeof(out->key_alg), s, 12)) != 0 ||
	    (r = col_copy(b, out->key_ref, sizeof(out->key_ref), s, 14)) != 0 ||
	    (r = col_dup(&out->pem, s, 16, 0)) != 0)
		return r;
	role = (const char *)sqlite3_column_text(s, 2);
	if (role != NULL && strcmp(role, "ROOT") == 0) {
		out->role = CF_CA_ROOT;
	} else if (role != NULL && strcmp(role, "INTERMEDIATE") == 0) {
		out->role = CF_CA_INTERMEDIATE;
	} else {
		cf_error_set("%s: CA %s has unknown role '%s'", b->path, out->name, role ? role : "");
		return CF_ECORRUPT;
	}
	out->is_issuer = sqlite3_column_int(s, 5) != 0;
	out->not_before = sqlite3_column_int64(s, 7);
	out->not_after = sqlite3_column_int64(s, 8);
	out->created_at = sqlite3_column_int64(s, 9);
	out->revoked_at = sqlite3_column_int64(s, 10);
	out->revoke_reason = sqlite3_column_int(s, 11);
	out->key_bits = sqlite3_column_int(s, 13);
	out->crl_number = sqlite3_column_int64(s, 15);
	return 0;
}

static int
sq_ca_insert(struct cf_store_backend *b, const cf_ca_rec *ca)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CA_INSERT)) != 0)
		goto out;
	bind_text(s, 1, ca->id);
	bind_text(s, 2, ca->name);
	bind_text(s, 3, ca->role == CF_CA_ROOT ? "ROOT" : "INTERMEDIATE");
	bind_text_or_null(s, 4, ca->parent_id);
	bind_text(s, 5, cf_cert_status_name(ca->status));
	sqlite3_bind_int(s, 6, ca->is_issuer ? 1 : 0);
	bind_text(s, 7, ca->serial);
	sqlite3_bind_int64(s, 8, ca->not_before);
	sqlite3_bind_int64(s, 9, ca->not_after);
	sqlite3_bind_int64(s, 10, ca->created_at);
	sqlite3_bind_int64(s, 11, ca->revoked_at);
	sqlite3_bind_int(s, 12, ca->revoke_reason);
	bind_text(s, 13, ca->key_alg);
	sqlite3_bind_int(s, 14, ca->key_bits);
	bind_text(s, 15, ca->key_ref);
	sqlite3_bind_int64(s, 16, ca->crl_number);
	bind_text(s, 17, ca->pem);
	r = step_done(b, s, "insert CA");
out:
	stmt_done(s);
	return r;
}

static int
ca_get_by(struct cf_store_backend *b, cf_ca_rec *out, enum stmt_id id, const char *key)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, id)) != 0)
		goto out;
	if (key != NULL)
		bind_text(s, 1, key);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = ca_row(b, out, s);
		if (r != 0)
			cf_ca_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		if (key == NULL)
			cf_error_set("no issuing CA is set");
		else
			cf_error_set(id == S_CA_GET ? "no CA with id %s" : "no CA named '%s'", key);
	} else {
		r = sq_fail(b, rc, "get CA");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_ca_get(struct cf_store_backend *b, cf_ca_rec *out, const char *id)
{
	return ca_get_by(b, out, S_CA_GET, id);
}

static int
sq_ca_get_by_name(struct cf_store_backend *b, cf_ca_rec *out, const char *name)
{
	return ca_get_by(b, out, S_CA_GET_NAME, name);
}

static int
sq_ca_get_issuer(struct cf_store_backend *b, cf_ca_rec *out)
{
	return ca_get_by(b, out, S_CA_ISSUER, NULL);
}

static int
sq_ca_list(struct cf_store_backend *b, cf_ca_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	cf_ca_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_CA_LIST)) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = ca_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list CAs");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_ca_recs_free(v, n < cap ? n + 1 : n);
	stmt_done(s);
	return r;
}

static int
sq_ca_update(struct cf_store_backend *b, const cf_ca_rec *ca)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CA_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, ca->id);
	bind_text(s, 2, cf_cert_status_name(ca->status));
	sqlite3_bind_int(s, 3, ca->is_issuer ? 1 : 0);
	sqlite3_bind_int64(s, 4, ca->revoked_at);
	sqlite3_bind_int(s, 5, ca->revoke_reason);
	sqlite3_bind_int64(s, 6, ca->crl_number);
	if ((r = step_done(b, s, "update CA")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no CA with id %s", ca->id);
	}
out:
	stmt_done(s);
	return r;
}

/* ---- certificates ---------------------------------------------------------------- */

static int
cert_row(struct cf_store_backend *b, cf_cert_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->id, sizeof(out->id), s, 0)) != 0 ||
	    (r = col_copy(b, out->serial, sizeof(out->serial), s, 1)) != 0 ||
	    (r = col_copy(b, out->ca_id, sizeof(out->ca_id), s, 2)) != 0 ||
	    (r = col_copy(b, out->thing, sizeof(out->thing), s, 3)) != 0 ||
	    (r = col_status(b, &out->status, s, 4)) != 0 ||
	    (r = col_copy(b, out->key_alg, sizeof(out->key_alg), s, 11)) != 0 ||
	    (r = col_copy(b, out->sig_alg, sizeof(out->sig_alg), s, 13)) != 0 ||
	    (r = col_dup(&out->pem, s, 14, 0)) != 0 ||
	    (r = col_copy(b, out->spki_sha256, sizeof(out->spki_sha256), s, 15)) != 0 ||
	    (r = col_copy(b, out->keyq_policy, sizeof(out->keyq_policy), s, 17)) != 0)
		return r;
	/* Clean keys (most) have no detail: NULL, no allocation. */
	if (sqlite3_column_bytes(s, 18) > 0 && (r = col_dup(&out->keyq_detail, s, 18, 0)) != 0)
		return r;
	out->keyq_flags = (unsigned)sqlite3_column_int64(s, 16);
	out->not_before = sqlite3_column_int64(s, 5);
	out->not_after = sqlite3_column_int64(s, 6);
	out->created_at = sqlite3_column_int64(s, 7);
	out->updated_at = sqlite3_column_int64(s, 8);
	out->revoked_at = sqlite3_column_int64(s, 9);
	out->revoke_reason = sqlite3_column_int(s, 10);
	out->key_bits = sqlite3_column_int(s, 12);
	return 0;
}

static int
sq_cert_insert(struct cf_store_backend *b, const cf_cert_rec *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CERT_INSERT)) != 0)
		goto out;
	bind_text(s, 1, c->id);
	bind_text(s, 2, c->serial);
	bind_text(s, 3, c->ca_id);
	bind_text_or_null(s, 4, c->thing);
	bind_text(s, 5, cf_cert_status_name(c->status));
	sqlite3_bind_int64(s, 6, c->not_before);
	sqlite3_bind_int64(s, 7, c->not_after);
	sqlite3_bind_int64(s, 8, c->created_at);
	sqlite3_bind_int64(s, 9, c->updated_at);
	sqlite3_bind_int64(s, 10, c->revoked_at);
	sqlite3_bind_int(s, 11, c->revoke_reason);
	bind_text(s, 12, c->key_alg);
	sqlite3_bind_int(s, 13, c->key_bits);
	bind_text(s, 14, c->sig_alg);
	bind_text(s, 15, c->pem);
	bind_text(s, 16, c->spki_sha256);
	sqlite3_bind_int64(s, 17, c->keyq_flags);
	bind_text(s, 18, c->keyq_policy);
	bind_text(s, 19, c->keyq_detail ? c->keyq_detail : "");
	r = step_done(b, s, "insert certificate");
out:
	stmt_done(s);
	return r;
}

static int
sq_cert_get(struct cf_store_backend *b, cf_cert_rec *out, const char *id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_CERT_GET)) != 0)
		goto out;
	bind_text(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = cert_row(b, out, s)) != 0)
			cf_cert_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no certificate with id %s", id);
	} else {
		r = sq_fail(b, rc, "get certificate");
	}
out:
	stmt_done(s);
	return r;
}

/*
 * The WHERE clause is assembled from fixed fragments (values are always
 * bound), so each filter combination can use its index.
 */
static int
sq_cert_list(struct cf_store_backend *b, cf_cert_rec **out, size_t *out_n, const cf_cert_filter *f)
{
	sqlite3_stmt *s = NULL;
	cf_cert_rec *v = NULL;
	size_t n = 0, cap = 0;
	char sql[512];
	int r = 0, rc;

	snprintf(sql, sizeof(sql), "SELECT " CERT_COLS " FROM certificates WHERE 1%s%s%s%s "
	    "ORDER BY created_at, id",
	    f->status >= 0 ? " AND status = ?1" : "",
	    f->thing == NULL ? "" : f->thing[0] == '\0' ? " AND thing IS NULL" : " AND thing = ?2",
	    f->ca_id != NULL ? " AND ca_id = ?3" : "",
	    f->not_after_before != 0 ? " AND not_after < ?4" : "");
	if ((rc = sqlite3_prepare_v2(b->db, sql, -1, &s, NULL)) != SQLITE_OK) {
		r = sq_fail(b, rc, "list certificates");
		goto out;
	}
	if (f->status >= 0)
		bind_text(s, 1, cf_cert_status_name((cf_cert_status)f->status));
	if (f->thing != NULL && f->thing[0] != '\0')
		bind_text(s, 2, f->thing);
	if (f->ca_id != NULL)
		bind_text(s, 3, f->ca_id);
	if (f->not_after_before != 0)
		sqlite3_bind_int64(s, 4, f->not_after_before);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = cert_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list certificates");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_cert_recs_free(v, n < cap ? n + 1 : n);
	sqlite3_finalize(s);
	return r;
}

static int
sq_cert_count(struct cf_store_backend *b, size_t *out, const char *thing, cf_cert_status status,
    const char *except_id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_CERT_COUNT)) != 0)
		goto out;
	bind_text(s, 1, thing);
	bind_text(s, 2, cf_cert_status_name(status));
	bind_text(s, 3, except_id);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		r = sq_fail(b, rc, "count certificates");
		goto out;
	}
	*out = (size_t)sqlite3_column_int64(s, 0);
out:
	stmt_done(s);
	return r;
}

static int
sq_cert_update(struct cf_store_backend *b, const cf_cert_rec *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CERT_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, c->id);
	bind_text_or_null(s, 2, c->thing);
	bind_text(s, 3, cf_cert_status_name(c->status));
	sqlite3_bind_int64(s, 4, c->updated_at);
	sqlite3_bind_int64(s, 5, c->revoked_at);
	sqlite3_bind_int(s, 6, c->revoke_reason);
	if ((r = step_done(b, s, "update certificate")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no certificate with id %s", c->id);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_id_prefix(struct cf_store_backend *b, char (*out)[CF_ID_LEN + 1], size_t *out_n, size_t max,
    cf_store_kind kind, const char *prefix)
{
	sqlite3_stmt *s = NULL;
	size_t n = 0;
	int r, rc = SQLITE_DONE;

	if ((r = stmt_get(b, &s, kind == CF_STORE_KIND_CA ? S_CA_PREFIX : S_CERT_PREFIX)) != 0)
		goto out;
	bind_text(s, 1, prefix);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = col_copy(b, out[n], CF_ID_LEN + 1, s, 0)) != 0)
			goto out;
		n++;
	}
	if (n < max && rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "find id");
		goto out;
	}
	*out_n = n;
out:
	stmt_done(s);
	return r;
}

/* ---- events ------------------------------------------------------------------ */

static int
event_row(struct cf_store_backend *b, cf_event_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	out->seq = sqlite3_column_int64(s, 0);
	out->ts = sqlite3_column_int64(s, 1);
	if ((r = col_copy(b, out->type, sizeof(out->type), s, 2)) != 0 ||
	    (r = col_copy(b, out->subject, sizeof(out->subject), s, 3)) != 0 ||
	    (r = col_dup(&out->detail, s, 4, 0)) != 0 ||
	    (r = col_copy(b, out->prev_hash, sizeof(out->prev_hash), s, 5)) != 0 ||
	    (r = col_copy(b, out->hash, sizeof(out->hash), s, 6)) != 0) {
		cf_error_prefix("event #%lld", (long long)out->seq);
		return r;
	}
	return 0;
}

static int
sq_event_head(struct cf_store_backend *b, int64_t *seq, char hash[CF_ID_LEN + 1])
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_EVENT_HEAD)) != 0)
		goto out;
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		r = col_copy(b, hash, CF_ID_LEN + 1, s, 1);
	} else if (rc == SQLITE_DONE) {
		*seq = 0;
		memset(hash, '0', CF_ID_LEN);
		hash[CF_ID_LEN] = '\0';
	} else {
		r = sq_fail(b, rc, "read the event head");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_event_insert(struct cf_store_backend *b, const cf_event_rec *ev)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_EVENT_INSERT)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, ev->seq);
	sqlite3_bind_int64(s, 2, ev->ts);
	bind_text(s, 3, ev->type);
	bind_text(s, 4, ev->subject);
	bind_text(s, 5, ev->detail ? ev->detail : "{}");
	bind_text(s, 6, ev->prev_hash);
	bind_text(s, 7, ev->hash);
	r = step_done(b, s, "append event");
out:
	stmt_done(s);
	return r;
}

/* Runs an event query whose ?1 is an integer bound and ?2 the limit. */
static int
event_rows(struct cf_store_backend *b, enum stmt_id id, int64_t bound, size_t limit,
    cf_event_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	cf_event_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, id)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, bound);
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = event_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list events");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_event_recs_free(v, n < cap ? n + 1 : n);
	stmt_done(s);
	return r;
}

static int
sq_event_list(struct cf_store_backend *b, cf_event_rec **out, size_t *out_n, int64_t since,
    size_t limit)
{
	return event_rows(b, S_EVENT_LIST, since, limit, out, out_n);
}

static int
sq_event_list_after(struct cf_store_backend *b, cf_event_rec **out, size_t *out_n, int64_t after,
    size_t limit)
{
	return event_rows(b, S_EVENT_AFTER, after, limit, out, out_n);
}

/* ---- connections ------------------------------------------------------------------ */

static int
sq_conn_insert(struct cf_store_backend *b, const cf_conn_rec *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CONN_INSERT)) != 0)
		return r;
	bind_text(s, 1, c->client_id);
	bind_text(s, 2, c->principal);
	bind_text(s, 3, c->kind);
	bind_text(s, 4, c->peer);
	sqlite3_bind_int64(s, 5, c->connected_at);
	bind_text(s, 6, c->ref);
	r = step_done(b, s, "record connection");
	stmt_done(s);
	return r;
}

static int
sq_conn_close(struct cf_store_backend *b, const char *ref, int64_t at, const char *reason)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CONN_CLOSE)) != 0)
		return r;
	bind_text(s, 1, ref);
	sqlite3_bind_int64(s, 2, at);
	bind_text(s, 3, reason);
	if ((r = step_done(b, s, "close connection")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no open connection %s", ref);
	}
	stmt_done(s);
	return r;
}

static int
sq_conn_close_all(struct cf_store_backend *b, int64_t at, const char *reason, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CONN_CLOSE_ALL)) != 0)
		return r;
	sqlite3_bind_int64(s, 1, at);
	bind_text(s, 2, reason);
	if ((r = step_done(b, s, "close connections")) == 0 && out_n != NULL)
		*out_n = (size_t)sqlite3_changes(b->db);
	stmt_done(s);
	return r;
}

static int
conn_row(struct cf_store_backend *b, cf_conn_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	if ((r = col_copy(b, out->client_id, sizeof(out->client_id), s, 1)) != 0 ||
	    (r = col_copy(b, out->principal, sizeof(out->principal), s, 2)) != 0 ||
	    (r = col_copy(b, out->kind, sizeof(out->kind), s, 3)) != 0 ||
	    (r = col_copy(b, out->peer, sizeof(out->peer), s, 4)) != 0 ||
	    (r = col_copy(b, out->reason, sizeof(out->reason), s, 7)) != 0 ||
	    (r = col_copy(b, out->ref, sizeof(out->ref), s, 8)) != 0)
		return r;
	out->connected_at = sqlite3_column_int64(s, 5);
	out->disconnected_at = sqlite3_column_int64(s, 6);
	return 0;
}

static int
sq_conn_list(struct cf_store_backend *b, cf_conn_rec **out, size_t *out_n, const char *client_id,
    int open_only, size_t limit)
{
	sqlite3_stmt *s = NULL;
	cf_conn_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_CONN_LIST)) != 0)
		goto out;
	if (client_id)
		bind_text(s, 1, client_id);
	else
		sqlite3_bind_null(s, 1);
	sqlite3_bind_int(s, 2, open_only ? 1 : 0);
	sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = conn_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list connections");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	stmt_done(s);
	return r;
}

static int
sq_event_foreach(struct cf_store_backend *b, cf_store_event_cb cb, void *arg)
{
	sqlite3_stmt *s = NULL;
	cf_event_rec ev;
	int r, rc;

	memset(&ev, 0, sizeof(ev));
	if ((r = stmt_get(b, &s, S_EVENT_ALL)) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = event_row(b, &ev, s);
		if (r == 0)
			r = cb(&ev, arg);
		free(ev.detail);
		ev.detail = NULL;
		if (r != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = sq_fail(b, rc, "read events");
out:
	stmt_done(s);
	return r;
}

/* ---- jobs ------------------------------------------------------------------------ */

static const char *
selection_name(cf_job_selection s)
{
	return s == CF_JOB_SELECTION_CONTINUOUS ? "CONTINUOUS" : "SNAPSHOT";
}

static int
job_row(struct cf_store_backend *b, cf_job_rec *out, sqlite3_stmt *s)
{
	const char *v;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->id, sizeof(out->id), s, 0)) != 0 ||
	    (r = col_copy(b, out->operation, sizeof(out->operation), s, 1)) != 0 ||
	    (r = col_dup(&out->document, s, 2, 0)) != 0 ||
	    (r = col_dup(&out->targets, s, 3, 0)) != 0 ||
	    (r = col_dup(&out->config, s, 5, 0)) != 0 ||
	    (r = col_dup(&out->comment, s, 8, 1)) != 0)
		return r;
	v = (const char *)sqlite3_column_text(s, 4);
	if (v != NULL && strcmp(v, "CONTINUOUS") == 0) {
		out->selection = CF_JOB_SELECTION_CONTINUOUS;
	} else if (v != NULL && strcmp(v, "SNAPSHOT") == 0) {
		out->selection = CF_JOB_SELECTION_SNAPSHOT;
	} else {
		cf_error_set("%s: job %s has unknown selection '%s'", b->path, out->id, v ? v : "");
		return CF_ECORRUPT;
	}
	v = (const char *)sqlite3_column_text(s, 6);
	if (cf_job_state_parse(&out->status, v) != 0) {
		cf_error_set("%s: job %s has unknown status '%s'", b->path, out->id, v ? v : "");
		return CF_ECORRUPT;
	}
	out->force_canceled = sqlite3_column_int(s, 7) != 0;
	out->created_at = sqlite3_column_int64(s, 9);
	out->updated_at = sqlite3_column_int64(s, 10);
	out->completed_at = sqlite3_column_int64(s, 11);
	return 0;
}

static int
sq_job_insert(struct cf_store_backend *b, const cf_job_rec *j)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_JOB_INSERT)) != 0)
		goto out;
	bind_text(s, 1, j->id);
	bind_text(s, 2, j->operation);
	bind_text(s, 3, j->document);
	bind_text(s, 4, j->targets);
	bind_text(s, 5, selection_name(j->selection));
	bind_text(s, 6, j->config ? j->config : "{}");
	bind_text(s, 7, cf_job_state_name(j->status));
	sqlite3_bind_int(s, 8, j->force_canceled ? 1 : 0);
	bind_text_or_null(s, 9, j->comment);
	sqlite3_bind_int64(s, 10, j->created_at);
	sqlite3_bind_int64(s, 11, j->updated_at);
	sqlite3_bind_int64(s, 12, j->completed_at);
	r = step_done(b, s, "insert job");
out:
	stmt_done(s);
	return r;
}

static int
sq_job_get(struct cf_store_backend *b, cf_job_rec *out, const char *id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_JOB_GET)) != 0)
		goto out;
	bind_text(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = job_row(b, out, s)) != 0)
			cf_job_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no job '%s'", id);
	} else {
		r = sq_fail(b, rc, "get job");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_job_list(struct cf_store_backend *b, cf_job_rec **out, size_t *out_n, int status)
{
	sqlite3_stmt *s = NULL;
	cf_job_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r = 0, rc;

	rc = sqlite3_prepare_v2(b->db, status >= 0 ?
	    "SELECT " JOB_COLS " FROM jobs WHERE status = ?1 ORDER BY created_at, id" :
	    "SELECT " JOB_COLS " FROM jobs ORDER BY created_at, id", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		r = sq_fail(b, rc, "list jobs");
		goto out;
	}
	if (status >= 0)
		bind_text(s, 1, cf_job_state_name((cf_job_state)status));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = job_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list jobs");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_job_recs_free(v, n < cap ? n + 1 : n);
	sqlite3_finalize(s);
	return r;
}

static int
sq_job_update(struct cf_store_backend *b, const cf_job_rec *j)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_JOB_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, j->id);
	bind_text(s, 2, cf_job_state_name(j->status));
	sqlite3_bind_int(s, 3, j->force_canceled ? 1 : 0);
	bind_text_or_null(s, 4, j->comment);
	sqlite3_bind_int64(s, 5, j->updated_at);
	sqlite3_bind_int64(s, 6, j->completed_at);
	if ((r = step_done(b, s, "update job")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no job '%s'", j->id);
	}
out:
	stmt_done(s);
	return r;
}

/* ---- job executions ----------------------------------------------------------------- */

static int
exec_row(struct cf_store_backend *b, cf_exec_rec *out, sqlite3_stmt *s)
{
	const char *v;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->job_id, sizeof(out->job_id), s, 0)) != 0 ||
	    (r = col_copy(b, out->thing, sizeof(out->thing), s, 1)) != 0 ||
	    (r = col_dup(&out->status_details, s, 5, 0)) != 0)
		return r;
	v = (const char *)sqlite3_column_text(s, 3);
	if (cf_proto_status_parse(&out->status, v) != 0) {
		cf_error_set("%s: execution %s/%s has unknown status '%s'", b->path, out->job_id,
		    out->thing, v ? v : "");
		return CF_ECORRUPT;
	}
	out->execution_number = sqlite3_column_int64(s, 2);
	out->version = sqlite3_column_int64(s, 4);
	out->queued_at = sqlite3_column_int64(s, 6);
	out->started_at = sqlite3_column_int64(s, 7);
	out->last_updated_at = sqlite3_column_int64(s, 8);
	out->last_step_at = sqlite3_column_int64(s, 9);
	out->retries_failed = sqlite3_column_int(s, 10);
	out->retries_timed_out = sqlite3_column_int(s, 11);
	return 0;
}

static int
sq_exec_insert(struct cf_store_backend *b, const cf_exec_rec *e)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_EXEC_INSERT)) != 0)
		goto out;
	bind_text(s, 1, e->job_id);
	bind_text(s, 2, e->thing);
	sqlite3_bind_int64(s, 3, e->execution_number);
	bind_text(s, 4, cf_proto_status_name(e->status));
	sqlite3_bind_int64(s, 5, e->version);
	bind_text(s, 6, e->status_details ? e->status_details : "{}");
	sqlite3_bind_int64(s, 7, e->queued_at);
	sqlite3_bind_int64(s, 8, e->started_at);
	sqlite3_bind_int64(s, 9, e->last_updated_at);
	sqlite3_bind_int64(s, 10, e->last_step_at);
	sqlite3_bind_int(s, 11, e->retries_failed);
	sqlite3_bind_int(s, 12, e->retries_timed_out);
	r = step_done(b, s, "insert job execution");
out:
	stmt_done(s);
	return r;
}

/* Runs a cached statement expected to return at most one execution. */
static int
exec_one(struct cf_store_backend *b, cf_exec_rec *out, sqlite3_stmt *s, const char *what)
{
	int rc, r = 0;

	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = exec_row(b, out, s)) != 0)
			cf_exec_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
	} else {
		r = sq_fail(b, rc, what);
	}
	return r;
}

static int
sq_exec_get(struct cf_store_backend *b, cf_exec_rec *out, const char *job_id, const char *thing,
    int64_t execution_number)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, execution_number > 0 ? S_EXEC_GET : S_EXEC_LATEST)) != 0)
		goto out;
	bind_text(s, 1, job_id);
	bind_text(s, 2, thing);
	if (execution_number > 0)
		sqlite3_bind_int64(s, 3, execution_number);
	if ((r = exec_one(b, out, s, "get job execution")) == CF_ENOTFOUND) {
		if (execution_number > 0)
			cf_error_set("job '%s' has no execution #%lld for thing '%s'", job_id,
			    (long long)execution_number, thing);
		else
			cf_error_set("job '%s' has no execution for thing '%s'", job_id, thing);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_exec_update(struct cf_store_backend *b, const cf_exec_rec *e, int64_t expected_version,
    int *out_changed)
{
	sqlite3_stmt *s = NULL;
	int r;

	*out_changed = 0;
	if ((r = stmt_get(b, &s, S_EXEC_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, e->job_id);
	bind_text(s, 2, e->thing);
	sqlite3_bind_int64(s, 3, e->execution_number);
	bind_text(s, 4, cf_proto_status_name(e->status));
	sqlite3_bind_int64(s, 5, e->version);
	bind_text(s, 6, e->status_details ? e->status_details : "{}");
	sqlite3_bind_int64(s, 7, e->started_at);
	sqlite3_bind_int64(s, 8, e->last_updated_at);
	sqlite3_bind_int64(s, 9, e->last_step_at);
	sqlite3_bind_int(s, 10, e->retries_failed);
	sqlite3_bind_int(s, 11, e->retries_timed_out);
	sqlite3_bind_int64(s, 12, expected_version);
	if ((r = step_done(b, s, "update job execution")) == 0)
		*out_changed = sqlite3_changes(b->db);
out:
	stmt_done(s);
	return r;
}

static int
sq_exec_oldest(struct cf_store_backend *b, cf_exec_rec *out, const char *thing,
    cf_exec_status status)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_EXEC_OLDEST)) != 0)
		goto out;
	bind_text(s, 1, thing);
	bind_text(s, 2, cf_proto_status_name(status));
	if ((r = exec_one(b, out, s, "find pending execution")) == CF_ENOTFOUND)
		cf_error_set("thing '%s' has no %s execution", thing, cf_proto_status_name(status));
out:
	stmt_done(s);
	return r;
}

/* Collects the rows of a prepared execution query. */
static int
exec_rows(struct cf_store_backend *b, sqlite3_stmt *s, cf_exec_rec **out, size_t *out_n,
    const char *what)
{
	cf_exec_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r = 0, rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = exec_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, what);
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_exec_recs_free(v, n < cap ? n + 1 : n);
	return r;
}

static int
sq_exec_list(struct cf_store_backend *b, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int status, size_t limit)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	rc = sqlite3_prepare_v2(b->db, status >= 0 ?
	    "SELECT " EXEC_COLS " FROM job_executions WHERE job_id = ?1 AND status = ?2 "
	    "ORDER BY thing, execution_number LIMIT ?3" :
	    "SELECT " EXEC_COLS " FROM job_executions WHERE job_id = ?1 "
	    "ORDER BY thing, execution_number LIMIT ?3", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		r = sq_fail(b, rc, "list job executions");
		goto out;
	}
	bind_text(s, 1, job_id);
	if (status >= 0)
		bind_text(s, 2, cf_proto_status_name((cf_exec_status)status));
	sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit : -1);
	r = exec_rows(b, s, out, out_n, "list job executions");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_exec_counts(struct cf_store_backend *b, int64_t counts[CF_EXEC__COUNT], const char *job_id)
{
	sqlite3_stmt *s = NULL;
	cf_exec_status st;
	const char *v;
	int r, rc;

	if ((r = stmt_get(b, &s, S_EXEC_COUNTS)) != 0)
		goto out;
	bind_text(s, 1, job_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		v = (const char *)sqlite3_column_text(s, 0);
		if (cf_proto_status_parse(&st, v) != 0) {
			r = CF_ECORRUPT;
			cf_error_set("%s: job '%s' has executions in unknown status '%s'", b->path,
			    job_id, v ? v : "");
			goto out;
		}
		counts[st] += sqlite3_column_int64(s, 1);
	}
	if (rc != SQLITE_DONE)
		r = sq_fail(b, rc, "count job executions");
out:
	stmt_done(s);
	return r;
}

/* Assembled from fixed fragments (values bound) so each combination can use its index. */
static int
sq_exec_stale(struct cf_store_backend *b, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int64_t step, int64_t started, size_t limit)
{
	sqlite3_stmt *s = NULL;
	char sql[768];
	int r, rc;

	snprintf(sql, sizeof(sql), "SELECT " EXEC_COLS " FROM job_executions WHERE "
	    "status = 'IN_PROGRESS'%s AND (%s%s%s) ORDER BY last_step_at, job_id, thing LIMIT ?4",
	    job_id != NULL ? " AND job_id = ?1" : "",
	    step > 0 ? "last_step_at <= ?2" : "",
	    step > 0 && started > 0 ? " OR " : "",
	    started > 0 ? "started_at <= ?3" : "");
	if ((rc = sqlite3_prepare_v2(b->db, sql, -1, &s, NULL)) != SQLITE_OK) {
		r = sq_fail(b, rc, "list stale executions");
		goto out;
	}
	if (job_id != NULL)
		bind_text(s, 1, job_id);
	if (step > 0)
		sqlite3_bind_int64(s, 2, step);
	if (started > 0)
		sqlite3_bind_int64(s, 3, started);
	sqlite3_bind_int64(s, 4, limit ? (sqlite3_int64)limit : -1);
	r = exec_rows(b, s, out, out_n, "list stale executions");
out:
	sqlite3_finalize(s);
	return r;
}

/* ---- rotations ------------------------------------------------------------------- */

static int
rot_row(struct cf_store_backend *b, cf_rotation_rec *out, sqlite3_stmt *s)
{
	const char *v;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->job_id, sizeof(out->job_id), s, 0)) != 0 ||
	    (r = col_copy(b, out->thing, sizeof(out->thing), s, 1)) != 0 ||
	    (r = col_copy(b, out->old_cert, sizeof(out->old_cert), s, 3)) != 0 ||
	    (r = col_copy(b, out->new_cert, sizeof(out->new_cert), s, 4)) != 0)
		return r;
	v = (const char *)sqlite3_column_text(s, 5);
	if (cf_rotation_state_parse(&out->state, v) != 0) {
		cf_error_set("%s: rotation %s/%s has unknown state '%s'", b->path, out->job_id,
		    out->thing, v ? v : "");
		return CF_ECORRUPT;
	}
	out->execution_number = sqlite3_column_int64(s, 2);
	out->created_at = sqlite3_column_int64(s, 6);
	out->updated_at = sqlite3_column_int64(s, 7);
	return 0;
}

static void
rot_bind_key(sqlite3_stmt *s, const char *job_id, const char *thing, int64_t execution_number)
{
	bind_text(s, 1, job_id);
	bind_text(s, 2, thing);
	sqlite3_bind_int64(s, 3, execution_number);
}

static int
sq_rotation_insert(struct cf_store_backend *b, const cf_rotation_rec *x)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_ROT_INSERT)) != 0)
		goto out;
	rot_bind_key(s, x->job_id, x->thing, x->execution_number);
	bind_text(s, 4, x->old_cert);
	bind_text_or_null(s, 5, x->new_cert);
	bind_text(s, 6, cf_rotation_state_name(x->state));
	sqlite3_bind_int64(s, 7, x->created_at);
	sqlite3_bind_int64(s, 8, x->updated_at);
	r = step_done(b, s, "insert rotation");
out:
	stmt_done(s);
	return r;
}

static int
sq_rotation_get(struct cf_store_backend *b, cf_rotation_rec *out, const char *job_id,
    const char *thing, int64_t execution_number)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_ROT_GET)) != 0)
		goto out;
	rot_bind_key(s, job_id, thing, execution_number);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = rot_row(b, out, s);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no rotation for job '%s', thing '%s', execution #%lld", job_id, thing,
		    (long long)execution_number);
	} else {
		r = sq_fail(b, rc, "get rotation");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_rotation_update(struct cf_store_backend *b, const cf_rotation_rec *x)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_ROT_UPDATE)) != 0)
		goto out;
	rot_bind_key(s, x->job_id, x->thing, x->execution_number);
	bind_text(s, 4, x->old_cert);
	bind_text_or_null(s, 5, x->new_cert);
	bind_text(s, 6, cf_rotation_state_name(x->state));
	sqlite3_bind_int64(s, 7, x->updated_at);
	if ((r = step_done(b, s, "update rotation")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no rotation for job '%s', thing '%s', execution #%lld", x->job_id,
		    x->thing, (long long)x->execution_number);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_rotation_find_cert(struct cf_store_backend *b, cf_rotation_rec **out, size_t *out_n,
    const char *cert_id)
{
	sqlite3_stmt *s = NULL;
	cf_rotation_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_ROT_FIND)) != 0)
		goto out;
	bind_text(s, 1, cert_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = rot_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "find rotations");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	stmt_done(s);
	return r;
}

static int
sq_rotation_list_state(struct cf_store_backend *b, cf_rotation_rec **out, size_t *out_n,
    cf_rotation_state state, size_t limit)
{
	sqlite3_stmt *s = NULL;
	cf_rotation_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = stmt_get(b, &s, S_ROT_STATE)) != 0)
		goto out;
	bind_text(s, 1, cf_rotation_state_name(state));
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = rot_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list rotations");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	stmt_done(s);
	return r;
}

/* ---- job targets ------------------------------------------------------------------- */

static int
target_row(struct cf_store_backend *b, cf_job_target_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = col_copy(b, out->job_id, sizeof(out->job_id), s, 0)) != 0 ||
	    (r = col_copy(b, out->thing, sizeof(out->thing), s, 1)) != 0)
		return r;
	out->added_at = sqlite3_column_int64(s, 2);
	out->released_at = sqlite3_column_int64(s, 3);
	out->removed_at = sqlite3_column_int64(s, 4);
	return 0;
}

static void
target_bind(sqlite3_stmt *s, const cf_job_target_rec *t)
{
	bind_text(s, 1, t->job_id);
	bind_text(s, 2, t->thing);
	sqlite3_bind_int64(s, 3, t->added_at);
	sqlite3_bind_int64(s, 4, t->released_at);
	sqlite3_bind_int64(s, 5, t->removed_at);
}

static int
sq_target_insert(struct cf_store_backend *b, const cf_job_target_rec *t)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_TARGET_INSERT)) != 0)
		goto out;
	target_bind(s, t);
	r = step_done(b, s, "insert job target");
out:
	stmt_done(s);
	return r;
}

static int
sq_target_get(struct cf_store_backend *b, cf_job_target_rec *out, const char *job_id,
    const char *thing)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_TARGET_GET)) != 0)
		goto out;
	bind_text(s, 1, job_id);
	bind_text(s, 2, thing);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = target_row(b, out, s);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("thing '%s' is not a target of job '%s'", thing, job_id);
	} else {
		r = sq_fail(b, rc, "get job target");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_target_update(struct cf_store_backend *b, const cf_job_target_rec *t)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_TARGET_UPDATE)) != 0)
		goto out;
	target_bind(s, t);
	if ((r = step_done(b, s, "update job target")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("thing '%s' is not a target of job '%s'", t->thing, t->job_id);
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_target_list(struct cf_store_backend *b, cf_job_target_rec **out, size_t *out_n,
    const char *job_id, cf_targets_which which, size_t limit)
{
	sqlite3_stmt *s = NULL;
	cf_job_target_rec *v = NULL;
	size_t n = 0, cap = 0;
	enum stmt_id id;
	int r, rc;

	switch (which) {
	case CF_TARGETS_UNRELEASED:
		id = S_TARGET_UNRELEASED;
		break;
	case CF_TARGETS_RELEASED:
		id = S_TARGET_RELEASED;
		break;
	case CF_TARGETS_ALL:
	default:
		id = S_TARGET_ALL;
		break;
	}
	if ((r = stmt_get(b, &s, id)) != 0)
		goto out;
	bind_text(s, 1, job_id);
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = target_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list job targets");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	stmt_done(s);
	return r;
}

static int
sq_target_stats(struct cf_store_backend *b, cf_job_target_stats *out, const char *job_id,
    int64_t since)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_TARGET_STATS)) != 0)
		goto out;
	bind_text(s, 1, job_id);
	sqlite3_bind_int64(s, 2, since);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		r = sq_fail(b, rc, "count job targets");
		goto out;
	}
	out->total = sqlite3_column_int64(s, 0);
	out->unreleased = sqlite3_column_int64(s, 1);
	out->released = sqlite3_column_int64(s, 2);
	out->removed = sqlite3_column_int64(s, 3);
	out->first_released_at = sqlite3_column_int64(s, 4);
	out->released_since = sqlite3_column_int64(s, 5);
out:
	stmt_done(s);
	return r;
}

/* ---- notification outbox ----------------------------------------------------------- */

static int
notify_row(struct cf_store_backend *b, cf_notify_rec *out, sqlite3_stmt *s)
{
	const char *v;
	int r, i;

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	if ((r = col_copy(b, out->sink, sizeof(out->sink), s, 1)) != 0 ||
	    (r = col_copy(b, out->kind, sizeof(out->kind), s, 2)) != 0 ||
	    (r = col_copy(b, out->last_error, sizeof(out->last_error), s, 9)) != 0 ||
	    (r = col_dup(&out->payload, s, 3, 0)) != 0)
		return r;
	v = (const char *)sqlite3_column_text(s, 4);
	for (i = 0; i < CF_NOTIFY__COUNT; i++)
		if (v != NULL && strcmp(v, cf_notify_state_name((cf_notify_state)i)) == 0)
			break;
	if (i == CF_NOTIFY__COUNT) {
		cf_error_set("%s: notification %lld has unknown state '%s'", b->path,
		    (long long)out->id, v ? v : "");
		return CF_ECORRUPT;
	}
	out->state = (cf_notify_state)i;
	out->attempts = sqlite3_column_int(s, 5);
	out->created_at = sqlite3_column_int64(s, 6);
	out->next_at = sqlite3_column_int64(s, 7);
	out->updated_at = sqlite3_column_int64(s, 8);
	return 0;
}

/* Collects the rows of a prepared notification query. */
static int
notify_rows(struct cf_store_backend *b, sqlite3_stmt *s, cf_notify_rec **out, size_t *out_n,
    const char *what)
{
	cf_notify_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r = 0, rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = notify_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, what);
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_notify_recs_free(v, n < cap ? n + 1 : n);
	return r;
}

static int
sq_notify_insert(struct cf_store_backend *b, int64_t *out_id, const cf_notify_rec *x)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_NOTIFY_INSERT)) != 0)
		goto out;
	bind_text(s, 1, x->sink);
	bind_text(s, 2, x->kind);
	bind_text(s, 3, x->payload);
	bind_text(s, 4, cf_notify_state_name(x->state));
	sqlite3_bind_int(s, 5, x->attempts);
	sqlite3_bind_int64(s, 6, x->created_at);
	sqlite3_bind_int64(s, 7, x->next_at);
	sqlite3_bind_int64(s, 8, x->updated_at);
	bind_text(s, 9, x->last_error);
	if ((r = step_done(b, s, "queue notification")) == 0)
		*out_id = sqlite3_last_insert_rowid(b->db);
out:
	stmt_done(s);
	return r;
}

static int
sq_notify_get(struct cf_store_backend *b, cf_notify_rec *out, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = stmt_get(b, &s, S_NOTIFY_GET)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = notify_row(b, out, s)) != 0)
			cf_notify_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no notification %lld", (long long)id);
	} else {
		r = sq_fail(b, rc, "get notification");
	}
out:
	stmt_done(s);
	return r;
}

static int
sq_notify_update(struct cf_store_backend *b, const cf_notify_rec *x, int *out_changed)
{
	sqlite3_stmt *s = NULL;
	int r;

	*out_changed = 0;
	if ((r = stmt_get(b, &s, S_NOTIFY_UPDATE)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, x->id);
	bind_text(s, 2, cf_notify_state_name(x->state));
	sqlite3_bind_int(s, 3, x->attempts);
	sqlite3_bind_int64(s, 4, x->next_at);
	sqlite3_bind_int64(s, 5, x->updated_at);
	bind_text(s, 6, x->last_error);
	if ((r = step_done(b, s, "update notification")) == 0)
		*out_changed = sqlite3_changes(b->db);
out:
	stmt_done(s);
	return r;
}

static int
sq_notify_due(struct cf_store_backend *b, cf_notify_rec **out, size_t *out_n, int64_t now,
    size_t limit)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_NOTIFY_DUE)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	r = notify_rows(b, s, out, out_n, "list due notifications");
out:
	stmt_done(s);
	return r;
}

static int
sq_notify_list(struct cf_store_backend *b, cf_notify_rec **out, size_t *out_n, int state,
    size_t limit)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	rc = sqlite3_prepare_v2(b->db, state >= 0 ?
	    "SELECT " NOTIFY_COLS " FROM notifications WHERE state = ?1 ORDER BY id DESC LIMIT ?2" :
	    "SELECT " NOTIFY_COLS " FROM notifications ORDER BY id DESC LIMIT ?2", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		r = sq_fail(b, rc, "list notifications");
		goto out;
	}
	if (state >= 0)
		bind_text(s, 1, cf_notify_state_name((cf_notify_state)state));
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	r = notify_rows(b, s, out, out_n, "list notifications");
out:
	sqlite3_finalize(s);
	return r;
}

/* ---- audits, findings, suppressions, mitigation actions ------------------------------ */

#define AUDIT_COLS "id, started_at, finished_at, trigger, checks, counts"
#define FINDING_COLS "id, audit_id, check_name, severity, resource_type, resource_id, " \
	"reason_code, detail, suppressed"
#define SUPP_COLS "check_name, resource_id, until, comment, created_at"
#define MITIG_COLS "id, finding_id, action, status, detail, created_at"

/* A statement prepared for one call (rare queries: not worth a cache slot). */
static int
prep(struct cf_store_backend *b, sqlite3_stmt **out, const char *sql)
{
	int rc = sqlite3_prepare_v2(b->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(b, rc, "prepare");
}

static int
audit_row(struct cf_store_backend *b, cf_audit_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	out->started_at = sqlite3_column_int64(s, 1);
	out->finished_at = sqlite3_column_int64(s, 2);
	if ((r = col_copy(b, out->trigger, sizeof(out->trigger), s, 3)) != 0 ||
	    (r = col_dup(&out->checks, s, 4, 0)) != 0 || (r = col_dup(&out->counts, s, 5, 0)) != 0)
		return r;
	return 0;
}

static int
sq_audit_insert(struct cf_store_backend *b, int64_t *out_id, const cf_audit_rec *a)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = prep(b, &s, "INSERT INTO audits(started_at, finished_at, trigger, checks, counts) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, a->started_at);
	sqlite3_bind_int64(s, 2, a->finished_at);
	bind_text(s, 3, a->trigger);
	bind_text(s, 4, a->checks ? a->checks : "[]");
	bind_text(s, 5, a->counts ? a->counts : "{}");
	if ((r = step_done(b, s, "start audit")) == 0)
		*out_id = sqlite3_last_insert_rowid(b->db);
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_audit_get(struct cf_store_backend *b, cf_audit_rec *out, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = prep(b, &s, id > 0 ? "SELECT " AUDIT_COLS " FROM audits WHERE id = ?1" :
	    "SELECT " AUDIT_COLS " FROM audits WHERE finished_at != 0 ORDER BY id DESC LIMIT 1")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = audit_row(b, out, s)) != 0)
			cf_audit_rec_clear(out);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		if (id > 0)
			cf_error_set("no audit %lld", (long long)id);
		else
			cf_error_set("no finished audit yet (certfleet audit run makes one)");
	} else {
		r = sq_fail(b, rc, "get audit");
	}
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_audit_update(struct cf_store_backend *b, const cf_audit_rec *a)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = prep(b, &s, "UPDATE audits SET finished_at = ?2, counts = ?3 WHERE id = ?1")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, a->id);
	sqlite3_bind_int64(s, 2, a->finished_at);
	bind_text(s, 3, a->counts ? a->counts : "{}");
	r = step_done(b, s, "finish audit");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_audit_list(struct cf_store_backend *b, cf_audit_rec **out, size_t *out_n, size_t limit)
{
	sqlite3_stmt *s = NULL;
	cf_audit_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = prep(b, &s, "SELECT " AUDIT_COLS " FROM audits ORDER BY id DESC LIMIT ?1")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, limit ? (sqlite3_int64)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = audit_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list audits");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	if (v != NULL)
		cf_audit_recs_free(v, n < cap ? n + 1 : n);
	sqlite3_finalize(s);
	return r;
}

static int
finding_row(struct cf_store_backend *b, cf_finding_rec *out, sqlite3_stmt *s)
{
	int r;

	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(s, 0);
	out->audit_id = sqlite3_column_int64(s, 1);
	if ((r = col_copy(b, out->check, sizeof(out->check), s, 2)) != 0 ||
	    (r = col_copy(b, out->resource_type, sizeof(out->resource_type), s, 4)) != 0 ||
	    (r = col_copy(b, out->resource_id, sizeof(out->resource_id), s, 5)) != 0 ||
	    (r = col_copy(b, out->reason_code, sizeof(out->reason_code), s, 6)) != 0 ||
	    (r = col_copy(b, out->detail, sizeof(out->detail), s, 7)) != 0)
		return r;
	if (cf_severity_parse(&out->severity, (const char *)sqlite3_column_text(s, 3)) != 0) {
		cf_error_set("%s: finding %lld has an unknown severity", b->path, (long long)out->id);
		return CF_ECORRUPT;
	}
	out->suppressed = sqlite3_column_int(s, 8) != 0;
	return 0;
}

static int
sq_finding_insert(struct cf_store_backend *b, int64_t *out_id, const cf_finding_rec *f)
{
	sqlite3_stmt *s = NULL;
	int r;

	/* Cached: an audit inserts its findings in a burst. */
	if ((r = stmt_get(b, &s, S_FINDING_INSERT)) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, f->audit_id);
	bind_text(s, 2, f->check);
	bind_text(s, 3, cf_severity_name(f->severity));
	bind_text(s, 4, f->resource_type);
	bind_text(s, 5, f->resource_id);
	bind_text(s, 6, f->reason_code);
	bind_text(s, 7, f->detail);
	sqlite3_bind_int(s, 8, f->suppressed ? 1 : 0);
	if ((r = step_done(b, s, "insert finding")) == 0 && out_id != NULL)
		*out_id = sqlite3_last_insert_rowid(b->db);
out:
	stmt_done(s);
	return r;
}

static int
sq_finding_get(struct cf_store_backend *b, cf_finding_rec *out, int64_t id)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = prep(b, &s, "SELECT " FINDING_COLS " FROM findings WHERE id = ?1")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = finding_row(b, out, s);
	} else if (rc == SQLITE_DONE) {
		r = CF_ENOTFOUND;
		cf_error_set("no finding %lld", (long long)id);
	} else {
		r = sq_fail(b, rc, "get finding");
	}
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_finding_list(struct cf_store_backend *b, cf_finding_rec **out, size_t *out_n,
    const cf_finding_filter *f)
{
	sqlite3_stmt *s = NULL;
	cf_finding_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = prep(b, &s, "SELECT " FINDING_COLS " FROM findings WHERE (?1 = 0 OR audit_id = ?1) "
	    "AND (?2 IS NULL OR severity = ?2) AND (?3 IS NULL OR check_name = ?3) ORDER BY id")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, f->audit_id);
	if (f->severity >= 0)
		bind_text(s, 2, cf_severity_name((cf_severity)f->severity));
	if (f->check != NULL)
		bind_text(s, 3, f->check);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = finding_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list findings");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	sqlite3_finalize(s);
	return r;
}

static int
sq_supp_upsert(struct cf_store_backend *b, const cf_suppression_rec *x, int *replaced)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	*replaced = 0;
	if ((r = prep(b, &s, "SELECT 1 FROM suppressions WHERE check_name = ?1 AND "
	    "resource_id = ?2")) != 0)
		goto out;
	bind_text(s, 1, x->check);
	bind_text(s, 2, x->resource_id);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW)
		*replaced = 1;
	else if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "find suppression");
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	if ((r = prep(b, &s, "INSERT OR REPLACE INTO suppressions(" SUPP_COLS ") VALUES "
	    "(?1, ?2, ?3, ?4, ?5)")) != 0)
		goto out;
	bind_text(s, 1, x->check);
	bind_text(s, 2, x->resource_id);
	if (x->until > 0)
		sqlite3_bind_int64(s, 3, x->until);
	bind_text(s, 4, x->comment);
	sqlite3_bind_int64(s, 5, x->created_at);
	r = step_done(b, s, "suppress");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_supp_delete(struct cf_store_backend *b, const char *check, const char *resource_id)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = prep(b, &s, "DELETE FROM suppressions WHERE check_name = ?1 AND "
	    "resource_id = ?2")) != 0)
		goto out;
	bind_text(s, 1, check);
	bind_text(s, 2, resource_id);
	if ((r = step_done(b, s, "unsuppress")) == 0 && sqlite3_changes(b->db) == 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no suppression of %s for '%s'", check, resource_id);
	}
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_supp_list(struct cf_store_backend *b, cf_suppression_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	cf_suppression_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = prep(b, &s, "SELECT " SUPP_COLS " FROM suppressions ORDER BY check_name, "
	    "resource_id")) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0)
			goto out;
		memset(&v[n], 0, sizeof(v[n]));
		if ((r = col_copy(b, v[n].check, sizeof(v[n].check), s, 0)) != 0 ||
		    (r = col_copy(b, v[n].resource_id, sizeof(v[n].resource_id), s, 1)) != 0 ||
		    (r = col_copy(b, v[n].comment, sizeof(v[n].comment), s, 3)) != 0)
			goto out;
		v[n].until = sqlite3_column_int64(s, 2); /* NULL reads as 0: forever */
		v[n].created_at = sqlite3_column_int64(s, 4);
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list suppressions");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	sqlite3_finalize(s);
	return r;
}

static int
sq_mitig_insert(struct cf_store_backend *b, int64_t *out_id, const cf_mitigation_rec *m)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = prep(b, &s, "INSERT INTO mitigation_actions(finding_id, action, status, detail, "
	    "created_at) VALUES (?1, ?2, ?3, ?4, ?5)")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, m->finding_id);
	bind_text(s, 2, m->action);
	bind_text(s, 3, m->status);
	bind_text(s, 4, m->detail);
	sqlite3_bind_int64(s, 5, m->created_at);
	if ((r = step_done(b, s, "record mitigation")) == 0)
		*out_id = sqlite3_last_insert_rowid(b->db);
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_mitig_list(struct cf_store_backend *b, cf_mitigation_rec **out, size_t *out_n,
    int64_t finding_id)
{
	sqlite3_stmt *s = NULL;
	cf_mitigation_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = prep(b, &s, "SELECT " MITIG_COLS " FROM mitigation_actions WHERE (?1 = 0 OR "
	    "finding_id = ?1) ORDER BY id")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, finding_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0)
			goto out;
		memset(&v[n], 0, sizeof(v[n]));
		v[n].id = sqlite3_column_int64(s, 0);
		v[n].finding_id = sqlite3_column_int64(s, 1);
		if ((r = col_copy(b, v[n].action, sizeof(v[n].action), s, 2)) != 0 ||
		    (r = col_copy(b, v[n].status, sizeof(v[n].status), s, 3)) != 0 ||
		    (r = col_copy(b, v[n].detail, sizeof(v[n].detail), s, 4)) != 0)
			goto out;
		v[n].created_at = sqlite3_column_int64(s, 5);
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list mitigation actions");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	sqlite3_finalize(s);
	return r;
}

/*
 * One read of the certificates table for the audit: only the columns it
 * uses, copied into a record on the stack, the PEM borrowed from SQLite.
 */
static int
sq_cert_foreach(struct cf_store_backend *b, cf_store_cert_cb cb, void *arg)
{
	sqlite3_stmt *s = NULL;
	cf_cert_rec c;
	int r, rc;

	if ((r = prep(b, &s, "SELECT id, serial, ca_id, thing, status, not_before, not_after, "
	    "created_at, key_alg, key_bits, sig_alg, pem, keyq_flags, keyq_policy, keyq_detail "
	    "FROM certificates")) != 0)
		goto out;
	memset(&c, 0, sizeof(c));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = col_copy(b, c.id, sizeof(c.id), s, 0)) != 0 ||
		    (r = col_copy(b, c.serial, sizeof(c.serial), s, 1)) != 0 ||
		    (r = col_copy(b, c.ca_id, sizeof(c.ca_id), s, 2)) != 0 ||
		    (r = col_copy(b, c.thing, sizeof(c.thing), s, 3)) != 0 ||
		    (r = col_status(b, &c.status, s, 4)) != 0 ||
		    (r = col_copy(b, c.key_alg, sizeof(c.key_alg), s, 8)) != 0 ||
		    (r = col_copy(b, c.sig_alg, sizeof(c.sig_alg), s, 10)) != 0 ||
		    (r = col_copy(b, c.keyq_policy, sizeof(c.keyq_policy), s, 13)) != 0)
			goto out;
		c.keyq_detail = (char *)sqlite3_column_text(s, 14);
		c.keyq_flags = (unsigned)sqlite3_column_int64(s, 12);
		c.not_before = sqlite3_column_int64(s, 5);
		c.not_after = sqlite3_column_int64(s, 6);
		c.created_at = sqlite3_column_int64(s, 7);
		c.key_bits = sqlite3_column_int(s, 9);
		c.pem = (char *)sqlite3_column_text(s, 11);
		r = cb(&c, arg);
		c.pem = c.keyq_detail = NULL;
		if (r != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = sq_fail(b, rc, "read certificates");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_cert_keyq_update(struct cf_store_backend *b, const cf_cert_keyq *v)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = stmt_get(b, &s, S_CERT_KEYQ_UPDATE)) != 0)
		goto out;
	bind_text(s, 1, v->id);
	bind_text(s, 2, v->spki_sha256);
	sqlite3_bind_int64(s, 3, v->keyq_flags);
	bind_text(s, 4, v->keyq_policy);
	bind_text(s, 5, v->keyq_detail ? v->keyq_detail : "");
	r = step_done(b, s, "update certificate key facts");
out:
	stmt_done(s);
	return r;
}

/*
 * Migration 7's C step: every stored PEM parsed once, its key facts
 * written under the default policy, in batches by rowid (no UPDATE while
 * the SELECT is open). A PEM that does not parse keeps none ('' policy:
 * the audit evaluates it and reports why).
 */
#define BACKFILL_BATCH 256 /* the LIMIT below */
static int
backfill_keyq(struct cf_store_backend *b)
{
	sqlite3_stmt *sel = NULL, *upd = NULL;
	cf_cert_keyq *v = NULL;
	int64_t *rowid = NULL, last = 0;
	char fp[CF_KEYQ_POLICY_FP_LEN + 1];
	size_t n, i;
	int r, rc = SQLITE_DONE;

	if ((r = cf_keyq_policy_fingerprint(fp, NULL)) != 0)
		return r;
	if ((v = calloc(BACKFILL_BATCH, sizeof(*v))) == NULL ||
	    (rowid = calloc(BACKFILL_BATCH, sizeof(*rowid))) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	if ((r = prep(b, &sel, "SELECT rowid, pem FROM certificates WHERE rowid > ?1 ORDER BY rowid "
	    "LIMIT 256")) != 0 ||
	    (r = prep(b, &upd, "UPDATE certificates SET spki_sha256 = ?2, keyq_flags = ?3, "
	    "keyq_policy = ?4, keyq_detail = ?5 WHERE rowid = ?1")) != 0)
		goto out;
	do {
		n = 0;
		sqlite3_bind_int64(sel, 1, last);
		while (n < BACKFILL_BATCH && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
			rowid[n] = last = sqlite3_column_int64(sel, 0);
			if (cf_cert_keyq_compute(&v[n], (const char *)sqlite3_column_text(sel, 1), NULL,
			    fp) != 0)
				cf_error_clear();
			n++;
		}
		if (n < BACKFILL_BATCH && rc != SQLITE_DONE) {
			r = sq_fail(b, rc, "read certificates");
			goto out;
		}
		sqlite3_reset(sel);
		for (i = 0; i < n; i++) {
			sqlite3_bind_int64(upd, 1, rowid[i]);
			bind_text(upd, 2, v[i].spki_sha256);
			sqlite3_bind_int64(upd, 3, v[i].keyq_flags);
			bind_text(upd, 4, v[i].keyq_policy);
			bind_text(upd, 5, v[i].keyq_detail ? v[i].keyq_detail : "");
			r = step_done(b, upd, "backfill certificate key facts");
			sqlite3_reset(upd);
			free(v[i].keyq_detail);
			v[i].keyq_detail = NULL;
			if (r != 0) {
				for (; i < n; i++)
					free(v[i].keyq_detail);
				goto out;
			}
		}
	} while (n == BACKFILL_BATCH);
	r = sq_exec(b, "CREATE INDEX certificates_spki ON certificates(spki_sha256)", "migration");
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	free(v);
	free(rowid);
	return r;
}

static int
sq_thing_without_active(struct cf_store_backend *b, char ***out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	char **v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	if ((r = prep(b, &s, "SELECT name FROM things t WHERE NOT EXISTS (SELECT 1 FROM "
	    "certificates c WHERE c.thing = t.name AND c.status = 'ACTIVE') ORDER BY name")) != 0)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = col_dup(&v[n], s, 0, 0)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list things without an active certificate");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	cf_strv_free(v, n);
	sqlite3_finalize(s);
	return r;
}

static int
sq_conn_window(struct cf_store_backend *b, cf_conn_rec **out, size_t *out_n, int64_t since)
{
	sqlite3_stmt *s = NULL;
	cf_conn_rec *v = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	/* Two indexed ranges (connections_open, connections_ended), not a scan. */
	if ((r = prep(b, &s, "SELECT " CONN_COLS " FROM connections WHERE disconnected_at = 0 "
	    "UNION SELECT " CONN_COLS " FROM connections WHERE disconnected_at >= ?1 "
	    "ORDER BY 6, 1")) != 0)
		goto out;
	sqlite3_bind_int64(s, 1, since > 0 ? since : 1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, sizeof(*v))) != 0 || (r = conn_row(b, &v[n], s)) != 0)
			goto out;
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, "list connections");
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
out:
	free(v);
	sqlite3_finalize(s);
	return r;
}

/* ---- provisioning (schema v6) ------------------------------------------------------ */

/*
 * Queries here are prepared per call (not in the statement cache): none is
 * on a hot path, and the claim lookup at CONNECT is one primary-key read.
 */
#define PTEMPLATE_COLS "name, spec, created_at"
#define CLAIM_COLS "cert_id, template, status, reason, created_at, updated_at"
#define PSERIAL_COLS "template, serial, thing, cert_id, claim_id, client_id, key_id, at"

typedef int (*row_fn)(struct cf_store_backend *b, void *rec, sqlite3_stmt *s);

static int
sq_prepare(struct cf_store_backend *b, sqlite3_stmt **out, const char *sql, const char *what)
{
	int rc = sqlite3_prepare_v2(b->db, sql, -1, out, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(b, rc, what);
}

/* Steps s to the end, reading each row with fn into a growing array of size-byte records. */
static int
collect(struct cf_store_backend *b, sqlite3_stmt *s, void **out, size_t *out_n, size_t size,
    row_fn fn, void (*clear)(void *rec), const char *what)
{
	char *v = NULL;
	size_t n = 0, cap = 0, i;
	int r = 0, rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = grow(&v, &cap, n, size)) != 0 || (r = fn(b, v + n * size, s)) != 0) {
			if (r != 0 && v != NULL && n < cap && clear != NULL)
				clear(v + n * size);
			goto out;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		r = sq_fail(b, rc, what);
		goto out;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
out:
	for (i = 0; clear != NULL && i < n; i++)
		clear(v + i * size);
	free(v);
	return r;
}

/* Reads the one row of s with fn; CF_ENOTFOUND (message: what) if none. */
static int
one_row(struct cf_store_backend *b, sqlite3_stmt *s, void *rec, row_fn fn, const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return fn(b, rec, s);
	if (rc == SQLITE_DONE) {
		cf_error_set("%s not found", what);
		return CF_ENOTFOUND;
	}
	return sq_fail(b, rc, what);
}

static int
ptemplate_row(struct cf_store_backend *b, void *rec, sqlite3_stmt *s)
{
	cf_prov_template_rec *t = rec;
	int r;

	memset(t, 0, sizeof(*t));
	if ((r = col_copy(b, t->name, sizeof(t->name), s, 0)) != 0 || (r = col_dup(&t->spec, s, 1, 0)) != 0)
		return r;
	t->created_at = sqlite3_column_int64(s, 2);
	return 0;
}

static void
ptemplate_clear(void *rec)
{
	cf_prov_template_rec_clear(rec);
}

static int
sq_ptemplate_insert(struct cf_store_backend *b, const cf_prov_template_rec *t)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "INSERT INTO prov_templates(" PTEMPLATE_COLS ") VALUES (?1, ?2, ?3)",
	    "insert template")) != 0)
		goto out;
	bind_text(s, 1, t->name);
	bind_text(s, 2, t->spec);
	sqlite3_bind_int64(s, 3, t->created_at);
	r = step_done(b, s, "insert template");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_ptemplate_get(struct cf_store_backend *b, cf_prov_template_rec *out, const char *name)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "SELECT " PTEMPLATE_COLS " FROM prov_templates WHERE name = ?1",
	    "get template")) != 0)
		goto out;
	bind_text(s, 1, name);
	r = one_row(b, s, out, ptemplate_row, "template");
	if (r == CF_ENOTFOUND)
		cf_error_set("no provisioning template '%s'", name);
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_ptemplate_list(struct cf_store_backend *b, cf_prov_template_rec **out, size_t *out_n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "SELECT " PTEMPLATE_COLS " FROM prov_templates ORDER BY name",
	    "list templates")) != 0)
		goto out;
	r = collect(b, s, (void **)out, out_n, sizeof(**out), ptemplate_row, ptemplate_clear,
	    "list templates");
out:
	sqlite3_finalize(s);
	return r;
}

static int
claim_row(struct cf_store_backend *b, void *rec, sqlite3_stmt *s)
{
	cf_claim_rec *c = rec;
	const char *v;
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = col_copy(b, c->cert_id, sizeof(c->cert_id), s, 0)) != 0 ||
	    (r = col_copy(b, c->template_name, sizeof(c->template_name), s, 1)) != 0 ||
	    (r = col_copy(b, c->reason, sizeof(c->reason), s, 3)) != 0)
		return r;
	v = (const char *)sqlite3_column_text(s, 2);
	if (v != NULL && strcmp(v, "ENABLED") == 0)
		c->status = CF_CLAIM_ENABLED;
	else if (v != NULL && strcmp(v, "DISABLED") == 0)
		c->status = CF_CLAIM_DISABLED;
	else {
		cf_error_set("%s: claim %s has unknown status '%s'", b->path, c->cert_id, v ? v : "");
		return CF_ECORRUPT;
	}
	c->created_at = sqlite3_column_int64(s, 4);
	c->updated_at = sqlite3_column_int64(s, 5);
	return 0;
}

static int
sq_claim_insert(struct cf_store_backend *b, const cf_claim_rec *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "INSERT INTO prov_claims(" CLAIM_COLS ") VALUES (?1, ?2, ?3, ?4, "
	    "?5, ?6)", "insert claim")) != 0)
		goto out;
	bind_text(s, 1, c->cert_id);
	bind_text(s, 2, c->template_name);
	bind_text(s, 3, cf_claim_status_name(c->status));
	bind_text(s, 4, c->reason);
	sqlite3_bind_int64(s, 5, c->created_at);
	sqlite3_bind_int64(s, 6, c->updated_at);
	r = step_done(b, s, "insert claim");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_claim_get(struct cf_store_backend *b, cf_claim_rec *out, const char *cert_id)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "SELECT " CLAIM_COLS " FROM prov_claims WHERE cert_id = ?1",
	    "get claim")) != 0)
		goto out;
	bind_text(s, 1, cert_id);
	r = one_row(b, s, out, claim_row, "claim");
	if (r == CF_ENOTFOUND)
		cf_error_set("certificate %s is not a claim", cert_id);
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_claim_list(struct cf_store_backend *b, cf_claim_rec **out, size_t *out_n, const char *tmpl)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, tmpl ?
	    "SELECT " CLAIM_COLS " FROM prov_claims WHERE template = ?1 ORDER BY created_at, cert_id" :
	    "SELECT " CLAIM_COLS " FROM prov_claims ORDER BY created_at, cert_id", "list claims")) != 0)
		goto out;
	if (tmpl)
		bind_text(s, 1, tmpl);
	r = collect(b, s, (void **)out, out_n, sizeof(**out), claim_row, NULL, "list claims");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_claim_update(struct cf_store_backend *b, const cf_claim_rec *c)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "UPDATE prov_claims SET status = ?2, reason = ?3, updated_at = ?4 "
	    "WHERE cert_id = ?1", "update claim")) != 0)
		goto out;
	bind_text(s, 1, c->cert_id);
	bind_text(s, 2, cf_claim_status_name(c->status));
	bind_text(s, 3, c->reason);
	sqlite3_bind_int64(s, 4, c->updated_at);
	if ((r = step_done(b, s, "update claim")) == 0 && sqlite3_changes(b->db) == 0) {
		cf_error_set("certificate %s is not a claim", c->cert_id);
		r = CF_ENOTFOUND;
	}
out:
	sqlite3_finalize(s);
	return r;
}

static int
pserial_row(struct cf_store_backend *b, void *rec, sqlite3_stmt *s)
{
	cf_prov_serial_rec *x = rec;
	int r;

	memset(x, 0, sizeof(*x));
	if ((r = col_copy(b, x->template_name, sizeof(x->template_name), s, 0)) != 0 ||
	    (r = col_copy(b, x->serial, sizeof(x->serial), s, 1)) != 0 ||
	    (r = col_copy(b, x->thing, sizeof(x->thing), s, 2)) != 0 ||
	    (r = col_copy(b, x->cert_id, sizeof(x->cert_id), s, 3)) != 0 ||
	    (r = col_copy(b, x->claim_id, sizeof(x->claim_id), s, 4)) != 0 ||
	    (r = col_copy(b, x->client_id, sizeof(x->client_id), s, 5)) != 0 ||
	    (r = col_copy(b, x->key_id, sizeof(x->key_id), s, 6)) != 0)
		return r;
	x->at = sqlite3_column_int64(s, 7);
	return 0;
}

static int
sq_pserial_put(struct cf_store_backend *b, const cf_prov_serial_rec *x)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "INSERT OR REPLACE INTO prov_serials(" PSERIAL_COLS ") VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", "record serial")) != 0)
		goto out;
	bind_text(s, 1, x->template_name);
	bind_text(s, 2, x->serial);
	bind_text(s, 3, x->thing);
	bind_text(s, 4, x->cert_id);
	bind_text(s, 5, x->claim_id);
	bind_text(s, 6, x->client_id);
	bind_text(s, 7, x->key_id);
	sqlite3_bind_int64(s, 8, x->at);
	r = step_done(b, s, "record serial");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_pserial_get(struct cf_store_backend *b, cf_prov_serial_rec *out, const char *tmpl,
    const char *serial, const char *key_id)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, key_id ?
	    "SELECT " PSERIAL_COLS " FROM prov_serials WHERE key_id = ?3 ORDER BY at DESC LIMIT 1" :
	    "SELECT " PSERIAL_COLS " FROM prov_serials WHERE template = ?1 AND serial = ?2",
	    "get serial")) != 0)
		goto out;
	if (key_id)
		bind_text(s, 3, key_id);
	else {
		bind_text(s, 1, tmpl);
		bind_text(s, 2, serial);
	}
	r = one_row(b, s, out, pserial_row, "provisioned serial");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_pserial_delete(struct cf_store_backend *b, const char *tmpl, const char *serial)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "DELETE FROM prov_serials WHERE template = ?1 AND serial = ?2",
	    "delete serial")) != 0)
		goto out;
	bind_text(s, 1, tmpl);
	bind_text(s, 2, serial);
	if ((r = step_done(b, s, "delete serial")) == 0 && sqlite3_changes(b->db) == 0) {
		cf_error_set("serial %s of template %s is not provisioned", serial, tmpl);
		r = CF_ENOTFOUND;
	}
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_pserial_list(struct cf_store_backend *b, cf_prov_serial_rec **out, size_t *out_n,
    const char *tmpl, size_t limit)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, tmpl ?
	    "SELECT " PSERIAL_COLS " FROM prov_serials WHERE template = ?1 ORDER BY at, serial LIMIT ?2" :
	    "SELECT " PSERIAL_COLS " FROM prov_serials ORDER BY at, serial LIMIT ?2",
	    "list serials")) != 0)
		goto out;
	if (tmpl)
		bind_text(s, 1, tmpl);
	sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
	r = collect(b, s, (void **)out, out_n, sizeof(**out), pserial_row, NULL, "list serials");
out:
	sqlite3_finalize(s);
	return r;
}

/* One integer from a query of up to three text parameters and one integer (?4). */
static int
sq_count(struct cf_store_backend *b, int64_t *out, int64_t *out2, const char *sql,
    const char *p1, int64_t p4, const char *what)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if ((r = sq_prepare(b, &s, sql, what)) != 0)
		goto out;
	if (p1)
		bind_text(s, 1, p1);
	sqlite3_bind_int64(s, 4, p4);
	if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
		r = sq_fail(b, rc, what);
		goto out;
	}
	*out = sqlite3_column_int64(s, 0);
	if (out2)
		*out2 = sqlite3_column_int64(s, 1);
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_pserial_count(struct cf_store_backend *b, int64_t *out, const char *tmpl)
{
	return sq_count(b, out, NULL, "SELECT count(*) FROM prov_serials WHERE template = ?1 AND ?4 = 0",
	    tmpl, 0, "count serials");
}

static int
sq_pattempt_insert(struct cf_store_backend *b, const cf_prov_attempt_rec *a)
{
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = sq_prepare(b, &s, "INSERT INTO prov_attempts(claim_id, template, serial, client_id, "
	    "outcome, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", "record attempt")) != 0)
		goto out;
	bind_text(s, 1, a->claim_id);
	bind_text(s, 2, a->template_name);
	bind_text(s, 3, a->serial);
	bind_text(s, 4, a->client_id);
	bind_text(s, 5, a->outcome);
	sqlite3_bind_int64(s, 6, a->at);
	r = step_done(b, s, "record attempt");
out:
	sqlite3_finalize(s);
	return r;
}

static int
sq_pattempt_count(struct cf_store_backend *b, int64_t *total, int64_t *denied, const char *claim,
    int64_t since)
{
	return sq_count(b, total, denied, "SELECT count(*), coalesce(sum(outcome != 'accepted'), 0) "
	    "FROM prov_attempts WHERE claim_id = ?1 AND at >= ?4", claim, since, "count attempts");
}

const struct cf_store_ops cf_store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.schema_version = sq_schema_version,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.thing_insert = sq_thing_insert,
	.thing_get = sq_thing_get,
	.thing_list = sq_thing_list,
	.thing_update = sq_thing_update,
	.thing_delete = sq_thing_delete,
	.group_insert = sq_group_insert,
	.group_get = sq_group_get,
	.group_list = sq_group_list,
	.group_member_add = sq_group_member_add,
	.group_member_remove = sq_group_member_remove,
	.group_member_list = sq_group_member_list,
	.ca_insert = sq_ca_insert,
	.ca_get = sq_ca_get,
	.ca_get_by_name = sq_ca_get_by_name,
	.ca_list = sq_ca_list,
	.ca_get_issuer = sq_ca_get_issuer,
	.ca_update = sq_ca_update,
	.cert_insert = sq_cert_insert,
	.cert_get = sq_cert_get,
	.cert_list = sq_cert_list,
	.cert_count = sq_cert_count,
	.cert_update = sq_cert_update,
	.id_prefix = sq_id_prefix,
	.event_head = sq_event_head,
	.event_insert = sq_event_insert,
	.event_list = sq_event_list,
	.event_foreach = sq_event_foreach,
	.event_list_after = sq_event_list_after,
	.conn_insert = sq_conn_insert,
	.conn_close = sq_conn_close,
	.conn_close_all = sq_conn_close_all,
	.conn_list = sq_conn_list,
	.job_insert = sq_job_insert,
	.job_get = sq_job_get,
	.job_list = sq_job_list,
	.job_update = sq_job_update,
	.exec_insert = sq_exec_insert,
	.exec_get = sq_exec_get,
	.exec_update = sq_exec_update,
	.exec_oldest = sq_exec_oldest,
	.exec_list = sq_exec_list,
	.exec_counts = sq_exec_counts,
	.exec_stale = sq_exec_stale,
	.rotation_insert = sq_rotation_insert,
	.rotation_get = sq_rotation_get,
	.rotation_update = sq_rotation_update,
	.rotation_find_cert = sq_rotation_find_cert,
	.rotation_list_state = sq_rotation_list_state,
	.target_insert = sq_target_insert,
	.target_get = sq_target_get,
	.target_update = sq_target_update,
	.target_list = sq_target_list,
	.target_stats = sq_target_stats,
	.notify_insert = sq_notify_insert,
	.notify_get = sq_notify_get,
	.notify_update = sq_notify_update,
	.notify_due = sq_notify_due,
	.notify_list = sq_notify_list,
	.audit_insert = sq_audit_insert,
	.audit_get = sq_audit_get,
	.audit_update = sq_audit_update,
	.audit_list = sq_audit_list,
	.finding_insert = sq_finding_insert,
	.finding_get = sq_finding_get,
	.finding_list = sq_finding_list,
	.supp_upsert = sq_supp_upsert,
	.supp_delete = sq_supp_delete,
	.supp_list = sq_supp_list,
	.mitig_insert = sq_mitig_insert,
	.mitig_list = sq_mitig_list,
	.cert_foreach = sq_cert_foreach,
	.cert_keyq_update = sq_cert_keyq_update,
	.thing_without_active = sq_thing_without_active,
	.conn_window = sq_conn_window,
	/* provisioning (schema v6) */
	.ptemplate_insert = sq_ptemplate_insert,
	.ptemplate_get = sq_ptemplate_get,
	.ptemplate_list = sq_ptemplate_list,
	.claim_insert = sq_claim_insert,
	.claim_get = sq_claim_get,
	.claim_list = sq_claim_list,
	.claim_update = sq_claim_update,
	.pserial_put = sq_pserial_put,
	.pserial_get = sq_pserial_get,
	.pserial_delete = sq_pserial_delete,
	.pserial_list = sq_pserial_list,
	.pserial_count = sq_pserial_count,
	.pattempt_insert = sq_pattempt_insert,
	.pattempt_count = sq_pattempt_count,
};
