/**
 * Requests Node's HTTP parser rejects before the app sees them (headers over 16 KiB, malformed
 * request lines or framing). Node's own answer is an empty 4xx and an immediate close; a client
 * still sending its body then gets a connection reset instead of the answer. Here they get the
 * error JSON of every other 4xx, and a lingering close: our side is shut for writing, and what the
 * client still sends is read and discarded for up to 2 s, so the answer is read before the close.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody } from './errors';

const ANSWERS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'The request headers are too large.'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Payload Too Large', 'The request body is too large.'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'The request took too long to arrive.'],
};
const BAD_REQUEST: [number, string, string] = [400, 'Bad Request', 'The request is not valid HTTP.'];
const LINGER_MS = 2_000;

export function answerClientErrors(server: Server): void {
  // The parser keeps reading what the client still sends, and reports each further packet as
  // another error for the same socket: answer once, then let it read (and drop) the rest.
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (answered.has(socket)) return;
    // Reset connections have nobody to answer, and an answer already on its way (a keep-alive
    // socket's previous response, part-written) must not be corrupted: as Node's own handler.
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    answered.add(socket);
    const [status, reason, message] = ANSWERS[err.code ?? ''] ?? BAD_REQUEST;
    const body = JSON.stringify(errorBody(status, message));
    // An answer to HEAD has no body (its length is announced all the same). The request line is
    // at the start of the packet the parser failed on, when it got that far.
    const raw = (err as { rawPacket?: unknown }).rawPacket;
    const head = Buffer.isBuffer(raw) && raw.subarray(0, 5).toString('latin1') === 'HEAD ';
    // The HTTP server is done with this socket: nothing else may read from it now.
    socket.removeAllListeners('data');
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    // Both sides done (our answer flushed, the client's end read): close. Not before the answer
    // is flushed, or it is lost.
    socket.once('end', () => (socket.writableFinished ? socket.destroy() : socket.once('finish', () => socket.destroy())));
    // A fresh request id, as on every other answer (the request's own headers were not read).
    const requestId = randomUUID();
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nrequest-id: ${requestId}\r\nConnection: close\r\n\r\n${head ? '' : body}`,
    );
    socket.resume();
  });
}
