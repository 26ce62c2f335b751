/*
 * CLI verbs of notifications, through certfleetd's HTTP API
 * (docs/notifications.md): `notify test` queues a test notification for
 * every configured sink, `notify list` shows the outbox. The daemon owns
 * the outbox and its delivery thread, so these never write the registry.
 * Error texts in the outbox come from receivers and hooks: the table output
 * replaces control characters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define OPT_STATE 2200
#define OPT_LIMIT 2201

static const char *
jstr(json_t *o, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : def;
}

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

int
cli_notify_test(cli *c, int argc, char **argv)
{
	char base[4200];
	json_t *req = NULL, *ans = NULL, *v;
	long code = 0;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	/* An empty object rather than no body: a POST always says how long its body is. */
	if ((req = json_object()) == NULL)
		return cli_fail("out of memory");
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "POST", "/v1/notifications/test", req, &code, &ans)) != CLI_OK)
		goto out;
	if (code != 202 || !json_is_object(ans)) {
		r = cli_api_fail("notify test", code, ans);
		goto out;
	}
	if (json) {
		r = cli_print_json(ans);
		ans = NULL;
		goto out;
	}
	printf("queued %s:", jstr(ans, "kind", "notification.test"));
	json_array_foreach(json_object_get(ans, "ids"), i, v)
		printf(" %lld", (long long)json_integer_value(v));
	printf("\n");
	r = CLI_OK;
out:
	json_decref(ans);
	json_decref(req);
	return r;
}

int
cli_notify_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ NULL, 0, NULL, 0 },
	};
	const char *state = NULL;
	char base[4200], path[128], err[80];
	json_t *arr = NULL, *o;
	long code = 0, limit = 100;
	size_t i;
	int json = 0, ch, r = CLI_FAIL;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_STATE:
			if (strcmp(optarg, "PENDING") != 0 && strcmp(optarg, "DELIVERED") != 0 &&
			    strcmp(optarg, "GAVE_UP") != 0)
				return cli_usage(c, "--state must be PENDING, DELIVERED or GAVE_UP");
			state = optarg;
			break;
		case OPT_LIMIT:
			if (cli_parse_int(&limit, optarg, 1, 10000) != 0)
				return cli_usage_error(c);
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	snprintf(path, sizeof(path), "/v1/notifications?limit=%ld%s%s", limit,
	    state ? "&state=" : "", state ? state : "");
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "GET", path, NULL, &code, &arr)) != CLI_OK)
		goto out;
	if (code != 200 || !json_is_array(arr)) {
		r = cli_api_fail("notify list", code, arr);
		goto out;
	}
	if (json) {
		r = cli_print_json(arr);
		arr = NULL;
		goto out;
	}
	printf("%-8s %-8s %-28s %-10s %-8s %-21s %s\n", "ID", "SINK", "KIND", "STATE", "ATTEMPTS",
	    "UPDATED", "LAST ERROR");
	json_array_foreach(arr, i, o) {
		printf("%-8lld %-8s %-28s %-10s %-8lld %-21s %s\n",
		    (long long)json_integer_value(json_object_get(o, "id")), jstr(o, "sink", "?"),
		    jstr(o, "kind", "?"), jstr(o, "state", "?"),
		    (long long)json_integer_value(json_object_get(o, "attempts")),
		    jstr(o, "updatedAt", "-"),
		    printable(err, sizeof(err), jstr(o, "lastError", "")));
	}
	r = CLI_OK;
out:
	json_decref(arr);
	return r;
}
