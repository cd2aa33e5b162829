// Exit-status canary (scripts/check-exit-status.sh): a throwing hook must fail the run.
import { beforeAll, expect, it } from 'vitest';

beforeAll(() => {
  throw new Error('a hook that throws on purpose');
});

it('never runs: its beforeAll threw', () => {
  expect(true).toBe(true);
});
