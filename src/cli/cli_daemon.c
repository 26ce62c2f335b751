/*
 * CLI verbs that ask the running certfleetd over its HTTP API:
 * `status` and `connections list` (docs/broker.md, docs/certfleetd.md).
 *
 * The API's address comes from certfleet.conf (api_host, api_port). The
 * requests go through libcurl with short timeouts and never through a
 * proxy; a daemon that does not answer is one clear error and exit 1.
 * The HTTP helper is cli_http.c. Client ids in the answers are untrusted: the table output replaces
 * control characters so a hostile id cannot drive the terminal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"

/* A string member of o, or def. */
static const char *
jstr(json_t *o, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : def;
}

/* A value of one sample in Prometheus text ("name{labels} value"); -1 if absent. */
static long long
metric(const char *text, const char *sample)
{
	const char *p = text;
	size_t n = strlen(sample);

	while (p != NULL && *p) {
		if (strncmp(p, sample, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

int
cli_status(cli *c, int argc, char **argv)
{
	char base[4200], sample[128];
	json_t *health = NULL, *metrics = NULL, *out = NULL, *certs;
	long code = 0, mcode = 0;
	const char *text;
	long long v;
	int json = 0, r, i;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK)
		return r;
	if ((r = cli_http(base, "GET", "/healthz", NULL, &code, &health)) != CLI_OK)
		goto out;
	if (code != 200 && code != 503) {
		r = cli_api_fail("status", code, health);
		goto out;
	}
	if ((r = cli_http(base, "GET", "/metrics", NULL, &mcode, &metrics)) != CLI_OK)
		goto out;
	text = mcode == 200 ? json_string_value(metrics) : NULL;
	if (text == NULL)
		text = "";
	out = json_object();
	json_object_set_new(out, "url", json_string(base));
	json_object_set(out, "health", health);
	certs = json_object();
	for (i = 0; i < CF_CERT__STATUS_COUNT; i++) {
		snprintf(sample, sizeof(sample), "certfleet_certificates{status=\"%s\"}",
		    cf_cert_status_name((cf_cert_status)i));
		if ((v = metric(text, sample)) >= 0)
			json_object_set_new(certs, cf_cert_status_name((cf_cert_status)i), json_integer(v));
	}
	json_object_set_new(out, "certificates", certs);
	if ((v = metric(text, "certfleet_things")) >= 0)
		json_object_set_new(out, "things", json_integer(v));
	if ((v = metric(text, "certfleet_connections_open")) >= 0)
		json_object_set_new(out, "connectionsOpen", json_integer(v));
	if (json) {
		r = cli_print_json(out);
		out = NULL;
	} else {
		const char *key;
		json_t *val;

		printf("certfleetd    running at %s\n", base);
		printf("status        %s\n", jstr(health, "status", "?"));
		printf("mqtt          %s\n", jstr(health, "mqtt", "?"));
		printf("database      %s\n", jstr(health, "database", "?"));
		if (json_object_get(out, "things"))
			printf("things        %lld\n", (long long)json_integer_value(json_object_get(out, "things")));
		printf("certificates ");
		json_object_foreach(certs, key, val)
			printf(" %s %lld", key, (long long)json_integer_value(val));
		printf("\n");
		if (json_object_get(out, "connectionsOpen"))
			printf("connections   %lld open\n",
			    (long long)json_integer_value(json_object_get(out, "connectionsOpen")));
		r = CLI_OK;
	}
	if (code != 200) {
		fprintf(stderr, "certfleet: certfleetd at %s is unhealthy: %s\n", base,
		    jstr(health, "error", "database error"));
		r = CLI_FAIL;
	}
out:
	json_decref(out);
	json_decref(health);
	json_decref(metrics);
	return r;
}

/* Printable on a terminal: control characters and DEL become '?'. */
static const char *
printable(char *buf, size_t len, const char *s)
{
	size_t i;

	snprintf(buf, len, "%s", s ? s : "");
	for (i = 0; buf[i]; i++)
		if ((unsigned char)buf[i] < ' ' || (unsigned char)buf[i] == 0x7f)
			buf[i] = '?';
	return buf;
}

#define OPT_CLIENT_ID 2000
#define OPT_OPEN 2001

int
cli_connections_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "client-id", required_argument, NULL, OPT_CLIENT_ID },
		{ "open", no_argument, NULL, OPT_OPEN },
		{ NULL, 0, NULL, 0 },
	};
	const char *client_id = NULL;
	char base[4200], path[1024], cid[256], peer[64], reason[64];
	char *esc = NULL;
	json_t *arr = NULL, *o;
	long code = 0;
	size_t i;
	int json = 0, open_only = 0, ch, r;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_OPEN: open_only = 1; break;
		case OPT_CLIENT_ID:
			client_id = optarg;
			if (*client_id == '\0' || strlen(client_id) > 255)
				return cli_usage(c, "--client-id must be 1 to 255 bytes");
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK)
		return r;
	if (client_id != NULL && (esc = curl_easy_escape(NULL, client_id, 0)) == NULL) {
		fprintf(stderr, "certfleet: out of memory\n");
		return CLI_FAIL;
	}
	snprintf(path, sizeof(path), "/v1/connections%s%s%s%s", esc || open_only ? "?" : "",
	    esc ? "clientId=" : "", esc ? esc : "", open_only ? (esc ? "&open=1" : "open=1") : "");
	if ((r = cli_http(base, "GET", path, NULL, &code, &arr)) != CLI_OK)
		goto out;
	if (code != 200 || !json_is_array(arr)) {
		r = cli_api_fail("connections list", code, arr);
		goto out;
	}
	if (json) {
		r = cli_print_json(arr);
		arr = NULL;
		goto out;
	}
	printf("%-6s %-24s %-8s %-22s %-21s %-21s %s\n", "ID", "CLIENT ID", "KIND", "PEER",
	    "CONNECTED", "DISCONNECTED", "REASON");
	json_array_foreach(arr, i, o) {
		printf("%-6lld %-24s %-8s %-22s %-21s %-21s %s\n",
		    (long long)json_integer_value(json_object_get(o, "id")),
		    printable(cid, sizeof(cid), json_string_value(json_object_get(o, "clientId"))),
		    jstr(o, "kind", "-"),
		    printable(peer, sizeof(peer), json_string_value(json_object_get(o, "peer"))),
		    jstr(o, "connectedAt", "-"),
		    jstr(o, "disconnectedAt", "open"),
		    printable(reason, sizeof(reason), json_string_value(json_object_get(o, "reason"))));
	}
	r = CLI_OK;
out:
	curl_free(esc);
	json_decref(arr);
	return r;
}
