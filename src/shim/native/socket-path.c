/* src/client/socket-path.ts's resolveSocketPath, in C. */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb-generated.h"
#include "shim.h"
#include "utf8.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* The segments of path s, appended to out[0..*o) as path.resolve does: '.', '..' and repeated or
 * trailing slashes removed. 0 when they do not fit. */
static int add_segments(const char *s, char *out, size_t *o, size_t size) {
  for (size_t i = 0, j; s[i]; i = j) {
    while (s[i] == '/') i++;
    for (j = i; s[j] && s[j] != '/';) j++;
    size_t len = j - i;
    if (len == 2 && s[i] == '.' && s[i + 1] == '.') {
      while (*o > 0 && out[*o - 1] != '/') --*o;
      if (*o > 0) --*o;
    } else if (len > 0 && !(len == 1 && s[i] == '.')) {
      if (*o + 1 + len + 1 > size) return 0;
      out[(*o)++] = '/';
      memcpy(out + *o, s + i, len);
      *o += len;
    }
  }
  return 1;
}

int kb_socket_path(const char *flag, char *out, size_t size) {
  const char *env_socket = getenv(KB_SOCKET_SOCKET_ENV), *runtime = getenv(KB_SOCKET_RUNTIME_DIR_ENV);
  const char *home = getenv("HOME"), *state = getenv(KB_SOCKET_STATE_HOME_ENV);
  /* The path is base then rest: --socket or KEYBROKER_SOCKET with ~ expanded (expandHome), else
   * the default directory and the socket's name. */
  const char *base = "", *rest = flag ? flag : env_socket && *env_socket ? env_socket : NULL;
  if (rest && rest[0] == '~' && (rest[1] == '\0' || rest[1] == '/')) {
    base = home;
    rest++;
  } else if (!rest && runtime && runtime[0] == '/') {
    base = runtime;
    rest = "/" KB_SOCKET_DIR "/" KB_SOCKET_FILE;
#ifdef __APPLE__
  } else if (!rest) {
    (void)state; /* macOS has no XDG_STATE_HOME */
    base = home;
    rest = "/" KB_SOCKET_DARWIN_STATE_DIR "/" KB_SOCKET_DIR "/" KB_SOCKET_FILE;
#else
  } else if (!rest && state && state[0] == '/') {
    base = state;
    rest = "/" KB_SOCKET_DIR "/" KB_SOCKET_FILE;
  } else if (!rest) {
    base = home;
    rest = "/" KB_SOCKET_STATE_DIR "/" KB_SOCKET_DIR "/" KB_SOCKET_FILE;
#endif
  }
  /* os.homedir() is $HOME when set; without one, or with a relative one, the Node shim decides. */
  if (!base || (base == home && home[0] != '/')) return 0;
  char cwd[PATH_MAX];
  size_t o = 0;
  int relative = !base[0] && rest[0] != '/';
  if (relative && (!getcwd(cwd, sizeof cwd) || !add_segments(cwd, out, &o, size))) return 0;
  if (!add_segments(base, out, &o, size) || !add_segments(rest, out, &o, size)) return 0;
  if (o == 0) out[o++] = '/';
  out[o] = '\0';
  return o <= KB_MAX_SOCKET_PATH_BYTES && kb_utf8_valid((const unsigned char *)out, o);
}
