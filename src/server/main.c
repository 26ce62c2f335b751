/*
 * certfleetd — the backend daemon (docs/certfleetd.md, docs/broker.md).
 *
 * Owns the process: arguments, certfleet.conf, the log, signals and the one
 * libevent reactor that runs the MQTT client (mqtt.c), the HTTP API
 * (api.c) and timers, Redis-style. Everything the daemon knows durably is
 * in the registry, so it can be killed and restarted at any point.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <mosquitto.h>

#include "certfleetd.h"
#include "cf_config.h"
#include "cf_util.h"

#define CONF_FILE "certfleet.conf"

static void
usage(FILE *f)
{
	fprintf(f, "usage: certfleetd --dir DIR [--log-level debug|info|warn|error] [--log-file FILE]\n"
	    "\nRuns the certfleet backend in the foreground: the MQTT service client, the HTTP API\n"
	    "on api_host:api_port and /metrics. SIGTERM/SIGINT stop it, SIGHUP re-reads log_level\n"
	    "and reopens the log file. See docs/certfleetd.md.\n");
}

/* A path from certfleet.conf (key, or def when absent): relative paths are relative to DIR. */
static int
conf_path(char *out, size_t len, const cfd *d, const char *key, const char *def)
{
	const cf_config *cfg = cf_ca_config(d->ca);
	const char *v = cf_config_get_str(cfg, key, def);

	if (*v == '\0') {
		cf_error_set("%s: %s is empty", cf_config_path(cfg), key);
		return CF_EINVAL;
	}
	if (v[0] == '/')
		return cf_strfmt(out, len, "%s", v);
	return cf_strfmt(out, len, "%s/%s", d->dir, v);
}

static int
conf_str(char *out, size_t len, const cfd *d, const char *key, const char *def)
{
	const cf_config *cfg = cf_ca_config(d->ca);
	const char *v = cf_config_get_str(cfg, key, def);

	if (strlen(v) >= len) {
		cf_error_set("%s: %s is longer than %zu characters", cf_config_path(cfg), key, len - 1);
		return CF_EINVAL;
	}
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

/*
 * The API has no authentication yet (it will get TLS and client
 * certificates with bufferevent_openssl): only a loopback address may be
 * bound, so only local users reach it.
 */
static int
check_loopback(const char *cfg_path, const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return 0;
	if (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127)
		return 0;
	if (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6))
		return 0;
	cf_error_set("%s: api_host '%s' is not a loopback address (the API has no authentication "
	    "yet; use 127.0.0.1)", cfg_path, host);
	return CF_EINVAL;
}

/* A topic prefix is literal topic levels ending in '/': no wildcards, not under '$'. */
static int
check_prefix(const char *cfg_path, const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || p[n - 1] != '/' || p[0] == '$' || p[0] == '/' || strpbrk(p, "+#") != NULL ||
	    strstr(p, "//") != NULL) {
		cf_error_set("%s: topic_prefix '%s' must be topic levels ending in '/' (like cf/), "
		    "without wildcards or a leading '$'", cfg_path, p);
		return CF_EINVAL;
	}
	return 0;
}

static int
readable(const char *what, const char *path)
{
	if (access(path, R_OK) != 0) {
		cf_error_set("%s %s: %s (certfleet init creates it)", what, path, strerror(errno));
		return CF_ENOTFOUND;
	}
	return 0;
}

/* The log level: --log-level wins, then certfleet.conf's log_level, then info. */
static int
apply_log_level(const cfd *d, const cf_config *cfg)
{
	cf_log_level l;
	int r;

	if (d->log_level_forced)
		return 0;
	if ((r = cf_log_level_parse(&l, cf_config_get_str(cfg, "log_level", "info"))) != 0) {
		cf_error_prefix("%s: log_level", cf_config_path(cfg));
		return r;
	}
	cf_log_set_level(l);
	return 0;
}

static int
load_settings(cfd *d)
{
	const cf_config *cfg = cf_ca_config(d->ca);
	int r;

	if ((r = apply_log_level(d, cfg)) != 0 ||
	    (r = conf_str(d->mqtt_host, sizeof(d->mqtt_host), d, "mqtt_host", "127.0.0.1")) != 0 ||
	    (r = cf_config_get_int(&d->mqtt_port, cfg, "mqtt_port", 1, 65535, 8883)) != 0 ||
	    (r = conf_str(d->api_host, sizeof(d->api_host), d, "api_host", "127.0.0.1")) != 0 ||
	    (r = cf_config_get_int(&d->api_port, cfg, "api_port", 1, 65535, 8884)) != 0 ||
	    (r = conf_str(d->topic_prefix, sizeof(d->topic_prefix), d, "topic_prefix", "cf/")) != 0 ||
	    (r = check_loopback(cf_config_path(cfg), d->api_host)) != 0 ||
	    (r = check_prefix(cf_config_path(cfg), d->topic_prefix)) != 0)
		return r;
	if ((r = conf_path(d->service_cert, sizeof(d->service_cert), d, "service_cert",
	    "service/certfleetd.crt")) != 0 ||
	    (r = conf_path(d->service_key, sizeof(d->service_key), d, "service_key",
	    "service/certfleetd.key")) != 0 ||
	    (r = conf_path(d->broker_cafile, sizeof(d->broker_cafile), d, "broker_cafile",
	    "ca-chain.crt")) != 0 ||
	    (r = conf_path(d->stamp_key_file, sizeof(d->stamp_key_file), d, "stamp_key_file",
	    "private/stamp.key")) != 0)
		return r;
	if ((r = readable("service certificate", d->service_cert)) != 0 ||
	    (r = readable("service key", d->service_key)) != 0 ||
	    (r = readable("broker CA file", d->broker_cafile)) != 0)
		return r;
	if ((r = cf_stamp_key_load(&d->stamp_key, d->stamp_key_file)) != 0) {
		cf_error_prefix("stamp key");
		return r;
	}
	return 0;
}

/* ---- signals ---------------------------------------------------------------- */

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	cfd *d = arg;

	(void)what;
	if (d->stopping)
		return;
	d->stopping = 1;
	cf_log(CF_LOG_INFO, "stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	cfd_mqtt_stop(d);
	event_base_loopbreak(d->base);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	cfd *d = arg;
	cf_config *cfg = NULL;
	char path[PATH_MAX];

	(void)sig;
	(void)what;
	if (d->log_file != NULL && cf_log_open(d->log_file) != 0)
		cf_log(CF_LOG_ERROR, "cannot reopen the log file", "error=%s", cf_error_last());
	if (cf_strfmt(path, sizeof(path), "%s/%s", d->dir, CONF_FILE) != 0 ||
	    cf_config_load(&cfg, path) != 0 || apply_log_level(d, cfg) != 0) {
		cf_log(CF_LOG_ERROR, "reload failed, keeping the current settings", "error=%s",
		    cf_error_last());
		goto out;
	}
	cf_log(CF_LOG_INFO, "reloaded", "log_level=%s log_file=%s",
	    cf_log_level_name(cf_log_get_level()), d->log_file ? d->log_file : "stderr");
out:
	cf_config_free(cfg);
}

/* ---- main --------------------------------------------------------------------- */

static void
fail(const cfd *d, const char *what)
{
	fprintf(stderr, "certfleetd: %s: %s\n", what, cf_error_last());
	if (d->log_file != NULL)
		cf_log(CF_LOG_ERROR, what, "error=%s", cf_error_last());
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cfd d;
	struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL;
	cf_log_level level;
	int ch, r = 1;

	memset(&d, 0, sizeof(d));
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': d.dir = optarg; break;
		case 'f': d.log_file = optarg; break;
		case 'l':
			if (cf_log_level_parse(&level, optarg) != 0) {
				fprintf(stderr, "certfleetd: %s\n", cf_error_last());
				return 2;
			}
			cf_log_set_level(level);
			d.log_level_forced = 1;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("certfleetd 0.1.0\n"); return 0;
		default:
			fprintf(stderr, "certfleetd: unknown or incomplete option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (d.dir == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* A peer closing a socket must not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	if (d.log_file != NULL && cf_log_open(d.log_file) != 0) {
		fprintf(stderr, "certfleetd: %s\n", cf_error_last());
		return 1;
	}
	if (cf_ca_open(&d.ca, d.dir) != 0) {
		fail(&d, "cannot open the data directory");
		goto out;
	}
	if (load_settings(&d) != 0) {
		fail(&d, "bad configuration");
		goto out;
	}
	/* The online signer: a root key or a wrong passphrase stops the daemon here, not later. */
	if (cf_ca_load_issuer(d.ca) != 0) {
		fail(&d, "cannot load the issuing CA's key");
		goto out;
	}
	if (cfd_notify_start(&d) != 0) {
		fail(&d, "cannot start notifications");
		goto out;
	}
	mosquitto_lib_init();
	if ((d.base = event_base_new()) == NULL) {
		cf_error_set("event_base_new failed");
		fail(&d, "cannot start the reactor");
		goto out;
	}
	if ((ev_term = evsignal_new(d.base, SIGTERM, on_stop, &d)) == NULL ||
	    (ev_int = evsignal_new(d.base, SIGINT, on_stop, &d)) == NULL ||
	    (ev_hup = evsignal_new(d.base, SIGHUP, on_hup, &d)) == NULL ||
	    event_add(ev_term, NULL) != 0 || event_add(ev_int, NULL) != 0 ||
	    event_add(ev_hup, NULL) != 0) {
		cf_error_set("cannot install signal handlers");
		fail(&d, "cannot start the reactor");
		goto out;
	}
	if (cfd_api_start(&d) != 0) {
		fail(&d, "cannot start the HTTP API");
		goto out;
	}
	if (cfd_mqtt_start(&d) != 0) {
		fail(&d, "cannot start the MQTT client");
		goto out;
	}
	if (cfd_engine_start(&d) != 0) {
		fail(&d, "cannot start the jobs engine");
		goto out;
	}
	if (cfd_audit_start(&d) != 0) {
		fail(&d, "bad audit settings");
		goto out;
	}
	if (cfd_prov_start(&d) != 0) {
		fail(&d, "cannot start provisioning");
		goto out;
	}
	cf_log(CF_LOG_INFO, "certfleetd started", "dir=%s pid=%ld api=%s:%ld mqtt=%s:%ld log_level=%s",
	    d.dir, (long)getpid(), d.api_host, d.api_port, d.mqtt_host, d.mqtt_port,
	    cf_log_level_name(cf_log_get_level()));
	if (event_base_dispatch(d.base) < 0) {
		cf_error_set("event_base_dispatch failed");
		fail(&d, "reactor");
		goto out;
	}
	r = 0;
	cf_log_msg(CF_LOG_INFO, "certfleetd stopped");
out:
	cfd_prov_stop(&d);
	cfd_audit_stop(&d);
	cfd_engine_stop(&d);
	cfd_mqtt_stop(&d);
	cfd_api_stop(&d);
	cfd_notify_stop(&d);
	if (ev_term)
		event_free(ev_term);
	if (ev_int)
		event_free(ev_int);
	if (ev_hup)
		event_free(ev_hup);
	if (d.base)
		event_base_free(d.base);
	cf_ca_close(d.ca);
	cf_stamp_key_wipe(&d.stamp_key);
	mosquitto_lib_cleanup();
	cf_log_close();
	return r;
}
