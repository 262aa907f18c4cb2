// Seed codes and token-request bodies: the pure part of the k6 load test.
//
// No k6 import here, on purpose: k6 (redeem.js) and Node (check-seed-file.mjs,
// codes.test.mjs) load this same file, so the body Node prints for the Rust
// integration test is byte for byte the body k6 sends.
//
// Seed file contract (written by `loadgen seed --out FILE` and by
// `token-endpoint issue-code --format json --count N`): NDJSON, one object a line,
//   {"code":"...","code_verifier":"...","client_id":"...","redirect_uri":"https://app.test/cb"}
// - `code`, `code_verifier`: required strings (the verifier per RFC 7636 §4.1);
// - `client_id`: optional; absent or null means the default (env CLIENT_ID);
// - `redirect_uri`: optional; absent means the default (env REDIRECT_URI),
//   null or "" means the code was issued without one, so none is sent;
// - other members are ignored; blank lines are ignored; anything else is an
//   error naming the line.

export const DEFAULT_CLIENT_ID = 'loadtest';
export const DEFAULT_REDIRECT_URI = 'https://app.test/cb';

// RFC 7636 §4.1: 43 to 128 characters of [A-Za-z0-9-._~].
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/**
 * The defaults a seed line falls back on, from an environment object
 * (k6's `__ENV` or Node's `process.env`):
 * - CLIENT_ID: unset means `loadtest`; set but empty is an error;
 * - REDIRECT_URI: unset means `https://app.test/cb`; set but empty means
 *   "send no redirect_uri".
 */
export function seedDefaults(env) {
  const clientId = env.CLIENT_ID === undefined ? DEFAULT_CLIENT_ID : env.CLIENT_ID;
  if (clientId === '') {
    throw new Error('CLIENT_ID is set but empty: unset it for the default `loadtest`, or name a client');
  }
  const redirect = env.REDIRECT_URI === undefined ? DEFAULT_REDIRECT_URI : env.REDIRECT_URI;
  return { client_id: clientId, redirect_uri: redirect === '' ? null : redirect };
}

/**
 * Parse NDJSON seed text into seed objects
 * `{code, code_verifier, client_id, redirect_uri}` with the defaults applied
 * (`redirect_uri` is a string, or null for none).
 *
 * `source` names the input in error messages ("codes.ndjson line 7: ...").
 * Throws on the first bad line, on a code listed twice (it would be redeemed
 * twice, and the second redemption is a replay), and on text without codes.
 */
export function parseSeeds(text, { source = 'seed file', defaults = seedDefaults({}) } = {}) {
  if (typeof text !== 'string') {
    throw new Error(`${source}: expected text, got ${typeof text}`);
  }
  // A UTF-8 byte order mark is not JSON whitespace; editors on some systems add one.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const seeds = [];
  const lineOfCode = new Map();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    // JSON.parse accepts surrounding whitespace, so a CRLF file needs no special case.
    if (line.trim() === '') continue;
    const where = `${source} line ${i + 1}`;
    let value;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${e.message})`);
    }
    const seed = seedFromObject(value, defaults, where);
    const earlier = lineOfCode.get(seed.code);
    if (earlier !== undefined) {
      throw new Error(`${where}: the code of line ${earlier} again; each code can be redeemed once`);
    }
    lineOfCode.set(seed.code, i + 1);
    seeds.push(seed);
  }
  if (seeds.length === 0) {
    throw new Error(`${source}: no codes (the file is empty or has only blank lines)`);
  }
  return seeds;
}

/** One parsed line to a seed, or an error naming `where`. */
export function seedFromObject(value, defaults, where) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${where}: expected a JSON object, got ${describe(value)}`);
  }
  const code = value.code;
  if (typeof code !== 'string' || code === '') {
    throw new Error(`${where}: "code" must be a non-empty string, got ${describe(code)}`);
  }
  const verifier = value.code_verifier;
  if (typeof verifier !== 'string') {
    throw new Error(`${where}: "code_verifier" must be a string, got ${describe(verifier)}`);
  }
  if (!VERIFIER.test(verifier)) {
    throw new Error(
      `${where}: "code_verifier" must be 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)`,
    );
  }
  let clientId = value.client_id;
  if (clientId === undefined || clientId === null) {
    clientId = defaults.client_id;
  } else if (typeof clientId !== 'string' || clientId === '') {
    throw new Error(`${where}: "client_id" must be a non-empty string, got ${describe(clientId)}`);
  }
  let redirect;
  if (!('redirect_uri' in value)) {
    redirect = defaults.redirect_uri;
  } else if (value.redirect_uri === null || value.redirect_uri === '') {
    redirect = null;
  } else if (typeof value.redirect_uri === 'string') {
    redirect = value.redirect_uri;
  } else {
    throw new Error(`${where}: "redirect_uri" must be a string or null, got ${describe(value.redirect_uri)}`);
  }
  const seed = { code, code_verifier: verifier, client_id: clientId, redirect_uri: redirect };
  // Fail here, naming the line, rather than mid-run in formEncode.
  for (const name of ['code', 'client_id', 'redirect_uri']) {
    if (seed[name] !== null && !isWellFormed(seed[name])) {
      throw new Error(`${where}: "${name}" contains an unpaired UTF-16 surrogate`);
    }
  }
  return seed;
}

/**
 * The token request body (RFC 6749 §4.1.3) for `seed`, in this order:
 * grant_type, code, redirect_uri (only when the seed has one), client_id,
 * code_verifier. `override` replaces `code` and/or `code_verifier`: the mix's
 * unknown-code and wrong-verifier requests.
 */
export function formBody(seed, override = {}) {
  const code = override.code === undefined ? seed.code : override.code;
  const verifier = override.code_verifier === undefined ? seed.code_verifier : override.code_verifier;
  let body = 'grant_type=authorization_code&code=' + formEncode(code);
  if (seed.redirect_uri !== null && seed.redirect_uri !== undefined) {
    body += '&redirect_uri=' + formEncode(seed.redirect_uri);
  }
  body += '&client_id=' + formEncode(seed.client_id) + '&code_verifier=' + formEncode(verifier);
  return body;
}

/**
 * application/x-www-form-urlencoded serialization of one name or value
 * (WHATWG URL Standard, "urlencoded serializer"): UTF-8, then every byte but
 * ASCII alphanumerics and `*-._` percent-encoded with upper-case hex, and the
 * space as `+`. This is what `URLSearchParams` produces; k6 has no
 * `URLSearchParams`, hence this function.
 *
 * encodeURIComponent leaves `A-Za-z0-9-_.!~*'()` alone: `*` may stay, the
 * other four and `~` must be escaped, and its `%20` becomes `+`.
 */
export function formEncode(value) {
  return encodeURIComponent(value)
    .replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%20/g, '+');
}

/**
 * base64url without padding (RFC 4648 §5) of a byte array: 32 random bytes
 * give a 43-character verifier or code, as RFC 7636 §4.1 recommends. k6 has
 * its own encoder (`encoding.b64encode(buf, 'rawurl')`); this one is for
 * callers without it (Node tests).
 */
export function base64url(bytes) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63];
  }
  return out;
}

/**
 * A fresh random verifier that is not `current`, from `randomToken` (a
 * function returning 43 base64url characters of fresh randomness: k6 passes
 * one built on k6/crypto, Node on node:crypto). 256 random bits never repeat
 * in practice; the loop only makes "wrong" hold by construction.
 */
export function wrongVerifier(current, randomToken) {
  let candidate = randomToken();
  while (candidate === current) candidate = randomToken();
  if (!VERIFIER.test(candidate)) {
    throw new Error('randomToken() must return a valid RFC 7636 verifier (43+ base64url characters)');
  }
  return candidate;
}

function isWellFormed(s) {
  try {
    encodeURIComponent(s);
    return true;
  } catch (_) {
    return false;
  }
}

function describe(value) {
  if (value === undefined) return 'nothing (member missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value === '' ? 'an empty string' : 'a string';
  return `a ${typeof value}`;
}
