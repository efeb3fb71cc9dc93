/* See utf8.h. The decoder is the WHATWG Encoding Standard's "UTF-8 decoder" algorithm,
 * https://encoding.spec.whatwg.org/#utf-8-decoder, which is what V8 follows. */
#include "utf8.h"

#include <stdint.h>

/* Encode one code point (<= 0x10FFFF, not a surrogate) into out (room for 4); its length. */
static size_t kb_utf8_put(uint32_t cp, unsigned char *out) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Runs the decoder; with out == NULL it only reports whether anything had to be replaced. */
static size_t decode(const unsigned char *in, size_t n, unsigned char *out, int *replaced) {
  size_t o = 0;
  uint32_t cp = 0;
  unsigned needed = 0, seen = 0;
  unsigned char lower = 0x80, upper = 0xBF;
  *replaced = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char b = in[i];
    if (needed == 0) {
      if (b <= 0x7F) {
        if (out) out[o] = b;
        o++;
      } else if (b >= 0xC2 && b <= 0xDF) {
        needed = 1;
        cp = b & 0x1F;
      } else if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) lower = 0xA0;
        if (b == 0xED) upper = 0x9F;
        needed = 2;
        cp = b & 0x0F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) lower = 0x90;
        if (b == 0xF4) upper = 0x8F;
        needed = 3;
        cp = b & 0x07;
      } else {
        *replaced = 1;
        if (out) kb_utf8_put(0xFFFD, out + o);
        o += 3;
      }
      continue;
    }
    if (b < lower || b > upper) {
      /* The sequence so far becomes one U+FFFD and this byte starts afresh. */
      cp = 0;
      needed = seen = 0;
      lower = 0x80;
      upper = 0xBF;
      *replaced = 1;
      if (out) kb_utf8_put(0xFFFD, out + o);
      o += 3;
      i--;
      continue;
    }
    lower = 0x80;
    upper = 0xBF;
    cp = (cp << 6) | (b & 0x3F);
    if (++seen == needed) {
      if (out) o += kb_utf8_put(cp, out + o);
      else o += needed + 1;
      cp = 0;
      needed = seen = 0;
    }
  }
  if (needed != 0) {
    *replaced = 1;
    if (out) kb_utf8_put(0xFFFD, out + o);
    o += 3;
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
