/*
 * certfleetd's /metrics: the Prometheus text exposition format 0.0.4.
 *
 * Owns the mapping from counters in cfd_metrics (bumped by mqtt.c and
 * api.c) to metric names, and reads the registry gauges (certificates by
 * status, things, open connections) from the store at scrape time, so they
 * are right even after another process (the CLI) changed the registry.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "certfleetd.h"
#include "cf_proto.h"

static const int http_codes[CFD_HTTP_CODES] = { 200, 201, 204, 400, 404, 405, 409, 413, 500, 503 };

void
cfd_metrics_http(cfd *d, int code)
{
	size_t i;

	for (i = 0; i < CFD_HTTP_CODES; i++) {
		if (http_codes[i] == code) {
			d->metrics.http_by_code[i]++;
			return;
		}
	}
	d->metrics.http_other++;
}

/* Upper bounds of the issuance latency buckets, in microseconds (then +Inf). */
static const int64_t issue_le_us[CFD_ISSUE_BUCKETS - 1] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
};

int64_t
cfd_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
cfd_metrics_issue(cfd *d, int64_t us)
{
	size_t i;

	if (us < 0)
		us = 0;
	for (i = 0; i < CFD_ISSUE_BUCKETS - 1 && us > issue_le_us[i]; i++)
		;
	d->metrics.issue_bucket[i]++;
	d->metrics.issue_count++;
	d->metrics.issue_sum_us += (uint64_t)us;
}

static void
head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
counter(struct evbuffer *b, const char *name, const char *help, uint64_t v)
{
	head(b, name, "counter", help);
	evbuffer_add_printf(b, "%s %ju\n", name, (uintmax_t)v);
}

/* Per-CA certificate counts, gathered in one pass over the certificates table. */
typedef struct {
	cf_ca_rec *cas;
	size_t n_cas;
	uint64_t (*by_ca)[CF_CERT__STATUS_COUNT]; /* [n_cas + 1]: the last row for unknown CAs */
	uint64_t by_status[CF_CERT__STATUS_COUNT];
	uint64_t expiring7, expiring30;
	int64_t now;
} cert_tally;

static int
tally_cert(const cf_cert_rec *c, void *arg)
{
	cert_tally *t = arg;
	size_t i;

	if ((unsigned)c->status >= CF_CERT__STATUS_COUNT)
		return 0;
	t->by_status[c->status]++;
	for (i = 0; i < t->n_cas && strcmp(t->cas[i].id, c->ca_id) != 0; i++)
		;
	t->by_ca[i][c->status]++;
	/* Expiring: ACTIVE and not after now + N days (an expired ACTIVE one too: it needs a rotation). */
	if (c->status == CF_CERT_ACTIVE && c->not_after <= t->now + 7 * 86400)
		t->expiring7++;
	if (c->status == CF_CERT_ACTIVE && c->not_after <= t->now + 30 * 86400)
		t->expiring30++;
	return 0;
}

static void
cert_gauges(cf_store *st, struct evbuffer *b)
{
	cert_tally t;
	size_t i, s;

	memset(&t, 0, sizeof(t));
	t.now = cf_time_now();
	if (cf_store_ca_list(st, &t.cas, &t.n_cas) != 0 ||
	    (t.by_ca = calloc(t.n_cas + 1, sizeof(*t.by_ca))) == NULL ||
	    cf_store_cert_foreach(st, tally_cert, &t) != 0) {
		cf_log(CF_LOG_WARN, "metrics: cannot count certificates", "error=%s", cf_error_last());
		goto out;
	}
	head(b, "certfleet_certificates", "gauge", "Device certificates in the registry by status.");
	for (s = 0; s < CF_CERT__STATUS_COUNT; s++)
		evbuffer_add_printf(b, "certfleet_certificates{status=\"%s\"} %ju\n",
		    cf_cert_status_name((cf_cert_status)s), (uintmax_t)t.by_status[s]);
	head(b, "certfleet_certificates_by_ca", "gauge",
	    "Device certificates by issuing CA (name) and status.");
	for (i = 0; i <= t.n_cas; i++)
		for (s = 0; s < CF_CERT__STATUS_COUNT; s++)
			if (i < t.n_cas || t.by_ca[i][s] > 0)
				evbuffer_add_printf(b, "certfleet_certificates_by_ca{ca=\"%s\",status=\"%s\"} "
				    "%ju\n", i < t.n_cas ? t.cas[i].name : "unknown",
				    cf_cert_status_name((cf_cert_status)s), (uintmax_t)t.by_ca[i][s]);
	head(b, "certfleet_certificates_expiring", "gauge",
	    "ACTIVE device certificates whose notAfter is within the window (expired ones included).");
	evbuffer_add_printf(b, "certfleet_certificates_expiring{within=\"7d\"} %ju\n",
	    (uintmax_t)t.expiring7);
	evbuffer_add_printf(b, "certfleet_certificates_expiring{within=\"30d\"} %ju\n",
	    (uintmax_t)t.expiring30);
out:
	free(t.by_ca);
	cf_ca_recs_free(t.cas, t.n_cas);
}

/* The latest finished audit's unsuppressed findings by check and severity. */
static void
audit_gauges(cf_store *st, struct evbuffer *b)
{
	cf_audit_rec a;
	cf_finding_filter ff = { .severity = -1 };
	cf_finding_rec *fs = NULL;
	size_t n = 0, i, c, s, suppressed = 0;
	uint64_t (*by)[CF_SEV__COUNT] = NULL;
	char quoted[CF_AUDIT_CHECK_MAX + 3];
	int k, r;

	memset(&a, 0, sizeof(a));
	if ((r = cf_store_audit_get(st, &a, 0)) == CF_ENOTFOUND)
		return; /* no audit yet: no series */
	ff.audit_id = a.id;
	if (r != 0 || cf_store_finding_list(st, &fs, &n, &ff) != 0 ||
	    (by = calloc(CF_AUDIT__COUNT, sizeof(*by))) == NULL) {
		cf_log(CF_LOG_WARN, "metrics: cannot read the latest audit", "error=%s", cf_error_last());
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (fs[i].suppressed) {
			suppressed++;
			continue;
		}
		if ((k = cf_audit_check_find(fs[i].check)) >= 0 && (unsigned)fs[i].severity < CF_SEV__COUNT)
			by[k][fs[i].severity]++;
	}
	head(b, "certfleet_audit_last_id", "gauge", "Id of the latest finished audit.");
	evbuffer_add_printf(b, "certfleet_audit_last_id %lld\n", (long long)a.id);
	head(b, "certfleet_audit_last_finished_timestamp_seconds", "gauge",
	    "When the latest audit finished (Unix time).");
	evbuffer_add_printf(b, "certfleet_audit_last_finished_timestamp_seconds %lld\n",
	    (long long)a.finished_at);
	head(b, "certfleet_audit_findings", "gauge",
	    "Unsuppressed findings of the latest audit by check and severity (checks run, zeros included).");
	for (c = 0; c < CF_AUDIT__COUNT; c++) {
		/* Only the checks that ran: a zero from a check that did not run would mislead. */
		snprintf(quoted, sizeof(quoted), "\"%s\"", cf_audit_checks[c].name);
		if (a.checks == NULL || strstr(a.checks, quoted) == NULL)
			continue;
		for (s = 0; s < CF_SEV__COUNT; s++)
			evbuffer_add_printf(b, "certfleet_audit_findings{check=\"%s\",severity=\"%s\"} %ju\n",
			    cf_audit_checks[c].name, cf_severity_name((cf_severity)s), (uintmax_t)by[c][s]);
	}
	head(b, "certfleet_audit_findings_suppressed", "gauge", "Suppressed findings of the latest audit.");
	evbuffer_add_printf(b, "certfleet_audit_findings_suppressed %zu\n", suppressed);
out:
	free(by);
	free(fs);
	cf_audit_rec_clear(&a);
}

/* Rotation records by state, and the latest attempt of each job's things by status. */
static void
job_gauges(cf_store *st, struct evbuffer *b)
{
	cf_rotation_rec *rot = NULL;
	cf_job_rec *jobs = NULL;
	size_t n = 0, n_jobs = 0, i;
	int64_t counts[CF_EXEC__COUNT], total[CF_EXEC__COUNT] = { 0 };
	int s, ok = 1;

	head(b, "certfleet_rotations", "gauge", "Rotation records by state (succeeded, failed ...).");
	for (s = 0; s < CF_ROTATION__COUNT; s++) {
		if (cf_store_rotation_list_state(st, &rot, &n, (cf_rotation_state)s, 0) != 0) {
			cf_log(CF_LOG_WARN, "metrics: cannot count rotations", "error=%s", cf_error_last());
			break;
		}
		evbuffer_add_printf(b, "certfleet_rotations{state=\"%s\"} %zu\n",
		    cf_rotation_state_name((cf_rotation_state)s), n);
		cf_rotation_recs_free(rot, n);
		rot = NULL;
		n = 0;
	}
	if (cf_store_job_list(st, &jobs, &n_jobs, -1) != 0) {
		cf_log(CF_LOG_WARN, "metrics: cannot count jobs", "error=%s", cf_error_last());
		return;
	}
	for (i = 0; i < n_jobs && ok; i++) {
		if (cf_store_exec_counts(st, counts, jobs[i].id) != 0) {
			cf_log(CF_LOG_WARN, "metrics: cannot count executions", "error=%s", cf_error_last());
			ok = 0;
			break;
		}
		for (s = 0; s < CF_EXEC__COUNT; s++)
			total[s] += counts[s];
	}
	if (ok) {
		head(b, "certfleet_job_executions", "gauge",
		    "Job executions by status (the latest attempt of each thing of each job).");
		for (s = 0; s < CF_EXEC__COUNT; s++)
			evbuffer_add_printf(b, "certfleet_job_executions{status=\"%s\"} %lld\n",
			    cf_proto_status_name((cf_exec_status)s), (long long)total[s]);
	}
	cf_job_recs_free(jobs, n_jobs);
}

/* The registry gauges; a failing store leaves them out (the scrape still answers). */
static void
registry_gauges(cfd *d, struct evbuffer *b)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_thing_rec *things = NULL;
	cf_conn_rec *conns = NULL;
	size_t n_things = 0, n_conns = 0;

	cert_gauges(st, b);
	if (cf_store_thing_list(st, &things, &n_things) == 0) {
		head(b, "certfleet_things", "gauge", "Things in the registry.");
		evbuffer_add_printf(b, "certfleet_things %zu\n", n_things);
	} else {
		cf_log(CF_LOG_WARN, "metrics: cannot count things", "error=%s", cf_error_last());
	}
	if (cf_store_connection_list(st, &conns, &n_conns, NULL, 1, 0) == 0) {
		head(b, "certfleet_connections_open", "gauge",
		    "Broker connections recorded as open (connected and not yet disconnected).");
		evbuffer_add_printf(b, "certfleet_connections_open %zu\n", n_conns);
	} else {
		cf_log(CF_LOG_WARN, "metrics: cannot count connections", "error=%s", cf_error_last());
	}
	audit_gauges(st, b);
	job_gauges(st, b);
	cf_thing_recs_free(things, n_things);
	cf_conn_recs_free(conns, n_conns);
}

/* The issuance latency histogram (seconds). */
static void
issue_histogram(const cfd_metrics *m, struct evbuffer *b)
{
	uint64_t cum = 0;
	size_t i;

	head(b, "certfleet_certificate_issue_duration_seconds", "histogram",
	    "Time to issue a device certificate from a rotation's CSR (cf_ca_issue_parsed).");
	for (i = 0; i < CFD_ISSUE_BUCKETS - 1; i++) {
		cum += m->issue_bucket[i];
		evbuffer_add_printf(b, "certfleet_certificate_issue_duration_seconds_bucket{le=\"%g\"} %ju\n",
		    (double)issue_le_us[i] / 1e6, (uintmax_t)cum);
	}
	cum += m->issue_bucket[CFD_ISSUE_BUCKETS - 1];
	evbuffer_add_printf(b, "certfleet_certificate_issue_duration_seconds_bucket{le=\"+Inf\"} %ju\n",
	    (uintmax_t)cum);
	evbuffer_add_printf(b, "certfleet_certificate_issue_duration_seconds_sum %.6f\n",
	    (double)m->issue_sum_us / 1e6);
	evbuffer_add_printf(b, "certfleet_certificate_issue_duration_seconds_count %ju\n",
	    (uintmax_t)m->issue_count);
}

int
cfd_metrics_render(cfd *d, struct evbuffer *b)
{
	const cfd_metrics *m = &d->metrics;
	size_t i;

	head(b, "certfleet_up", "gauge", "1 while certfleetd runs.");
	evbuffer_add_printf(b, "certfleet_up 1\n");
	head(b, "certfleet_mqtt_connected", "gauge", "1 while connected to the broker.");
	evbuffer_add_printf(b, "certfleet_mqtt_connected %d\n", cfd_mqtt_connected(d) ? 1 : 0);
	counter(b, "certfleet_mqtt_reconnects_total", "Successful reconnections to the broker.",
	    m->mqtt_reconnects);
	counter(b, "certfleet_mqtt_messages_received_total", "MQTT messages received.", m->mqtt_received);
	head(b, "certfleet_mqtt_messages_dropped_total", "counter",
	    "MQTT messages dropped: without a valid broker stamp, or malformed.");
	evbuffer_add_printf(b, "certfleet_mqtt_messages_dropped_total{reason=\"unstamped\"} %ju\n",
	    (uintmax_t)m->dropped_unstamped);
	evbuffer_add_printf(b, "certfleet_mqtt_messages_dropped_total{reason=\"malformed\"} %ju\n",
	    (uintmax_t)m->dropped_malformed);
	head(b, "certfleet_broker_connection_events_total", "counter",
	    "Connection events reported by the broker plugin.");
	evbuffer_add_printf(b, "certfleet_broker_connection_events_total{event=\"connected\"} %ju\n",
	    (uintmax_t)m->conn_connected);
	evbuffer_add_printf(b, "certfleet_broker_connection_events_total{event=\"disconnected\"} %ju\n",
	    (uintmax_t)m->conn_disconnected);
	evbuffer_add_printf(b, "certfleet_broker_connection_events_total{event=\"refused\"} %ju\n",
	    (uintmax_t)m->conn_refused);
	head(b, "certfleet_http_requests_total", "counter", "HTTP API requests by status code.");
	for (i = 0; i < CFD_HTTP_CODES; i++)
		if (m->http_by_code[i] > 0)
			evbuffer_add_printf(b, "certfleet_http_requests_total{code=\"%d\"} %ju\n",
			    http_codes[i], (uintmax_t)m->http_by_code[i]);
	if (m->http_other > 0)
		evbuffer_add_printf(b, "certfleet_http_requests_total{code=\"other\"} %ju\n",
		    (uintmax_t)m->http_other);
	counter(b, "certfleet_audits_total", "Audits certfleetd ran (scheduled and POST /v1/audits).",
	    m->audits_run);
	counter(b, "certfleet_audits_failed_total", "Audits certfleetd started that failed.",
	    m->audits_failed);
	issue_histogram(m, b);
	registry_gauges(d, b);
	return 0;
}
