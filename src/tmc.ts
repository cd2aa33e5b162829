/**
 * HTTP client for the two TMC calls this service makes (tmc-contract.md §2):
 * fetching a user, and telling TMC that the user's password is now managed here.
 */
import { z } from 'zod';

export const tmcUserSchema = z.object({
  id: z.number().int(),
  username: z.string(),
  email: z.string(),
  administrator: z.boolean().optional(),
  courses_mooc_fi_user_id: z.string().uuid().nullish(),
  user_field: z
    .object({
      first_name: z.string().nullish(),
      last_name: z.string().nullish(),
    })
    .passthrough()
    .nullish(),
});

export type TmcUser = z.infer<typeof tmcUserSchema>;

/**
 * Why a TMC call failed. `not_found` and `unauthorized` are answers; `unavailable` (an error
 * status or no connection) and `timeout` (no answer within the call's time) are transient.
 */
export type TmcErrorKind = 'not_found' | 'unauthorized' | 'unavailable' | 'timeout' | 'bad_response';

export class TmcError extends Error {
  override name = 'TmcError';
  constructor(
    readonly kind: TmcErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface TmcClientOptions {
  baseUrl: string;
  accessToken: string;
  ratelimitApiKey: string;
  timeoutMs: number;
}

/** Bounds for one call, besides the client's own TMC_REQUEST_TIMEOUT (the shorter wins). */
export interface TmcCallOptions {
  /** Give up after this many ms: a TmcError of kind `timeout`. */
  timeoutMs?: number;
  /** Abort the call (e.g. the activity was cancelled); the fetch is aborted, not left running. */
  signal?: AbortSignal;
}

export class TmcClient {
  constructor(private readonly options: TmcClientOptions) {}

  /** GET /api/v8/users/{upstream_id}?show_user_fields=1 */
  async getUser(upstreamId: number, call: TmcCallOptions = {}): Promise<TmcUser> {
    const res = await this.request('GET', `/api/v8/users/${upstreamId}?show_user_fields=1`, undefined, call);
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new TmcError('bad_response', 'TMC answered a user fetch with a body that is not JSON', res.status);
    }
    const parsed = tmcUserSchema.safeParse(body);
    if (!parsed.success) {
      throw new TmcError('bad_response', 'TMC answered a user fetch with an unexpected body', res.status);
    }
    return parsed.data;
  }

  /** POST /api/v8/users/{upstream_id}/set_password_managed_by_courses_mooc_fi; any 2xx is success. */
  async setPasswordManagedHere(upstreamId: number, userId: string, call: TmcCallOptions = {}): Promise<void> {
    const res = await this.request(
      'POST',
      `/api/v8/users/${upstreamId}/set_password_managed_by_courses_mooc_fi`,
      { courses_mooc_fi_user_id: userId.toLowerCase() },
      call,
    );
    await res.body?.cancel();
  }

  private async request(method: 'GET' | 'POST', path: string, body: unknown, call: TmcCallOptions): Promise<Response> {
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'RATELIMIT-PROTECTION-SAFE-API-KEY': this.options.ratelimitApiKey,
      Authorization: `Bearer ${this.options.accessToken}`,
    };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const timeoutMs = Math.max(0, Math.min(this.options.timeoutMs, call.timeoutMs ?? Infinity));
    const timeout = AbortSignal.timeout(timeoutMs);
    let res: Response;
    try {
      res = await fetch(`${this.options.baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: call.signal ? AbortSignal.any([timeout, call.signal]) : timeout,
      });
    } catch (err) {
      const where = `${method} ${path.split('?')[0]}`;
      if (timeout.aborted) throw new TmcError('timeout', `TMC did not answer within ${timeoutMs} ms (${where})`);
      if (call.signal?.aborted) throw new TmcError('unavailable', `TMC call abandoned (${where})`);
      throw new TmcError('unavailable', `TMC could not be reached (${where})`);
    }
    if (res.ok) return res;
    await res.body?.cancel();
    const where = `${method} ${path.split('?')[0]}`;
    if (res.status === 404) throw new TmcError('not_found', `TMC answered 404 to ${where}`, 404);
    if (res.status === 401 || res.status === 403) {
      throw new TmcError('unauthorized', `TMC refused our access token (${res.status}) on ${where}`, res.status);
    }
    throw new TmcError('unavailable', `TMC answered ${res.status} to ${where}`, res.status);
  }
}
