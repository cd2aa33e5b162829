/**
 * Prometheus metrics (prom-client): HTTP traffic of the API, and business counters incremented by
 * the activities. Each process exposes its own registry: the API on /metrics, a worker on
 * WORKER_METRICS_PORT. The Temporal SDK's own metrics come from its Runtime (see worker.ts).
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

export const httpRequests = new client.Counter({
  name: 'http_requests_total',
  help: 'HTTP requests answered, by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request latency, by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

const counter = (name: string, help: string) => new client.Counter({ name, help, registers: [registry] });

export const signupsStarted = counter('accounts_signups_started_total', 'Signups whose candidate user was created');
export const signupsCompleted = counter('accounts_signups_completed_total', 'Signups verified and activated');
export const signupsExpired = counter('accounts_signups_expired_total', 'Signups expired or cancelled');
export const usersCreated = counter('accounts_users_created_total', 'TMC users created here');
export const notificationsDelivered = counter('accounts_tmc_notifications_delivered_total', 'Password-managed-here notifications TMC accepted');
export const passwordRehashes = new client.Counter({
  name: 'accounts_password_rehashes_total',
  help: 'Stored password hashes replaced after a successful verification: normalized (matched only as typed, before NFC) or parameters (older argon2 parameters)',
  labelNames: ['reason'] as const,
  registers: [registry],
});

/** A bare /metrics server, for processes without the API (the worker). */
export async function serveMetrics(port: number, host = '0.0.0.0'): Promise<Server> {
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(await registry.metrics());
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}
