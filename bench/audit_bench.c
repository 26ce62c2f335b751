/*
 * audit_bench — the full certificate audit against a raw SQLite scan of the
 * same certificates table, in one run (bench/audit-bench drives it).
 *
 *   audit_bench DB ROWS    builds DB with ROWS certificates (and things),
 *                          then times the raw scan and cf_audit_run, and
 *                          prints raw_s, audit_s and ratio=audit/raw.
 *
 * Rows reuse 4 real certificate PEMs (ECDSA P-256 and RSA-2048 keys) with
 * distinct ids, serials, things and dates; 1% expire within 30 days. The
 * bulk insert uses SQLite directly: one transaction, prepared statements.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_audit.h"
#include "cf_pki.h"
#include "cf_store.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "audit_bench: %s: %s\n", what, cf_error_last());
	exit(1);
}

static void
sq(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "audit_bench: %s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	cf_store *st = NULL;
	cf_key *rk = NULL, *dk[4] = { NULL };
	cf_cert *root = NULL, *dev[4] = { NULL };
	char *root_pem = NULL, *pem[4] = { NULL }, id[CF_ID_LEN + 1], thing[32], serial[41];
	cf_ca_rec ca;
	sqlite3 *db;
	sqlite3_stmt *ti, *ci, *scan;
	long rows, i;
	int64_t t0 = (int64_t)time(NULL);
	double a, raw_s, audit_s;
	size_t bytes = 0;
	cf_audit_result res;
	static const cf_key_alg algs[4] = { CF_KEY_P256, CF_KEY_P256, CF_KEY_RSA2048, CF_KEY_P384 };

	if (argc != 3 || (rows = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: audit_bench DB ROWS\n");
		return 2;
	}
	/* The store (schema, a root CA) through the library. */
	if (cf_store_open(&st, argv[1], CF_STORE_CREATE) != 0)
		die("open");
	if (cf_key_generate(&rk, CF_KEY_P256) != 0 || cf_pki_make_root(&root, rk, "bench root", 3650) != 0 ||
	    cf_cert_to_pem(&root_pem, root) != 0)
		die("root");
	memset(&ca, 0, sizeof(ca));
	if (cf_cert_fingerprint(ca.id, root) != 0)
		die("fingerprint");
	snprintf(ca.name, sizeof(ca.name), "root");
	ca.role = CF_CA_ROOT;
	ca.status = CF_CERT_ACTIVE;
	snprintf(ca.serial, sizeof(ca.serial), "01");
	ca.not_before = t0 - 86400;
	ca.not_after = t0 + 3650L * 86400;
	ca.created_at = t0;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "ECDSA-P256");
	ca.key_bits = 256;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "ca/root.key");
	ca.pem = root_pem;
	if (cf_store_ca_insert(st, &ca) != 0)
		die("insert CA");
	for (i = 0; i < 4; i++)
		if (cf_key_generate(&dk[i], algs[i]) != 0 ||
		    cf_pki_issue_tls(&dev[i], dk[i], "device", NULL, 0, 365, root, rk) != 0 ||
		    cf_cert_to_pem(&pem[i], dev[i]) != 0)
			die("device certificate");
	cf_store_close(st);

	/* The bulk rows: SQLite directly, one transaction. */
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		return 1;
	sq(db, sqlite3_exec(db, "PRAGMA synchronous = OFF; BEGIN", NULL, NULL, NULL), "begin");
	sq(db, sqlite3_prepare_v2(db, "INSERT INTO things(name, attributes, created_at) VALUES (?1, '{}', ?2)",
	    -1, &ti, NULL), "prepare");
	sq(db, sqlite3_prepare_v2(db, "INSERT INTO certificates(id, serial, ca_id, thing, status, "
	    "not_before, not_after, created_at, updated_at, key_alg, key_bits, sig_alg, pem) VALUES "
	    "(?1, ?2, ?3, ?4, 'ACTIVE', ?5, ?6, ?5, ?5, ?7, ?8, ?9, ?10)", -1, &ci, NULL), "prepare");
	for (i = 0; i < rows; i++) {
		snprintf(thing, sizeof(thing), "dev-%08ld", i);
		snprintf(serial, sizeof(serial), "%040lx", i + 1);
		cf_sha256_hex(id, serial, strlen(serial));
		sqlite3_bind_text(ti, 1, thing, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ti, 2, t0);
		sq(db, sqlite3_step(ti), "insert thing");
		sqlite3_reset(ti);
		sqlite3_bind_text(ci, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 2, serial, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 3, ca.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 4, thing, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ci, 5, t0 - 86400 * (i % 300));
		/* 1 in 100 expires within 30 days: some findings to write. */
		sqlite3_bind_int64(ci, 6, t0 + 86400 * (i % 100 == 0 ? 10 : 200 + i % 100));
		sqlite3_bind_text(ci, 7, i % 4 == 2 ? "RSA-2048" : "ECDSA-P256", -1, SQLITE_STATIC);
		sqlite3_bind_int(ci, 8, i % 4 == 2 ? 2048 : 256);
		sqlite3_bind_text(ci, 9, i % 4 == 2 ? "sha256WithRSAEncryption" : "ecdsa-with-SHA256", -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(ci, 10, pem[i % 4], -1, SQLITE_STATIC);
		sq(db, sqlite3_step(ci), "insert certificate");
		sqlite3_reset(ci);
	}
	sqlite3_finalize(ti);
	sqlite3_finalize(ci);
	sq(db, sqlite3_exec(db, "COMMIT; ANALYZE", NULL, NULL, NULL), "commit");

	/* Warm the page cache equally for both: one untimed scan. */
	sq(db, sqlite3_prepare_v2(db, "SELECT id, serial, ca_id, thing, status, not_before, "
	    "not_after, created_at, key_alg, key_bits, sig_alg, pem FROM certificates", -1, &scan,
	    NULL), "prepare scan");
	for (int pass = 0; pass < 2; pass++) {
		a = now_s();
		bytes = 0;
		while (sqlite3_step(scan) == SQLITE_ROW) {
			for (int c = 0; c < 12; c++) {
				if (c == 5 || c == 6 || c == 7 || c == 9)
					bytes += (size_t)sqlite3_column_int64(scan, c) & 1;
				else if (sqlite3_column_text(scan, c) != NULL)
					bytes += (size_t)sqlite3_column_bytes(scan, c);
			}
		}
		sqlite3_reset(scan);
		raw_s = now_s() - a;
	}
	sqlite3_finalize(scan);
	sqlite3_close(db);

	if (cf_store_open(&st, argv[1], 0) != 0)
		die("reopen");
	a = now_s();
	if (cf_audit_run(st, &res, NULL) != 0)
		die("audit");
	audit_s = now_s() - a;
	printf("rows=%ld raw_bytes=%zu findings=%zu cert_passes=%zu pem_parses=%zu\n", rows, bytes,
	    res.findings, res.cert_passes, res.pem_parses);
	printf("raw_s=%.3f audit_s=%.3f ratio=%.2f\n", raw_s, audit_s, audit_s / raw_s);
	cf_store_close(st);
	for (i = 0; i < 4; i++) {
		cf_cert_free(dev[i]);
		cf_key_free(dk[i]);
		free(pem[i]);
	}
	cf_cert_free(root);
	cf_key_free(rk);
	free(root_pem);
	return 0;
}
