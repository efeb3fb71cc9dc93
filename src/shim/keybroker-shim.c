/* keybroker-shim, native: the fast path of src/shim/keybroker-shim.ts in C, for apiKeyHelper.
 *
 * Node needs 50-100 ms just to start; this answers in about a millisecond, like git's
 * credential-cache client: connect, write one request, half-close, read one reply line, exit.
 * It does only the common call, `keybroker-shim [--socket PATH] [PROFILE]` with a daemon
 * answering, and it must be indistinguishable from the Node shim: same request line, same
 * stdout, same stderr, same exit status. Everything else (autostart, --format, --refresh, --help,
 * bad options, anything unusual in the environment) it hands to the Node shim with execv and the
 * original arguments, *before* sending anything: after a request has gone out, handing over
 * would fetch twice and count as a second call for the 401 inference.
 *
 * C99 + POSIX, no dependencies. Built by scripts/build-native.mjs into dist/native/, with
 * keybroker-shim-build.h generated from src/protocol/messages.ts (error codes, reply limit) and the
 * node that ran the build.
 */
#define _POSIX_C_SOURCE 200809L
#ifdef __APPLE__
/* Strict POSIX hides the BSD types <sys/sysctl.h> and <libproc.h> are written with. */
#define _DARWIN_C_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef __APPLE__
#include <libproc.h>
#include <mach-o/dyld.h>
#include <sys/sysctl.h>
#endif

#include "keybroker-shim-build.h"
#include "native/reply-parser.h"
#include "native/utf8.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* As in the Node shim: longer than any profile's timeout, so the daemon reports its own fetch
 * timeout first (src/protocol/messages.ts CLIENT_REPLY_TIMEOUT_MS, via the generated header). */
#define REQUEST_TIMEOUT_MS KB_REQUEST_TIMEOUT_MS
/* src/client/autostart.ts: the ping that identifies a daemon refusing a request, and how long
 * a replaced daemon gets to stop. */
#define PING_TIMEOUT_MS 2000
#define STOP_DEADLINE_MS 5000
#define DEFAULT_HELPER_TTL_MS 300000
/* src/protocol/messages.ts MAX_REQUEST_BYTES: a longer line the daemon refuses; let Node send it. */
#define MAX_REQUEST_BYTES (64 * 1024)
/* src/client/socket-path.ts MAX_SOCKET_PATH_BYTES */
#define MAX_SOCKET_PATH_BYTES 103

static char **original_argv;
/* The socket the request went to: a refusal is followed by a ping there. */
static const char *socket_in_use;
/* Set once connect() succeeded: from then on the request may have reached the daemon, and
 * handing over would send it a second time. */
static int request_sent;
/* Set while handing over, so running out of memory there cannot loop back into it. */
static int handing_over;

/* ---- growable byte buffer ---- */

struct buf {
  char *data;
  size_t len, cap;
};

static void handover(void);

static void internal_error(void) {
  /* As the Node shim's last resort, main().catch. */
  static const char msg[] = "keybroker: internal error in keybroker-shim\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  exit(KB_EXIT_INTERNAL);
}

/* Out of memory: before sending, Node can still answer; after, it would ask a second time. */
static void out_of_memory(void) {
  if (request_sent || handing_over) internal_error();
  handover();
}

static void buf_add(struct buf *b, const void *bytes, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) out_of_memory();
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* JSON.stringify of a string, for text that is valid UTF-8. */
static void buf_json_string(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    if (c == '"') buf_add(b, "\\\"", 2);
    else if (c == '\\') buf_add(b, "\\\\", 2);
    else if (c == '\b') buf_add(b, "\\b", 2);
    else if (c == '\f') buf_add(b, "\\f", 2);
    else if (c == '\n') buf_add(b, "\\n", 2);
    else if (c == '\r') buf_add(b, "\\r", 2);
    else if (c == '\t') buf_add(b, "\\t", 2);
    else if (c < 0x20) {
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      buf_add(b, esc, 6);
    } else buf_add(b, &s[i], 1);
  }
  buf_add(b, "\"", 1);
}

/* Bytes as Node's Buffer.toString(enc) sees them, as JSON: 'utf8' (invalid sequences become
 * U+FFFD) or 'latin1' (each byte one character), which is how the Node shim reads /proc. */
static void buf_json_utf8(struct buf *b, const char *s, size_t n) {
  if (kb_utf8_valid((const unsigned char *)s, n)) {
    buf_json_string(b, s, n);
    return;
  }
  unsigned char *clean = malloc(3 * n + 1);
  if (!clean) out_of_memory();
  size_t len = kb_utf8_sanitize((const unsigned char *)s, n, clean);
  buf_json_string(b, (const char *)clean, len);
  free(clean);
}

static void buf_json_latin1(struct buf *b, const char *s, size_t n) {
  struct buf t = {0};
  for (size_t i = 0; i < n; i++) {
    unsigned char out[4];
    buf_add(&t, out, kb_utf8_put((unsigned char)s[i], out));
  }
  buf_json_string(b, t.data ? t.data : "", t.len);
  free(t.data);
}

/* ---- output ---- */

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

/* Decode one code point of valid UTF-8 at s[*i]. */
static uint32_t next_cp(const unsigned char *s, size_t n, size_t *i) {
  unsigned char c = s[*i];
  size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
  if (*i + len > n) len = n - *i; /* cannot happen for valid UTF-8 */
  for (size_t k = 1; k < len; k++) cp = (cp << 6) | (s[*i + k] & 0x3Fu);
  *i += len;
  return cp;
}

/* JavaScript's \s. */
static int js_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* message.replace(/\s*\n\s*\/g, '; '): every run of whitespace that holds a newline becomes "; ". */
static void buf_one_line(struct buf *b, const char *text, size_t n) {
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0;
  while (i < n) {
    size_t start = i, j = i;
    int newline = 0;
    while (j < n) {
      size_t k = j;
      uint32_t cp = next_cp(s, n, &k);
      if (!js_space(cp)) break;
      if (cp == '\n') newline = 1;
      j = k;
    }
    if (j > start) {
      if (newline) buf_add(b, "; ", 2);
      else buf_add(b, text + start, j - start);
      i = j;
    } else {
      next_cp(s, n, &j);
      buf_add(b, text + start, j - start);
      i = j;
    }
  }
}

static int exit_status_for(const char *code, size_t len) {
  for (size_t k = 0; k < sizeof KB_ERROR_CODES / sizeof KB_ERROR_CODES[0]; k++) {
    if (strlen(KB_ERROR_CODES[k].code) == len && memcmp(KB_ERROR_CODES[k].code, code, len) == 0) return KB_ERROR_CODES[k].status;
  }
  return KB_EXIT_INTERNAL;
}

/* The Node shim's fail(): "keybroker: <message on one line>" on stderr, the code's exit status. */
static void fail_text(const char *code, size_t code_len, const char *message, size_t len) {
  struct buf line = {0};
  buf_str(&line, "keybroker: ");
  buf_one_line(&line, message, len);
  buf_add(&line, "\n", 1);
  write_all(2, line.data, line.len);
  exit(exit_status_for(code, code_len));
}

static void fail(const char *code, const char *message) { fail_text(code, strlen(code), message, strlen(message)); }

/* renderError() in src/protocol/messages.ts: `profile "PROFILE": MESSAGE — FIX`, each part that is
 * absent (or empty) left out. */
static void buf_render_error(struct buf *b, const struct kb_text *message, const struct kb_text *profile, const struct kb_text *fix) {
  if (profile && profile->len > 0) {
    buf_str(b, "profile \"");
    buf_add(b, profile->ptr, profile->len);
    buf_str(b, "\": ");
  }
  buf_add(b, message->ptr, message->len);
  if (fix && fix->len > 0) {
    buf_str(b, " \xe2\x80\x94 ");
    buf_add(b, fix->ptr, fix->len);
  }
}

/* ---- handing over to the Node shim ---- */

static int self_path(char *out, size_t size) {
#ifdef __APPLE__
  char raw[PATH_MAX];
  uint32_t n = sizeof raw;
  if (_NSGetExecutablePath(raw, &n) != 0) return 0;
  (void)size;
  return realpath(raw, out) != NULL;
#else
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n > 0) {
    out[n] = '\0';
    return 1;
  }
  /* No /proc: argv[0], if it names a file. */
  if (!original_argv[0] || !strchr(original_argv[0], '/')) return 0;
  char resolved[PATH_MAX];
  if (!realpath(original_argv[0], resolved) || strlen(resolved) >= size) return 0;
  strcpy(out, resolved);
  return 1;
#endif
}

/* dist/native/keybroker-shim -> dist/src/shim/keybroker-shim.cjs */
static int node_shim_path(char *out, size_t size) {
  char self[PATH_MAX];
  if (!self_path(self, sizeof self)) return 0;
  for (int up = 0; up < 2; up++) {
    char *slash = strrchr(self, '/');
    if (!slash) return 0;
    *slash = '\0';
  }
  int n = snprintf(out, size, "%s/src/shim/keybroker-shim.cjs", self[0] ? self : "");
  return n > 0 && (size_t)n < size;
}

/* Which node runs the Node shim. A C program has no node of its own: KEYBROKER_NODE if set; else
 * the node that built this binary (recorded at build time: the one keybroker was installed and
 * tested with, and Claude Code's PATH may not have any node, or another version via nvm); else
 * `node` on PATH, as the Node shim's own #!/usr/bin/env line would find it. */
static void handover(void) {
  char shim[PATH_MAX] = "";
  int argc = 0;
  handing_over = 1;
  while (original_argv[argc]) argc++;
  if (!node_shim_path(shim, sizeof shim) || access(shim, R_OK) != 0) {
    struct buf msg = {0};
    buf_str(&msg, "cannot find the Node shim");
    if (shim[0]) {
      buf_str(&msg, " ");
      buf_str(&msg, shim);
    }
    buf_str(&msg, " beside the native keybroker-shim, which hands it everything but the plain call; reinstall keybroker, or run: keybroker setup claude --force");
    fail("INTERNAL", msg.data);
  }
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) internal_error();
  args[1] = shim;
  for (int k = 1; k < argc; k++) args[k + 1] = original_argv[k];
  const char *env_node = getenv("KEYBROKER_NODE");
  const char *node;
  if (env_node && *env_node) {
    node = env_node;
    args[0] = (char *)node;
    execvp(node, args);
  } else {
    node = KB_BUILD_NODE;
    if (node[0] == '/' && access(node, X_OK) == 0) {
      args[0] = (char *)node;
      execv(node, args);
    }
    node = "node";
    args[0] = (char *)node;
    execvp(node, args);
  }
  struct buf msg = {0};
  buf_str(&msg, "cannot run the Node shim ");
  buf_str(&msg, shim);
  buf_str(&msg, " with ");
  buf_str(&msg, node);
  buf_str(&msg, " (");
  buf_str(&msg, strerror(errno));
  buf_str(&msg, "); put node on PATH or set KEYBROKER_NODE to it");
  fail("INTERNAL", msg.data);
}

/* ---- arguments: [--socket PATH] [PROFILE] and nothing else ---- */

struct args {
  const char *socket; /* NULL: not given (an empty --socket= counts as not given, as in Node) */
  const char *profile;
};

static void parse_args(int argc, char **argv, struct args *a) {
  a->socket = NULL;
  a->profile = NULL;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--socket") == 0) {
      if (i + 1 >= argc || argv[i + 1][0] == '\0') handover(); /* a usage error: Node words it */
      a->socket = argv[++i];
    } else if (strncmp(s, "--socket=", 9) == 0) {
      a->socket = s[9] ? s + 9 : NULL;
    } else if (s[0] == '-') {
      handover(); /* --help, --refresh, --format, unknown options */
    } else if (a->profile || s[0] == '\0') {
      handover(); /* two profiles (a usage error), or an empty one */
    } else {
      a->profile = s;
    }
  }
}

/* ---- the socket path: src/client/socket-path.ts ---- */

static const char *home_dir(void) {
  /* os.homedir(): $HOME when set, else the password database. */
  const char *home = getenv("HOME");
  return home;
}

/* path.resolve(p) for a UTF-8 path: absolute against the working directory, '.', '..' and
 * repeated or trailing slashes removed. */
static int resolve_path(const char *p, char *out, size_t size) {
  struct buf full = {0};
  if (p[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      free(full.data);
      return 0;
    }
    buf_str(&full, cwd);
    buf_str(&full, "/");
  }
  buf_str(&full, p);
  size_t o = 0;
  char *s = full.data;
  size_t n = full.len;
  for (size_t i = 0; i < n;) {
    while (i < n && s[i] == '/') i++;
    size_t j = i;
    while (j < n && s[j] != '/') j++;
    size_t len = j - i;
    if (len == 0 || (len == 1 && s[i] == '.')) {
      /* nothing */
    } else if (len == 2 && s[i] == '.' && s[i + 1] == '.') {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
    } else {
      if (o + 1 + len + 1 > size) {
        free(full.data);
        return 0;
      }
      out[o++] = '/';
      memcpy(out + o, s + i, len);
      o += len;
    }
    i = j;
  }
  if (o == 0) out[o++] = '/';
  out[o] = '\0';
  free(full.data);
  return 1;
}

/* expandHome then resolve, for --socket and KEYBROKER_SOCKET. */
static int resolve_user_path(const char *p, char *out, size_t size) {
  if (p[0] == '~' && (p[1] == '\0' || p[1] == '/')) {
    const char *home = home_dir();
    if (!home || home[0] != '/') return 0;
    struct buf joined = {0};
    buf_str(&joined, home);
    buf_str(&joined, "/");
    buf_str(&joined, p + 1);
    int ok = resolve_path(joined.data, out, size);
    free(joined.data);
    return ok;
  }
  return resolve_path(p, out, size);
}

/* Returns 0 when anything is unusual enough that Node should decide (it then resolves the same
 * rules itself): no HOME, a relative one, a path that is not UTF-8 or too long for a socket. */
static int socket_path(const struct args *a, char *out, size_t size) {
  const char *env_socket = getenv("KEYBROKER_SOCKET");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  struct buf p = {0};
  int ok;
  if (a->socket) ok = resolve_user_path(a->socket, out, size);
  else if (env_socket && *env_socket) ok = resolve_user_path(env_socket, out, size);
  else {
    if (xdg && xdg[0] == '/') {
      buf_str(&p, xdg);
      buf_str(&p, "/keybroker/keybroker.sock");
    } else {
      const char *home = home_dir();
      if (!home || home[0] != '/') return 0;
#ifdef __APPLE__
      buf_str(&p, home);
      buf_str(&p, "/Library/Application Support/keybroker/keybroker.sock");
#else
      const char *state = getenv("XDG_STATE_HOME");
      if (state && state[0] == '/') buf_str(&p, state);
      else {
        buf_str(&p, home);
        buf_str(&p, "/.local/state");
      }
      buf_str(&p, "/keybroker/keybroker.sock");
#endif
    }
    ok = resolve_path(p.data, out, size);
    free(p.data);
  }
  if (!ok) return 0;
  size_t len = strlen(out);
  return len <= MAX_SOCKET_PATH_BYTES && kb_utf8_valid((const unsigned char *)out, len);
}

/* ---- the client socket checks (TEAM.md's contract, the same rule as the Node clients) ----
 * The socket's directory must be a real directory owned by us that nobody else can enter, and
 * the socket a socket owned by us: otherwise another user could stand in for the daemon and
 * collect or hand out keys. Missing ones are not unsafe: the Node shim's autostart creates them. */

/* The directories above the socket's directory, along its real path: each owned by us or root,
 * and writable by nobody else unless it has the sticky bit (as /tmp does). Otherwise another user
 * could rename the socket directory away and put one of theirs in its place between this check
 * and the connect. ancestorsProblem in src/client/socket-check.ts; the same messages. */
#ifndef S_ISVTX
#define S_ISVTX 01000 /* an XSI name, hidden by _POSIX_C_SOURCE; the value is the same everywhere */
#endif

static void check_ancestors(const char *dir, uid_t uid) {
  char parent[PATH_MAX], real[PATH_MAX], msg[3 * PATH_MAX];
  struct stat st;
  const char *slash = strrchr(dir, '/');
  if (slash == NULL) {
    strcpy(parent, ".");
  } else {
    size_t plen = slash == dir ? 1 : (size_t)(slash - dir);
    memcpy(parent, dir, plen);
    parent[plen] = '\0';
  }
  if (realpath(parent, real) == NULL) return; /* gone: the socket checks below say so */
  for (;;) {
    if (lstat(real, &st) != 0) return;
    if (st.st_uid != uid && st.st_uid != 0) {
      snprintf(msg, sizeof msg,
               "refusing to connect: directory %s above the socket is owned by uid %lu, not by you (uid %lu) or root, so they could swap the socket "
               "directory; use --socket with a path in a directory of your own",
               real, (unsigned long)st.st_uid, (unsigned long)uid);
      fail("UNSAFE_PATH", msg);
    }
    if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
      snprintf(msg, sizeof msg,
               "refusing to connect: directory %s above the socket is writable by group or others without the sticky bit (mode %04o), so they could "
               "swap the socket directory; run: chmod go-w %s, or use --socket with a path in a directory of your own",
               real, (unsigned)(st.st_mode & 0777), real);
      fail("UNSAFE_PATH", msg);
    }
    if (strcmp(real, "/") == 0) return;
    char *last = strrchr(real, '/');
    if (last == real) real[1] = '\0';
    else *last = '\0';
  }
}

static void check_socket(const char *sock) {
  char dir[PATH_MAX];
  struct stat st;
  uid_t uid = geteuid();
  const char *slash = strrchr(sock, '/');
  size_t dlen = slash == sock ? 1 : (size_t)(slash - sock);
  memcpy(dir, sock, dlen);
  dir[dlen] = '\0';
  char msg[3 * PATH_MAX];

  /* No socket (or no directory): nothing to connect to, so the Node shim decides, autostart and
   * all. This shim checks only what it is about to connect to. The messages are
   * src/client/socket-check.ts's. */
  if (lstat(sock, &st) != 0) handover();
  if (lstat(dir, &st) != 0) handover();
  if (S_ISLNK(st.st_mode)) {
    snprintf(msg, sizeof msg, "refusing to connect: socket directory %s is a symbolic link; use a real directory (mode 0700): run: rm %s", dir, dir);
    fail("UNSAFE_PATH", msg);
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(msg, sizeof msg, "refusing to connect: socket directory %s is not a directory; run: rm %s", dir, dir);
    fail("UNSAFE_PATH", msg);
  }
  if (st.st_uid != uid) {
    snprintf(msg, sizeof msg,
             "refusing to connect: socket directory %s is owned by uid %lu, not by you (uid %lu); use --socket with a path in a directory of your own", dir,
             (unsigned long)st.st_uid, (unsigned long)uid);
    fail("UNSAFE_PATH", msg);
  }
  if ((st.st_mode & 077) != 0) {
    snprintf(msg, sizeof msg, "refusing to connect: socket directory %s is accessible by group or others (mode %04o); run: chmod 700 %s", dir,
             (unsigned)(st.st_mode & 0777), dir);
    fail("UNSAFE_PATH", msg);
  }
  check_ancestors(dir, uid);
  if (lstat(sock, &st) != 0) handover(); /* gone meanwhile */
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(msg, sizeof msg, "refusing to connect: %s is not a socket (mode %lo); run: rm %s", sock, (unsigned long)st.st_mode, sock);
    fail("UNSAFE_PATH", msg);
  }
  if (st.st_uid != uid) {
    snprintf(msg, sizeof msg,
             "refusing to connect: socket %s is owned by uid %lu, not by you (uid %lu), so it is not your daemon; remove it (rm %s) and start yours: keybroker daemon",
             sock, (unsigned long)st.st_uid, (unsigned long)uid, sock);
    fail("UNSAFE_PATH", msg);
  }
}

/* ---- the consumer: the nearest ancestor that is not a shell (findConsumer in the Node shim) ---- */

static const char *const SHELLS[] = {"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "pdksh", "ash", "busybox", "tcsh", "csh", "nu", "xonsh"};

struct proc_info {
  long ppid;
  char comm[512];
  size_t comm_len;
  char start[64]; /* empty: unknown */
};

static int is_shell(const char *name, size_t len) {
  for (size_t k = 0; k < sizeof SHELLS / sizeof SHELLS[0]; k++) {
    if (strlen(SHELLS[k]) == len && memcmp(SHELLS[k], name, len) == 0) return 1;
  }
  return 0;
}

/* Read up to size bytes of a file; -1 when it cannot be read. */
static ssize_t read_small(const char *file, char *out, size_t size) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, out + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      close(fd);
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  close(fd);
  return (ssize_t)got;
}

/* A whole decimal number, as Number() reads what the kernel wrote. */
static int parse_long(const char *s, size_t n, long *out) {
  long v = 0;
  if (n == 0 || n > 18) return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 1;
}

#if defined(__linux__)
/* 0: no such process (the Node shim then sends no consumer); 1: found. Hands over on a format
 * it does not expect rather than guess. */
static int proc_info(long pid, struct proc_info *info) {
  char file[64], stat[4096];
  snprintf(file, sizeof file, "/proc/%ld/stat", pid);
  ssize_t n = read_small(file, stat, sizeof stat);
  if (n < 0) return 0;
  if (n == (ssize_t)sizeof stat) handover();
  /* "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'. */
  char *open = memchr(stat, '(', (size_t)n);
  char *close = NULL;
  for (char *c = stat + n - 1; c >= stat; c--) {
    if (*c == ')') {
      close = c;
      break;
    }
  }
  if (!open || !close || close < open || (size_t)(close - open - 1) >= sizeof info->comm || close + 2 > stat + n) handover();
  info->comm_len = (size_t)(close - open - 1);
  memcpy(info->comm, open + 1, info->comm_len);
  /* fields[k] of stat.slice(close + 2).split(' '): [1] ppid, [19] start time */
  char *f = close + 2, *end = stat + n;
  int k = 0;
  info->start[0] = '\0';
  int have_ppid = 0;
  while (f <= end) {
    char *sp = memchr(f, ' ', (size_t)(end - f));
    char *fe = sp ? sp : end;
    if (k == 1) have_ppid = parse_long(f, (size_t)(fe - f), &info->ppid);
    if (k == 19) {
      if ((size_t)(fe - f) >= sizeof info->start) handover();
      memcpy(info->start, f, (size_t)(fe - f));
      info->start[fe - f] = '\0';
      break;
    }
    k++;
    if (!sp) break;
    f = sp + 1;
  }
  if (!have_ppid) handover();
  return 1;
}

/* path.basename of argvLinux(pid)[0] into out; its length, 0 when there is none. */
static size_t argv0_basename(long pid, char *out, size_t size) {
  char file[64], cmd[4096];
  snprintf(file, sizeof file, "/proc/%ld/cmdline", pid);
  ssize_t n = read_small(file, cmd, sizeof cmd);
  if (n <= 0) return 0;
  const char *end = memchr(cmd, '\0', (size_t)n);
  if (!end) end = cmd + n;
  /* path.basename drops trailing slashes, then takes what follows the last one. */
  while (end > cmd && end[-1] == '/') end--;
  const char *b = end;
  while (b > cmd && b[-1] != '/') b--;
  size_t len = (size_t)(end - b);
  if (len == 0 || len >= size) return 0;
  memcpy(out, b, len);
  return len;
}

/* The Node shim's argvLinux: the first two of cmdline's first 4096 bytes, split at NUL. */
static int argv_says_claude(long pid) {
  char file[64], cmd[4096];
  snprintf(file, sizeof file, "/proc/%ld/cmdline", pid);
  ssize_t n = read_small(file, cmd, sizeof cmd);
  if (n < 0) return 0;
  const char *arg = cmd, *end = cmd + n;
  for (int k = 0; k < 2; k++) {
    const char *nul = memchr(arg, '\0', (size_t)(end - arg));
    const char *ae = nul ? nul : end;
    size_t len = (size_t)(ae - arg);
    /* /(^|\/)claude$/ or includes '@anthropic-ai/claude-code/' */
    if (len >= 6 && memcmp(ae - 6, "claude", 6) == 0 && (len == 6 || ae[-7] == '/')) return 1;
    static const char pkg[] = "@anthropic-ai/claude-code/";
    for (const char *c = arg; c + sizeof pkg - 1 <= ae; c++) {
      if (memcmp(c, pkg, sizeof pkg - 1) == 0) return 1;
    }
    if (!nul) break;
    arg = nul + 1;
  }
  return 0;
}
#elif defined(__APPLE__)
/* The Node shim reads `ps -A -o pid=,ppid=,comm=`: comm is argv[0]'s basename; no start time. */
static int proc_info(long pid, struct proc_info *info) {
  struct proc_bsdinfo bsd;
  if (proc_pidinfo((int)pid, PROC_PIDTBSDINFO, 0, &bsd, (int)sizeof bsd) != (int)sizeof bsd) return 0;
  info->ppid = (long)bsd.pbi_ppid;
  info->start[0] = '\0';
  int mib[3] = {CTL_KERN, KERN_PROCARGS2, (int)pid};
  char args[8192];
  size_t size = sizeof args;
  const char *argv0 = NULL;
  size_t argv0_len = 0;
  if (sysctl(mib, 3, args, &size, NULL, 0) == 0 && size > sizeof(int)) {
    /* argc, then the executable path, NUL padding, then argv[0]. */
    const char *c = args + sizeof(int), *end = args + size;
    while (c < end && *c) c++;
    while (c < end && !*c) c++;
    if (c < end) {
      const char *nul = memchr(c, '\0', (size_t)(end - c));
      argv0 = c;
      argv0_len = nul ? (size_t)(nul - c) : (size_t)(end - c);
    }
  }
  if (!argv0) {
    argv0 = bsd.pbi_comm;
    argv0_len = strnlen(bsd.pbi_comm, sizeof bsd.pbi_comm);
  }
  while (argv0_len > 0 && argv0[argv0_len - 1] == ' ') argv0_len--;
  const char *base = argv0;
  for (size_t k = 0; k < argv0_len; k++) {
    if (argv0[k] == '/') base = argv0 + k + 1;
  }
  info->comm_len = argv0_len - (size_t)(base - argv0);
  if (info->comm_len >= sizeof info->comm) handover();
  memcpy(info->comm, base, info->comm_len);
  return 1;
}

static int argv_says_claude(long pid) {
  (void)pid;
  return 0;
}
#endif

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* isClaudeCode(): Claude Code's environment reached us and the consumer process is claude. */
static int is_claude_code(const char *name, size_t len, long pid) {
  const char *entry = getenv("CLAUDE_CODE_ENTRYPOINT");
  const char *agent = getenv("AI_AGENT");
  if (!((entry && *entry) || (agent && starts_with(agent, "claude-code")))) return 0;
  /* /^claude\b/i */
  if (len >= 6 && strncasecmp(name, "claude", 6) == 0) {
    unsigned char next = len > 6 ? (unsigned char)name[6] : 0;
    int word = (next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9') || next == '_';
    if (!word) return 1;
  }
  return argv_says_claude(pid);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int env_set(const char *name) {
  const char *v = getenv(name);
  return v && *v;
}

/* invocationOf(): how Claude Code ran us (docs/protocol.md). A Claude Code started from another
 * one's Bash tool inherits that one's agent markers, CLAUDE_PID (the other's pid) included, and
 * marks its own helper AI_AGENT=…_harness: the harness marker with a CLAUDE_PID that is not the
 * consumer's is our claude's helper. Otherwise an agent marker wins over the harness marker. The
 * native shim only ever runs raw (--format goes to the Node shim), so the harness means
 * apiKeyHelper. */
static const char *invocation(long consumer_pid) {
  const char *agent = getenv("AI_AGENT");
  const char *cc = getenv("CLAUDECODE");
  const char *claude_pid = getenv("CLAUDE_PID");
  char own[32];
  snprintf(own, sizeof own, "%ld", consumer_pid);
  if (!agent) agent = "";
  if (ends_with(agent, "_harness") && claude_pid && *claude_pid && strcmp(claude_pid, own) != 0) return "api-key-helper";
  if ((cc && strcmp(cc, "1") == 0) || ends_with(agent, "_agent") || env_set("CLAUDE_CODE_CHILD_SESSION") || env_set("CLAUDE_PID")) return "agent-tool";
  if (ends_with(agent, "_harness")) return "api-key-helper";
  return "unmarked";
}

/* Number(process.env.CLAUDE_CODE_API_KEY_HELPER_TTL_MS), when it is a positive whole number. Only
 * plain decimal text is read here; anything JavaScript would read in its own way (1e3, 0x10,
 * 1.0, non-ASCII space) goes to the Node shim. */
static long long helper_ttl_ms(void) {
  const char *v = getenv("CLAUDE_CODE_API_KEY_HELPER_TTL_MS");
  if (!v) return DEFAULT_HELPER_TTL_MS;
  size_t b = 0, e = strlen(v);
  while (b < e && ((v[b] >= 9 && v[b] <= 13) || v[b] == ' ')) b++;
  while (e > b && ((v[e - 1] >= 9 && v[e - 1] <= 13) || v[e - 1] == ' ')) e--;
  if (b == e) return DEFAULT_HELPER_TTL_MS; /* Number('') is 0 */
  int negative = 0;
  if (v[b] == '+' || v[b] == '-') {
    negative = v[b] == '-';
    b++;
  }
  if (b == e || e - b > 15) handover();
  long long n = 0;
  for (size_t k = b; k < e; k++) {
    if (v[k] < '0' || v[k] > '9') handover();
    n = n * 10 + (v[k] - '0');
  }
  return !negative && n > 0 ? n : DEFAULT_HELPER_TTL_MS;
}

/* Appends ,"consumer":{…} when the Node shim would send one. */
static void add_consumer(struct buf *req) {
#if defined(__linux__) || defined(__APPLE__)
  long pid = (long)getppid();
  for (int depth = 0; depth < 8 && pid > 1; depth++) {
    struct proc_info info;
    if (!proc_info(pid, &info)) return;
    const char *name = info.comm;
    size_t len = info.comm_len;
    if (len > 0 && name[0] == '-') {
      name++;
      len--;
    }
#if defined(__linux__)
    /* The Node shim's Node 24 rule: Node 24 names its main thread "MainThread", which Linux
     * reports as the comm of a Node consumer that sets no process.title; its argv[0]'s basename
     * says who it is (path.basename(argv[0]) || name). */
    static char argv0_name[4096];
    if (len == 10 && memcmp(name, "MainThread", 10) == 0) {
      size_t alen = argv0_basename(pid, argv0_name, sizeof argv0_name);
      if (alen > 0) {
        name = argv0_name;
        len = alen;
      }
    }
#endif
    if (!is_shell(name, len)) {
      /* Keys in the protocol's order: pid, start, name, claudeCode, invocation, helperTtlMs. */
      char num[32];
      int claude = is_claude_code(name, len, pid);
      buf_str(req, ",\"consumer\":{\"pid\":");
      snprintf(num, sizeof num, "%ld", pid);
      buf_str(req, num);
      if (info.start[0]) {
        buf_str(req, ",\"start\":");
        buf_json_latin1(req, info.start, strlen(info.start));
      }
      buf_str(req, ",\"name\":");
      buf_json_latin1(req, name, len);
      buf_str(req, claude ? ",\"claudeCode\":true" : ",\"claudeCode\":false");
      if (claude) {
        buf_str(req, ",\"invocation\":\"");
        buf_str(req, invocation(pid));
        buf_str(req, "\"");
      }
      snprintf(num, sizeof num, "%lld", helper_ttl_ms());
      buf_str(req, ",\"helperTtlMs\":");
      buf_str(req, num);
      buf_str(req, "}");
      return;
    }
    pid = info.ppid;
  }
#else
  (void)req;
#endif
}

/* ---- the exchange ---- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A DAEMON_UNREACHABLE after the request went out: the daemon went away without answering (or,
 * in theory, said so itself). The Node shim would now start a daemon and ask again; with
 * autostart on, so does the Node shim we hand over to, which is the one case where the request
 * goes out twice, exactly as it does from the Node shim alone. */
static void unreachable_after_send(const char *message, size_t len) {
  const char *no_autostart = getenv("KEYBROKER_NO_AUTOSTART");
  if (no_autostart && strcmp(no_autostart, "1") == 0) {
    struct buf msg = {0};
    buf_add(&msg, message, len);
    buf_str(&msg, "; autostart is off (KEYBROKER_NO_AUTOSTART=1) \xe2\x80\x94 start it with: keybroker daemon");
    fail_text("DAEMON_UNREACHABLE", strlen("DAEMON_UNREACHABLE"), msg.data, msg.len);
  }
  handover();
}

static void closed_without_reply(const char *message) { unreachable_after_send(message, strlen(message)); }

static void lost_connection(const char *sock) {
  struct buf msg = {0};
  buf_str(&msg, "keybroker daemon not reachable on ");
  buf_str(&msg, sock);
  buf_str(&msg, " (the daemon closed the connection)");
  closed_without_reply(msg.data);
}

/* ---- another build of the daemon (src/client/build-info.ts) ---- */

static int text_is(const struct kb_text *t, const char *s) { return t->len == strlen(s) && memcmp(t->ptr, s, t->len) == 0; }

/* isOtherBuild(ME, daemon) */
static int other_build(const struct kb_identity *d) {
  if (!text_is(&d->version, KB_VERSION)) return 1;
  const char *me = KB_BUILD_ID;
  return me != NULL && d->has_build && !text_is(&d->build, me);
}

/* describeBuild: "0.1.0 (build 3f2a9c1e0b7d)", or the version alone without a build. */
static void buf_build(struct buf *b, const char *version, size_t vlen, const char *build, size_t blen) {
  buf_add(b, version, vlen);
  if (build && blen > 0) {
    buf_str(b, " (build ");
    buf_add(b, build, blen);
    buf_str(b, ")");
  }
}

/* otherBuildMessage(ME, daemon, uid) */
static void buf_other_build(struct buf *b, const struct kb_identity *d) {
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", d->pid);
  buf_str(b, "the running daemon (pid ");
  buf_str(b, pid);
  buf_str(b, ") is keybroker ");
  buf_build(b, d->version.ptr, d->version.len, d->has_build ? d->build.ptr : NULL, d->has_build ? d->build.len : 0);
  buf_str(b, ", this is ");
  const char *me = KB_BUILD_ID;
  buf_build(b, KB_VERSION, strlen(KB_VERSION), me, me ? strlen(me) : 0);
  buf_str(b, " \xe2\x80\x94 run: ");
  /* restartCommand(startedBy, uid) */
  if (d->has_started_by && text_is(&d->started_by, "systemd")) {
    buf_str(b, "systemctl --user restart keybroker.service");
  } else if (d->has_started_by && text_is(&d->started_by, "launchd")) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "launchctl kickstart -k gui/%lu/dev.keybroker.agent", (unsigned long)getuid());
    buf_str(b, cmd);
  } else {
    buf_str(b, "keybroker restart");
  }
}

/* askToStop's looksLikeDaemon: on Linux, by its command line; elsewhere the socket's word is taken. */
static int looks_like_daemon(long pid) {
#if defined(__linux__)
  char file[64], cmdline[65536];
  snprintf(file, sizeof file, "/proc/%ld/cmdline", pid);
  ssize_t n = read_small(file, cmdline, sizeof cmdline);
  if (n < 0) return 0;
  int daemon = 0, entry = 0;
  for (ssize_t start = 0; start < n;) {
    const char *arg = cmdline + start;
    size_t len = strnlen(arg, (size_t)(n - start));
    if (len == 6 && memcmp(arg, "daemon", 6) == 0) daemon = 1;
    if ((len >= 7 && memcmp(arg + len - 7, "main.js", 7) == 0) || (len >= 9 && memcmp(arg + len - 9, "keybroker", 9) == 0)) entry = 1;
    start += (ssize_t)len + 1;
  }
  return daemon && entry;
#else
  (void)pid;
  return 1;
#endif
}

/* askToStop: SIGTERM a keybroker daemon; it finishes the replies in flight and exits. */
static int ask_to_stop(long pid) {
  if (pid <= 1 || pid == (long)getpid() || !looks_like_daemon(pid)) return 0;
  return kill((pid_t)pid, SIGTERM) == 0;
}

/* A connected Unix socket to `sock`, or -1. A full listen backlog makes connect() wait; the send
 * timeout bounds that (and later writes) by the caller's own deadline. */
static int connect_unix(const char *sock, int timeout_ms) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, sock, strlen(sock) + 1);
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno == EINTR) continue;
    close(fd);
    return -1;
  }
  return fd;
}

/* One ping: 1 and *out filled (free it) when a reply line came and parsed as ok, else 0. Bounded
 * like the request: its own deadline, at most KB_MAX_REPLY_BYTES. */
static int ping(const char *sock, int timeout_ms, struct kb_reply *out) {
  static const char req[] = "{\"v\":1,\"op\":\"ping\"}\n";
  long long deadline = now_ms() + timeout_ms;
  int fd = connect_unix(sock, timeout_ms);
  if (fd < 0) return 0;
  struct buf reply = {0};
  int ok = 0;
  if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
    shutdown(fd, SHUT_WR);
    for (;;) {
      long long wait = deadline - now_ms();
      struct pollfd pfd = {fd, POLLIN, 0};
      int ready = wait > 0 ? poll(&pfd, 1, (int)wait) : 0;
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      char chunk[4096];
      ssize_t r = read(fd, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || reply.len + (size_t)r > KB_MAX_REPLY_BYTES) break;
      buf_add(&reply, chunk, (size_t)r);
      const char *nl = memchr(reply.data, '\n', reply.len);
      if (nl) {
        ok = kb_parse_reply((const unsigned char *)reply.data, (size_t)(nl - reply.data), out) == KB_REPLY_OK;
        if (!ok) kb_reply_free(out);
        break;
      }
    }
  }
  close(fd);
  free(reply.data);
  return ok;
}

/* stopDaemon: ask it to stop and wait until nothing answers on the socket. */
static int stop_daemon(const char *sock, long pid) {
  if (!ask_to_stop(pid)) return 0;
  long long deadline = now_ms() + STOP_DEADLINE_MS;
  while (now_ms() < deadline) {
    struct kb_reply r;
    if (!ping(sock, 500, &r)) return 1;
    kb_reply_free(&r);
    struct timespec pause = {0, 50 * 1000000L};
    nanosleep(&pause, NULL);
  }
  return 0;
}

/* The daemon refused the request (BAD_REQUEST): an older build that does not know a field. As
 * requestWithAutostart: ping it; one that autostart started is replaced, any other is named with
 * the command that restarts it. Returns when it is not another build (the refusal is printed). */
static void refused(const char *message, size_t len) {
  struct kb_reply pong;
  if (!socket_in_use || !ping(socket_in_use, PING_TIMEOUT_MS, &pong)) return;
  const struct kb_identity *old = &pong.self;
  if (!pong.pong || !old->valid || !other_build(old)) {
    kb_reply_free(&pong);
    return;
  }
  if (old->has_started_by && text_is(&old->started_by, "autostart") && stop_daemon(socket_in_use, old->pid)) {
    /* The old daemon refused the request, so nothing was fetched or counted: the Node shim
     * starts this build's daemon and asks it, as the Node shim alone would after the same
     * refusal (a request, a ping, then the request again). */
    handover();
  }
  struct buf msg = {0};
  buf_other_build(&msg, old);
  buf_str(&msg, " (it refused this request: ");
  buf_add(&msg, message, len);
  buf_str(&msg, ")");
  fail_text("BAD_REQUEST", strlen("BAD_REQUEST"), msg.data, msg.len);
}

static void print_reply(const unsigned char *line, size_t len) {
  struct kb_reply r;
  switch (kb_parse_reply(line, len, &r)) {
    case KB_REPLY_NOT_JSON:
      /* Never echo the reply: it may hold a secret. */
      fail("INTERNAL", "the keybroker daemon sent a reply that is not JSON");
      break;
    case KB_REPLY_UNKNOWN_SHAPE:
      fail("INTERNAL", "the keybroker daemon sent a reply of an unknown shape");
      break;
    case KB_REPLY_NO_MEMORY:
      internal_error();
      break;
    case KB_REPLY_ERROR:
      if (text_is(&r.error_code, "DAEMON_UNREACHABLE")) unreachable_after_send(r.error_message.ptr, r.error_message.len);
      if (text_is(&r.error_code, "BAD_REQUEST")) refused(r.error_message.ptr, r.error_message.len);
      {
        struct buf text = {0};
        buf_render_error(&text, &r.error_message, r.has_error_profile ? &r.error_profile : NULL, r.has_error_fix ? &r.error_fix : NULL);
        fail_text(r.error_code.ptr, r.error_code.len, text.data, text.len);
      }
      break;
    case KB_REPLY_OK:
      break;
  }
  if (!r.has_value) fail("INTERNAL", "the daemon answered without a value");
  if (r.stale && r.warning) {
    if (!r.has_warning_message) {
      /* Node: reply.warning.message.replace(...) throws, and main().catch says this. */
      internal_error();
    }
    struct buf w = {0}, text = {0};
    buf_str(&w, "keybroker: warning: serving a cached value past its TTL: ");
    buf_render_error(&text, &r.warning_message, r.has_warning_profile ? &r.warning_profile : NULL, r.has_warning_fix ? &r.warning_fix : NULL);
    buf_one_line(&w, text.data, text.len);
    free(text.data);
    buf_add(&w, "\n", 1);
    write_all(2, w.data, w.len);
    free(w.data);
  }
  struct buf out = {0};
  buf_add(&out, r.value.ptr, r.value.len);
  buf_add(&out, "\n", 1);
  write_all(1, out.data, out.len);
  /* The key leaves no copy behind in this process's heap. */
  memset(out.data, 0, out.len);
  if (r.daemon.valid && other_build(&r.daemon)) {
    if (r.daemon.has_started_by && text_is(&r.daemon.started_by, "autostart")) {
      /* Ours to replace: it stops after this reply (no waiting here), and the next call
       * starts this build. */
      ask_to_stop(r.daemon.pid);
    } else {
      struct buf w = {0};
      buf_str(&w, "keybroker: warning: ");
      buf_other_build(&w, &r.daemon);
      buf_add(&w, "\n", 1);
      write_all(2, w.data, w.len);
      free(w.data);
    }
  }
  exit(0);
}

static void exchange(const char *sock, const struct buf *req) {
  long long deadline = now_ms() + REQUEST_TIMEOUT_MS;
  int fd = connect_unix(sock, REQUEST_TIMEOUT_MS);
  if (fd < 0) handover(); /* no daemon answering: the Node shim starts one */
  /* From here on the request may have reached the daemon: never hand over for a failure. */
  request_sent = 1;
  const char *p = req->data;
  size_t left = req->len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break; /* timed out: reported below as Node does */
      lost_connection(sock);
    }
    p += w;
    left -= (size_t)w;
  }
  shutdown(fd, SHUT_WR);

  struct buf reply = {0};
  for (;;) {
    long long wait = deadline - now_ms();
    struct pollfd pfd = {fd, POLLIN, 0};
    int ready = wait > 0 ? poll(&pfd, 1, (int)wait) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) fail("TIMEOUT", KB_NO_ANSWER_MESSAGE);
    char chunk[65536];
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) lost_connection(sock); /* as Node: a reset before the newline loses the reply */
    if (r == 0) break;
    if (reply.len + (size_t)r > KB_MAX_REPLY_BYTES) {
      char msg[100];
      snprintf(msg, sizeof msg, "reply from the keybroker daemon exceeds %d bytes", KB_MAX_REPLY_BYTES);
      fail("INTERNAL", msg);
    }
    buf_add(&reply, chunk, (size_t)r);
    if (memchr(chunk, '\n', (size_t)r)) break;
  }
  close(fd);
  const char *nl = reply.len ? memchr(reply.data, '\n', reply.len) : NULL;
  size_t len = nl ? (size_t)(nl - reply.data) : reply.len;
  if (len == 0) closed_without_reply("the keybroker daemon closed the connection without replying");
  print_reply((const unsigned char *)reply.data, len);
}

int main(int argc, char **argv) {
  original_argv = argv;
  /* Node ignores SIGPIPE too: a daemon that hangs up shows as an error, not a silent death. */
  signal(SIGPIPE, SIG_IGN);
  struct args a;
  parse_args(argc, argv, &a);
  char sock[PATH_MAX];
  if (!socket_path(&a, sock, sizeof sock)) handover();

  /* {"v":1,"op":"get","profile":…,"cwd":…,"consumer":{…}}, keys in the protocol's order; the
   * profile only when given (else the daemon picks one by directory), the working directory
   * unless it has been deleted under us (process.cwd() throws then). */
  struct buf req = {0};
  buf_str(&req, "{\"v\":1,\"op\":\"get\"");
  if (a.profile) {
    buf_str(&req, ",\"profile\":");
    buf_json_utf8(&req, a.profile, strlen(a.profile));
  }
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd)) {
    buf_str(&req, ",\"cwd\":");
    buf_json_utf8(&req, cwd, strlen(cwd));
  } else if (errno != ENOENT) {
    handover(); /* longer than PATH_MAX, or unreadable: Node's uv_cwd decides */
  }
  add_consumer(&req);
  buf_str(&req, "}\n");
  if (req.len > MAX_REQUEST_BYTES) handover();

  check_socket(sock);
  socket_in_use = sock;
  exchange(sock, &req);
  return KB_EXIT_INTERNAL;
}
