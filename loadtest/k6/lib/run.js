// The k6 side of the load test, shared by redeem.js (codes from a seed file)
// and redeem-redis.js (codes seeded into Redis in setup()): options, metrics,
// the request plan, and one iteration = one POST /oauth/token.
//
// Scenario, the Rust load generator's (`loadgen`, loadtest/src/): codes exist
// before the measured window starts; every code gets exactly one rightful
// redemption, in seed order; the mix adds replays, wrong verifiers and unknown
// codes around them; keep-alive connections (k6 keeps each VU's connection
// open across iterations, and noVUConnectionReuse stays false).

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';

import { formBody, wrongVerifier } from './codes.js';
import { dpopProof, generateProofKey, tokenEndpoint } from './dpop.js';
import {
  KINDS,
  REDEEM,
  UNKNOWN,
  WRONG_VERIFIER,
  checkCodesSuffice,
  codesFor,
  mixFromEnv,
  planJobs,
  replayLagFromEnv,
  scenarioFromEnv,
  thresholdsFor,
} from './plan.js';

export const plan = scenarioFromEnv(__ENV);
export const mix = mixFromEnv(__ENV);
const REPLAY_LAG = replayLagFromEnv(__ENV, plan);

const TARGET = (__ENV.TARGET || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TOKEN_URL = `${TARGET}/oauth/token`;
// DPoP (redeem-dpop.js): proofs are for POST {ISSUER}/oauth/token, the
// service's token_endpoint, which differs from TOKEN_URL behind a proxy.
const DPOP_HTU = tokenEndpoint(__ENV.ISSUER || TARGET);

/** The scope the codes were issued with; `openid` in it means an ID token is expected. */
export const SCOPE = __ENV.SCOPE === undefined ? 'openid profile' : __ENV.SCOPE;
const EXPECT_ID_TOKEN = SCOPE.split(' ').indexOf('openid') !== -1;

// Custom metrics (created in the init context, as k6 requires).
const redemptionsOk = new Counter('redemptions_ok');
const redemptionsFailed = new Counter('redemptions_failed');
const codesExhausted = new Counter('codes_exhausted');

// ORIGIN: send every request as a browser app at that origin would (the
// client must allow it, `allowed_cors_origins`): the CORS check and headers.
const FORM = __ENV.ORIGIN
  ? { 'Content-Type': 'application/x-www-form-urlencoded', Origin: __ENV.ORIGIN }
  : { 'Content-Type': 'application/x-www-form-urlencoded' };
// One params object per kind, built once. The expected status feeds
// http_req_failed: 200 for a redemption, 400 for the requests that must fail,
// so http_req_failed{kind:...} means "not answered as the contract says".
const PARAMS = KINDS.map((kind) => ({
  headers: FORM,
  tags: { kind },
  responseCallback: http.expectedStatuses(kind === 'redeem' ? 200 : 400),
}));
const TAGS = KINDS.map((kind) => ({ kind }));

function parsed(r) {
  try {
    return r.json();
  } catch (_) {
    return null;
  }
}

const REDEEM_CHECKS = {
  'redeem: status 200': (r) => r.status === 200,
  [EXPECT_ID_TOKEN ? 'redeem: access_token and id_token' : 'redeem: access_token']: (r) => {
    const body = parsed(r);
    return (
      body !== null &&
      typeof body.access_token === 'string' &&
      (!EXPECT_ID_TOKEN || typeof body.id_token === 'string')
    );
  },
};

// With a proof, the tokens must come back bound to its key (RFC 9449 §5).
const DPOP_REDEEM_CHECKS = Object.assign({}, REDEEM_CHECKS, {
  'redeem: token_type DPoP': (r) => {
    const body = parsed(r);
    return body !== null && body.token_type === 'DPoP';
  },
});

// Indexed like KINDS; the redeem entry is REDEEM_CHECKS (or DPOP_REDEEM_CHECKS).
function checksFor(redeemChecks) {
  return KINDS.map((kind) =>
    kind === 'redeem'
      ? redeemChecks
      : {
          [`${kind}: 400 invalid_grant`]: (r) => {
            if (r.status !== 400) return false;
            const body = parsed(r);
            return body !== null && body.error === 'invalid_grant';
          },
        },
  );
}
const CHECKS = checksFor(REDEEM_CHECKS);
const DPOP_CHECKS = checksFor(DPOP_REDEEM_CHECKS);

/** 256 random bits, base64url without padding: 43 characters (RFC 7636 §4.1). */
export function randomToken() {
  return encoding.b64encode(crypto.randomBytes(32), 'rawurl');
}

/**
 * The codes a scenario needs when nothing else says: its planned requests,
 * less the mix's share of them. Null for `closed`, which plans no count.
 */
export function codesNeeded() {
  if (plan.plannedIterations === null) return null;
  return codesFor(plan.plannedIterations, mix, REPLAY_LAG);
}

/**
 * The run's requests for `codeCount` codes, as `{count, get(j) -> [kind, code]}`.
 * Without a mix, request j redeems code j and nothing is stored. With one,
 * the plan (planJobs) is built once, in the first init context, into a
 * SharedArray all VUs read. Call from the init context.
 */
export function requestPlan(codeCount) {
  if (mix.total === 0) {
    return { count: codeCount, get: (j) => [REDEEM, j] };
  }
  const jobs = new SharedArray('request plan', () =>
    planJobs({ codes: codeCount, mix, lag: REPLAY_LAG }).jobs,
  );
  return { count: jobs.length, get: (j) => jobs[j] };
}

/**
 * The k6 options. Throws, before any VU starts, when the scenario can start
 * more iterations than `requests` holds (see checkCodesSuffice for why and
 * the ways out).
 */
export function buildOptions(requests, codeCount, extra) {
  checkCodesSuffice(plan, requests.count, codeCount, __ENV);
  const options = {
    scenarios: { [plan.name]: plan.config },
    thresholds: thresholdsFor(__ENV, mix),
    // p(99) is what the threshold judges, so show it (and p(99.9)) in the summary.
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(99)', 'p(99.9)'],
    noVUConnectionReuse: false,
  };
  return Object.assign(options, extra || {});
}

/** One line, printed once from setup(), saying what the run will do. */
export function describePlan(requests, codeCount, seeding) {
  const planned =
    plan.plannedIterations === null
      ? 'as many requests as the VUs manage'
      : `at most ${plan.plannedIterations} requests`;
  const shares = ['replay', 'wrong_verifier', 'unknown']
    .filter((k) => mix[k] > 0)
    .map((k) => `${k} ${Math.round(mix[k] * 1000) / 10}%`);
  const mixed = shares.length === 0 ? 'redemptions only' : `${shares.join(', ')} (replay lag ${REPLAY_LAG} codes)`;
  return (
    `${plan.name} (${plan.config.executor}, ${plan.seconds} s): ${planned}; ` +
    `${codeCount} codes ${seeding}, ${requests.count} requests planned; ${mixed}; POST ${TOKEN_URL}`
  );
}

/**
 * One iteration: request number `exec.scenario.iterationInTest` (unique
 * across all VUs, counted only for iterations that start) of `requests`, for
 * its code in `codes` (`{get(i) -> seed}`):
 *
 * - redeem: the code with its verifier; expect 200 with the tokens;
 * - replay: the same body as an earlier redemption; expect 400 invalid_grant;
 * - wrong_verifier: the code with a fresh random verifier, just before its
 *   redemption; expect 400 invalid_grant (and the redemption still succeeds:
 *   a failed check never consumes a code);
 * - unknown: a random code; expect 400 invalid_grant.
 *
 * Out of requests: count codes_exhausted and send nothing. The alternatives
 * are worse: exec.test.abort() throws the run away (its summary is marked
 * aborted), and reusing codes would turn redemptions into replays. The
 * arrival-rate scenarios refuse to start when they can start more iterations
 * than there are requests, so this only happens in `closed` (whose count
 * cannot be planned) or with ALLOW_EXHAUSTION=1; the codes_exhausted threshold
 * fails the run in the first case. A closed-loop VU then sleeps, so it does
 * not spin through empty iterations for the rest of the duration.
 */
export function sendNext(requests, codes) {
  const next = nextRequest(requests, codes);
  if (next === null) return;
  const res = http.post(TOKEN_URL, next.body, PARAMS[next.kind]);
  record(next.kind, check(res, CHECKS[next.kind], TAGS[next.kind]));
}

// This VU's DPoP key (each VU is one client, on its own connection), made
// on its first iteration.
let proofKey = null;

/**
 * sendNext with a DPoP proof of its own on every request (redeem-dpop.js):
 * ES256 with this VU's key, a fresh jti, iat now, for POST {ISSUER}/oauth/token.
 * A redemption must come back with token_type DPoP. The proof is signed in
 * the iteration but before the request, so http_req_duration does not
 * include it (the iteration's duration does).
 */
export async function sendNextDpop(requests, codes) {
  const next = nextRequest(requests, codes);
  if (next === null) return;
  const subtle = webCrypto();
  if (proofKey === null) proofKey = await generateProofKey(subtle);
  const proof = await dpopProof(subtle, proofKey, { htu: DPOP_HTU, jti: randomToken() });
  const params = Object.assign({}, PARAMS[next.kind], { headers: Object.assign({ DPoP: proof }, FORM) });
  const res = http.post(TOKEN_URL, next.body, params);
  record(next.kind, check(res, DPOP_CHECKS[next.kind], TAGS[next.kind]));
}

/** k6's WebCrypto (the global `crypto`; this module's `crypto` is k6/crypto). */
function webCrypto() {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) {
    throw new Error('this k6 has no WebCrypto (global crypto.subtle): redeem-dpop.js needs a k6 release that has it');
  }
  return subtle;
}

/**
 * The next request of the plan as `{kind, body}`, or null (after counting
 * codes_exhausted) when there is none left.
 */
function nextRequest(requests, codes) {
  const j = exec.scenario.iterationInTest;
  if (j >= requests.count) {
    codesExhausted.add(1);
    if (plan.closedLoop) sleep(1);
    return null;
  }
  const job = requests.get(j);
  const kind = job[0];
  const seed = codes.get(job[1]);

  let body;
  if (kind === WRONG_VERIFIER) {
    body = formBody(seed, { code_verifier: wrongVerifier(seed.code_verifier, randomToken) });
  } else if (kind === UNKNOWN) {
    body = formBody(seed, { code: randomToken(), code_verifier: randomToken() });
  } else {
    // A replay sends exactly what the code's redemption sent.
    body = formBody(seed);
  }
  return { kind, body };
}

function record(kind, passed) {
  if (kind === REDEEM) {
    if (passed) redemptionsOk.add(1);
    else redemptionsFailed.add(1);
  }
}
