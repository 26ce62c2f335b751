/*
 * certfleet provision ... — provisioning templates and claim certificates
 * (docs/provisioning.md, docs/cli.md). Works on the registry directly, like
 * `thing create`: a template is validated by cf_prov before it is stored;
 * disabling a claim is a claim.status event the broker plugin acts on
 * (its clients are kicked) whether or not certfleetd runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_prov.h"
#include "cli.h"

enum {
	OPT_PATTERN = 1100, OPT_GROUP, OPT_ATTR, OPT_ALLOW_FILE, OPT_HOOK, OPT_HOOK_TIMEOUT,
	OPT_RATE, OPT_WSTART, OPT_WEND, OPT_MAX_COUNT, OPT_REPROVISION, OPT_MAX_DENIALS,
	OPT_MAX_CONCURRENT, OPT_PENDING, OPT_BUNDLE, OPT_KEYALG, OPT_SIGALG, OPT_DAYS, OPT_TEMPLATE,
	OPT_REASON,
};

#define MAX_GROUPS 32

static json_t *
template_json(const cf_prov_template_rec *r, cf_store *st)
{
	json_t *j = json_object(), *spec;
	json_error_t jerr;
	cf_claim_rec *cl = NULL;
	size_t n = 0;
	int64_t count = 0;
	char t[CLI_TIME_LEN];

	spec = json_loads(r->spec, 0, &jerr);
	json_object_set_new(j, "name", json_string(r->name));
	json_object_set_new(j, "createdAt", json_string(cli_time(t, r->created_at)));
	json_object_set_new(j, "spec", spec ? spec : json_null());
	if (cf_store_prov_serial_count(st, &count, r->name) == 0)
		json_object_set_new(j, "provisioned", json_integer((json_int_t)count));
	if (cf_store_claim_list(st, &cl, &n, r->name) == 0)
		json_object_set_new(j, "claims", json_integer((json_int_t)n));
	cf_claim_recs_free(cl, n);
	return j;
}

static json_t *
claim_json(const cf_claim_rec *c)
{
	char t[CLI_TIME_LEN], u[CLI_TIME_LEN];

	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "certificateId", c->cert_id, "template",
	    c->template_name, "status", cf_claim_status_name(c->status), "reason", c->reason,
	    "createdAt", cli_time(t, c->created_at), "updatedAt", cli_time(u, c->updated_at));
}

int
cli_prov_template_create(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "name-pattern", required_argument, NULL, OPT_PATTERN },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "attr", required_argument, NULL, OPT_ATTR },
		{ "allow-file", required_argument, NULL, OPT_ALLOW_FILE },
		{ "allow-hook", required_argument, NULL, OPT_HOOK },
		{ "hook-timeout", required_argument, NULL, OPT_HOOK_TIMEOUT },
		{ "rate-per-minute", required_argument, NULL, OPT_RATE },
		{ "window-start", required_argument, NULL, OPT_WSTART },
		{ "window-end", required_argument, NULL, OPT_WEND },
		{ "max-count", required_argument, NULL, OPT_MAX_COUNT },
		{ "allow-reprovision", no_argument, NULL, OPT_REPROVISION },
		{ "max-denials", required_argument, NULL, OPT_MAX_DENIALS },
		{ "max-concurrent", required_argument, NULL, OPT_MAX_CONCURRENT },
		{ "pending-seconds", required_argument, NULL, OPT_PENDING },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	cf_prov_template t;
	cf_prov_template_rec rec;
	json_t *attrs = json_object();
	const char *allow_file = NULL;
	char *allow_text = NULL, *spec = NULL, *eq;
	size_t allow_len = 0;
	int ch, r = CLI_USAGE, json = 0;
	long v;
	cf_ca *ca = NULL;

	memset(&t, 0, sizeof(t));
	memset(&rec, 0, sizeof(rec));
	t.hook_timeout_s = 5;
	t.max_concurrent = 1;
	t.pending_s = 86400;
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: r = CLI_OK; goto out;
		case CLI_DONE_USAGE: goto out;
		case OPT_PATTERN:
			if (cf_prov_pattern_check(optarg) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			snprintf(t.pattern, sizeof(t.pattern), "%s", optarg);
			break;
		case OPT_GROUP:
			if (t.n_groups == MAX_GROUPS || !cf_name_valid("group", optarg)) {
				r = t.n_groups == MAX_GROUPS ? cli_usage(c, "at most %d --group options",
				    MAX_GROUPS) : cli_usage_error(c);
				goto out;
			}
			if ((t.groups = realloc(t.groups, (t.n_groups + 1) * sizeof(*t.groups))) == NULL ||
			    (t.groups[t.n_groups] = strdup(optarg)) == NULL) {
				r = CLI_FAIL;
				goto out;
			}
			t.n_groups++;
			break;
		case OPT_ATTR:
			if ((eq = strchr(optarg, '=')) == NULL || eq == optarg) {
				r = cli_usage(c, "--attr takes key=value, not '%s'", optarg);
				goto out;
			}
			*eq = '\0';
			json_object_set_new(attrs, optarg, json_string(eq + 1));
			*eq = '=';
			break;
		case OPT_ALLOW_FILE: allow_file = optarg; break;
		case OPT_HOOK:
			free(t.hook);
			if ((t.hook = strdup(optarg)) == NULL) {
				r = CLI_FAIL;
				goto out;
			}
			break;
		case OPT_REPROVISION: t.allow_reprovision = 1; break;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_WSTART:
		case OPT_WEND:
			if (cli_parse_time(ch == OPT_WSTART ? &t.window_start : &t.window_end, optarg) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			break;
		case OPT_HOOK_TIMEOUT:
		case OPT_RATE:
		case OPT_MAX_COUNT:
		case OPT_MAX_DENIALS:
		case OPT_MAX_CONCURRENT:
		case OPT_PENDING:
			if (cli_parse_int(&v, optarg, ch == OPT_PENDING ? 60 : 1,
			    ch == OPT_HOOK_TIMEOUT ? CF_PROV_HOOK_TIMEOUT_MAX : 100000000) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			if (ch == OPT_HOOK_TIMEOUT)
				t.hook_timeout_s = (int)v;
			else if (ch == OPT_RATE)
				t.rate_per_minute = (int)v;
			else if (ch == OPT_MAX_COUNT)
				t.max_count = (int)v;
			else if (ch == OPT_MAX_DENIALS)
				t.max_denials = (int)v;
			else if (ch == OPT_MAX_CONCURRENT)
				t.max_concurrent = (int)v;
			else
				t.pending_s = (int)v;
			break;
		default: r = cli_usage(c, "unexpected option"); goto out;
		}
	}
	if (argc - optind != 1 || t.pattern[0] == '\0') {
		r = cli_usage(c, "give one template NAME and --name-pattern");
		goto out;
	}
	if (!cf_name_valid("template", argv[optind])) {
		r = cli_usage_error(c);
		goto out;
	}
	snprintf(t.name, sizeof(t.name), "%s", argv[optind]);
	if (allow_file != NULL) {
		if ((r = cli_read_file(&allow_text, &allow_len, allow_file, "--allow-file")) != CLI_OK)
			goto out;
		if (cf_prov_allow_parse(&t.allow, &t.n_allow, allow_text) != 0) {
			r = cli_usage(c, "--allow-file %s: %s", allow_file, cf_error_last());
			goto out;
		}
		t.has_allow = 1;
	}
	if ((t.attributes = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		r = CLI_FAIL;
		goto out;
	}
	/* The spec goes through the parser the daemon uses: what is stored is what it reads. */
	if (cf_prov_template_spec(&spec, &t) != 0) {
		r = cli_fail("provision template-create");
		goto out;
	}
	cf_prov_template_clear(&t);
	if (cf_prov_template_parse(&t, argv[optind], spec) != 0) {
		r = cli_usage_error(c);
		goto out;
	}
	if ((r = cli_open(c, &ca)) != CLI_OK)
		goto out;
	if (cf_store_prov_template_create(cf_ca_store(ca), argv[optind], spec) != 0 ||
	    cf_store_prov_template_get(cf_ca_store(ca), &rec, argv[optind]) != 0) {
		r = cli_fail("provision template-create");
		goto out;
	}
	if (json)
		r = cli_print_json(template_json(&rec, cf_ca_store(ca)));
	else {
		printf("Created provisioning template %s (things named %s, serial parameter %s)\n",
		    rec.name, t.pattern, t.serial_param);
		r = CLI_OK;
	}
out:
	json_decref(attrs);
	cf_prov_template_rec_clear(&rec);
	cf_prov_template_clear(&t);
	free(allow_text);
	free(spec);
	cf_ca_close(ca);
	return r;
}

int
cli_prov_template_list(cli *c, int argc, char **argv)
{
	cf_prov_template_rec *v = NULL;
	cf_prov_template t;
	cf_ca *ca = NULL;
	json_t *a;
	size_t n = 0, i;
	int r, json = 0;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind != 0)
		return cli_usage(c, "no operands");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_prov_template_list(cf_ca_store(ca), &v, &n) != 0) {
		r = cli_fail("provision template-list");
		goto out;
	}
	if (json) {
		a = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(a, template_json(&v[i], cf_ca_store(ca)));
		r = cli_print_json(a);
		goto out;
	}
	printf("%-24s %-32s %s\n", "NAME", "NAME PATTERN", "LIMITS");
	for (i = 0; i < n; i++) {
		memset(&t, 0, sizeof(t));
		if (cf_prov_template_parse(&t, v[i].name, v[i].spec) == 0)
			printf("%-24s %-32s rate=%d/min max=%d concurrent=%d reprovision=%s\n", v[i].name,
			    t.pattern, t.rate_per_minute, t.max_count, t.max_concurrent,
			    t.allow_reprovision ? "yes" : "no");
		cf_prov_template_clear(&t);
	}
	r = CLI_OK;
out:
	cf_prov_template_recs_free(v, n);
	cf_ca_close(ca);
	return r;
}

int
cli_prov_template_describe(cli *c, int argc, char **argv)
{
	cf_prov_template_rec rec;
	cf_ca *ca = NULL;
	json_t *j;
	char *text;
	int r, json = 0;

	memset(&rec, 0, sizeof(rec));
	(void)json;
	if ((r = cli_one_operand(c, argc, argv, &json, "template NAME", &ca)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (cf_store_prov_template_get(cf_ca_store(ca), &rec, argv[optind]) != 0) {
		r = cli_fail("provision template-describe");
		goto out;
	}
	j = template_json(&rec, cf_ca_store(ca));
	if (json) {
		r = cli_print_json(j);
		goto out;
	}
	text = json_dumps(json_object_get(j, "spec"), JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("Template %s\n  provisioned %lld\n  claims      %lld\n  spec        %s\n", rec.name,
	    (long long)json_integer_value(json_object_get(j, "provisioned")),
	    (long long)json_integer_value(json_object_get(j, "claims")), text ? text : "?");
	free(text);
	json_decref(j);
	r = CLI_OK;
out:
	cf_prov_template_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

int
cli_prov_claim_create(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "bundle", required_argument, NULL, OPT_BUNDLE },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "signing-algorithm", required_argument, NULL, OPT_SIGALG },
		{ "validity-days", required_argument, NULL, OPT_DAYS },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_name = "ECDSA-P256", *sig_name = NULL;
	cf_ca_claim_opts o;
	cf_cert_rec rec;
	cf_ca *ca = NULL;
	long days = 0;
	int ch, r = CLI_USAGE, json = 0;

	memset(&o, 0, sizeof(o));
	memset(&rec, 0, sizeof(rec));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_BUNDLE: o.bundle_dir = optarg; break;
		case OPT_KEYALG: key_name = optarg; break;
		case OPT_SIGALG: sig_name = optarg; break;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_DAYS:
			if (cli_parse_int(&days, optarg, 1, 36500) != 0)
				return cli_usage_error(c);
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1 || o.bundle_dir == NULL)
		return cli_usage(c, "give one TEMPLATE and --bundle OUTDIR");
	if (cf_alg_validate(&o.key_alg, &o.sig_alg, key_name, sig_name) != 0)
		return cli_usage_error(c);
	o.template_name = argv[optind];
	o.validity_days = (int)days;
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_ca_claim_create(ca, &rec, &o) != 0) {
		r = cli_fail("provision claim-create");
		goto out;
	}
	if (json) {
		r = cli_print_json(json_pack("{s:s, s:s, s:s, s:s}", "certificateId", rec.id, "template",
		    o.template_name, "status", "ENABLED", "bundle", o.bundle_dir));
		goto out;
	}
	printf("Created claim %s for template %s\n  bundle %s (device.key, device.crt, ca-chain.crt, "
	    "agent.conf)\n", rec.id, o.template_name, o.bundle_dir);
	r = CLI_OK;
out:
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

int
cli_prov_claim_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "template", required_argument, NULL, OPT_TEMPLATE },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	const char *tmpl = NULL;
	cf_claim_rec *v = NULL;
	cf_ca *ca = NULL;
	json_t *a;
	size_t n = 0, i;
	int ch, r, json = 0;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_TEMPLATE: tmpl = optarg; break;
		case CLI_OPT_JSON: json = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 0)
		return cli_usage(c, "no operands");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_claim_list(cf_ca_store(ca), &v, &n, tmpl) != 0) {
		r = cli_fail("provision claim-list");
		goto out;
	}
	if (json) {
		a = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(a, claim_json(&v[i]));
		r = cli_print_json(a);
		goto out;
	}
	printf("%-64s %-20s %-8s %s\n", "CLAIM CERTIFICATE", "TEMPLATE", "STATUS", "REASON");
	for (i = 0; i < n; i++)
		printf("%-64s %-20s %-8s %s\n", v[i].cert_id, v[i].template_name,
		    cf_claim_status_name(v[i].status), v[i].reason);
	r = CLI_OK;
out:
	cf_claim_recs_free(v, n);
	cf_ca_close(ca);
	return r;
}

static int
claim_set(cli *c, int argc, char **argv, cf_claim_status to)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "reason", required_argument, NULL, OPT_REASON },
		{ NULL, 0, NULL, 0 },
	};
	const char *reason = to == CF_CLAIM_DISABLED ? "disabled by an operator" :
	    "enabled by an operator";
	cf_cert_rec cert;
	cf_ca *ca = NULL;
	int ch, r, changed = 0;

	memset(&cert, 0, sizeof(cert));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_REASON: reason = optarg; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one claim certificate ID");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	/* The certificate lookup takes a unique prefix; the claim is then named exactly. */
	if (cf_store_cert_get(cf_ca_store(ca), &cert, argv[optind]) != 0 ||
	    cf_store_claim_set_status(cf_ca_store(ca), &changed, cert.id, to, reason) != 0) {
		r = cli_fail(to == CF_CLAIM_DISABLED ? "provision claim-disable" :
		    "provision claim-enable");
		goto out;
	}
	printf("Claim %s is %s%s\n", cert.id, cf_claim_status_name(to), changed ? "" : " (unchanged)");
	r = CLI_OK;
out:
	cf_cert_rec_clear(&cert);
	cf_ca_close(ca);
	return r;
}

int
cli_prov_claim_disable(cli *c, int argc, char **argv)
{
	return claim_set(c, argc, argv, CF_CLAIM_DISABLED);
}

int
cli_prov_claim_enable(cli *c, int argc, char **argv)
{
	return claim_set(c, argc, argv, CF_CLAIM_ENABLED);
}
