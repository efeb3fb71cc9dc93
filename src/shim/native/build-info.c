/* src/client/build-info.ts in C: is the daemon of a framed reply another build, and the message
 * that names it. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb-generated.h"
#include "shim.h"

int kb_other_build(const struct kb_frame *f) {
  struct kb_text version = f->field[KB_FIELD_DAEMON_VERSION], build = f->field[KB_FIELD_DAEMON_BUILD];
  if (!version.ptr || !f->field[KB_FIELD_DAEMON_PID].ptr) return 0;
  if (!kb_text_is(version, KB_VERSION)) return 1;
  const char *me = KB_BUILD_ID;
  return me != NULL && build.ptr && !kb_text_is(build, me);
}

void kb_warn_other_build(const struct kb_frame *f) {
  struct buf daemon = {0}, restart = {0};
  const struct kb_text *field = f->field, version_build[] = {field[KB_FIELD_DAEMON_VERSION], field[KB_FIELD_DAEMON_BUILD]};
  buf_template(&daemon, KB_DESCRIBE_BUILD[field[KB_FIELD_DAEMON_BUILD].len > 0], version_build);
  /* restartCommand(startedBy, uid) */
  char uid[24];
  snprintf(uid, sizeof uid, "%lu", (unsigned long)getuid());
  const char *command = KB_RESTART_DEFAULT;
  for (size_t k = 0; k < sizeof KB_RESTART / sizeof KB_RESTART[0]; k++) {
    if (kb_text_is(field[KB_FIELD_DAEMON_STARTED_BY], KB_RESTART[k][0])) command = KB_RESTART[k][1];
  }
  buf_template(&restart, command, (struct kb_text[]){kb_str(uid)});
  const struct kb_text args[] = {field[KB_FIELD_DAEMON_PID], {daemon.data, daemon.len}, kb_str(KB_THIS_BUILD),
                                 {restart.data, restart.len}};
  kb_say(KB_TEXT_WARNING, KB_MSG_OTHER_BUILD, args);
  free(daemon.data), free(restart.data);
}
