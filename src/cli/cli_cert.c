/*
 * certfleet cert ...: device certificates in the registry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_STATUS = 1300, OPT_THING, OPT_CA, OPT_EXPIRING, OPT_PEM, OPT_REASON };

int
cli_cert_list(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "status", required_argument, NULL, OPT_STATUS },
		{ "thing", required_argument, NULL, OPT_THING },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "expiring-within", required_argument, NULL, OPT_EXPIRING },
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	cf_cert_filter f = { .status = -1 };
	const char *ca_ref = NULL;
	cf_cert_status st;
	cf_cert_rec *certs = NULL;
	cf_ca_rec carec;
	cf_ca *ca = NULL;
	size_t n = 0, i;
	int ch, r, json = 0;
	long days;
	char nb[CLI_TIME_LEN];
	json_t *arr;

	memset(&carec, 0, sizeof(carec));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_STATUS:
			if (cf_cert_status_parse(&st, optarg) != 0)
				return cli_usage_error(c);
			f.status = (int)st;
			break;
		case OPT_THING: f.thing = optarg; break;
		case OPT_CA: ca_ref = optarg; break;
		case OPT_EXPIRING:
			if (cli_parse_int(&days, optarg, 0, 36500) != 0)
				return cli_usage_error(c);
			f.not_after_before = cf_time_now() + (int64_t)days * 86400;
			break;
		case CLI_OPT_JSON: json = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	r = CLI_FAIL;
	/* --ca takes a name or an id; the store filters by id. */
	if (ca_ref != NULL) {
		if (cf_store_ca_get(cf_ca_store(ca), &carec, ca_ref) != 0) {
			r = cli_fail("cert list --ca");
			goto out;
		}
		f.ca_id = carec.id;
	}
	if (cf_store_cert_list(cf_ca_store(ca), &certs, &n, &f) != 0) {
		r = cli_fail("cert list");
		goto out;
	}
	if (json) {
		arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, cf_json_cert(&certs[i], 0));
		r = cli_print_json(arr);
		goto out;
	}
	printf("%-64s %-24s %-18s %-10s %s\n", "ID", "THING", "STATUS", "KEY", "NOT AFTER");
	for (i = 0; i < n; i++)
		printf("%-64s %-24s %-18s %-10s %s\n", certs[i].id, certs[i].thing[0] ? certs[i].thing : "-",
		    cf_cert_status_name(certs[i].status), certs[i].key_alg,
		    cli_time(nb, certs[i].not_after));
	r = CLI_OK;
out:
	cf_cert_recs_free(certs, n);
	cf_ca_rec_clear(&carec);
	cf_ca_close(ca);
	return r;
}

int
cli_cert_describe(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "pem", no_argument, NULL, OPT_PEM },
		{ NULL, 0, NULL, 0 },
	};
	cf_cert_rec rec;
	cf_ca *ca = NULL;
	int ch, r, json = 0, pem = 0;
	char t[CLI_TIME_LEN];

	memset(&rec, 0, sizeof(rec));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_PEM: pem = 1; break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one certificate ID");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_cert_get(cf_ca_store(ca), &rec, argv[optind]) != 0) {
		r = cli_fail("cert describe");
		goto out;
	}
	if (json) {
		r = cli_print_json(cf_json_cert(&rec, pem));
		goto out;
	}
	if (pem) {
		fputs(rec.pem, stdout);
		goto out;
	}
	printf("id                  %s\n", rec.id);
	printf("serial              %s\n", rec.serial);
	printf("thing               %s\n", rec.thing[0] ? rec.thing : "-");
	printf("status              %s\n", cf_cert_status_name(rec.status));
	printf("issuing CA          %s\n", rec.ca_id);
	printf("not before          %s\n", cli_time(t, rec.not_before));
	printf("not after           %s\n", cli_time(t, rec.not_after));
	printf("key                 %s (%d bits)\n", rec.key_alg, rec.key_bits);
	printf("signature           %s\n", rec.sig_alg);
	if (rec.status == CF_CERT_REVOKED)
		printf("revoked             %s (%s)\n", cli_time(t, rec.revoked_at),
		    cf_pki_reason_name(rec.revoke_reason));
out:
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

static int
set_status(cli *c, int argc, char **argv, cf_cert_status to)
{
	cf_ca *ca = NULL;
	cf_cert_rec rec;
	int r;

	memset(&rec, 0, sizeof(rec));
	if ((r = cli_one_operand(c, argc, argv, NULL, "certificate ID", &ca)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (cf_store_cert_get(cf_ca_store(ca), &rec, argv[optind]) != 0 ||
	    cf_store_cert_set_status(cf_ca_store(ca), rec.id, to, 0) != 0)
		r = cli_fail(to == CF_CERT_ACTIVE ? "cert activate" : "cert deactivate");
	else
		printf("Certificate %.16s… is %s\n", rec.id, cf_cert_status_name(to));
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

int
cli_cert_activate(cli *c, int argc, char **argv)
{
	return set_status(c, argc, argv, CF_CERT_ACTIVE);
}

int
cli_cert_deactivate(cli *c, int argc, char **argv)
{
	return set_status(c, argc, argv, CF_CERT_INACTIVE);
}

int
cli_cert_revoke(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "reason", required_argument, NULL, OPT_REASON },
		{ NULL, 0, NULL, 0 },
	};
	cf_ca *ca = NULL;
	cf_cert_rec rec;
	int ch, r, reason = 0;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_REASON:
			if (cf_pki_reason_parse(&reason, optarg) != 0)
				return cli_usage_error(c);
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one certificate ID");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	memset(&rec, 0, sizeof(rec));
	if (cf_store_cert_get(cf_ca_store(ca), &rec, argv[optind]) != 0)
		r = cli_fail("cert revoke");
	else if (rec.status == CF_CERT_REVOKED)
		printf("Certificate %s was already revoked (%s); nothing changed\n", rec.id,
		    cf_pki_reason_name(rec.revoke_reason));
	else if (cf_ca_revoke_cert(ca, rec.id, reason) != 0)
		r = cli_fail("cert revoke");
	else
		printf("Revoked certificate %s (%s); its CA's CRL was rewritten\n", rec.id,
		    cf_pki_reason_name(reason));
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}
