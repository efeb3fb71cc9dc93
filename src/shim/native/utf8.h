/* UTF-8 the way Node reads it. Node turns bytes into a string with Buffer.toString('utf8'), which
 * replaces each invalid sequence with U+FFFD following the WHATWG Encoding Standard (one U+FFFD
 * per maximal subpart). The native shim must see the very same text the Node shim sees, so it
 * decodes the daemon's reply and its own arguments with the same rule. */
#ifndef KB_UTF8_H
#define KB_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Is s[0..n) valid UTF-8 (no surrogates, no overlongs, nothing above U+10FFFF)? */
int kb_utf8_valid(const unsigned char *s, size_t n);

/* Copy in[0..n) to out, replacing invalid sequences with U+FFFD (EF BF BD) as Node does.
 * out must have room for 3 * n bytes. Returns the number of bytes written. */
size_t kb_utf8_sanitize(const unsigned char *in, size_t n, unsigned char *out);

/* Encode one code point (<= 0x10FFFF, not a surrogate) into out (room for 4). Returns its length. */
size_t kb_utf8_put(uint32_t cp, unsigned char *out);

#endif
