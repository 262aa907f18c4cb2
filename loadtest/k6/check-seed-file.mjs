#!/usr/bin/env node
// Parse a seed file exactly as the k6 script does, and print the form body k6
// would send to redeem each code, one a line, in file order:
//
//   node loadtest/k6/check-seed-file.mjs FILE
//
// The parser and the body builder are lib/codes.js, the very module redeem.js
// imports, and CLIENT_ID / REDIRECT_URI are read from the environment with the
// same meaning. The Rust integration test POSTs each printed line to a real
// server and expects 200: that is how the seed-file contract between `loadgen`
// and the k6 script is checked without k6.
//
// Exit status: 0 with the bodies on stdout; 1 with the error on stderr when
// the file cannot be read or is malformed (the message names the line);
// 2 on wrong usage.

import { readFileSync } from 'node:fs';

import { formBody, parseSeeds, seedDefaults } from './lib/codes.js';

// process.exitCode rather than process.exit(): the latter can cut off output
// still queued for a pipe.
const args = process.argv.slice(2);
if (args.length !== 1 || args[0] === '-h' || args[0] === '--help') {
  process.stderr.write('usage: node loadtest/k6/check-seed-file.mjs FILE\n');
  process.exitCode = 2;
} else {
  const file = args[0];
  try {
    const seeds = parseSeeds(readFileSync(file, 'utf8'), {
      source: file,
      defaults: seedDefaults(process.env),
    });
    process.stdout.write(seeds.map((seed) => formBody(seed)).join('\n') + '\n');
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 1;
  }
}
