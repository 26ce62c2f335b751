/*
 * certfleet audit ... and certfleet mitigate: the registry audit (cf_audit)
 * and mitigation actions on its findings (cf_mitigate), docs/audit.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cf_audit.h"
#include "cf_config.h"
#include "cf_mitigate.h"

enum {
	OPT_CHECKS = 1600, OPT_PARAM, OPT_AUDIT, OPT_SEVERITY, OPT_CHECK, OPT_RESOURCE, OPT_UNTIL,
	OPT_FOREVER, OPT_COMMENT, OPT_FORMAT, OPT_OUT, OPT_FINDING, OPT_ACTION, OPT_DAEMON,
	OPT_NO_MITIGATE
};

static int
parse_id(int64_t *out, const char *s)
{
	long v;

	if (cli_parse_int(&v, s, 1, 0x7fffffffL) != 0)
		return -1;
	*out = v;
	return 0;
}

static json_t *
finding_json(const cf_finding_rec *f)
{
	return json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "id", (json_int_t)f->id,
	    "audit_id", (json_int_t)f->audit_id, "check", f->check, "severity",
	    cf_severity_name(f->severity), "resource_type", f->resource_type, "resource_id",
	    f->resource_id, "reason_code", f->reason_code, "detail", f->detail, "suppressed",
	    f->suppressed);
}

static json_t *
audit_json(const cf_audit_rec *a)
{
	return json_pack("{s:I,s:I,s:I,s:s,s:o,s:o}", "id", (json_int_t)a->id, "started_at",
	    (json_int_t)a->started_at, "finished_at", (json_int_t)a->finished_at, "trigger",
	    a->trigger, "checks", json_loads(a->checks, 0, NULL), "counts",
	    json_loads(a->counts, 0, NULL));
}

/*
 * --daemon: certfleetd runs the audit (POST /v1/audits) and then its
 * mitigation rules (unless mitigate is 0); body holds checks / params.
 */
static int
audit_run_daemon(cli *c, json_t *body, int json)
{
	char base[512];
	json_t *ans = NULL, *acts, *a;
	long code = 0;
	size_t i;
	int r;

	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "POST", "/v1/audits", body, &code, &ans)) != CLI_OK)
		goto out;
	if (code != 201) {
		r = cli_api_fail("audit run", code, ans);
		goto out;
	}
	if (json) {
		r = cli_print_json(ans);
		ans = NULL;
		goto out;
	}
	printf("audit %lld (certfleetd): %lld finding(s), %lld suppressed\n",
	    (long long)json_integer_value(json_object_get(ans, "auditId")),
	    (long long)json_integer_value(json_object_get(ans, "findings")),
	    (long long)json_integer_value(json_object_get(ans, "suppressed")));
	acts = json_object_get(ans, "actions");
	json_array_foreach(acts, i, a)
		printf("  finding %lld: %s: %s: %s\n",
		    (long long)json_integer_value(json_object_get(a, "finding")),
		    json_string_value(json_object_get(a, "action")),
		    json_string_value(json_object_get(a, "status")),
		    json_string_value(json_object_get(a, "detail")));
	r = CLI_OK;
out:
	json_decref(ans);
	return r;
}

int
cli_audit_run(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "checks", required_argument, NULL, OPT_CHECKS },
		{ "param", required_argument, NULL, OPT_PARAM },
		{ "daemon", no_argument, NULL, OPT_DAEMON },
		{ "no-mitigate", no_argument, NULL, OPT_NO_MITIGATE },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	json_t *body = json_object(), *params = json_array();
	int daemon = 0, mitigate = 1;
	cf_audit_opts o;
	cf_audit_result res;
	cf_ca *ca = NULL;
	int ch, r, json = 0, i;
	char path[4096];
	const char *bc;

	cf_audit_opts_init(&o);
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case OPT_CHECKS:
			if (cf_audit_opts_select(&o, optarg) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			json_object_set_new(body, "checks", json_string(optarg));
			break;
		case OPT_PARAM:
			if (cf_audit_opts_param(&o, optarg) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			json_array_append_new(params, json_string(optarg));
			break;
		case OPT_DAEMON: daemon = 1; break;
		case OPT_NO_MITIGATE: mitigate = 0; break;
		case CLI_OPT_JSON: json = 1; break;
		case CLI_DONE_OK: r = CLI_OK; goto out;
		case CLI_DONE_USAGE: r = CLI_USAGE; goto out;
		default: r = cli_usage(c, "unexpected option"); goto out;
		}
	}
	if (optind < argc) {
		r = cli_usage(c, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!daemon && !mitigate) {
		r = cli_usage(c, "--no-mitigate goes with --daemon (a local audit mitigates nothing)");
		goto out;
	}
	if (daemon) {
		if (json_array_size(params) > 0)
			json_object_set(body, "params", params);
		json_object_set_new(body, "mitigate", json_boolean(mitigate));
		r = audit_run_daemon(c, body, json);
		goto out;
	}
	if ((r = cli_open(c, &ca)) != CLI_OK)
		goto out;
	o.keyq = cf_ca_policy(ca);
	o.topic_prefix = cf_config_get_str(cf_ca_config(ca), "topic_prefix", "cf/");
	if ((bc = cf_config_get(cf_ca_config(ca), "broker_config")) != NULL) {
		if (bc[0] == '/')
			o.broker_config = bc;
		else if (cf_strfmt(path, sizeof(path), "%s/%s", cf_ca_dir(ca), bc) == 0)
			o.broker_config = path;
	}
	if (cf_audit_run(cf_ca_store(ca), &res, &o) != 0) {
		r = cli_fail("audit run");
		goto out;
	}
	if (json) {
		json_t *sev = json_object(), *chk = json_object();

		for (i = 0; i < CF_SEV__COUNT; i++)
			json_object_set_new(sev, cf_severity_name((cf_severity)i),
			    json_integer((json_int_t)res.by_severity[i]));
		for (i = 0; i < CF_AUDIT__COUNT; i++)
			if (res.by_check[i])
				json_object_set_new(chk, cf_audit_checks[i].name,
				    json_integer((json_int_t)res.by_check[i]));
		r = cli_print_json(json_pack("{s:I,s:I,s:I,s:o,s:o,s:I}", "audit_id",
		    (json_int_t)res.audit_id, "findings", (json_int_t)res.findings, "suppressed",
		    (json_int_t)res.suppressed, "by_severity", sev, "by_check", chk, "certificates",
		    (json_int_t)res.cert_rows));
		goto out;
	}
	printf("audit %lld: %zu finding(s), %zu suppressed; %zu certificate(s) checked\n",
	    (long long)res.audit_id, res.findings, res.suppressed, res.cert_rows);
	for (i = CF_SEV__COUNT - 1; i >= 0; i--)
		printf("  %-9s %zu\n", cf_severity_name((cf_severity)i), res.by_severity[i]);
	r = CLI_OK;
out:
	json_decref(body);
	json_decref(params);
	cf_ca_close(ca);
	return r;
}

int
cli_audit_list(cli *c, int argc, char **argv)
{
	cf_audit_rec *v = NULL;
	cf_ca *ca = NULL;
	size_t n = 0, i;
	int r, json = 0;
	char t[CLI_TIME_LEN];
	json_t *arr;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_audit_list(cf_ca_store(ca), &v, &n, 0) != 0) {
		r = cli_fail("audit list");
		goto out;
	}
	if (json) {
		arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, audit_json(&v[i]));
		r = cli_print_json(arr);
		goto out;
	}
	printf("%-6s %-10s %-22s %s\n", "ID", "TRIGGER", "STARTED", "COUNTS");
	for (i = 0; i < n; i++)
		printf("%-6lld %-10s %-22s %s\n", (long long)v[i].id, v[i].trigger,
		    cli_time(t, v[i].started_at), v[i].finished_at ? v[i].counts : "(unfinished)");
	r = CLI_OK;
out:
	cf_audit_recs_free(v, n);
	cf_ca_close(ca);
	return r;
}

/* The findings of --audit ID, or of the latest finished audit. */
static int
load_findings(cf_store *st, cf_audit_rec *a, cf_finding_rec **v, size_t *n, cf_finding_filter *f,
    const char *what)
{
	if (cf_store_audit_get(st, a, f->audit_id) != 0)
		return cli_fail(what);
	f->audit_id = a->id;
	if (cf_store_finding_list(st, v, n, f) != 0)
		return cli_fail(what);
	return CLI_OK;
}

int
cli_audit_findings(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "audit", required_argument, NULL, OPT_AUDIT },
		{ "severity", required_argument, NULL, OPT_SEVERITY },
		{ "check", required_argument, NULL, OPT_CHECK },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	cf_finding_filter f = { .severity = -1 };
	cf_finding_rec *v = NULL;
	cf_audit_rec a;
	cf_severity sev;
	cf_ca *ca = NULL;
	size_t n = 0, i;
	int ch, r, json = 0;
	json_t *arr;

	memset(&a, 0, sizeof(a));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_AUDIT:
			if (parse_id(&f.audit_id, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_SEVERITY:
			if (cf_severity_parse(&sev, optarg) != 0)
				return cli_usage_error(c);
			f.severity = (int)sev;
			break;
		case OPT_CHECK:
			if (cf_audit_check_find(optarg) < 0)
				return cli_usage(c, "unknown check '%s'", optarg);
			f.check = optarg;
			break;
		case CLI_OPT_JSON: json = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if ((r = load_findings(cf_ca_store(ca), &a, &v, &n, &f, "audit findings")) != CLI_OK)
		goto out;
	if (json) {
		arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, finding_json(&v[i]));
		r = cli_print_json(arr);
		goto out;
	}
	printf("%-6s %-8s %-44s %-34s %s\n", "ID", "SEVERITY", "CHECK", "REASON", "RESOURCE");
	for (i = 0; i < n; i++)
		printf("%-6lld %-8s %-44s %-34s %s%s\n", (long long)v[i].id,
		    cf_severity_name(v[i].severity), v[i].check, v[i].reason_code, v[i].resource_id,
		    v[i].suppressed ? " (suppressed)" : "");
	r = CLI_OK;
out:
	free(v);
	cf_audit_rec_clear(&a);
	cf_ca_close(ca);
	return r;
}

static int
suppress_common(cli *c, int argc, char **argv, int remove)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "check", required_argument, NULL, OPT_CHECK },
		{ "resource", required_argument, NULL, OPT_RESOURCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "forever", no_argument, NULL, OPT_FOREVER },
		{ "comment", required_argument, NULL, OPT_COMMENT },
		{ NULL, 0, NULL, 0 },
	};
	cf_suppression_rec s;
	const char *check = NULL, *res = NULL, *comment = "";
	int ch, r, forever = 0, until_set = 0;
	cf_ca *ca = NULL;

	memset(&s, 0, sizeof(s));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_CHECK:
			if (cf_audit_check_find(optarg) < 0)
				return cli_usage(c, "unknown check '%s'", optarg);
			check = optarg;
			break;
		case OPT_RESOURCE: res = optarg; break;
		case OPT_UNTIL:
			if (remove)
				return cli_usage(c, "--until is for audit suppress");
			if (cli_parse_time(&s.until, optarg) != 0)
				return cli_usage_error(c);
			if (s.until <= cf_time_now())
				return cli_usage(c, "--until %s is not in the future", optarg);
			until_set = 1;
			break;
		case OPT_FOREVER:
			if (remove)
				return cli_usage(c, "--forever is for audit suppress");
			forever = 1;
			break;
		case OPT_COMMENT:
			if (remove)
				return cli_usage(c, "--comment is for audit suppress");
			comment = optarg;
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (check == NULL || res == NULL)
		return cli_usage(c, "give --check and --resource");
	if (forever && until_set)
		return cli_usage(c, "give --until or --forever, not both");
	if (strlen(res) > CF_AUDIT_RESOURCE_MAX || res[0] == '\0')
		return cli_usage(c, "--resource must be 1 to %d characters", CF_AUDIT_RESOURCE_MAX);
	if (strlen(comment) > CF_AUDIT_COMMENT_MAX)
		return cli_usage(c, "--comment is longer than %d characters", CF_AUDIT_COMMENT_MAX);
	snprintf(s.check, sizeof(s.check), "%s", check);
	memcpy(s.resource_id, res, strlen(res) + 1);
	memcpy(s.comment, comment, strlen(comment) + 1);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (remove ? cf_store_suppression_remove(cf_ca_store(ca), s.check, s.resource_id) != 0 :
	    cf_store_suppression_set(cf_ca_store(ca), &s) != 0)
		r = cli_fail(remove ? "audit unsuppress" : "audit suppress");
	cf_ca_close(ca);
	return r;
}

int
cli_audit_suppress(cli *c, int argc, char **argv)
{
	return suppress_common(c, argc, argv, 0);
}

int
cli_audit_unsuppress(cli *c, int argc, char **argv)
{
	return suppress_common(c, argc, argv, 1);
}

int
cli_audit_export(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "audit", required_argument, NULL, OPT_AUDIT },
		{ "out", required_argument, NULL, OPT_OUT },
		{ NULL, 0, NULL, 0 },
	};
	cf_finding_filter f = { .severity = -1 };
	cf_finding_rec *v = NULL;
	cf_audit_rec a;
	cf_audit_format fmt = CF_AUDIT_EXPORT_JSON;
	cf_ca *ca = NULL;
	size_t n = 0;
	int ch, r, fmt_set = 0;
	const char *out_path = NULL;
	char tmp[4096];
	FILE *fp = NULL;

	memset(&a, 0, sizeof(a));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_FORMAT:
			if (cf_audit_format_parse(&fmt, optarg) != 0)
				return cli_usage_error(c);
			fmt_set = 1;
			break;
		case OPT_AUDIT:
			if (parse_id(&f.audit_id, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_OUT: out_path = optarg; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (!fmt_set)
		return cli_usage(c, "give --format json, csv or html");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if ((r = load_findings(cf_ca_store(ca), &a, &v, &n, &f, "audit export")) != CLI_OK)
		goto out;
	/* A temporary file renamed into place: a failed export leaves no half report. */
	if (out_path != NULL) {
		if (cf_strfmt(tmp, sizeof(tmp), "%s.tmp", out_path) != 0 ||
		    (fp = fopen(tmp, "w")) == NULL) {
			fprintf(stderr, "certfleet: audit export: cannot write %s\n", out_path);
			r = CLI_FAIL;
			goto out;
		}
	}
	if (cf_audit_export(fp ? fp : stdout, fmt, &a, v, n) != 0) {
		r = cli_fail("audit export");
		goto out;
	}
	if (fp != NULL) {
		if (fclose(fp) != 0 || rename(tmp, out_path) != 0) {
			fp = NULL;
			fprintf(stderr, "certfleet: audit export: cannot write %s\n", out_path);
			r = CLI_FAIL;
			goto out;
		}
		fp = NULL;
	}
	r = CLI_OK;
out:
	if (fp != NULL) {
		fclose(fp);
		unlink(tmp);
	}
	free(v);
	cf_audit_rec_clear(&a);
	cf_ca_close(ca);
	return r;
}

/* rotate: a rotation job for the finding's thing, through certfleetd. */
static int
rotate(cli *c, cf_store *st, const cf_finding_rec *f, char *detail, size_t len)
{
	char cert[CF_ID_LEN + 1], caid[CF_ID_LEN + 1], thing[CF_NAME_MAX + 1], base[512];
	char comment[128];
	json_t *req = NULL, *ans = NULL;
	long code = 0;
	int r = CLI_FAIL;

	if (cf_mitigate_target(st, cert, caid, thing, f) != 0 || thing[0] == '\0') {
		snprintf(detail, len, "%s", thing[0] ? cf_error_last() : "the finding names no thing");
		goto out;
	}
	snprintf(comment, sizeof(comment), "mitigation of audit finding %lld", (long long)f->id);
	req = json_pack("{s:[s],s:s,s:s}", "things", thing, "keyAlgorithm", "ECDSA-P256", "comment",
	    comment);
	if (cli_api_url(c, base, sizeof(base)) != CLI_OK ||
	    cli_http(base, "POST", "/v1/jobs", req, &code, &ans) != CLI_OK) {
		snprintf(detail, len, "certfleetd did not answer");
		goto out;
	}
	if (code != 201 && code != 200) {
		snprintf(detail, len, "certfleetd answered %ld", code);
		goto out;
	}
	snprintf(detail, len, "rotation job %s for thing '%s'",
	    json_string_value(json_object_get(ans, "jobId")) ?
	    json_string_value(json_object_get(ans, "jobId")) : "?", thing);
	r = CLI_OK;
out:
	json_decref(req);
	json_decref(ans);
	return r;
}

int
cli_mitigate(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "finding", required_argument, NULL, OPT_FINDING },
		{ "action", required_argument, NULL, OPT_ACTION },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	int64_t ids[64];
	cf_mitigate_action acts[CF_MITIGATE__COUNT * 2];
	size_t n_ids = 0, n_acts = 0, i, j;
	cf_mitigation_rec m;
	cf_finding_rec f;
	cf_ca *ca = NULL;
	int ch, r, json = 0, failed = 0;
	const char *group;
	char detail[CF_AUDIT_DETAIL_MAX + 1];
	json_t *arr = NULL;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_FINDING:
			if (n_ids == sizeof(ids) / sizeof(ids[0]))
				return cli_usage(c, "at most %zu --finding", n_ids);
			if (parse_id(&ids[n_ids++], optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_ACTION:
			if (n_acts == sizeof(acts) / sizeof(acts[0]))
				return cli_usage(c, "too many --action");
			if (cf_mitigate_action_parse(&acts[n_acts++], optarg) != 0)
				return cli_usage_error(c);
			break;
		case CLI_OPT_JSON: json = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (n_ids == 0 || n_acts == 0)
		return cli_usage(c, "give at least one --finding and one --action");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	group = cf_config_get_str(cf_ca_config(ca), "quarantine_group", CF_MITIGATE_QUARANTINE_GROUP);
	/* Every finding must exist and be unsuppressed before anything is done. */
	for (i = 0; i < n_ids; i++) {
		if (cf_mitigate_finding(cf_ca_store(ca), &f, ids[i]) != 0) {
			r = cli_fail("mitigate");
			goto out;
		}
	}
	arr = json_array();
	for (i = 0; i < n_ids; i++) {
		for (j = 0; j < n_acts; j++) {
			memset(&m, 0, sizeof(m));
			if (acts[j] == CF_MITIGATE_ROTATE) {
				if (cf_mitigate_finding(cf_ca_store(ca), &f, ids[i]) != 0) {
					r = cli_fail("mitigate");
					goto out;
				}
				r = rotate(c, cf_ca_store(ca), &f, detail, sizeof(detail));
				if (cf_mitigate_record(cf_ca_store(ca), &m, ids[i], acts[j],
				    r == CLI_OK ? "succeeded" : "failed", detail) != 0) {
					r = cli_fail("mitigate");
					goto out;
				}
			} else if (cf_mitigate_apply(ca, &m, ids[i], acts[j], group) != 0) {
				fprintf(stderr, "certfleet: mitigate: finding %lld: %s: %s\n",
				    (long long)ids[i], cf_mitigate_action_name(acts[j]), cf_error_last());
				m.finding_id = ids[i];
				snprintf(m.action, sizeof(m.action), "%s", cf_mitigate_action_name(acts[j]));
				snprintf(m.status, sizeof(m.status), "failed");
			}
			json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s}", "finding",
			    (json_int_t)ids[i], "action", m.action, "status", m.status, "detail",
			    m.detail));
			if (!json)
				printf("finding %lld: %s: %s%s%s\n", (long long)ids[i], m.action, m.status,
				    m.detail[0] ? ": " : "", m.detail);
			if (strcmp(m.status, "failed") == 0) {
				failed = 1;
				break; /* a failed action stops the rest for this finding */
			}
		}
	}
	if (json) {
		cli_print_json(arr);
		arr = NULL;
	}
	r = failed ? CLI_FAIL : CLI_OK;
out:
	json_decref(arr);
	cf_ca_close(ca);
	return r;
}
