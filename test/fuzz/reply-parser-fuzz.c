/* libFuzzer harness for the native shim's reply parser (src/shim/native/reply-parser.c): any
 * bytes as a reply line must parse without reading or writing out of bounds, without leaking,
 * and every string it hands back must be valid UTF-8 inside the input's size. See README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply-parser.h"
#include "utf8.h"

static void check_text(const struct kb_reply *r, struct kb_text t, size_t arena_size) {
  if (t.len == 0) return;
  if (t.ptr < r->arena || t.ptr + t.len > r->arena + arena_size) abort();
  if (!kb_utf8_valid((const unsigned char *)t.ptr, t.len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct kb_reply r;
  enum kb_reply_kind kind = kb_parse_reply(data, size, &r);
  /* The arena is as long as the (UTF-8-repaired) input: at most 3 bytes per input byte. */
  size_t arena_size = 3 * size + 1;
  switch (kind) {
    case KB_REPLY_OK:
      if (r.has_value) check_text(&r, r.value, arena_size);
      if (r.has_warning_message) check_text(&r, r.warning_message, arena_size);
      if (r.has_warning_profile) check_text(&r, r.warning_profile, arena_size);
      if (r.has_warning_fix) check_text(&r, r.warning_fix, arena_size);
      break;
    case KB_REPLY_ERROR:
      check_text(&r, r.error_code, arena_size);
      check_text(&r, r.error_message, arena_size);
      if (r.has_error_profile) check_text(&r, r.error_profile, arena_size);
      if (r.has_error_fix) check_text(&r, r.error_fix, arena_size);
      break;
    case KB_REPLY_NOT_JSON:
    case KB_REPLY_UNKNOWN_SHAPE:
    case KB_REPLY_NO_MEMORY:
      break;
    default:
      abort();
  }
  kb_reply_free(&r);
  return 0;
}
