/* The daemon's framed reply (docs/protocol.md, "Framed replies"; src/protocol/framed-reply.ts),
 * read in place: each field points into the reply and nothing is copied, because the value is
 * the key and every copy would have to be found and wiped. No I/O, so the fuzz harness
 * (test/fuzz/) links exactly this file. */
#ifndef KB_FRAMED_REPLY_H
#define KB_FRAMED_REPLY_H

#include <stddef.h>
#include <string.h>

#include "kb-generated.h"

/* ptr NULL: the field is absent. */
struct kb_text {
  const char *ptr;
  size_t len;
};

static inline int kb_text_is(struct kb_text t, const char *s) {
  return t.ptr && t.len == strlen(s) && memcmp(t.ptr, s, t.len) == 0;
}

/* s[0..len) is 1 to `digits` (at most 18) decimal digits, whose value is *out. The shim reads its
 * options, its environment and /proc with it too. */
int kb_decimal(const char *s, size_t len, size_t digits, long long *out);

struct kb_frame {
  struct kb_text field[KB_FIELD_COUNT]; /* by enum kb_field */
  int status;                           /* error.status, 1-255 */
};

enum { KB_FRAME_PARTIAL = 0, KB_FRAME_MALFORMED = -1, KB_FRAME_TOO_LONG = -2 };

/* The size of the whole frame that buf[0..n) starts, from its header; KB_FRAME_PARTIAL until the
 * header is complete, KB_FRAME_MALFORMED when it is not a frame header, KB_FRAME_TOO_LONG when
 * the frame would be over KB_MAX_REPLY_BYTES. */
long kb_frame_size(const unsigned char *buf, size_t n);

/* 1 when buf[0..n) is one well-formed frame, 0 otherwise: fields that fill the header's length
 * exactly, each known one at most once (unknown ones skipped), every text valid UTF-8; a value,
 * or an error's code, status and message; a stale warning's message with its profile or fix; a
 * daemon identity, if any, whole and of daemonIdentity's shape. Never reads outside buf[0..n). */
int kb_read_frame(const unsigned char *buf, size_t n, struct kb_frame *out);

#endif
