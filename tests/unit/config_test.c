/* Unit tests for cf_config: the key = value parser behind every config file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_config.h"
#include "cf_util.h"

static void
test_config__parses_values_comments_and_whitespace(void **state)
{
	cf_config *cfg = NULL;
	long v = 0;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf",
	    "# comment\n\n  database =  certfleet.db  \nport=8883\r\nempty =\n"), 0);
	assert_string_equal(cf_config_get(cfg, "database"), "certfleet.db");
	assert_string_equal(cf_config_get(cfg, "empty"), "");
	assert_string_equal(cf_config_get_str(cfg, "empty", "dflt"), "dflt");
	assert_null(cf_config_get(cfg, "missing"));
	assert_int_equal(cf_config_get_int(&v, cfg, "port", 1, 65535, 0), 0);
	assert_int_equal(v, 8883);
	assert_int_equal(cf_config_get_int(&v, cfg, "missing", 1, 10, 7), 0);
	assert_int_equal(v, 7);
	cf_config_free(cfg);
}

static void
test_config__line_without_equals_names_line(void **state)
{
	cf_config *cfg = NULL;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "a = 1\nb 2\n"), CF_EINVAL);
	assert_null(cfg);
	assert_non_null(strstr(cf_error_last(), "t.conf:2"));
}

static void
test_config__duplicate_key_refused(void **state)
{
	cf_config *cfg = NULL;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "a = 1\na = 2\n"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "already set on line 1"));
}

static void
test_config__missing_key_refused(void **state)
{
	cf_config *cfg = NULL;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", " = 1\n"), CF_EINVAL);
}

static void
test_config__unknown_key_named(void **state)
{
	static const char *const known[] = { "database", NULL };
	cf_config *cfg = NULL;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "database = x\ndatabse = y\n"), 0);
	assert_int_equal(cf_config_check_keys(cfg, known), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "t.conf:2: unknown key 'databse'"));
	cf_config_free(cfg);
}

static void
test_config__key_family_accepts_named_members_only(void **state)
{
	static const char *const known[] = { "database", "mitigation_rule.*", NULL };
	cf_config *cfg = NULL;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "mitigation_rule.A_CHECK = rotate\n"), 0);
	assert_int_equal(cf_config_check_keys(cfg, known), 0);
	assert_string_equal(cf_config_get(cfg, "mitigation_rule.A_CHECK"), "rotate");
	cf_config_free(cfg);
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "mitigation_rule. = x\n"), 0);
	assert_int_equal(cf_config_check_keys(cfg, known), CF_EINVAL);
	cf_config_free(cfg);
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "mitigation_rulex = x\n"), 0);
	assert_int_equal(cf_config_check_keys(cfg, known), CF_EINVAL);
	cf_config_free(cfg);
}

static void
test_config__int_out_of_range_or_garbage(void **state)
{
	cf_config *cfg = NULL;
	long v = 42;

	(void)state;
	assert_int_equal(cf_config_parse(&cfg, "t.conf", "a = 0\nb = 12x\nc = 99999999999999999999\n"), 0);
	assert_int_equal(cf_config_get_int(&v, cfg, "a", 1, 10, 5), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "from 1 to 10"));
	assert_int_equal(cf_config_get_int(&v, cfg, "b", 1, 100, 5), CF_EINVAL);
	assert_int_equal(cf_config_get_int(&v, cfg, "c", 1, 100, 5), CF_EINVAL);
	assert_int_equal(v, 42);
	cf_config_free(cfg);
}

static void
test_config__load_missing_file_and_nul_byte(void **state)
{
	cf_config *cfg = NULL;
	char dir[] = "/tmp/cf-config-XXXXXX", path[256];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/missing.conf", dir);
	assert_int_equal(cf_config_load(&cfg, path), CF_ENOTFOUND);
	snprintf(path, sizeof(path), "%s/nul.conf", dir);
	assert_int_equal(cf_file_write_atomic(path, "a = 1\0b = 2\n", 12, 0600), 0);
	assert_int_equal(cf_config_load(&cfg, path), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "NUL"));
	snprintf(path, sizeof(path), "%s/ok.conf", dir);
	assert_int_equal(cf_file_write_atomic(path, "a = 1\n", 6, 0600), 0);
	assert_int_equal(cf_config_load(&cfg, path), 0);
	assert_string_equal(cf_config_path(cfg), path);
	cf_config_free(cfg);
	assert_int_equal(cf_rmtree(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config__parses_values_comments_and_whitespace),
		cmocka_unit_test(test_config__line_without_equals_names_line),
		cmocka_unit_test(test_config__duplicate_key_refused),
		cmocka_unit_test(test_config__missing_key_refused),
		cmocka_unit_test(test_config__unknown_key_named),
		cmocka_unit_test(test_config__key_family_accepts_named_members_only),
		cmocka_unit_test(test_config__int_out_of_range_or_garbage),
		cmocka_unit_test(test_config__load_missing_file_and_nul_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
