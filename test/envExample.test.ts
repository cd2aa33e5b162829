/**
 * .env.example and docker-compose.yml stay in step with the variables the service reads
 * (ENV_VARS in src/config.ts). Reads files only; needs none of the global test infrastructure.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARS } from '../src/config';

const ROOT = path.resolve(__dirname, '..');
const envExample = readFileSync(path.join(ROOT, '.env.example'), 'utf8');
const compose = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');

/** Read by `npm start` and the tests only; docker-compose.yml does not pass it to the containers. */
const DEV_ONLY = new Set(['TEMPORAL_CLI_PATH']);

/** Names set as `NAME=` at the start of a line. */
const documented = new Set([...envExample.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((m) => m[1]!));

/**
 * Names docker-compose.yml interpolates: `${NAME}`, `${NAME:-default}`, `${NAME:?message}`
 * outside comments (`$${…}` is an escaped `$`, not interpolation).
 */
const composeWithoutComments = compose
  .split('\n')
  .filter((line) => !line.trimStart().startsWith('#'))
  .join('\n');
const interpolated = new Set(
  [...composeWithoutComments.matchAll(/(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!),
);

/** Keys of the `x-app-environment` block: what the API and worker containers get. */
function appEnvironmentKeys(): Set<string> {
  const lines = compose.split('\n');
  const start = lines.findIndex((line) => /^x-app-environment:/.test(line));
  expect(start, 'docker-compose.yml has an x-app-environment block').toBeGreaterThanOrEqual(0);
  const keys = new Set<string>();
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const key = /^ {2}([A-Za-z_][A-Za-z0-9_]*):/.exec(line);
    if (!key) break;
    keys.add(key[1]!);
  }
  return keys;
}

describe('.env.example', () => {
  it('lists every variable the service reads', () => {
    expect(ENV_VARS.length).toBeGreaterThan(10);
    const missing = ENV_VARS.filter((name) => !documented.has(name));
    expect(missing, 'add these to .env.example as NAME=value with a comment').toEqual([]);
  });

  it('lists every variable docker-compose.yml interpolates', () => {
    expect(interpolated.size).toBeGreaterThan(0);
    const missing = [...interpolated].filter((name) => !documented.has(name));
    expect(missing, 'add these to .env.example as NAME=value with a comment').toEqual([]);
  });

  it('lists the app variables docker-compose.yml interpolates (those in ENV_VARS)', () => {
    const appVars = [...interpolated].filter((name) => ENV_VARS.includes(name));
    expect(appVars.length).toBeGreaterThan(10);
    expect(appVars.filter((name) => !documented.has(name))).toEqual([]);
  });
});

describe('docker-compose.yml', () => {
  it('passes every variable the service reads to the API and the workers', () => {
    const passed = appEnvironmentKeys();
    const missing = ENV_VARS.filter((name) => !DEV_ONLY.has(name) && !passed.has(name));
    expect(missing, 'add these to x-app-environment in docker-compose.yml').toEqual([]);
  });
});
