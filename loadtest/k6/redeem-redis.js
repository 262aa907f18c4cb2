// k6 load test of POST /oauth/token with codes that k6 itself seeds into Redis
// in setup(), as the login frontend would (SEED=redis). Same scenarios, mix,
// checks and thresholds as redeem.js; see README.md in this directory.
//
//   k6 run -e SCENARIO=constant -e RATE=2000 -e DURATION=20s \
//          -e REDIS_URL=redis://127.0.0.1:6379 loadtest/k6/redeem-redis.js
//
// For moderate code counts only: setup()'s return value is copied into every
// VU that runs an iteration (k6 serializes it once and each VU parses its own
// copy). Tens of thousands of codes are fine; for hundreds of thousands, seed a
// file with `loadgen seed` and run redeem.js, whose SharedArray keeps one copy.
//
// The Redis module: 'k6/experimental/redis' is built into k6 from v0.40 to the
// 1.x releases (deprecated late in 1.x). Releases that removed it serve the
// same Client API as the extension 'k6/x/redis', which k6 resolves and builds
// automatically: on such a k6, change the import below to 'k6/x/redis'.

import redis from 'k6/experimental/redis';
import crypto from 'k6/crypto';

import { seedDefaults } from './lib/codes.js';
import { SCOPE, buildOptions, codesNeeded, describePlan, plan, randomToken, requestPlan, sendNext } from './lib/run.js';

const SEED = __ENV.SEED || 'redis';
if (SEED !== 'redis') {
  throw new Error(`SEED=${JSON.stringify(SEED)}: redeem-redis.js seeds Redis; for a seed file run redeem.js`);
}

const REDIS_URL = __ENV.REDIS_URL || 'redis://127.0.0.1:6379';
const KEY_PREFIX = __ENV.KEY_PREFIX === undefined ? 'oauth:' : __ENV.KEY_PREFIX;
const CODE_TTL = positiveInt('CODE_TTL', 600);
const SUB = __ENV.SUB || 'loadtest-user';
const DEFAULTS = seedDefaults(__ENV);

// CODES defaults to exactly what the scenario can use (its planned requests,
// less the mix's share); `closed` plans no count, so it needs CODES.
const CODES = (() => {
  if (__ENV.CODES !== undefined && __ENV.CODES !== '') return positiveInt('CODES', 0);
  const needed = codesNeeded();
  if (needed === null) {
    throw new Error('CODES is not set: SCENARIO=closed needs a code count (e.g. -e CODES=50000)');
  }
  return needed;
})();

// Codes and verifiers are both 43 characters (32 random bytes, base64url), so
// setup() hands them over packed in one string: code i is at 86·i, its
// verifier at 86·i + 43. One string is far cheaper for each VU to receive than
// an array of pairs.
const WIDTH = 43;
const RECORD = 2 * WIDTH;
// SETs in flight at once while seeding.
const SEED_BATCH = 1000;

// The connection is made on first use, so only setup() connects.
const client = new redis.Client(REDIS_URL);

const requests = requestPlan(CODES);

export const options = buildOptions(requests, CODES, { setupTimeout: __ENV.SETUP_TIMEOUT || '10m' });

/**
 * Write CODES records as the frontend contract says (README, "Contract with
 * the login frontend"): key `<prefix>code:{<code>}`, value the record JSON,
 * TTL CODE_TTL seconds. The contract's SET also has NX; k6's `set` has no NX
 * option, and with 256-bit random codes no key can already exist.
 */
export async function setup() {
  if (CODE_TTL <= plan.seconds) {
    console.warn(
      `CODE_TTL=${CODE_TTL} s is not longer than the ${plan.seconds} s scenario: ` +
        'codes redeemed late in the run will have expired (unknown_code)',
    );
  }
  const parts = [];
  for (let start = 0; start < CODES; start += SEED_BATCH) {
    const end = Math.min(CODES, start + SEED_BATCH);
    const writes = [];
    for (let i = start; i < end; i++) {
      const code = randomToken();
      const verifier = randomToken();
      if (code.length !== WIDTH || verifier.length !== WIDTH) {
        // The packing below relies on it; 'rawurl' must mean unpadded base64url.
        throw new Error(`randomToken() gave ${code.length} characters, expected ${WIDTH}`);
      }
      const record = {
        client_id: DEFAULTS.client_id,
        code_challenge: crypto.sha256(verifier, 'base64rawurl'),
        code_challenge_method: 'S256',
        sub: SUB,
        scope: SCOPE,
      };
      if (DEFAULTS.redirect_uri !== null) record.redirect_uri = DEFAULTS.redirect_uri;
      writes.push(client.set(`${KEY_PREFIX}code:{${code}}`, JSON.stringify(record), CODE_TTL));
      parts.push(code + verifier);
    }
    await Promise.all(writes);
    if (end % 50000 === 0 && end < CODES) console.log(`seeded ${end} of ${CODES} codes`);
  }
  console.log(describePlan(requests, CODES, `seeded into ${REDIS_URL} (prefix ${JSON.stringify(KEY_PREFIX)}, TTL ${CODE_TTL} s)`));
  return {
    client_id: DEFAULTS.client_id,
    redirect_uri: DEFAULTS.redirect_uri,
    packed: parts.join(''),
  };
}

// Built on each VU's first iteration from its copy of the setup data.
let codes = null;

export default function (data) {
  if (codes === null) {
    const packed = data.packed;
    codes = {
      get: (i) => ({
        code: packed.substr(i * RECORD, WIDTH),
        code_verifier: packed.substr(i * RECORD + WIDTH, WIDTH),
        client_id: data.client_id,
        redirect_uri: data.redirect_uri,
      }),
    };
  }
  sendNext(requests, codes);
}

function positiveInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a positive integer`);
  }
  return Number(raw);
}
