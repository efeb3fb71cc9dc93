/* src/client/socket-check.ts's checkSocketPath, in C. The socket's directory must be a real directory owned by us that nobody
 * else can enter, every directory above it owned by us or root and writable by nobody else unless
 * sticky, and the socket a socket owned by us. */
#define _POSIX_C_SOURCE 200809L

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

/* Numbers as the messages show them: uids in decimal, modes as formatMode (0700) or in full octal. */
static const char *uid_text(char *out, unsigned long uid) {
  snprintf(out, 24, "%lu", uid);
  return out;
}

static const char *mode_text(char *out, unsigned long mode, int full) {
  if (full) snprintf(out, 24, "%lo", mode);
  else snprintf(out, 24, "%04lo", mode & 0777);
  return out;
}

static void refuse(const char *tpl, const char *a1, const char *a2, const char *a3) {
  kb_fail(KB_EXIT_UNSAFE_PATH, tpl, (struct kb_text[]){kb_str(a1), kb_str(a2), kb_str(a3)});
}

/* ancestorsProblem: along the real path of the directory above the socket's, up to the root. */
static void check_ancestors(const char *dir, uid_t uid) {
  char parent[PATH_MAX], real[PATH_MAX], owner[24], me[24], mode[24];
  struct stat st;
  const char *slash = strrchr(dir, '/');
  size_t plen = slash == dir ? 1 : (size_t)(slash - dir);
  memcpy(parent, dir, plen);
  parent[plen] = '\0';
  if (realpath(parent, real) == NULL) return; /* gone: the socket checks below say so */
  for (;;) {
    if (lstat(real, &st) != 0) return;
    if (st.st_uid != uid && st.st_uid != 0)
      refuse(KB_MSG_ANCESTOR_NOT_OWNED, real, uid_text(owner, st.st_uid), uid_text(me, uid));
    if ((st.st_mode & KB_MODE_GROUP_OTHER_WRITE) != 0 && (st.st_mode & KB_MODE_STICKY) == 0)
      refuse(KB_MSG_ANCESTOR_WRITABLE, real, mode_text(mode, st.st_mode, 0), NULL);
    if (strcmp(real, "/") == 0) return;
    char *last = strrchr(real, '/');
    last[last == real] = '\0'; /* the parent: "/a/b" -> "/a", "/a" -> "/" */
  }
}

void kb_check_socket(const char *sock) {
  char dir[PATH_MAX], owner[24], me[24], mode[24];
  struct stat st;
  uid_t uid = geteuid();
  const char *slash = strrchr(sock, '/');
  size_t dlen = slash == sock ? 1 : (size_t)(slash - sock);
  memcpy(dir, sock, dlen);
  dir[dlen] = '\0';
  /* No socket or no directory: nothing to connect to, so the Node shim decides, autostart and all
   * (unless in a sandbox). */
  if (lstat(sock, &st) != 0 || lstat(dir, &st) != 0) kb_no_daemon(ENOENT);
  if (S_ISLNK(st.st_mode)) refuse(KB_MSG_DIR_SYMLINK, dir, NULL, NULL);
  if (!S_ISDIR(st.st_mode)) refuse(KB_MSG_DIR_NOT_DIRECTORY, dir, NULL, NULL);
  if (st.st_uid != uid) refuse(KB_MSG_DIR_NOT_OWNED, dir, uid_text(owner, st.st_uid), uid_text(me, uid));
  if ((st.st_mode & KB_MODE_GROUP_OTHER) != 0) refuse(KB_MSG_DIR_NOT_PRIVATE, dir, mode_text(mode, st.st_mode, 0), NULL);
  check_ancestors(dir, uid);
  if (lstat(sock, &st) != 0) kb_no_daemon(ENOENT); /* gone meanwhile */
  if (!S_ISSOCK(st.st_mode)) refuse(KB_MSG_NOT_SOCKET, sock, mode_text(mode, st.st_mode, 1), NULL);
  if (st.st_uid != uid) refuse(KB_MSG_SOCKET_NOT_OWNED, sock, uid_text(owner, st.st_uid), uid_text(me, uid));
}
