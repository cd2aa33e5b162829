// Exit-status canary (scripts/check-exit-status.sh): a failing assertion must fail the run.
import { expect, it } from 'vitest';

it('fails on purpose: 1 is not 2', () => {
  expect(1).toBe(2);
});
