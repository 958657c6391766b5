// The chat page served at GET /rooms/:roomId: plain HTML and JavaScript, no build step.
//
// The page shows the room's history (GET /rooms/:roomId/history) before anyone joins. Every
// line carries its message's timestamp, so history that arrives later (the socket's history
// frame, after the joiner's own join broadcast) is merged by time and the join line stays
// after the messages that were stored before it. A dropped connection is retried with an
// exponential backoff; lines already shown are never shown twice.
#pragma once

namespace seed {

inline constexpr const char* kChatPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>durable chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
  header { background: #243b55; color: #fff; padding: 10px 16px; }
  header h1 { font-size: 18px; margin: 0; }
  main { max-width: 720px; margin: 16px auto; padding: 0 12px; }
  #log { background: #fff; border: 1px solid #ddd; border-radius: 6px; height: 360px; overflow-y: auto; padding: 8px 12px; }
  .msg { margin: 3px 0; }
  .who { font-weight: 600; }
  .event { color: #777; font-style: italic; }
  form { display: flex; gap: 8px; margin-top: 10px; }
  input { flex: 1; padding: 8px; border: 1px solid #bbb; border-radius: 4px; font-size: 15px; }
  button { padding: 8px 14px; border: 0; border-radius: 4px; background: #2d6cdf; color: #fff; font-size: 15px; }
  #status { color: #666; font-size: 13px; margin-top: 6px; }
  [hidden] { display: none !important; }  /* `form { display: flex }` would show a hidden form */
</style>
</head>
<body>
<header><h1>Room <span id="room"></span></h1></header>
<main>
  <div id="log" aria-live="polite"></div>
  <form id="join">
    <input id="name" placeholder="Your name" autocomplete="off" required>
    <button>Join</button>
  </form>
  <div id="chat" hidden>
    <form id="send">
      <input id="text" placeholder="Message" autocomplete="off" required>
      <button>Send</button>
    </form>
  </div>
  <div id="status">Not connected</div>
</main>
<script>
  const room = decodeURIComponent(location.pathname.split('/')[2] || '');
  document.getElementById('room').textContent = room;
  const log = document.getElementById('log');
  const status = document.getElementById('status');
  const shown = new Set();  // messages on the page, so that history sent again adds nothing
  let ws = null;
  let name = '';
  let retries = 0;

  function keyOf(m) { return JSON.stringify([m.timestamp, m.user, m.content]); }
  function lineFor(m) {
    const div = document.createElement('div');
    div.className = 'msg';
    div.dataset.ts = String(Number(m.timestamp) || 0);
    if (m.type === 'message') {
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = m.user + ': ';
      div.append(who, document.createTextNode(String(m.content)));
    } else if (m.type === 'join' || m.type === 'leave') {
      div.classList.add('event');
      div.textContent = m.user + (m.type === 'join' ? ' joined' : ' left');
    } else {
      return null;
    }
    return div;
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }

  // Live events come in order: they go at the end.
  function showLive(m) {
    if (m.type === 'message') {
      if (shown.has(keyOf(m))) return;
      shown.add(keyOf(m));
    }
    const div = lineFor(m);
    if (!div) return;
    log.append(div);
    scrollDown();
  }
  // Stored messages go where their time puts them: before every line of a later (or the same)
  // time that arrived live, such as the joiner's own join.
  function showHistory(messages) {
    if (!Array.isArray(messages)) return;
    for (const m of messages) {
      if (!m || m.type !== 'message' || shown.has(keyOf(m))) continue;
      shown.add(keyOf(m));
      const div = lineFor(m);
      div.dataset.stored = '1';
      const ts = Number(div.dataset.ts);
      let before = null;
      for (const other of log.children) {
        const t = Number(other.dataset.ts);
        if (other.dataset.stored ? t > ts : t >= ts) { before = other; break; }
      }
      log.insertBefore(div, before);
    }
    scrollDown();
  }

  fetch(`/rooms/${encodeURIComponent(room)}/history`)
    .then((r) => (r.ok ? r.json() : []))
    .then(showHistory)
    .catch(() => {});

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/rooms/${encodeURIComponent(room)}/websocket?user=${encodeURIComponent(name)}`);
    ws = socket;
    status.textContent = retries ? 'Reconnecting…' : 'Connecting…';
    socket.addEventListener('open', () => {
      retries = 0;
      status.textContent = 'Connected as ' + name;
      document.getElementById('join').hidden = true;
      document.getElementById('chat').hidden = false;
      document.getElementById('text').focus();
    });
    socket.addEventListener('message', (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (!m || typeof m !== 'object') return;
      if (m.type === 'history') showHistory(m.messages); else showLive(m);
    });
    socket.addEventListener('close', () => {
      if (ws !== socket) return;
      ws = null;
      // 0.5 s, 1 s, 2 s ... up to 15 s, each with a random fifth either way, so that the
      // members of a room do not all come back in the same instant.
      const delay = Math.min(15000, 500 * 2 ** Math.min(retries, 5)) * (0.8 + 0.4 * Math.random());
      retries += 1;
      status.textContent = `Disconnected; reconnecting in ${(delay / 1000).toFixed(1)} s`;
      setTimeout(connect, delay);
    });
  }

  document.getElementById('join').addEventListener('submit', (e) => {
    e.preventDefault();
    const typed = document.getElementById('name').value.trim();
    if (!typed || ws) return;
    name = typed;
    connect();
  });

  document.getElementById('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    // Until the socket is back the text stays in the box, to be sent then.
    if (!ws || ws.readyState !== WebSocket.OPEN || !input.value) return;
    ws.send(JSON.stringify({ type: 'message', content: input.value }));
    input.value = '';
  });
</script>
</body>
</html>
)HTML";

}  // namespace seed
