/* The daemon's reply line, read the way the Node shim reads it (src/client/client.ts and
 * src/shim/keybroker-shim.ts): Buffer.toString('utf8'), JSON.parse, then the shape checks.
 * Its own file, with no I/O, so the fuzz harness (test/fuzz/) links exactly this code. */
#ifndef KB_REPLY_PARSER_H
#define KB_REPLY_PARSER_H

#include <stddef.h>

/* A decoded JSON string: valid UTF-8, may hold NUL bytes. Points into the reply's arena. */
struct kb_text {
  const char *ptr;
  size_t len;
};

/* A daemon identity, valid only with the shape src/client/build-info.ts daemonIdentity()
 * accepts: version (and build, if present) 1-64 of [A-Za-z0-9_.+-], pid a positive integer
 * below 2^31, startedBy (if present) a string. */
struct kb_identity {
  int valid;
  struct kb_text version;
  int has_build;
  struct kb_text build;
  int has_started_by;
  struct kb_text started_by;
  long pid;
};

enum kb_reply_kind {
  KB_REPLY_NOT_JSON,      /* JSON.parse would throw */
  KB_REPLY_UNKNOWN_SHAPE, /* JSON, but neither {"ok":true,…} nor {"ok":false,"error":{code,message}} */
  KB_REPLY_OK,            /* "ok": true */
  KB_REPLY_ERROR,         /* "ok": false with an error's string code and message */
  KB_REPLY_NO_MEMORY
};

struct kb_reply {
  enum kb_reply_kind kind;
  /* KB_REPLY_OK: "value" present and a string. */
  int has_value;
  struct kb_text value;
  /* JavaScript truthiness of "stale" and of "warning", as `reply.stale && reply.warning` sees them. */
  int stale;
  int warning;
  /* "warning" is an object whose "message" is a string; its "profile" and "fix", when strings. */
  int has_warning_message;
  struct kb_text warning_message;
  int has_warning_profile;
  struct kb_text warning_profile;
  int has_warning_fix;
  struct kb_text warning_fix;
  /* "daemon": which daemon answered (a get reply). */
  struct kb_identity daemon;
  /* A ping reply: "pong" is present, and the identity is the reply's own top-level fields. */
  int pong;
  struct kb_identity self;
  /* KB_REPLY_ERROR; its "profile" and "fix", when strings. */
  struct kb_text error_code;
  struct kb_text error_message;
  int has_error_profile;
  struct kb_text error_profile;
  int has_error_fix;
  struct kb_text error_fix;
  /* internal: the decoded strings live here; kb_reply_free releases it. */
  char *arena;
};

/* Parse one reply line (without its newline): any bytes, any length. Never reads outside
 * line[0..len). On return out->kind is set; call kb_reply_free(out) afterwards in every case. */
enum kb_reply_kind kb_parse_reply(const unsigned char *line, size_t len, struct kb_reply *out);

void kb_reply_free(struct kb_reply *reply);

#endif
