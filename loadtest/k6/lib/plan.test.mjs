// node --test loadtest/k6/lib/   (Node 20; no dependencies)
//
// Scenarios, the request mix and thresholds as redeem.js derives them from
// its environment.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  KINDS,
  REDEEM,
  REPLAY,
  UNKNOWN,
  WRONG_VERIFIER,
  checkCodesSuffice,
  codesFor,
  k6Duration,
  mixFromEnv,
  parseDuration,
  planJobs,
  replayLagFromEnv,
  scenarioFromEnv,
  seededRandom,
  thresholdsFor,
} from './plan.js';

test('constant: RATE 5000/s for 30 s by default, rate × duration codes', () => {
  const plan = scenarioFromEnv({});
  assert.equal(plan.name, 'constant');
  assert.deepEqual(plan.config, {
    executor: 'constant-arrival-rate',
    rate: 5000,
    timeUnit: '1s',
    duration: '30s',
    preAllocatedVUs: 50,
    maxVUs: 500,
  });
  assert.equal(plan.plannedIterations, 150000);
  const custom = scenarioFromEnv({ SCENARIO: 'constant', RATE: '200', DURATION: '1m30s', PRE_VUS: '10', MAX_VUS: '20' });
  assert.equal(custom.config.duration, '90s');
  assert.equal(custom.plannedIterations, 18000);
  assert.equal(custom.config.preAllocatedVUs, 10);
  assert.equal(custom.config.maxVUs, 20);
});

test('ramp: steps from RATE_START to RATE_MAX, each held STEP_DURATION, jumps between', () => {
  const plan = scenarioFromEnv({ SCENARIO: 'ramp', RATE_START: '1000', RATE_MAX: '3500', RATE_STEP: '1000', STEP_DURATION: '10s' });
  assert.deepEqual(plan.rates, [1000, 2000, 3000, 3500]);
  assert.equal(plan.config.executor, 'ramping-arrival-rate');
  assert.equal(plan.config.startRate, 1000);
  assert.deepEqual(plan.config.stages, [
    { target: 1000, duration: '10s' },
    { target: 2000, duration: '0s' },
    { target: 2000, duration: '10s' },
    { target: 3000, duration: '0s' },
    { target: 3000, duration: '10s' },
    { target: 3500, duration: '0s' },
    { target: 3500, duration: '10s' },
  ]);
  assert.equal(plan.plannedIterations, (1000 + 2000 + 3000 + 3500) * 10);
  assert.equal(plan.seconds, 40);
  // Defaults: 2k..20k in 2k steps of 5 s.
  const d = scenarioFromEnv({ SCENARIO: 'ramp' });
  assert.equal(d.rates.length, 10);
  assert.equal(d.plannedIterations, 550000);
  assert.throws(() => scenarioFromEnv({ SCENARIO: 'ramp', RATE_START: '5', RATE_MAX: '4' }), /RATE_MAX \(4\) must be at least RATE_START \(5\)/);
});

test('spike: low, 10 s high, low again', () => {
  const plan = scenarioFromEnv({ SCENARIO: 'spike' });
  assert.deepEqual(plan.config.stages, [
    { target: 1000, duration: '20s' },
    { target: 10000, duration: '0s' },
    { target: 10000, duration: '10s' },
    { target: 1000, duration: '0s' },
    { target: 1000, duration: '20s' },
  ]);
  assert.equal(plan.plannedIterations, 1000 * 40 + 10000 * 10);
  assert.equal(plan.seconds, 50);
});

test('closed: VUS (64) constant VUs, no planned count', () => {
  const plan = scenarioFromEnv({ SCENARIO: 'closed' });
  assert.deepEqual(plan.config, { executor: 'constant-vus', vus: 64, duration: '30s' });
  assert.equal(plan.plannedIterations, null);
  assert.equal(plan.closedLoop, true);
});

test('bad settings are errors naming the variable', () => {
  assert.throws(() => scenarioFromEnv({ SCENARIO: 'soak' }), /SCENARIO="soak": expected one of constant, ramp, spike, closed/);
  assert.throws(() => scenarioFromEnv({ RATE: '5k' }), /RATE="5k": expected a positive integer/);
  assert.throws(() => scenarioFromEnv({ RATE: '0' }), /RATE="0"/);
  assert.throws(() => scenarioFromEnv({ DURATION: '30 seconds' }), /DURATION="30 seconds": expected a duration/);
  assert.throws(() => scenarioFromEnv({ PRE_VUS: '100', MAX_VUS: '10' }), /MAX_VUS \(10\) must be at least PRE_VUS \(100\)/);
});

test('durations', () => {
  assert.equal(parseDuration('30s'), 30);
  assert.equal(parseDuration('2m'), 120);
  assert.equal(parseDuration('1m30s'), 90);
  assert.equal(parseDuration('1h'), 3600);
  assert.equal(parseDuration('500ms'), 0.5);
  assert.equal(parseDuration('45'), 45);
  assert.ok(Number.isNaN(parseDuration('')));
  assert.ok(Number.isNaN(parseDuration('10x')));
  assert.ok(Number.isNaN(parseDuration('s')));
  assert.equal(k6Duration(30), '30s');
  assert.equal(k6Duration(0.5), '500ms');
});

test('mix: shares of all requests in [0, 1), adding up to less than 0.9 (as loadgen --mix)', () => {
  assert.deepEqual(mixFromEnv({}), { replay: 0, wrong_verifier: 0, unknown: 0, total: 0 });
  const mix = mixFromEnv({ MIX_REPLAY: '0.05', MIX_WRONG_VERIFIER: '0.02', MIX_UNKNOWN: '0.02' });
  assert.ok(Math.abs(mix.total - 0.09) < 1e-12);
  assert.throws(() => mixFromEnv({ MIX_REPLAY: '0.5', MIX_UNKNOWN: '0.4' }), /0\.9 or more leaves no room/);
  assert.throws(() => mixFromEnv({ MIX_REPLAY: '1' }), /MIX_REPLAY="1": expected a share in \[0, 1\)/);
  assert.throws(() => mixFromEnv({ MIX_UNKNOWN: '-0.1' }), /MIX_UNKNOWN/);
  assert.throws(() => mixFromEnv({ MIX_WRONG_VERIFIER: 'lots' }), /MIX_WRONG_VERIFIER/);
});

test('replay lag: twice the requests k6 can have in flight, or REPLAY_LAG', () => {
  assert.equal(replayLagFromEnv({}, scenarioFromEnv({})), 1000); // 2 × MAX_VUS 500
  assert.equal(replayLagFromEnv({}, scenarioFromEnv({ SCENARIO: 'closed', VUS: '8' })), 16);
  assert.equal(replayLagFromEnv({ REPLAY_LAG: '3' }, scenarioFromEnv({})), 3);
});

test('plan: every code redeemed exactly once, in order; the others placed as loadgen places them', () => {
  const mix = mixFromEnv({ MIX_REPLAY: '0.1', MIX_WRONG_VERIFIER: '0.1', MIX_UNKNOWN: '0.1' });
  const lag = 50;
  const { jobs, codesUsed, jobCount } = planJobs({ codes: 20000, mix, lag });
  assert.equal(codesUsed, 20000);
  assert.equal(jobCount, jobs.length);
  const redeemedAt = new Map();
  let nextCode = 0;
  jobs.forEach(([kind, code], j) => {
    assert.ok(kind >= 0 && kind < KINDS.length);
    if (kind === REDEEM) {
      assert.equal(code, nextCode++, 'redemptions in seed order, each once');
      redeemedAt.set(code, j);
    } else if (kind === WRONG_VERIFIER) {
      assert.deepEqual(jobs[j + 1], [REDEEM, code], 'a wrong verifier just before its redemption');
    } else if (kind === UNKNOWN) {
      assert.deepEqual(jobs[j - 1], [REDEEM, code], 'an unknown code just after a redemption, with its client');
    } else {
      assert.equal(kind, REPLAY);
      assert.ok(redeemedAt.has(code), 'a replay repeats a code already redeemed');
      // It comes after the redemption of code + lag: `lag` codes later.
      assert.ok(redeemedAt.has(code + lag));
    }
  });
  assert.equal(nextCode, 20000);
  // Each kind gets its share of all requests (within sampling noise).
  const share = (k) => jobs.filter((job) => job[0] === k).length / jobs.length;
  assert.ok(Math.abs(share(WRONG_VERIFIER) - 0.1) < 0.01);
  assert.ok(Math.abs(share(UNKNOWN) - 0.1) < 0.01);
  // Replays start once `lag` codes are redeemed: a little under their share.
  assert.ok(Math.abs(share(REPLAY) - 0.1) < 0.01);
  assert.ok(Math.abs(share(REDEEM) - 0.7) < 0.01);
});

test('plan: the same in every call (one seed), and stops at a code boundary past maxJobs', () => {
  const mix = mixFromEnv({ MIX_REPLAY: '0.05', MIX_WRONG_VERIFIER: '0.02', MIX_UNKNOWN: '0.02' });
  const a = planJobs({ codes: 5000, mix, lag: 10 });
  const b = planJobs({ codes: 5000, mix, lag: 10 });
  assert.deepEqual(a, b);
  const cut = planJobs({ codes: 5000, mix, lag: 10, maxJobs: 1000 });
  assert.ok(cut.jobs.length >= 1000 && cut.jobs.length <= 1003);
  assert.deepEqual(cut.jobs, a.jobs.slice(0, cut.jobs.length));
  const last = cut.jobs.filter((j) => j[0] === REDEEM).pop();
  assert.equal(last[1], cut.codesUsed - 1);
  assert.deepEqual(planJobs({ codes: 5000, mix, lag: 10, maxJobs: 1000, collect: false }).codesUsed, cut.codesUsed);
});

test('codesFor: the fewest codes whose plan holds the requests', () => {
  assert.equal(codesFor(150000, mixFromEnv({}), 1000), 150000);
  const mix = mixFromEnv({ MIX_REPLAY: '0.05', MIX_WRONG_VERIFIER: '0.02', MIX_UNKNOWN: '0.02' });
  const codes = codesFor(10000, mix, 100);
  assert.ok(planJobs({ codes, mix, lag: 100 }).jobs.length >= 10000);
  assert.ok(planJobs({ codes: codes - 1, mix, lag: 100 }).jobs.length < 10000);
  assert.ok(Math.abs(codes / 10000 - 0.91) < 0.02);
});

test('seededRandom: repeatable, in [0, 1), roughly uniform', () => {
  const r1 = seededRandom(7);
  const r2 = seededRandom(7);
  let sum = 0;
  for (let i = 0; i < 10000; i++) {
    const x = r1();
    assert.equal(x, r2());
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
});

test('thresholds: redeem always, other kinds only when in the mix', () => {
  assert.deepEqual(thresholdsFor({}, mixFromEnv({})), {
    'http_req_failed{kind:redeem}': ['rate<0.001'],
    'http_req_duration{kind:redeem}': ['p(99)<2'],
    checks: ['rate>0.999'],
    'checks{kind:redeem}': ['rate>0.999'],
    codes_exhausted: ['count==0'],
  });
  const t = thresholdsFor({ P99_MS: '5.5', ALLOW_EXHAUSTION: '1' }, mixFromEnv({ MIX_REPLAY: '0.1' }));
  assert.deepEqual(t['checks{kind:redeem}'], ['rate>0.999']);
  assert.deepEqual(t['http_req_duration{kind:redeem}'], ['p(99)<5.5']);
  assert.deepEqual(t['http_req_failed{kind:replay}'], ['rate<0.001']);
  assert.deepEqual(t['checks{kind:replay}'], ['rate>0.999']);
  assert.equal(t['http_req_failed{kind:unknown}'], undefined);
  assert.equal(t.codes_exhausted, undefined);
  assert.throws(() => thresholdsFor({ P99_MS: 'fast' }, mixFromEnv({})), /P99_MS="fast"/);
});

test('too few requests for the plan: refused with the numbers, unless ALLOW_EXHAUSTION=1', () => {
  const plan = scenarioFromEnv({ RATE: '100', DURATION: '10s' });
  assert.doesNotThrow(() => checkCodesSuffice(plan, 1000, 1000, {}));
  assert.throws(() => checkCodesSuffice(plan, 999, 999, {}), /can start 1000 iterations, one request each, but there are only 999 codes/);
  assert.throws(() => checkCodesSuffice(plan, 990, 900, {}), /but 900 codes make only 990 requests with this mix/);
  assert.doesNotThrow(() => checkCodesSuffice(plan, 999, 999, { ALLOW_EXHAUSTION: '1' }));
  // closed plans no count: never refused up front.
  assert.doesNotThrow(() => checkCodesSuffice(scenarioFromEnv({ SCENARIO: 'closed' }), 1, 1, {}));
});
