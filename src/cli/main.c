/*
 * certfleet — the operator CLI (docs/cli.md).
 *
 * Owns the verb table, global options and the helpers every verb shares.
 * Verbs are thin: they parse options, call the library and print.
 */
#define _XOPEN_SOURCE 700 /* strptime */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const cli_verb verbs[] = {
	{ NULL, "init", cli_init,
	  "--dir DIR [--passphrase-file F] [--intermediate-passphrase-file F] "
	  "[--ca-key-algorithm A] [--root-cn CN] [--intermediate-name NAME] "
	  "[--ca-validity-days N] [--device-validity-days N] [--mqtt-port N] [--api-port N] "
	  "[--pkcs11-uri URI --pkcs11-module SO --pkcs11-pin-file F]",
	  "Creates a data directory: an offline root (key encrypted with the passphrase), a first "
	  "intermediate that issues device certificates, the registry and the configuration." },
	{ "ca", "init", cli_init, "--dir DIR [...]", "Same as 'certfleet init'." },
	{ "ca", "list", cli_ca_list, "[--json]", "Lists the CAs." },
	{ "ca", "create-intermediate", cli_ca_create_intermediate,
	  "NAME [--passphrase-file F] [--intermediate-passphrase-file F] [--key-algorithm A] "
	  "[--validity-days N] [--set-issuer] [--pkcs11-uri URI]",
	  "Creates an intermediate CA signed by the root (needs the root passphrase)." },
	{ "ca", "set-issuer", cli_ca_set_issuer, "CA",
	  "Makes an ACTIVE intermediate the CA that issues device certificates." },
	{ "ca", "revoke", cli_ca_revoke, "CA [--reason R] [--passphrase-file F]",
	  "The root revokes an intermediate (needs the root passphrase) and rewrites its CRL." },
	{ "ca", "crl", cli_ca_crl, "[CA] [--out FILE] [--passphrase-file F]",
	  "Regenerates a CA's CRL (default: the issuing CA) into crl/NAME.crl.pem and --out." },
	{ "thing", "create", cli_thing_create,
	  "NAME [--attr k=v]... [--group G]... [--key-algorithm A] [--signing-algorithm S] "
	  "[--validity-days N] [--bundle OUTDIR | --csr FILE] [--json]",
	  "Registers a thing. --bundle generates its key here and writes device.key, device.crt, "
	  "ca-chain.crt and agent.conf to OUTDIR; --csr issues from the device's own CSR." },
	{ "thing", "list", cli_thing_list, "[--json]", "Lists things." },
	{ "thing", "describe", cli_thing_describe, "NAME [--json]",
	  "Shows a thing's attributes, groups and certificates." },
	{ "thing", "delete", cli_thing_delete, "NAME",
	  "Deletes a thing (refused while it holds an ACTIVE or PENDING_ACTIVATION certificate)." },
	{ "group", "create", cli_group_create, "NAME [--query k=v[,k=v...]]",
	  "Creates a static group, or a dynamic one whose members match the attribute query." },
	{ "group", "add", cli_group_add, "GROUP THING...", "Adds things to a static group." },
	{ "group", "remove", cli_group_remove, "GROUP THING...",
	    "Removes things from a static group." },
	{ "group", "list", cli_group_list, "[--json]", "Lists groups and their members." },
	{ "cert", "list", cli_cert_list,
	  "[--status S] [--thing T] [--ca C] [--expiring-within DAYS] [--json]",
	  "Lists certificates." },
	{ "cert", "describe", cli_cert_describe, "ID [--json] [--pem]",
	  "Shows a certificate (ID or a unique prefix of at least 8 characters)." },
	{ "cert", "activate", cli_cert_activate, "ID", "Sets a certificate ACTIVE." },
	{ "cert", "deactivate", cli_cert_deactivate, "ID", "Sets a certificate INACTIVE." },
	{ "cert", "revoke", cli_cert_revoke, "ID [--reason R]",
	  "Revokes a certificate (terminal) and rewrites its CA's CRL." },
	{ "events", "list", cli_events_list, "[--since TIME] [--limit N] [--json]",
	  "Lists the event log." },
	{ "events", "verify", cli_events_verify, "",
	  "Recomputes the event log's hash chain and reports the first broken event." },
	{ NULL, "status", cli_status, "[--json]",
	  "Asks the running certfleetd (api_host:api_port) for its health and the registry counts." },
	{ "connections", "list", cli_connections_list, "[--client-id X] [--open] [--json]",
	  "Lists broker connections recorded by certfleetd, newest first (--open: only those still open)." },
	{ "job", "create-rotation", cli_job_create_rotation,
	  "(--thing NAME | --group NAME | --issuer CA | --expiring-within DAYS | --weak-key)... "
	  "[--continuous] [--key-algorithm A] [--signing-algorithm S] [--max-per-minute N] "
	  "[--ramp-base N --ramp-factor F (--ramp-after-notified N | --ramp-after-succeeded N)] "
	  "[--abort TYPE:PERCENT:MIN]... [--retry TYPE:N]... [--in-progress-timeout T] "
	  "[--step-timeout T] [--start-at TIME] [--end-at TIME] "
	  "[--end-behavior STOP_ROLLOUT|CANCEL|FORCE_CANCEL] [--window DAY@HH:MM+MIN]... "
	  "[--job-id ID] [--comment TEXT] [--json]",
	  "Asks certfleetd to rotate the certificates of the targets: things, groups, and the things "
	  "of ACTIVE certificates matching a query (all its criteria). Every flag is checked here "
	  "before anything is sent. Prints the job id and a summary (--json: the job)." },
	{ "job", "list", cli_job_list, "[--json]", "Lists jobs with their counts per status (via certfleetd)." },
	{ "job", "describe", cli_job_describe, "ID [--json]",
	  "Shows a job: document, targets, configuration, counts per status and each thing's "
	  "execution (via certfleetd)." },
	{ "job", "cancel", cli_job_cancel, "ID [--force] [--comment TEXT] [--json]",
	  "Cancels a job: its QUEUED executions become CANCELED (--force: the IN_PROGRESS ones too). "
	  "A job that has already ended is exit 1." },
	{ "job", "watch", cli_job_watch, "ID [--interval SECONDS] [--timeout T]",
	  "Follows a job until it is CANCELED or COMPLETED: a progress bar on a terminal, else one "
	  "line per change. Exit 0 if every execution SUCCEEDED, 1 otherwise (naming them) or on "
	  "--timeout." },
	{ "audit", "run", cli_audit_run,
	  "[--checks A,B...] [--param CHECK=N]... [--daemon [--no-mitigate]] [--json]",
	  "Runs the audit checks (all, or those named) and stores the audit with its findings; "
	  "--daemon: certfleetd runs it and applies its mitigation rules (docs/audit.md)." },
	{ "audit", "list", cli_audit_list, "[--json]", "Lists audits, newest first." },
	{ "audit", "findings", cli_audit_findings,
	  "[--audit ID] [--severity S] [--check C] [--json]",
	  "Lists the findings of an audit (default: the latest finished one)." },
	{ "audit", "suppress", cli_audit_suppress,
	  "--check C --resource R [--until TIME | --forever] [--comment T]",
	  "Suppresses a check's findings for one resource, until TIME or forever (the default)." },
	{ "audit", "unsuppress", cli_audit_unsuppress, "--check C --resource R",
	  "Removes a suppression." },
	{ "audit", "export", cli_audit_export, "--format json|csv|html [--audit ID] [--out FILE]",
	  "Writes an audit's report (default: the latest finished audit) to FILE or stdout." },
	{ NULL, "mitigate", cli_mitigate,
	  "--finding ID... --action deactivate|revoke|deactivate-ca|quarantine|rotate|notify... [--json]",
	  "Applies the actions in order to each finding (a failed action stops the rest for that "
	  "finding); a suppressed finding is refused." },
	{ "notify", "test", cli_notify_test, "[--json]",
	  "Asks certfleetd to queue a notification.test for every configured sink (webhook, exec) "
	  "and prints the outbox ids." },
	{ "notify", "list", cli_notify_list, "[--state PENDING|DELIVERED|GAVE_UP] [--limit N] [--json]",
	  "Lists the notification outbox, newest first: sink, kind, state, attempts, last error "
	  "(via certfleetd)." },
	{ "provision", "template-create", cli_prov_template_create,
	  "NAME --name-pattern P [--group G]... [--attr k=v]... [--allow-file F] "
	  "[--allow-hook CMD [--hook-timeout S]] [--rate-per-minute N] [--window-start T] "
	  "[--window-end T] [--max-count N] [--allow-reprovision] [--max-denials N] "
	  "[--max-concurrent N] [--pending-seconds N] [--json]",
	  "Creates a provisioning template: how a device claiming with it is named (e.g. "
	  "sensor-{SerialNumber}), its groups and attributes, which parameters are allowed and the "
	  "limits whose breach disables the claim (docs/provisioning.md)." },
	{ "provision", "template-list", cli_prov_template_list, "[--json]",
	  "Lists provisioning templates." },
	{ "provision", "template-describe", cli_prov_template_describe, "NAME [--json]",
	  "Shows a template's spec, its claims and how many serials it provisioned." },
	{ "provision", "claim-create", cli_prov_claim_create,
	  "TEMPLATE --bundle OUTDIR [--key-algorithm A] [--signing-algorithm S] [--validity-days N] "
	  "[--json]",
	  "Issues a claim certificate for a batch of devices (from the issuing CA) and writes its "
	  "bundle: device.key, device.crt, ca-chain.crt and agent.conf for certfleet-agent." },
	{ "provision", "claim-list", cli_prov_claim_list, "[--template T] [--json]",
	  "Lists claim certificates with their status and the reason of the last change." },
	{ "provision", "claim-disable", cli_prov_claim_disable, "ID [--reason R]",
	  "Disables a claim: refused at CONNECT from now on and its live connections kicked." },
	{ "provision", "claim-enable", cli_prov_claim_enable, "ID [--reason R]",
	  "Enables a disabled claim again (its denial count starts over)." },
};

#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

static void
print_synopsis(FILE *f, const cli_verb *v)
{
	fprintf(f, "certfleet %s%s%s %s\n", v->group ? v->group : "", v->group ? " " : "", v->name,
	    v->synopsis);
}

static void
print_help(FILE *f, const cli_verb *v)
{
	fprintf(f, "usage: ");
	print_synopsis(f, v);
	fprintf(f, "\n%s\n\nEvery verb also takes --dir DIR (default $CERTFLEET_DIR, then "
	    "./certfleet-data) and --help.\n", v->help);
}

static void
print_verbs(FILE *f, const char *group)
{
	size_t i;

	fprintf(f, "usage:\n");
	for (i = 0; i < N_VERBS; i++) {
		if (group != NULL && (verbs[i].group == NULL || strcmp(verbs[i].group, group) != 0))
			continue;
		fprintf(f, "  ");
		print_synopsis(f, &verbs[i]);
	}
	fprintf(f, "\nGlobal: --dir DIR. Exit codes: 0 ok, 1 failed, 2 usage. See docs/cli.md.\n");
}

int
cli_getopt(cli *c, int argc, char **argv, const struct option *opts)
{
	int ch;

	opterr = 0;
	for (;;) {
		/* Long options only (and -h); GNU getopt moves operands to the end. */
		ch = getopt_long(argc, argv, ":h", opts, NULL);
		switch (ch) {
		case CLI_OPT_DIR:
			c->dir = optarg;
			c->dir_set = 1;
			continue;
		case CLI_OPT_HELP:
			print_help(stdout, c->verb);
			return CLI_DONE_OK;
		case '?':
			cli_usage(c, "unknown option '%s'", argv[optind - 1]);
			return CLI_DONE_USAGE;
		case ':':
			cli_usage(c, "option '%s' needs a value", argv[optind - 1]);
			return CLI_DONE_USAGE;
		default:
			return ch;
		}
	}
}

int
cli_plain_opts(cli *c, int argc, char **argv, int *json)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_DONE_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case CLI_OPT_JSON:
			if (json == NULL)
				return cli_usage(c, "this verb has no --json");
			*json = 1;
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	return CLI_OK;
}

int
cli_one_operand(cli *c, int argc, char **argv, int *json, const char *what, cf_ca **ca)
{
	int r;

	if ((r = cli_plain_opts(c, argc, argv, json)) != CLI_OK)
		return r;
	if (argc - optind != 1)
		return cli_usage(c, "give one %s", what);
	return cli_open(c, ca);
}

int
cli_usage(cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "certfleet: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: ");
	print_synopsis(stderr, c->verb);
	return CLI_USAGE;
}

int
cli_usage_error(cli *c)
{
	return cli_usage(c, "%s", cf_error_last());
}

int
cli_fail(const char *what)
{
	fprintf(stderr, "certfleet: %s: %s\n", what, cf_error_last());
	return CLI_FAIL;
}

int
cli_open(cli *c, cf_ca **out)
{
	if (cf_ca_open(out, c->dir) != 0)
		return cli_fail("cannot open the data directory");
	return CLI_OK;
}

int
cli_passphrase(char **out, const char *file, const char *prompt, int confirm)
{
	if (cf_passphrase_read(out, file, prompt, confirm, confirm ? 8 : 1) != 0)
		return cli_fail("passphrase");
	return CLI_OK;
}

int
cli_print_json(json_t *j)
{
	char *s;

	if (j == NULL || (s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
		json_decref(j);
		fprintf(stderr, "certfleet: out of memory\n");
		return CLI_FAIL;
	}
	puts(s);
	free(s);
	json_decref(j);
	return CLI_OK;
}

int
cli_read_file(char **out, size_t *out_len, const char *path, const char *what)
{
	if (cf_file_read(out, out_len, path, 1024 * 1024) != 0) {
		fprintf(stderr, "certfleet: %s: %s\n", what, cf_error_last());
		return CLI_FAIL;
	}
	return CLI_OK;
}

const char *
cli_time(char buf[CLI_TIME_LEN], int64_t t)
{
	cf_time_format(buf, CLI_TIME_LEN, t);
	return buf;
}

int
cli_parse_time(int64_t *out, const char *s)
{
	struct tm tm;
	const char *end;
	char *e;
	long long v;

	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) != NULL && *end == '\0')
		goto ok;
	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%d", &tm)) != NULL && *end == '\0')
		goto ok;
	errno = 0;
	v = strtoll(s, &e, 10);
	if (*s != '\0' && *e == '\0' && errno == 0 && v >= 0) {
		*out = v;
		return 0;
	}
	cf_error_set("'%s' is not a time (use 2026-11-23T10:00:00Z, 2026-11-23 or epoch seconds)", s);
	return CF_EINVAL;
ok:
	*out = (int64_t)timegm(&tm);
	return 0;
}

int
cli_parse_int(long *out, const char *s, long min, long max)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (*s == '\0' || *e != '\0' || errno != 0 || v < min || v > max) {
		cf_error_set("'%s' is not a whole number from %ld to %ld", s, min, max);
		return CF_EINVAL;
	}
	*out = v;
	return 0;
}

static const cli_verb *
find_verb(const char *group, const char *name)
{
	size_t i;

	for (i = 0; i < N_VERBS; i++) {
		if (verbs[i].group == NULL && group == NULL && strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
		if (verbs[i].group != NULL && group != NULL && strcmp(verbs[i].group, group) == 0 &&
		    strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	}
	return NULL;
}

static int
is_group(const char *name)
{
	size_t i;

	for (i = 0; i < N_VERBS; i++)
		if (verbs[i].group != NULL && strcmp(verbs[i].group, name) == 0)
			return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	cli c = { .dir = NULL, .verb = NULL };
	const char *env = getenv("CERTFLEET_DIR");
	int i = 1, shift;

	c.dir = env && *env ? env : "./certfleet-data";
	c.dir_set = env && *env;
	/* Global options before the verb. */
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			print_verbs(stdout, NULL);
			return CLI_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("certfleet 0.1.0\n");
			return CLI_OK;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			c.dir = argv[i + 1];
			c.dir_set = 1;
			i += 2;
		} else if (strncmp(argv[i], "--dir=", 6) == 0) {
			c.dir = argv[i] + 6;
			c.dir_set = 1;
			i++;
		} else {
			fprintf(stderr, "certfleet: unknown option '%s'\n", argv[i]);
			print_verbs(stderr, NULL);
			return CLI_USAGE;
		}
	}
	if (i >= argc) {
		print_verbs(stderr, NULL);
		return CLI_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		print_verbs(stdout, i + 1 < argc ? argv[i + 1] : NULL);
		return CLI_OK;
	}
	if ((c.verb = find_verb(NULL, argv[i])) != NULL) {
		shift = i;
	} else if (is_group(argv[i])) {
		if (i + 1 >= argc || strcmp(argv[i + 1], "--help") == 0 ||
		    strcmp(argv[i + 1], "-h") == 0) {
			print_verbs(i + 1 < argc ? stdout : stderr, argv[i]);
			return i + 1 < argc ? CLI_OK : CLI_USAGE;
		}
		if ((c.verb = find_verb(argv[i], argv[i + 1])) == NULL) {
			fprintf(stderr, "certfleet: unknown verb '%s %s'\n", argv[i], argv[i + 1]);
			print_verbs(stderr, argv[i]);
			return CLI_USAGE;
		}
		shift = i + 1;
	} else {
		fprintf(stderr, "certfleet: unknown verb '%s'\n", argv[i]);
		print_verbs(stderr, NULL);
		return CLI_USAGE;
	}
	/* The handler sees its verb as argv[0], as getopt expects. */
	return c.verb->fn(&c, argc - shift, argv + shift);
}
