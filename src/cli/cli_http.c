/*
 * The CLI's HTTP client for certfleetd's API (docs/certfleetd.md): the
 * API's address from certfleet.conf (api_host, api_port) and one request
 * helper on libcurl, shared by `status`, `connections list` and `job ...`.
 *
 * Short timeouts, never a proxy, http only; a daemon that does not answer
 * is one clear error and exit 1. Answers are parsed as JSON (a body that is
 * not JSON, like /metrics, comes back as a JSON string).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "cf_config.h"

#define BODY_MAX (64 * 1024 * 1024)

typedef struct {
	char *data;
	size_t len;
	int too_big;
} body;

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	body *b = arg;
	size_t k = size * n;
	char *grown;

	if (b->len + k > BODY_MAX) {
		b->too_big = 1;
		return 0;
	}
	if ((grown = realloc(b->data, b->len + k + 1)) == NULL)
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, p, k);
	b->len += k;
	b->data[b->len] = '\0';
	return k;
}

int
cli_api_url(cli *c, char *out, size_t len)
{
	cf_config *cfg = NULL;
	char path[4096];
	long port;
	int r = CLI_FAIL;

	if (cf_strfmt(path, sizeof(path), "%s/certfleet.conf", c->dir) != 0 ||
	    cf_config_load(&cfg, path) != 0) {
		r = cli_fail("cannot read the configuration");
		goto out;
	}
	if (cf_config_get_int(&port, cfg, "api_port", 1, 65535, 8884) != 0 ||
	    cf_strfmt(out, len, "http://%s:%ld", cf_config_get_str(cfg, "api_host", "127.0.0.1"),
	    port) != 0) {
		r = cli_fail("bad configuration");
		goto out;
	}
	r = CLI_OK;
out:
	cf_config_free(cfg);
	return r;
}

int
cli_http(const char *base, const char *method, const char *path, json_t *req_body, long *code,
    json_t **out)
{
	CURL *h = NULL;
	CURLcode cr;
	struct curl_slist *hdrs = NULL;
	body b = { NULL, 0, 0 };
	char url[8192], *sent = NULL;
	json_error_t err;
	int r = CLI_FAIL;

	*out = NULL;
	if (snprintf(url, sizeof(url), "%s%s", base, path) >= (int)sizeof(url)) {
		fprintf(stderr, "certfleet: request URL too long\n");
		goto out;
	}
	if ((h = curl_easy_init()) == NULL) {
		fprintf(stderr, "certfleet: cannot initialise libcurl\n");
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (req_body != NULL) {
		if ((sent = json_dumps(req_body, JSON_COMPACT)) == NULL ||
		    (hdrs = curl_slist_append(NULL, "Content-Type: application/json")) == NULL) {
			fprintf(stderr, "certfleet: out of memory\n");
			goto out;
		}
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, sent);
	}
	if ((cr = curl_easy_perform(h)) != CURLE_OK) {
		if (b.too_big)
			fprintf(stderr, "certfleet: the answer from %s is larger than %d bytes\n", base,
			    BODY_MAX);
		else
			fprintf(stderr, "certfleet: certfleetd is not running at %s: %s\n", base,
			    curl_easy_strerror(cr));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
	if (b.data != NULL && (*out = json_loads(b.data, 0, &err)) == NULL) {
		/* /metrics is text: hand it back as a JSON string. */
		*out = json_string(b.data);
	}
	r = CLI_OK;
out:
	free(b.data);
	free(sent);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return r;
}

int
cli_api_fail(const char *what, long code, json_t *j)
{
	const char *msg = json_string_value(json_object_get(j, "error"));

	if (msg != NULL)
		fprintf(stderr, "certfleet: %s: %s (HTTP %ld)\n", what, msg, code);
	else
		fprintf(stderr, "certfleet: %s: HTTP %ld\n", what, code);
	return CLI_FAIL;
}
