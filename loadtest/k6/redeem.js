// k6 load test of POST /oauth/token with codes from a seed file (SEED=file,
// the default). See README.md in this directory for how to run it.
//
//   k6 run -e CODES_FILE="$PWD/codes.ndjson" -e SCENARIO=constant -e RATE=5000 loadtest/k6/redeem.js
//
// Codes seeded into Redis by k6 itself: redeem-redis.js. That script is
// separate because it imports k6's Redis module, which this one must not
// need: the module is deprecated in recent k6 releases (see README.md).

import { SharedArray } from 'k6/data';

import { parseSeeds, seedDefaults } from './lib/codes.js';
import { buildOptions, describePlan, requestPlan, sendNext } from './lib/run.js';

const SEED = __ENV.SEED || 'file';
if (SEED === 'redis') {
  throw new Error('SEED=redis: run redeem-redis.js, which seeds Redis in setup(); redeem.js reads CODES_FILE');
}
if (SEED !== 'file') {
  throw new Error(`SEED=${JSON.stringify(SEED)}: expected file (redeem.js) or redis (redeem-redis.js)`);
}

const CODES_FILE = __ENV.CODES_FILE;
if (!CODES_FILE) {
  throw new Error(
    'CODES_FILE is not set: pass -e CODES_FILE=/absolute/path/codes.ndjson ' +
      '(written by `loadgen seed --out` or `token-endpoint issue-code --format json --count N`)',
  );
}

// Parsed once, in the first init context; every VU then reads the same copy
// (a SharedArray hands out elements, it is not copied per VU). Parsing here,
// before the run, means a malformed line stops k6 at start-up with its line
// number, not in the middle of the measurement.
const seeds = new SharedArray('seed codes', () =>
  parseSeeds(open(CODES_FILE), { source: CODES_FILE, defaults: seedDefaults(__ENV) }),
);

// Exported for redeem-dpop.js, which sends the same requests with proofs.
export const codes = { get: (i) => seeds[i] };
export const requests = requestPlan(seeds.length);

export const options = buildOptions(requests, seeds.length);

export function setup() {
  console.log(describePlan(requests, seeds.length, `from ${CODES_FILE}`));
}

export default function () {
  sendNext(requests, codes);
}
