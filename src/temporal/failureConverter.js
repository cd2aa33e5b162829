// Loaded by path by the Temporal SDK (worker, workflow bundle and clients), hence plain JavaScript.
// Failure messages and stack traces are moved into an encoded payload, so the encryption codec
// covers them too: an error message can carry personal data.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
