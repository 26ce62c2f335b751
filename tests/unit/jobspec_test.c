/*
 * jobspec_test — a job's targets and configuration JSON (cf_jobspec): every
 * member accepted into the cf_job structs, every bad value refused with
 * CF_EINVAL and its JSON path (one table), canonical dumps that round-trip,
 * and target resolution against a real temporary store: things, a static
 * and a dynamic group, and certificate queries by issuer (name and id
 * prefix), expiry and key quality — an RSA-1024 certificate made here with
 * OpenSSL for the default policy, a blocklisted P-256 key for a custom one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cf_test.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf_jobspec.h"
#include "cf_util.h"

#define T0 INT64_C(1795000000) /* "now" for the resolve tests */
#define DAY INT64_C(86400)

/* ---- parsing: every member ------------------------------------------------- */

static void
test_jobspec__targets_every_member(void **state)
{
	cf_jobspec_targets t;
	char *d = NULL;

	(void)state;
	must(cf_jobspec_targets_parse(&t,
	    "{\"things\": [\"sensor-2\", \"sensor-1\", \"sensor-2\"], \"groups\": [\"north\"],"
	    " \"certificates\": {\"issuer\": \"issuing-1\", \"expiringWithinDays\": 30,"
	    " \"weakKey\": true}}"));
	assert_int_equal(t.n_things, 2); /* duplicate dropped, order kept */
	assert_string_equal(t.things[0], "sensor-2");
	assert_string_equal(t.things[1], "sensor-1");
	assert_int_equal(t.n_groups, 1);
	assert_string_equal(t.groups[0], "north");
	assert_true(t.has_query);
	assert_string_equal(t.issuer, "issuing-1");
	assert_int_equal(t.expiring_within_s, 30 * DAY);
	assert_int_equal(t.weak_key, 1);
	must(cf_jobspec_targets_dump(&d, &t));
	assert_string_equal(d, "{\"certificates\":{\"expiringWithinDays\":30,\"issuer\":\"issuing-1\","
	    "\"weakKey\":true},\"groups\":[\"north\"],\"things\":[\"sensor-2\",\"sensor-1\"]}");
	free(d);
	cf_jobspec_targets_clear(&t);
	cf_jobspec_targets_clear(&t); /* twice is harmless */
	cf_jobspec_targets_clear(NULL);

	must(cf_jobspec_targets_parse(&t, "{\"certificates\": {\"weakKey\": true}}"));
	assert_int_equal(t.n_things + t.n_groups, 0);
	assert_true(t.has_query && t.weak_key);
	assert_string_equal(t.issuer, "");
	assert_int_equal(t.expiring_within_s, 0);
	cf_jobspec_targets_clear(&t);
}

static const char full_config[] =
    "{\"rollout\": {\"maxPerMinute\": 100, \"exponentialRate\": {\"baseRatePerMinute\": 5,"
    "   \"incrementFactor\": 1.5, \"rateIncreaseCriteria\": {\"numberOfSucceededThings\": 10}}},"
    " \"abort\": [{\"failureType\": \"FAILED\", \"thresholdPercentage\": 10,"
    "   \"minNumberOfExecutedThings\": 20},"
    "  {\"failureType\": \"ALL\", \"thresholdPercentage\": 50.5, \"minNumberOfExecutedThings\": 4}],"
    " \"retry\": [{\"failureType\": \"ALL\", \"numberOfRetries\": 2},"
    "  {\"failureType\": \"TIMED_OUT\", \"numberOfRetries\": 0}],"
    " \"timeouts\": {\"inProgressSeconds\": 3600, \"stepSeconds\": 600},"
    " \"schedule\": {\"startTime\": \"2026-12-01T00:00:00Z\", \"endTime\": \"2026-12-31T23:59:59Z\","
    "   \"endBehavior\": \"FORCE_CANCEL\","
    "   \"maintenanceWindows\": [\"sat@22:00+240\", \"daily@01:00+120\"]}}";

static void
test_jobspec__config_every_member(void **state)
{
	cf_jobspec_config c;
	char *d = NULL;

	(void)state;
	must(cf_jobspec_config_parse(&c, full_config));
	assert_true(c.has_rollout);
	assert_int_equal(c.rollout.max_per_minute, 100);
	assert_int_equal(c.rollout.base_per_minute, 5);
	assert_true(c.rollout.increment_factor == 1.5);
	assert_int_equal(c.rollout.notified_step, 0);
	assert_int_equal(c.rollout.succeeded_step, 10);
	assert_int_equal(c.n_abort, 2);
	assert_int_equal(c.abort[0].type, CF_JOB_FAILURE_FAILED);
	assert_true(c.abort[0].threshold_percent == 10.0);
	assert_int_equal(c.abort[0].min_executed, 20);
	assert_int_equal(c.abort[1].type, CF_JOB_FAILURE_ALL);
	assert_true(c.abort[1].threshold_percent == 50.5);
	assert_int_equal(c.n_retry, 2);
	assert_int_equal(c.retry[0].type, CF_JOB_FAILURE_ALL);
	assert_int_equal(c.retry[0].retries, 2);
	assert_int_equal(c.retry[1].type, CF_JOB_FAILURE_TIMED_OUT);
	assert_int_equal(c.retry_policy.failed, 2);    /* from ALL */
	assert_int_equal(c.retry_policy.timed_out, 0); /* TIMED_OUT overrides ALL */
	assert_int_equal(c.timeouts.in_progress_s, 3600);
	assert_int_equal(c.timeouts.step_s, 600);
	assert_int_equal(c.schedule.start_at, INT64_C(1796083200));
	assert_int_equal(c.schedule.end_at, INT64_C(1798761599));
	assert_int_equal(c.schedule.end_behavior, CF_JOB_END_FORCE_CANCEL);
	assert_int_equal(c.schedule.n_windows, 2);
	assert_int_equal(c.schedule.windows[0].weekday, 6);
	assert_int_equal(c.schedule.windows[0].start_minute, 22 * 60);
	assert_int_equal(c.schedule.windows[0].duration_min, 240);
	assert_int_equal(c.schedule.windows[1].weekday, CF_JOB_DAILY);
	must(cf_jobspec_config_dump(&d, &c));
	assert_string_equal(d,
	    "{\"abort\":[{\"failureType\":\"FAILED\",\"minNumberOfExecutedThings\":20,"
	    "\"thresholdPercentage\":10.0},{\"failureType\":\"ALL\",\"minNumberOfExecutedThings\":4,"
	    "\"thresholdPercentage\":50.5}],\"retry\":[{\"failureType\":\"ALL\",\"numberOfRetries\":2},"
	    "{\"failureType\":\"TIMED_OUT\",\"numberOfRetries\":0}],\"rollout\":{\"exponentialRate\":"
	    "{\"baseRatePerMinute\":5,\"incrementFactor\":1.5,\"rateIncreaseCriteria\":"
	    "{\"numberOfSucceededThings\":10}},\"maxPerMinute\":100},\"schedule\":{\"endBehavior\":"
	    "\"FORCE_CANCEL\",\"endTime\":\"2026-12-31T23:59:59Z\",\"maintenanceWindows\":"
	    "[\"sat@22:00+240\",\"daily@01:00+120\"],\"startTime\":\"2026-12-01T00:00:00Z\"},"
	    "\"timeouts\":{\"inProgressSeconds\":3600,\"stepSeconds\":600}}");
	free(d);
}

static void
test_jobspec__config_empty_is_defaults(void **state)
{
	const char *inputs[] = { NULL, "", "{}", " { } ",
		"{\"abort\": [], \"retry\": [], \"timeouts\": {}, \"schedule\": {}}",
		"{\"timeouts\": {\"inProgressSeconds\": 0, \"stepSeconds\": 0},"
		" \"schedule\": {\"endBehavior\": \"STOP_ROLLOUT\", \"maintenanceWindows\": []}}" };
	cf_jobspec_config c;
	char *d = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		must(cf_jobspec_config_parse(&c, inputs[i]));
		assert_false(c.has_rollout);
		assert_int_equal(c.n_abort + c.n_retry + c.schedule.n_windows, 0);
		assert_int_equal(c.retry_policy.failed + c.retry_policy.timed_out, 0);
		assert_int_equal(c.timeouts.in_progress_s + c.timeouts.step_s, 0);
		assert_int_equal(c.schedule.start_at + c.schedule.end_at, 0);
		assert_int_equal(c.schedule.end_behavior, CF_JOB_END_STOP_ROLLOUT);
		must(cf_jobspec_config_dump(&d, &c));
		assert_string_equal(d, "{}");
		free(d);
	}
}

static void
test_jobspec__config_ramp_notified_and_plain_rate(void **state)
{
	cf_jobspec_config c;

	(void)state;
	must(cf_jobspec_config_parse(&c, "{\"rollout\": {\"maxPerMinute\": 1000, \"exponentialRate\":"
	    " {\"baseRatePerMinute\": 1000, \"incrementFactor\": 5, \"rateIncreaseCriteria\":"
	    " {\"numberOfNotifiedThings\": 1}}}}"));
	assert_int_equal(c.rollout.base_per_minute, 1000);
	assert_true(c.rollout.increment_factor == 5.0);
	assert_int_equal(c.rollout.notified_step, 1);
	assert_int_equal(c.rollout.succeeded_step, 0);
	must(cf_jobspec_config_parse(&c, "{\"rollout\": {\"maxPerMinute\": 1}}"));
	assert_true(c.has_rollout);
	assert_int_equal(c.rollout.max_per_minute, 1);
	assert_int_equal(c.rollout.base_per_minute, 0);
	/* the edges of every range are accepted */
	must(cf_jobspec_config_parse(&c, "{\"abort\": [{\"failureType\": \"REJECTED\","
	    " \"thresholdPercentage\": 100, \"minNumberOfExecutedThings\": 1}],"
	    " \"retry\": [{\"failureType\": \"FAILED\", \"numberOfRetries\": 10}],"
	    " \"timeouts\": {\"inProgressSeconds\": 604800, \"stepSeconds\": 1},"
	    " \"schedule\": {\"endTime\": \"9999-12-31T23:59:59Z\"}}"));
	assert_int_equal(c.retry_policy.failed, 10);
	assert_int_equal(c.retry_policy.timed_out, 0);
	assert_int_equal(c.schedule.end_at, INT64_C(253402300799));
	must(cf_jobspec_config_parse(&c, "{\"schedule\": {\"startTime\": \"2028-02-29T12:00:00Z\"}}"));
	assert_int_equal(c.schedule.start_at, INT64_C(1835438400));
}

/* ---- parsing: every bad value, with its path ------------------------------------ */

typedef struct {
	int config;         /* 0: targets, 1: configuration */
	const char *json;
	const char *path;   /* the message starts with "<path>: " */
	const char *detail; /* and contains this */
} bad_case;

#define RAMP(x) "{\"rollout\": {\"maxPerMinute\": 10, \"exponentialRate\": " x "}}"
#define ABORT(x) "{\"abort\": [" x "]}"
#define RETRY(x) "{\"retry\": [" x "]}"
#define SCHED(x) "{\"schedule\": " x "}"

static const bad_case bad_cases[] = {
	/* targets */
	{ 0, "", "targets", "not valid JSON" },
	{ 0, "{\"things\": [\"a\"]} x", "targets", "not valid JSON" },
	{ 0, "[\"a\"]", "targets", "must be an object" },
	{ 0, "{}", "targets", "must name things, groups or certificates" },
	{ 0, "{\"things\": [\"a\"], \"things\": [\"b\"]}", "targets", "duplicate" },
	{ 0, "{\"things\": [\"a\"], \"thing\": [\"b\"]}", "targets", "unknown member 'thing'" },
	{ 0, "{\"things\": []}", "targets.things", "at least one thing" },
	{ 0, "{\"things\": \"a\"}", "targets.things", "must be an array" },
	{ 0, "{\"things\": [\"a\", 1]}", "targets.things[1]", "must be a string" },
	{ 0, "{\"things\": [\"ok\", \"bad name\"]}", "targets.things[1]", "thing name" },
	{ 0, "{\"things\": [\"\"]}", "targets.things[0]", "1 to 128" },
	{ 0, "{\"things\": [\"sensors/1\"]}", "targets.things[0]", "outside [A-Za-z0-9_.:-]" },
	{ 0, "{\"groups\": {}}", "targets.groups", "must be an array" },
	{ 0, "{\"groups\": []}", "targets.groups", "at least one group" },
	{ 0, "{\"groups\": [\"north\", \"a b\"]}", "targets.groups[1]", "group name" },
	{ 0, "{\"certificates\": []}", "targets.certificates", "must be an object" },
	{ 0, "{\"certificates\": {}}", "targets.certificates", "at least one of" },
	{ 0, "{\"certificates\": {\"weakKey\": false}}", "targets.certificates", "criterion" },
	{ 0, "{\"certificates\": {\"owner\": \"x\"}}", "targets.certificates",
	  "unknown member 'owner'" },
	{ 0, "{\"certificates\": {\"weakKey\": 1}}", "targets.certificates.weakKey",
	  "true or false" },
	{ 0, "{\"certificates\": {\"expiringWithinDays\": 0}}",
	  "targets.certificates.expiringWithinDays", "must be 1..3650" },
	{ 0, "{\"certificates\": {\"expiringWithinDays\": 3651}}",
	  "targets.certificates.expiringWithinDays", "must be 1..3650" },
	{ 0, "{\"certificates\": {\"expiringWithinDays\": 1.5}}",
	  "targets.certificates.expiringWithinDays", "must be an integer" },
	{ 0, "{\"certificates\": {\"expiringWithinDays\": \"30\"}}",
	  "targets.certificates.expiringWithinDays", "must be an integer" },
	{ 0, "{\"certificates\": {\"issuer\": 7}}", "targets.certificates.issuer",
	  "must be a string" },
	{ 0, "{\"certificates\": {\"issuer\": \"\"}}", "targets.certificates.issuer", "CA name" },
	{ 0, "{\"things\": [\"a\"], \"certificates\": {\"issuer\": \"my ca\"}}",
	  "targets.certificates.issuer", "CA name" },

	/* configuration: shape */
	{ 1, "[]", "config", "must be an object" },
	{ 1, "{\"rollout\": ", "config", "not valid JSON" },
	{ 1, "{\"retries\": []}", "config", "unknown member 'retries'" },
	{ 1, "{\"timeouts\": {}, \"timeouts\": {}}", "config", "duplicate" },
	/* rollout */
	{ 1, "{\"rollout\": 5}", "config.rollout", "must be an object" },
	{ 1, "{\"rollout\": {}}", "config.rollout.maxPerMinute", "required" },
	{ 1, "{\"rollout\": {\"maxPerMinute\": 0}}", "config.rollout.maxPerMinute",
	  "must be 1..1000" },
	{ 1, "{\"rollout\": {\"maxPerMinute\": 1001}}", "config.rollout.maxPerMinute",
	  "must be 1..1000" },
	{ 1, "{\"rollout\": {\"maxPerMinute\": \"5\"}}", "config.rollout.maxPerMinute",
	  "must be an integer" },
	{ 1, "{\"rollout\": {\"maxPerMinute\": 5.0}}", "config.rollout.maxPerMinute",
	  "must be an integer" },
	{ 1, "{\"rollout\": {\"maxPerMinute\": 5, \"max\": 6}}", "config.rollout",
	  "unknown member 'max'" },
	{ 1, "{\"rollout\": {\"exponentialRate\": {\"baseRatePerMinute\": 1, \"incrementFactor\": 2,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}}}",
	  "config.rollout.maxPerMinute", "required" },
	{ 1, RAMP("[]"), "config.rollout.exponentialRate", "must be an object" },
	{ 1, RAMP("{\"incrementFactor\": 2, \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.baseRatePerMinute", "required" },
	{ 1, RAMP("{\"baseRatePerMinute\": 11, \"incrementFactor\": 2,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.baseRatePerMinute", "must be 1..10" },
	{ 1, RAMP("{\"baseRatePerMinute\": 0, \"incrementFactor\": 2,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.baseRatePerMinute", "must be 1..10" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.incrementFactor", "required" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 1.0,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.incrementFactor", "must be 1.1..5" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 5.01,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.incrementFactor", "must be 1.1..5" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": \"2\","
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate.incrementFactor", "must be a number" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2}"),
	  "config.rollout.exponentialRate.rateIncreaseCriteria", "required" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2, \"rateIncreaseCriteria\":"
	  " {\"numberOfNotifiedThings\": 5, \"numberOfSucceededThings\": 5}}"),
	  "config.rollout.exponentialRate.rateIncreaseCriteria", "exactly one of" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2, \"rateIncreaseCriteria\": {}}"),
	  "config.rollout.exponentialRate.rateIncreaseCriteria", "exactly one of" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2, \"rateIncreaseCriteria\":"
	  " {\"numberOfNotifiedThings\": 0}}"),
	  "config.rollout.exponentialRate.rateIncreaseCriteria.numberOfNotifiedThings",
	  "at least 1" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2, \"rateIncreaseCriteria\":"
	  " {\"numberOfFailedThings\": 3}}"),
	  "config.rollout.exponentialRate.rateIncreaseCriteria", "unknown member" },
	{ 1, RAMP("{\"baseRatePerMinute\": 1, \"incrementFactor\": 2, \"factor\": 2,"
	  " \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 5}}"),
	  "config.rollout.exponentialRate", "unknown member 'factor'" },
	/* abort */
	{ 1, "{\"abort\": {}}", "config.abort", "must be an array" },
	{ 1, ABORT("7"), "config.abort[0]", "must be an object" },
	{ 1, ABORT("{\"failureType\": \"BROKEN\", \"thresholdPercentage\": 10,"
	  " \"minNumberOfExecutedThings\": 1}"), "config.abort[0].failureType",
	  "unknown failure type 'BROKEN'" },
	{ 1, ABORT("{\"thresholdPercentage\": 10, \"minNumberOfExecutedThings\": 1}"),
	  "config.abort[0].failureType", "required" },
	{ 1, ABORT("{\"failureType\": 1, \"thresholdPercentage\": 10, \"minNumberOfExecutedThings\": 1}"),
	  "config.abort[0].failureType", "must be a string" },
	{ 1, ABORT("{\"failureType\": \"ALL\", \"thresholdPercentage\": 10, \"minNumberOfExecutedThings\": 1},"
	  " {\"failureType\": \"ALL\", \"thresholdPercentage\": 0, \"minNumberOfExecutedThings\": 1}"),
	  "config.abort[1].thresholdPercentage", "above 0 and at most 100" },
	{ 1, ABORT("{\"failureType\": \"ALL\", \"thresholdPercentage\": 100.5,"
	  " \"minNumberOfExecutedThings\": 1}"), "config.abort[0].thresholdPercentage",
	  "above 0 and at most 100" },
	{ 1, ABORT("{\"failureType\": \"ALL\", \"thresholdPercentage\": 10,"
	  " \"minNumberOfExecutedThings\": 0}"), "config.abort[0].minNumberOfExecutedThings",
	  "at least 1" },
	{ 1, ABORT("{\"failureType\": \"ALL\", \"thresholdPercentage\": 10}"),
	  "config.abort[0].minNumberOfExecutedThings", "required" },
	{ 1, ABORT("{\"failureType\": \"ALL\", \"thresholdPercentage\": 10,"
	  " \"minNumberOfExecutedThings\": 1, \"action\": \"CANCEL\"}"), "config.abort[0]",
	  "unknown member 'action'" },
	/* retry */
	{ 1, "{\"retry\": {\"failureType\": \"ALL\"}}", "config.retry", "must be an array" },
	{ 1, RETRY("{\"failureType\": \"REJECTED\", \"numberOfRetries\": 1}"),
	  "config.retry[0].failureType", "REJECTED is not retried" },
	{ 1, RETRY("{\"failureType\": \"FAILED\", \"numberOfRetries\": 1},"
	  " {\"failureType\": \"FAILED\", \"numberOfRetries\": 2}"), "config.retry[1].failureType",
	  "FAILED given twice" },
	{ 1, RETRY("{\"failureType\": \"FAILED\", \"numberOfRetries\": 11}"),
	  "config.retry[0].numberOfRetries", "must be 0..10" },
	{ 1, RETRY("{\"failureType\": \"FAILED\", \"numberOfRetries\": -1}"),
	  "config.retry[0].numberOfRetries", "must be 0..10" },
	{ 1, RETRY("{\"failureType\": \"FAILED\"}"), "config.retry[0].numberOfRetries", "required" },
	{ 1, RETRY("{\"failureType\": \"TIMED_OUT\", \"numberOfRetries\": 1, \"delay\": 5}"),
	  "config.retry[0]", "unknown member 'delay'" },
	{ 1, RETRY("{\"failureType\": \"FAILED\", \"numberOfRetries\": 1},"
	  " {\"failureType\": \"TIMED_OUT\", \"numberOfRetries\": 1},"
	  " {\"failureType\": \"ALL\", \"numberOfRetries\": 1},"
	  " {\"failureType\": \"ALL\", \"numberOfRetries\": 1},"
	  " {\"failureType\": \"ALL\", \"numberOfRetries\": 1}"), "config.retry", "at most one" },
	/* timeouts */
	{ 1, "{\"timeouts\": 60}", "config.timeouts", "must be an object" },
	{ 1, "{\"timeouts\": {\"inProgressSeconds\": -1}}", "config.timeouts.inProgressSeconds",
	  "must be 0..604800" },
	{ 1, "{\"timeouts\": {\"stepSeconds\": 604801}}", "config.timeouts.stepSeconds",
	  "must be 0..604800" },
	{ 1, "{\"timeouts\": {\"stepSeconds\": true}}", "config.timeouts.stepSeconds",
	  "must be an integer" },
	{ 1, "{\"timeouts\": {\"inProgressMinutes\": 5}}", "config.timeouts",
	  "unknown member 'inProgressMinutes'" },
	/* schedule */
	{ 1, SCHED("\"now\""), "config.schedule", "must be an object" },
	{ 1, SCHED("{\"startTime\": \"2026-11-23 10:00:00Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2026-11-23T10:00:00+01:00\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2026-11-23T10:00:00.5Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2026-02-30T00:00:00Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2027-02-29T00:00:00Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2026-11-23T24:00:00Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"1969-12-31T23:59:59Z\"}"), "config.schedule.startTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": 1795000000}"), "config.schedule.startTime", "must be a string" },
	{ 1, SCHED("{\"endTime\": \"2026-13-01T00:00:00Z\"}"), "config.schedule.endTime",
	  "RFC 3339" },
	{ 1, SCHED("{\"startTime\": \"2026-12-01T00:00:00Z\", \"endTime\": \"2026-11-30T00:00:00Z\"}"),
	  "config.schedule.endTime", "must come after startTime" },
	{ 1, SCHED("{\"startTime\": \"2026-12-01T00:00:00Z\", \"endTime\": \"2026-12-01T00:00:00Z\"}"),
	  "config.schedule.endTime", "must come after startTime" },
	{ 1, SCHED("{\"endBehavior\": \"STOP\"}"), "config.schedule.endBehavior",
	  "unknown end behaviour 'STOP'" },
	{ 1, SCHED("{\"endBehavior\": \"cancel\"}"), "config.schedule.endBehavior",
	  "unknown end behaviour" },
	{ 1, SCHED("{\"maintenanceWindows\": \"sat@22:00+240\"}"),
	  "config.schedule.maintenanceWindows", "must be an array" },
	{ 1, SCHED("{\"maintenanceWindows\": [\"sat@22:00+240\", 5]}"),
	  "config.schedule.maintenanceWindows[1]", "must be a string" },
	{ 1, SCHED("{\"maintenanceWindows\": [\"sat@25:00+60\"]}"),
	  "config.schedule.maintenanceWindows[0]", "<day>@HH:MM+<minutes>" },
	{ 1, SCHED("{\"maintenanceWindows\": [\"daily@01:00+1441\"]}"),
	  "config.schedule.maintenanceWindows[0]", "1..1440" },
	{ 1, SCHED("{\"maintenanceWindows\": [\"someday@01:00+60\"]}"),
	  "config.schedule.maintenanceWindows[0]", "maintenance window" },
	{ 1, SCHED("{\"timezone\": \"UTC\"}"), "config.schedule", "unknown member 'timezone'" },
};

static void
test_jobspec__bad_values_name_their_path(void **state)
{
	char prefix[256];
	size_t i;

	(void)state;
	assert_true(sizeof(bad_cases) / sizeof(bad_cases[0]) >= 30);
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const bad_case *b = &bad_cases[i];
		const char *msg;
		int r;

		if (b->config) {
			cf_jobspec_config c;

			r = cf_jobspec_config_parse(&c, b->json);
		} else {
			cf_jobspec_targets t;

			r = cf_jobspec_targets_parse(&t, b->json);
			if (r == 0)
				cf_jobspec_targets_clear(&t);
			else /* out is left cleared */
				assert_true(t.things == NULL && t.groups == NULL && !t.has_query);
		}
		msg = cf_error_last();
		snprintf(prefix, sizeof(prefix), "%s: ", b->path);
		if (r != CF_EINVAL || strncmp(msg, prefix, strlen(prefix)) != 0 ||
		    strstr(msg, b->detail) == NULL)
			fail_msg("case %zu %s: got %d '%s', wanted CF_EINVAL '%s...%s'", i, b->json, r,
			    msg, prefix, b->detail);
	}
}

/* {"things": [<n> names from first], "groups": [<m> names]}; free() */
static char *
many_names(int n, int first, int m)
{
	char *buf = malloc((size_t)(n + m) * 16 + 64), *p = buf;
	int i;

	assert_non_null(buf);
	p += sprintf(p, "{\"things\": [");
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s\"t%d\"", i ? "," : "", first + i);
	p += sprintf(p, "]");
	if (m > 0) {
		p += sprintf(p, ", \"groups\": [");
		for (i = 0; i < m; i++)
			p += sprintf(p, "%s\"g%d\"", i ? "," : "", i);
		p += sprintf(p, "]");
	}
	sprintf(p, "}");
	return buf;
}

static void
test_jobspec__target_count_limit(void **state)
{
	cf_jobspec_targets t;
	char *json;

	(void)state;
	json = many_names(CF_JOBSPEC_TARGETS_MAX, 0, 0);
	must(cf_jobspec_targets_parse(&t, json));
	assert_int_equal(t.n_things, CF_JOBSPEC_TARGETS_MAX);
	assert_string_equal(t.things[CF_JOBSPEC_TARGETS_MAX - 1], "t99999");
	cf_jobspec_targets_clear(&t);
	free(json);
	json = many_names(CF_JOBSPEC_TARGETS_MAX + 1, 0, 0);
	assert_int_equal(cf_jobspec_targets_parse(&t, json), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "targets.things: at most 100000"));
	free(json);
	json = many_names(60000, 0, 40001);
	assert_int_equal(cf_jobspec_targets_parse(&t, json), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "targets.groups: at most 100000"));
	assert_null(t.things);
	free(json);
}

static void
test_jobspec__limits(void **state)
{
	char buf[4096], *p;
	cf_jobspec_config c;
	cf_jobspec_targets t;
	char name[200];
	int i;

	(void)state;
	/* 17 windows */
	p = buf + sprintf(buf, "{\"schedule\": {\"maintenanceWindows\": [");
	for (i = 0; i < 17; i++)
		p += sprintf(p, "%s\"daily@%02d:00+30\"", i ? ", " : "", i);
	sprintf(p, "]}}");
	assert_int_equal(cf_jobspec_config_parse(&c, buf), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "config.schedule.maintenanceWindows: at most 16"));
	/* 16 are fine */
	p = strrchr(buf, ',');
	sprintf(p, "]}}");
	must(cf_jobspec_config_parse(&c, buf));
	assert_int_equal(c.schedule.n_windows, 16);
	/* 9 abort criteria */
	p = buf + sprintf(buf, "{\"abort\": [");
	for (i = 0; i < 9; i++)
		p += sprintf(p, "%s{\"failureType\": \"ALL\", \"thresholdPercentage\": %d,"
		    " \"minNumberOfExecutedThings\": 1}", i ? ", " : "", i + 1);
	sprintf(p, "]}");
	assert_int_equal(cf_jobspec_config_parse(&c, buf), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "config.abort: at most 8"));
	/* a thing name of 129 characters */
	memset(name, 'a', 129);
	name[129] = '\0';
	snprintf(buf, sizeof(buf), "{\"things\": [\"%s\"]}", name);
	assert_int_equal(cf_jobspec_targets_parse(&t, buf), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "targets.things[0]: "));
	name[128] = '\0';
	snprintf(buf, sizeof(buf), "{\"things\": [\"%s\"]}", name);
	must(cf_jobspec_targets_parse(&t, buf));
	cf_jobspec_targets_clear(&t);
	assert_int_equal(cf_jobspec_targets_parse(&t, NULL), CF_EINVAL);
}

/* ---- round trips ------------------------------------------------------------------ */

static void
targets_equal(const cf_jobspec_targets *a, const cf_jobspec_targets *b)
{
	size_t i;

	assert_int_equal(a->n_things, b->n_things);
	for (i = 0; i < a->n_things; i++)
		assert_string_equal(a->things[i], b->things[i]);
	assert_int_equal(a->n_groups, b->n_groups);
	for (i = 0; i < a->n_groups; i++)
		assert_string_equal(a->groups[i], b->groups[i]);
	assert_int_equal(a->has_query, b->has_query);
	assert_string_equal(a->issuer, b->issuer);
	assert_int_equal(a->expiring_within_s, b->expiring_within_s);
	assert_int_equal(a->weak_key, b->weak_key);
}

static void
config_equal(const cf_jobspec_config *a, const cf_jobspec_config *b)
{
	size_t i;

	assert_int_equal(a->has_rollout, b->has_rollout);
	assert_int_equal(a->rollout.max_per_minute, b->rollout.max_per_minute);
	assert_int_equal(a->rollout.base_per_minute, b->rollout.base_per_minute);
	assert_true(a->rollout.increment_factor == b->rollout.increment_factor);
	assert_int_equal(a->rollout.notified_step, b->rollout.notified_step);
	assert_int_equal(a->rollout.succeeded_step, b->rollout.succeeded_step);
	assert_int_equal(a->n_abort, b->n_abort);
	for (i = 0; i < a->n_abort; i++) {
		assert_int_equal(a->abort[i].type, b->abort[i].type);
		assert_true(a->abort[i].threshold_percent == b->abort[i].threshold_percent);
		assert_int_equal(a->abort[i].min_executed, b->abort[i].min_executed);
	}
	assert_int_equal(a->n_retry, b->n_retry);
	for (i = 0; i < a->n_retry; i++) {
		assert_int_equal(a->retry[i].type, b->retry[i].type);
		assert_int_equal(a->retry[i].retries, b->retry[i].retries);
	}
	assert_int_equal(a->retry_policy.failed, b->retry_policy.failed);
	assert_int_equal(a->retry_policy.timed_out, b->retry_policy.timed_out);
	assert_int_equal(a->timeouts.in_progress_s, b->timeouts.in_progress_s);
	assert_int_equal(a->timeouts.step_s, b->timeouts.step_s);
	assert_int_equal(a->schedule.start_at, b->schedule.start_at);
	assert_int_equal(a->schedule.end_at, b->schedule.end_at);
	assert_int_equal(a->schedule.end_behavior, b->schedule.end_behavior);
	assert_int_equal(a->schedule.n_windows, b->schedule.n_windows);
	for (i = 0; i < a->schedule.n_windows; i++) {
		assert_int_equal(a->schedule.windows[i].weekday, b->schedule.windows[i].weekday);
		assert_int_equal(a->schedule.windows[i].start_minute,
		    b->schedule.windows[i].start_minute);
		assert_int_equal(a->schedule.windows[i].duration_min,
		    b->schedule.windows[i].duration_min);
	}
}

static void
test_jobspec__targets_round_trip(void **state)
{
	const char *inputs[] = {
		"{\"things\": [\"b\", \"a\", \"b\"]}",
		"{\"groups\": [\"north\", \"south:2\"], \"things\": [\"x.1\"]}",
		"{\"certificates\": {\"issuer\": \"0123456789abcdef\"}}",
		"{\"certificates\": {\"expiringWithinDays\": 3650, \"weakKey\": false}}",
		"{\"certificates\": {\"weakKey\": true}, \"groups\": [\"g\"]}",
	};
	cf_jobspec_targets a, b;
	char *d1 = NULL, *d2 = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		must(cf_jobspec_targets_parse(&a, inputs[i]));
		must(cf_jobspec_targets_dump(&d1, &a));
		must(cf_jobspec_targets_parse(&b, d1));
		targets_equal(&a, &b);
		must(cf_jobspec_targets_dump(&d2, &b));
		assert_string_equal(d1, d2);
		free(d1);
		free(d2);
		cf_jobspec_targets_clear(&a);
		cf_jobspec_targets_clear(&b);
	}
	/* a struct built by hand that no JSON could produce is refused, not printed */
	memset(&a, 0, sizeof(a));
	a.has_query = 1;
	a.expiring_within_s = 3600;
	assert_int_equal(cf_jobspec_targets_dump(&d1, &a), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "targets.certificates.expiringWithinDays: "));
	memset(&a, 0, sizeof(a));
	assert_int_equal(cf_jobspec_targets_dump(&d1, &a), CF_EINVAL);
}

static void
test_jobspec__config_round_trip(void **state)
{
	const char *inputs[] = {
		full_config,
		"{}",
		"{\"rollout\": {\"maxPerMinute\": 7}}",
		"{\"rollout\": {\"maxPerMinute\": 20, \"exponentialRate\": {\"baseRatePerMinute\": 2,"
		" \"incrementFactor\": 1.1, \"rateIncreaseCriteria\": {\"numberOfNotifiedThings\": 3}}}}",
		"{\"abort\": [{\"failureType\": \"TIMED_OUT\", \"thresholdPercentage\": 33.333333333333336,"
		" \"minNumberOfExecutedThings\": 9007199254740993}]}",
		"{\"retry\": [{\"failureType\": \"TIMED_OUT\", \"numberOfRetries\": 3},"
		" {\"failureType\": \"FAILED\", \"numberOfRetries\": 0}]}",
		"{\"timeouts\": {\"stepSeconds\": 1}}",
		"{\"schedule\": {\"endTime\": \"2027-01-01T00:00:00Z\", \"endBehavior\": \"CANCEL\"}}",
		"{\"schedule\": {\"startTime\": \"2027-01-01T00:00:00Z\","
		" \"maintenanceWindows\": [\"sun@00:00+10080\"]}}",
	};
	cf_jobspec_config a, b;
	char *d1 = NULL, *d2 = NULL;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		must(cf_jobspec_config_parse(&a, inputs[i]));
		must(cf_jobspec_config_dump(&d1, &a));
		must(cf_jobspec_config_parse(&b, d1));
		config_equal(&a, &b);
		must(cf_jobspec_config_dump(&d2, &b));
		assert_string_equal(d1, d2);
		free(d1);
		free(d2);
	}
	/* dump refuses what parse would refuse */
	must(cf_jobspec_config_parse(&a, "{}"));
	a.has_rollout = 1;
	assert_int_equal(cf_jobspec_config_dump(&d1, &a), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "config.rollout: "));
	must(cf_jobspec_config_parse(&a, "{}"));
	a.schedule.start_at = 100;
	a.schedule.end_at = 50;
	assert_int_equal(cf_jobspec_config_dump(&d1, &a), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "config.schedule: "));
	must(cf_jobspec_config_parse(&a, "{}"));
	a.n_retry = 1;
	a.retry[0].type = CF_JOB_FAILURE_REJECTED;
	assert_int_equal(cf_jobspec_config_dump(&d1, &a), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "config.retry: "));
}

/* ---- resolving against a real store --------------------------------------------------- */

struct fx {
	char dir[64];
	cf_store *st;
	char ca_a[CF_ID_LEN + 1], ca_b[CF_ID_LEN + 1];
	char blocked_fp[CF_ID_LEN + 1]; /* SPKI fingerprint of t-e's key */
};

/* A PEM certificate of a new P-256 key (self-signed: the registry does not check chains). */
static char *
p256_cert_pem(char fp[CF_ID_LEN + 1], const char *cn)
{
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	char *pem = NULL;

	must(cf_key_generate(&key, CF_KEY_P256));
	must(cf_pki_make_root(&cert, key, cn, 30));
	must(cf_cert_to_pem(&pem, cert));
	if (fp != NULL)
		must(cf_key_fingerprint(fp, key));
	cf_cert_free(cert);
	cf_key_free(key);
	return pem;
}

/* A self-signed PEM certificate signed with md, for keys and digests cf_pki will not use. */
static char *
openssl_cert_pem(EVP_PKEY *pkey, const EVP_MD *md, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	char *pem;

	assert_non_null(pkey);
	X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1024);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	assert_int_equal(X509_set_pubkey(x, pkey), 1);
	assert_true(X509_sign(x, pkey, md) > 0);
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	BIO_get_mem_ptr(bio, &bm);
	pem = strndup(bm->data, bm->length);
	BIO_free(bio);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return pem;
}

static void
add_ca(struct fx *fx, char id[CF_ID_LEN + 1], const char *name)
{
	cf_ca_rec ca;
	cf_cert *cert = NULL;
	cf_cert_info info;
	char *pem = p256_cert_pem(NULL, name);

	must(cf_cert_parse(&cert, pem, strlen(pem)));
	must(cf_cert_info_get(&info, cert));
	memset(&ca, 0, sizeof(ca));
	snprintf(ca.id, sizeof(ca.id), "%s", info.id);
	snprintf(ca.name, sizeof(ca.name), "%s", name);
	ca.role = CF_CA_ROOT;
	ca.status = CF_CERT_ACTIVE;
	snprintf(ca.serial, sizeof(ca.serial), "%s", info.serial);
	ca.not_before = info.not_before;
	ca.not_after = info.not_after;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "EC-P256");
	ca.key_bits = 256;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "%s.key", name);
	ca.pem = pem;
	must(cf_store_ca_insert(fx->st, &ca));
	snprintf(id, CF_ID_LEN + 1, "%s", info.id);
	cf_cert_free(cert);
	free(pem);
}

static void
add_cert(struct fx *fx, char *pem, const char *ca_id, const char *thing, cf_cert_status status,
    int64_t not_after)
{
	cf_cert_rec rec;
	cf_cert *cert = NULL;
	cf_cert_info info;

	must(cf_cert_parse(&cert, pem, strlen(pem)));
	must(cf_cert_info_get(&info, cert));
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.id, sizeof(rec.id), "%s", info.id);
	snprintf(rec.serial, sizeof(rec.serial), "%s", info.serial);
	snprintf(rec.ca_id, sizeof(rec.ca_id), "%s", ca_id);
	snprintf(rec.thing, sizeof(rec.thing), "%s", thing);
	rec.status = status;
	rec.not_before = T0 - 10 * DAY;
	rec.not_after = not_after;
	snprintf(rec.key_alg, sizeof(rec.key_alg), "%s", info.key.type);
	rec.key_bits = info.key.bits;
	snprintf(rec.sig_alg, sizeof(rec.sig_alg), "%s", info.sig_alg);
	rec.pem = pem;
	must(cf_store_cert_insert(fx->st, &rec));
	cf_cert_free(cert);
	free(pem);
}

/*
 * Things t-a .. t-e and t-idle; static group "static-1" {t-a, t-b}, dynamic
 * group "north" (site=north: t-c, t-d), empty static group "empty".
 * ACTIVE certificates: t-a root-a expiring T0+10d; t-b root-b T0+100d;
 * t-d root-b RSA-1024 T0+200d; t-e root-b T0+3d (blocklisted key in the
 * custom policy); t-idle root-a T0+400d, a good P-256 key under a SHA-1
 * signature (weak signature, not a weak key). Not matched by any query: t-c's INACTIVE root-a certificate
 * expiring T0+1d, and an ACTIVE root-a certificate attached to no thing.
 */
static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char db[128];

	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/cf-jobspec-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(db, sizeof(db), "%s/certfleet.db", fx->dir);
	must(cf_store_open(&fx->st, db, CF_STORE_CREATE));
	must(cf_store_thing_create(fx->st, "t-a", NULL));
	must(cf_store_thing_create(fx->st, "t-b", NULL));
	must(cf_store_thing_create(fx->st, "t-c", "{\"site\": \"north\"}"));
	must(cf_store_thing_create(fx->st, "t-d", "{\"site\": \"north\"}"));
	must(cf_store_thing_create(fx->st, "t-e", "{\"site\": \"south\"}"));
	must(cf_store_thing_create(fx->st, "t-idle", NULL));
	must(cf_store_group_create(fx->st, "static-1", NULL));
	must(cf_store_group_add(fx->st, "static-1", "t-b"));
	must(cf_store_group_add(fx->st, "static-1", "t-a"));
	must(cf_store_group_create(fx->st, "north", "site=north"));
	must(cf_store_group_create(fx->st, "empty", NULL));
	add_ca(fx, fx->ca_a, "root-a");
	add_ca(fx, fx->ca_b, "root-b");
	add_cert(fx, p256_cert_pem(NULL, "t-a"), fx->ca_a, "t-a", CF_CERT_ACTIVE, T0 + 10 * DAY);
	add_cert(fx, p256_cert_pem(NULL, "t-b"), fx->ca_b, "t-b", CF_CERT_ACTIVE, T0 + 100 * DAY);
	add_cert(fx, openssl_cert_pem(EVP_RSA_gen(1024), EVP_sha256(), "t-d"), fx->ca_b, "t-d",
	    CF_CERT_ACTIVE, T0 + 200 * DAY);
	add_cert(fx, openssl_cert_pem(EVP_EC_gen("P-256"), EVP_sha1(), "t-idle"), fx->ca_a,
	    "t-idle", CF_CERT_ACTIVE, T0 + 400 * DAY);
	add_cert(fx, p256_cert_pem(fx->blocked_fp, "t-e"), fx->ca_b, "t-e", CF_CERT_ACTIVE,
	    T0 + 3 * DAY);
	add_cert(fx, p256_cert_pem(NULL, "t-c"), fx->ca_a, "t-c", CF_CERT_INACTIVE, T0 + DAY);
	add_cert(fx, p256_cert_pem(NULL, "loose"), fx->ca_a, "", CF_CERT_ACTIVE, T0 + DAY);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	int r;

	cf_store_close(fx->st);
	r = cf_rmtree(fx->dir);
	free(fx);
	return r;
}

/*
 * Resolves targets_json with policy and checks the result against want, a
 * comma-separated list ("" for none).
 */
static void
expect_resolve(struct fx *fx, const char *targets_json, const cf_keyq_policy *policy,
    const char *want)
{
	cf_jobspec_targets t;
	char **names = NULL, got[1024] = "";
	size_t i, n = 0;

	must(cf_jobspec_targets_parse(&t, targets_json));
	must(cf_jobspec_targets_resolve(&names, &n, fx->st, &t, policy, T0));
	for (i = 0; i < n; i++) {
		strcat(got, i ? "," : "");
		strcat(got, names[i]);
	}
	if (strcmp(got, want) != 0)
		fail_msg("%s: resolved to '%s', wanted '%s'", targets_json, got, want);
	cf_strv_free(names, n);
	cf_jobspec_targets_clear(&t);
}

static void
expect_resolve_fails(struct fx *fx, const char *targets_json, int code, const char *detail)
{
	cf_jobspec_targets t;
	char **names = NULL;
	size_t n = 0;

	must(cf_jobspec_targets_parse(&t, targets_json));
	assert_int_equal(cf_jobspec_targets_resolve(&names, &n, fx->st, &t, NULL, T0), code);
	assert_null(names);
	if (strstr(cf_error_last(), detail) == NULL)
		fail_msg("%s: '%s' does not mention '%s'", targets_json, cf_error_last(), detail);
	cf_jobspec_targets_clear(&t);
}

static void
test_jobspec__resolve_things_and_groups(void **state)
{
	struct fx *fx = *state;

	expect_resolve(fx, "{\"things\": [\"t-idle\", \"t-a\", \"t-idle\"]}", NULL, "t-a,t-idle");
	expect_resolve(fx, "{\"groups\": [\"static-1\"]}", NULL, "t-a,t-b");
	expect_resolve(fx, "{\"groups\": [\"north\"]}", NULL, "t-c,t-d");
	expect_resolve(fx, "{\"groups\": [\"empty\"]}", NULL, "");
	/* every source at once: sorted, each thing once */
	expect_resolve(fx, "{\"things\": [\"t-b\", \"t-idle\"], \"groups\": [\"north\", \"static-1\"],"
	    " \"certificates\": {\"issuer\": \"root-a\"}}", NULL, "t-a,t-b,t-c,t-d,t-idle");
	/* a dynamic group is evaluated at resolve time */
	must(cf_store_thing_set_attributes(fx->st, "t-e", "{\"site\": \"north\"}"));
	expect_resolve(fx, "{\"groups\": [\"north\"]}", NULL, "t-c,t-d,t-e");
}

static void
test_jobspec__resolve_certificate_queries(void **state)
{
	struct fx *fx = *state;
	char json[256];

	expect_resolve(fx, "{\"certificates\": {\"issuer\": \"root-a\"}}", NULL, "t-a,t-idle");
	expect_resolve(fx, "{\"certificates\": {\"issuer\": \"root-b\"}}", NULL, "t-b,t-d,t-e");
	/* the issuer by full id and by a unique id prefix */
	snprintf(json, sizeof(json), "{\"certificates\": {\"issuer\": \"%s\"}}", fx->ca_b);
	expect_resolve(fx, json, NULL, "t-b,t-d,t-e");
	snprintf(json, sizeof(json), "{\"certificates\": {\"issuer\": \"%.12s\"}}", fx->ca_a);
	expect_resolve(fx, json, NULL, "t-a,t-idle");
	/* expiry: not_after < now + N days; INACTIVE and detached certificates never match */
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 1}}", NULL, "");
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 3}}", NULL, "");
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 4}}", NULL, "t-e");
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 30}}", NULL, "t-a,t-e");
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 365}}", NULL,
	    "t-a,t-b,t-d,t-e");
	expect_resolve(fx, "{\"certificates\": {\"expiringWithinDays\": 3650}}", NULL,
	    "t-a,t-b,t-d,t-e,t-idle");
	/* all criteria must hold */
	expect_resolve(fx, "{\"certificates\": {\"issuer\": \"root-b\", \"expiringWithinDays\": 30}}",
	    NULL, "t-e");
	expect_resolve(fx, "{\"certificates\": {\"issuer\": \"root-b\", \"weakKey\": true}}", NULL,
	    "t-d");
}

static void
test_jobspec__resolve_weak_keys(void **state)
{
	struct fx *fx = *state;
	cf_keyq_policy *p = NULL;

	/* default policy: only the RSA-1024 key is weak; t-idle's SHA-1 signature is not its key */
	expect_resolve(fx, "{\"certificates\": {\"weakKey\": true}}", NULL, "t-d");
	expect_resolve(fx, "{\"certificates\": {\"issuer\": \"root-a\", \"weakKey\": true}}", NULL,
	    "");
	/* a blocklisted P-256 key too */
	must(cf_keyq_policy_new(&p));
	must(cf_keyq_policy_block(p, fx->blocked_fp));
	expect_resolve(fx, "{\"certificates\": {\"weakKey\": true}}", p, "t-d,t-e");
	expect_resolve(fx, "{\"certificates\": {\"weakKey\": true, \"expiringWithinDays\": 100}}",
	    p, "t-e");
	cf_keyq_policy_free(p);
	/* a policy that no longer allows P-256 flags every ACTIVE attached certificate */
	must(cf_keyq_policy_new(&p));
	must(cf_keyq_policy_set_curves(p, "P-384"));
	expect_resolve(fx, "{\"certificates\": {\"weakKey\": true}}", p, "t-a,t-b,t-d,t-e,t-idle");
	cf_keyq_policy_free(p);
}

static void
test_jobspec__resolve_unknown_names(void **state)
{
	struct fx *fx = *state;

	expect_resolve_fails(fx, "{\"things\": [\"t-a\", \"t-ghost\"]}", CF_ENOTFOUND, "'t-ghost'");
	expect_resolve_fails(fx, "{\"things\": [\"t-a\"], \"groups\": [\"ghosts\"]}", CF_ENOTFOUND,
	    "'ghosts'");
	expect_resolve_fails(fx, "{\"certificates\": {\"issuer\": \"root-z\"}}", CF_ENOTFOUND,
	    "'root-z'");
	expect_resolve_fails(fx, "{\"certificates\": {\"issuer\": \"deadbeefdeadbeef\"}}",
	    CF_ENOTFOUND, "'deadbeefdeadbeef'");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobspec__targets_every_member),
		cmocka_unit_test(test_jobspec__config_every_member),
		cmocka_unit_test(test_jobspec__config_empty_is_defaults),
		cmocka_unit_test(test_jobspec__config_ramp_notified_and_plain_rate),
		cmocka_unit_test(test_jobspec__bad_values_name_their_path),
		cmocka_unit_test(test_jobspec__limits),
		cmocka_unit_test(test_jobspec__target_count_limit),
		cmocka_unit_test(test_jobspec__targets_round_trip),
		cmocka_unit_test(test_jobspec__config_round_trip),
		cmocka_unit_test_setup_teardown(test_jobspec__resolve_things_and_groups, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobspec__resolve_certificate_queries, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobspec__resolve_weak_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobspec__resolve_unknown_names, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
