// Cold start: milliseconds from spawning a server to its first 200 on GET /health.
//   node coldstart.mjs <port> <command> [args...]
// Polls every millisecond over a fresh connection; prints the time, then stops the server
// (SIGTERM, SIGKILL after 10 s) and exits once it has gone.
import { spawn } from 'node:child_process';
import http from 'node:http';

const [port, cmd, ...args] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
const child = spawn(cmd, args, { stdio: 'ignore' });
let exited = false;
child.on('exit', () => { exited = true; });

const giveUp = setTimeout(() => finish(null), 30000);

function finish(ms) {
  clearTimeout(giveUp);
  if (ms === null) console.error('coldstart: no 200 on /health within 30 s');
  const done = () => process.exit(ms === null ? 1 : 0);
  if (ms !== null) console.log(ms.toFixed(1));
  if (exited) return done();
  child.on('exit', done);
  child.kill('SIGTERM');
  setTimeout(() => { child.kill('SIGKILL'); }, 10000).unref();
}

function poll() {
  if (exited) { console.error('coldstart: the server exited'); process.exit(1); }
  const req = http.get({ host: '127.0.0.1', port: Number(port), path: '/health', agent: false }, (res) => {
    res.resume();
    if (res.statusCode === 200) finish(Number(process.hrtime.bigint() - t0) / 1e6);
    else setTimeout(poll, 1);
  });
  req.on('error', () => setTimeout(poll, 1));
  req.setTimeout(2000, () => req.destroy());
}
poll();
