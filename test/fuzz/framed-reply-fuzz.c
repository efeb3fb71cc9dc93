/* libFuzzer harness for the native shim's reply reader, src/shim/native/framed-reply.c: whatever
 * bytes come back on the daemon's socket, kb_frame_size and kb_read_frame must never read outside
 * them, overflow or misbehave (AddressSanitizer and UndefinedBehaviorSanitizer watch), and what
 * they accept must hold what the shim relies on. test/fuzz/run.sh fuzzes it with libFuzzer;
 * replay.c runs it over the corpus in npm test (test/fuzz/fuzz-replay.test.ts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framed-reply.h"
#include "utf8.h"

#define CHECK(x) \
  do {           \
    if (!(x)) abort(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A copy of exactly `size` bytes, so that a read one past the end is caught. */
  unsigned char *buf = malloc(size ? size : 1);
  CHECK(buf != NULL);
  if (size) memcpy(buf, data, size);
  long total = kb_frame_size(buf, size);
  CHECK(total >= KB_FRAME_TOO_LONG && total <= KB_MAX_REPLY_BYTES);
  /* As the client reads: the frame is the bytes its header counts, once they are all there. */
  size_t n = total > 0 && (size_t)total <= size ? (size_t)total : size;
  struct kb_frame f;
  if (kb_read_frame(buf, n, &f)) {
    CHECK(total > 0 && (size_t)total == n);
    CHECK(!f.field[KB_FIELD_VALUE].ptr != !f.field[KB_FIELD_ERROR_CODE].ptr);
    if (f.field[KB_FIELD_ERROR_CODE].ptr) CHECK(f.status >= 1 && f.status <= 255 && f.field[KB_FIELD_ERROR_MESSAGE].ptr);
    for (int k = 0; k < KB_FIELD_COUNT; k++) {
      struct kb_text t = f.field[k];
      if (!t.ptr) continue;
      const unsigned char *p = (const unsigned char *)t.ptr;
      CHECK(p >= buf && t.len <= n && (size_t)(p - buf) <= n - t.len);
      CHECK(p + t.len < buf + n && p[t.len] == '\n'); /* every field ends with a newline */
      CHECK(kb_utf8_valid(p, t.len));
    }
  }
  free(buf);
  return 0;
}
