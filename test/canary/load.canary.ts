// Exit-status canary (scripts/check-exit-status.sh): a file that fails to load must fail the run.
import { it } from 'vitest';
// @ts-expect-error: the module does not exist, on purpose
import { doesNotExist } from './no-such-module';

it('never runs: the file does not load', () => {
  doesNotExist();
});
