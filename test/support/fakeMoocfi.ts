/**
 * mooc.fi's GraphQL API, played by a real HTTP server on loopback: answers the `user(upstream_id)
 * { id }` query from a map, records each request, and can be told to be slow, fail or talk nonsense.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { once } from 'node:events';

export class FakeMoocfi {
  /** mooc.fi's user id per TMC id. */
  readonly ids = new Map<number, string>();
  readonly requests: Array<{ headers: IncomingHttpHeaders; body: { query?: string; variables?: { upstream_id?: number } } }> = [];
  /** Answer with this status and an error body instead. */
  status: number | undefined;
  /** Wait this long before answering. */
  delayMs = 0;
  /** Answer 200 with a body that is not what GraphQL sends. */
  nonsense = false;
  private readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      this.requests.push({ headers: req.headers, body });
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (res.destroyed) return;
      res.setHeader('content-type', 'application/json');
      if (this.status !== undefined) return void res.writeHead(this.status).end(JSON.stringify({ errors: [{ message: 'failure injected' }] }));
      if (this.nonsense) return void res.end(JSON.stringify({ data: { user: { id: 42 } } }));
      const id = this.ids.get(Number(body.variables?.upstream_id));
      res.end(JSON.stringify({ data: { user: id ? { id } : null } }));
    });
  });

  get url(): string {
    const address = this.server.address();
    return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/api`;
  }

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
