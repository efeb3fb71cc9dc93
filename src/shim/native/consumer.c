/* src/shim/consumer.ts in C: who is asking, which agent CLI it is, and how the agent ran us. The
 * rules it follows are the TypeScript's AGENT_RULES, generated into kb-generated.h. */
#define _POSIX_C_SOURCE 200809L
#ifdef __APPLE__
#define _DARWIN_C_SOURCE /* strict POSIX hides the BSD types <sys/sysctl.h> and <libproc.h> use */
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __APPLE__
#include <libproc.h>
#include <sys/sysctl.h>
#endif

#include "kb-generated.h"
#include "shim.h"

struct proc_info {
  long ppid;
  char comm[512];
  size_t comm_len;
  char start[64]; /* empty: unknown */
};

ssize_t kb_read_proc(long pid, const char *file, char *out, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/%s", pid, file);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t got = 0;
  ssize_t r = 0;
  while (got < size - 1 && (r = read(fd, out + got, size - 1 - got)) != 0) {
    if (r < 0 && errno != EINTR) break;
    if (r > 0) got += (size_t)r;
  }
  close(fd);
  out[got] = '\0';
  return r < 0 ? -1 : (ssize_t)got;
}

#if defined(__linux__) || defined(__APPLE__)
static int is_shell(struct kb_text name) {
  for (size_t k = 0; k < sizeof KB_SHELL_NAMES / sizeof KB_SHELL_NAMES[0]; k++) {
    if (kb_text_is(name, KB_SHELL_NAMES[k])) return 1;
  }
  return 0;
}

#if defined(__linux__)
/* procInfoLinux. 0: no such process (the Node shim then sends no consumer). */
static int proc_info(long pid, struct proc_info *info) {
  char stat[4096];
  ssize_t n = kb_read_proc(pid, "stat", stat, sizeof stat);
  if (n < 0) return 0;
  /* "pid (comm) state ppid …": comm may hold spaces and parentheses, so cut at the last ')'. Of the
   * fields after it, split at spaces as the kernel writes them, [1] is the ppid and [19] the start
   * time; anything else (a longer file, a start time that does not fit) goes to the Node shim. */
  char *open = strchr(stat, '('), *close = strrchr(stat, ')');
  int end = 0;
  if (n == (ssize_t)sizeof stat - 1 || !open || !close || close < open || (size_t)(close - open - 1) >= sizeof info->comm ||
      sscanf(close, ") %*s %ld %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %63s%n", &info->ppid,
             info->start, &end) != 2 ||
      close[end] != ' ')
    kb_handover();
  info->comm_len = (size_t)(close - open - 1);
  memcpy(info->comm, open + 1, info->comm_len);
  return 1;
}

/* argvLinux: the first arguments of cmdline's first bytes, split at NUL, into cmd; how many. */
static int argv_linux(long pid, char cmd[KB_CONSUMER_CMDLINE_BYTES + 1], struct kb_text args[KB_CONSUMER_ARGV_CHECKED]) {
  ssize_t n = kb_read_proc(pid, "cmdline", cmd, KB_CONSUMER_CMDLINE_BYTES + 1);
  int count = 0;
  for (size_t at = 0; n >= 0 && count < KB_CONSUMER_ARGV_CHECKED && at <= (size_t)n; count++) {
    args[count] = kb_str(cmd + at);
    at += args[count].len + 1;
  }
  return count;
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
  size_t size = sizeof args, argv0_len = 0;
  const char *argv0 = NULL;
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
  if (info->comm_len >= sizeof info->comm) kb_handover();
  memcpy(info->comm, base, info->comm_len);
  return 1;
}

static int argv_linux(long pid, char *cmd, struct kb_text *args) {
  (void)pid, (void)cmd, (void)args;
  return 0;
}
#endif

/* holds(): one condition of the table, on the environment or the options given. */
static int holds(const struct kb_condition *c, const struct kb_call *call, long consumer_pid) {
  if (c->test == KB_TEST_ARG) {
    for (int k = 0; k < 2; k++) {
      if (call->options[k] && strcmp(call->options[k], c->name) == 0) return 1;
    }
    return 0;
  }
  const char *v = getenv(c->name);
  char own[32];
  if (!v) return 0;
  switch (c->test) {
  case KB_TEST_SET:
    return *v != '\0';
  case KB_TEST_EQUALS:
    return strcmp(v, c->value) == 0;
  case KB_TEST_PREFIX:
    return strncmp(v, c->value, strlen(c->value)) == 0;
  case KB_TEST_SUFFIX:
    return kb_ends_with(kb_str(v), c->value);
  case KB_TEST_OTHER_PID:
    snprintf(own, sizeof own, "%ld", consumer_pid);
    return *v != '\0' && strcmp(v, own) != 0;
  default:
    return 0;
  }
}

/* /^word\b/i: the name starts with the word, case aside, and no word character follows it. */
static int starts_with_word(struct kb_text name, const char *word) {
  size_t p = strlen(word);
  unsigned char next = name.len > p ? (unsigned char)name.ptr[p] : 0;
  return name.len >= p && strncasecmp(name.ptr, word, p) == 0 && !isalnum(next) && next != '_';
}

/* isAgent(): the agent's environment reached us, and the consumer process is the agent. */
static int is_agent(const struct kb_agent *a, struct kb_text name, long pid, const struct kb_call *call) {
  int env_says = a->env_count == 0;
  for (int k = 0; k < a->env_count && !env_says; k++) env_says = holds(&KB_CONDITIONS[a->env_first + k], call, pid);
  if (!env_says) return 0;
  if (starts_with_word(name, a->process_name)) return 1;
  /* an argument that is the name, ends in /name, or names the npm package's files */
  char cmd[KB_CONSUMER_CMDLINE_BYTES + 1];
  struct kb_text args[KB_CONSUMER_ARGV_CHECKED];
  size_t p = strlen(a->process_name);
  for (int k = argv_linux(pid, cmd, args) - 1; k >= 0; k--) {
    struct kb_text arg = args[k];
    if (kb_text_is(arg, a->process_name) || (kb_ends_with(arg, a->process_name) && arg.len > p && arg.ptr[arg.len - p - 1] == '/') ||
        strstr(arg.ptr, a->package_path))
      return 1;
  }
  return 0;
}

/* invocationOf(): the first rule whose conditions all hold. The native shim only ever runs raw
 * (--format goes to the Node shim), so a key-command rule means api-key-helper. */
static const char *invocation(const struct kb_agent *a, long consumer_pid, const struct kb_call *call) {
  for (int r = 0; r < a->rule_count; r++) {
    const struct kb_invocation_rule *rule = &KB_INVOCATION_RULES[a->rule_first + r];
    int all = 1;
    for (int k = 0; k < rule->count && all; k++) all = holds(&KB_CONDITIONS[rule->first + k], call, consumer_pid);
    if (all) return rule->agent_tool ? KB_INVOCATION_AGENT_TOOL : KB_INVOCATION_API_KEY_HELPER;
  }
  return KB_INVOCATION_UNMARKED;
}

/* Number(CLAUDE_CODE_API_KEY_HELPER_TTL_MS) when a positive whole number. Only plain decimal text
 * (with ASCII spaces around it, as Number trims) is read here; anything JavaScript reads its own
 * way (1e3, 0x10, 1.0, non-ASCII space) goes to the Node shim. */
static long long helper_ttl_ms(void) {
  const char *v = getenv(KB_HELPER_TTL_ENV);
  long long n = 0;
  if (!v) return KB_CONSUMER_DEFAULT_HELPER_TTL_MS;
  size_t b = 0, e = strlen(v);
  while (b < e && isspace((unsigned char)v[b])) b++;
  while (e > b && isspace((unsigned char)v[e - 1])) e--;
  size_t sign = b < e && (v[b] == '+' || v[b] == '-');
  if (b < e && !kb_decimal(v + b + sign, e - b - sign, 15, &n)) kb_handover();
  return n > 0 && v[b] != '-' ? n : KB_CONSUMER_DEFAULT_HELPER_TTL_MS; /* Number('') is 0 */
}

#if defined(__APPLE__) && !defined(st_mtim)
#define st_mtim st_mtimespec /* macOS's name for stat's mtime with its nanoseconds */
#endif

/* settingsMtimeMs(claudeSettingsFiles()): the newest mtime of Claude Code's settings files, in
 * whole milliseconds (0: none exists). A file that cannot be stat'ed counts as absent, as the Node
 * shim's failed statSync does; one in a directory that is not there (no HOME, no working
 * directory) is not looked at, as the TypeScript leaves it out. */
static long long settings_mtime_ms(const char *cwd) {
  const char *config_dir = getenv(KB_CLAUDE_CONFIG_DIR_ENV), *home = getenv(KB_CLAUDE_HOME_ENV);
  int by_home = !config_dir || !*config_dir;
  const struct kb_text dirs[] = {kb_str(by_home ? home : config_dir), kb_str(cwd)};
  long long newest = 0;
  for (size_t k = 0; k < sizeof KB_CLAUDE_SETTINGS_FILES[0] / sizeof KB_CLAUDE_SETTINGS_FILES[0][0]; k++) {
    const char *file = KB_CLAUDE_SETTINGS_FILES[by_home][k];
    struct buf path = {0};
    struct stat st;
    if ((strstr(file, "\0011") && !dirs[0].len) || (strstr(file, "\0012") && !dirs[1].len)) continue;
    buf_template(&path, file, dirs);
    long long ns = stat(path.data, &st) == 0 ? (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec : 0;
    if (ns > newest) newest = ns;
    free(path.data);
  }
  return newest / 1000000;
}

/* The consumer, as JSON in the protocol's key order: pid, start, name, claudeCode, agent, invocation,
 * helperTtlMs, settingsMtimeMs. */
static void add_consumer(struct buf *req, long pid, const struct proc_info *info, struct kb_text name, const struct kb_call *call) {
  const struct kb_agent *agent = NULL;
  for (size_t k = 0; k < sizeof KB_AGENTS / sizeof KB_AGENTS[0] && !agent; k++) {
    if (is_agent(&KB_AGENTS[k], name, pid, call)) agent = &KB_AGENTS[k];
  }
  int claude = agent && strcmp(agent->agent, KB_AGENT_CLAUDE_CODE) == 0;
  buf_str(req, ",\"consumer\":{\"pid\":");
  buf_int(req, pid);
  if (info->start[0]) {
    buf_str(req, ",\"start\":");
    buf_json_latin1(req, info->start, strlen(info->start));
  }
  buf_str(req, ",\"name\":");
  buf_json_latin1(req, name.ptr, name.len);
  buf_str(req, claude ? ",\"claudeCode\":true" : ",\"claudeCode\":false");
  if (agent && !claude) {
    buf_str(req, ",\"agent\":");
    buf_json_utf8(req, agent->agent, strlen(agent->agent));
  }
  if (agent) {
    buf_str(req, ",\"invocation\":\"");
    buf_str(req, invocation(agent, pid, call));
    buf_str(req, "\"");
  }
  buf_str(req, ",\"helperTtlMs\":");
  buf_int(req, call->refresh_interval_ms > 0 ? call->refresh_interval_ms : helper_ttl_ms());
  if (claude) {
    buf_str(req, ",\"settingsMtimeMs\":");
    buf_int(req, settings_mtime_ms(call->cwd));
  }
  buf_str(req, "}");
}
#endif

void kb_add_consumer(struct buf *req, const struct kb_call *call) {
#if defined(__linux__) || defined(__APPLE__)
  long pid = (long)getppid();
  for (int depth = 0; depth < KB_CONSUMER_MAX_DEPTH && pid > 1; depth++) {
    struct proc_info info;
    if (!proc_info(pid, &info)) return;
    struct kb_text name = {info.comm + (info.comm_len > 0 && info.comm[0] == '-'), 0};
    name.len = info.comm_len - (size_t)(name.ptr - info.comm);
    /* Node 24's main thread name: path.basename(argv[0]) || name */
    char cmd[KB_CONSUMER_CMDLINE_BYTES + 1];
    struct kb_text args[KB_CONSUMER_ARGV_CHECKED];
    if (kb_text_is(name, KB_NODE_MAIN_THREAD) && argv_linux(pid, cmd, args) > 0) {
      size_t e = args[0].len, b;
      while (e > 0 && args[0].ptr[e - 1] == '/') e--;
      for (b = e; b > 0 && args[0].ptr[b - 1] != '/';) b--;
      if (e > b) name = (struct kb_text){args[0].ptr + b, e - b};
    }
    if (!is_shell(name)) {
      add_consumer(req, pid, &info, name, call);
      return;
    }
    pid = info.ppid;
  }
#else
  (void)req, (void)call;
#endif
}
