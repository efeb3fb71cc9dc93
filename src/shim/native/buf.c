/* A growable buffer for what the shim writes, and the text rules it follows (see shim.h). */
#define _DEFAULT_SOURCE /* explicit_bzero in glibc's and musl's <string.h> */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb-generated.h"
#include "shim.h"
#include "utf8.h"

void kb_wipe(void *p, size_t n) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25)) || defined(__OpenBSD__) || \
    defined(__FreeBSD__) || defined(__NetBSD__)
  if (p) explicit_bzero(p, n);
#else
  /* Stores through a volatile pointer: each one must happen. */
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
#endif
}

void buf_add(struct buf *b, const void *bytes, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) kb_out_of_memory();
    b->data = data;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_int(struct buf *b, long long n) {
  char s[24];
  snprintf(s, sizeof s, "%lld", n);
  buf_str(b, s);
}

/* One byte of a JSON string as JSON.stringify writes it: bytes of multi-byte characters as they are. */
static void json_byte(struct buf *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef", named[] = "btn\0fr";
  char esc[6] = {'\\', (char)c, '0', '0', hex[c >> 4], hex[c & 15]};
  if (c == '"' || c == '\\') buf_add(b, esc, 2);
  else if (c >= '\b' && c <= '\r' && named[c - '\b']) esc[1] = named[c - '\b'], buf_add(b, esc, 2);
  else if (c < 0x20) esc[1] = 'u', buf_add(b, esc, 6);
  else buf_add(b, &c, 1);
}

void buf_json_utf8(struct buf *b, const char *s, size_t n) {
  unsigned char *clean = malloc(3 * n + 1);
  if (!clean) kb_out_of_memory();
  size_t len = kb_utf8_sanitize((const unsigned char *)s, n, clean);
  buf_add(b, "\"", 1);
  for (size_t i = 0; i < len; i++) json_byte(b, clean[i]);
  buf_add(b, "\"", 1);
  free(clean);
}

void buf_json_latin1(struct buf *b, const char *s, size_t n) {
  buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i], two[2] = {(unsigned char)(0xC0 | (c >> 6)), (unsigned char)(0x80 | (c & 0x3F))};
    if (c < 0x80) json_byte(b, c);
    else buf_add(b, two, 2);
  }
  buf_add(b, "\"", 1);
}

void buf_template(struct buf *b, const char *tpl, const struct kb_text *args) {
  for (const char *mark; (mark = strchr(tpl, '\001')) != NULL && mark[1] >= '1' && mark[1] <= '9'; tpl = mark + 2) {
    buf_add(b, tpl, (size_t)(mark - tpl));
    buf_add(b, args[mark[1] - '1'].ptr, args[mark[1] - '1'].len);
  }
  buf_str(b, tpl);
}

/* Decode one code point of valid UTF-8 at s[*i]. */
static uint32_t next_cp(const unsigned char *s, size_t n, size_t *i) {
  unsigned char c = s[*i];
  size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
  if (*i + len > n) len = n - *i; /* cannot happen for valid UTF-8 */
  for (size_t k = 1; k < len; k++) cp = (cp << 6) | (s[*i + k] & 0x3Fu);
  *i += len;
  return cp;
}

static int js_space(uint32_t cp) {
  for (size_t k = 0; k < sizeof KB_JS_SPACE / sizeof KB_JS_SPACE[0]; k++) {
    if (cp >= KB_JS_SPACE[k][0] && cp <= KB_JS_SPACE[k][1]) return 1;
  }
  return 0;
}

void buf_one_line(struct buf *b, const char *text, size_t n) {
  const unsigned char *s = (const unsigned char *)text;
  for (size_t i = 0; i < n;) {
    size_t start = i, j = i;
    int newline = 0;
    while (j < n) {
      size_t k = j;
      uint32_t cp = next_cp(s, n, &k);
      if (!js_space(cp)) break;
      newline |= cp == '\n';
      j = k;
    }
    if (j == start) next_cp(s, n, &j); /* not a space: copied as it is */
    if (newline) buf_str(b, KB_TEXT_LINE_BREAK);
    else buf_add(b, text + start, j - start);
    i = j;
  }
}
