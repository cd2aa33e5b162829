/**
 * The bench worker's workflows: every workflow of the service, plus a no-op workflow whose
 * throughput is the baseline of the signup benchmark (how fast this dev server and this worker
 * run the cheapest possible workflow). Bundled with bundleWorkflowCode by bench/stack.ts.
 */
export * from '../src/workflows';

/** Does nothing: one workflow task, then the run completes. */
export async function noopWorkflow(): Promise<void> {
  // Nothing: the cost measured is Temporal's own (start, one workflow task, completion, result).
}
