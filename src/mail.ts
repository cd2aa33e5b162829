/**
 * Outgoing mail through nodemailer. With SMTP_URL unset (development only; production refuses
 * to start) messages are printed to stdout, outside the structured logs, so a developer can
 * click the link.
 */
import nodemailer, { type Transporter } from 'nodemailer';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

export interface Mailer {
  send(message: MailMessage): Promise<void>;
  close(): void;
}

export function createMailer(options: { smtpUrl?: string; from: string }): Mailer {
  if (!options.smtpUrl) {
    return {
      async send(message) {
        process.stdout.write(
          `\n----- mail (SMTP_URL unset, printed instead of sent) -----\nTo: ${message.to}\nSubject: ${message.subject}\n\n${message.text}\n-----\n`,
        );
      },
      close() {},
    };
  }
  const url = new URL(options.smtpUrl);
  // Fail fast while the SMTP server is down; the activity's retry policy does the waiting.
  for (const [k, v] of Object.entries({ connectionTimeout: '10000', greetingTimeout: '10000', socketTimeout: '20000' })) {
    if (!url.searchParams.has(k)) url.searchParams.set(k, v);
  }
  // Pooled connections (up to 5, each reused for up to 100 messages) unless the URL says
  // otherwise: a burst of signups must not open one SMTP session per link.
  if (!url.searchParams.has('pool')) url.searchParams.set('pool', 'true');
  const transport: Transporter = nodemailer.createTransport(url.toString(), { from: options.from });
  return {
    async send(message) {
      await transport.sendMail({ from: options.from, ...message });
    },
    close() {
      transport.close();
    },
  };
}
