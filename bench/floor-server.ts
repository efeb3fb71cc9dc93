// The floor for the daemon's throughput: about the least a Node Unix-socket server can do per
// request in the protocol's shape (one connection, one line in, one fixed line out, close).
// It runs as its own process, like the daemon, so the same load generator measures both and the
// ratio shows what the daemon's own work (decode, cache lookup, reply) costs.
//
//   node dist/bench/floor-server.js SOCKET REPLY_LINE
//
// The bench passes a reply of the same shape and length as the daemon's, with a placeholder
// value, so both servers write the same bytes per request. Prints "ok" once it listens.
import fs from 'node:fs';
import net from 'node:net';

const [socketPath, replyLine] = process.argv.slice(2);
if (!socketPath || !replyLine) {
  process.stderr.write('usage: floor-server.js SOCKET REPLY_LINE\n');
  process.exit(2);
}
const reply = Buffer.from(replyLine.endsWith('\n') ? replyLine : `${replyLine}\n`);

// allowHalfOpen like the daemon: clients half-close after their request and read to EOF.
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  let replied = false;
  const answer = (): void => {
    if (replied) return;
    replied = true;
    socket.end(reply);
  };
  socket.on('data', (chunk: Buffer) => {
    if (chunk.includes(0x0a)) answer();
  });
  socket.on('end', answer);
  // A client that gives up mid-reply is the client's business; a floor must not crash on it.
  socket.on('error', () => socket.destroy());
});

fs.rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.stdout.write('ok\n'));

const stop = (): void => {
  fs.rmSync(socketPath, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
