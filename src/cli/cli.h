/*
 * The certfleet CLI: shared state and helpers for the verb handlers.
 * Each cli_<group>.c holds the handlers of one verb group; the verb table
 * (names, synopses, help) lives in main.c and nowhere else.
 */
#ifndef CF_CLI_H
#define CF_CLI_H

#include <getopt.h>
#include <jansson.h>

#include "cf_ca.h"
#include "cf_json.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_verb cli_verb;

typedef struct {
	const char *dir;      /* --dir, $CERTFLEET_DIR or ./certfleet-data */
	int dir_set;          /* --dir or $CERTFLEET_DIR named it */
	const cli_verb *verb; /* the verb being run */
} cli;

typedef int (*cli_fn)(cli *c, int argc, char **argv);

struct cli_verb {
	const char *group;    /* "ca", "thing" ... or NULL for a top-level verb */
	const char *name;
	cli_fn fn;
	const char *synopsis; /* arguments and options, after "certfleet GROUP NAME" */
	const char *help;     /* one paragraph */
};

/* Options every verb accepts; put CLI_COMMON_OPTIONS first in each table. */
#define CLI_OPT_DIR 1000
#define CLI_OPT_HELP 'h'
#define CLI_OPT_JSON 1001
#define CLI_COMMON_OPTIONS { "dir", required_argument, NULL, CLI_OPT_DIR }, \
	{ "help", no_argument, NULL, CLI_OPT_HELP }

/*
 * Runs getopt_long over a verb's options. Handles --dir and --help itself:
 * returns the option character, -1 at the end, or CLI_DONE_OK / CLI_DONE_USAGE
 * (the caller returns CLI_OK / CLI_USAGE) after --help or a bad option.
 */
#define CLI_DONE_OK (-100)
#define CLI_DONE_USAGE (-101)
int cli_getopt(cli *c, int argc, char **argv, const struct option *opts);

/*
 * Parses a verb that takes only the common options and, when json is
 * non-NULL, --json. Returns CLI_OK, CLI_DONE_OK (after --help) or CLI_USAGE.
 */
int cli_plain_opts(cli *c, int argc, char **argv, int *json);

/*
 * For verbs with exactly one operand: cli_plain_opts, then opens the data
 * directory. Returns CLI_OK (operand at argv[optind], *ca open), or what the
 * caller returns: CLI_DONE_OK after --help, CLI_USAGE, CLI_FAIL.
 */
int cli_one_operand(cli *c, int argc, char **argv, int *json, const char *what, cf_ca **ca);

/* Prints "certfleet: usage: ..." for the current verb and returns CLI_USAGE. */
int cli_usage(cli *c, const char *fmt, ...) CF_PRINTF(2, 3);
/* Prints "certfleet: <what>: <cf_error_last()>" and returns CLI_FAIL. */
int cli_fail(const char *what);
/* Prints "certfleet: usage: <cf_error_last()>" and returns CLI_USAGE (bad option values). */
int cli_usage_error(cli *c);
/* Opens the data directory, printing the failure. */
int cli_open(cli *c, cf_ca **out);
/* Reads a passphrase from --passphrase-file or the terminal. */
int cli_passphrase(char **out, const char *file, const char *prompt, int confirm);
/* Prints JSON (pretty) and frees it. */
int cli_print_json(json_t *j);
/* Reads a file named on the command line (CSR ...). */
int cli_read_file(char **out, size_t *out_len, const char *path, const char *what);
/* "2026-11-23T10:30:00Z" into a stack buffer. */
#define CLI_TIME_LEN 32
const char *cli_time(char buf[CLI_TIME_LEN], int64_t t);
/* Parses RFC 3339 UTC, YYYY-MM-DD or epoch seconds. */
int cli_parse_time(int64_t *out, const char *s);
/* Parses a positive whole number in [min, max]. */
int cli_parse_int(long *out, const char *s, long min, long max);

/* cli_http.c: certfleetd's API base URL ("http://host:port") from certfleet.conf. */
int cli_api_url(cli *c, char *out, size_t len);
/*
 * method base + path with an optional JSON body. Any HTTP answer is CLI_OK
 * with *code and *out (JSON, or the text as a JSON string; caller frees);
 * a daemon that does not answer prints the error and is CLI_FAIL.
 */
int cli_http(const char *base, const char *method, const char *path, json_t *req_body,
    long *code, json_t **out);
/* Prints the daemon's {"error": ...} (or the status) and returns CLI_FAIL. */
int cli_api_fail(const char *what, long code, json_t *j);

/* Verb handlers. */
int cli_init(cli *c, int argc, char **argv);
int cli_ca_list(cli *c, int argc, char **argv);
int cli_ca_create_intermediate(cli *c, int argc, char **argv);
int cli_ca_set_issuer(cli *c, int argc, char **argv);
int cli_ca_revoke(cli *c, int argc, char **argv);
int cli_ca_crl(cli *c, int argc, char **argv);
int cli_thing_create(cli *c, int argc, char **argv);
int cli_thing_list(cli *c, int argc, char **argv);
int cli_thing_describe(cli *c, int argc, char **argv);
int cli_thing_delete(cli *c, int argc, char **argv);
int cli_group_create(cli *c, int argc, char **argv);
int cli_group_add(cli *c, int argc, char **argv);
int cli_group_remove(cli *c, int argc, char **argv);
int cli_group_list(cli *c, int argc, char **argv);
int cli_cert_list(cli *c, int argc, char **argv);
int cli_cert_describe(cli *c, int argc, char **argv);
int cli_cert_activate(cli *c, int argc, char **argv);
int cli_cert_deactivate(cli *c, int argc, char **argv);
int cli_cert_revoke(cli *c, int argc, char **argv);
int cli_events_list(cli *c, int argc, char **argv);
int cli_events_verify(cli *c, int argc, char **argv);
int cli_status(cli *c, int argc, char **argv);
int cli_connections_list(cli *c, int argc, char **argv);
int cli_job_create_rotation(cli *c, int argc, char **argv);
int cli_job_list(cli *c, int argc, char **argv);
int cli_job_describe(cli *c, int argc, char **argv);
int cli_audit_run(cli *c, int argc, char **argv);
int cli_audit_list(cli *c, int argc, char **argv);
int cli_audit_findings(cli *c, int argc, char **argv);
int cli_audit_suppress(cli *c, int argc, char **argv);
int cli_audit_unsuppress(cli *c, int argc, char **argv);
int cli_audit_export(cli *c, int argc, char **argv);
int cli_mitigate(cli *c, int argc, char **argv);
int cli_notify_test(cli *c, int argc, char **argv);
int cli_notify_list(cli *c, int argc, char **argv);
int cli_job_cancel(cli *c, int argc, char **argv);
int cli_job_watch(cli *c, int argc, char **argv);

/* cli_prov.c */
int cli_prov_template_create(cli *c, int argc, char **argv);
int cli_prov_template_list(cli *c, int argc, char **argv);
int cli_prov_template_describe(cli *c, int argc, char **argv);
int cli_prov_claim_create(cli *c, int argc, char **argv);
int cli_prov_claim_list(cli *c, int argc, char **argv);
int cli_prov_claim_disable(cli *c, int argc, char **argv);
int cli_prov_claim_enable(cli *c, int argc, char **argv);

#endif
