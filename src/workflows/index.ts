/** Every workflow the worker registers. Deterministic code only: no I/O, no clocks, no randomness. */
export { tmcUserWorkflow } from './tmcUser';
export { signupWorkflow, accountExistsNoticeWorkflow } from './signup';
export { headlessLmsImportWorkflow } from './headlessLmsImport';
