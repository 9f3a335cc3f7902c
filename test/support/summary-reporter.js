// Prints a plain closing summary after jest's own: why each skipped suite skipped, then one line such as
// "tests: 156 passed, 0 failed, 2 skipped".
'use strict';

const SKIP_MARK = '(skipped: ';

class SummaryReporter {
  constructor() {
    this.skips = new Map();
  }

  onTestResult(_test, result) {
    for (const test of result.testResults) {
      if (test.status !== 'pending') continue;
      const suite = test.ancestorTitles.find((title) => title.includes(SKIP_MARK));
      if (suite) this.skips.set(suite, result.testFilePath);
    }
  }

  onRunComplete(_contexts, results) {
    for (const [suite, file] of this.skips) {
      const at = suite.indexOf(SKIP_MARK);
      process.stdout.write(`skipped "${suite.slice(0, at).trim()}" in ${file.replace(process.cwd() + '/', '')}: ${suite.slice(at + SKIP_MARK.length, -1)}\n`);
    }
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`tests: ${results.numPassedTests} passed, ${failed} failed, ${results.numPendingTests} skipped\n`);
  }
}

module.exports = SummaryReporter;
