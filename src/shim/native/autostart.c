/* The daemon-stopping part of src/client/autostart.ts (askToStop), in C. */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kb-generated.h"
#include "shim.h"

/* looksLikeDaemon: on Linux, by its command line (the daemon command and a keybroker entry
 * point); elsewhere the socket's word is taken. */
static int looks_like_daemon(long pid) {
#if defined(__linux__)
  char cmdline[65536];
  ssize_t n = kb_read_proc(pid, "cmdline", cmdline, sizeof cmdline);
  int daemon = 0, entry = 0;
  for (const char *arg = cmdline; n > 0 && arg < cmdline + n; arg += strlen(arg) + 1) {
    daemon |= strcmp(arg, KB_DAEMON_COMMAND) == 0;
    for (size_t k = 0; k < sizeof KB_DAEMON_ENTRY_SUFFIXES / sizeof KB_DAEMON_ENTRY_SUFFIXES[0]; k++) {
      entry |= kb_ends_with(kb_str(arg), KB_DAEMON_ENTRY_SUFFIXES[k]);
    }
  }
  return daemon && entry;
#else
  (void)pid;
  return 1;
#endif
}

/* The process belongs to this user (on Linux, by its /proc entry; a pid already gone is not
 * signalled). */
static int is_mine(long pid) {
#if defined(__linux__)
  char dir[64];
  struct stat st;
  snprintf(dir, sizeof dir, "/proc/%ld", pid);
  return stat(dir, &st) == 0 && st.st_uid == geteuid();
#else
  (void)pid;
  return 1;
#endif
}

int kb_ask_to_stop(long pid) {
  if (pid <= 1 || pid == (long)getpid() || !is_mine(pid) || !looks_like_daemon(pid)) return 0;
  return kill((pid_t)pid, SIGTERM) == 0;
}
