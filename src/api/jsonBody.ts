/**
 * The JSON body parser of every endpoint, as strict as headless-lms's (serde_json): a body must
 * be UTF-8, valid JSON, with no key twice in one object and no lone UTF-16 surrogate (`"\ud800"`)
 * in any string or key. Anything else is a 400 with the error JSON.
 *
 * Why not only JSON.parse: it keeps the last of two equal keys (so `{"password":"a",
 * "password":"b"}` means "b" here and is refused there) and turns a lone surrogate escape into a
 * string that argon2's UTF-8 encoding makes U+FFFD (so "a\ud800b", "a\udfffb" and "a\ufffdb" were
 * one password). The checks walk momoa's token stream (a well-kept JSON tokenizer) with a stack of
 * its own, not its recursive parser, so deeply nested bodies cannot overflow the call stack.
 */
import { tokenize } from '@humanwhocodes/momoa';
import getRawBody from 'raw-body';
import type { Context, Next } from 'koa';
import { ApiError } from './errors';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body (jsonBodyParser); undefined when the request had none to parse. */
    body?: unknown;
  }
}

/** A body this parser refuses; `message` is safe to show (it never quotes a value). */
export class StrictJsonError extends Error {
  override name = 'StrictJsonError';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 bytes, refusing invalid sequences (which a lenient decoder turns into U+FFFD). */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new StrictJsonError('The request body is not valid UTF-8.');
  }
}

/** True if `s` holds a UTF-16 surrogate without its partner. */
export function hasLoneSurrogate(s: string): boolean {
  return !(s as string & { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Parses JSON text as serde_json would accept it: throws StrictJsonError for a syntax error, a
 * duplicate key in an object, a key named `__proto__`, or a lone surrogate in a string or key.
 * Returns the parsed value (any JSON value; the route's schema says what it must be).
 */
export function parseStrictJson(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StrictJsonError('The request body is not valid JSON.');
  }
  // Valid JSON now; walk its tokens. The stack holds each open object's keys (an array: null).
  const tokens = tokenize(text, { ranges: true });
  const open: Array<Set<string> | null> = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    switch (token.type) {
      case 'LBrace':
        open.push(new Set());
        break;
      case 'LBracket':
        open.push(null);
        break;
      case 'RBrace':
      case 'RBracket':
        open.pop();
        break;
      case 'String': {
        const [start, end] = token.range!;
        const decoded = JSON.parse(text.slice(start, end)) as string;
        if (hasLoneSurrogate(decoded)) throw new StrictJsonError('The request body has a string with a lone UTF-16 surrogate.');
        const keys = open[open.length - 1];
        if (keys && tokens[i + 1]?.type === 'Colon') {
          if (decoded === '__proto__') throw new StrictJsonError('The request body has a key named "__proto__".');
          if (keys.has(decoded)) throw new StrictJsonError(`The request body has the key ${describeKey(decoded)} more than once in one object.`);
          keys.add(decoded);
        }
        break;
      }
      default:
        break;
    }
  }
  return value;
}

/** The key, quoted, when it is short and plain enough to repeat in a message. */
function describeKey(key: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(key) ? `"${key}"` : 'a key';
}

/**
 * Parses an `application/x-www-form-urlencoded` body as strictly as parseStrictJson parses JSON:
 * percent-escapes must decode to valid UTF-8 (URLSearchParams would make U+FFFD of them), and a
 * name twice is refused. Returns `{name: value}` with string values.
 */
export function parseStrictForm(text: string): Record<string, string> {
  const fields: Record<string, string> = Object.create(null);
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const [rawName, rawValue] = at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(rawName.replace(/\+/g, ' '));
      value = decodeURIComponent(rawValue.replace(/\+/g, ' '));
    } catch {
      throw new StrictJsonError('The form body has a field that is not valid percent-encoded UTF-8.');
    }
    if (name === '__proto__') throw new StrictJsonError('The form body has a field named "__proto__".');
    if (Object.hasOwn(fields, name)) throw new StrictJsonError(`The form body has the field ${describeKey(name)} more than once.`);
    fields[name] = value;
  }
  return { ...fields };
}

/**
 * Koa middleware: reads a POST/PUT/PATCH body declared as JSON (`application/json`, any
 * parameters) or as a form (`application/x-www-form-urlencoded`, the signup pages' forms) into
 * `ctx.request.body`, up to `limit` bytes (413 beyond, before reading when the declared length
 * says so). Other bodies are left unread; routes that need JSON answer 415. An empty JSON body
 * is `''`, which every route's schema refuses.
 */
export function jsonBodyParser(options: { limit: number }) {
  return async function jsonBody(ctx: Context, next: Next): Promise<void> {
    const type = ['POST', 'PUT', 'PATCH'].includes(ctx.method) && ctx.request.body === undefined ? ctx.is('application/json', 'application/x-www-form-urlencoded') : false;
    if (!type) return next();
    const declared = ctx.get('content-length');
    // raw-body's errors carry status 413 or 400; the error handler maps them.
    const bytes = await getRawBody(ctx.req, { length: declared === '' ? undefined : declared, limit: options.limit });
    try {
      const text = decodeUtf8(bytes);
      if (type === 'application/x-www-form-urlencoded') ctx.request.body = parseStrictForm(text);
      else ctx.request.body = text.trim() === '' ? '' : parseStrictJson(text);
    } catch (err) {
      if (err instanceof StrictJsonError) throw new ApiError(400, err.message);
      throw err;
    }
    await next();
  };
}
