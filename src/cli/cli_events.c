/*
 * certfleet events ...: the append-only, hash-chained event log.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { OPT_SINCE = 1400, OPT_LIMIT };

int
cli_events_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	cf_event_rec *ev = NULL;
	cf_ca *ca = NULL;
	size_t n = 0, i;
	int64_t since = 0;
	long limit = 0;
	int ch, r, json = 0;
	char t[CLI_TIME_LEN];
	json_t *arr;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_SINCE:
			if (cli_parse_time(&since, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_LIMIT:
			if (cli_parse_int(&limit, optarg, 1, 100000000) != 0)
				return cli_usage_error(c);
			break;
		case CLI_OPT_JSON: json = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_event_list(cf_ca_store(ca), &ev, &n, since, (size_t)limit) != 0) {
		r = cli_fail("events list");
		goto out;
	}
	if (json) {
		arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, cf_json_event(&ev[i]));
		r = cli_print_json(arr);
		goto out;
	}
	for (i = 0; i < n; i++)
		printf("%6lld %s %-18s %.40s %s\n", (long long)ev[i].seq, cli_time(t, ev[i].ts),
		    ev[i].type, ev[i].subject, ev[i].detail ? ev[i].detail : "{}");
out:
	cf_event_recs_free(ev, n);
	cf_ca_close(ca);
	return r;
}

int
cli_events_verify(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	int64_t count = 0, first_bad = 0;
	char head[CF_ID_LEN + 1] = "";
	int r;

	if ((r = cli_plain_opts(c, argc, argv, NULL)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	r = cf_store_event_verify(cf_ca_store(ca), &count, &first_bad, head);
	if (r == CF_ECORRUPT) {
		fprintf(stderr, "certfleet: event log broken at event #%lld: %s\n",
		    (long long)first_bad, cf_error_last());
		r = CLI_FAIL;
	} else if (r != 0) {
		r = cli_fail("events verify");
	} else {
		printf("event log intact: %lld events, head %s\n", (long long)count, head);
		r = CLI_OK;
	}
	cf_ca_close(ca);
	return r;
}
