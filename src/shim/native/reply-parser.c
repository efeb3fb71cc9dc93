/* See reply-parser.h. A strict JSON reader (RFC 8259, as JSON.parse accepts it) that keeps only
 * the fields the shim prints and walks past everything else. Nesting is tracked on a heap stack,
 * not the C stack, because JSON.parse in Node accepts any depth: a deep but valid reply must not
 * become "not JSON" here, nor overflow anything. */
#include "reply-parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct parser {
  const unsigned char *s;
  size_t n;
  size_t i;
  char *arena; /* decoded strings; never longer in total than the input, see decode_string */
  size_t used;
  unsigned char *stack; /* '{' or '[' per open container while skipping */
  size_t depth;
  size_t cap;
  int nomem;
};

static void skip_ws(struct parser *p) {
  while (p->i < p->n) {
    unsigned char c = p->s[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->i++;
  }
}

static int peek(const struct parser *p) { return p->i < p->n ? p->s[p->i] : -1; }

static int hex4(const struct parser *p, size_t at, uint32_t *out) {
  uint32_t v = 0;
  if (at + 4 > p->n) return 0;
  for (size_t k = 0; k < 4; k++) {
    unsigned char c = p->s[at + k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* At a '"': read the string. With keep, decode it into the arena and point *out at it. Each
 * decoded piece is no longer than the input it came from (an escape of 2, 6 or 12 bytes gives
 * at most 1, 3 or 4), so the arena, as long as the input, cannot overflow. A lone surrogate
 * becomes U+FFFD: that is what Node writes when it prints such a string. */
static int read_string(struct parser *p, int keep, struct kb_text *out) {
  char *dst = keep ? p->arena + p->used : NULL;
  size_t len = 0;
  p->i++; /* the opening quote */
  for (;;) {
    if (p->i >= p->n) return 0;
    unsigned char c = p->s[p->i];
    if (c == '"') {
      p->i++;
      break;
    }
    if (c < 0x20) return 0;
    if (c != '\\') {
      if (dst) dst[len] = (char)c;
      len++;
      p->i++;
      continue;
    }
    if (p->i + 1 >= p->n) return 0;
    unsigned char e = p->s[p->i + 1];
    p->i += 2;
    unsigned char one;
    switch (e) {
      case '"': one = '"'; break;
      case '\\': one = '\\'; break;
      case '/': one = '/'; break;
      case 'b': one = '\b'; break;
      case 'f': one = '\f'; break;
      case 'n': one = '\n'; break;
      case 'r': one = '\r'; break;
      case 't': one = '\t'; break;
      case 'u': {
        uint32_t u, lo;
        if (!hex4(p, p->i, &u)) return 0;
        p->i += 4;
        if (u >= 0xD800 && u <= 0xDBFF && p->i + 1 < p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u' &&
            hex4(p, p->i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
          p->i += 6;
          u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        } else if (u >= 0xD800 && u <= 0xDFFF) {
          u = 0xFFFD;
        }
        unsigned char buf[4];
        size_t k = kb_utf8_put(u, buf);
        if (dst) memcpy(dst + len, buf, k);
        len += k;
        continue;
      }
      default:
        return 0;
    }
    if (dst) dst[len] = (char)one;
    len++;
  }
  if (keep) {
    out->ptr = dst;
    out->len = len;
    p->used += len;
  }
  return 1;
}

/* The JSON number just read (from start to here) as a double, rounded as V8 does (strtod on a
 * copy: the input is not NUL-terminated). 0 only when out of memory. */
static int number_value(struct parser *p, size_t start, double *out) {
  size_t len = p->i - start;
  char *copy = malloc(len + 1);
  if (!copy) {
    p->nomem = 1;
    return 0;
  }
  memcpy(copy, p->s + start, len);
  copy[len] = '\0';
  *out = strtod(copy, NULL);
  free(copy);
  return 1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; *zero says whether its value is 0 in a double
 * (1e-400 is, as in JavaScript). */
static int read_number(struct parser *p, int *zero) {
  size_t start = p->i;
  int nonzero_digit = 0;
  if (peek(p) == '-') p->i++;
  if (peek(p) == '0') {
    p->i++;
  } else if (peek(p) >= '1' && peek(p) <= '9') {
    while (peek(p) >= '0' && peek(p) <= '9') p->i++;
    nonzero_digit = 1;
  } else {
    return 0;
  }
  if (peek(p) == '.') {
    p->i++;
    if (!(peek(p) >= '0' && peek(p) <= '9')) return 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
      if (p->s[p->i] != '0') nonzero_digit = 1;
      p->i++;
    }
  }
  if (peek(p) == 'e' || peek(p) == 'E') {
    p->i++;
    if (peek(p) == '+' || peek(p) == '-') p->i++;
    if (!(peek(p) >= '0' && peek(p) <= '9')) return 0;
    while (peek(p) >= '0' && peek(p) <= '9') p->i++;
  }
  if (zero) {
    *zero = !nonzero_digit;
    if (nonzero_digit) {
      /* Only an underflow can make a number with a non-zero digit 0; strtod rounds as V8 does. */
      double value;
      if (!number_value(p, start, &value)) return 0;
      *zero = value == 0.0;
    }
  }
  return 1;
}

static int read_literal(struct parser *p, const char *word, size_t len) {
  if (p->n - p->i < len || memcmp(p->s + p->i, word, len) != 0) return 0;
  p->i += len;
  return 1;
}

static int push(struct parser *p, unsigned char c) {
  if (p->depth == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 64;
    unsigned char *stack = realloc(p->stack, cap);
    if (!stack) {
      p->nomem = 1;
      return 0;
    }
    p->stack = stack;
    p->cap = cap;
  }
  p->stack[p->depth++] = c;
  return 1;
}

/* One scalar (string, number, literal); *truthy as JavaScript would judge it. */
static int read_scalar(struct parser *p, int *truthy) {
  int c = peek(p), zero = 0;
  switch (c) {
    case '"':
      *truthy = p->i + 1 < p->n && p->s[p->i + 1] != '"';
      return read_string(p, 0, NULL);
    case 't': *truthy = 1; return read_literal(p, "true", 4);
    case 'f': *truthy = 0; return read_literal(p, "false", 5);
    case 'n': *truthy = 0; return read_literal(p, "null", 4);
    default:
      if (!read_number(p, &zero)) return 0;
      *truthy = !zero;
      return 1;
  }
}

/* Walk past one whole value of any depth. *truthy (if given) is the value's JavaScript truthiness. */
static int skip_value(struct parser *p, int *truthy) {
  size_t base = p->depth;
  int first = 1, t = 0;
  for (;;) {
    /* here a value starts */
    skip_ws(p);
    int c = peek(p);
    if (c == '{' || c == '[') {
      if (first) t = 1;
      first = 0;
      p->i++;
      if (!push(p, (unsigned char)c)) return 0;
      skip_ws(p);
      if (peek(p) == (c == '{' ? '}' : ']')) {
        p->i++;
        p->depth--;
      } else {
        if (c == '{') {
          if (peek(p) != '"' || !read_string(p, 0, NULL)) return 0;
          skip_ws(p);
          if (peek(p) != ':') return 0;
          p->i++;
        }
        continue;
      }
    } else {
      int st;
      if (!read_scalar(p, &st)) return 0;
      if (first) t = st;
      first = 0;
    }
    /* here a value has ended: close containers or move to the next member */
    for (;;) {
      if (p->depth == base) {
        if (truthy) *truthy = t;
        return 1;
      }
      skip_ws(p);
      unsigned char top = p->stack[p->depth - 1];
      int d = peek(p);
      if (d == ',') {
        p->i++;
        if (top == '{') {
          skip_ws(p);
          if (peek(p) != '"' || !read_string(p, 0, NULL)) return 0;
          skip_ws(p);
          if (peek(p) != ':') return 0;
          p->i++;
        }
        break;
      }
      if (d == (top == '{' ? '}' : ']')) {
        p->i++;
        p->depth--;
        continue;
      }
      return 0;
    }
  }
}

/* At a '"' starting a member name: read it and compare, leaving the arena as it was. */
static int read_key(struct parser *p, const char *const *names, size_t count, int *which) {
  struct kb_text key;
  size_t mark = p->used;
  if (peek(p) != '"' || !read_string(p, 1, &key)) return 0;
  *which = -1;
  for (size_t k = 0; k < count; k++) {
    if (strlen(names[k]) == key.len && memcmp(names[k], key.ptr, key.len) == 0) *which = (int)k;
  }
  p->used = mark;
  skip_ws(p);
  if (peek(p) != ':') return 0;
  p->i++;
  skip_ws(p);
  return 1;
}

/* At a '{': step in. 0 when the object is empty (and so already read), 1 when a member follows. */
static int open_object(struct parser *p) {
  p->i++;
  skip_ws(p);
  if (peek(p) == '}') {
    p->i++;
    return 0;
  }
  return 1;
}

/* After a member's value: 1 at ',' (another member follows), 0 at '}' (the object is read), -1 at
 * anything else. */
static int next_member(struct parser *p) {
  skip_ws(p);
  if (peek(p) == ',') {
    p->i++;
    skip_ws(p);
    return 1;
  }
  if (peek(p) == '}') {
    p->i++;
    return 0;
  }
  return -1;
}

/* At a '{': read an object, keeping the string members named in names (the last one wins, as
 * in JSON.parse); has[k] ends 1 when the last member names[k] held a string. */
static int read_object(struct parser *p, const char *const *names, size_t count, struct kb_text *texts, int *has) {
  int more = open_object(p);
  while (more == 1) {
    int which;
    if (!read_key(p, names, count, &which)) return 0;
    if (which >= 0 && peek(p) == '"') {
      if (!read_string(p, 1, &texts[which])) return 0;
      has[which] = 1;
    } else {
      if (which >= 0) has[which] = 0;
      if (!skip_value(p, NULL)) return 0;
    }
    more = next_member(p);
  }
  return more == 0;
}

/* ---- daemon identity: the members of an object, or of the reply itself, by kind (the last
 * member of a name wins, as in JSON.parse) ---- */

enum { F_ABSENT, F_STRING, F_NUMBER, F_OTHER };
enum { I_VERSION, I_BUILD, I_PID, I_STARTED_BY, I_COUNT };
static const char *const IDENTITY_NAMES[] = {"version", "build", "pid", "startedBy"};

struct identity_fields {
  int kind[I_COUNT];
  struct kb_text text[I_COUNT];
  double number; /* pid, when kind[I_PID] is F_NUMBER */
};

/* At a member's value: read it into field k. */
static int read_field(struct parser *p, struct identity_fields *f, int k) {
  int c = peek(p);
  if (c == '"') {
    if (!read_string(p, 1, &f->text[k])) return 0;
    f->kind[k] = F_STRING;
    return 1;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    size_t start = p->i;
    if (!read_number(p, NULL) || !number_value(p, start, &f->number)) return 0;
    f->kind[k] = F_NUMBER;
    return 1;
  }
  f->kind[k] = F_OTHER;
  return skip_value(p, NULL);
}

/* At a '{': read an object's identity members, walking past the others. */
static int read_identity_object(struct parser *p, struct identity_fields *f) {
  int more = open_object(p);
  while (more == 1) {
    int which;
    if (!read_key(p, IDENTITY_NAMES, I_COUNT, &which)) return 0;
    if (which >= 0 ? !read_field(p, f, which) : !skip_value(p, NULL)) return 0;
    more = next_member(p);
  }
  return more == 0;
}

/* /^[\w.+-]{1,64}$/ */
static int is_word(const struct kb_text *t) {
  if (t->len < 1 || t->len > 64) return 0;
  for (size_t k = 0; k < t->len; k++) {
    unsigned char c = (unsigned char)t->ptr[k];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '+' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}

static void to_identity(const struct identity_fields *f, struct kb_identity *id) {
  memset(id, 0, sizeof *id);
  if (f->kind[I_VERSION] != F_STRING || !is_word(&f->text[I_VERSION])) return;
  if (f->kind[I_BUILD] != F_ABSENT && (f->kind[I_BUILD] != F_STRING || !is_word(&f->text[I_BUILD]))) return;
  if (f->kind[I_STARTED_BY] != F_ABSENT && f->kind[I_STARTED_BY] != F_STRING) return;
  /* Number.isInteger(pid) && pid > 0 && pid < 2 ** 31 (NaN and infinities fail every test) */
  double pid = f->number;
  if (f->kind[I_PID] != F_NUMBER || !(pid > 0 && pid < 2147483648.0) || pid != (double)(long)pid) return;
  id->valid = 1;
  id->version = f->text[I_VERSION];
  id->has_build = f->kind[I_BUILD] == F_STRING;
  id->build = f->text[I_BUILD];
  id->has_started_by = f->kind[I_STARTED_BY] == F_STRING;
  id->started_by = f->text[I_STARTED_BY];
  id->pid = (long)pid;
}

enum { OK_ABSENT, OK_TRUE, OK_FALSE, OK_OTHER };

static const char *const TOP_NAMES[] = {"ok", "value", "stale", "warning", "error", "daemon", "pong", "version", "build", "pid", "startedBy"};
enum { K_OK, K_VALUE, K_STALE, K_WARNING, K_ERROR, K_DAEMON, K_PONG, K_VERSION, K_BUILD, K_PID, K_STARTED_BY, K_COUNT };
static const char *const WARNING_NAMES[] = {"message", "profile", "fix"};
static const char *const ERROR_NAMES[] = {"code", "message", "profile", "fix"};

static int read_reply(struct parser *p, struct kb_reply *r, int *is_object) {
  int ok = OK_ABSENT, error_object = 0;
  int error_has[4] = {0, 0, 0, 0}, warning_has[3] = {0, 0, 0};
  struct kb_text error_texts[4], warning_texts[3];
  struct identity_fields daemon, self;
  memset(&daemon, 0, sizeof daemon);
  memset(&self, 0, sizeof self);
  skip_ws(p);
  if (peek(p) != '{') {
    *is_object = 0;
    if (!skip_value(p, NULL)) return 0;
  } else {
    *is_object = 1;
    int more = open_object(p);
    while (more == 1) {
      int which, truthy;
      if (!read_key(p, TOP_NAMES, K_COUNT, &which)) return 0;
      switch (which) {
        case K_OK:
          if (read_literal(p, "true", 4)) ok = OK_TRUE;
          else if (read_literal(p, "false", 5)) ok = OK_FALSE;
          else if (skip_value(p, NULL)) ok = OK_OTHER;
          else return 0;
          break;
        case K_VALUE:
          r->has_value = peek(p) == '"';
          if (r->has_value ? !read_string(p, 1, &r->value) : !skip_value(p, NULL)) return 0;
          break;
        case K_STALE:
          if (!skip_value(p, &truthy)) return 0;
          r->stale = truthy;
          break;
        case K_WARNING:
          warning_has[0] = warning_has[1] = warning_has[2] = 0;
          if (peek(p) == '{') {
            r->warning = 1;
            if (!read_object(p, WARNING_NAMES, 3, warning_texts, warning_has)) return 0;
          } else {
            if (!skip_value(p, &truthy)) return 0;
            r->warning = truthy;
          }
          break;
        case K_ERROR:
          error_has[0] = error_has[1] = error_has[2] = error_has[3] = 0;
          error_object = peek(p) == '{';
          if (error_object ? !read_object(p, ERROR_NAMES, 4, error_texts, error_has) : !skip_value(p, NULL)) return 0;
          break;
        case K_DAEMON:
          memset(&daemon, 0, sizeof daemon);
          if (peek(p) == '{' ? !read_identity_object(p, &daemon) : !skip_value(p, NULL)) return 0;
          break;
        case K_PONG:
          r->pong = 1;
          if (!skip_value(p, NULL)) return 0;
          break;
        case K_VERSION:
        case K_BUILD:
        case K_PID:
        case K_STARTED_BY:
          if (!read_field(p, &self, which - K_VERSION)) return 0;
          break;
        default:
          if (!skip_value(p, NULL)) return 0;
      }
      more = next_member(p);
    }
    if (more < 0) return 0;
  }
  skip_ws(p);
  if (p->i != p->n) return 0;
  to_identity(&daemon, &r->daemon);
  to_identity(&self, &r->self);
  r->has_warning_message = warning_has[0];
  if (warning_has[0]) r->warning_message = warning_texts[0];
  r->has_warning_profile = warning_has[1];
  if (warning_has[1]) r->warning_profile = warning_texts[1];
  r->has_warning_fix = warning_has[2];
  if (warning_has[2]) r->warning_fix = warning_texts[2];
  if (!*is_object) r->kind = KB_REPLY_UNKNOWN_SHAPE;
  else if (ok == OK_TRUE) r->kind = KB_REPLY_OK;
  else if (ok == OK_FALSE && error_object && error_has[0] && error_has[1]) {
    r->kind = KB_REPLY_ERROR;
    r->error_code = error_texts[0];
    r->error_message = error_texts[1];
    r->has_error_profile = error_has[2];
    if (error_has[2]) r->error_profile = error_texts[2];
    r->has_error_fix = error_has[3];
    if (error_has[3]) r->error_fix = error_texts[3];
  } else r->kind = KB_REPLY_UNKNOWN_SHAPE;
  return 1;
}

enum kb_reply_kind kb_parse_reply(const unsigned char *line, size_t len, struct kb_reply *out) {
  struct parser p;
  unsigned char *clean = NULL;
  int is_object = 0;
  memset(out, 0, sizeof *out);
  memset(&p, 0, sizeof p);
  out->kind = KB_REPLY_NO_MEMORY;
  if (!kb_utf8_valid(line, len)) {
    /* What Node parses is the text after U+FFFD replacement; bounded: 3 bytes per input byte. */
    if (len > (SIZE_MAX - 1) / 3) return out->kind;
    clean = malloc(3 * len + 1);
    if (!clean) return out->kind;
    len = kb_utf8_sanitize(line, len, clean);
    line = clean;
  }
  p.s = line;
  p.n = len;
  p.arena = malloc(len + 1);
  if (!p.arena) {
    free(clean);
    return out->kind;
  }
  out->arena = p.arena;
  if (!read_reply(&p, out, &is_object)) {
    struct kb_text keep_none = {NULL, 0};
    char *arena = out->arena;
    memset(out, 0, sizeof *out);
    out->arena = arena;
    out->value = keep_none;
    out->kind = p.nomem ? KB_REPLY_NO_MEMORY : KB_REPLY_NOT_JSON;
  }
  free(p.stack);
  free(clean);
  return out->kind;
}

void kb_reply_free(struct kb_reply *reply) {
  free(reply->arena);
  reply->arena = NULL;
}
