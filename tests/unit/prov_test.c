/*
 * prov_test — provisioning by claim: the name pattern, parameters,
 * templates, topics and messages (cf_prov), and the schema-v6 store parts
 * (templates, claims, provisioned serials, attempts) with their events.
 */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_prov.h"
#include "cf_prov_agent.h"
#include "cf_store.h"

/* ---- the name pattern and parameters ------------------------------------------------ */

static void
test_prov__pattern_expands(void **state)
{
	cf_prov_params p;
	char name[CF_NAME_MAX + 1], serial[CF_PROV_PARAM_NAME_MAX + 1];

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(cf_prov_params_set_kv(&p, "SerialNumber=123"), 0);
	assert_int_equal(cf_prov_params_set(&p, "Model", "x1"), 0);
	assert_int_equal(cf_prov_name_expand(name, sizeof(name), "sensor-{SerialNumber}", &p), 0);
	assert_string_equal(name, "sensor-123");
	assert_int_equal(cf_prov_name_expand(name, sizeof(name), "{Model}.{SerialNumber}", &p), 0);
	assert_string_equal(name, "x1.123");
	assert_int_equal(cf_prov_pattern_serial(serial, "{Model}-{SerialNumber}"), 0);
	assert_string_equal(serial, "Model");
	assert_true(cf_prov_pattern_uses("sensor-{SerialNumber}", "SerialNumber"));
	assert_false(cf_prov_pattern_uses("sensor-{SerialNumber}", "Model"));
	/* replacing a parameter keeps one entry */
	assert_int_equal(cf_prov_params_set(&p, "Model", "x2"), 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(cf_prov_params_get(&p, "Model"), "x2");
}

static void
test_prov__pattern_refused(void **state)
{
	cf_prov_params p;
	char name[16];

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(cf_prov_pattern_check("sensor"), CF_EINVAL); /* no placeholder */
	assert_int_equal(cf_prov_pattern_check(""), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s-{Serial"), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s-}{Serial}"), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s/{Serial}"), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s-{9x}"), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s-{}"), CF_EINVAL);
	assert_int_equal(cf_prov_pattern_check("s-{Serial}"), 0);
	/* a missing parameter, and a name that does not fit */
	assert_int_equal(cf_prov_name_expand(name, sizeof(name), "s-{Serial}", &p), CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "Serial"));
	assert_int_equal(cf_prov_params_set(&p, "Serial", "0123456789abcdef"), 0);
	assert_int_equal(cf_prov_name_expand(name, sizeof(name), "s-{Serial}", &p), CF_EINVAL);
	/* bad names and values */
	assert_int_equal(cf_prov_params_set(&p, "a b", "1"), CF_EINVAL);
	assert_int_equal(cf_prov_params_set(&p, "Serial", "1/2"), CF_EINVAL);
	assert_int_equal(cf_prov_params_set(&p, "Serial", "+"), CF_EINVAL);
	assert_int_equal(cf_prov_params_set(&p, "Serial", ""), CF_EINVAL);
	assert_int_equal(cf_prov_params_set_kv(&p, "novalue"), CF_EINVAL);
}

static void
test_prov__template_roundtrip(void **state)
{
	cf_prov_template t, u;
	char *spec = NULL, *spec2 = NULL;

	(void)state;
	assert_int_equal(cf_prov_template_parse(&t, "sensors",
	    "{\"namePattern\":\"sensor-{SerialNumber}\",\"groups\":[\"fleet\"],"
	    "\"attributes\":{\"model\":\"x1\"},\"allowList\":[\"1\",\"2\"],"
	    "\"hook\":{\"command\":\"/bin/true\",\"timeoutSeconds\":3},\"ratePerMinute\":10,"
	    "\"windowStart\":100,\"windowEnd\":200,\"maxCount\":5,\"maxDenials\":3,"
	    "\"maxConcurrent\":2,\"allowReprovision\":true}"), 0);
	assert_string_equal(t.serial_param, "SerialNumber");
	assert_int_equal(t.n_groups, 1);
	assert_int_equal(t.n_allow, 2);
	assert_true(cf_prov_allowed(&t, "2"));
	assert_false(cf_prov_allowed(&t, "3"));
	assert_int_equal(t.hook_timeout_s, 3);
	assert_int_equal(t.pending_s, 86400);
	assert_int_equal(cf_prov_window_check(&t, 99), CF_EREJECTED);
	assert_int_equal(cf_prov_window_check(&t, 150), 0);
	assert_int_equal(cf_prov_window_check(&t, 200), CF_EREJECTED);
	assert_int_equal(cf_prov_template_spec(&spec, &t), 0);
	assert_int_equal(cf_prov_template_parse(&u, "sensors", spec), 0);
	assert_int_equal(cf_prov_template_spec(&spec2, &u), 0);
	assert_string_equal(spec, spec2);
	assert_int_equal(u.allow_reprovision, 1);
	assert_int_equal(u.max_concurrent, 2);
	free(spec);
	free(spec2);
	cf_prov_template_clear(&t);
	cf_prov_template_clear(&u);
	/* defaults: no allow-list means everything is allowed */
	assert_int_equal(cf_prov_template_parse(&t, "t", "{\"namePattern\":\"d-{S}\"}"), 0);
	assert_true(cf_prov_allowed(&t, "anything"));
	assert_int_equal(t.max_concurrent, 1);
	assert_int_equal(cf_prov_window_check(&t, 1), 0);
	cf_prov_template_clear(&t);
}

static void
test_prov__template_refused(void **state)
{
	static const char *const bad[] = {
		"{}",
		"[]",
		"{\"namePattern\":\"fixed\"}",
		"{\"namePattern\":\"d-{S}\",\"unknown\":1}",
		"{\"namePattern\":\"d-{S}\",\"groups\":\"g\"}",
		"{\"namePattern\":\"d-{S}\",\"attributes\":{\"a\":1}}",
		"{\"namePattern\":\"d-{S}\",\"allowList\":[\"a/b\"]}",
		"{\"namePattern\":\"d-{S}\",\"hook\":{\"command\":\"x\",\"timeoutSeconds\":60}}",
		"{\"namePattern\":\"d-{S}\",\"windowStart\":200,\"windowEnd\":100}",
		"{\"namePattern\":\"d-{S}\",\"maxConcurrent\":0}",
		"{\"namePattern\":\"d-{S}\",\"ratePerMinute\":-1}",
		"{\"namePattern\":\"d-{S}\",\"allowReprovision\":1}",
		"not json",
		NULL,
	};
	cf_prov_template t;
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++) {
		assert_int_not_equal(cf_prov_template_parse(&t, "t", bad[i]), 0);
		cf_prov_template_clear(&t);
	}
	assert_int_not_equal(cf_prov_template_parse(&t, "a/b", "{\"namePattern\":\"d-{S}\"}"), 0);
	cf_prov_template_clear(&t);
}

static void
test_prov__allow_list_file(void **state)
{
	char **v = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(cf_prov_allow_parse(&v, &n, "# serials\n 100 \n\n101\r\n#102\n103"), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0], "100");
	assert_string_equal(v[1], "101");
	assert_string_equal(v[2], "103");
	while (n > 0)
		free(v[--n]);
	free(v);
	assert_int_equal(cf_prov_allow_parse(&v, &n, "ok\nnot ok\n"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "line 2"));
}

static void
test_prov__topics(void **state)
{
	char t[256], tmpl[CF_NAME_MAX + 1];

	(void)state;
	assert_int_equal(cf_prov_topic_format(t, sizeof(t), "cf/", "sensors", NULL, CF_PROTO_REQUEST), 0);
	assert_string_equal(t, "cf/provisioning/sensors/provision");
	assert_int_equal(cf_prov_topic_parse(tmpl, "cf/", t), 0);
	assert_string_equal(tmpl, "sensors");
	assert_int_equal(cf_prov_topic_format(t, sizeof(t), "cf/", "sensors", "dev-1", CF_PROTO_ACCEPTED), 0);
	assert_string_equal(t, "cf/provisioning/sensors/provision/dev-1/accepted");
	assert_int_equal(cf_prov_topic_parse(tmpl, "cf/", t), CF_EINVAL);
	assert_int_equal(cf_prov_topic_format(t, sizeof(t), "cf/", "sensors", "a/b", CF_PROTO_REJECTED),
	    CF_EINVAL);
	assert_int_equal(cf_prov_topic_format(t, sizeof(t), "cf/", "sensors", "+", CF_PROTO_REJECTED),
	    CF_EINVAL);
	assert_int_equal(cf_prov_topic_parse(tmpl, "cf/", "cf/provisioning//provision"), CF_EINVAL);
	assert_int_equal(cf_prov_topic_parse(tmpl, "cf/", "cf/things/a/provision"), CF_EINVAL);
}

static void
test_prov__messages(void **state)
{
	cf_prov_request rq, rq2;
	cf_prov_accepted a, a2;
	cf_prov_rejection j, j2;
	char *text = NULL;

	(void)state;
	memset(&rq, 0, sizeof(rq));
	rq.csr = strdup("-----BEGIN CERTIFICATE REQUEST-----\nx\n-----END CERTIFICATE REQUEST-----\n");
	assert_int_equal(cf_prov_params_set(&rq.params, "SerialNumber", "42"), 0);
	snprintf(rq.client_token, sizeof(rq.client_token), "tok-1");
	assert_int_equal(cf_prov_encode_request(&text, &rq), 0);
	assert_int_equal(cf_prov_decode_request(&rq2, text, strlen(text)), 0);
	assert_string_equal(rq2.csr, rq.csr);
	assert_string_equal(cf_prov_params_get(&rq2.params, "SerialNumber"), "42");
	assert_string_equal(rq2.client_token, "tok-1");
	free(text);
	cf_prov_request_clear(&rq);
	cf_prov_request_clear(&rq2);

	memset(&a, 0, sizeof(a));
	snprintf(a.thing, sizeof(a.thing), "sensor-42");
	memset(a.certificate_id, 'a', CF_ID_LEN);
	a.certificate_pem = "C";
	a.chain_pem = "CH";
	assert_int_equal(cf_prov_encode_accepted(&text, &a), 0);
	if (cf_prov_decode_accepted(&a2, text, strlen(text)) != 0)
		fail_msg("%s: %s", text, cf_error_last());
	assert_string_equal(a2.thing, "sensor-42");
	assert_string_equal(a2.chain_pem, "CH");
	free(text);
	cf_prov_accepted_clear(&a2);

	memset(&j, 0, sizeof(j));
	j.code = CF_PROV_SERIAL_ALREADY_PROVISIONED;
	snprintf(j.message, sizeof(j.message), "no");
	assert_int_equal(cf_prov_encode_rejection(&text, &j), 0);
	assert_non_null(strstr(text, "\"SerialAlreadyProvisioned\""));
	assert_int_equal(cf_prov_decode_rejection(&j2, text, strlen(text)), 0);
	assert_int_equal(j2.code, CF_PROV_SERIAL_ALREADY_PROVISIONED);
	free(text);
}

static void
test_prov__messages_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"parameters\":{}}",
		"{\"csr\":\"x\"}",
		"{\"csr\":\"x\",\"parameters\":[]}",
		"{\"csr\":\"x\",\"parameters\":{\"S\":1}}",
		"{\"csr\":\"x\",\"parameters\":{\"S\":\"a/b\"}}",
		"{\"csr\":\"x\",\"parameters\":{\"a b\":\"1\"}}",
		"{\"csr\":\"x\",\"parameters\":{},\"clientToken\":\"a b\"}",
		"{\"csr\":\"x\",\"csr\":\"y\",\"parameters\":{}}",
		"{\"csr\":\"x\",\"parameters\":{}",
		NULL,
	};
	cf_prov_request rq;
	cf_prov_rejection j;
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++)
		assert_int_not_equal(cf_prov_decode_request(&rq, bad[i], strlen(bad[i])), 0);
	assert_int_not_equal(cf_prov_decode_rejection(&j, "{\"errorCode\":\"Nope\"}", 20), 0);
	assert_string_equal(cf_prov_code_name(CF_PROV__CODE_COUNT), "InternalError");
	assert_true(cf_prov_code_is_misuse(CF_PROV_RATE_EXCEEDED));
	assert_false(cf_prov_code_is_misuse(CF_PROV_PARAMETER_NOT_ALLOWED));
}

/* ---- the store (schema v6) ------------------------------------------------------------ */

struct fx {
	char dir[256];
	char path[PATH_MAX];
	cf_store *st;
	char ca_id[CF_ID_LEN + 1];
	char claim_id[CF_ID_LEN + 1];
	char dev_id[CF_ID_LEN + 1];
};

static void
fake_id(char out[CF_ID_LEN + 1], const char *seed)
{
	cf_sha256_hex(out, seed, strlen(seed));
}

static int
add_cert(cf_store *st, char id[CF_ID_LEN + 1], const char *seed, const char *ca_id, const char *thing)
{
	cf_cert_rec c;

	memset(&c, 0, sizeof(c));
	fake_id(c.id, seed);
	memcpy(id, c.id, CF_ID_LEN + 1);
	snprintf(c.serial, sizeof(c.serial), "%.32s", c.id);
	snprintf(c.ca_id, sizeof(c.ca_id), "%s", ca_id);
	snprintf(c.thing, sizeof(c.thing), "%s", thing ? thing : "");
	c.status = CF_CERT_ACTIVE;
	c.not_before = 1000;
	c.not_after = 1900000000;
	snprintf(c.key_alg, sizeof(c.key_alg), "ECDSA-P256");
	c.key_bits = 256;
	snprintf(c.sig_alg, sizeof(c.sig_alg), "ecdsa-with-SHA256");
	c.pem = "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n";
	return cf_store_cert_insert(st, &c);
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	cf_ca_rec ca;

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/prov_test.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/certfleet.db", fx->dir);
	assert_int_equal(cf_store_open(&fx->st, fx->path, CF_STORE_CREATE), 0);
	memset(&ca, 0, sizeof(ca));
	fake_id(ca.id, "root");
	snprintf(ca.name, sizeof(ca.name), "root");
	ca.role = CF_CA_ROOT;
	ca.status = CF_CERT_ACTIVE;
	snprintf(ca.serial, sizeof(ca.serial), "01");
	ca.not_before = 1000;
	ca.not_after = 2000000000;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "ECDSA-P256");
	ca.key_bits = 256;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "ca/root.key");
	ca.pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
	assert_int_equal(cf_store_ca_insert(fx->st, &ca), 0);
	memcpy(fx->ca_id, ca.id, sizeof(fx->ca_id));
	assert_int_equal(add_cert(fx->st, fx->claim_id, "claim", fx->ca_id, NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "sensor-1", NULL), 0);
	assert_int_equal(add_cert(fx->st, fx->dev_id, "dev", fx->ca_id, "sensor-1"), 0);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	char cmd[PATH_MAX + 16];

	cf_store_close(fx->st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

/* The newest event's type and subject. */
static void
expect_last_event(cf_store *st, const char *type, const char *subject)
{
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int64_t head = 0;

	assert_int_equal(cf_store_event_head(st, &head), 0);
	assert_int_equal(cf_store_event_list_after(st, &ev, &n, head - 1, 1), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].type, type);
	if (subject != NULL)
		assert_string_equal(ev[0].subject, subject);
	cf_event_recs_free(ev, n);
}

static void
test_prov__store_schema_version(void **state)
{
	struct fx *fx = *state;

	assert_true(cf_store_schema_version(fx->st) >= 6); /* 7: key facts on certificates */
}

static void
test_prov__store_templates(void **state)
{
	struct fx *fx = *state;
	cf_prov_template_rec t, *v = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_prov_template_create(fx->st, "sensors",
	    "{\"namePattern\":\"sensor-{S}\", \"allowList\":[\"1\",\"2\"]}"), 0);
	expect_last_event(fx->st, "prov.template_created", "sensors");
	assert_int_equal(cf_store_prov_template_create(fx->st, "sensors", "{}"), CF_EEXISTS);
	assert_int_equal(cf_store_prov_template_create(fx->st, "bad", "[1]"), CF_EINVAL);
	assert_int_equal(cf_store_prov_template_create(fx->st, "a/b", "{}"), CF_EINVAL);
	assert_int_equal(cf_store_prov_template_create(fx->st, "other", "{\"namePattern\":\"o-{S}\"}"), 0);
	assert_int_equal(cf_store_prov_template_get(fx->st, &t, "sensors"), 0);
	assert_string_equal(t.spec, "{\"allowList\":[\"1\",\"2\"],\"namePattern\":\"sensor-{S}\"}");
	cf_prov_template_rec_clear(&t);
	assert_int_equal(cf_store_prov_template_get(fx->st, &t, "nope"), CF_ENOTFOUND);
	assert_int_equal(cf_store_prov_template_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "other");
	cf_prov_template_recs_free(v, n);
}

static void
test_prov__store_claims(void **state)
{
	struct fx *fx = *state;
	cf_claim_rec c, *v = NULL;
	char unknown[CF_ID_LEN + 1];
	size_t n = 0;
	int changed = -1;

	assert_int_equal(cf_store_prov_template_create(fx->st, "sensors", "{\"namePattern\":\"s-{S}\"}"), 0);
	assert_int_equal(cf_store_claim_create(fx->st, fx->claim_id, "nope"), CF_ENOTFOUND);
	fake_id(unknown, "unknown");
	assert_int_equal(cf_store_claim_create(fx->st, unknown, "sensors"), CF_ENOTFOUND);
	/* a thing's certificate is never a claim */
	assert_int_equal(cf_store_claim_create(fx->st, fx->dev_id, "sensors"), CF_EINVAL);
	assert_int_equal(cf_store_claim_create(fx->st, "abc", "sensors"), CF_EINVAL);
	assert_int_equal(cf_store_claim_create(fx->st, fx->claim_id, "sensors"), 0);
	expect_last_event(fx->st, "claim.created", fx->claim_id);
	assert_int_equal(cf_store_claim_create(fx->st, fx->claim_id, "sensors"), CF_EEXISTS);
	assert_int_equal(cf_store_claim_get(fx->st, &c, fx->claim_id), 0);
	assert_int_equal(c.status, CF_CLAIM_ENABLED);
	assert_string_equal(c.template_name, "sensors");
	assert_int_equal(cf_store_claim_get(fx->st, &c, fx->dev_id), CF_ENOTFOUND);

	assert_int_equal(cf_store_claim_set_status(fx->st, &changed, fx->claim_id, CF_CLAIM_DISABLED,
	    "rate above limit"), 0);
	assert_int_equal(changed, 1);
	expect_last_event(fx->st, "claim.status", fx->claim_id);
	assert_int_equal(cf_store_claim_get(fx->st, &c, fx->claim_id), 0);
	assert_int_equal(c.status, CF_CLAIM_DISABLED);
	assert_string_equal(c.reason, "rate above limit");
	/* the same status: no-op, no event */
	assert_int_equal(cf_store_claim_set_status(fx->st, &changed, fx->claim_id, CF_CLAIM_DISABLED,
	    "again"), 0);
	assert_int_equal(changed, 0);
	expect_last_event(fx->st, "claim.status", fx->claim_id);
	assert_int_equal(cf_store_claim_set_status(fx->st, NULL, fx->claim_id, CF_CLAIM_ENABLED, ""),
	    CF_EINVAL);
	assert_int_equal(cf_store_claim_set_status(fx->st, NULL, fx->dev_id, CF_CLAIM_ENABLED, "x"),
	    CF_ENOTFOUND);
	assert_int_equal(cf_store_claim_list(fx->st, &v, &n, "sensors"), 0);
	assert_int_equal(n, 1);
	cf_claim_recs_free(v, n);
	assert_int_equal(cf_store_claim_list(fx->st, &v, &n, "other"), 0);
	assert_int_equal(n, 0);
	cf_claim_recs_free(v, n);
}

static void
test_prov__store_serials_and_attempts(void **state)
{
	struct fx *fx = *state;
	cf_prov_serial_rec x, y, *v = NULL;
	cf_prov_attempt_rec a;
	int64_t count = -1, total = -1, denied = -1;
	size_t n = 0;

	assert_int_equal(cf_store_prov_template_create(fx->st, "sensors", "{\"namePattern\":\"s-{S}\"}"), 0);
	memset(&x, 0, sizeof(x));
	snprintf(x.template_name, sizeof(x.template_name), "sensors");
	snprintf(x.serial, sizeof(x.serial), "1");
	snprintf(x.thing, sizeof(x.thing), "sensor-1");
	memcpy(x.cert_id, fx->dev_id, sizeof(x.cert_id));
	memcpy(x.claim_id, fx->claim_id, sizeof(x.claim_id));
	fake_id(x.key_id, "key-1");
	snprintf(x.client_id, sizeof(x.client_id), "sensor-1");
	assert_int_equal(cf_store_prov_serial_put(fx->st, &x), 0);
	expect_last_event(fx->st, "prov.provisioned", "sensor-1");
	assert_int_equal(cf_store_prov_serial_get(fx->st, &y, "sensors", "1"), 0);
	assert_string_equal(y.thing, "sensor-1");
	assert_true(y.at > 0);
	assert_int_equal(cf_store_prov_serial_find_key(fx->st, &y, x.key_id), 0);
	assert_string_equal(y.serial, "1");
	assert_int_equal(cf_store_prov_serial_get(fx->st, &y, "sensors", "2"), CF_ENOTFOUND);
	assert_int_equal(cf_store_prov_serial_get(fx->st, &y, "sensors", "a/b"), CF_EINVAL);
	/* re-provisioning replaces the row */
	fake_id(x.key_id, "key-2");
	assert_int_equal(cf_store_prov_serial_put(fx->st, &x), 0);
	assert_int_equal(cf_store_prov_serial_count(fx->st, &count, "sensors"), 0);
	assert_int_equal(count, 1);
	snprintf(x.template_name, sizeof(x.template_name), "nope");
	assert_int_equal(cf_store_prov_serial_put(fx->st, &x), CF_ENOTFOUND);
	assert_int_equal(cf_store_prov_serial_list(fx->st, &v, &n, NULL, 0), 0);
	assert_int_equal(n, 1);
	free(v);
	assert_int_equal(cf_store_prov_serial_delete(fx->st, "sensors", "1", "never activated"), 0);
	expect_last_event(fx->st, "prov.serial_released", "sensors");
	assert_int_equal(cf_store_prov_serial_delete(fx->st, "sensors", "1", "again"), CF_ENOTFOUND);

	memset(&a, 0, sizeof(a));
	memcpy(a.claim_id, fx->claim_id, sizeof(a.claim_id));
	snprintf(a.template_name, sizeof(a.template_name), "sensors");
	snprintf(a.serial, sizeof(a.serial), "1");
	snprintf(a.client_id, sizeof(a.client_id), "c1");
	snprintf(a.outcome, sizeof(a.outcome), "accepted");
	a.at = 1000;
	assert_int_equal(cf_store_prov_attempt_add(fx->st, &a), 0);
	expect_last_event(fx->st, "prov.attempt", fx->claim_id);
	snprintf(a.outcome, sizeof(a.outcome), "ParameterNotAllowed");
	a.at = 2000;
	assert_int_equal(cf_store_prov_attempt_add(fx->st, &a), 0);
	a.at = 3000;
	assert_int_equal(cf_store_prov_attempt_add(fx->st, &a), 0);
	assert_int_equal(cf_store_prov_attempt_count(fx->st, &total, &denied, fx->claim_id, 0), 0);
	assert_int_equal(total, 3);
	assert_int_equal(denied, 2);
	assert_int_equal(cf_store_prov_attempt_count(fx->st, &total, &denied, fx->claim_id, 2500), 0);
	assert_int_equal(total, 1);
	assert_int_equal(denied, 1);
	a.outcome[0] = '\0';
	assert_int_equal(cf_store_prov_attempt_add(fx->st, &a), CF_EINVAL);
}

/* A rolled-back transaction leaves neither the claim nor its event. */
static void
test_prov__store_rollback(void **state)
{
	struct fx *fx = *state;
	cf_claim_rec c;
	int64_t head = 0, head2 = 0;

	assert_int_equal(cf_store_prov_template_create(fx->st, "sensors", "{\"namePattern\":\"s-{S}\"}"), 0);
	assert_int_equal(cf_store_event_head(fx->st, &head), 0);
	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_claim_create(fx->st, fx->claim_id, "sensors"), 0);
	cf_store_rollback(fx->st);
	assert_int_equal(cf_store_claim_get(fx->st, &c, fx->claim_id), CF_ENOTFOUND);
	assert_int_equal(cf_store_event_head(fx->st, &head2), 0);
	assert_int_equal(head, head2);
}

/* ---- the device side (cf_prov_agent) ---------------------------------------------------- */

struct dev {
	char dir[256], bundle[300], state[300];
	cf_key *ca_key;
	cf_cert *ca;
	char *ca_pem;
	cf_keystore *ks;
	cf_prov_params params;
	cf_prov_agent_opts o;
};

/* A claim bundle (key + self-signed "claim" certificate, adopted as gen-1) and a CA to answer with. */
static void
dev_setup(struct dev *d)
{
	cf_key *claim_key = NULL;
	cf_cert *claim = NULL;
	char path[400], *pem = NULL;

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/prov_agent_test.XXXXXX");
	assert_non_null(mkdtemp(d->dir));
	snprintf(d->bundle, sizeof(d->bundle), "%s/bundle", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	assert_int_equal(cf_mkdir_p(d->bundle, 0700), 0);
	assert_int_equal(cf_mkdir_p(d->state, 0700), 0);
	assert_int_equal(cf_key_generate(&d->ca_key, CF_KEY_P256), 0);
	assert_int_equal(cf_pki_make_root(&d->ca, d->ca_key, "test CA", 30), 0);
	assert_int_equal(cf_cert_to_pem(&d->ca_pem, d->ca), 0);
	assert_int_equal(cf_key_generate(&claim_key, CF_KEY_P256), 0);
	assert_int_equal(cf_pki_make_root(&claim, claim_key, "claim.t", 30), 0);
	snprintf(path, sizeof(path), "%s/device.key", d->bundle);
	assert_int_equal(cf_key_save(path, claim_key, NULL), 0);
	assert_int_equal(cf_cert_to_pem(&pem, claim), 0);
	snprintf(path, sizeof(path), "%s/device.crt", d->bundle);
	assert_int_equal(cf_file_write_atomic(path, pem, strlen(pem), 0644), 0);
	snprintf(path, sizeof(path), "%s/ca-chain.crt", d->bundle);
	assert_int_equal(cf_file_write_atomic(path, d->ca_pem, strlen(d->ca_pem), 0644), 0);
	assert_int_equal(cf_keystore_file_open(&d->ks, d->bundle), 0);
	assert_int_equal(cf_prov_params_set(&d->params, "S", "42"), 0);
	d->o.template_name = "t";
	d->o.pattern = "s-{S}";
	d->o.state_dir = d->state;
	d->o.params = &d->params;
	d->o.key_alg = CF_KEY_P256;
	d->o.sig_alg = CF_SIG_ECDSA_SHA256;
	free(pem);
	cf_cert_free(claim);
	cf_key_free(claim_key);
}

static void
dev_teardown(struct dev *d)
{
	char cmd[300];

	cf_keystore_free(d->ks);
	cf_cert_free(d->ca);
	cf_key_free(d->ca_key);
	free(d->ca_pem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	assert_int_equal(system(cmd), 0);
}

/* certfleetd's accepted answer for the request payload: a certificate for its CSR. */
static char *
answer_for(struct dev *d, const char *payload, const char *thing)
{
	cf_prov_request rq;
	cf_prov_accepted a;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	char *text = NULL;

	assert_int_equal(cf_prov_decode_request(&rq, payload, strlen(payload)), 0);
	assert_int_equal(cf_csr_parse(&csr, rq.csr, rq.csr_len), 0);
	assert_int_equal(cf_pki_issue_device(&cert, csr, thing, 30, 0, d->ca, d->ca_key), 0);
	memset(&a, 0, sizeof(a));
	snprintf(a.thing, sizeof(a.thing), "%s", thing);
	assert_int_equal(cf_cert_fingerprint(a.certificate_id, cert), 0);
	assert_int_equal(cf_cert_to_pem(&a.certificate_pem, cert), 0);
	a.chain_pem = d->ca_pem;
	snprintf(a.client_token, sizeof(a.client_token), "%s", rq.client_token);
	assert_int_equal(cf_prov_encode_accepted(&text, &a), 0);
	free(a.certificate_pem);
	cf_cert_free(cert);
	cf_csr_free(csr);
	cf_prov_request_clear(&rq);
	return text;
}

static void
test_prov__agent_provisions_and_switches(void **state)
{
	struct dev d;
	cf_prov_agent *a = NULL;
	cf_keystore_status ks;
	cf_prov_code code;
	char *topic = NULL, *payload = NULL, *topic2 = NULL, *payload2 = NULL, *ans = NULL;
	char *acc = NULL, *rej = NULL, *other, thing[CF_NAME_MAX + 1];
	const char *bad = "{\"errorCode\":\"SerialAlreadyProvisioned\",\"errorMessage\":\"no\"}";

	(void)state;
	dev_setup(&d);
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), 0);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_NONE);
	assert_string_equal(cf_prov_agent_thing(a), "s-42");
	assert_int_equal(cf_prov_agent_done_thing(thing, d.state), CF_ENOTFOUND);
	assert_int_equal(cf_prov_agent_request(a, &topic, &payload), 0);
	assert_string_equal(topic, "cf/provisioning/t/provision");
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_REQUESTED);
	assert_int_equal(d.ks->ops->status(d.ks->st, &ks), 0);
	assert_int_equal(ks.active, 1);
	assert_int_equal(ks.pending, 2);

	/* a restart asks again with the same key */
	cf_prov_agent_free(a);
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), 0);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_REQUESTED);
	assert_int_equal(cf_prov_agent_request(a, &topic2, &payload2), 0);
	assert_int_equal(d.ks->ops->status(d.ks->st, &ks), 0);
	assert_int_equal(ks.pending, 2);

	/* replies: another topic is not ours; a rejection changes nothing */
	assert_int_equal(cf_prov_agent_reply_topics(a, &acc, &rej), 0);
	assert_string_equal(acc, "cf/provisioning/t/provision/s-42/accepted");
	assert_int_equal(cf_prov_agent_reply(a, &code, "cf/provisioning/t/provision/x/accepted", "{}", 2),
	    CF_ENOTFOUND);
	assert_int_equal(cf_prov_agent_reply(a, &code, rej, bad, strlen(bad)), CF_EREJECTED);
	assert_int_equal(code, CF_PROV_SERIAL_ALREADY_PROVISIONED);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_REQUESTED);

	/* a certificate for another name is refused; the right one switches the pair */
	ans = answer_for(&d, payload2, "s-42");
	other = strdup(ans);
	memcpy(strstr(other, "\"thingName\":\"s-42\"") + 16, "3", 1);
	assert_int_equal(cf_prov_agent_reply(a, &code, acc, other, strlen(other)), CF_EINVAL);
	free(other);
	assert_int_equal(cf_prov_agent_reply(a, &code, acc, ans, strlen(ans)), 0);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_DONE);
	assert_int_equal(d.ks->ops->status(d.ks->st, &ks), 0);
	assert_int_equal(ks.active, 2);
	assert_int_equal(ks.backup, 0); /* the claim's key is gone */
	assert_int_equal(cf_prov_agent_done_thing(thing, d.state), 0);
	assert_string_equal(thing, "s-42");
	free(topic);
	free(payload);
	assert_int_equal(cf_prov_agent_request(a, &topic, &payload), CF_ESTATE);
	cf_prov_agent_free(a);
	/* done stays done */
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), 0);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_DONE);
	cf_prov_agent_free(a);
	free(ans);
	free(acc);
	free(rej);
	free(topic);
	free(payload);
	free(topic2);
	free(payload2);
	dev_teardown(&d);
}

/* A power cut after the certificate was installed: the next start finishes the switch; keep_claim keeps the claim. */
static void
test_prov__agent_resumes_installed(void **state)
{
	struct dev d;
	cf_prov_agent *a = NULL;
	cf_keystore_status ks;
	char *topic = NULL, *payload = NULL, *ans = NULL, path[400];
	cf_prov_accepted acc;
	const char *journal;

	(void)state;
	dev_setup(&d);
	d.o.keep_claim = 1;
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), 0);
	assert_int_equal(cf_prov_agent_request(a, &topic, &payload), 0);
	cf_prov_agent_free(a);
	ans = answer_for(&d, payload, "s-42");
	assert_int_equal(cf_prov_decode_accepted(&acc, ans, strlen(ans)), 0);
	/* what the agent had done before the cut: certificate installed, journal says so */
	assert_int_equal(d.ks->ops->install_cert(d.ks->st, 2, acc.certificate_pem,
	    strlen(acc.certificate_pem)), 0);
	journal = "{\"clientToken\":\"x\",\"generation\":2,\"state\":\"installed\",\"thing\":\"s-42\"}";
	snprintf(path, sizeof(path), "%s/provision.json", d.state);
	assert_int_equal(cf_file_write_atomic(path, journal, strlen(journal), 0600), 0);
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), 0);
	assert_int_equal(cf_prov_agent_state_get(a), CF_PROV_AGENT_DONE);
	assert_int_equal(d.ks->ops->status(d.ks->st, &ks), 0);
	assert_int_equal(ks.active, 2);
	assert_int_equal(ks.backup, 1); /* keep_claim */
	cf_prov_agent_free(a);
	/* a damaged journal is refused, not guessed at */
	assert_int_equal(cf_file_write_atomic(path, "{", 1, 0600), 0);
	assert_int_equal(cf_prov_agent_start(&a, &d.o, d.ks), CF_ECORRUPT);
	cf_prov_accepted_clear(&acc);
	free(ans);
	free(topic);
	free(payload);
	dev_teardown(&d);
}

int
main(void)
{
#define T(name) cmocka_unit_test(name)
#define S(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_prov__pattern_expands),
		T(test_prov__pattern_refused),
		T(test_prov__template_roundtrip),
		T(test_prov__template_refused),
		T(test_prov__allow_list_file),
		T(test_prov__topics),
		T(test_prov__messages),
		T(test_prov__messages_refused),
		S(test_prov__store_schema_version),
		S(test_prov__store_templates),
		S(test_prov__store_claims),
		S(test_prov__store_serials_and_attempts),
		S(test_prov__store_rollback),
		T(test_prov__agent_provisions_and_switches),
		T(test_prov__agent_resumes_installed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
