/*
 * certfleet init and certfleet ca ...: the CA ceremonies. The ones that
 * need the root key run here, locally, with the passphrase from a file or
 * the terminal; nothing else ever asks for it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum {
	OPT_PASS = 1100, OPT_IPASS, OPT_KEYALG, OPT_ROOTCN, OPT_INAME, OPT_CADAYS, OPT_DEVDAYS,
	OPT_DAYS, OPT_SETISSUER, OPT_REASON, OPT_OUT, OPT_MQTTPORT, OPT_APIPORT, OPT_P11URI,
	OPT_P11MODULE, OPT_P11PIN,
};

/* path made absolute (symlinks kept, so that a packaged module path stays stable); NULL + errno. */
static char *
abs_path(const char *path)
{
	return path[0] == '/' ? strdup(path) : realpath(path, NULL);
}

int
cli_init(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "passphrase-file", required_argument, NULL, OPT_PASS },
		{ "intermediate-passphrase-file", required_argument, NULL, OPT_IPASS },
		{ "ca-key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "root-cn", required_argument, NULL, OPT_ROOTCN },
		{ "intermediate-name", required_argument, NULL, OPT_INAME },
		{ "ca-validity-days", required_argument, NULL, OPT_CADAYS },
		{ "device-validity-days", required_argument, NULL, OPT_DEVDAYS },
		{ "mqtt-port", required_argument, NULL, OPT_MQTTPORT },
		{ "api-port", required_argument, NULL, OPT_APIPORT },
		{ "pkcs11-uri", required_argument, NULL, OPT_P11URI },
		{ "pkcs11-module", required_argument, NULL, OPT_P11MODULE },
		{ "pkcs11-pin-file", required_argument, NULL, OPT_P11PIN },
		{ NULL, 0, NULL, 0 },
	};
	cf_ca_init_opts o;
	const char *pass_file = NULL, *ipass_file = NULL, *p11_module = NULL, *p11_pin = NULL;
	char *pass = NULL, *ipass = NULL, *module_abs = NULL, *pin_abs = NULL;
	int ch, r = CLI_FAIL;
	long v;

	cf_ca_init_opts_default(&o);
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_PASS: pass_file = optarg; break;
		case OPT_IPASS: ipass_file = optarg; break;
		case OPT_ROOTCN: o.root_cn = optarg; break;
		case OPT_INAME: o.intermediate_name = optarg; break;
		case OPT_KEYALG:
			if (cf_key_alg_parse(&o.key_alg, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_CADAYS:
			if (cli_parse_int(&v, optarg, 1, 36500) != 0)
				return cli_usage_error(c);
			o.intermediate_validity_days = (int)v;
			o.root_validity_days = (int)(v * 4 > 36500 ? 36500 : v * 4);
			break;
		case OPT_DEVDAYS:
			if (cli_parse_int(&v, optarg, 1, 36500) != 0)
				return cli_usage_error(c);
			o.device_validity_days = (int)v;
			break;
		case OPT_MQTTPORT:
		case OPT_APIPORT:
			if (cli_parse_int(&v, optarg, 1, 65535) != 0)
				return cli_usage_error(c);
			*(ch == OPT_MQTTPORT ? &o.mqtt_port : &o.api_port) = (int)v;
			break;
		case OPT_P11URI: o.pkcs11_uri = optarg; break;
		case OPT_P11MODULE: p11_module = optarg; break;
		case OPT_P11PIN: p11_pin = optarg; break;
		default:
			return cli_usage(c, "unexpected option");
		}
	}
	if ((o.pkcs11_uri != NULL) != (p11_module != NULL) || (p11_module != NULL) != (p11_pin != NULL))
		return cli_usage(c, "--pkcs11-uri, --pkcs11-module and --pkcs11-pin-file go together");
	if (o.pkcs11_uri != NULL && ipass_file != NULL)
		return cli_usage(c, "--intermediate-passphrase-file has no use with --pkcs11-uri");
	if (o.pkcs11_uri != NULL) {
		/* certfleet.conf's paths are relative to the data directory: record absolute ones. */
		if ((module_abs = abs_path(p11_module)) == NULL || (pin_abs = abs_path(p11_pin)) == NULL) {
			fprintf(stderr, "certfleet: init: %s: %s\n", module_abs ? p11_pin : p11_module,
			    strerror(errno));
			free(module_abs);
			return CLI_FAIL;
		}
		o.pkcs11_module = module_abs;
		o.pkcs11_pin_file = pin_abs;
	}
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	/* init must be told its directory: it never creates one by surprise. */
	if (!c->dir_set)
		return cli_usage(c, "init needs --dir DIR");
	if (cli_passphrase(&pass, pass_file, "Root CA passphrase: ", 1) != CLI_OK)
		goto out;
	if (ipass_file != NULL && cli_passphrase(&ipass, ipass_file, NULL, 0) != CLI_OK)
		goto out;
	if (cf_ca_init(c->dir, &o, pass, ipass) != 0) {
		r = cli_fail("init");
		goto out;
	}
	printf("Initialised %s\n", c->dir);
	printf("  root CA          ca/root.crt (key ca/root.key, encrypted: move it offline)\n");
	printf("  issuing CA       ca/%s.crt (%s%s)\n", o.intermediate_name, cf_key_alg_name(o.key_alg),
	    o.pkcs11_uri ? ", key in the PKCS#11 token" : "");
	printf("  chain            ca-chain.crt\n");
	printf("  registry         certfleet.db\n");
	printf("  configuration    certfleet.conf (broker 127.0.0.1:%d, API 127.0.0.1:%d)\n",
	    o.mqtt_port, o.api_port);
	printf("  broker TLS       broker/server.crt, trust broker/ca.crt\n");
	printf("  certfleetd       service/certfleetd.crt\n");
	r = CLI_OK;
out:
	cf_secret_free(pass, 0);
	cf_secret_free(ipass, 0);
	free(module_abs);
	free(pin_abs);
	return r;
}

int
cli_ca_list(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	cf_ca_rec *cas = NULL;
	size_t n = 0, i;
	int json = 0, r;
	char nb[CLI_TIME_LEN];
	json_t *arr;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if (cf_store_ca_list(cf_ca_store(ca), &cas, &n) != 0) {
		r = cli_fail("ca list");
		goto out;
	}
	if (json) {
		arr = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, cf_json_ca(&cas[i]));
		r = cli_print_json(arr);
		goto out;
	}
	printf("%-16s %-12s %-8s %-6s %-12s %-20s %s\n", "NAME", "ROLE", "STATUS", "ISSUER",
	    "KEY", "NOT AFTER", "ID");
	for (i = 0; i < n; i++)
		printf("%-16s %-12s %-8s %-6s %-12s %-20s %.16s\n", cas[i].name,
		    cas[i].role == CF_CA_ROOT ? "root" : "intermediate",
		    cf_cert_status_name(cas[i].status), cas[i].is_issuer ? "yes" : "", cas[i].key_alg,
		    cli_time(nb, cas[i].not_after), cas[i].id);
	r = CLI_OK;
out:
	cf_ca_recs_free(cas, n);
	cf_ca_close(ca);
	return r;
}

int
cli_ca_create_intermediate(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "passphrase-file", required_argument, NULL, OPT_PASS },
		{ "intermediate-passphrase-file", required_argument, NULL, OPT_IPASS },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "validity-days", required_argument, NULL, OPT_DAYS },
		{ "set-issuer", no_argument, NULL, OPT_SETISSUER },
		{ "pkcs11-uri", required_argument, NULL, OPT_P11URI },
		{ NULL, 0, NULL, 0 },
	};
	const char *pass_file = NULL, *ipass_file = NULL, *uri = NULL;
	char *pass = NULL, *ipass = NULL;
	cf_key_alg alg = CF_KEY_P256;
	long days = 1825;
	int ch, r = CLI_FAIL, set_issuer = 0;
	cf_ca *ca = NULL;
	cf_ca_rec rec;

	memset(&rec, 0, sizeof(rec));
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_PASS: pass_file = optarg; break;
		case OPT_IPASS: ipass_file = optarg; break;
		case OPT_SETISSUER: set_issuer = 1; break;
		case OPT_P11URI: uri = optarg; break;
		case OPT_KEYALG:
			if (cf_key_alg_parse(&alg, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_DAYS:
			if (cli_parse_int(&days, optarg, 1, 36500) != 0)
				return cli_usage_error(c);
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give the new CA's NAME");
	if (uri != NULL && ipass_file != NULL)
		return cli_usage(c, "--intermediate-passphrase-file has no use with --pkcs11-uri");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	r = CLI_FAIL;
	if (cli_passphrase(&pass, pass_file, "Root CA passphrase: ", 0) != CLI_OK ||
	    (ipass_file != NULL && cli_passphrase(&ipass, ipass_file, NULL, 0) != CLI_OK))
		goto out;
	if ((uri != NULL ? cf_ca_create_intermediate_pkcs11(ca, &rec, argv[optind], alg, (int)days,
	    pass, uri, set_issuer) : cf_ca_create_intermediate(ca, &rec, argv[optind], alg, (int)days,
	    pass, ipass, set_issuer)) != 0) {
		r = cli_fail("ca create-intermediate");
		goto out;
	}
	printf("Created intermediate CA %s (%s)%s\n  id %s\n", rec.name, rec.key_alg,
	    set_issuer ? ", now the issuer" : "", rec.id);
	r = CLI_OK;
out:
	cf_secret_free(pass, 0);
	cf_secret_free(ipass, 0);
	cf_ca_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}

int
cli_ca_set_issuer(cli *c, int argc, char **argv)
{
	cf_ca *ca = NULL;
	int r;

	if ((r = cli_one_operand(c, argc, argv, NULL, "CA", &ca)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (cf_ca_set_issuer(ca, argv[optind]) != 0)
		r = cli_fail("ca set-issuer");
	else
		printf("CA %s now issues device certificates\n", argv[optind]);
	cf_ca_close(ca);
	return r;
}

static int
reason_opts(cli *c, int argc, char **argv, int *reason, const char **pass_file, const char **out)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "reason", required_argument, NULL, OPT_REASON },
		{ "passphrase-file", required_argument, NULL, OPT_PASS },
		{ "out", required_argument, NULL, OPT_OUT },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_DONE_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_REASON:
			if (reason == NULL)
				return cli_usage(c, "this verb has no --reason");
			if (cf_pki_reason_parse(reason, optarg) != 0)
				return cli_usage_error(c);
			break;
		case OPT_PASS:
			if (pass_file == NULL)
				return cli_usage(c, "this verb has no --passphrase-file");
			*pass_file = optarg;
			break;
		case OPT_OUT:
			if (out == NULL)
				return cli_usage(c, "this verb has no --out");
			*out = optarg;
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	return CLI_OK;
}

int
cli_ca_revoke(cli *c, int argc, char **argv)
{
	const char *pass_file = NULL;
	char *pass = NULL;
	int reason = 0, r;
	cf_ca *ca = NULL;

	if ((r = reason_opts(c, argc, argv, &reason, &pass_file, NULL)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind != 1)
		return cli_usage(c, "give one CA");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	if ((r = cli_passphrase(&pass, pass_file, "Root CA passphrase: ", 0)) != CLI_OK)
		goto out;
	if (cf_ca_revoke_ca(ca, argv[optind], reason, pass) != 0) {
		r = cli_fail("ca revoke");
		goto out;
	}
	printf("Revoked CA %s (%s); the root's CRL is in crl/root.crl.pem\n", argv[optind],
	    cf_pki_reason_name(reason));
out:
	cf_secret_free(pass, 0);
	cf_ca_close(ca);
	return r;
}

int
cli_ca_crl(cli *c, int argc, char **argv)
{
	const char *pass_file = NULL, *out_file = NULL, *ref;
	char *pass = NULL, *pem = NULL;
	cf_ca_rec rec;
	cf_ca *ca = NULL;
	int r;

	memset(&rec, 0, sizeof(rec));
	if ((r = reason_opts(c, argc, argv, NULL, &pass_file, &out_file)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind > 1)
		return cli_usage(c, "give at most one CA");
	if ((r = cli_open(c, &ca)) != CLI_OK)
		return r;
	ref = optind < argc ? argv[optind] : NULL;
	r = CLI_FAIL;
	if ((ref ? cf_store_ca_get(cf_ca_store(ca), &rec, ref) :
	    cf_store_ca_get_issuer(cf_ca_store(ca), &rec)) != 0) {
		r = cli_fail("ca crl");
		goto out;
	}
	if (rec.role == CF_CA_ROOT &&
	    cli_passphrase(&pass, pass_file, "Root CA passphrase: ", 0) != CLI_OK)
		goto out;
	if (cf_ca_publish_crl(ca, &pem, rec.id, pass) != 0) {
		r = cli_fail("ca crl");
		goto out;
	}
	if (out_file != NULL && cf_file_write_atomic(out_file, pem, strlen(pem), 0644) != 0) {
		r = cli_fail("ca crl --out");
		goto out;
	}
	printf("Published the CRL of %s: crl/%s.crl.pem%s%s\n", rec.name, rec.name,
	    out_file ? " and " : "", out_file ? out_file : "");
	r = CLI_OK;
out:
	free(pem);
	cf_secret_free(pass, 0);
	cf_ca_rec_clear(&rec);
	cf_ca_close(ca);
	return r;
}
