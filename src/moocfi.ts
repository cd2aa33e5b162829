/**
 * mooc.fi's GraphQL API, asked for the id mooc.fi already has for a TMC user, as headless-lms
 * does when it creates one: `POST MOOCFI_GRAPHQL_URL` with `query ($upstream_id: Int) {
 * user(upstream_id: $upstream_id) { id } }` and the TMC administrator's bearer token. With it, a
 * person has the same user id in both systems.
 *
 * The lookup is an optimization of identity, never a reason to fail: any failure (off, slow,
 * an error status, an unexpected body, no such user) is `undefined`, and the caller makes a fresh
 * UUID. It is bounded by its own timeout and by the caller's.
 */
import type { Knex } from 'knex';
import { z } from 'zod';
import { findActiveUserByUpstreamId } from './db/users';
import type { TmcCallOptions, TmcUser } from './tmc';

export interface MoocfiOptions {
  /** The GraphQL endpoint, e.g. https://www.mooc.fi/api; empty turns the lookup off. */
  graphqlUrl: string;
  /** TMC's administrator token, sent as `Authorization: Bearer …`. */
  accessToken: string;
  /** The longest a lookup may take, in ms. */
  timeoutMs: number;
}

const QUERY = 'query MoocfiUserId($upstream_id: Int) { user(upstream_id: $upstream_id) { id } }';

const answer = z.object({ data: z.object({ user: z.object({ id: z.string().uuid() }).nullable() }) });

export class MoocfiClient {
  constructor(
    private readonly options: MoocfiOptions,
    private readonly onFailure: (reason: string) => void = () => undefined,
  ) {}

  get enabled(): boolean {
    return this.options.graphqlUrl !== '';
  }

  /** mooc.fi's id for the TMC user (lowercase), or undefined if it has none or cannot say in time. */
  async userIdFor(upstreamId: number, call: TmcCallOptions = {}): Promise<string | undefined> {
    if (!this.enabled) return undefined;
    const timeoutMs = Math.min(this.options.timeoutMs, call.timeoutMs ?? Infinity);
    if (timeoutMs <= 0) return undefined;
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const res = await fetch(this.options.graphqlUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${this.options.accessToken}` },
        body: JSON.stringify({ query: QUERY, variables: { upstream_id: upstreamId } }),
        signal: call.signal ? AbortSignal.any([timeout, call.signal]) : timeout,
      });
      if (!res.ok) {
        await res.body?.cancel();
        this.onFailure(`mooc.fi answered ${res.status}`);
        return undefined;
      }
      const parsed = answer.safeParse(await res.json());
      if (!parsed.success) {
        this.onFailure('mooc.fi answered with an unexpected body');
        return undefined;
      }
      return parsed.data.data.user?.id.toLowerCase();
    } catch {
      this.onFailure(timeout.aborted ? `mooc.fi did not answer within ${timeoutMs} ms` : 'mooc.fi could not be reached');
      return undefined;
    }
  }
}

/**
 * The id a new TMC user should get when TMC does not supply one: mooc.fi's, if the lookup is on,
 * the user does not exist here yet, and mooc.fi answers within `timeoutMs`. Else undefined.
 */
export async function moocfiIdForNewUser(db: Knex, moocfi: MoocfiClient | undefined, tmcUser: TmcUser, call: { timeoutMs?: number; signal?: AbortSignal }): Promise<string | undefined> {
  if (!moocfi?.enabled || tmcUser.courses_mooc_fi_user_id) return undefined;
  if (await findActiveUserByUpstreamId(db, tmcUser.id)) return undefined;
  return moocfi.userIdFor(tmcUser.id, call);
}
