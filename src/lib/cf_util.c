/*
 * cf_util — file I/O with crash-safe replacement, secrets, passphrases,
 * names and time. Owns nothing beyond the buffers it hands back.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "cf_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

int
cf_file_read(char **out, size_t *out_len, const char *path, size_t max)
{
	int r = CF_ERROR, fd = -1;
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	ssize_t n;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = errno == ENOENT ? CF_ENOTFOUND : CF_ERROR;
		cf_error_set("%s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cf_error_set("%s: not a regular file", path);
		goto out;
	}
	if ((size_t)st.st_size > max) {
		r = CF_EINVAL;
		cf_error_set("%s: larger than %zu bytes", path, max);
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cf_error_set("%s: read failed: %s", path, n ? strerror(errno) : "short read");
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	buf = NULL;
	if (out_len)
		*out_len = got;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

int
cf_fsync_dir(const char *dir)
{
	int fd, r = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		cf_error_set("%s: %s", dir, strerror(errno));
		return CF_ERROR;
	}
	if (fsync(fd) != 0) {
		cf_error_set("fsync %s: %s", dir, strerror(errno));
		r = CF_ERROR;
	}
	close(fd);
	return r;
}

static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
write_replace(const char *path, const void *data, size_t len, mode_t mode, int exclusive)
{
	int r = CF_ERROR, fd = -1;
	char *tmp = NULL, *dcopy = NULL;
	size_t tlen = strlen(path) + 32;

	if ((tmp = malloc(tlen)) == NULL || (dcopy = strdup(path)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)) < 0) {
		cf_error_set("%s: %s", tmp, strerror(errno));
		goto out;
	}
	/* open() honours the umask; the mode is part of the contract (0600 keys). */
	if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		cf_error_set("%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		cf_error_set("%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (exclusive) {
		/* link() fails if path exists, so a concurrent creator cannot be clobbered. */
		if (link(tmp, path) != 0) {
			r = errno == EEXIST ? CF_EEXISTS : CF_ERROR;
			cf_error_set("%s: %s", path, strerror(errno));
			goto out;
		}
		unlink(tmp);
	} else if (rename(tmp, path) != 0) {
		cf_error_set("rename %s: %s", path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	r = cf_fsync_dir(dirname(dcopy));
out:
	if (fd >= 0)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	free(dcopy);
	return r;
}

int
cf_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_replace(path, data, len, mode, 0);
}

int
cf_file_create_new(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_replace(path, data, len, mode, 1);
}

int
cf_mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t i, len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		cf_error_set("invalid directory path");
		return CF_EINVAL;
	}
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST) {
			cf_error_set("mkdir %s: %s", buf, strerror(errno));
			return CF_ERROR;
		}
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

void
cf_wipe(void *p, size_t len)
{
	if (p != NULL)
		OPENSSL_cleanse(p, len);
}

void
cf_secret_free(char *s, size_t len)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, len ? len : strlen(s));
	free(s);
}

static int
read_tty_line(char *buf, size_t len, const char *prompt)
{
	struct termios old, quiet;
	FILE *tty;
	int r = CF_ERROR;

	if ((tty = fopen("/dev/tty", "r+")) == NULL) {
		cf_error_set("no terminal to ask for the passphrase: give --passphrase-file");
		return CF_EINVAL;
	}
	if (tcgetattr(fileno(tty), &old) != 0) {
		cf_error_set("cannot read a passphrase from this terminal: give --passphrase-file");
		goto out;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fprintf(tty, "%s", prompt);
	fflush(tty);
	tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
	if (fgets(buf, (int)len, tty) != NULL)
		r = 0;
	tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fprintf(tty, "\n");
	if (r != 0)
		cf_error_set("no passphrase entered");
out:
	fclose(tty);
	return r;
}

int
cf_passphrase_read(char **out, const char *file, const char *prompt, int confirm, size_t min_len)
{
	int r = CF_ERROR;
	char *pass = NULL, *again = NULL;
	size_t len = 0;

	if (file != NULL) {
		if ((r = cf_file_read(&pass, &len, file, 4096)) != 0) {
			cf_error_prefix("passphrase file");
			goto out;
		}
	} else {
		if ((pass = calloc(1, 1024)) == NULL || (again = calloc(1, 1024)) == NULL) {
			cf_error_set("out of memory");
			goto out;
		}
		if ((r = read_tty_line(pass, 1024, prompt)) != 0)
			goto out;
		if (confirm && (r = read_tty_line(again, 1024, "Repeat passphrase: ")) != 0)
			goto out;
		if (confirm && strcmp(pass, again) != 0) {
			r = CF_EINVAL;
			cf_error_set("the passphrases do not match");
			goto out;
		}
	}
	/* Only the first line counts, so a file may end with a newline. */
	pass[strcspn(pass, "\r\n")] = '\0';
	len = strlen(pass);
	if (len == 0 || len < min_len) {
		r = CF_EINVAL;
		cf_error_set("passphrase%s%s is %s (at least %zu characters)",
		    file ? " in " : "", file ? file : "", len ? "too short" : "empty",
		    min_len ? min_len : 1);
		goto out;
	}
	*out = pass;
	pass = NULL;
	r = 0;
out:
	cf_secret_free(pass, 0);
	if (again != NULL)
		cf_secret_free(again, 1024);
	return r;
}

int
cf_name_index(const char *const *names, size_t n, const char *name, int ignore_case)
{
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; i < n; i++)
		if ((ignore_case ? strcasecmp(names[i], name) : strcmp(names[i], name)) == 0)
			return (int)i;
	return -1;
}

int
cf_name_valid(const char *kind, const char *name)
{
	size_t i, len = name ? strlen(name) : 0;

	if (len == 0 || len > CF_NAME_MAX) {
		cf_error_set("%s name must be 1 to %d characters", kind, CF_NAME_MAX);
		return 0;
	}
	for (i = 0; i < len; i++) {
		char c = name[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-' || c == ':' || c == '.')
			continue;
		cf_error_set("%s name '%s' has a character outside [A-Za-z0-9_.:-] at position %zu",
		    kind, name, i + 1);
		return 0;
	}
	return 1;
}

int64_t
cf_time_now(void)
{
	return (int64_t)time(NULL);
}

void
cf_time_format(char *out, size_t out_len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(out, out_len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, out_len, "%lld", (long long)t);
}

int
cf_strfmt(char *out, size_t out_len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= out_len) {
		cf_error_set("value too long (max %zu bytes)", out_len - 1);
		return CF_EINVAL;
	}
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	/* No cf_error_set here: cleanup must not hide the error that caused it. */
	return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int
cf_rmtree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : CF_ERROR;
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : CF_ERROR;
}

int
cf_dir_missing_or_empty(const char *path)
{
	DIR *d;
	struct dirent *e;
	int empty = 1;

	if ((d = opendir(path)) == NULL) {
		if (errno == ENOENT)
			return 1;
		cf_error_set("%s: %s", path, strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	if (!empty)
		cf_error_set("%s exists and is not empty", path);
	return empty;
}

static void
split_path(char *dir, size_t dlen, char *base, size_t blen, const char *path)
{
	char tmp[4096];
	const char *slash;
	size_t len;

	snprintf(tmp, sizeof(tmp), "%s", path);
	len = strlen(tmp);
	while (len > 1 && tmp[len - 1] == '/')
		tmp[--len] = '\0';
	if ((slash = strrchr(tmp, '/')) == NULL) {
		snprintf(dir, dlen, ".");
		snprintf(base, blen, "%s", tmp);
	} else {
		snprintf(dir, dlen, "%.*s", slash == tmp ? 1 : (int)(slash - tmp), tmp);
		snprintf(base, blen, "%s", slash + 1);
	}
}

int
cf_staging_dir(char *out, size_t out_len, const char *path)
{
	char dir[4096], base[1024];

	split_path(dir, sizeof(dir), base, sizeof(base), path);
	if (cf_strfmt(out, out_len, "%s/.%s.XXXXXX", dir, base) != 0)
		return CF_EINVAL;
	if (mkdtemp(out) == NULL) {
		cf_error_set("cannot create a staging directory in %s: %s", dir, strerror(errno));
		return CF_ERROR;
	}
	return 0;
}

int
cf_staging_commit(const char *staging, const char *path)
{
	char dir[4096], base[1024];

	split_path(dir, sizeof(dir), base, sizeof(base), path);
	/* rename(2) replaces an empty directory, and fails on a non-empty one. */
	if (rename(staging, path) != 0) {
		cf_error_set("cannot move %s into place: %s", path, strerror(errno));
		return CF_ERROR;
	}
	return cf_fsync_dir(dir);
}

int
cf_failpoint(const char *name)
{
#ifdef CF_FAILPOINTS
	const char *list = getenv("CERTFLEET_FAILPOINTS"), *p, *end, *colon;
	size_t n = strlen(name);
	long secs;
	char *stop;

	for (p = list; p != NULL && *p != '\0'; p = *end ? end + 1 : end) {
		end = p + strcspn(p, ",");
		colon = memchr(p, ':', (size_t)(end - p));
		if (colon == NULL || (size_t)(colon - p) != n || strncasecmp(p, name, n) != 0)
			continue;
		colon++;
		if ((size_t)(end - colon) == 4 && strncmp(colon, "kill", 4) == 0) {
			fprintf(stderr, "certfleet: failpoint %s: kill\n", name);
			raise(SIGKILL);
		}
		if ((size_t)(end - colon) == 4 && strncmp(colon, "drop", 4) == 0) {
			fprintf(stderr, "certfleet: failpoint %s: drop\n", name);
			return 1;
		}
		if (strncmp(colon, "sleep=", 6) == 0) {
			secs = strtol(colon + 6, &stop, 10);
			if (stop == end && secs >= 1 && secs <= 600) {
				fprintf(stderr, "certfleet: failpoint %s: sleep %ld s\n", name, secs);
				sleep((unsigned)secs);
			}
		}
		return 0;
	}
#else
	(void)name;
#endif
	return 0;
}
