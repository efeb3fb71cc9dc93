// Preloaded (node --import) into `keybroker run` on a Node without process.execve, to drive its
// exec branch: records what it would exec (never the environment's values), then runs it and
// exits with its status, as the exec'd program's status would be the process's.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import process from 'node:process';

process.execve = (file, args, env) => {
  fs.writeFileSync(
    process.env.KB_FAKE_EXECVE_RECORD,
    JSON.stringify({ file, args, envNames: Object.keys(env), sigpipeHandlers: process.listenerCount('SIGPIPE') }),
  );
  const r = spawnSync(file, args.slice(1), { stdio: 'inherit', env, argv0: args[0] });
  process.exit(r.status ?? 128 + (os.constants.signals[r.signal] ?? 0));
};
