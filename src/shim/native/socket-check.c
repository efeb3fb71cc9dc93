/* src/client/socket-check.ts's checkSocketPath, in C. The socket's directory must be a real directory owned by us that nobody
 * else can enter, every directory above it owned by us or root and writable by nobody else unless
 * sticky, and the socket a socket owned by us. */
#define _XOPEN_SOURCE 700 /* POSIX 2008 with XSI: realpath */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kb-generated.h"
#include "shim.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* Fails with the template filled with `path` and two numbers as `format` has them: uids in decimal,
 * modes as formatMode (0700) or in full octal. */
static void refuse(const char *tpl, const char *path, const char *format, unsigned long a, unsigned long b) {
  char one[24], two[24];
  snprintf(one, sizeof one, format, a);
  snprintf(two, sizeof two, format, b);
  kb_fail(KB_EXIT_UNSAFE_PATH, tpl, (struct kb_text[]){kb_str(path), kb_str(one), kb_str(two)});
}

/* path.dirname of an absolute path p, into out (which may be p): "/a/b" -> "/a", "/a" -> "/". */
static void dir_name(const char *p, char *out) {
  size_t n = (size_t)(strrchr(p, '/') - p);
  n += n == 0;
  memmove(out, p, n);
  out[n] = '\0';
}

/* ancestorsProblem: along the real path of the directory above the socket's, up to the root. */
static void check_ancestors(const char *dir, uid_t uid) {
  char parent[PATH_MAX], real[PATH_MAX];
  struct stat st;
  dir_name(dir, parent);
  if (realpath(parent, real) == NULL) return; /* gone: the socket checks below say so */
  for (;;) {
    if (lstat(real, &st) != 0) return;
    if (st.st_uid != uid && st.st_uid != 0) refuse(KB_MSG_ANCESTOR_NOT_OWNED, real, "%lu", st.st_uid, uid);
    if ((st.st_mode & KB_MODE_GROUP_OTHER_WRITE) != 0 && (st.st_mode & KB_MODE_STICKY) == 0)
      refuse(KB_MSG_ANCESTOR_WRITABLE, real, "%04lo", st.st_mode & 0777, 0);
    if (strcmp(real, "/") == 0) return;
    dir_name(real, real);
  }
}

void kb_check_socket(const char *sock) {
  char dir[PATH_MAX];
  struct stat st;
  uid_t uid = geteuid();
  dir_name(sock, dir);
  /* No socket or no directory: nothing to connect to, so the Node shim decides, autostart and all
   * (unless in a sandbox). */
  if (lstat(sock, &st) != 0 || lstat(dir, &st) != 0) kb_no_daemon(ENOENT);
  if (S_ISLNK(st.st_mode)) refuse(KB_MSG_DIR_SYMLINK, dir, "", 0, 0);
  if (!S_ISDIR(st.st_mode)) refuse(KB_MSG_DIR_NOT_DIRECTORY, dir, "", 0, 0);
  if (st.st_uid != uid) refuse(KB_MSG_DIR_NOT_OWNED, dir, "%lu", st.st_uid, uid);
  if ((st.st_mode & KB_MODE_GROUP_OTHER) != 0) refuse(KB_MSG_DIR_NOT_PRIVATE, dir, "%04lo", st.st_mode & 0777, 0);
  check_ancestors(dir, uid);
  if (lstat(sock, &st) != 0) kb_no_daemon(ENOENT); /* gone meanwhile */
  if (!S_ISSOCK(st.st_mode)) refuse(KB_MSG_NOT_SOCKET, sock, "%lo", st.st_mode, 0);
  if (st.st_uid != uid) refuse(KB_MSG_SOCKET_NOT_OWNED, sock, "%lu", st.st_uid, uid);
}
