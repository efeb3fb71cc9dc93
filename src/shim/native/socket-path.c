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

/* path.resolve(p) for a UTF-8 path: absolute against the working directory, '.', '..' and
 * repeated or trailing slashes removed. */
static int resolve_path(const char *p, char *out, size_t size) {
  struct buf full = {0};
  char cwd[PATH_MAX];
  if (p[0] != '/') {
    if (!getcwd(cwd, sizeof cwd)) return 0;
    buf_str(&full, cwd);
    buf_str(&full, "/");
  }
  buf_str(&full, p);
  size_t o = 0, n = full.len;
  const char *s = full.data;
  int ok = 1;
  for (size_t i = 0; i < n && ok;) {
    while (i < n && s[i] == '/') i++;
    size_t j = i;
    while (j < n && s[j] != '/') j++;
    size_t len = j - i;
    if (len == 2 && s[i] == '.' && s[i + 1] == '.') {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
    } else if (len > 0 && !(len == 1 && s[i] == '.')) {
      ok = o + 1 + len + 1 <= size;
      if (ok) {
        out[o++] = '/';
        memcpy(out + o, s + i, len);
        o += len;
      }
    }
    i = j;
  }
  if (ok && o == 0) out[o++] = '/';
  if (ok) out[o] = '\0';
  free(full.data);
  return ok;
}

/* expandHome (os.homedir() is $HOME when set), then resolve: for --socket and KEYBROKER_SOCKET. */
static int resolve_user_path(const char *p, char *out, size_t size) {
  if (!(p[0] == '~' && (p[1] == '\0' || p[1] == '/'))) return resolve_path(p, out, size);
  const char *home = getenv("HOME");
  if (!home || home[0] != '/') return 0;
  struct buf joined = {0};
  buf_str(&joined, home);
  buf_str(&joined, "/");
  buf_str(&joined, p + 1);
  int ok = resolve_path(joined.data, out, size);
  free(joined.data);
  return ok;
}

int kb_socket_path(const char *flag, char *out, size_t size) {
  const char *env_socket = getenv(KB_SOCKET_SOCKET_ENV);
  const char *runtime = getenv(KB_SOCKET_RUNTIME_DIR_ENV);
  int ok;
  if (flag) {
    ok = resolve_user_path(flag, out, size);
  } else if (env_socket && *env_socket) {
    ok = resolve_user_path(env_socket, out, size);
  } else {
    struct buf p = {0};
    if (runtime && runtime[0] == '/') {
      buf_str(&p, runtime);
    } else {
      const char *home = getenv("HOME");
      if (!home || home[0] != '/') return 0;
#ifdef __APPLE__
      buf_str(&p, home);
      buf_str(&p, "/" KB_SOCKET_DARWIN_STATE_DIR);
#else
      const char *state = getenv(KB_SOCKET_STATE_HOME_ENV);
      if (state && state[0] == '/') {
        buf_str(&p, state);
      } else {
        buf_str(&p, home);
        buf_str(&p, "/" KB_SOCKET_STATE_DIR);
      }
#endif
    }
    buf_str(&p, "/" KB_SOCKET_DIR "/" KB_SOCKET_FILE);
    ok = resolve_path(p.data, out, size);
    free(p.data);
  }
  size_t len = ok ? strlen(out) : 0;
  return ok && len <= KB_MAX_SOCKET_PATH_BYTES && kb_utf8_valid((const unsigned char *)out, len);
}
