// Scenario, request mix, request plan and thresholds from environment
// variables: the pure part of the k6 test. No k6 import (Node tests it:
// plan.test.mjs).
//
// Every number a run depends on is read here, validated, and turned into the
// k6 scenario plus the number of iterations it can start at most, so the
// script can refuse to start with fewer codes than it needs instead of
// running out halfway through a curve.

export const SCENARIOS = ['constant', 'ramp', 'spike', 'closed'];
export const KINDS = ['redeem', 'replay', 'wrong_verifier', 'unknown'];

/**
 * The scenario named by SCENARIO (default `constant`):
 * `{ name, config, plannedIterations, closedLoop, seconds }`.
 * `config` is the k6 scenario object; `plannedIterations` is the most
 * iterations it can start (an arrival-rate executor starts at most its
 * schedule; dropped iterations only lower that), or null for `closed`, whose
 * count depends on the server's speed; `seconds` is its scheduled length.
 */
export function scenarioFromEnv(env) {
  const name = env.SCENARIO === undefined || env.SCENARIO === '' ? 'constant' : env.SCENARIO;
  const vus = () => {
    const pre = positiveInt(env, 'PRE_VUS', 50);
    const max = positiveInt(env, 'MAX_VUS', Math.max(500, pre));
    if (max < pre) throw new Error(`MAX_VUS (${max}) must be at least PRE_VUS (${pre})`);
    return { preAllocatedVUs: pre, maxVUs: max };
  };
  switch (name) {
    case 'constant': {
      const rate = positiveInt(env, 'RATE', 5000);
      const seconds = durationSeconds(env, 'DURATION', '30s');
      return {
        name,
        closedLoop: false,
        seconds,
        plannedIterations: Math.ceil(rate * seconds),
        config: Object.assign(
          { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: k6Duration(seconds) },
          vus(),
        ),
      };
    }
    case 'ramp': {
      // The curve: hold each rate for STEP_DURATION, then jump to the next,
      // from RATE_START up by RATE_STEP to RATE_MAX (the last step is RATE_MAX
      // itself). Steps, not a linear ramp, so each rate has a steady window to
      // read latency from; go past saturation to see where it bends.
      const start = positiveInt(env, 'RATE_START', 2000);
      const max = positiveInt(env, 'RATE_MAX', 20000);
      const step = positiveInt(env, 'RATE_STEP', 2000);
      const hold = durationSeconds(env, 'STEP_DURATION', '5s');
      if (max < start) throw new Error(`RATE_MAX (${max}) must be at least RATE_START (${start})`);
      const rates = [];
      for (let r = start; r < max; r += step) rates.push(r);
      rates.push(max);
      const stages = [];
      rates.forEach((r, i) => {
        if (i > 0) stages.push({ target: r, duration: '0s' }); // a 0 s stage is a jump
        stages.push({ target: r, duration: k6Duration(hold) });
      });
      return {
        name,
        closedLoop: false,
        seconds: hold * rates.length,
        plannedIterations: Math.ceil(rates.reduce((sum, r) => sum + r * hold, 0)),
        rates,
        config: Object.assign(
          { executor: 'ramping-arrival-rate', startRate: start, timeUnit: '1s', stages },
          vus(),
        ),
      };
    }
    case 'spike': {
      // Steady RATE_LOW for SPIKE_CALM, RATE_HIGH for SPIKE_HOLD (10 s), back
      // to RATE_LOW for SPIKE_CALM: how latency reacts to the jump and how
      // fast it recovers.
      const low = positiveInt(env, 'RATE_LOW', 1000);
      const high = positiveInt(env, 'RATE_HIGH', 10000);
      const calm = durationSeconds(env, 'SPIKE_CALM', '20s');
      const hold = durationSeconds(env, 'SPIKE_HOLD', '10s');
      return {
        name,
        closedLoop: false,
        seconds: 2 * calm + hold,
        plannedIterations: Math.ceil(2 * low * calm + high * hold),
        config: Object.assign(
          {
            executor: 'ramping-arrival-rate',
            startRate: low,
            timeUnit: '1s',
            stages: [
              { target: low, duration: k6Duration(calm) },
              { target: high, duration: '0s' },
              { target: high, duration: k6Duration(hold) },
              { target: low, duration: '0s' },
              { target: low, duration: k6Duration(calm) },
            ],
          },
          vus(),
        ),
      };
    }
    case 'closed': {
      // Closed loop: VUS connections, each sending its next request as soon
      // as the previous answer arrives. Throughput is the measurement.
      const seconds = durationSeconds(env, 'DURATION', '30s');
      return {
        name,
        closedLoop: true,
        seconds,
        plannedIterations: null,
        config: {
          executor: 'constant-vus',
          vus: positiveInt(env, 'VUS', 64),
          duration: k6Duration(seconds),
        },
      };
    }
    default:
      throw new Error(`SCENARIO=${JSON.stringify(name)}: expected one of ${SCENARIOS.join(', ')}`);
  }
}

/**
 * The request mix, as `loadgen run --mix` takes it: MIX_REPLAY,
 * MIX_WRONG_VERIFIER, MIX_UNKNOWN, each a share of *all* requests in [0, 1)
 * (default 0), adding up to less than 0.9. Every code still gets its one
 * rightful redemption; the mix adds requests around them (planJobs).
 */
export function mixFromEnv(env) {
  const mix = {
    replay: share(env, 'MIX_REPLAY'),
    wrong_verifier: share(env, 'MIX_WRONG_VERIFIER'),
    unknown: share(env, 'MIX_UNKNOWN'),
  };
  mix.total = mix.replay + mix.wrong_verifier + mix.unknown;
  if (mix.total >= 0.9) {
    throw new Error(
      `MIX_REPLAY + MIX_WRONG_VERIFIER + MIX_UNKNOWN = ${mix.total}: 0.9 or more leaves no room for redemptions`,
    );
  }
  return mix;
}

/**
 * How many codes later a replay comes: twice the most requests k6 can have
 * in flight (VUS for `closed`, MAX_VUS otherwise), as loadgen uses twice its
 * connections, so the redemption it repeats has almost surely been answered.
 * REPLAY_LAG overrides it.
 */
export function replayLagFromEnv(env, plan) {
  const inFlight = plan.closedLoop ? plan.config.vus : plan.config.maxVUs;
  return positiveInt(env, 'REPLAY_LAG', 2 * inFlight);
}

/** Fixed, so a plan is the same in every VU and in every run (as loadgen's). */
export const PLAN_SEED = 0x0a074c0d;

/**
 * The requests a run sends, in order, decided before it starts: for each code
 * k in seed order (the loadgen plan, `loadtest/src/plan.rs`):
 * - with probability share/(1 − total) each, so that every kind ends up with
 *   its share of all requests:
 *   - a wrong verifier for code k, just before its redemption;
 * - the redemption of code k (always);
 *   - an unknown code (random), sent with code k's client_id and redirect_uri;
 *   - a replay of code k − lag (once k ≥ lag), redeemed `lag` codes earlier.
 * A job is `[kind index in KINDS, code index]`. Stops after `codes` codes, or
 * at the first code boundary with at least `maxJobs` jobs.
 * Returns `{ jobs, codesUsed }` (`jobs` is null when `collect` is false: only
 * the count of codes is wanted).
 */
export function planJobs({ codes, mix, lag, maxJobs = Infinity, seed = PLAN_SEED, collect = true }) {
  const random = seededRandom(seed);
  const perRedeem = (s) => s / (1 - mix.total);
  const pWrong = perRedeem(mix.wrong_verifier);
  const pUnknown = perRedeem(mix.unknown);
  const pReplay = perRedeem(mix.replay);
  const jobs = collect ? [] : null;
  let count = 0;
  const push = (kind, code) => {
    if (collect) jobs.push([kind, code]);
    count++;
  };
  let k = 0;
  for (; k < codes && count < maxJobs; k++) {
    if (random() < pWrong) push(WRONG_VERIFIER, k);
    push(REDEEM, k);
    if (random() < pUnknown) push(UNKNOWN, k);
    // Draw even when k < lag, so the sequence of draws does not depend on it.
    if (random() < pReplay && k >= lag) push(REPLAY, k - lag);
  }
  return { jobs, codesUsed: k, jobCount: count };
}

/** The fewest codes whose plan holds at least `requests` requests. */
export function codesFor(requests, mix, lag) {
  if (mix.total === 0) return requests;
  return planJobs({ codes: Infinity, mix, lag, maxJobs: requests, collect: false }).codesUsed;
}

export const REDEEM = 0;
export const REPLAY = 1;
export const WRONG_VERIFIER = 2;
export const UNKNOWN = 3;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). Not for secrets. */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Thresholds (a failed threshold makes `k6 run` exit non-zero):
 * - redemptions: under 0.1% failed, p(99) latency under P99_MS (default 2 ms);
 * - every other kind in the mix: under 0.1% answered with anything but its
 *   expected 400 (its requests declare 400 as the expected status);
 * - checks: over 99.9% pass, overall and per kind in the mix;
 * - codes_exhausted: none, unless ALLOW_EXHAUSTION=1 (a run that ran out of
 *   codes did not offer the load it was asked to).
 * Thresholds are only set for kinds the mix sends: k6 would otherwise report
 * a threshold over a sub-metric with no samples.
 */
export function thresholdsFor(env, mix) {
  const p99 = positiveNumber(env, 'P99_MS', 2);
  const thresholds = {
    'http_req_failed{kind:redeem}': ['rate<0.001'],
    'http_req_duration{kind:redeem}': [`p(99)<${p99}`],
    checks: ['rate>0.999'],
  };
  thresholds['checks{kind:redeem}'] = ['rate>0.999'];
  for (const kind of KINDS) {
    if (kind !== 'redeem' && mix[kind] > 0) {
      thresholds[`http_req_failed{kind:${kind}}`] = ['rate<0.001'];
      thresholds[`checks{kind:${kind}}`] = ['rate>0.999'];
    }
  }
  if (!allowExhaustion(env)) thresholds.codes_exhausted = ['count==0'];
  return thresholds;
}

export function allowExhaustion(env) {
  return env.ALLOW_EXHAUSTION === '1' || env.ALLOW_EXHAUSTION === 'true';
}

/**
 * Refuse a scenario that can start more iterations (one request each) than
 * the codes provide requests for (`available`: the codes without a mix, the
 * plan's length with one): throws, naming the numbers and the ways out,
 * unless ALLOW_EXHAUSTION=1. `closed` plans no count, so it is never refused
 * here (codes_exhausted reports it instead).
 */
export function checkCodesSuffice(plan, available, codeCount, env) {
  if (plan.plannedIterations === null || available >= plan.plannedIterations) return;
  if (allowExhaustion(env)) return;
  const what =
    available === codeCount
      ? `there are only ${codeCount} codes`
      : `${codeCount} codes make only ${available} requests with this mix`;
  throw new Error(
    `SCENARIO=${plan.name} can start ${plan.plannedIterations} iterations, ` +
      `one request each, but ${what}. Seed more codes, lower the rate or the ` +
      'duration, or set ALLOW_EXHAUSTION=1 to run anyway (iterations past the ' +
      'last request send nothing and count in codes_exhausted).',
  );
}

/**
 * A k6-style duration ("30s", "2m", "1m30s", "500ms", "1h", or a bare number
 * of seconds) in seconds.
 */
export function parseDuration(text) {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  if (!/^(\d+(\.\d+)?(ms|h|m|s))+$/.test(s)) return NaN;
  const unit = { h: 3600, m: 60, s: 1, ms: 0.001 };
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let seconds = 0;
  let m;
  while ((m = re.exec(s)) !== null) seconds += Number(m[1]) * unit[m[2]];
  return seconds;
}

/** Seconds as a duration string k6 parses exactly. */
export function k6Duration(seconds) {
  return Number.isInteger(seconds) ? `${seconds}s` : `${Math.round(seconds * 1000)}ms`;
}

function durationSeconds(env, name, fallback) {
  const raw = env[name] === undefined || env[name] === '' ? fallback : env[name];
  const seconds = parseDuration(raw);
  if (!(seconds > 0)) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a duration such as 30s, 2m or 1m30s`);
  }
  return seconds;
}

function positiveInt(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a positive integer`);
  }
  return Number(raw);
}

function positiveNumber(env, name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!(n > 0) || !Number.isFinite(n)) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a positive number`);
  }
  return n;
}

function share(env, name) {
  const raw = env[name];
  if (raw === undefined || raw === '') return 0;
  const n = Number(raw);
  if (!(n >= 0 && n < 1)) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a share in [0, 1)`);
  }
  return n;
}
