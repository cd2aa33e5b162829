/** Mail, caught by a real SMTP server (smtp-server) on loopback, parsed with mailparser. */
import { once } from 'node:events';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface CapturedMail {
  to: string;
  subject: string;
  text: string;
}

export class SmtpCapture {
  readonly messages: CapturedMail[] = [];
  /** When true, the server rejects every message with a temporary failure (451). */
  failing = false;
  /** Messages refused while `failing`. */
  refused = 0;
  private server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData: (stream, _session, callback) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', async () => {
        if (this.failing) {
          this.refused++;
          const err = Object.assign(new Error('mailbox temporarily unavailable'), { responseCode: 451 });
          return callback(err);
        }
        const parsed = await simpleParser(Buffer.concat(chunks));
        const to = Array.isArray(parsed.to) ? parsed.to[0]?.text : parsed.to?.text;
        this.messages.push({ to: to ?? '', subject: parsed.subject ?? '', text: parsed.text ?? '' });
        callback();
      });
    },
  });
  port = 0;

  async start(): Promise<this> {
    // A client that dies mid-connection (a SIGKILLed worker's pooled SMTP connection) resets its
    // socket; smtp-server reports that as an 'error' event, which must not crash the test process.
    this.server.on('error', () => undefined);
    this.server.listen(0, '127.0.0.1');
    await once(this.server.server, 'listening');
    const address = this.server.server.address();
    if (typeof address === 'object' && address) this.port = address.port;
    return this;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  to(address: string): CapturedMail[] {
    return this.messages.filter((m) => m.to.toLowerCase().includes(address.toLowerCase()));
  }

  /** The verification link of the newest mail to `address`. */
  latestLink(address: string): string | undefined {
    const mails = this.to(address);
    const text = mails[mails.length - 1]?.text ?? '';
    return /https?:\/\/\S+\/api\/v0\/signups\/verify\?token=[A-Za-z0-9_-]+(?:&tenant=[^\s&]+)?/.exec(text)?.[0];
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
