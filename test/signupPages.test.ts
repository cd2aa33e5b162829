/**
 * The signup pages in a real browser (issue 12 §3): headless Chromium from Debian
 * (`npm test`'s set-up step installs it), driven by playwright-core, with JavaScript
 * off. Each test follows a link from a real verification mail (or a forged one), fills the form
 * by its label, submits, and checks the outcome. Every page is checked for the same things: it
 * loads nothing from another origin, the Content-Security-Policy blocks nothing of its own (its
 * style applies), and the token goes to no one (Referrer-Policy: no-referrer).
 *
 * A screenshot of each page goes to test-artifacts/pages/; with UPDATE_SCREENSHOTS=1 also to
 * docs/pages/, which the README links.
 */
import { mkdirSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { launchChromium } from './support/browser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type RunningApi } from '../src/api/main';
import { createDb, type Db } from '../src/db';
import { freePort } from '../src/dev/ports';
import { PROJECT_ROOT } from '../src/dev/temporalServer';
import { resolveKeys } from '../src/temporal/codec';
import { eventually, startHarness, type Harness } from './support/harness';

const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts', 'pages');
const DOCS = path.join(PROJECT_ROOT, 'docs', 'pages');

let h: Harness;
let browser: Browser;

beforeAll(async () => {
  // Rate limits on, behind one (pretend) proxy: each test is its own client address.
  h = await startHarness({ env: { RATE_LIMIT_DISABLED: 'false', TRUSTED_PROXY_COUNT: '1', SIGNUP_RESEND_INTERVAL: '1s' } });
  browser = await launchChromium();
}, 300_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await h?.close();
}, 120_000);

let nextClient = 10;
/** A browser with JavaScript off, as a fresh client behind the proxy; records what each page loads and logs. */
async function openBrowser(): Promise<{ context: BrowserContext; page: Page; clientIp: string; requests: string[]; problems: string[] }> {
  const clientIp = `203.0.113.${nextClient++}`;
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 760, height: 620 }, extraHTTPHeaders: { 'x-forwarded-for': clientIp } });
  const page = await context.newPage();
  const requests: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && problems.push(m.text()));
  return { context, page, clientIp, requests, problems };
}

async function signupFor(password: string): Promise<{ address: string; link: string; userId: string }> {
  const address = `page-${randomUUID().slice(0, 8)}@example.org`;
  const res = await h.request('POST', '/api/v0/signups', { body: { tenant: 'default', email: address, display_name: 'Page Test', password } });
  expect(res.status).toBe(202);
  await eventually(() => h.mail.to(address).length >= 1);
  const row = await h.db('signups').where({ identifier: address }).first();
  return { address, link: h.mail.latestLink(address)!, userId: row.user_id };
}

/** The checks every page passes, then its screenshot. */
async function checkPage(page: Page, response: Response | null, name: string, opened: { requests: string[]; problems: string[] }) {
  expect(response, name).not.toBeNull();
  const headers = await response!.allHeaders();
  expect(headers['content-type'], name).toMatch(/^text\/html/);
  expect(headers['referrer-policy'], name).toBe('no-referrer');
  expect(headers['content-security-policy'], name).toMatch(/default-src 'none'/);
  expect(headers['content-security-policy'], name).toMatch(/form-action 'self'/);
  expect(headers['cache-control'], name).toBe('no-store');
  // Nothing from another origin; nothing blocked by the CSP (its hash matches the inline style).
  for (const url of opened.requests) expect(new URL(url).origin, `${name}: ${url}`).toBe(new URL(h.api.url).origin);
  expect(opened.problems.filter((p) => /Content Security Policy|Refused/i.test(p)), name).toEqual([]);
  // The page's own style applied (34rem): the CSP's hash admits it.
  const computedMaxWidth = (body: unknown) => (globalThis as unknown as { getComputedStyle(e: unknown): { maxWidth: string } }).getComputedStyle(body).maxWidth;
  expect(await page.locator('body').evaluate(computedMaxWidth), name).toBe('544px');
  // Every input a person fills has a label.
  for (const input of await page.locator('input:not([type=hidden])').all()) {
    const id = await input.getAttribute('id');
    expect(id, name).toBeTruthy();
    expect(await page.locator(`label[for="${id}"]`).count(), `${name}: label for #${id}`).toBe(1);
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(DOCS, { recursive: true });
    copyFileSync(file, path.join(DOCS, `${name}.png`));
  }
}

/** Submits the form holding `button` and returns the response to the navigation it causes. */
async function submit(page: Page, button: string): Promise<Response | null> {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.getByRole('button', { name: button }).click()]);
  return response;
}

const login = (userId: string, password: string) => h.tmcRequest('POST', '/api/v0/tmc-server/users/authenticate', { user_id: userId, password }).then((r) => r.body);

describe('signup pages in Chromium, without JavaScript', () => {
  it('confirm form → the password chosen at signup → active', async () => {
    const s = await signupFor('the signup password');
    const b = await openBrowser();
    try {
      const opened = await b.page.goto(s.link);
      expect(opened!.status()).toBe(200);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Confirm your email address');
      await checkPage(b.page, opened, 'confirm', b);
      // Opening the page changed nothing.
      expect((await h.db('users').where({ id: s.userId }).first()).status).toBe('candidate');

      await b.page.getByLabel('The password you chose when you signed up').fill('the signup password');
      const done = await submit(b.page, 'Confirm and activate');
      expect(done!.status()).toBe(200);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Your account is active');
      await checkPage(b.page, done, 'active', b);
      expect(await login(s.userId, 'the signup password')).toBe(true);
    } finally {
      await b.context.close();
    }
  });

  it('wrong password → the page says so and offers a new password → active with the new one', async () => {
    const s = await signupFor('a stranger chose this');
    const b = await openBrowser();
    try {
      await b.page.goto(s.link);
      await b.page.getByLabel('The password you chose when you signed up').fill('my own password');
      const wrong = await submit(b.page, 'Confirm and activate');
      expect(wrong!.status()).toBe(403);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('That password does not match');
      await checkPage(b.page, wrong, 'wrong-password', b);
      expect((await h.db('users').where({ id: s.userId }).first()).status).toBe('candidate');

      await b.page.getByLabel('New password (at least 8 characters)').fill('my own password');
      const done = await submit(b.page, 'Set password and activate');
      expect(done!.status()).toBe(200);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Your account is active');
      expect(await login(s.userId, 'my own password')).toBe(true);
      expect(await login(s.userId, 'a stranger chose this')).toBe(false);
    } finally {
      await b.context.close();
    }
  });

  it('"choose a new password" link → the new-password form → active', async () => {
    const s = await signupFor('forgotten password');
    const b = await openBrowser();
    try {
      await b.page.goto(s.link);
      const [choose] = await Promise.all([b.page.waitForNavigation(), b.page.getByRole('link', { name: 'choose a new password' }).click()]);
      expect(choose!.status()).toBe(200);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Choose a password');
      await checkPage(b.page, choose, 'choose-password', b);
      await b.page.getByLabel('New password (at least 8 characters)').fill('remembered now');
      const done = await submit(b.page, 'Set password and activate');
      expect(done!.status()).toBe(200);
      expect(await login(s.userId, 'remembered now')).toBe(true);
    } finally {
      await b.context.close();
    }
  });

  it('still activating (no worker running) → "check again" → active once the worker is back', async () => {
    const s = await signupFor('slow worker pw');
    const b = await openBrowser();
    await h.stopWorker();
    try {
      await b.page.goto(s.link);
      await b.page.getByLabel('The password you chose when you signed up').fill('slow worker pw');
      const activating = await submit(b.page, 'Confirm and activate');
      expect(activating!.status()).toBe(202);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Almost done');
      await checkPage(b.page, activating, 'activating', b);
      await h.startWorker();
      await eventually(async () => (await h.db('signups').where({ user_id: s.userId }).first()).state === 'active', { timeoutMs: 30_000 });
      const [again] = await Promise.all([b.page.waitForNavigation(), b.page.getByRole('link', { name: 'Check again' }).click()]);
      expect(again!.status()).toBe(200);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Your account is active');
    } finally {
      await h.startWorker();
      await b.context.close();
    }
  }, 90_000);

  it('invalid or expired link → the form for a new link (tenant and email) → check your email, and a new mail', async () => {
    const s = await signupFor('password one');
    await new Promise((r) => setTimeout(r, 1_100)); // past the resend interval
    const b = await openBrowser();
    try {
      const opened = await b.page.goto(`${h.api.url}/api/v0/signups/verify?token=${'Z'.repeat(43)}`);
      expect(opened!.status()).toBe(410);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('This link cannot be used');
      await checkPage(b.page, opened, 'invalid', b);
      expect(await b.page.locator('form[action="resend"] input[name="tenant"]').getAttribute('value')).toBe('default');
      await b.page.getByLabel('Your email address').fill(s.address);
      const sent = await submit(b.page, 'Send me a new link');
      expect(sent!.status()).toBe(202);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Check your email');
      await checkPage(b.page, sent, 'resend-sent', b);
      await eventually(() => h.mail.to(s.address).length >= 2);
      // The old link is now invalid too, and offers the same form.
      const old = await b.page.goto(s.link);
      expect(old!.status()).toBe(410);
    } finally {
      await b.context.close();
    }
  });

  it('rate limited → "too many attempts"', async () => {
    const b = await openBrowser();
    try {
      const link = `${h.api.url}/api/v0/signups/verify?token=${'Y'.repeat(43)}`;
      for (let i = 0; i < 30; i++) await fetch(link, { method: 'HEAD', headers: { 'x-forwarded-for': b.clientIp } });
      const limited = await b.page.goto(link);
      expect(limited!.status()).toBe(429);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Too many attempts');
      await checkPage(b.page, limited, 'rate-limited', b);
    } finally {
      await b.context.close();
    }
  });

  it('PostgreSQL unreachable → "temporarily unavailable" with a way to try again', async () => {
    // An API replica whose database is a closed port.
    const deadDb: Db = createDb({ url: `postgres://postgres:postgres@127.0.0.1:${await freePort()}/none`, log: h.log });
    const replica: RunningApi = await startApi({ ...h.config, http: { ...h.config.http, port: 0 } }, { db: deadDb, log: h.log, keys: resolveKeys(h.config, h.log) });
    const b = await openBrowser();
    try {
      const s = await signupFor('outage password');
      const url = new URL(s.link);
      const down = await b.page.goto(`${replica.url}${url.pathname}${url.search}`);
      expect(down!.status()).toBe(503);
      await expect(b.page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Temporarily unavailable');
      b.requests.length = 0; // the replica is another origin than h.api; check its own page alone
      expect(await b.page.getByRole('link', { name: 'Try again' }).getAttribute('href')).toBe(`verify?token=${url.searchParams.get('token')}`);
      const headers = await down!.allHeaders();
      expect(headers['referrer-policy']).toBe('no-referrer');
      expect(headers['retry-after']).toBe('5');
      // A form post meeting the outage gets the same page, whose "Try again" leads back to the
      // link's page (the password is never echoed into it).
      const posted = await fetch(`${replica.url}/api/v0/signups/verify`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', 'x-forwarded-for': b.clientIp },
        body: new URLSearchParams({ token: url.searchParams.get('token')!, password: 'outage password' }).toString(),
      });
      expect(posted.status).toBe(503);
      const postedPage = await posted.text();
      expect(postedPage).toContain(`<a href="verify?token=${url.searchParams.get('token')}">Try again</a>`);
      expect(postedPage).not.toContain('outage password');
      mkdirSync(ARTIFACTS, { recursive: true });
      await b.page.screenshot({ path: path.join(ARTIFACTS, 'unavailable.png'), fullPage: true });
      if (process.env.UPDATE_SCREENSHOTS === '1') copyFileSync(path.join(ARTIFACTS, 'unavailable.png'), path.join(DOCS, 'unavailable.png'));
    } finally {
      await b.context.close();
      await replica.close();
      await deadDb.destroy();
    }
  });
});
