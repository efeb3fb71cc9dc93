/* See utf8.h. The decoder is the WHATWG Encoding Standard's "UTF-8 decoder" algorithm,
 * https://encoding.spec.whatwg.org/#utf-8-decoder, which is what V8 follows. A valid sequence
 * decodes to the code point it encodes, so its bytes are copied as they are. */
#include "utf8.h"

#include <string.h>

/* Runs the decoder; with out == NULL it only measures. *replaced: whether anything was. */
static size_t decode(const unsigned char *in, size_t n, unsigned char *out, int *replaced) {
  size_t o = 0;
  *replaced = 0;
  for (size_t i = 0, k; i < n; i += k) {
    unsigned char b = in[i];
    /* Continuation bytes needed after this lead byte (4: it cannot lead), and the first one's
     * range: no overlong forms, no surrogates (ED A0-BF), nothing above U+10FFFF. */
    size_t needed = b < 0x80 ? 0 : b < 0xC2 ? 4 : b < 0xE0 ? 1 : b < 0xF0 ? 2 : b < 0xF5 ? 3 : 4;
    unsigned char lower = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80, upper = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    for (k = 1; needed < 4 && k <= needed && i + k < n && in[i + k] >= lower && in[i + k] <= upper; k++) {
      lower = 0x80;
      upper = 0xBF;
    }
    if (k == needed + 1) {
      if (out) memcpy(out + o, in + i, k);
      o += k;
    } else {
      /* The maximal subpart (the lead byte and the continuation bytes that fit) becomes one U+FFFD;
       * a byte that did not fit starts afresh. */
      *replaced = 1;
      if (out) memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
    }
  }
  return o;
}

int kb_utf8_valid(const unsigned char *s, size_t n) {
  int replaced;
  decode(s, n, NULL, &replaced);
  return !replaced;
}

size_t kb_utf8_sanitize(const unsigned char *in, size_t n, unsigned char *out) {
  int replaced;
  return decode(in, n, out, &replaced);
}
