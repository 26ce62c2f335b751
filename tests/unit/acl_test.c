/* Unit tests for cf_acl: principal usernames and the per-kind topic rules, adversarially. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cf_acl.h"

#define ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int
dev(const char *client, const char *topic, cf_acl_access a)
{
	return cf_acl_check(CF_KIND_DEVICE, client, "cf/", topic, a);
}

static int
quar(const char *client, const char *topic, cf_acl_access a)
{
	return cf_acl_check_flags(CF_KIND_DEVICE, CF_ACL_QUARANTINED, client, "cf/", topic, a);
}

static void
test_acl__device_own_topics_allowed(void **state)
{
	(void)state;
	assert_int_equal(dev("a", "cf/things/a/x", CF_ACL_PUBLISH), 0);
	assert_int_equal(dev("a", "cf/things/a/jobs/notify-next", CF_ACL_READ), 0);
	assert_int_equal(dev("a", "cf/things/a/#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(dev("a", "cf/things/a/+/accepted", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(dev("a", "cf/things/a/", CF_ACL_PUBLISH), 0); /* empty last level */
	assert_int_equal(dev("sensor-1.x:y_z", "cf/things/sensor-1.x:y_z/t", CF_ACL_PUBLISH), 0);
}

static void
test_acl__device_prefix_of_name_is_not_enough(void **state)
{
	(void)state;
	/* "a" is a prefix of "ab": the level must end right after the client id. */
	assert_int_equal(dev("a", "cf/things/ab/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/ab/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("ab", "cf/things/a/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/a", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/a", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/a#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/a+", CF_ACL_SUBSCRIBE), CF_EREJECTED);
}

static void
test_acl__device_wildcards_before_its_name_denied(void **state)
{
	(void)state;
	assert_int_equal(dev("a", "#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "+", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/+/jobs", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/+/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "+/things/a/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/+/a/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "$share/g/cf/things/a/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
}

static void
test_acl__device_other_things_and_internal_topics_denied(void **state)
{
	(void)state;
	assert_int_equal(dev("a", "cf/things/b/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things/b/x", CF_ACL_READ), CF_EREJECTED);
	assert_int_equal(dev("a", "$cf/broker/connection", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a", "$cf/broker/connection", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "$SYS/broker/uptime", CF_ACL_READ), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/provisioning/t/provision", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "CF/things/a/x", CF_ACL_PUBLISH), CF_EREJECTED); /* case matters */
	assert_int_equal(dev("a", "/cf/things/a/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "things/a/x", CF_ACL_PUBLISH), CF_EREJECTED);
}

static void
test_acl__dot_dot_has_no_meaning(void **state)
{
	(void)state;
	/*
	 * MQTT topics have no path semantics: "cf/things/a/../b" is a topic
	 * under cf/things/a/, reachable only by filters that match it, never
	 * by thing b's "cf/things/b/#". So it is allowed.
	 */
	assert_int_equal(dev("a", "cf/things/a/../b", CF_ACL_PUBLISH), 0);
	assert_int_equal(dev("a", "cf/things/a/../../things/b/x", CF_ACL_PUBLISH), 0);
	assert_int_equal(dev("a", "cf/things/./a/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("a", "cf/things//a/x", CF_ACL_PUBLISH), CF_EREJECTED);
}

static void
test_acl__bad_topics_denied_for_everyone(void **state)
{
	char big[CF_ACL_TOPIC_MAX + 2];
	cf_acl_kind k;

	(void)state;
	memcpy(big, "cf/things/a/", 12);
	memset(big + 12, 'x', sizeof(big) - 13);
	big[sizeof(big) - 1] = '\0'; /* CF_ACL_TOPIC_MAX + 1 bytes */
	for (k = CF_KIND_DEVICE; k < CF_KIND__COUNT; k++) {
		assert_int_equal(cf_acl_check(k, "a", "cf/", "", CF_ACL_PUBLISH), CF_EREJECTED);
		assert_int_equal(cf_acl_check(k, "a", "cf/", NULL, CF_ACL_PUBLISH), CF_EREJECTED);
		assert_int_equal(cf_acl_check(k, "a", "cf/", big, CF_ACL_PUBLISH), CF_EREJECTED);
		assert_int_equal(cf_acl_check_n(k, "a", "cf/", "cf/things/a/x\0y", 15, CF_ACL_PUBLISH),
		    CF_EREJECTED);
	}
	big[sizeof(big) - 2] = '\0'; /* exactly CF_ACL_TOPIC_MAX bytes */
	assert_int_equal(dev("a", big, CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_check(CF_KIND__COUNT, "a", "cf/", "cf/things/a/x", CF_ACL_PUBLISH),
	    CF_EREJECTED);
	assert_int_equal(cf_acl_check(CF_KIND_DEVICE, "a", "cf/", "cf/things/a/x", (cf_acl_access)7),
	    CF_EREJECTED);
}

static void
test_acl__hostile_client_ids_denied(void **state)
{
	(void)state;
	assert_int_equal(dev("", "cf/things//x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev(NULL, "cf/things/a/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(dev("+", "cf/things/+/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("#", "cf/things/#/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(dev("a/b", "cf/things/a/b/x", CF_ACL_PUBLISH), CF_EREJECTED);
}

static void
test_acl__other_prefixes(void **state)
{
	(void)state;
	assert_int_equal(cf_acl_check(CF_KIND_DEVICE, "a", "fleet/v1/", "fleet/v1/things/a/x",
	    CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_check(CF_KIND_DEVICE, "a", "fleet/v1/", "cf/things/a/x",
	    CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check(CF_KIND_DEVICE, "a", "", "things/a/x", CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_prefix_check("cf/"), 0);
	assert_int_equal(cf_acl_prefix_check(""), 0);
	assert_int_equal(cf_acl_prefix_check("a/b/"), 0);
	assert_int_equal(cf_acl_prefix_check("cf"), CF_EINVAL);
	assert_int_equal(cf_acl_prefix_check("$cf/"), CF_EINVAL);
	assert_int_equal(cf_acl_prefix_check("+/"), CF_EINVAL);
	assert_int_equal(cf_acl_prefix_check("cf/#/"), CF_EINVAL);
	assert_int_equal(cf_acl_prefix_check(NULL), CF_EINVAL);
}

static void
test_acl__claim_only_provisioning(void **state)
{
	const cf_acl_kind c = CF_KIND_CLAIM;

	(void)state;
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision", CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/x/accepted",
	    CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/x/rejected",
	    CF_ACL_READ), 0);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/x/accepted",
	    CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	/* another client's replies, and the replies without a client id */
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/y/accepted",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/y/accepted",
	    CF_ACL_READ), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/xy/accepted",
	    CF_ACL_READ), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/accepted",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/+/accepted",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/x/#",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/+/provision/x/accepted",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/#", CF_ACL_SUBSCRIBE),
	    CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning//provision", CF_ACL_PUBLISH),
	    CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/provisioning/t1/provision/x",
	    CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "cf/things/x/y", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "x", "cf/", "#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	/* a client id that cannot be one topic level gets nothing */
	assert_int_equal(cf_acl_check(c, "a/b", "cf/", "cf/provisioning/t1/provision", CF_ACL_PUBLISH),
	    CF_EREJECTED);
	assert_int_equal(cf_acl_check(c, "+", "cf/", "cf/provisioning/t1/provision/+/accepted",
	    CF_ACL_SUBSCRIBE), CF_EREJECTED);
}

static void
test_acl__service_may_do_anything(void **state)
{
	const cf_acl_kind s = CF_KIND_SERVICE;

	(void)state;
	assert_int_equal(cf_acl_check(s, "certfleetd", "cf/", "#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check(s, "certfleetd", "cf/", "$cf/broker/#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check(s, "certfleetd", "cf/", "cf/things/a/jobs/notify-next",
	    CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_check(s, NULL, "cf/", "cf/things/b/x", CF_ACL_READ), 0);
}

static void
test_acl__quarantined_device_keeps_rotation_topics(void **state)
{
	static const cf_acl_access all[] = { CF_ACL_READ, CF_ACL_PUBLISH, CF_ACL_SUBSCRIBE };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_int_equal(quar("a", "cf/things/a/jobs/$next/get", all[i]), 0);
		assert_int_equal(quar("a", "cf/things/a/jobs/$next/get/accepted", all[i]), 0);
		assert_int_equal(quar("a", "cf/things/a/jobs/notify-next", all[i]), 0);
		assert_int_equal(quar("a", "cf/things/a/jobs/j1/update", all[i]), 0);
		assert_int_equal(quar("a", "cf/things/a/certificate/create/json", all[i]), 0);
		assert_int_equal(quar("a", "cf/things/a/jobs/", all[i]), 0); /* empty last level */
	}
	assert_int_equal(quar("a", "cf/things/a/jobs/#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(quar("a", "cf/things/a/jobs/$next/get/+", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(quar("a", "cf/things/a/certificate/+/+", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check_flags(CF_KIND_DEVICE, CF_ACL_QUARANTINED, "a", "fleet/",
	    "fleet/things/a/jobs/x", CF_ACL_PUBLISH), 0);
}

static void
test_acl__quarantined_device_loses_other_own_topics(void **state)
{
	static const char *const denied[] = {
		"cf/things/a/telemetry",
		"cf/things/a/cmd",
		"cf/things/a/",
		"cf/things/a/jobs",            /* the level itself, not below it */
		"cf/things/a/certificate",
		"cf/things/a/jobsx/y",         /* "jobs" is a prefix of the level */
		"cf/things/a/certificates/y",
		"cf/things/a/JOBS/x",          /* case matters */
		"cf/things/a/x/jobs/y",        /* not directly below the thing */
		"cf/things/a//jobs/y",
		"cf/things/b/jobs/x",          /* another thing's rotation topics */
		"cf/things/ab/jobs/x",
		"cf/things/a/../a/jobs/x",     /* literal: a level named ".." */
		"$cf/broker/connection",
		"cf/provisioning/t/provision",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		if (quar("a", denied[i], CF_ACL_PUBLISH) != CF_EREJECTED ||
		    quar("a", denied[i], CF_ACL_READ) != CF_EREJECTED ||
		    quar("a", denied[i], CF_ACL_SUBSCRIBE) != CF_EREJECTED)
			fail_msg("quarantined device a was allowed '%s'", denied[i]);
	}
	/* Wildcards that would reach past the rotation topics. */
	assert_int_equal(quar("a", "cf/things/a/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "cf/things/a/+", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "cf/things/a/+/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "cf/things/a/+/accepted", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "cf/things/a/jobs#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "cf/things/+/jobs/#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	assert_int_equal(quar("a", "#", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	/* Unchanged without the flag. */
	assert_int_equal(dev("a", "cf/things/a/telemetry", CF_ACL_PUBLISH), 0);
	assert_int_equal(dev("a", "cf/things/a/#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check_flags(CF_KIND_DEVICE, 0, "a", "cf/", "cf/things/a/cmd",
	    CF_ACL_SUBSCRIBE), 0);
}

static void
test_acl__quarantine_flag_only_narrows_devices(void **state)
{
	(void)state;
	/* Not things: the flag changes nothing for the service or a claim. */
	assert_int_equal(cf_acl_check_flags(CF_KIND_SERVICE, CF_ACL_QUARANTINED, "certfleetd", "cf/",
	    "#", CF_ACL_SUBSCRIBE), 0);
	assert_int_equal(cf_acl_check_flags(CF_KIND_CLAIM, CF_ACL_QUARANTINED, "x", "cf/",
	    "cf/provisioning/t1/provision", CF_ACL_PUBLISH), 0);
	assert_int_equal(cf_acl_check_flags(CF_KIND_CLAIM, CF_ACL_QUARANTINED, "x", "cf/",
	    "cf/things/x/jobs/y", CF_ACL_PUBLISH), CF_EREJECTED);
	/* Bad topics and hostile client ids stay denied. */
	assert_int_equal(quar("a", "", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(quar("a", NULL, CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check_flags_n(CF_KIND_DEVICE, CF_ACL_QUARANTINED, "a", "cf/",
	    "cf/things/a/jobs/x\0y", 19, CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(quar("", "cf/things//jobs/x", CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(quar("+", "cf/things/+/jobs/x", CF_ACL_SUBSCRIBE), CF_EREJECTED);
	/* Unknown flag bits are denied rather than ignored. */
	assert_int_equal(cf_acl_check_flags(CF_KIND_DEVICE, 0x2u, "a", "cf/", "cf/things/a/x",
	    CF_ACL_PUBLISH), CF_EREJECTED);
	assert_int_equal(cf_acl_check_flags(CF_KIND_SERVICE, 0x80u, "a", "cf/", "x", CF_ACL_PUBLISH),
	    CF_EREJECTED);
}

static void
test_acl__name_set_lookup(void **state)
{
	char *names[] = { "zeta", "a", "ab", "sensor-1", "B" };
	char *many[2000], buf[2000][16];
	cf_acl_names *set = NULL, *empty = NULL, *big = NULL;
	size_t i;

	(void)state;
	assert_int_equal(cf_acl_names_new(&set, names, 5), 0);
	assert_int_equal(cf_acl_names_count(set), 5);
	assert_true(cf_acl_names_has(set, "a"));
	assert_true(cf_acl_names_has(set, "ab"));
	assert_true(cf_acl_names_has(set, "zeta"));
	assert_true(cf_acl_names_has(set, "B"));
	assert_false(cf_acl_names_has(set, "b"));    /* case matters */
	assert_false(cf_acl_names_has(set, "a "));
	assert_false(cf_acl_names_has(set, "abc"));  /* a member's prefix or extension is not it */
	assert_false(cf_acl_names_has(set, "sensor-"));
	assert_false(cf_acl_names_has(set, ""));
	assert_false(cf_acl_names_has(set, NULL));
	/* strcmp order, for diffing two sets */
	assert_string_equal(cf_acl_names_at(set, 0), "B");
	assert_string_equal(cf_acl_names_at(set, 1), "a");
	assert_string_equal(cf_acl_names_at(set, 2), "ab");
	assert_string_equal(cf_acl_names_at(set, 4), "zeta");
	assert_int_equal(cf_acl_names_new(&empty, NULL, 0), 0);
	assert_int_equal(cf_acl_names_count(empty), 0);
	assert_false(cf_acl_names_has(empty, "a"));
	assert_false(cf_acl_names_has(NULL, "a"));
	assert_int_equal(cf_acl_names_count(NULL), 0);
	for (i = 0; i < 2000; i++) {
		snprintf(buf[i], sizeof(buf[i]), "t-%zu", i * 7);
		many[i] = buf[i];
	}
	assert_int_equal(cf_acl_names_new(&big, many, 2000), 0);
	for (i = 0; i < 2000 * 7; i++) {
		if (cf_acl_names_has(big, (snprintf(buf[0], 16, "t-%zu", i), buf[0])) != (i % 7 == 0))
			fail_msg("t-%zu: wrong answer", i);
	}
	cf_acl_names_free(big);
	cf_acl_names_free(empty);
	cf_acl_names_free(set);
	cf_acl_names_free(NULL);
}

static void
test_acl__username_round_trip(void **state)
{
	cf_principal p = { .kind = CF_KIND_DEVICE, .id = ID }, q;
	char buf[CF_ACL_USERNAME_MAX];

	(void)state;
	assert_int_equal(cf_acl_principal_format(buf, sizeof(buf), &p), 0);
	assert_string_equal(buf, "device:" ID);
	assert_int_equal(cf_acl_principal_parse(&q, buf), 0);
	assert_int_equal(q.kind, CF_KIND_DEVICE);
	assert_string_equal(q.id, ID);
	assert_int_equal(cf_acl_principal_parse(&q, "service:" ID), 0);
	assert_int_equal(q.kind, CF_KIND_SERVICE);
	assert_int_equal(cf_acl_principal_parse(&q, "claim:" ID), 0);
	assert_int_equal(q.kind, CF_KIND_CLAIM);
	assert_string_equal(cf_acl_kind_name(CF_KIND_CLAIM), "claim");
	assert_string_equal(cf_acl_kind_name(CF_KIND__COUNT), "unknown");
	assert_int_equal(cf_acl_principal_format(buf, 20, &p), CF_EINVAL); /* too small */
	p.id[3] = 'G';
	assert_int_equal(cf_acl_principal_format(buf, sizeof(buf), &p), CF_EINVAL);
}

static void
test_acl__garbage_usernames_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"device",
		"device:",
		":" ID,
		"Device:" ID,
		"devices:" ID,
		"dev:" ID,
		"admin:" ID,
		"device:" ID "0",                                                   /* 65 */
		"device:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", /* 63 */
		"device:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"device:0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef",
		"device: 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"device:" ID "\n",
		"device::" ID,
		"sensor-1",
	};
	cf_principal q;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (cf_acl_principal_parse(&q, bad[i]) != CF_EINVAL)
			fail_msg("username '%s' was accepted", bad[i]);
	}
	assert_int_equal(cf_acl_principal_parse(&q, NULL), CF_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acl__device_own_topics_allowed),
		cmocka_unit_test(test_acl__device_prefix_of_name_is_not_enough),
		cmocka_unit_test(test_acl__device_wildcards_before_its_name_denied),
		cmocka_unit_test(test_acl__device_other_things_and_internal_topics_denied),
		cmocka_unit_test(test_acl__dot_dot_has_no_meaning),
		cmocka_unit_test(test_acl__bad_topics_denied_for_everyone),
		cmocka_unit_test(test_acl__hostile_client_ids_denied),
		cmocka_unit_test(test_acl__other_prefixes),
		cmocka_unit_test(test_acl__claim_only_provisioning),
		cmocka_unit_test(test_acl__service_may_do_anything),
		cmocka_unit_test(test_acl__quarantined_device_keeps_rotation_topics),
		cmocka_unit_test(test_acl__quarantined_device_loses_other_own_topics),
		cmocka_unit_test(test_acl__quarantine_flag_only_narrows_devices),
		cmocka_unit_test(test_acl__name_set_lookup),
		cmocka_unit_test(test_acl__username_round_trip),
		cmocka_unit_test(test_acl__garbage_usernames_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
