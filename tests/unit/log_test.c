/*
 * Unit tests for cf_log: the logfmt line layout, escaping of hostile
 * values (a client id must never forge a second line or a key), value and
 * line truncation, level parsing and filtering, and reopening the file.
 */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_log.h"
#include "cf_util.h"

/* 2026-11-23T10:30:00.123Z */
#define T_MS 1795429800123LL

static char line[CF_LOG_LINE_MAX];
/* volatile: the compiler must not see the NULL and refuse the %s. */
static const char *volatile null_str = NULL;

static const char *fmt_line(cf_log_level l, const char *msg, const char *fmt, ...) CF_PRINTF(3, 4);

static const char *
fmt_line(cf_log_level l, const char *msg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cf_log_vformat(line, sizeof(line), T_MS, l, msg, fmt, ap);
	va_end(ap);
	return line;
}

static size_t
count_char(const char *s, char c)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

static void
test_log__layout(void **state)
{
	(void)state;
	assert_string_equal(fmt_line(CF_LOG_INFO, "mqtt connected", "port=%d host=%s", 8883, "127.0.0.1"),
	    "time=2026-11-23T10:30:00.123Z level=info msg=\"mqtt connected\" port=8883 "
	    "host=127.0.0.1\n");
}

static void
test_log__no_fields(void **state)
{
	(void)state;
	assert_string_equal(fmt_line(CF_LOG_ERROR, "stopping", NULL),
	    "time=2026-11-23T10:30:00.123Z level=error msg=\"stopping\"\n");
}

static void
test_log__integer_conversions(void **state)
{
	(void)state;
	fmt_line(CF_LOG_DEBUG, "n", "a=%ld b=%lld c=%zu d=%u e=%x f=%jd g=%c h=%lu p=100%%", -5L,
	    (long long)INT64_MAX, (size_t)42, 7u, 255u, (intmax_t)-1, 'z', 9UL);
	assert_non_null(strstr(line, " a=-5 b=9223372036854775807 c=42 d=7 e=ff f=-1 g=z h=9 p=100%\n"));
}

static void
test_log__value_with_space_is_quoted(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "reason=%s", "client gone away");
	assert_non_null(strstr(line, " reason=\"client gone away\"\n"));
}

static void
test_log__empty_and_null_values_are_quoted(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "a=%s b=%s", "", null_str);
	assert_non_null(strstr(line, " a=\"\" b=\"\"\n"));
}

static void
test_log__quotes_and_backslashes_are_escaped(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "v=%s", "say \"hi\" \\o/");
	assert_non_null(strstr(line, " v=\"say \\\"hi\\\" \\\\o/\"\n"));
}

static void
test_log__equals_sign_is_quoted(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "client=%s", "a=b");
	assert_non_null(strstr(line, " client=\"a=b\"\n"));
}

/* The attack: a client id that tries to end the line and start a forged one. */
static void
test_log__newline_cannot_forge_a_line(void **state)
{
	const char *evil = "sensor-1\ntime=2026-11-23T10:30:00.000Z level=error msg=\"forged\" x=1\r\n";

	(void)state;
	fmt_line(CF_LOG_WARN, "refused", "client=%s peer=%s", evil, "127.0.0.1:1");
	assert_int_equal(count_char(line, '\n'), 1);
	assert_int_equal(count_char(line, '\r'), 0);
	assert_non_null(strstr(line, "client=\"sensor-1\\ntime=2026-11-23T10:30:00.000Z level=error "
	    "msg=\\\"forged\\\" x=1\\r\\n\" peer=127.0.0.1:1\n"));
}

/* Breaking out of a quoted value with '"' must not work either. */
static void
test_log__quote_cannot_forge_a_key(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "client=%s", "x\" level=error msg=\"forged");
	assert_non_null(strstr(line, " client=\"x\\\" level=error msg=\\\"forged\"\n"));
	/* Exactly one unescaped level= key. */
	assert_ptr_equal(strstr(line, "level="), line + strlen("time=2026-11-23T10:30:00.123Z "));
}

static void
test_log__control_and_high_bytes_are_hex_escaped(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "v=%s", "a\x01" "b\x1b[31m\x7f\xc3\xa9\t");
	assert_non_null(strstr(line, " v=\"a\\x01b\\x1b[31m\\x7f\\xc3\\xa9\\t\"\n"));
}

static void
test_log__message_is_escaped_too(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "two\nlines", NULL);
	assert_int_equal(count_char(line, '\n'), 1);
	assert_non_null(strstr(line, "msg=\"two\\nlines\"\n"));
}

static void
test_log__control_char_in_key_is_replaced(void **state)
{
	(void)state;
	fmt_line(CF_LOG_INFO, "m", "bad\nkey=%d", 1);
	assert_int_equal(count_char(line, '\n'), 1);
	assert_non_null(strstr(line, " bad_key=1\n"));
}

static void
test_log__long_value_is_cut(void **state)
{
	char *big = malloc(CF_LOG_VALUE_MAX + 100);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', CF_LOG_VALUE_MAX + 99);
	big[CF_LOG_VALUE_MAX + 99] = '\0';
	fmt_line(CF_LOG_INFO, "m", "v=%s end=%d", big, 1);
	assert_non_null(strstr(line, "...\" end=1\n"));
	assert_true(strlen(line) < 100 + CF_LOG_VALUE_MAX + 10);
	free(big);
}

/* Many fields overflow the line: the line stays well formed and says so. */
static void
test_log__long_line_is_truncated_whole_values_only(void **state)
{
	char v[CF_LOG_VALUE_MAX + 1];

	(void)state;
	memset(v, '"', CF_LOG_VALUE_MAX);
	v[CF_LOG_VALUE_MAX] = '\0';
	/* Each value escapes to ~1 KiB: four do not fit in 4 KiB with the prefix. */
	fmt_line(CF_LOG_INFO, "m", "a=%s b=%s c=%s d=%s e=%s", v, v, v, v, v);
	assert_true(strlen(line) < CF_LOG_LINE_MAX);
	assert_int_equal(count_char(line, '\n'), 1);
	assert_non_null(strstr(line, "\" truncated=true\n"));
}

static size_t
fmt_small(char *out, size_t len, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, len);
	n = cf_log_vformat(out, len, T_MS, CF_LOG_INFO, "m", NULL, ap);
	va_end(ap);
	return n;
}

static void
test_log__small_buffer(void **state)
{
	char tiny[8];

	(void)state;
	assert_int_equal(fmt_small(tiny, sizeof(tiny)), 0);
	assert_string_equal(tiny, "");
}

static void
test_log__level_parse(void **state)
{
	cf_log_level l;

	(void)state;
	assert_int_equal(cf_log_level_parse(&l, "debug"), 0);
	assert_int_equal(l, CF_LOG_DEBUG);
	assert_int_equal(cf_log_level_parse(&l, "warning"), 0);
	assert_int_equal(l, CF_LOG_WARN);
	assert_int_equal(cf_log_level_parse(&l, "error"), 0);
	assert_int_equal(l, CF_LOG_ERROR);
	assert_int_equal(cf_log_level_parse(&l, "verbose"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "verbose"));
	assert_int_equal(cf_log_level_parse(&l, ""), CF_EINVAL);
	assert_string_equal(cf_log_level_name(CF_LOG_WARN), "warn");
	assert_string_equal(cf_log_level_name((cf_log_level)42), "unknown");
}

static char *
slurp(const char *path)
{
	char *s = NULL;
	size_t n;

	assert_int_equal(cf_file_read(&s, &n, path, 1 << 20), 0);
	return s;
}

static void
test_log__file_filtering_and_reopen(void **state)
{
	char dir[] = "/tmp/cf-log-XXXXXX", a[64], b[64];
	char *s;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a.log", dir);
	snprintf(b, sizeof(b), "%s/b.log", dir);
	assert_int_equal(cf_log_open(a), 0);
	cf_log_set_level(CF_LOG_INFO);
	assert_false(cf_log_enabled(CF_LOG_DEBUG));
	cf_log(CF_LOG_DEBUG, "hidden", "n=%d", 1);
	cf_log(CF_LOG_INFO, "shown", "n=%d", 2);
	cf_log_msg(CF_LOG_ERROR, "bad");
	/* logrotate moved a.log away: reopen writes to the new name. */
	assert_int_equal(rename(a, b), 0);
	assert_int_equal(cf_log_open(a), 0);
	cf_log_set_level(CF_LOG_DEBUG);
	cf_log(CF_LOG_DEBUG, "after", "n=%d", 3);
	/* A file that cannot be opened keeps the current destination. */
	assert_int_not_equal(cf_log_open("/nonexistent-dir/x.log"), 0);
	cf_log_msg(CF_LOG_INFO, "still here");
	cf_log_close();
	cf_log_set_level(CF_LOG_INFO);

	s = slurp(b);
	assert_null(strstr(s, "hidden"));
	assert_non_null(strstr(s, "level=info msg=\"shown\" n=2\n"));
	assert_non_null(strstr(s, "level=error msg=\"bad\"\n"));
	assert_int_equal(count_char(s, '\n'), 2);
	free(s);
	s = slurp(a);
	assert_non_null(strstr(s, "level=debug msg=\"after\" n=3\n"));
	assert_non_null(strstr(s, "msg=\"still here\"\n"));
	free(s);
	assert_int_equal(stat(a, &st), 0);
	assert_int_equal(st.st_mode & 0077 & ~0040, 0);
	assert_int_equal(cf_rmtree(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log__layout),
		cmocka_unit_test(test_log__no_fields),
		cmocka_unit_test(test_log__integer_conversions),
		cmocka_unit_test(test_log__value_with_space_is_quoted),
		cmocka_unit_test(test_log__empty_and_null_values_are_quoted),
		cmocka_unit_test(test_log__quotes_and_backslashes_are_escaped),
		cmocka_unit_test(test_log__equals_sign_is_quoted),
		cmocka_unit_test(test_log__newline_cannot_forge_a_line),
		cmocka_unit_test(test_log__quote_cannot_forge_a_key),
		cmocka_unit_test(test_log__control_and_high_bytes_are_hex_escaped),
		cmocka_unit_test(test_log__message_is_escaped_too),
		cmocka_unit_test(test_log__control_char_in_key_is_replaced),
		cmocka_unit_test(test_log__long_value_is_cut),
		cmocka_unit_test(test_log__long_line_is_truncated_whole_values_only),
		cmocka_unit_test(test_log__small_buffer),
		cmocka_unit_test(test_log__level_parse),
		cmocka_unit_test(test_log__file_filtering_and_reopen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
