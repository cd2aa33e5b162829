/**
 * A TCP proxy between the service and a server, for network faults that only show outside
 * loopback. `blackHole()` stops forwarding without closing anything, as a database failover or a
 * dropped NAT entry does: bytes sent on existing connections vanish, and new connections are
 * accepted but lead nowhere. `restore()` forwards new connections again (the database answers
 * again, e.g. the new primary); connections that were black-holed stay dead, as they do after a
 * failover.
 */
import net, { type AddressInfo } from 'node:net';
import { once } from 'node:events';

export class TcpProxy {
  private server = net.createServer((client) => this.accept(client));
  private sockets = new Set<net.Socket>();
  private blackHoled = false;
  /** Sockets that were black-holed: they never forward nor close again. */
  private dead = new WeakSet<net.Socket>();
  /** Connections opened so far, and those that were forwarded. */
  readonly stats = { accepted: 0, forwarded: 0 };

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  blackHole(): void {
    this.blackHoled = true;
    for (const socket of this.sockets) {
      this.dead.add(socket);
      socket.unpipe();
      // Keep reading (and dropping) so neither side sees back-pressure or a close.
      socket.removeAllListeners('data');
      socket.on('data', () => undefined);
    }
  }

  restore(): void {
    this.blackHoled = false;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private accept(client: net.Socket) {
    this.stats.accepted++;
    this.track(client);
    if (this.blackHoled) {
      client.on('data', () => undefined);
      return;
    }
    this.stats.forwarded++;
    const upstream = net.connect(this.target.port, this.target.host);
    this.track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const closeBoth = () => {
      if (this.dead.has(client)) return;
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', closeBoth);
    client.on('error', closeBoth);
    upstream.on('close', () => !this.dead.has(upstream) && client.destroy());
    client.on('close', () => !this.dead.has(client) && upstream.destroy());
  }

  private track(socket: net.Socket) {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
  }
}
