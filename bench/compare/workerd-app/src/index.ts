// The seed's Durable Objects app (../../../../shared/seed/durable-objects.md, mirrored by
// examples/seed/app.cc), as workerd runs it: the seed's classes copied as they are written,
// and the seed's Hono routes. Bundled by esbuild (bench/compare/build-workerd.sh), served
// by workerd with config.capnp. Only the glue the seed leaves implicit is added here: the
// `app` itself, the Counter routes for /get and /reset, /health, /api/ping and the
// hibernating route, all with the same paths examples/seed/app.cc serves.
import { Hono } from 'hono';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';

interface Env {
  COUNTER: DurableObjectNamespace;
  RATE_LIMITER: DurableObjectNamespace;
  ROOM: DurableObjectNamespace;
  HIBERNATING_ROOM: DurableObjectNamespace;
  TASK: DurableObjectNamespace;
}

// ---- src/durable-objects/counter.ts (the seed's "Simple Counter Example") ----
export class Counter implements DurableObject {
  private state: DurableObjectState;

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    
    switch (url.pathname) {
      case '/increment': {
        let count = (await this.state.storage.get<number>('count')) || 0;
        count++;
        await this.state.storage.put('count', count);
        return new Response(JSON.stringify({ count }));
      }
      
      case '/get': {
        const count = (await this.state.storage.get<number>('count')) || 0;
        return new Response(JSON.stringify({ count }));
      }
      
      case '/reset': {
        await this.state.storage.delete('count');
        return new Response(JSON.stringify({ count: 0 }));
      }
      
      default:
        return new Response('Not found', { status: 404 });
    }
  }
}

// ---- src/durable-objects/rate-limiter.ts ----
interface RateLimitConfig {
  limit: number;
  windowMs: number;
}

export class RateLimiter implements DurableObject {
  private state: DurableObjectState;
  private requests: number[] = [];

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const config: RateLimitConfig = {
      limit: parseInt(url.searchParams.get('limit') || '100'),
      windowMs: parseInt(url.searchParams.get('window') || '60000'),
    };
    
    const now = Date.now();
    const windowStart = now - config.windowMs;
    
    // Load requests from storage if not in memory
    if (this.requests.length === 0) {
      this.requests = (await this.state.storage.get<number[]>('requests')) || [];
    }
    
    // Remove old requests
    this.requests = this.requests.filter(ts => ts > windowStart);
    
    if (this.requests.length >= config.limit) {
      const oldestRequest = Math.min(...this.requests);
      const resetAt = oldestRequest + config.windowMs;
      
      return Response.json({
        allowed: false,
        remaining: 0,
        resetAt,
        retryAfter: Math.ceil((resetAt - now) / 1000),
      }, { status: 429 });
    }
    
    // Add new request
    this.requests.push(now);
    await this.state.storage.put('requests', this.requests);
    
    return Response.json({
      allowed: true,
      remaining: config.limit - this.requests.length,
      resetAt: now + config.windowMs,
    });
  }
}

// ---- src/middleware/rate-limit.ts ----
export const rateLimit = (options: {
  limit: number;
  windowMs: number;
  keyGenerator?: (c: Context) => string;
}) => createMiddleware(async (c, next) => {
  const key = options.keyGenerator?.(c) || c.req.header('cf-connecting-ip') || 'anonymous';
  
  const id = c.env.RATE_LIMITER.idFromName(key);
  const stub = c.env.RATE_LIMITER.get(id);
  
  const response = await stub.fetch(
    new Request(`http://do/check?limit=${options.limit}&window=${options.windowMs}`)
  );
  
  const result = await response.json<{
    allowed: boolean;
    remaining: number;
    resetAt: number;
    retryAfter?: number;
  }>();
  
  c.header('X-RateLimit-Limit', String(options.limit));
  c.header('X-RateLimit-Remaining', String(result.remaining));
  c.header('X-RateLimit-Reset', String(result.resetAt));
  
  if (!result.allowed) {
    c.header('Retry-After', String(result.retryAfter));
    return c.json({ error: 'Rate limit exceeded' }, 429);
  }
  
  await next();
});

// ---- src/durable-objects/chat-room.ts ----
interface ChatMessage {
  type: 'message' | 'join' | 'leave';
  user: string;
  content?: string;
  timestamp: number;
}

export class ChatRoom implements DurableObject {
  private state: DurableObjectState;
  private sessions: Map<WebSocket, { user: string }> = new Map();

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    
    if (url.pathname === '/websocket') {
      if (request.headers.get('Upgrade') !== 'websocket') {
        return new Response('Expected WebSocket', { status: 426 });
      }
      
      const user = url.searchParams.get('user') || 'anonymous';
      const { 0: client, 1: server } = new WebSocketPair();
      
      await this.handleWebSocket(server, user);
      
      return new Response(null, {
        status: 101,
        webSocket: client,
      });
    }
    
    if (url.pathname === '/history') {
      const history = await this.state.storage.get<ChatMessage[]>('history') || [];
      return Response.json(history.slice(-100)); // Last 100 messages
    }
    
    return new Response('Not found', { status: 404 });
  }

  async handleWebSocket(ws: WebSocket, user: string): Promise<void> {
    // Accept the WebSocket
    this.state.acceptWebSocket(ws);
    this.sessions.set(ws, { user });
    
    // Broadcast join
    await this.broadcast({
      type: 'join',
      user,
      timestamp: Date.now(),
    });
    
    // Send recent history
    const history = await this.state.storage.get<ChatMessage[]>('history') || [];
    ws.send(JSON.stringify({ type: 'history', messages: history.slice(-50) }));
  }

  async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const session = this.sessions.get(ws);
    if (!session) return;
    
    try {
      const data = JSON.parse(message as string);
      
      if (data.type === 'message' && data.content) {
        const chatMessage: ChatMessage = {
          type: 'message',
          user: session.user,
          content: data.content,
          timestamp: Date.now(),
        };
        
        // Save to history
        const history = await this.state.storage.get<ChatMessage[]>('history') || [];
        history.push(chatMessage);
        
        // Keep only last 1000 messages
        if (history.length > 1000) {
          history.splice(0, history.length - 1000);
        }
        
        await this.state.storage.put('history', history);
        
        // Broadcast to all
        await this.broadcast(chatMessage);
      }
    } catch (e) {
      console.error('Invalid message:', e);
    }
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    const session = this.sessions.get(ws);
    if (session) {
      this.sessions.delete(ws);
      await this.broadcast({
        type: 'leave',
        user: session.user,
        timestamp: Date.now(),
      });
    }
  }

  async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    console.error('WebSocket error:', error);
    ws.close(1011, 'Internal error');
  }

  private async broadcast(message: ChatMessage): Promise<void> {
    const payload = JSON.stringify(message);
    
    for (const ws of this.state.getWebSockets()) {
      try {
        ws.send(payload);
      } catch (e) {
        // WebSocket might be closed
      }
    }
  }
}

// ---- WebSocket Hibernation ----
export class HibernatingRoom implements DurableObject {
  private state: DurableObjectState;

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
  }

  async fetch(request: Request): Promise<Response> {
    if (request.headers.get('Upgrade') === 'websocket') {
      const { 0: client, 1: server } = new WebSocketPair();
      
      // Accept with tags for identification
      this.state.acceptWebSocket(server, ['user-123']);
      
      return new Response(null, { status: 101, webSocket: client });
    }
    
    return new Response('Not found', { status: 404 });
  }

  // Called when message received (wakes from hibernation)
  async webSocketMessage(ws: WebSocket, message: string): Promise<void> {
    // Get tags to identify connection
    const tags = this.state.getTags(ws);
    console.log('Message from:', tags);
    
    // Broadcast to all connected WebSockets
    for (const socket of this.state.getWebSockets()) {
      socket.send(message);
    }
  }

  async webSocketClose(ws: WebSocket): Promise<void> {
    // Cleanup
  }
}

// ---- Alarms ----
export class ScheduledTask implements DurableObject {
  private state: DurableObjectState;

  constructor(state: DurableObjectState, env: Env) {
    this.state = state;
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    
    if (url.pathname === '/schedule') {
      // Schedule alarm for 1 hour from now
      const scheduledTime = Date.now() + 60 * 60 * 1000;
      await this.state.storage.setAlarm(scheduledTime);
      
      return Response.json({ scheduledTime });
    }
    
    if (url.pathname === '/cancel') {
      await this.state.storage.deleteAlarm();
      return Response.json({ cancelled: true });
    }
    
    return new Response('Not found', { status: 404 });
  }

  // Called when alarm fires
  async alarm(): Promise<void> {
    console.log('Alarm fired!');
    
    // Do scheduled work...
    const task = await this.state.storage.get('pendingTask');
    if (task) {
      // Process task
      await this.state.storage.delete('pendingTask');
    }
    
    // Optionally schedule next alarm
    // await this.state.storage.setAlarm(Date.now() + 24 * 60 * 60 * 1000);
  }
}

// ---- src/index.ts ----
const app = new Hono<{ Bindings: Env }>();

// Usage, from the seed's middleware section.
app.use('/api/*', rateLimit({ limit: 100, windowMs: 60000 }));

app.get('/health', (c) => c.text('ok'));

// The seed's "Calling from Worker" route, and the same for the object's /get and /reset.
app.post('/counters/:id/increment', async (c) => {
  const id = c.env.COUNTER.idFromName(c.req.param('id'));
  const stub = c.env.COUNTER.get(id);
  
  const response = await stub.fetch(
    new Request('http://do/increment', { method: 'POST' })
  );
  
  return response;
});

app.get('/counters/:id', async (c) => {
  const id = c.env.COUNTER.idFromName(c.req.param('id'));
  const stub = c.env.COUNTER.get(id);
  return stub.fetch(new Request('http://do/get'));
});

app.post('/counters/:id/reset', async (c) => {
  const id = c.env.COUNTER.idFromName(c.req.param('id'));
  const stub = c.env.COUNTER.get(id);
  return stub.fetch(new Request('http://do/reset', { method: 'POST' }));
});

app.get('/api/ping', (c) => c.json({ pong: true }));

// The seed's WebSocket route.
app.get('/rooms/:roomId/websocket', async (c) => {
  const roomId = c.req.param('roomId');
  const user = c.req.query('user') || 'anonymous';
  
  const id = c.env.ROOM.idFromName(roomId);
  const stub = c.env.ROOM.get(id);
  
  return stub.fetch(
    new Request(`http://do/websocket?user=${user}`, {
      headers: c.req.raw.headers,
    })
  );
});

app.get('/rooms/:roomId/history', async (c) => {
  const stub = c.env.ROOM.get(c.env.ROOM.idFromName(c.req.param('roomId')));
  return stub.fetch(new Request('http://do/history'));
});

app.get('/hibernating/:id/websocket', async (c) => {
  const stub = c.env.HIBERNATING_ROOM.get(c.env.HIBERNATING_ROOM.idFromName(c.req.param('id')));
  return stub.fetch(new Request('http://do/websocket', { headers: c.req.raw.headers }));
});

for (const method of ['GET', 'POST']) {
  app.on(method, '/tasks/:id/schedule', async (c) => {
    const stub = c.env.TASK.get(c.env.TASK.idFromName(c.req.param('id')));
    return stub.fetch(new Request('http://do/schedule', { method }));
  });
  app.on(method, '/tasks/:id/cancel', async (c) => {
    const stub = c.env.TASK.get(c.env.TASK.idFromName(c.req.param('id')));
    return stub.fetch(new Request('http://do/cancel', { method }));
  });
}

export default app;
