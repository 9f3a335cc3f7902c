// Runs the iRODS HTTP API test double (test/doubles) in its own process for the benchmarks, so the server's work
// does not share an event loop with the client being measured. Prints its base URL, then serves until killed.
'use strict';
const { readFileSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const ts = require('typescript');

const file = path.join(__dirname, '..', 'test', 'doubles', 'irods-http-api.double.ts');
const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
const double = new Module(file, module);
double.filename = file;
double.paths = module.paths;
double._compile(outputText, file);

const options = JSON.parse(process.argv[2] ?? '{}');
new double.exports.IrodsHttpApiDouble(options).start().then((server) => console.log(server.baseUrl));
