/*
 * cf_log — logfmt lines for the daemons. Owns the process-wide level and
 * log file descriptor; formats each line into a stack buffer through a
 * bounded writer and emits it with a single write(2), so concurrent
 * writers (certfleetd and scripts appending to the same file) never
 * interleave inside a line.
 */
#include "cf_log.h"

#include "cf_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static cf_log_level log_level = CF_LOG_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {
	[CF_LOG_DEBUG] = "debug",
	[CF_LOG_INFO] = "info",
	[CF_LOG_WARN] = "warn",
	[CF_LOG_ERROR] = "error",
};

/* Room kept at the end of every line for " truncated=true\n" and the NUL. */
#define TRUNC_MARK " truncated=true"
#define RESERVE (sizeof(TRUNC_MARK) + 1)
/* Longest key text (literal fmt characters before one conversion). */
#define KEY_MAX 128

int
cf_log_level_parse(cf_log_level *out, const char *name)
{
	int i;

	if ((i = cf_name_index(level_names, sizeof(level_names) / sizeof(level_names[0]), name,
	    0)) >= 0) {
		*out = (cf_log_level)i;
		return 0;
	}
	if (name != NULL && strcmp(name, "warning") == 0) {
		*out = CF_LOG_WARN;
		return 0;
	}
	cf_error_set("unknown log level '%.32s' (use debug, info, warn or error)", name);
	return CF_EINVAL;
}

const char *
cf_log_level_name(cf_log_level l)
{
	if ((unsigned)l >= sizeof(level_names) / sizeof(level_names[0]))
		return "unknown";
	return level_names[l];
}

void cf_log_set_level(cf_log_level l) { log_level = l; }
cf_log_level cf_log_get_level(void) { return log_level; }
int cf_log_enabled(cf_log_level l) { return l >= log_level; }

int
cf_log_open(const char *path)
{
	int fd;

	if (path == NULL) {
		cf_log_close();
		return 0;
	}
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640)) < 0) {
		cf_error_set("cannot open log file %s: %s", path, strerror(errno));
		return CF_ERROR;
	}
	if (log_fd == STDERR_FILENO) {
		log_fd = fd;
		return 0;
	}
	/*
	 * Reopening (SIGHUP): the new file takes the old descriptor's number in
	 * one dup2, so a thread logging meanwhile (certfleetd's notification
	 * thread) never writes to a closed or reused descriptor.
	 */
	if (dup2(fd, log_fd) < 0) {
		cf_error_set("cannot reopen log file %s: %s", path, strerror(errno));
		close(fd);
		return CF_ERROR;
	}
	(void)fcntl(log_fd, F_SETFD, FD_CLOEXEC);
	close(fd);
	return 0;
}

void
cf_log_close(void)
{
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

/* ---- the bounded writer -------------------------------------------------- */

typedef struct {
	char *p;
	size_t len;
	size_t cap;  /* usable bytes, RESERVE already taken off */
	int full;    /* something did not fit: everything after it is dropped */
} wbuf;

/* Appends n bytes entirely, or nothing (and marks the line full). */
static void
put(wbuf *w, const char *s, size_t n)
{
	if (w->full || n > w->cap - w->len) {
		w->full = 1;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static int
needs_quotes(const unsigned char *v, size_t n)
{
	size_t i;

	if (n == 0)
		return 1;
	for (i = 0; i < n; i++)
		if (v[i] <= ' ' || v[i] >= 0x7f || v[i] == '"' || v[i] == '=' || v[i] == '\\')
			return 1;
	return 0;
}

/*
 * Appends key text and one value, quoted and escaped when needed (always
 * quoted with force_quotes). The pair is built in a local buffer and
 * appended whole, so a full line never ends inside a quoted value or on a
 * key without its value.
 */
static void
put_value(wbuf *w, const char *key, size_t kn, const char *value, size_t n, int force_quotes)
{
	static const char hex[] = "0123456789abcdef";
	char buf[KEY_MAX + CF_LOG_VALUE_MAX * 4 + 8];
	const unsigned char *v = (const unsigned char *)value;
	size_t i, o = 0, take = n > CF_LOG_VALUE_MAX ? CF_LOG_VALUE_MAX : n;

	memcpy(buf, key, kn);
	o = kn;
	if (!force_quotes && take == n && !needs_quotes(v, take)) {
		memcpy(buf + o, value, n);
		put(w, buf, o + n);
		return;
	}
	buf[o++] = '"';
	for (i = 0; i < take; i++) {
		switch (v[i]) {
		case '"': buf[o++] = '\\'; buf[o++] = '"'; break;
		case '\\': buf[o++] = '\\'; buf[o++] = '\\'; break;
		case '\n': buf[o++] = '\\'; buf[o++] = 'n'; break;
		case '\r': buf[o++] = '\\'; buf[o++] = 'r'; break;
		case '\t': buf[o++] = '\\'; buf[o++] = 't'; break;
		default:
			if (v[i] < ' ' || v[i] >= 0x7f) {
				buf[o++] = '\\';
				buf[o++] = 'x';
				buf[o++] = hex[v[i] >> 4];
				buf[o++] = hex[v[i] & 0xf];
			} else {
				buf[o++] = (char)v[i];
			}
			break;
		}
	}
	if (take < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	put(w, buf, o);
}

/* Keys come from the program, but a stray control character still must not break the line. */
static void
key_char(char *key, size_t *kn, char c)
{
	if ((unsigned char)c < ' ' || (unsigned char)c >= 0x7f || c == '"')
		c = '_';
	if (*kn < KEY_MAX)
		key[(*kn)++] = c;
}

/* Walks fmt: literal text is copied, each conversion becomes one escaped value. */
static void
put_fields(wbuf *w, const char *fmt, va_list ap)
{
	const char *f = fmt;
	char tmp[64], key[KEY_MAX];
	const char *s;
	size_t kn = 0;
	int lmod;

	while (*f != '\0') {
		if (*f != '%') {
			key_char(key, &kn, *f++);
			continue;
		}
		f++;
		if (*f == '%') {
			key_char(key, &kn, '%');
			f++;
			continue;
		}
		/* 0: none, 1: l, 2: ll, 3: z, 4: j */
		lmod = 0;
		if (f[0] == 'l' && f[1] == 'l') {
			lmod = 2;
			f += 2;
		} else if (*f == 'l') {
			lmod = 1;
			f++;
		} else if (*f == 'z') {
			lmod = 3;
			f++;
		} else if (*f == 'j') {
			lmod = 4;
			f++;
		}
		s = tmp;
		switch (*f) {
		case 's':
			s = va_arg(ap, const char *);
			if (s == NULL)
				s = "";
			break;
		case 'c':
			tmp[0] = (char)va_arg(ap, int);
			tmp[1] = '\0';
			break;
		case 'd':
		case 'i':
			switch (lmod) {
			case 1: snprintf(tmp, sizeof(tmp), "%ld", va_arg(ap, long)); break;
			case 2: snprintf(tmp, sizeof(tmp), "%lld", va_arg(ap, long long)); break;
			case 3: snprintf(tmp, sizeof(tmp), "%zd", va_arg(ap, ssize_t)); break;
			case 4: snprintf(tmp, sizeof(tmp), "%jd", va_arg(ap, intmax_t)); break;
			default: snprintf(tmp, sizeof(tmp), "%d", va_arg(ap, int)); break;
			}
			break;
		case 'u':
		case 'x':
			switch (lmod) {
			case 1: snprintf(tmp, sizeof(tmp), *f == 'u' ? "%lu" : "%lx", va_arg(ap, unsigned long)); break;
			case 2: snprintf(tmp, sizeof(tmp), *f == 'u' ? "%llu" : "%llx", va_arg(ap, unsigned long long)); break;
			case 3: snprintf(tmp, sizeof(tmp), *f == 'u' ? "%zu" : "%zx", va_arg(ap, size_t)); break;
			case 4: snprintf(tmp, sizeof(tmp), *f == 'u' ? "%ju" : "%jx", va_arg(ap, uintmax_t)); break;
			default: snprintf(tmp, sizeof(tmp), *f == 'u' ? "%u" : "%x", va_arg(ap, unsigned)); break;
			}
			break;
		default:
			/* An unsupported conversion: stop rather than read a wrong-typed argument. */
			key_char(key, &kn, '?');
			put(w, key, kn);
			return;
		}
		f++;
		put_value(w, key, kn, s, strlen(s), 0);
		kn = 0;
	}
	put(w, key, kn);
}

size_t
cf_log_vformat(char *out, size_t out_len, int64_t ms, cf_log_level l, const char *msg,
    const char *fmt, va_list ap)
{
	wbuf w = { .p = out, .len = 0, .cap = 0, .full = 0 };
	char ts[96];
	struct tm tm;
	time_t secs = (time_t)(ms / 1000);

	if (out_len < RESERVE + 64) {
		if (out_len > 0)
			out[0] = '\0';
		return 0;
	}
	w.cap = out_len - RESERVE;
	if (gmtime_r(&secs, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(ts, sizeof(ts), "time=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000 + 1000) % 1000);
	put(&w, ts, strlen(ts));
	put(&w, cf_log_level_name(l), strlen(cf_log_level_name(l)));
	/* msg is always quoted, so it reads the same whatever it holds. */
	put_value(&w, " msg=", 5, msg ? msg : "", msg ? strlen(msg) : 0, 1);
	if (fmt != NULL && *fmt != '\0') {
		put(&w, " ", 1);
		put_fields(&w, fmt, ap);
	}
	/* RESERVE guarantees room for the marker, the newline and the NUL. */
	if (w.full) {
		memcpy(out + w.len, TRUNC_MARK, sizeof(TRUNC_MARK) - 1);
		w.len += sizeof(TRUNC_MARK) - 1;
	}
	out[w.len++] = '\n';
	out[w.len] = '\0';
	return w.len;
}

static void
emit(cf_log_level l, const char *msg, const char *fmt, va_list ap)
{
	char line[CF_LOG_LINE_MAX];
	struct timespec now;
	size_t n;
	ssize_t k;
	int saved = errno;

	clock_gettime(CLOCK_REALTIME, &now);
	n = cf_log_vformat(line, sizeof(line), (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, l,
	    msg, fmt, ap);
	/* One write per line; a short write to a full disk is not retried. */
	do {
		k = write(log_fd, line, n);
	} while (k < 0 && errno == EINTR);
	errno = saved;
}

void
cf_log(cf_log_level l, const char *msg, const char *fmt, ...)
{
	va_list ap;

	if (l < log_level)
		return;
	va_start(ap, fmt);
	emit(l, msg, fmt, ap);
	va_end(ap);
}

/* A dummy variadic wrapper gives emit() a va_list when there are no fields. */
static void
emit_plain(cf_log_level l, const char *msg, ...)
{
	va_list ap;

	va_start(ap, msg);
	emit(l, msg, NULL, ap);
	va_end(ap);
}

void
cf_log_msg(cf_log_level l, const char *msg)
{
	if (l < log_level)
		return;
	emit_plain(l, msg);
}
