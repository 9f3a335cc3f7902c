// Prints one plain closing line after jest's own summary, e.g. "tests: 156 passed, 0 failed, 2 skipped".
'use strict';

class SummaryReporter {
  onRunComplete(_contexts, results) {
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`tests: ${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests} skipped\n`);
  }
}

module.exports = SummaryReporter;
