// node --test loadtest/k6/lib/   (Node 20; no dependencies)
//
// The seed-file contract and the form bodies, as k6 and check-seed-file.mjs
// both use them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import {
  base64url,
  DEFAULT_CLIENT_ID,
  DEFAULT_REDIRECT_URI,
  formBody,
  formEncode,
  parseSeeds,
  seedDefaults,
  wrongVerifier,
} from './codes.js';

// RFC 7636 Appendix B's verifier: 43 valid characters.
const V = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
const D = { client_id: 'web', redirect_uri: 'https://app.test/cb' };
const line = (o) => JSON.stringify(o);

test('a full line is taken as written', () => {
  const [seed] = parseSeeds(line({ code: 'c1', code_verifier: V, client_id: 'mobile', redirect_uri: 'https://m/cb' }), {
    defaults: D,
  });
  assert.deepEqual(seed, { code: 'c1', code_verifier: V, client_id: 'mobile', redirect_uri: 'https://m/cb' });
});

test('absent client_id and redirect_uri take the defaults', () => {
  const [seed] = parseSeeds(line({ code: 'c1', code_verifier: V }), { defaults: D });
  assert.equal(seed.client_id, 'web');
  assert.equal(seed.redirect_uri, 'https://app.test/cb');
});

test('client_id null means the default; redirect_uri null or "" means none', () => {
  const seeds = parseSeeds(
    [
      line({ code: 'a', code_verifier: V, client_id: null, redirect_uri: null }),
      line({ code: 'b', code_verifier: V, redirect_uri: '' }),
    ].join('\n'),
    { defaults: D },
  );
  assert.equal(seeds[0].client_id, 'web');
  assert.equal(seeds[0].redirect_uri, null);
  assert.equal(seeds[1].redirect_uri, null);
});

test('unknown members are ignored (loadgen may add some)', () => {
  const [seed] = parseSeeds(line({ code: 'c', code_verifier: V, scope: 'openid', sub: 'u' }), { defaults: D });
  assert.deepEqual(Object.keys(seed).sort(), ['client_id', 'code', 'code_verifier', 'redirect_uri']);
});

test('blank lines, whitespace-only lines, CRLF and a trailing newline are fine', () => {
  const text = '\n' + line({ code: 'a', code_verifier: V }) + '\r\n   \n\t\n' + line({ code: 'b', code_verifier: V }) + '\r\n\n';
  assert.deepEqual(
    parseSeeds(text, { defaults: D }).map((s) => s.code),
    ['a', 'b'],
  );
});

test('a UTF-8 byte order mark before the first line is skipped', () => {
  assert.equal(parseSeeds('\uFEFF' + line({ code: 'a', code_verifier: V }), { defaults: D })[0].code, 'a');
});

test('a malformed line is an error naming the source and the line number', () => {
  const text = [line({ code: 'a', code_verifier: V }), '', '{"code": "b", "code_verifier": '].join('\n');
  assert.throws(() => parseSeeds(text, { source: 'codes.ndjson', defaults: D }), /^Error: codes\.ndjson line 3: not valid JSON/);
});

test('missing or ill-typed members are errors naming the line and the member', () => {
  const cases = [
    [{ code_verifier: V }, /line 2: "code" must be a non-empty string, got nothing \(member missing\)/],
    [{ code: '', code_verifier: V }, /line 2: "code" must be a non-empty string, got an empty string/],
    [{ code: 7, code_verifier: V }, /line 2: "code" must be a non-empty string, got a number/],
    [{ code: 'x' }, /line 2: "code_verifier" must be a string, got nothing/],
    [{ code: 'x', code_verifier: 'short' }, /line 2: "code_verifier" must be 43 to 128 characters/],
    [{ code: 'x', code_verifier: V.slice(0, 42) + '+' }, /line 2: "code_verifier" must be 43 to 128/],
    [{ code: 'x', code_verifier: V, client_id: '' }, /line 2: "client_id" must be a non-empty string/],
    [{ code: 'x', code_verifier: V, client_id: 3 }, /line 2: "client_id" must be a non-empty string, got a number/],
    [{ code: 'x', code_verifier: V, redirect_uri: ['u'] }, /line 2: "redirect_uri" must be a string or null, got an array/],
  ];
  for (const [obj, re] of cases) {
    const text = line({ code: 'first', code_verifier: V }) + '\n' + line(obj);
    assert.throws(() => parseSeeds(text, { defaults: D }), re, JSON.stringify(obj));
  }
});

test('a line that is JSON but not an object is an error', () => {
  for (const bad of ['[]', '"code"', '42', 'null', 'true']) {
    assert.throws(() => parseSeeds(bad, { defaults: D }), /line 1: expected a JSON object/, bad);
  }
});

test('a code listed twice is an error naming both lines', () => {
  const text = [line({ code: 'a', code_verifier: V }), line({ code: 'b', code_verifier: V }), line({ code: 'a', code_verifier: V })].join('\n');
  assert.throws(() => parseSeeds(text, { defaults: D }), /line 3: the code of line 1 again/);
});

test('a file without codes is an error', () => {
  assert.throws(() => parseSeeds('', { source: 'f', defaults: D }), /^Error: f: no codes/);
  assert.throws(() => parseSeeds('\n \n', { source: 'f', defaults: D }), /^Error: f: no codes/);
});

test('an unpaired surrogate is refused at parse time, naming the line', () => {
  assert.throws(() => parseSeeds('{"code":"a\\ud800","code_verifier":"' + V + '"}', { defaults: D }), /line 1: "code" contains an unpaired/);
});

test('seedDefaults: CLIENT_ID and REDIRECT_URI from the environment', () => {
  assert.deepEqual(seedDefaults({}), { client_id: DEFAULT_CLIENT_ID, redirect_uri: DEFAULT_REDIRECT_URI });
  assert.deepEqual(seedDefaults({}), { client_id: 'loadtest', redirect_uri: 'https://app.test/cb' });
  assert.deepEqual(seedDefaults({ CLIENT_ID: 'demo', REDIRECT_URI: 'https://x/cb' }), {
    client_id: 'demo',
    redirect_uri: 'https://x/cb',
  });
  // REDIRECT_URI set but empty: send none.
  assert.equal(seedDefaults({ REDIRECT_URI: '' }).redirect_uri, null);
  assert.throws(() => seedDefaults({ CLIENT_ID: '' }), /CLIENT_ID is set but empty/);
});

test('parseSeeds without defaults uses the built-in ones', () => {
  const [seed] = parseSeeds(line({ code: 'a', code_verifier: V }));
  assert.equal(seed.client_id, 'loadtest');
  assert.equal(seed.redirect_uri, 'https://app.test/cb');
});

test('formBody: parameter order, and redirect_uri only when there is one', () => {
  const seed = { code: 'c1', code_verifier: V, client_id: 'web', redirect_uri: 'https://app.test/cb' };
  assert.equal(
    formBody(seed),
    `grant_type=authorization_code&code=c1&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&client_id=web&code_verifier=${V}`,
  );
  assert.equal(
    formBody({ ...seed, redirect_uri: null }),
    `grant_type=authorization_code&code=c1&client_id=web&code_verifier=${V}`,
  );
});

test('formBody: a redirect_uri with a query and spaces (space is "+", & = ? / : escaped)', () => {
  const seed = { code: 'c', code_verifier: V, client_id: 'web', redirect_uri: 'https://app.test/cb?a=b&c=d e f' };
  const body = formBody(seed);
  assert.match(body, /&redirect_uri=https%3A%2F%2Fapp\.test%2Fcb%3Fa%3Db%26c%3Dd\+e\+f&/);
  // And it decodes back to exactly the five parameters, the URI intact.
  const params = new URLSearchParams(body);
  assert.deepEqual([...params.keys()], ['grant_type', 'code', 'redirect_uri', 'client_id', 'code_verifier']);
  assert.equal(params.get('redirect_uri'), 'https://app.test/cb?a=b&c=d e f');
});

test('formBody: overrides replace the code or the verifier only', () => {
  const seed = { code: 'c', code_verifier: V, client_id: 'web', redirect_uri: null };
  const W = 'A'.repeat(43);
  assert.equal(formBody(seed, { code_verifier: W }), `grant_type=authorization_code&code=c&client_id=web&code_verifier=${W}`);
  assert.equal(formBody(seed, { code: 'z' }), `grant_type=authorization_code&code=z&client_id=web&code_verifier=${V}`);
});

test('formEncode: the application/x-www-form-urlencoded byte set', () => {
  assert.equal(formEncode('AZaz09*-._'), 'AZaz09*-._');
  assert.equal(formEncode(' '), '+');
  assert.equal(formEncode('+'), '%2B');
  assert.equal(formEncode("!'()~"), '%21%27%28%29%7E');
  assert.equal(formEncode('%'), '%25');
  assert.equal(formEncode('é€😀'), '%C3%A9%E2%82%AC%F0%9F%98%80');
});

test('formEncode agrees with URLSearchParams on every ASCII character and random Unicode', () => {
  const serialize = (s) => new URLSearchParams({ v: s }).toString().slice(2);
  for (let c = 0; c < 128; c++) {
    const s = String.fromCharCode(c);
    assert.equal(formEncode(s), serialize(s), `char ${c}`);
  }
  for (let i = 0; i < 500; i++) {
    const chars = [];
    for (let j = 0; j < 20; j++) {
      // Code points across the planes, skipping the surrogate range.
      let cp = Math.floor(Math.random() * 0x30000);
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      chars.push(String.fromCodePoint(cp));
    }
    const s = chars.join('');
    assert.equal(formEncode(s), serialize(s));
  }
});

test('base64url: RFC 4648 test vectors, without padding, URL alphabet', () => {
  const enc = (s) => base64url(Buffer.from(s, 'latin1'));
  assert.equal(enc(''), '');
  assert.equal(enc('f'), 'Zg');
  assert.equal(enc('fo'), 'Zm8');
  assert.equal(enc('foo'), 'Zm9v');
  assert.equal(enc('foob'), 'Zm9vYg');
  assert.equal(enc('fooba'), 'Zm9vYmE');
  assert.equal(enc('foobar'), 'Zm9vYmFy');
  assert.equal(base64url(Uint8Array.from([0xfb, 0xff])), '-_8');
  for (let i = 0; i < 50; i++) {
    const bytes = randomBytes(i);
    assert.equal(base64url(bytes), bytes.toString('base64url'));
  }
  assert.equal(base64url(randomBytes(32)).length, 43);
});

test('wrongVerifier: a valid verifier, never the right one', () => {
  const token = () => base64url(randomBytes(32));
  const w = wrongVerifier(V, token);
  assert.match(w, /^[A-Za-z0-9\-._~]{43}$/);
  assert.notEqual(w, V);
  // Even a generator that first returns the right verifier yields a wrong one.
  const queue = [V, V, 'B'.repeat(43)];
  assert.equal(wrongVerifier(V, () => queue.shift()), 'B'.repeat(43));
  assert.throws(() => wrongVerifier(V, () => 'short'), /valid RFC 7636 verifier/);
});
