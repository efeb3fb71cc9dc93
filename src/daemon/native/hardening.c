/* keybroker's hardening addon: the few things the daemon needs from the kernel that Node has no
 * call for. Loaded by the daemon only (src/daemon/hardening-addon.ts), never by the shim or the
 * CLI; without it the daemon runs as before and says so (docs/troubleshooting.md).
 *
 * - Keep its memory its own: PR_SET_DUMPABLE 0 on Linux (closes same-user ptrace,
 *   /proc/PID/mem and /proc/PID/environ, as ssh-agent and gpg-agent do), PT_DENY_ATTACH on macOS,
 *   and RLIMIT_CORE 0 in-process.
 * - Know who is asking: the peer's pid and uid as the kernel recorded them at connect()
 *   (SO_PEERCRED; getpeereid and LOCAL_PEERPID on macOS), its executable (/proc/PID/exe;
 *   proc_pidpath), and its ancestors, so a client's claim about its consumer can be checked.
 *
 * Plain C99 + POSIX against Node-API 8 (the node-api-headers package), built by
 * scripts/build-native.mjs without node-gyp: one build serves every Node that keybroker supports.
 * Every function answers synchronously and returns an errno number instead of throwing, so the
 * daemon decides what a failure means; nothing here ever holds a secret.
 */
#ifdef __linux__
#define _GNU_SOURCE /* struct ucred */
#endif
#ifdef __APPLE__
#define _DARWIN_C_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#endif
#ifdef __APPLE__
#include <libproc.h>
#include <sys/ptrace.h>
#include <sys/un.h>
#endif

#include <node_api.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* The deepest ancestry the daemon asks for; a real chain (shim, sh, claude, a shell, a terminal,
 * a session manager, init) is well below it. */
#define MAX_DEPTH 64

/* A Node-API call that fails here is a bug in this file: throw, so the daemon logs it once and
 * carries on without the addon's answer. */
#define CHECK(env, call)                                                                           \
  do {                                                                                             \
    if ((call) != napi_ok) {                                                                       \
      napi_throw_error((env), "KB_ADDON", "keybroker hardening addon: Node-API call failed");      \
      return NULL;                                                                                 \
    }                                                                                              \
  } while (0)

static napi_value number(napi_env env, double value) {
  napi_value out;
  CHECK(env, napi_create_double(env, value, &out));
  return out;
}

/* The first n arguments as int32s; a missing or non-number one is -1. */
static void int_args(napi_env env, napi_callback_info info, int32_t *out, size_t n) {
  size_t argc = 4;
  napi_value argv[4];
  for (size_t i = 0; i < n; i++) out[i] = -1;
  if (n > 4 || napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return;
  for (size_t i = 0; i < n && i < argc; i++)
    if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) out[i] = -1;
}

/* setNonDumpable(): 0, or an errno. */
static napi_value set_non_dumpable(napi_env env, napi_callback_info info) {
  (void)info;
#if defined(__linux__)
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return number(env, errno);
  /* Believe the kernel, not the call. */
  return number(env, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : EPERM);
#elif defined(__APPLE__)
  /* A process being traced right now is killed by this call: that is the point. */
  if (ptrace(PT_DENY_ATTACH, 0, 0, 0) != 0) return number(env, errno);
  return number(env, 0);
#else
  return number(env, ENOSYS);
#endif
}

/* setCoreLimitZero(): 0, or an errno. Soft and hard, so nothing in the process can raise it. */
static napi_value set_core_limit_zero(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit none = {0, 0};
  return number(env, setrlimit(RLIMIT_CORE, &none) == 0 ? 0 : errno);
}

/* The file pid runs, as the kernel knows it, into buf; its length, or -errno. */
static ssize_t executable_of(int32_t pid, char *buf, size_t size) {
#if defined(__linux__)
  char link[64];
  snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
  ssize_t n = readlink(link, buf, size - 1);
  return n < 0 ? -errno : n;
#elif defined(__APPLE__)
  errno = 0;
  int n = proc_pidpath(pid, buf, (uint32_t)size);
  return n > 0 ? n : -(errno ? errno : ESRCH);
#else
  (void)pid;
  (void)buf;
  (void)size;
  return -ENOSYS;
#endif
}

/* peerCredentials(fd): [pid, uid] of the peer as the kernel recorded them at connect(), or an
 * errno. On every request's path. */
static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  int32_t fd;
  int_args(env, info, &fd, 1);
  if (fd < 0) return number(env, EBADF);
  double pid;
  double uid;
#if defined(__linux__)
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return number(env, errno);
  pid = cred.pid;
  uid = cred.uid;
#elif defined(__APPLE__)
  uid_t euid;
  gid_t egid;
  pid_t peer = 0;
  socklen_t len = sizeof peer;
  if (getpeereid(fd, &euid, &egid) != 0) return number(env, errno);
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &peer, &len) != 0) return number(env, errno);
  pid = peer;
  uid = euid;
#else
  return number(env, ENOSYS);
#endif
  napi_value out;
  CHECK(env, napi_create_array_with_length(env, 2, &out));
  CHECK(env, napi_set_element(env, out, 0, number(env, pid)));
  CHECK(env, napi_set_element(env, out, 1, number(env, uid)));
  return out;
}

/* executablePath(pid): the file the process runs, as the kernel knows it, or an errno. */
static napi_value executable_path(napi_env env, napi_callback_info info) {
  int32_t pid;
  int_args(env, info, &pid, 1);
  if (pid <= 0) return number(env, ESRCH);
#ifdef __APPLE__
  char path[PROC_PIDPATHINFO_MAXSIZE];
#else
  char path[PATH_MAX];
#endif
  ssize_t n = executable_of(pid, path, sizeof path);
  if (n <= 0) return number(env, n < 0 ? (double)-n : ESRCH);
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, path, (size_t)n, &out));
  return out;
}

/* The parent and start time of pid; 0 when found, else an errno. */
static int parent_of(int32_t pid, int32_t *ppid, double *start) {
#if defined(__linux__)
  char file[64];
  char stat[1024];
  snprintf(file, sizeof file, "/proc/%d/stat", (int)pid);
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  int err = errno;
  close(fd);
  if (n <= 0) return n < 0 ? err : ESRCH;
  stat[n] = '\0';
  /* "pid (comm) state ppid ... starttime": comm may hold spaces and ')', so cut at the last ')'. */
  char *p = strrchr(stat, ')');
  if (p == NULL) return EINVAL;
  p++;
  /* Fields after comm: 3 state, 4 ppid, ..., 22 starttime. */
  char *save = NULL;
  char *field = strtok_r(p, " ", &save);
  for (int i = 3; field != NULL; i++, field = strtok_r(NULL, " ", &save)) {
    if (i == 4) *ppid = (int32_t)strtol(field, NULL, 10);
    if (i == 22) {
      *start = (double)strtoull(field, NULL, 10);
      return 0;
    }
  }
  return EINVAL;
#elif defined(__APPLE__)
  struct proc_bsdinfo bsd;
  errno = 0;
  int n = proc_pidinfo(pid, PROC_PIDTBSDINFO, 0, &bsd, sizeof bsd);
  if (n != (int)sizeof bsd) return errno ? errno : ESRCH;
  *ppid = (int32_t)bsd.pbi_ppid;
  *start = (double)bsd.pbi_start_tvsec * 1e6 + (double)bsd.pbi_start_tvusec;
  return 0;
#else
  (void)pid;
  (void)ppid;
  (void)start;
  return ENOSYS;
#endif
}

/* ancestry(pid, stopAt, maxDepth): [pid, start, parent, start, ...] from pid upwards, ending at
 * stopAt, at init, or after maxDepth processes; an errno when pid itself cannot be read. Start
 * times tell a reused pid from the original: /proc/PID/stat's starttime on Linux (as the shim
 * sends it), microseconds since the epoch on macOS. */
static napi_value ancestry(napi_env env, napi_callback_info info) {
  int32_t args[3];
  int_args(env, info, args, 3);
  int32_t pid = args[0];
  int32_t stop_at = args[1];
  int32_t max_depth = args[2];
  if (pid <= 0) return number(env, ESRCH);
  if (max_depth <= 0 || max_depth > MAX_DEPTH) max_depth = MAX_DEPTH;
  napi_value out;
  CHECK(env, napi_create_array(env, &out));
  uint32_t at = 0;
  for (int32_t depth = 0; depth < max_depth && pid > 0; depth++) {
    int32_t ppid = 0;
    double start = 0;
    int err = parent_of(pid, &ppid, &start);
    if (err != 0) {
      if (depth == 0) return number(env, err);
      break; /* the chain above changed as we read it: what we have is still true */
    }
    CHECK(env, napi_set_element(env, out, at++, number(env, pid)));
    CHECK(env, napi_set_element(env, out, at++, number(env, start)));
    if (pid == stop_at || pid == 1 || ppid == pid) break;
    pid = ppid;
  }
  return out;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"setNonDumpable", set_non_dumpable},
      {"setCoreLimitZero", set_core_limit_zero},
      {"peerCredentials", peer_credentials},
      {"executablePath", executable_path},
      {"ancestry", ancestry},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    CHECK(env, napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn));
    CHECK(env, napi_set_named_property(env, exports, functions[i].name, fn));
  }
  return exports;
}
