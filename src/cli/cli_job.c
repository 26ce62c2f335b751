/*
 * CLI verbs of the jobs engine, through certfleetd's HTTP API
 * (docs/certfleetd.md "Jobs and rotation"): `job create-rotation`,
 * `job list`, `job describe`. The daemon owns jobs (it notifies the
 * devices), so these never write the registry themselves. Thing names and
 * status details in answers come from devices: the table output replaces
 * control characters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "cf_proto.h"

#define MAX_THINGS 10000

#define OPT_THING 2100
#define OPT_KEYALG 2101
#define OPT_SIGALG 2102
#define OPT_JOB_ID 2103

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

/* "QUEUED 1 IN_PROGRESS 0 ..." for the non-zero counts (all zero: "-"). */
static void
print_counts(json_t *counts)
{
	const char *key;
	json_t *v;
	int any = 0;

	json_object_foreach(counts, key, v) {
		if (json_integer_value(v) == 0)
			continue;
		printf("%s%s %lld", any ? " " : "", key, (long long)json_integer_value(v));
		any = 1;
	}
	printf("%s\n", any ? "" : "-");
}

int
cli_job_create_rotation(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "thing", required_argument, NULL, OPT_THING },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "signing-algorithm", required_argument, NULL, OPT_SIGALG },
		{ "job-id", required_argument, NULL, OPT_JOB_ID },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_name = "ECDSA-P256", *sig_name = NULL, *job_id = NULL;
	char base[4200];
	json_t *req = NULL, *things = NULL, *ans = NULL;
	cf_key_alg ka;
	cf_sig_alg sa;
	long code = 0;
	int json = 0, ch, r = CLI_FAIL;

	if ((things = json_array()) == NULL)
		return cli_fail("out of memory");
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: r = CLI_OK; goto out;
		case CLI_DONE_USAGE: r = CLI_USAGE; goto out;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_THING:
			if (!cf_name_valid("thing", optarg)) {
				r = cli_usage_error(c);
				goto out;
			}
			if (json_array_size(things) >= MAX_THINGS) {
				r = cli_usage(c, "at most %d things", MAX_THINGS);
				goto out;
			}
			json_array_append_new(things, json_string(optarg));
			break;
		case OPT_KEYALG: key_name = optarg; break;
		case OPT_SIGALG: sig_name = optarg; break;
		case OPT_JOB_ID:
			if (!cf_proto_job_id_valid(optarg)) {
				r = cli_usage_error(c);
				goto out;
			}
			job_id = optarg;
			break;
		default: r = cli_usage(c, "unexpected option"); goto out;
		}
	}
	if (optind < argc) {
		r = cli_usage(c, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (json_array_size(things) == 0) {
		r = cli_usage(c, "give at least one --thing");
		goto out;
	}
	/* Refuse a bad pair here too, with the same message the daemon gives. */
	if (cf_alg_validate(&ka, &sa, key_name, sig_name) != 0) {
		r = cli_usage_error(c);
		goto out;
	}
	req = json_pack("{s:O, s:s}", "things", things, "keyAlgorithm", key_name);
	if (req == NULL || (sig_name && json_object_set_new(req, "signingAlgorithm",
	    json_string(sig_name)) != 0) || (job_id && json_object_set_new(req, "jobId",
	    json_string(job_id)) != 0)) {
		r = cli_fail("out of memory");
		goto out;
	}
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "POST", "/v1/jobs", req, &code, &ans)) != CLI_OK)
		goto out;
	if (code != 201 && code != 200) {
		r = cli_api_fail("job create-rotation", code, ans);
		goto out;
	}
	if (json) {
		r = cli_print_json(json_pack("{s:s}", "jobId", jstr(ans, "jobId", "")));
		goto out;
	}
	printf("%s\n", jstr(ans, "jobId", ""));
	r = CLI_OK;
out:
	json_decref(ans);
	json_decref(req);
	json_decref(things);
	return r;
}

int
cli_job_list(cli *c, int argc, char **argv)
{
	char base[4200];
	json_t *arr = NULL, *o;
	long code = 0;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "GET", "/v1/jobs", NULL, &code, &arr)) != CLI_OK)
		goto out;
	if (code != 200 || !json_is_array(arr)) {
		r = cli_api_fail("job list", code, arr);
		goto out;
	}
	if (json) {
		r = cli_print_json(arr);
		arr = NULL;
		goto out;
	}
	printf("%-32s %-20s %-12s %-21s %s\n", "JOB", "OPERATION", "STATUS", "CREATED", "EXECUTIONS");
	json_array_foreach(arr, i, o) {
		printf("%-32s %-20s %-12s %-21s ", jstr(o, "jobId", "?"), jstr(o, "operation", "?"),
		    jstr(o, "status", "?"), jstr(o, "createdAt", "-"));
		print_counts(json_object_get(o, "counts"));
	}
	r = CLI_OK;
out:
	json_decref(arr);
	return r;
}

int
cli_job_describe(cli *c, int argc, char **argv)
{
	char base[4200], path[256], name[CF_NAME_MAX + 1], reason[256];
	json_t *o = NULL, *e, *doc;
	long code = 0;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind != 1)
		return cli_usage(c, "give one job id");
	if (!cf_proto_job_id_valid(argv[optind]))
		return cli_usage_error(c);
	snprintf(path, sizeof(path), "/v1/jobs/%s", argv[optind]);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "GET", path, NULL, &code, &o)) != CLI_OK)
		goto out;
	if (code != 200 || !json_is_object(o)) {
		r = cli_api_fail("job describe", code, o);
		goto out;
	}
	if (json) {
		r = cli_print_json(o);
		o = NULL;
		goto out;
	}
	doc = json_object_get(o, "document");
	printf("job           %s\n", jstr(o, "jobId", "?"));
	printf("operation     %s\n", jstr(o, "operation", "?"));
	printf("status        %s\n", jstr(o, "status", "?"));
	printf("created       %s\n", jstr(o, "createdAt", "-"));
	printf("algorithms    %s / %s\n", jstr(doc, "keyAlgorithm", "?"),
	    jstr(doc, "signingAlgorithm", "?"));
	printf("executions    ");
	print_counts(json_object_get(o, "counts"));
	printf("\n%-32s %-4s %-12s %-8s %-21s %s\n", "THING", "#", "STATUS", "VERSION", "UPDATED",
	    "REASON");
	json_array_foreach(json_object_get(o, "executions"), i, e) {
		printf("%-32s %-4lld %-12s %-8lld %-21s %s\n",
		    printable(name, sizeof(name), jstr(e, "thing", "?")),
		    (long long)json_integer_value(json_object_get(e, "executionNumber")),
		    jstr(e, "status", "?"),
		    (long long)json_integer_value(json_object_get(e, "versionNumber")),
		    jstr(e, "lastUpdatedAt", "-"),
		    printable(reason, sizeof(reason),
		    jstr(json_object_get(e, "statusDetails"), "reason", "")));
	}
	r = CLI_OK;
out:
	json_decref(o);
	return r;
}
