// The chat page served at GET /rooms/:roomId: plain HTML and JavaScript, no build step.
#pragma once

namespace seed {

inline constexpr const char* kChatPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
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
  <form id="join">
    <input id="name" placeholder="Your name" autocomplete="off" required>
    <button>Join</button>
  </form>
  <div id="chat" hidden>
    <div id="log" aria-live="polite"></div>
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
  let ws = null;

  function line(html, cls) {
    const div = document.createElement('div');
    div.className = 'msg' + (cls ? ' ' + cls : '');
    div.append(...html);
    log.append(div);
    log.scrollTop = log.scrollHeight;
  }
  function show(m) {
    if (m.type === 'message') {
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = m.user + ': ';
      line([who, document.createTextNode(String(m.content))]);
    } else if (m.type === 'join' || m.type === 'leave') {
      line([document.createTextNode(m.user + (m.type === 'join' ? ' joined' : ' left'))], 'event');
    }
  }

  document.getElementById('join').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = document.getElementById('name').value.trim();
    if (!name || ws) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    ws = new WebSocket(`${scheme}://${location.host}/rooms/${encodeURIComponent(room)}/websocket?user=${encodeURIComponent(name)}`);
    ws.addEventListener('open', () => {
      status.textContent = 'Connected as ' + name;
      document.getElementById('join').hidden = true;
      document.getElementById('chat').hidden = false;
      document.getElementById('text').focus();
    });
    ws.addEventListener('message', (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === 'history') m.messages.forEach(show); else show(m);
    });
    ws.addEventListener('close', () => { status.textContent = 'Disconnected'; ws = null; });
  });

  document.getElementById('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (!ws || !input.value) return;
    ws.send(JSON.stringify({ type: 'message', content: input.value }));
    input.value = '';
  });
</script>
</body>
</html>
)HTML";

}  // namespace seed
