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

#include <event2/buffer.h>

#include "certfleetd.h"

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

/* The registry gauges; a failing store leaves them out (the scrape still answers). */
static void
registry_gauges(cfd *d, struct evbuffer *b)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_cert_rec *certs = NULL;
	cf_thing_rec *things = NULL;
	cf_conn_rec *conns = NULL;
	size_t n_certs = 0, n_things = 0, n_conns = 0, i;
	uint64_t by_status[CF_CERT__STATUS_COUNT] = { 0 };

	if (cf_store_cert_list(st, &certs, &n_certs, NULL) == 0) {
		for (i = 0; i < n_certs; i++)
			if ((unsigned)certs[i].status < CF_CERT__STATUS_COUNT)
				by_status[certs[i].status]++;
		head(b, "certfleet_certificates", "gauge", "Device certificates in the registry by status.");
		for (i = 0; i < CF_CERT__STATUS_COUNT; i++)
			evbuffer_add_printf(b, "certfleet_certificates{status=\"%s\"} %ju\n",
			    cf_cert_status_name((cf_cert_status)i), (uintmax_t)by_status[i]);
	} else {
		cf_log(CF_LOG_WARN, "metrics: cannot count certificates", "error=%s", cf_error_last());
	}
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
	cf_cert_recs_free(certs, n_certs);
	cf_thing_recs_free(things, n_things);
	cf_conn_recs_free(conns, n_conns);
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
	registry_gauges(d, b);
	return 0;
}
