/*
 * certfleet thing ... and group ...: the registry of devices.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_ATTR = 1200, OPT_GROUP, OPT_KEYALG, OPT_SIGALG, OPT_DAYS, OPT_BUNDLE, OPT_CSR,
	OPT_QUERY,
};

#define MAX_GROUPS 64

int
cli_thing_create(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "attr", required_argument, NULL, OPT_ATTR },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "signing-algorithm", required_argument, NULL, OPT_SIGALG },
		{ "validity-days", required_argument, NULL, OPT_DAYS },
		{ "bundle", required_argument, NULL, OPT_BUNDLE },
		{ "csr", required_argument, NULL, OPT_CSR },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	const char *groups[MAX_GROUPS], *key_name = "ECDSA-P256", *sig_name = NULL, *csr_file = NULL;
	cf_ca_thing_opts o;
	json_t *attrs = json_object();
	char *attrs_text = NULL, *csr = NULL, *eq;
	size_t n_groups = 0, csr_len = 0;
	int ch, r = CLI_USAGE, json = 0;
	long days = 0;
	cf_ca *ca = NULL;
	cf_cert_rec rec;

	memset(&o, 0, sizeof(o));
	memset(&rec, 0, sizeof(rec));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: r = CLI_OK; goto out;
		case CLI_DONE_USAGE: goto out;
		case OPT_ATTR:
			if ((eq = strchr(optarg, '=')) == NULL || eq == optarg) {
				r = cli_usage(c, "--attr takes key=value, not '%s'", optarg);
				goto out;
			}
			*eq = '\0';
			json_object_set_new(attrs, optarg, json_string(eq + 1));
			*eq = '=';
			break;
		case OPT_GROUP:
			if (n_groups == MAX_GROUPS) {
				r = cli_usage(c, "at most %d --group options", MAX_GROUPS);
				goto out;
			}
			groups[n_groups++] = optarg;
			break;
		case OPT_KEYALG: key_name = optarg; break;
		case OPT_SIGALG: sig_name = optarg; break;
		case OPT_BUNDLE: o.bundle_dir = optarg; break;
		case OPT_CSR: csr_file = optarg; break;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_DAYS:
			if (cli_parse_int(&days, optarg, 1, 36500) != 0) {
				r = cli_usage_error(c);
				goto out;
			}
			break;
		default: r = cli_usage(c, "unexpected option"); goto out;
		}
	}
	if (argc - optind != 1) {
		r = cli_usage(c, "give one thing NAME");
		goto out;
	}
	if (o.bundle_dir != NULL && csr_file != NULL) {
		r = cli_usage(c, "--bundle and --csr exclude each other");
		goto out;
	}
	/* Checked before anything is touched: a bad pair never leaves a thing behind. */
	if (cf_alg_validate(&o.key_alg, &o.sig_alg, key_name, sig_name) != 0) {
		r = cli_usage_error(c);
		goto out;
	}
	if (!cf_name_valid("thing", argv[optind])) {
		r = cli_usage_error(c);
		goto out;
	}
	if (csr_file != NULL && (r = cli_read_file(&csr, &csr_len, csr_file, "--csr")) != CLI_OK)
		goto out;
	if ((r = cli_open(c, &ca)) != CLI_OK)
		goto out;
	if ((attrs_text = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		r = CLI_FAIL;
		goto out;
	}
	o.name = argv[optind];
	o.attributes_json = attrs_text;
	o.groups = groups;
	o.n_groups = n_groups;
	o.validity_days = (int)days;
	o.csr = csr;
	o.csr_len = csr_len;
	if (cf_ca_thing_create(ca, &rec, &o) != 0) {
		r = cli_fail("thing create");
		goto out;
	}
	r = CLI_OK;
	if (json) {
		json_t *j = json_object();
		json_object_set_new(j, "name", json_string(o.name));
		json_object_set_new(j, "certificate", rec.id[0] ? cf_json_cert(&rec, 0) : json_null());
		if (o.bundle_dir)
			json_object_set_new(j, "bundle", json_string(o.bundle_dir));
		r = cli_print_json(j);
	} else {
		printf("Created thing %s\n", o.name);
		if (rec.id[0])
			printf("  certificate %s (%s, %s)\n", rec.id, rec.key_alg,
			    cf_cert_status_name(rec.status));
		if (o.bundle_dir)
			printf("  bundle      %s (device.key, device.crt, ca-chain.crt, agent.conf)\n",
			    o.bundle_dir);
	}
out:
	json_decref(attrs);
	free(attrs_text);
	free(csr);
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

int
cli_thing_list(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	json_t *arr = NULL, *o, *active;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_json_things(&arr, cf_ca_store(ca)) != 0) {
		r = cli_fail("thing list");
		goto out;
	}
	if (json) {
		r = cli_print_json(arr);
		arr = NULL;
		goto out;
	}
	printf("%-32s %-6s %s\n", "NAME", "ATTRS", "ACTIVE CERTIFICATE");
	json_array_foreach(arr, i, o) {
		active = json_object_get(o, "activeCertificate");
		printf("%-32s %-6zu %s\n", json_string_value(json_object_get(o, "name")),
		    json_object_size(json_object_get(o, "attributes")),
		    json_is_string(active) ? json_string_value(active) : "-");
	}
out:
	json_decref(arr);
	cf_ca_close(ca);
	return r;
}

int
cli_thing_describe(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	json_t *o = NULL, *v, *cert;
	const char *key;
	size_t i;
	int json = 0, r;

	if ((r = cli_one_operand(c, argc, argv, &json, "thing NAME", &ca)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (cf_json_thing(&o, cf_ca_store(ca), argv[optind]) != 0) {
		r = cli_fail("thing describe");
		goto out;
	}
	if (json) {
		r = cli_print_json(o);
		o = NULL;
		goto out;
	}
	printf("thing        %s\n", json_string_value(json_object_get(o, "name")));
	json_object_foreach(json_object_get(o, "attributes"), key, v)
		printf("attribute    %s = %s\n", key, json_is_string(v) ? json_string_value(v) : "?");
	json_array_foreach(json_object_get(o, "groups"), i, v)
		printf("group        %s\n", json_string_value(v));
	json_array_foreach(json_object_get(o, "certificates"), i, cert)
		printf("certificate  %s %-18s %-10s until %s\n",
		    json_string_value(json_object_get(cert, "id")),
		    json_string_value(json_object_get(cert, "status")),
		    json_string_value(json_object_get(cert, "keyAlgorithm")),
		    json_string_value(json_object_get(cert, "notAfter")));
out:
	json_decref(o);
	cf_ca_close(ca);
	return r;
}

int
cli_thing_delete(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	int r;

	if ((r = cli_one_operand(c, argc, argv, NULL, "thing NAME", &ca)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (cf_store_thing_delete(cf_ca_store(ca), argv[optind]) != 0)
		r = cli_fail("thing delete");
	else
		printf("Deleted thing %s\n", argv[optind]);
	cf_ca_close(ca);
	return r;
}

int
cli_group_create(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "query", required_argument, NULL, OPT_QUERY },
		{ NULL, 0, NULL, 0 },
	};
	const char *query = NULL;
	cf_ca *ca = NULL;
	int ch, r;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_QUERY: query = optarg; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one group NAME");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_group_create(cf_ca_store(ca), argv[optind], query) != 0)
		r = cli_fail("group create");
	else
		printf("Created %s group %s%s%s\n", query ? "dynamic" : "static", argv[optind],
		    query ? " matching " : "", query ? query : "");
	cf_ca_close(ca);
	return r;
}

/* group add / group remove: all or nothing, one transaction. */
static int
group_members(cli *c, int argc, char **argv, int add)
{
	const char *verb = add ? "group add" : "group remove";
	cf_ca *ca = NULL;
	cf_store *st;
	int r, i;

	if ((r = cli_plain_opts(c, argc, argv, NULL)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind < 2)
		return cli_usage(c, "give a GROUP and at least one THING");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	st = cf_ca_store(ca);
	/* All or nothing: one unknown thing changes none. */
	if (cf_store_begin(st) != 0) {
		r = cli_fail(verb);
		goto out;
	}
	for (i = optind + 1; i < argc; i++) {
		if ((add ? cf_store_group_add(st, argv[optind], argv[i]) :
		    cf_store_group_remove(st, argv[optind], argv[i])) != 0) {
			cf_store_rollback(st);
			r = cli_fail(verb);
			goto out;
		}
	}
	if (cf_store_commit(st) != 0) {
		r = cli_fail(verb);
		goto out;
	}
	printf("%s %d thing%s %s group %s\n", add ? "Added" : "Removed", argc - optind - 1,
	    argc - optind - 1 == 1 ? "" : "s", add ? "to" : "from", argv[optind]);
out:
	cf_ca_close(ca);
	return r;
}

int
cli_group_add(cli *c, int argc, char **argv)
{
	return group_members(c, argc, argv, 1);
}

int
cli_group_remove(cli *c, int argc, char **argv)
{
	return group_members(c, argc, argv, 0);
}

int
cli_group_list(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	cf_group_rec *groups = NULL;
	char **members = NULL;
	size_t n = 0, n_members = 0, i, k;
	int json = 0, r;
	json_t *arr, *o, *m;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_group_list(cf_ca_store(ca), &groups, &n) != 0) {
		r = cli_fail("group list");
		goto out;
	}
	arr = json_array();
	for (i = 0; i < n; i++) {
		if (cf_store_group_members(cf_ca_store(ca), &members, &n_members, groups[i].name) != 0) {
			json_decref(arr);
			r = cli_fail("group list");
			goto out;
		}
		o = json_object();
		json_object_set_new(o, "name", json_string(groups[i].name));
		json_object_set_new(o, "type", json_string(groups[i].query ? "dynamic" : "static"));
		if (groups[i].query)
			json_object_set_new(o, "query", json_string(groups[i].query));
		m = json_array();
		for (k = 0; k < n_members; k++)
			json_array_append_new(m, json_string(members[k]));
		json_object_set_new(o, "members", m);
		json_array_append_new(arr, o);
		cf_strv_free(members, n_members);
		members = NULL;
		n_members = 0;
	}
	if (json) {
		r = cli_print_json(arr);
		goto out;
	}
	printf("%-24s %-8s %-24s %s\n", "NAME", "TYPE", "QUERY", "MEMBERS");
	for (i = 0; i < n; i++) {
		o = json_array_get(arr, i);
		m = json_object_get(o, "members");
		printf("%-24s %-8s %-24s", groups[i].name, groups[i].query ? "dynamic" : "static",
		    groups[i].query ? groups[i].query : "-");
		for (k = 0; k < json_array_size(m); k++)
			printf("%s%s", k ? "," : " ", json_string_value(json_array_get(m, k)));
		printf("\n");
	}
	json_decref(arr);
out:
	cf_group_recs_free(groups, n);
	cf_ca_close(ca);
	return r;
}
