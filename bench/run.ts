/**
 * `npm run bench` (`-- --quick` for the short version): the service's benchmarks, on one machine
 * in one process tree. It starts its own PostgreSQL, Temporal dev server, fake TMC and SMTP
 * capture (bench/stack.ts), the API and the worker as child processes, and measures:
 *
 *   1. authenticate (HTTP) against in-process argon2.verify, at 1, 2, 4 and 16 clients;
 *   2. create's latency against the same steps done directly, without Temporal;
 *   3. end-to-end signup throughput against a no-op workflow's, on the same server and worker;
 *   4. the cost of 10 / 1 000 / 10 000 signups waiting for verification;
 *   5. importing 100 000 headless-lms users against a plain INSERT … SELECT copy (dblink).
 *
 * Prints a table and writes bench/results.json (medians of the runs, with min and max).
 * Options: --quick, --sections=1,2,3,4,5,6, --runs=N, --levels=10,1000,10000, --import-users=N, --out=FILE, --keep (keep logs).
 */
import dns from 'node:dns';
import { execSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import argon2 from 'argon2';
import { findLoginHash, getOrCreateUserFromTmc, upsertPasswordHash } from '../src/db/users';
import { findTenant, identifierOf, reserveSignup } from '../src/db/signups';
import { DEFAULT_BATCH_SIZE, runImport } from '../src/cli/importHeadlessLms';
import { createDb, migrate } from '../src/db';
import { defaultHashConcurrency, HashQueue } from '../src/hashing';
import { hashPassword } from '../src/passwords';
import { HEADLESS_LMS_HASHES } from '../test/fixtures/headlessLmsHashes';
import { createHeadlessLmsSource, generateSourceUsers } from '../test/support/headlessLmsSource';
import { startSignup } from '../src/temporal/starters';
import { TmcClient } from '../src/tmc';
import { rssMiB } from './children';
import { createBreakdown, type CreateBreakdown } from './history';
import { coresBetween, formatCores, sampleCpu } from './cpu';
import { createDatabaseAt, pathOf, startStack, type Stack } from './stack';
import { closedLoop, fmt, percentile, round, summarize } from './stats';
import type { ProcessStats } from './processStats';

// ---- options ---------------------------------------------------------------------------------

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

const quick = flag('quick');
const sections = new Set((option('sections') ?? '1,2,3,4,5,6').split(',').map(Number));
const runs = Number(option('runs') ?? (quick ? 2 : 3));
const outFile = path.resolve(option('out') ?? path.join(__dirname, 'results.json'));

const SIZES = quick
  ? { authWindowMs: 1_000, concurrencies: [1, 2, 4, 16], createsPerRun: 6, signupWindowMs: 2_000, signupClients: 4, levels: [10, 100, 1_000], growthRepeats: 2, growthAuthRequests: 3, importUsers: 10_000 }
  : { authWindowMs: 3_000, concurrencies: [1, 2, 4, 16], createsPerRun: 24, signupWindowMs: 5_000, signupClients: 4, levels: [10, 1_000, 10_000], growthRepeats: 3, growthAuthRequests: 8, importUsers: 100_000 };
// --levels=10,1000,5000: other sizes for section 4 (the 10 000 level alone costs ~8 min of 2 cores).
if (option('levels')) SIZES.levels = option('levels')!.split(',').map(Number);
// --import-users=N: another size for section 5.
if (option('import-users')) SIZES.importUsers = Number(option('import-users'));

const PASSWORD = 'correct horse battery staple';

const log = (...parts: unknown[]) => console.log(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s]`, ...parts);
const t0 = performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function machine() {
  let top = '';
  try {
    top = execSync('ps -eo pid,pcpu,pmem,etime,args --sort=-pcpu | head -12', { encoding: 'utf8' });
  } catch {
    top = 'ps unavailable';
  }
  return { loadavg: os.loadavg().map((l) => round(l, 2)), topProcesses: top.split('\n').map((l) => l.slice(0, 200)).filter(Boolean) };
}

// ---- 1. authenticate against argon2 ----------------------------------------------------------

/** Closed-loop slices of one side taken together: all completions over all elapsed time. */
function mergeLoops(slices: Array<Awaited<ReturnType<typeof closedLoop>>>) {
  const count = slices.reduce((n, x) => n + x.count, 0);
  const elapsedMs = slices.reduce((t, x) => t + x.elapsedMs, 0);
  return {
    perSecond: (count * 1000) / Math.max(elapsedMs, 1),
    latencies: slices.flatMap((x) => x.latencies),
    count,
    elapsedMs,
    errors: slices.reduce((n, x) => n + x.errors, 0),
    firstError: slices.find((x) => x.firstError)?.firstError,
  };
}

/** A child's stats over several slices: CPU summed, utilization weighted by time, delay at its worst. */
function mergeStats(parts: Array<{ stats: ProcessStats; ms: number }>): ProcessStats {
  const ms = parts.reduce((t, p) => t + p.ms, 0) || 1;
  const last = parts[parts.length - 1]!.stats;
  return {
    ...last,
    elu: parts.reduce((t, p) => t + p.stats.elu * p.ms, 0) / ms,
    delayP50: Math.max(...parts.map((p) => p.stats.delayP50)),
    delayP99: Math.max(...parts.map((p) => p.stats.delayP99)),
    delayMax: Math.max(...parts.map((p) => p.stats.delayMax)),
    cpuUserMs: parts.reduce((t, p) => t + p.stats.cpuUserMs, 0),
    cpuSystemMs: parts.reduce((t, p) => t + p.stats.cpuSystemMs, 0),
  };
}

async function benchAuthenticate(stack: Stack, userId: string, hash: string) {
  const auth = () =>
    fetch(`${stack.apiUrl}/api/v0/tmc-server/users/authenticate`, {
      method: 'POST',
      headers: { authorization: stack.env.TMC_SERVER_SECRET_FOR_COMMUNICATING_TO_SECRET_PROJECT!, 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: userId, password: PASSWORD }),
    }).then(async (res) => {
      const text = await res.text();
      if (res.status !== 200 || text !== 'true') throw new Error(`authenticate answered ${res.status} ${text.slice(0, 100)}`);
    });
  const verify = async () => {
    if (!(await argon2.verify(hash, PASSWORD))) throw new Error('argon2.verify returned false');
  };
  // Warm-up: connections, JIT, the API's pool, argon2's first allocation.
  await Promise.all(Array.from({ length: 4 }, auth));
  await Promise.all(Array.from({ length: 4 }, verify));

  // Where the time goes besides argon2: one database round trip of the lookup, measured alone.
  const lookups: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    await findLoginHash(stack.db, userId);
    lookups.push(performance.now() - t);
  }

  type Row = { http: { rps: number; p50: number; p99: number; n: number; errors: number }; local: { rps: number; p50: number; p99: number; n: number }; ratio: number; api: ProcessStats; apiCpuMsPerRequest: number; localCpuMsPerVerify: number };
  const perConcurrency = new Map<number, Row[]>();
  for (let run = 0; run < runs; run++) {
    for (const c of SIZES.concurrencies) {
      // Each side gets its window in two halves, in the order A B B A (B A A B in odd runs), so
      // a drift of the machine's speed during the measurement (steal time, another process)
      // weighs on both sides alike, and neither always goes first.
      const half = Math.round(SIZES.authWindowMs / 2);
      const httpSlices: Array<{ r: Awaited<ReturnType<typeof closedLoop>>; api: ProcessStats }> = [];
      const localSlices: Array<{ r: Awaited<ReturnType<typeof closedLoop>>; cpuMs: number }> = [];
      const measureHttp = async () => {
        await stack.api.stats();
        const r = await closedLoop(c, half, auth);
        httpSlices.push({ r, api: await stack.api.stats() });
      };
      const measureLocal = async () => {
        const cpu = process.cpuUsage();
        const r = await closedLoop(c, half, verify);
        const used = process.cpuUsage(cpu);
        localSlices.push({ r, cpuMs: (used.user + used.system) / 1000 });
      };
      const order = run % 2 === 0 ? [measureHttp, measureLocal, measureLocal, measureHttp] : [measureLocal, measureHttp, measureHttp, measureLocal];
      for (const measure of order) await measure();
      const http = { r: mergeLoops(httpSlices.map((x) => x.r)), api: mergeStats(httpSlices.map((x) => ({ stats: x.api, ms: x.r.elapsedMs }))) };
      const local = { r: mergeLoops(localSlices.map((x) => x.r)), cpuMs: localSlices.reduce((t, x) => t + x.cpuMs, 0) };
      const row: Row = {
        http: { rps: http.r.perSecond, p50: percentile(http.r.latencies, 50), p99: percentile(http.r.latencies, 99), n: http.r.count, errors: http.r.errors },
        local: { rps: local.r.perSecond, p50: percentile(local.r.latencies, 50), p99: percentile(local.r.latencies, 99), n: local.r.count },
        ratio: http.r.perSecond / local.r.perSecond,
        api: http.api,
        apiCpuMsPerRequest: (http.api.cpuUserMs + http.api.cpuSystemMs) / Math.max(http.r.count, 1),
        localCpuMsPerVerify: local.cpuMs / Math.max(local.r.count, 1),
      };
      if (http.r.errors) log(`  authenticate c=${c}: ${http.r.errors} errors, first: ${http.r.firstError}`);
      log(`  run ${run + 1} c=${c}: HTTP ${row.http.rps.toFixed(2)}/s p50 ${row.http.p50.toFixed(0)} ms | argon2 ${row.local.rps.toFixed(2)}/s p50 ${row.local.p50.toFixed(0)} ms | ratio ${row.ratio.toFixed(3)} | API ELU ${row.api.elu.toFixed(3)}`);
      perConcurrency.set(c, [...(perConcurrency.get(c) ?? []), row]);
    }
  }
  const rows = SIZES.concurrencies.map((c) => {
    const rs = perConcurrency.get(c)!;
    const s = (f: (r: Row) => number) => summarize(rs.map(f));
    return {
      concurrency: c,
      http: { rps: s((r) => r.http.rps), p50Ms: s((r) => r.http.p50), p99Ms: s((r) => r.http.p99), samplesPerRun: rs.map((r) => r.http.n), errors: rs.reduce((n, r) => n + r.http.errors, 0) },
      inProcessArgon2: { rps: s((r) => r.local.rps), p50Ms: s((r) => r.local.p50), p99Ms: s((r) => r.local.p99), samplesPerRun: rs.map((r) => r.local.n) },
      ratio: s((r) => r.ratio),
      goal: 0.9,
      met: summarize(rs.map((r) => r.ratio)).median >= 0.9,
      diagnostics: {
        apiEventLoopUtilization: s((r) => r.api.elu),
        apiEventLoopDelayP99Ms: s((r) => r.api.delayP99),
        apiCpuMsPerRequest: s((r) => r.apiCpuMsPerRequest),
        inProcessCpuMsPerVerify: s((r) => r.localCpuMsPerVerify),
        apiUvThreadpoolSize: rs[0]!.api.uvThreadpoolSize,
      },
    };
  });
  return { windowMsPerMeasurement: SIZES.authWindowMs, dbLookupMs: { p50: percentile(lookups, 50), p99: percentile(lookups, 99) }, benchUvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE || 4), rows };
}

// ---- 2. create against a direct baseline -----------------------------------------------------

async function benchCreate(stack: Stack, nextUpstreamId: () => number) {
  const tmc = new TmcClient(stack.config.tmc);
  const createdIds: number[] = [];
  const create = async () => {
    const id = nextUpstreamId();
    stack.tmc.addUser({ id });
    const t = performance.now();
    const res = await stack.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: PASSWORD });
    const ms = performance.now() - t;
    if (res.status !== 200 || res.body?.password_set !== true) throw new Error(`create answered ${res.status} ${res.text.slice(0, 200)}`);
    createdIds.push(id);
    return ms;
  };
  // The same steps, directly: hash (as the API does), fetch from TMC, one transaction.
  const direct = async () => {
    const id = nextUpstreamId();
    stack.tmc.addUser({ id });
    const t = performance.now();
    const hash = await hashPassword(PASSWORD);
    const th = performance.now();
    const tmcUser = await tmc.getUser(id);
    const tf = performance.now();
    await stack.db.transaction(async (trx) => {
      const { user } = await getOrCreateUserFromTmc(trx, tmcUser);
      await upsertPasswordHash(trx, user.id, hash);
    });
    const tt = performance.now();
    return { total: tt - t, hash: th - t, fetch: tf - th, transaction: tt - tf };
  };
  // Warm-up: the first workflows of a fresh worker are slower (JIT, the sandbox's caches).
  for (let i = 0; i < 3; i++) {
    await create();
    await direct();
  }
  type Run = { http: number[]; direct: Array<Awaited<ReturnType<typeof direct>>> };
  const all: Run[] = [];
  for (let run = 0; run < runs; run++) {
    const r: Run = { http: [], direct: [] };
    // Interleaved call by call, so both see the same machine.
    for (let i = 0; i < SIZES.createsPerRun; i++) {
      if ((i + run) % 2 === 0) {
        r.http.push(await create());
        r.direct.push(await direct());
      } else {
        r.direct.push(await direct());
        r.http.push(await create());
      }
    }
    const ratio = percentile(r.http, 50) / percentile(r.direct.map((d) => d.total), 50);
    log(`  run ${run + 1}: create p50 ${percentile(r.http, 50).toFixed(0)} ms p99 ${percentile(r.http, 99).toFixed(0)} | direct p50 ${percentile(r.direct.map((d) => d.total), 50).toFixed(0)} ms | ratio ${ratio.toFixed(3)}`);
    all.push(r);
  }
  const s = (f: (r: Run) => number) => summarize(all.map(f));
  const p = (xs: number[], q: number) => percentile(xs, q);
  // Inside Temporal: every measured create's history, up to the update's answer.
  const breakdowns = (await Promise.all(createdIds.slice(3).map((id) => createBreakdown(stack.client, `tmc-user-${id}`)))).filter((b): b is CreateBreakdown => b !== undefined);
  const med = (f: (b: CreateBreakdown) => number) => percentile(breakdowns.map(f), 50);
  const insideTemporal = {
    workflows: breakdowns.length,
    startToUpdateCompletedP50Ms: med((b) => b.startToUpdateCompletedMs),
    workflowTasksBeforeAnswer: med((b) => b.workflowTasks),
    workflowTaskQueueP50Ms: med((b) => b.workflowTaskQueueMs),
    workflowTaskRunP50Ms: med((b) => b.workflowTaskRunMs),
    activitiesBeforeAnswer: med((b) => b.activities),
    activityQueueP50Ms: med((b) => b.activityQueueMs),
    activityRunP50Ms: med((b) => b.activityRunMs),
    localActivitiesBeforeAnswer: med((b) => b.localActivities),
  };
  log(`  inside Temporal (p50 of ${breakdowns.length}): run start → update answered ${insideTemporal.startToUpdateCompletedP50Ms.toFixed(0)} ms; ${insideTemporal.workflowTasksBeforeAnswer} workflow tasks (queued ${insideTemporal.workflowTaskQueueP50Ms.toFixed(0)} ms, ran ${insideTemporal.workflowTaskRunP50Ms.toFixed(0)} ms), ${insideTemporal.activitiesBeforeAnswer} activities (queued ${insideTemporal.activityQueueP50Ms.toFixed(0)} ms, ran ${insideTemporal.activityRunP50Ms.toFixed(0)} ms), ${insideTemporal.localActivitiesBeforeAnswer} local activities`);
  return {
    callsPerRunEach: SIZES.createsPerRun,
    insideTemporal,
    http: { p50Ms: s((r) => p(r.http, 50)), p99Ms: s((r) => p(r.http, 99)) },
    direct: {
      p50Ms: s((r) => p(r.direct.map((d) => d.total), 50)),
      p99Ms: s((r) => p(r.direct.map((d) => d.total), 99)),
      hashP50Ms: s((r) => p(r.direct.map((d) => d.hash), 50)),
      fetchP50Ms: s((r) => p(r.direct.map((d) => d.fetch), 50)),
      transactionP50Ms: s((r) => p(r.direct.map((d) => d.transaction), 50)),
    },
    ratioP50: s((r) => p(r.http, 50) / p(r.direct.map((d) => d.total), 50)),
    ratioP99: s((r) => p(r.http, 99) / p(r.direct.map((d) => d.total), 99)),
    goal: 1.25,
    met: s((r) => p(r.http, 50) / p(r.direct.map((d) => d.total), 50)).median <= 1.25,
  };
}

// ---- 3. signup throughput against a no-op workflow's ------------------------------------------

async function benchSignups(stack: Stack) {
  let n = 0;
  let steps = { post: [] as number[], mail: [] as number[], verify: [] as number[] };
  const signup = async () => {
    const email = `s3-${++n}-${randomUUID().slice(0, 8)}@bench.invalid`;
    const started = await stack.request('POST', '/api/v0/signups', { body: { tenant: 'default', email, display_name: 'Bench', password: PASSWORD } });
    if (started.status !== 202) throw new Error(`signup answered ${started.status} ${started.text.slice(0, 200)}`);
    const tMail = performance.now();
    const link = await stack.mails.waitFor(email, 1, 60_000);
    const mailMs = performance.now() - tMail;
    // The link's page (GET) changes nothing; the confirmation with the password activates.
    const verified = await stack.request('POST', '/api/v0/signups/verify', { body: { token: new URL(link).searchParams.get('token'), password: PASSWORD }, headers: { accept: 'application/json' } });
    steps.post.push(started.ms);
    steps.mail.push(mailMs);
    steps.verify.push(verified.ms);
    if (verified.status !== 200 || verified.body?.status !== 'active') throw new Error(`verify answered ${verified.status} ${verified.text.slice(0, 200)}`);
    const user = await stack.db('users').where({ id: verified.body.user_id }).first('status');
    if (user?.status !== 'active') throw new Error(`user ${verified.body.user_id} is ${user?.status}`);
  };
  const noop = async () => {
    await stack.client.workflow.execute('noopWorkflow', { taskQueue: stack.config.temporal.taskQueue, workflowId: `noop-${randomUUID()}`, args: [] });
  };
  await signup();
  await noop();
  const c = SIZES.signupClients;
  const all: Array<{ signups: Awaited<ReturnType<typeof closedLoop>>; noops: Awaited<ReturnType<typeof closedLoop>>; worker: ProcessStats; api: ProcessStats; steps: typeof steps; cores: ReturnType<typeof coresBetween>; noopCores: ReturnType<typeof coresBetween> }> = [];
  for (let run = 0; run < runs; run++) {
    await stack.api.stats();
    await stack.worker!.stats();
    steps = { post: [], mail: [], verify: [] };
    const cpu0 = sampleCpu();
    const signups = await closedLoop(c, SIZES.signupWindowMs, signup);
    const cpu1 = sampleCpu();
    const api = await stack.api.stats();
    const worker = await stack.worker!.stats();
    const cpu2 = sampleCpu();
    const noops = await closedLoop(c, SIZES.signupWindowMs, noop);
    const cpu3 = sampleCpu();
    if (signups.errors) log(`  signup errors: ${signups.errors}, first: ${signups.firstError}`);
    if (noops.errors) log(`  no-op errors: ${noops.errors}, first: ${noops.firstError}`);
    log(`  run ${run + 1}: signups ${signups.perSecond.toFixed(2)}/s (n=${signups.count}, p50 ${percentile(signups.latencies, 50).toFixed(0)} ms) | no-op ${noops.perSecond.toFixed(2)}/s (n=${noops.count}) | ratio ${(signups.perSecond / noops.perSecond).toFixed(3)} | API CPU ${((api.cpuUserMs + api.cpuSystemMs) / signups.elapsedMs).toFixed(2)} cores, worker ${((worker.cpuUserMs + worker.cpuSystemMs) / signups.elapsedMs).toFixed(2)} cores`);
    const cores = coresBetween(cpu0, cpu1);
    const noopCores = coresBetween(cpu2, cpu3);
    log(`    steps p50: POST ${percentile(steps.post, 50).toFixed(0)} ms, mail ${percentile(steps.mail, 50).toFixed(0)} ms, confirm ${percentile(steps.verify, 50).toFixed(0)} ms | cores during signups: ${formatCores(cores)} | during no-ops: ${formatCores(noopCores)}`);
    all.push({ signups, noops, worker, api, steps, cores, noopCores });
  }
  const s = (f: (r: (typeof all)[number]) => number) => summarize(all.map(f));
  return {
    concurrency: c,
    windowMs: SIZES.signupWindowMs,
    signupsPerSecond: s((r) => r.signups.perSecond),
    signupLatencyP50Ms: s((r) => percentile(r.signups.latencies, 50)),
    signupLatencyP99Ms: s((r) => percentile(r.signups.latencies, 99)),
    noopWorkflowsPerSecond: s((r) => r.noops.perSecond),
    noopLatencyP50Ms: s((r) => percentile(r.noops.latencies, 50)),
    ratio: s((r) => r.signups.perSecond / r.noops.perSecond),
    errors: all.reduce((n, r) => n + r.signups.errors + r.noops.errors, 0),
    stepsP50Ms: { post: s((r) => percentile(r.steps.post, 50)), mailArrives: s((r) => percentile(r.steps.mail, 50)), getLink: s((r) => percentile(r.steps.verify, 50)) },
    coresDuringSignups: Object.fromEntries(Object.keys(all[0]!.cores).map((k) => [k, s((r) => r.cores[k as keyof typeof r.cores])])),
    coresDuringNoops: Object.fromEntries(Object.keys(all[0]!.noopCores).map((k) => [k, s((r) => r.noopCores[k as keyof typeof r.noopCores])])),
  };
}

// ---- 4. cost as the work grows ---------------------------------------------------------------

/** How long section 4 lets the worker idle at each level before it measures RSS again. */
const SETTLE_MS = 30_000;

/**
 * A person's click through to an active account: the link's page only shows a form, so the
 * click that wakes the waiting workflow is the confirmation, POST /api/v0/signups/verify with the
 * password chosen at signup. 200 once the account is active.
 */
function confirmLink(stack: Stack, link: string) {
  return stack.request('POST', '/api/v0/signups/verify', { body: { token: new URL(link).searchParams.get('token'), password: PASSWORD }, headers: { accept: 'application/json' } });
}

async function benchGrowth(stack: Stack, authUserId: string, nextUpstreamId: () => number) {
  const tenant = await findTenant(stack.db, 'default');
  if (!tenant) throw new Error('no default tenant');
  // The cheap path: one argon2 hash for all, rows reserved directly, workflows started with the
  // API's own starter. The worker runs every one (candidate user, token, mail), as for a real one.
  const passwordHash = await hashPassword(PASSWORD);
  const query = 'SignupState="AwaitingVerification"';
  let waiting = 0;
  let serial = 0;
  // Addresses of waiting signups, oldest first: the clicks take the oldest, the ones a bounded
  // workflow cache has evicted longest ago (a click then replays the run from its history).
  const waitingEmails: string[] = [];
  // Makes `add` more waiting signups and waits until every mail is out and `count` sees `total`.
  const makeWaiting = async (add: number, total: number) => {
    const mailsBefore = stack.mails.total;
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < add) {
          next++;
          const email = `s4-${++serial}@bench.invalid`;
          waitingEmails.push(email);
          const row = await reserveSignup(stack.db, { tenantId: tenant.id, identifier: identifierOf(email), email, displayName: 'Bench', passwordHash, expiresAt: new Date(Date.now() + 24 * 3_600_000) });
          if (!row) throw new Error(`could not reserve ${email}`);
          await startSignup(stack.client, stack.config.temporal.taskQueue, {
            signupId: row.id, userId: row.user_id, tenantId: tenant.id, tenantIdentifier: tenant.identifier, expiresAt: row.expires_at, resendIntervalMs: stack.config.signup.resendIntervalMs,
          });
        }
      }),
    );
    const startedMs = performance.now() - started;
    const deadline = Date.now() + 15 * 60_000;
    while (stack.mails.total < mailsBefore + add) {
      if (Date.now() > deadline) throw new Error(`only ${stack.mails.total - mailsBefore} of ${add} mails after 15 min`);
      await sleep(50);
    }
    const allMailedMs = performance.now() - started;
    // Visibility is eventually consistent: wait until the count query sees them all.
    for (let i = 0; ; i++) {
      const { count } = await stack.client.workflow.count(query);
      if (count === total) break;
      if (i > 600) throw new Error(`visibility counts ${count} of ${total}`);
      await sleep(100);
    }
    return { startedMs, allMailedMs };
  };
  const levels = [];
  for (const level of SIZES.levels) {
    const add = level - waiting;
    const cpuBefore = sampleCpu();
    const { startedMs, allMailedMs } = await makeWaiting(add, level);
    const buildCores = coresBetween(cpuBefore, sampleCpu());
    waiting = level;
    const candidates = Number((await stack.db('users').where({ status: 'candidate' }).count<{ count: string }[]>('* as count'))[0]!.count);
    await sleep(quick ? 200 : 500);
    const worker = await stack.worker!.stats();
    const rss = await rssMiB(stack.worker!.pid);
    const apiRss = await rssMiB(stack.api.pid);
    const authP50: number[] = [];
    const createP50: number[] = [];
    const clickP50: number[] = [];
    const listMs: number[] = [];
    const countMs: number[] = [];
    let listed = 0;
    for (let rep = 0; rep < SIZES.growthRepeats; rep++) {
      // A create (a new workflow and its update) and a click (a waiting signup woken up).
      const createLat: number[] = [];
      const clickLat: number[] = [];
      for (let i = 0; i < SIZES.growthAuthRequests; i++) {
        const id = nextUpstreamId();
        stack.tmc.addUser({ id });
        const res = await stack.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: PASSWORD });
        if (res.status !== 200) throw new Error(`create answered ${res.status} ${res.text}`);
        createLat.push(res.ms);
        // The same clicks at every level (a round's later calls are slower than its first ones,
        // whatever is waiting), leaving at least one waiting; each round's are made up afterwards.
        if (i >= Math.min(SIZES.growthAuthRequests, level - 1)) continue;
        const email = waitingEmails.shift()!;
        const link = stack.mails.latestLink(email);
        if (!link) throw new Error(`no link for ${email}`);
        const click = await confirmLink(stack, link);
        if (click.status !== 200) throw new Error(`click answered ${click.status} ${click.text}`);
        clickLat.push(click.ms);
      }
      createP50.push(percentile(createLat, 50));
      clickP50.push(percentile(clickLat, 50));
      if (process.env.BENCH_LOG_CLICKS) log(`    round ${rep + 1}: clicks ${clickLat.map((ms) => ms.toFixed(0)).join(' ')} ms; creates ${createLat.map((ms) => ms.toFixed(0)).join(' ')} ms`);
      // Back to `level` waiting before the listing, and for the next round's clicks.
      await makeWaiting(clickLat.length, level);
      const lat: number[] = [];
      for (let i = 0; i < SIZES.growthAuthRequests; i++) {
        const res = await stack.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: authUserId, password: PASSWORD });
        if (res.body !== true) throw new Error(`authenticate answered ${res.status} ${res.text}`);
        lat.push(res.ms);
      }
      authP50.push(percentile(lat, 50));
      let t = performance.now();
      listed = 0;
      for await (const _ of stack.client.workflow.list({ query })) listed++;
      listMs.push(performance.now() - t);
      t = performance.now();
      await stack.client.workflow.count(query);
      countMs.push(performance.now() - t);
    }
    // RSS once the worker has idled a while with them waiting, as signups spend their hours:
    // V8 gives back heap it grew during the burst only after some idle time.
    await sleep(quick ? 2_000 : SETTLE_MS);
    const settled = await rssMiB(stack.worker!.pid);
    const row = {
      waitingSignups: level,
      candidatesInDb: candidates,
      listed,
      createdPerSecond: (add * 1000) / allMailedMs,
      coresWhileCreating: buildCores,
      cpuSecondsPerSignup: (buildCores.total * allMailedMs) / 1000 / add,
      startMs: startedMs,
      allMailedMs,
      workerRssMiB: rss.rss,
      workerSettledRssMiB: settled.rss,
      workerPeakRssMiB: rss.peak,
      workerCachedWorkflows: worker.extra?.workflowsInCache,
      workerHeapUsedMiB: worker.extra?.heapUsedMiB,
      workerHeapTotalMiB: worker.extra?.heapTotalMiB,
      workerExternalMiB: worker.extra?.externalMiB,
      workerMaxCachedWorkflows: worker.extra?.maxCachedWorkflows,
      apiRssMiB: apiRss.rss,
      authenticateP50Ms: summarize(authP50),
      createP50Ms: summarize(createP50),
      clickP50Ms: summarize(clickP50),
      listQueryMs: summarize(listMs),
      countQueryMs: summarize(countMs),
    };
    log(`  building: ${formatCores(buildCores)} (${row.cpuSecondsPerSignup.toFixed(3)} CPU-s per signup)`);
    log(`  ${level} waiting (${row.createdPerSecond.toFixed(1)}/s made): worker RSS ${rss.rss.toFixed(0)} MiB (V8 heap ${worker.extra?.heapUsedMiB}/${worker.extra?.heapTotalMiB} MiB, external ${worker.extra?.externalMiB} MiB; cache ${worker.extra?.workflowsInCache}/${worker.extra?.maxCachedWorkflows}), authenticate p50 ${fmt(row.authenticateP50Ms, 0)} ms, create p50 ${fmt(row.createP50Ms, 0)} ms, click p50 ${fmt(row.clickP50Ms, 0)} ms, list ${fmt(row.listQueryMs, 0)} ms (${listed} rows), count ${fmt(row.countQueryMs, 0)} ms`);
    if (listed !== level || candidates < level) throw new Error(`listed ${listed}, candidates ${candidates}, expected ${level}`);
    levels.push(row);
  }
  const first = levels[0]!;
  const last = levels[levels.length - 1]!;
  const span = (last.waitingSignups - first.waitingSignups) / 1000;

  // A worker restart with everything still waiting: time until it polls, RSS a minute later, and
  // a click then (its run is in no cache: replayed from history).
  log(`  restarting the worker with ${last.waitingSignups} waiting`);
  const restartAt = performance.now();
  await stack.stopWorker('SIGTERM');
  const stoppedMs = performance.now() - restartAt;
  const startAt = performance.now();
  const restarted = await stack.startWorker();
  await restarted.ready;
  const startupMs = performance.now() - startAt;
  const rssAtStart = await rssMiB(restarted.pid);
  await sleep(60_000);
  const rssAfterMinute = await rssMiB(restarted.pid);
  const email = waitingEmails.shift()!;
  const click = await confirmLink(stack, stack.mails.latestLink(email)!);
  if (click.status !== 200) throw new Error(`click after restart answered ${click.status} ${click.text}`);
  const restart = { waiting: waiting, stopMs: stoppedMs, startupMs, rssAtStartMiB: rssAtStart.rss, rssAfterMinuteMiB: rssAfterMinute.rss, peakRssMiB: rssAfterMinute.peak, firstClickMs: click.ms };
  log(`  restart: stopped in ${stoppedMs.toFixed(0)} ms, polling ${startupMs.toFixed(0)} ms after start, RSS ${rssAtStart.rss.toFixed(0)} MiB then ${rssAfterMinute.rss.toFixed(0)} MiB a minute later (peak ${rssAfterMinute.peak.toFixed(0)}), first click ${click.ms.toFixed(0)} ms`);
  return {
    levels,
    quickSizes: quick,
    restart,
    growth: {
      workerRssMiBPer1000: (last.workerRssMiB - first.workerRssMiB) / span,
      listMsPer1000: (last.listQueryMs.median - first.listQueryMs.median) / span,
      authenticateP50Change: last.authenticateP50Ms.median / first.authenticateP50Ms.median,
      createP50Change: last.createP50Ms.median / first.createP50Ms.median,
      clickP50Change: last.clickP50Ms.median / first.clickP50Ms.median,
    },
  };
}

// ---- 5. import from headless-lms against a plain copy --------------------------------------

/**
 * `npm run import:headless-lms` on `users` headless-lms users (each with details and a password
 * hash), against the plainest copy of the same rows between the same two databases on the same
 * PostgreSQL server: one transaction of `INSERT … SELECT … FROM dblink(…)` per table. The copy
 * runs before and after the import; its mean is the baseline.
 */
async function benchImport(stack: Stack, users: number) {
  const adminUrl = stack.pg?.urlFor('postgres') ?? Object.assign(new URL(stack.env.DATABASE_URL!), { pathname: '/postgres' }).toString();
  const suffix = randomUUID().replace(/-/g, '').slice(0, 10);
  const sourceUrl = await createHeadlessLmsSource(adminUrl, `hl_source_${suffix}`);
  const made = performance.now();
  await generateSourceUsers(sourceUrl, users, { firstUpstreamId: 5_000_000, hash: HEADLESS_LMS_HASHES.nfc.hash });
  log(`   source: ${users} users with details and hashes made in ${((performance.now() - made) / 1000).toFixed(1)} s`);

  // The baseline's target: a database of its own with the service's schema, emptied before each copy.
  const copyUrl = await createDatabaseAt(adminUrl, 'hl_copy');
  const copyDb = createDb({ url: copyUrl, poolMax: 1 });
  const sourceConn = (() => {
    const u = new URL(sourceUrl);
    return `host=${u.hostname} port=${u.port} dbname=${u.pathname.slice(1)} user=${decodeURIComponent(u.username)} password=${decodeURIComponent(u.password)}`;
  })();
  const copies: number[] = [];
  const copy = async () => {
    await copyDb.raw('TRUNCATE users CASCADE');
    const t = performance.now();
    await copyDb.transaction(async (trx) => {
      await trx.raw('SET LOCAL statement_timeout = 0');
      await trx.raw(
        `INSERT INTO users (id, created_at, updated_at, deleted_at, upstream_id, email_domain)
         SELECT * FROM dblink(?, 'SELECT id, created_at, updated_at, deleted_at, upstream_id, email_domain FROM users')
           AS s(id uuid, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz, upstream_id integer, email_domain text)`,
        [sourceConn],
      );
      await trx.raw(
        `INSERT INTO user_details (user_id, email, first_name, last_name)
         SELECT * FROM dblink(?, 'SELECT user_id, email, first_name, last_name FROM user_details')
           AS s(user_id uuid, email text, first_name text, last_name text)`,
        [sourceConn],
      );
      await trx.raw(
        `INSERT INTO user_passwords (user_id, password_hash, created_at, updated_at, deleted_at)
         SELECT * FROM dblink(?, 'SELECT user_id, password_hash, created_at, updated_at, deleted_at FROM user_passwords')
           AS s(user_id uuid, password_hash text, created_at timestamptz, updated_at timestamptz, deleted_at timestamptz)`,
        [sourceConn],
      );
    });
    const ms = performance.now() - t;
    copies.push(ms);
    log(`   INSERT … SELECT through dblink: ${users} users in ${(ms / 1000).toFixed(2)} s`);
  };
  try {
    await migrate(copyDb);
    await copyDb.raw('CREATE EXTENSION IF NOT EXISTS dblink');
    await copy();

    const cpuBefore = sampleCpu();
    const t = performance.now();
    const report = await runImport(stack.db, stack.client, stack.config.temporal.taskQueue, { sourceUrl });
    const importMs = performance.now() - t;
    const cpuAfter = sampleCpu();
    log(`   import: ${report.imported} imported in ${(importMs / 1000).toFixed(2)} s (${report.batches} batches; workflow's own elapsed ${(report.elapsedMs / 1000).toFixed(2)} s)`);
    if (report.imported !== users || report.conflicts !== 0) throw new Error(`import reported ${JSON.stringify({ ...report, conflictList: undefined })}`);

    await copy();
    const copyMs = copies.reduce((a, b) => a + b, 0) / copies.length;
    const importRowsPerSecond = (users * 1000) / importMs;
    const copyRowsPerSecond = (users * 1000) / copyMs;
    return {
      users,
      batchSize: DEFAULT_BATCH_SIZE,
      batches: report.batches,
      importMs,
      workflowElapsedMs: report.elapsedMs,
      importRowsPerSecond,
      copyMs: copies,
      copyRowsPerSecond,
      copyMethod: 'INSERT … SELECT … FROM dblink(…), one transaction, three tables',
      ratio: importRowsPerSecond / copyRowsPerSecond,
      met: importRowsPerSecond / copyRowsPerSecond >= 0.5,
      coresDuringImport: coresBetween(cpuBefore, cpuAfter),
      loadavgAfter: os.loadavg().map((l) => round(l, 2)),
    };
  } finally {
    await copyDb.destroy();
  }
}

// ---- 6. host-name lookups during a hashing burst ------------------------------------------------

/**
 * A DNS lookup (getaddrinfo runs on libuv's threadpool, as argon2 does) while a burst of password
 * hashes runs: through the API's HashQueue (src/hashing.ts, default concurrency), and straight
 * into argon2 as before the queue. In this process, so it measures the threadpool, not HTTP.
 */
async function benchLookups() {
  const burst = quick ? 16 : 32;
  const lookupMs = () =>
    new Promise<number>((resolve, reject) => {
      const started = performance.now();
      dns.lookup('localhost', (err) => (err ? reject(err) : resolve(performance.now() - started)));
    });
  const idle: number[] = [];
  const queued: number[] = [];
  const direct: number[] = [];
  const queue = new HashQueue({ concurrency: defaultHashConcurrency(), maxQueued: 1_000 });
  for (let run = 0; run < runs; run++) {
    idle.push(await lookupMs());
    const viaQueue = Promise.all(Array.from({ length: burst }, (_, i) => queue.hash(`bench ${i}`, { deadline: Date.now() + 600_000 })));
    await sleep(100);
    queued.push(await lookupMs());
    await viaQueue;
    const straight = Promise.all(Array.from({ length: burst }, (_, i) => hashPassword(`bench ${i}`)));
    await sleep(100);
    direct.push(await lookupMs());
    await straight;
  }
  return { burst, concurrency: defaultHashConcurrency(), idleMs: summarize(idle), queuedMs: summarize(queued), directMs: summarize(direct) };
}

// ---- table -----------------------------------------------------------------------------------

function table(results: Record<string, any>): string {
  const lines: string[] = [];
  const cpus = results.meta.cpus;
  lines.push(`Benchmarks (${results.meta.mode}, ${cpus} CPUs, ${results.meta.runs} runs; median (min–max) of the runs)`);
  if (results.authenticate) {
    lines.push('', '1. POST /users/authenticate over HTTP vs in-process argon2.verify (same hash, same concurrency); goal ratio >= 0.9');
    lines.push('| clients | HTTP req/s | HTTP p50 ms | HTTP p99 ms | argon2 verify/s | ratio | goal met |', '|---|---|---|---|---|---|---|');
    for (const r of results.authenticate.rows) {
      lines.push(`| ${r.concurrency} | ${fmt(r.http.rps, 2)} | ${fmt(r.http.p50Ms, 0)} | ${fmt(r.http.p99Ms, 0)} | ${fmt(r.inProcessArgon2.rps, 2)} | ${fmt(r.ratio, 3)} | ${r.met ? 'yes' : 'NO'} |`);
    }
    const a = results.authenticate;
    lines.push(`where the time goes: DB lookup p50 ${a.dbLookupMs.p50.toFixed(1)} ms; thread pool ${a.rows[0].diagnostics.apiUvThreadpoolSize} (API) / ${a.benchUvThreadpoolSize} (in-process)`);
    for (const r of a.rows) {
      const d = r.diagnostics;
      lines.push(`  c=${r.concurrency}: API event loop busy ${fmt(d.apiEventLoopUtilization, 3)}, delay p99 ${fmt(d.apiEventLoopDelayP99Ms, 1)} ms; CPU per request ${fmt(d.apiCpuMsPerRequest, 0)} ms (API) vs ${fmt(d.inProcessCpuMsPerVerify, 0)} ms per in-process verify`);
    }
  }
  if (results.create) {
    const c = results.create;
    lines.push('', '2. POST /users/create vs direct fetch + transaction + hash; goal p50 ratio <= 1.25');
    lines.push('| | p50 ms | p99 ms |', '|---|---|---|');
    lines.push(`| create (HTTP, Temporal) | ${fmt(c.http.p50Ms, 0)} | ${fmt(c.http.p99Ms, 0)} |`);
    lines.push(`| direct baseline | ${fmt(c.direct.p50Ms, 0)} | ${fmt(c.direct.p99Ms, 0)} |`);
    lines.push(`| ratio | ${fmt(c.ratioP50, 3)} ${c.met ? '(goal met)' : '(goal NOT met)'} | ${fmt(c.ratioP99, 3)} |`);
    lines.push(`baseline parts, p50 ms: hash ${fmt(c.direct.hashP50Ms, 0)}, TMC fetch ${fmt(c.direct.fetchP50Ms, 1)}, transaction ${fmt(c.direct.transactionP50Ms, 1)}`);
    const t = c.insideTemporal;
    lines.push(`inside Temporal (p50 of ${t.workflows} histories): run start → update answered ${t.startToUpdateCompletedP50Ms.toFixed(0)} ms: ${t.workflowTasksBeforeAnswer} workflow tasks (queued ${t.workflowTaskQueueP50Ms.toFixed(0)} ms, ran ${t.workflowTaskRunP50Ms.toFixed(0)} ms), ${t.activitiesBeforeAnswer} activities (queued ${t.activityQueueP50Ms.toFixed(0)} ms, ran ${t.activityRunP50Ms.toFixed(0)} ms), ${t.localActivitiesBeforeAnswer} local activities (run inside the workflow tasks)`);
  }
  if (results.signup) {
    const s = results.signup;
    lines.push('', `3. Signups end to end (POST, mail over SMTP, confirm through the link (POST verify), user active) vs no-op workflow, ${s.concurrency} clients`);
    lines.push('| | per second | p50 ms |', '|---|---|---|');
    lines.push(`| signups | ${fmt(s.signupsPerSecond, 2)} | ${fmt(s.signupLatencyP50Ms, 0)} |`);
    lines.push(`| no-op workflows | ${fmt(s.noopWorkflowsPerSecond, 2)} | ${fmt(s.noopLatencyP50Ms, 0)} |`);
    lines.push(`| ratio | ${fmt(s.ratio, 3)} | |`);
    lines.push(`signup steps p50: POST ${fmt(s.stepsP50Ms.post, 0)} ms, mail arrives ${fmt(s.stepsP50Ms.mailArrives, 0)} ms, confirm ${fmt(s.stepsP50Ms.getLink, 0)} ms`);
    const cores = (c: Record<string, { median: number }>) => Object.entries(c).filter(([, v]) => v.median >= 0.01).map(([k, v]) => `${k} ${v.median.toFixed(2)}`).join(', ');
    lines.push(`cores used during signups: ${cores(s.coresDuringSignups)}; during no-ops: ${cores(s.coresDuringNoops)}`);
  }
  if (results.growth) {
    const g = results.growth;
    const levels = g.levels.map((l: any) => l.waitingSignups).join('/');
    lines.push('', `4. Cost as signups waiting for verification grow${levels !== '10/1000/10000' ? ` (levels ${levels}${g.quickSizes ? ', quick mode' : ''}, instead of 10/1000/10000)` : ''}`);
    lines.push('| waiting | worker RSS MiB (after making them / after 30 s idle) | cached wf | authenticate p50 ms | create p50 ms | click p50 ms | list by SignupState ms | count ms | made/s |', '|---|---|---|---|---|---|---|---|---|');
    for (const l of g.levels) {
      lines.push(`| ${l.waitingSignups} | ${l.workerRssMiB.toFixed(0)} / ${l.workerSettledRssMiB.toFixed(0)} | ${l.workerCachedWorkflows}/${l.workerMaxCachedWorkflows} | ${fmt(l.authenticateP50Ms, 0)} | ${fmt(l.createP50Ms, 0)} | ${fmt(l.clickP50Ms, 0)} | ${fmt(l.listQueryMs, 0)} | ${fmt(l.countQueryMs, 0)} | ${l.createdPerSecond.toFixed(1)} |`);
    }
    const r = g.restart;
    if (r) lines.push(`worker restart with ${r.waiting} waiting: stopped in ${r.stopMs.toFixed(0)} ms, polling ${r.startupMs.toFixed(0)} ms after start; RSS ${r.rssAtStartMiB.toFixed(0)} MiB at start, ${r.rssAfterMinuteMiB.toFixed(0)} MiB a minute later; first click ${r.firstClickMs.toFixed(0)} ms`);
    lines.push(`CPU per waiting signup built (worker + Temporal + PostgreSQL + mail capture): ${g.levels.map((l: any) => l.cpuSecondsPerSignup.toFixed(3)).join(' / ')} s`);
    lines.push(`growth: worker RSS ${g.growth.workerRssMiBPer1000.toFixed(1)} MiB per 1000, list ${g.growth.listMsPer1000.toFixed(1)} ms per 1000, authenticate p50 x${g.growth.authenticateP50Change.toFixed(2)}, create p50 x${g.growth.createP50Change.toFixed(2)}, click p50 x${g.growth.clickP50Change.toFixed(2)}`);
  }
  if (results.import) {
    const i = results.import;
    lines.push('', `5. Import of ${i.users} headless-lms users (details + hash each) vs a plain copy between the same two databases; goal ratio >= 0.5`);
    lines.push('| | seconds | rows/s |', '|---|---|---|');
    lines.push(`| npm run import:headless-lms (Temporal, ${i.batches} batches of ${i.batchSize}) | ${(i.importMs / 1000).toFixed(2)} | ${i.importRowsPerSecond.toFixed(0)} |`);
    lines.push(`| ${i.copyMethod} (before / after) | ${i.copyMs.map((ms: number) => (ms / 1000).toFixed(2)).join(' / ')} | ${i.copyRowsPerSecond.toFixed(0)} |`);
    lines.push(`| ratio | | ${i.ratio.toFixed(3)} ${i.met ? '(goal met)' : '(goal NOT met)'} |`);
    lines.push(`cores used during the import: ${formatCores(i.coresDuringImport)}; load average after: ${i.loadavgAfter.join(' ')}`);
  }
  if (results.lookups) {
    const d = results.lookups;
    lines.push('', `6. DNS lookup (localhost, getaddrinfo) during a burst of ${d.burst} password hashes`);
    lines.push('| | lookup ms |', '|---|---|', `| idle | ${fmt(d.idleMs, 1)} |`, `| hashes through the queue (${d.concurrency} at a time) | ${fmt(d.queuedMs, 1)} |`, `| hashes straight into argon2 (before the queue) | ${fmt(d.directMs, 0)} |`);
  }
  lines.push('', `total ${results.meta.totalSeconds.toFixed(0)} s`);
  return lines.join('\n');
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'accounts-bench-'));
  const results: Record<string, any> = {
    meta: {
      date: new Date().toISOString(),
      mode: quick ? 'quick' : 'full',
      runs,
      sizes: SIZES,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryGiB: round(os.totalmem() / 2 ** 30, 1),
      node: process.version,
      uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? 'default (4)',
      command: `npm run bench${quick ? ' -- --quick' : ''}`,
      machineAtStart: machine(),
    },
  };
  log(`mode ${results.meta.mode}, ${results.meta.cpus} CPUs, load ${results.meta.machineAtStart.loadavg.join(' ')}; logs in ${dir}`);
  const stack = await startStack({ dir });
  log('stack up: PostgreSQL, Temporal dev server, fake TMC, SMTP capture, API and worker processes');
  let upstream = 100_000;
  const nextUpstreamId = () => upstream++;
  try {
    // One user with a password, for authenticate (sections 1 and 4).
    const id = nextUpstreamId();
    stack.tmc.addUser({ id });
    const created = await stack.tmcRequest('POST', '/api/v0/tmc-server/users/create', { upstream_id: id, password: PASSWORD });
    if (created.status !== 200) throw new Error(`setup create answered ${created.status} ${created.text}`);
    const userId: string = created.body.user.id;
    const hash = (await findLoginHash(stack.db, userId))!;

    if (sections.has(1)) {
      log('1. authenticate vs argon2');
      results.authenticate = await benchAuthenticate(stack, userId, hash);
    }
    if (sections.has(2)) {
      log('2. create vs direct');
      results.create = await benchCreate(stack, nextUpstreamId);
    }
    if (sections.has(3)) {
      log('3. signups vs no-op workflow');
      results.signup = await benchSignups(stack);
    }
    if (sections.has(4)) {
      log(`4. growth: ${SIZES.levels.join(' / ')} waiting signups`);
      results.growth = await benchGrowth(stack, userId, nextUpstreamId);
    }
    if (sections.has(5)) {
      log(`5. import of ${SIZES.importUsers} headless-lms users vs INSERT … SELECT through dblink`);
      results.import = await benchImport(stack, SIZES.importUsers);
    }
    if (sections.has(6)) {
      log('6. DNS lookups during a hashing burst');
      results.lookups = await benchLookups();
    }
  } finally {
    results.meta.machineAtEnd = machine();
    results.meta.totalSeconds = (performance.now() - t0) / 1000;
    await stack.close();
    if (!flag('keep')) rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(outFile, `${JSON.stringify(results, (_k, v) => (typeof v === 'number' ? round(v, 3) : v), 2)}\n`);
  console.log(`\n${table(results)}\n\nwrote ${path.relative(process.cwd(), outFile)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
