/* keybroker-shim, native: the fast path of src/shim/keybroker-shim.ts in C, for apiKeyHelper.
 * Node needs 50-100 ms just to start; this answers in about a millisecond, like git's
 * credential-cache client: connect, write one request, half-close, read the reply, exit. It does
 * only the plain call, `keybroker-shim [--socket PATH] [--refresh-interval-ms MS] [PROFILE]` with a
 * daemon answering, as the Node shim would, byte for byte (its request adds "framed": it reads a
 * framed reply, not JSON).
 * Everything else it hands to the Node shim (execv, same arguments) *before* sending anything:
 * once a request is served, asking again would fetch twice and count as a 401 repeat. After
 * sending it hands over only for a reply that says the request was not served. C99 + POSIX;
 * built by scripts/build-native.mjs with kb-generated.h (see native/shim.h). */
#define _XOPEN_SOURCE 700 /* POSIX 2008 with XSI: realpath */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

#include "kb-generated.h"
#include "native/shim.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

struct kb_reply kb_reply;
int kb_request_sent;
static char **original_argv;
/* Set while handing over, so running out of memory there cannot loop back into it. */
static int handing_over;

void kb_exit(int status) {
  kb_wipe(kb_reply.data, kb_reply.len);
  exit(status);
}

/* Writes all of iov[0..count) to fd from the buffers themselves (the value's is the reply: no copy
 * of the key). */
static void write_all(int fd, struct iovec *iov, int count) {
  while (count > 0) {
    ssize_t w = writev(fd, iov, count);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return;
    for (; count > 0 && (size_t)w >= iov->iov_len; iov++, count--) w -= (ssize_t)iov->iov_len;
    if (count > 0) iov->iov_base = (char *)iov->iov_base + w, iov->iov_len -= (size_t)w;
  }
}

void kb_say(const char *lead, const char *tpl, const struct kb_text *args) {
  struct buf text = {0}, line = {0};
  buf_template(&text, tpl, args);
  buf_str(&line, KB_TEXT_PREFIX);
  buf_str(&line, lead);
  buf_one_line(&line, text.data, text.len);
  buf_add(&line, "\n", 1);
  write_all(2, &(struct iovec){line.data, line.len}, 1);
  free(text.data);
  free(line.data);
}

void kb_fail(int status, const char *tpl, const struct kb_text *args) {
  kb_say("", tpl, args);
  kb_exit(status);
}

/* main().catch in the Node shim: never print what went wrong, it may hold a value. */
static KB_NORETURN void internal_error(void) {
  static const char line[] = KB_TEXT_PREFIX KB_TEXT_INTERNAL_ERROR "\n";
  write_all(2, &(struct iovec){(void *)line, sizeof line - 1}, 1);
  kb_exit(KB_EXIT_INTERNAL);
}

void kb_out_of_memory(void) {
  if (kb_request_sent || handing_over) internal_error();
  kb_handover();
}

/* ---- handing over to the Node shim ---- */

static int self_path(char *out, size_t size) {
#ifdef __APPLE__
  char raw[PATH_MAX];
  uint32_t n = sizeof raw;
  (void)size;
  return _NSGetExecutablePath(raw, &n) == 0 && realpath(raw, out) != NULL;
#else
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n > 0) {
    out[n] = '\0';
    return 1;
  }
  /* No /proc: argv[0], if it names a file. */
  char resolved[PATH_MAX];
  if (!original_argv[0] || !strchr(original_argv[0], '/') || !realpath(original_argv[0], resolved)) return 0;
  return snprintf(out, size, "%s", resolved) < (int)size;
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
  int n = snprintf(out, size, "%s/src/shim/keybroker-shim.cjs", self);
  return n > 0 && (size_t)n < size;
}

/* Which node runs the Node shim. A C program has no node of its own: KEYBROKER_NODE if set; else
 * the node that built this binary (the one keybroker was installed and tested with; Claude Code's
 * PATH may have none, or another version via nvm); else `node` on PATH, as the Node shim's own
 * #!/usr/bin/env line would find it. */
void kb_handover(void) {
  char shim[PATH_MAX] = "";
  int argc = 0;
  kb_wipe(kb_reply.data, kb_reply.len);
  kb_reply.len = 0;
  handing_over = 1;
  while (original_argv[argc]) argc++;
  if (!node_shim_path(shim, sizeof shim) || access(shim, R_OK) != 0)
    kb_fail(KB_EXIT_INTERNAL,
            "cannot find the Node shim\0011\0012 beside the native keybroker-shim, which hands it everything but the plain call; "
            "reinstall keybroker, or run: keybroker setup claude --force",
            (struct kb_text[]){kb_str(shim[0] ? " " : ""), kb_str(shim)});
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) internal_error();
  args[1] = shim;
  for (int k = 1; k < argc; k++) args[k + 1] = original_argv[k];
  const char *node = getenv("KEYBROKER_NODE");
  if (!node || !*node) {
    args[0] = (char *)KB_BUILD_NODE;
    if (KB_BUILD_NODE[0] == '/' && access(KB_BUILD_NODE, X_OK) == 0) execv(KB_BUILD_NODE, args);
    node = "node";
  }
  args[0] = (char *)node;
  execvp(node, args);
  kb_fail(KB_EXIT_INTERNAL, "cannot run the Node shim \0011 with \0012 (\0013); put node on PATH or set KEYBROKER_NODE to it",
          (struct kb_text[]){kb_str(shim), kb_str(node), kb_str(strerror(errno))});
}

/* ---- arguments: [--socket PATH] [--refresh-interval-ms MS] [PROFILE] and nothing else ---- */

/* --refresh-interval-ms's value: 1 to 10 decimal digits, from 1 to KB_MAX_HELPER_TTL_MS; anything
 * else is a usage error, which the Node shim words. */
static long long interval_ms(const char *v) {
  long long ms;
  if (!v || !kb_decimal(v, strlen(v), 10, &ms) || ms < 1 || ms > KB_MAX_HELPER_TTL_MS) kb_handover();
  return ms;
}

/* socket: NULL when not given (an empty --socket= counts as not given, as in Node). */
static void parse_args(int argc, char **argv, const char **socket, const char **profile, struct kb_call *call) {
  *socket = *profile = NULL;
  for (int i = 1; i < argc; i++) {
    /* An option is NAME VALUE or NAME=VALUE. */
    const char *s = argv[i], *eq = strchr(s, '=');
    size_t name = eq ? (size_t)(eq - s) : strlen(s);
    if (name == strlen("--socket") && strncmp(s, "--socket", name) == 0) {
      if (!eq && (i + 1 >= argc || argv[i + 1][0] == '\0')) kb_handover(); /* a usage error: Node words it */
      call->options[0] = "--socket";
      *socket = !eq ? argv[++i] : eq[1] ? eq + 1 : NULL;
    } else if (name == strlen(KB_REFRESH_INTERVAL_OPTION) && strncmp(s, KB_REFRESH_INTERVAL_OPTION, name) == 0) {
      call->options[1] = KB_REFRESH_INTERVAL_OPTION;
      call->refresh_interval_ms = interval_ms(eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL);
    } else if (s[0] == '-' || *profile || s[0] == '\0') {
      kb_handover(); /* --help, --refresh, --format, unknown options; two profiles, or an empty one */
    } else {
      *profile = s;
    }
  }
}

/* {"v":1,"op":"get","profile":…,"cwd":…,"consumer":{…},"framed":true}, keys in the protocol's
 * order; the profile only when given (else the daemon picks one by directory), the working
 * directory unless it has been deleted under us (process.cwd() throws then). */
static void build_request(struct buf *req, const char *profile, const struct kb_call *call) {
  buf_str(req, "{\"v\":1,\"op\":\"get\"");
  if (profile) {
    buf_str(req, ",\"profile\":");
    buf_json_utf8(req, profile, strlen(profile));
  }
  char cwd[PATH_MAX];
  int have_cwd = getcwd(cwd, sizeof cwd) != NULL;
  if (have_cwd) {
    buf_str(req, ",\"cwd\":");
    buf_json_utf8(req, cwd, strlen(cwd));
  } else if (errno != ENOENT) {
    kb_handover(); /* longer than PATH_MAX, or unreadable: Node's uv_cwd decides */
  }
  struct kb_call with_cwd = *call;
  with_cwd.cwd = have_cwd ? cwd : NULL;
  kb_add_consumer(req, &with_cwd);
  buf_str(req, ",\"" KB_FRAMED_FLAG "\":true}\n");
  if (req->len > KB_MAX_REQUEST_BYTES) kb_handover(); /* the daemon would refuse it: Node sends it */
}

/* ---- the reply ---- */

/* A wire error as the Node shim renders one, after `lead`: by renderError's templates (an absent
 * part is as an empty one). */
static void say_error(const char *lead, struct kb_text profile, struct kb_text message, struct kb_text fix) {
  kb_say(lead, KB_RENDER_ERROR[(profile.len > 0) + 2 * (fix.len > 0)], (struct kb_text[]){profile, message, fix});
}

static void print_error(const struct kb_frame *f) {
  struct kb_text code = f->field[KB_FIELD_ERROR_CODE], message = f->field[KB_FIELD_ERROR_MESSAGE];
  if (kb_text_is(code, KB_CODE_DAEMON_UNREACHABLE)) kb_unreachable_after_send(message);
  /* A refusal: nothing was served. The Node shim asks again and, for a daemon of another build,
   * names it or replaces it (requestWithAutostart). */
  if (kb_text_is(code, KB_CODE_BAD_REQUEST)) kb_handover();
  say_error("", f->field[KB_FIELD_ERROR_PROFILE], message, f->field[KB_FIELD_ERROR_FIX]);
  kb_exit(f->status);
}

static KB_NORETURN void print_reply(size_t size) {
  struct kb_frame f;
  if (!kb_read_frame(kb_reply.data, size, &f)) kb_fail(KB_EXIT_INTERNAL, KB_MSG_NOT_A_FRAME, NULL);
  if (f.field[KB_FIELD_ERROR_CODE].ptr) print_error(&f);
  if (f.field[KB_FIELD_WARNING_MESSAGE].ptr)
    say_error(KB_TEXT_STALE_WARNING, f.field[KB_FIELD_WARNING_PROFILE], f.field[KB_FIELD_WARNING_MESSAGE],
              f.field[KB_FIELD_WARNING_FIX]);
  /* The value and its newline in one write, from the reply itself: no copy of the key. */
  struct kb_text value = f.field[KB_FIELD_VALUE];
  write_all(1, (struct iovec[]){{(void *)value.ptr, value.len}, {"\n", 1}}, 2);
  if (kb_other_build(&f)) {
    if (kb_text_is(f.field[KB_FIELD_DAEMON_STARTED_BY], KB_STARTED_BY_AUTOSTART)) {
      /* Ours to replace: it stops after this reply, and the next call starts this build. (The pid is
       * digits, checked by the reader, then a newline, as after every field.) */
      kb_ask_to_stop(strtol(f.field[KB_FIELD_DAEMON_PID].ptr, NULL, 10));
    } else {
      kb_warn_other_build(&f);
    }
  }
  kb_exit(0);
}

int main(int argc, char **argv) {
  original_argv = argv;
  /* Node ignores SIGPIPE too: a daemon that hangs up shows as an error, not a silent death. */
  signal(SIGPIPE, SIG_IGN);
  const char *flag, *profile;
  struct kb_call call = {{NULL, NULL}, 0, NULL};
  parse_args(argc, argv, &flag, &profile, &call);
  char sock[PATH_MAX];
  if (!kb_socket_path(flag, sock, sizeof sock)) kb_handover();
  struct buf req = {0};
  build_request(&req, profile, &call);
  kb_check_socket(sock);
  print_reply(kb_exchange(sock, req.data, req.len));
}
