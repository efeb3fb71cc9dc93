/* Runs a program under ptrace and, at the moment it exits — PTRACE_EVENT_EXIT, when exit_group
 * has been called and its memory is still all there — counts the places in its readable memory
 * that hold any of the given byte strings. For test/shim/native-key-wipe.test.ts: after the
 * native shim has printed a key, no copy of it may remain anywhere in the process (heap, stack,
 * freed blocks, static buffers). Linux only.
 *
 *   exit-memory-scan REPORT HEX... -- PROGRAM ARG...
 *
 * The program keeps this process's stdin, stdout and stderr. REPORT gets one line:
 *   exit STATUS copies N [WHERE...]   (WHERE: the mappings the copies are in)
 *   exec                              (the program replaced itself: handed over, not scanned)
 *   ptrace-denied                     (this system does not let a process trace its child)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PATTERNS 16
#define CHUNK (1 << 20)

static unsigned char *patterns[MAX_PATTERNS];
static size_t pattern_lens[MAX_PATTERNS], npatterns, longest;

static size_t unhex(const char *hex, unsigned char **out) {
  size_t n = strlen(hex) / 2;
  *out = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &(*out)[i]);
  return n;
}

/* Copies of any pattern in [start, end) of the tracee, read through /proc/PID/mem in chunks that
 * overlap by the longest pattern, so none is missed at a chunk boundary. */
static long scan_range(int mem, unsigned long start, unsigned long end, unsigned char *buf) {
  long copies = 0;
  for (unsigned long at = start; at < end;) {
    size_t want = end - at < CHUNK ? end - at : CHUNK;
    ssize_t got = pread(mem, buf, want, (off_t)at);
    if (got <= 0) break; /* [vvar] and the like cannot be read */
    for (size_t p = 0; p < npatterns; p++) {
      for (unsigned char *from = buf, *hit; (hit = memmem(from, (size_t)got - (size_t)(from - buf), patterns[p], pattern_lens[p])) != NULL;
           from = hit + 1)
        copies++;
    }
    if ((size_t)got < want || at + (size_t)got >= end) break;
    at += (size_t)got - (longest - 1);
  }
  return copies;
}

static void scan(pid_t pid, FILE *report, int status) {
  char path[64], line[4096], where[4096] = "";
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *maps = fopen(path, "r");
  snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
  int mem = open(path, O_RDONLY);
  unsigned char *buf = malloc(CHUNK);
  long copies = 0;
  while (maps && mem >= 0 && fgets(line, sizeof line, maps)) {
    unsigned long start, end;
    char perms[8], name[4096] = "";
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095[^\n]", &start, &end, perms, name) < 3 || perms[0] != 'r') continue;
    /* Terabytes reserved and barely touched: a sanitizer's shadow memory, never the program's data. */
    if (end - start > (1UL << 36)) continue;
    long found = scan_range(mem, start, end, buf);
    if (found > 0 && strlen(where) + strlen(name) + 16 < sizeof where) {
      strcat(where, " ");
      strcat(where, name[0] ? name : "[anonymous]");
    }
    copies += found;
  }
  fprintf(report, "exit %d copies %ld%s\n", status, copies, where);
}

int main(int argc, char **argv) {
  int dashes = 2;
  while (dashes < argc && strcmp(argv[dashes], "--") != 0) dashes++;
  if (argc < 3 || dashes >= argc - 1) {
    fprintf(stderr, "usage: exit-memory-scan REPORT HEX... -- PROGRAM ARG...\n");
    return 2;
  }
  for (int k = 2; k < dashes && npatterns < MAX_PATTERNS; k++, npatterns++) {
    pattern_lens[npatterns] = unhex(argv[k], &patterns[npatterns]);
    if (pattern_lens[npatterns] > longest) longest = pattern_lens[npatterns];
  }
  FILE *report = fopen(argv[1], "w");
  if (!report || longest == 0) return 2;
  pid_t pid = fork();
  if (pid == 0) {
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) _exit(125);
    raise(SIGSTOP);
    execv(argv[dashes + 1], argv + dashes + 1);
    _exit(127);
  }
  int st, execs = 0, exit_status = -1;
  for (;;) {
    if (waitpid(pid, &st, 0) < 0) return 2;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 125 && execs == 0) {
      fprintf(report, "ptrace-denied\n");
      return 0;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) break;
    int sig = WSTOPSIG(st), event = st >> 16;
    if (sig == SIGSTOP && execs == 0 && event == 0) {
      ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
      sig = 0;
    } else if (event == PTRACE_EVENT_EXEC) {
      if (++execs > 1) {
        /* The native shim handed over to node: what node holds is not the shim's to wipe. */
        fprintf(report, "exec\n");
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
        waitpid(pid, &st, 0);
        return 0;
      }
      sig = 0;
    } else if (event == PTRACE_EVENT_EXIT) {
      unsigned long code = 0;
      ptrace(PTRACE_GETEVENTMSG, pid, NULL, &code);
      exit_status = WIFEXITED(code) ? WEXITSTATUS(code) : 128 + WTERMSIG(code);
      scan(pid, report, exit_status);
      sig = 0;
    } else if (sig == SIGTRAP) {
      sig = 0;
    }
    ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig);
  }
  if (exit_status < 0) fprintf(report, "exit %d copies unknown (no exit event)\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  return 0;
}
