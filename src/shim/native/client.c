/* src/client/client.ts's exchange, in C, for a framed reply. The reply is read straight into one buffer of KB_MAX_REPLY_BYTES (untouched pages
 * cost nothing), never through a chunk on the stack and never moved by realloc: the value in it
 * is the key, and this is then its only copy, which kb_exit wipes. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kb-generated.h"
#include "shim.h"

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connected Unix socket; none: no daemon answering (kb_no_daemon). A full listen backlog makes
 * connect() wait; the send timeout bounds that (and the request's writes) by the reply timeout. */
static int connect_unix(const char *sock) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) kb_no_daemon(errno);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, sock, strlen(sock) + 1); /* fits: KB_MAX_SOCKET_PATH_BYTES */
  struct timeval tv = {KB_REQUEST_TIMEOUT_MS / 1000, (KB_REQUEST_TIMEOUT_MS % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    close(fd);
    kb_no_daemon(err);
  }
  return fd;
}

/* The environment carries the sandbox's marker (src/client/sandbox.ts inSandbox). */
static int in_sandbox(void) {
  const char *marker = getenv(KB_SANDBOX_ENV);
  return marker && strcmp(marker, KB_SANDBOX_ENV_VALUE) == 0;
}

/* sandboxedConnect in src/client/sandbox.ts. A full backlog (EAGAIN) is the Node shim's to retry. */
void kb_no_daemon(int err) {
  if (err != EAGAIN && err != EWOULDBLOCK) {
    if (err == EPERM) kb_fail(KB_EXIT_SANDBOXED, KB_MSG_SANDBOXED_ERRNO, NULL);
    if (in_sandbox()) kb_fail(KB_EXIT_SANDBOXED, KB_MSG_SANDBOXED_ENV, NULL);
  }
  kb_handover();
}

/* The daemon went away without a reply (or said DAEMON_UNREACHABLE itself). The Node shim would
 * now start a daemon and ask again; so does the Node shim handed over to, unless autostart is
 * off: the one case where the request goes out twice, exactly as from the Node shim alone. */
void kb_unreachable_after_send(struct kb_text message) {
  const char *off = getenv(KB_NO_AUTOSTART_ENV);
  /* Inside a sandbox no daemon is started (requestWithAutostart): said as it is. */
  if (in_sandbox()) kb_fail(KB_EXIT_DAEMON_UNREACHABLE, "\0011", &message);
  if (!off || strcmp(off, "1") != 0) kb_handover();
  kb_fail(KB_EXIT_DAEMON_UNREACHABLE, KB_MSG_AUTOSTART_OFF, &message);
}

static void lost_connection(const char *sock) {
  struct buf msg = {0};
  buf_template(&msg, KB_MSG_LOST_CONNECTION, (struct kb_text[]){kb_str(sock)});
  kb_unreachable_after_send((struct kb_text){msg.data, msg.len});
}

size_t kb_exchange(const char *sock, const char *request, size_t len) {
  long long deadline = now_ms() + KB_REQUEST_TIMEOUT_MS;
  int fd = connect_unix(sock);
  kb_request_sent = 1;
  while (len > 0) {
    ssize_t w = write(fd, request, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break; /* timed out: reported below */
    if (w < 0) lost_connection(sock);
    request += w;
    len -= (size_t)w;
  }
  shutdown(fd, SHUT_WR);

  kb_reply.data = malloc(KB_MAX_REPLY_BYTES);
  if (!kb_reply.data) kb_out_of_memory();
  long size = KB_FRAME_PARTIAL;
  while (size == KB_FRAME_PARTIAL || kb_reply.len < (size_t)size) {
    long long wait = deadline - now_ms();
    struct pollfd pfd = {fd, POLLIN, 0};
    int ready = wait > 0 ? poll(&pfd, 1, (int)wait) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) kb_fail(KB_EXIT_TIMEOUT, KB_MSG_NO_ANSWER, NULL);
    size_t room = (size > 0 ? (size_t)size : KB_MAX_REPLY_BYTES) - kb_reply.len;
    ssize_t r = read(fd, kb_reply.data + kb_reply.len, room);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) lost_connection(sock); /* as Node: a reset before the whole reply loses it */
    if (r == 0 && kb_reply.len == 0) kb_unreachable_after_send(kb_str(KB_MSG_CLOSED_WITHOUT_REPLY));
    if (r == 0) kb_fail(KB_EXIT_INTERNAL, KB_MSG_NOT_A_FRAME, NULL); /* cut short */
    kb_reply.len += (size_t)r;
    /* JSON: a daemon that did not read the request (an older one refusing "framed", or one
     * stopping) and so did not serve it. The Node shim asks it in JSON. */
    if (kb_reply.data[0] == '{') kb_handover();
    size = kb_frame_size(kb_reply.data, kb_reply.len);
    if (size == KB_FRAME_TOO_LONG) kb_fail(KB_EXIT_INTERNAL, KB_MSG_REPLY_TOO_LONG, NULL);
    if (size == KB_FRAME_MALFORMED) kb_fail(KB_EXIT_INTERNAL, KB_MSG_NOT_A_FRAME, NULL);
  }
  close(fd);
  return (size_t)size;
}
