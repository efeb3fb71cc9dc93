// Fake `systemctl` and `launchctl` programs for `keybroker service` tests: there is no systemd user
// manager on these machines and no launchd at all. They are real executables on a PATH the code
// under test searches and spawns; each records its argv in a log and answers the few queries
// keybroker makes the way the real tools do (text on stdout, status codes).
//   systemctl: `show --property Version` prints Version=…; is-enabled/is-active print a state and
//     exit 0 (enabled/active) or non-zero; `show … MainPID --value` prints the pid; `stop
//     keybroker.service` SIGTERMs that pid and waits for it to go, as systemctl stop does.
//     FAKE_SYSTEMCTL_MODE=nobus answers every call like a session without a user bus.
//   launchctl: print gui/<uid>[/label] succeeds for the domain, and for the label once bootstrapped
//     (state kept in a file); bootout of an unloaded label fails with status 3, as launchctl does.
import fs from 'node:fs';
import path from 'node:path';

export interface FakeServiceManagers {
  bin: string;
  /** Each call as "systemctl --user …" / "launchctl …". */
  calls(): string[];
  env: NodeJS.ProcessEnv;
}

const SYSTEMCTL = `#!/bin/sh
printf '%s\\n' "systemctl $*" >> "$FAKE_SM_LOG"
if [ "$FAKE_SYSTEMCTL_MODE" = nobus ]; then
  echo "Failed to connect to bus: No medium found" >&2
  exit 1
fi
case "$*" in
  "--user show --property Version") echo "Version=252"; exit 0 ;;
  "--user show --property MainPID --value keybroker.service") echo "\${FAKE_SYSTEMCTL_MAINPID:-0}"; exit 0 ;;
  "--user is-enabled keybroker.socket") echo "\${FAKE_SYSTEMCTL_ENABLED:-enabled}"; [ "\${FAKE_SYSTEMCTL_ENABLED:-enabled}" = enabled ] ;;
  "--user is-active keybroker.socket") echo "\${FAKE_SYSTEMCTL_SOCKET:-active}"; [ "\${FAKE_SYSTEMCTL_SOCKET:-active}" = active ] ;;
  "--user is-active keybroker.service") echo inactive; exit 3 ;;
  "--user stop keybroker.service")
    [ -n "$FAKE_SYSTEMCTL_MAINPID" ] || exit 0
    kill -TERM "$FAKE_SYSTEMCTL_MAINPID" 2>/dev/null || exit 0
    while kill -0 "$FAKE_SYSTEMCTL_MAINPID" 2>/dev/null; do sleep 0.05; done; exit 0 ;;
  *) exit 0 ;;
esac
`;

const LAUNCHCTL = `#!/bin/sh
printf '%s\\n' "launchctl $*" >> "$FAKE_SM_LOG"
loaded="$FAKE_SM_STATE/loaded"
case "$1" in
  print)
    case "$2" in
      */dev.keybroker.agent)
        if [ -f "$loaded" ]; then printf 'gui/%s/dev.keybroker.agent = {\\n\\tstate = running\\n\\tpid = 4321\\n}\\n' "$FAKE_SM_UID"; exit 0; fi
        echo "Could not find service \\"dev.keybroker.agent\\" in domain for port" >&2; exit 113 ;;
      *) echo "gui/$FAKE_SM_UID = {"; echo "}"; exit 0 ;;
    esac ;;
  bootout)
    if [ -f "$loaded" ]; then rm -f "$loaded"; exit 0; fi
    echo "Boot-out failed: 3: No such process" >&2; exit 3 ;;
  bootstrap) [ -f "$3" ] || { echo "Bootstrap failed: 2: No such file or directory" >&2; exit 2; }; touch "$loaded"; exit 0 ;;
  enable) exit 0 ;;
  *) exit 0 ;;
esac
`;

export function installFakeServiceManagers(dir: string, uid: number): FakeServiceManagers {
  const bin = path.join(dir, 'fake-bin');
  const state = path.join(dir, 'fake-state');
  fs.mkdirSync(bin, { recursive: true });
  fs.mkdirSync(state, { recursive: true });
  fs.writeFileSync(path.join(bin, 'systemctl'), SYSTEMCTL, { mode: 0o755 });
  fs.writeFileSync(path.join(bin, 'launchctl'), LAUNCHCTL, { mode: 0o755 });
  const log = path.join(state, 'calls.log');
  fs.writeFileSync(log, '');
  return {
    bin,
    calls: () => fs.readFileSync(log, 'utf8').split('\n').filter(Boolean),
    env: { FAKE_SM_LOG: log, FAKE_SM_STATE: state, FAKE_SM_UID: String(uid), PATH: `${bin}:/usr/bin:/bin` },
  };
}
