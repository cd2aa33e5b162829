/**
 * TMC, played by a real HTTP server on loopback. It serves the two calls of tmc-contract.md §2,
 * records every request, and can be told to fail: answer a status, or refuse connections.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { once } from 'node:events';

export interface FakeTmcUser {
  id: number;
  username: string;
  email: string;
  administrator: boolean;
  courses_mooc_fi_user_id?: string | null;
  user_field?: Record<string, unknown>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
  /** The status TMC answered, once it has. */
  answered?: number;
  /** True if the caller closed the connection before TMC answered (it gave up). */
  abandoned?: boolean;
  /** When the request arrived (ms since the epoch). */
  receivedAt?: number;
}

export class FakeTmc {
  readonly users = new Map<number, FakeTmcUser>();
  readonly requests: RecordedRequest[] = [];
  /** When set, the notification endpoint answers with this status instead of 200. */
  notifyStatus: number | undefined;
  /** When set, the notification endpoint waits for this promise before it answers. */
  holdNotifications: Promise<void> | undefined;
  /** When set, the user fetch answers with this status instead of the user. */
  fetchStatus: number | undefined;
  /** When true, every answer closes its connection, so each call opens a new one (and resolves TMC's host name). */
  closeConnections = false;
  /** When set, the user fetch waits this long before it answers (a slow TMC). */
  fetchDelayMs: number | undefined;
  private server: Server;
  private sockets = new Set<Socket>();
  port = 0;

  constructor() {
    this.server = this.makeServer();
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    const address = this.server.address();
    if (typeof address === 'object' && address) this.port = address.port;
    return this;
  }

  addUser(user: Partial<FakeTmcUser> & { id: number }): FakeTmcUser {
    const full: FakeTmcUser = {
      username: `user${user.id}`,
      email: `user${user.id}@example.org`,
      administrator: false,
      user_field: { first_name: 'Ada', last_name: 'Lovelace', organizational_id: '', course_announcements: false },
      ...user,
    };
    this.users.set(full.id, full);
    return full;
  }

  /** Successful notifications, as TMC sees them. */
  notificationsFor(upstreamId: number): RecordedRequest[] {
    return this.requests.filter((r) => r.method === 'POST' && r.path === `/api/v8/users/${upstreamId}/set_password_managed_by_courses_mooc_fi` && r.answered === 200);
  }

  notificationAttempts(upstreamId: number): RecordedRequest[] {
    return this.requests.filter((r) => r.method === 'POST' && r.path === `/api/v8/users/${upstreamId}/set_password_managed_by_courses_mooc_fi`);
  }

  /** Stops listening and drops open connections: calls now fail with ECONNREFUSED. */
  async goDown(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.server = this.makeServer();
  }

  async comeBack(): Promise<void> {
    await this.start();
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private makeServer(): Server {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    return server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString();
    const url = new URL(req.url ?? '/', 'http://tmc');
    const record: RecordedRequest & { query?: string } = {
      method: req.method ?? '',
      path: url.pathname,
      query: url.search,
      headers: req.headers,
      body: raw ? JSON.parse(raw) : undefined,
      receivedAt: Date.now(),
    };
    this.requests.push(record);
    res.on('close', () => {
      if (record.answered === undefined) record.abandoned = true;
    });
    const send = (status: number, body: unknown) => {
      if (record.abandoned) return;
      record.answered = status;
      res.writeHead(status, { 'content-type': 'application/json', ...(this.closeConnections ? { connection: 'close' } : {}) });
      res.end(JSON.stringify(body));
    };

    const fetchMatch = /^\/api\/v8\/users\/(\d+)$/.exec(url.pathname);
    if (req.method === 'GET' && fetchMatch) {
      if (this.fetchDelayMs) await new Promise((r) => setTimeout(r, this.fetchDelayMs));
      if (this.fetchStatus !== undefined) return send(this.fetchStatus, { errors: ['failure injected'] });
      const user = this.users.get(Number(fetchMatch[1]));
      return user ? send(200, user) : send(404, { errors: ["Couldn't find User"] });
    }
    const notifyMatch = /^\/api\/v8\/users\/(\d+)\/set_password_managed_by_courses_mooc_fi$/.exec(url.pathname);
    if (req.method === 'POST' && notifyMatch) {
      if (this.holdNotifications) await this.holdNotifications;
      if (this.notifyStatus !== undefined) return send(this.notifyStatus, { errors: ['failure injected'] });
      const user = this.users.get(Number(notifyMatch[1]));
      return user ? send(200, { status: 'ok' }) : send(404, { errors: ["Couldn't find User"] });
    }
    send(404, { errors: ['no such route'] });
  }
}
