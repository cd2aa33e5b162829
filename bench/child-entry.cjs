// Starts a TypeScript child (bench/worker-process.ts, bench/api-process.ts) the way production
// starts compiled JS: tsx is registered in this thread only, through its API. With
// `node --import tsx` it would be in execArgv, which Node hands to every worker thread, and the
// Temporal worker's workflow thread would then run with tsx's source maps on: the workflow
// sandbox captures a stack per promise, and each capture would pay for source-map lookups
// (measured: the workflow thread was the bottleneck while building waiting signups).
require('tsx/cjs/api').register();
process.setSourceMapsEnabled(false);
require(process.argv[2]);
