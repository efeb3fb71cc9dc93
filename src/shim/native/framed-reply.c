/* See framed-reply.h. Every length is checked against what is left before it is used, and every
 * number is bounded before it is summed, so no input reads past buf[n) or overflows. */
#include "framed-reply.h"

#include <string.h>

#include "utf8.h"

int kb_decimal(const char *s, size_t len, size_t digits, long long *out) {
  long long v = 0;
  if (len == 0 || len > digits) return 0;
  for (size_t k = 0; k < len; k++) {
    if (s[k] < '0' || s[k] > '9') return 0;
    v = v * 10 + (s[k] - '0');
  }
  *out = v;
  return 1;
}

/* s[0..len) is a decimal number without a leading zero, at most max (and at most 9 digits). */
static int decimal(const unsigned char *s, size_t len, unsigned long max, unsigned long *out) {
  long long v;
  if (!kb_decimal((const char *)s, len, 9, &v) || (len > 1 && s[0] == '0') || (unsigned long long)v > max) return 0;
  *out = (unsigned long)v;
  return 1;
}

/* A number at s[*at] ended by a newline, the newline consumed; 0 when there is none within reach. */
static int number_line(const unsigned char *s, size_t n, size_t *at, unsigned long max, unsigned long *out) {
  size_t reach = n - *at < 10 ? n - *at : 10;
  const unsigned char *nl = memchr(s + *at, '\n', reach);
  if (!nl || !decimal(s + *at, (size_t)(nl - (s + *at)), max, out)) return 0;
  *at = (size_t)(nl - s) + 1;
  return 1;
}

long kb_frame_size(const unsigned char *buf, size_t n) {
  static const char magic[] = KB_FRAME_MAGIC " ";
  size_t m = sizeof magic - 1, at = m;
  unsigned long len;
  for (size_t k = 0; k < m; k++) {
    if (k >= n) return KB_FRAME_PARTIAL;
    if (buf[k] != (unsigned char)magic[k]) return KB_FRAME_MALFORMED;
  }
  if (!memchr(buf + m, '\n', n - m)) return n - m < 10 ? KB_FRAME_PARTIAL : KB_FRAME_MALFORMED;
  if (!number_line(buf, n, &at, 999999999UL, &len)) return KB_FRAME_MALFORMED;
  if (len > KB_MAX_REPLY_BYTES - at) return KB_FRAME_TOO_LONG;
  return (long)(at + len);
}

/* daemonIdentity's word: 1-64 of [A-Za-z0-9_.+-]. */
static int word(struct kb_text t) {
  if (t.len == 0 || t.len > 64) return 0;
  for (size_t k = 0; k < t.len; k++) {
    unsigned char c = (unsigned char)t.ptr[k];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("_.+-", c)))) return 0;
  }
  return 1;
}

/* What a well-formed frame holds besides its syntax (see framed-reply.h). */
static int well_formed(struct kb_frame *f) {
  const struct kb_text *x = f->field;
  unsigned long v;
  for (int k = 0; k < KB_FIELD_COUNT; k++) {
    if (x[k].ptr && !kb_utf8_valid((const unsigned char *)x[k].ptr, x[k].len)) return 0;
  }
  if (!x[KB_FIELD_VALUE].ptr == !x[KB_FIELD_ERROR_CODE].ptr) return 0;
  if (x[KB_FIELD_ERROR_CODE].ptr) {
    if (!x[KB_FIELD_ERROR_MESSAGE].ptr || !x[KB_FIELD_ERROR_STATUS].ptr) return 0;
    if (!decimal((const unsigned char *)x[KB_FIELD_ERROR_STATUS].ptr, x[KB_FIELD_ERROR_STATUS].len, 255, &v) || v == 0)
      return 0;
    f->status = (int)v;
  }
  if ((x[KB_FIELD_WARNING_PROFILE].ptr || x[KB_FIELD_WARNING_FIX].ptr) && !x[KB_FIELD_WARNING_MESSAGE].ptr) return 0;
  if (x[KB_FIELD_DAEMON_PID].ptr || x[KB_FIELD_DAEMON_VERSION].ptr || x[KB_FIELD_DAEMON_BUILD].ptr ||
      x[KB_FIELD_DAEMON_STARTED_BY].ptr) {
    struct kb_text pid = x[KB_FIELD_DAEMON_PID];
    if (!pid.ptr || !decimal((const unsigned char *)pid.ptr, pid.len, 2147483647UL, &v) || v == 0) return 0;
    if (!word(x[KB_FIELD_DAEMON_VERSION]) || (x[KB_FIELD_DAEMON_BUILD].ptr && !word(x[KB_FIELD_DAEMON_BUILD]))) return 0;
  }
  return 1;
}

int kb_read_frame(const unsigned char *buf, size_t n, struct kb_frame *out) {
  memset(out, 0, sizeof *out);
  long size = kb_frame_size(buf, n);
  if (size <= 0 || (unsigned long)size != n) return 0;
  size_t at = (size_t)((const unsigned char *)memchr(buf, '\n', n) - buf) + 1;
  while (at < n) {
    /* NAME SP LENGTH LF BYTES LF */
    size_t name = at, k;
    while (at < n && at - name <= KB_MAX_FRAME_NAME_BYTES && buf[at] != ' ') at++;
    size_t name_len = at - name;
    if (name_len == 0 || name_len > KB_MAX_FRAME_NAME_BYTES || at >= n) return 0;
    at++;
    unsigned long len;
    if (!number_line(buf, n, &at, n, &len) || len >= n - at || buf[at + len] != '\n') return 0;
    for (k = 0; k < KB_FIELD_COUNT; k++) {
      if (strlen(KB_FIELD_NAMES[k]) == name_len && memcmp(KB_FIELD_NAMES[k], buf + name, name_len) == 0) break;
    }
    if (k < KB_FIELD_COUNT) {
      if (out->field[k].ptr) return 0;
      out->field[k].ptr = (const char *)buf + at;
      out->field[k].len = len;
    }
    at += len + 1;
  }
  return well_formed(out);
}
