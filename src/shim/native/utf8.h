/* UTF-8 the way Node reads it: Buffer.toString('utf8') replaces each invalid sequence with U+FFFD
 * as the WHATWG Encoding Standard says (one per maximal subpart). The native shim reads its
 * arguments and working directory by the same rule, so it sends what the Node shim sends. */
#ifndef KB_UTF8_H
#define KB_UTF8_H

#include <stddef.h>

/* Is s[0..n) valid UTF-8 (no surrogates, no overlongs, nothing above U+10FFFF)? */
int kb_utf8_valid(const unsigned char *s, size_t n);

/* Copy in[0..n) to out, replacing invalid sequences with U+FFFD (EF BF BD) as Node does.
 * out must have room for 3 * n bytes. Returns the number of bytes written. */
size_t kb_utf8_sanitize(const unsigned char *in, size_t n, unsigned char *out);

#endif
