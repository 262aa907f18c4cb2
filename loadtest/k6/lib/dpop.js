// DPoP proofs (RFC 9449 §4.2), ES256 over WebCrypto: the pure part of the
// k6 DPoP variant (redeem-dpop.js).
//
// No k6 import here, on purpose: k6 and Node both have WebCrypto
// (`crypto.subtle`), and both load this file, so the proof the Node test
// verifies is built by the very code k6 runs. Every function takes the
// SubtleCrypto object to use.
//
// A proof is BASE64URL(header) . BASE64URL(payload) . BASE64URL(r || s):
//   header  {"typ":"dpop+jwt","alg":"ES256","jwk":{"crv":"P-256","kty":"EC","x":…,"y":…}}
//   payload {"jti":…,"htm":"POST","htu":…,"iat":…}
// WebCrypto's ECDSA signature is already r || s (IEEE P1363), which is
// what JWS ES256 wants (RFC 7518 §3.4); no DER conversion.

import { base64url } from './codes.js';

const ES256 = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: { name: 'SHA-256' } };

/** `{issuer}/oauth/token`: the `htu` of the service's proofs. */
export function tokenEndpoint(issuer) {
  return issuer.replace(/\/+$/, '') + '/oauth/token';
}

/**
 * A fresh P-256 key pair for one client (a k6 VU), with the public JWK
 * (RFC 7518 §6.2.1: kty, crv, x, y and nothing else) and the proof header
 * every proof it signs repeats, encoded once.
 */
export async function generateProofKey(subtle) {
  const pair = await subtle.generateKey(ES256, true, ['sign', 'verify']);
  // The raw public key is the uncompressed point 04 || x || y.
  const point = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  if (point.length !== 65 || point[0] !== 4) {
    throw new Error(`exportKey('raw') gave ${point.length} bytes, expected an uncompressed P-256 point`);
  }
  const jwk = {
    crv: 'P-256',
    kty: 'EC',
    x: base64url(point.subarray(1, 33)),
    y: base64url(point.subarray(33, 65)),
  };
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk };
  return { privateKey: pair.privateKey, jwk, headerPart: base64url(utf8(JSON.stringify(header))) };
}

/**
 * A proof for `htm htu`, signed by `key` (from generateProofKey), with this
 * `jti` (unique per request: 128 random bits, base64url, is plenty) and
 * `iat` (seconds since the epoch; default now).
 */
export async function dpopProof(subtle, key, { htu, jti, iat, htm = 'POST' }) {
  if (typeof jti !== 'string' || jti === '') throw new Error('a DPoP proof needs a jti');
  if (typeof htu !== 'string' || htu === '') throw new Error('a DPoP proof needs an htu');
  const claims = { jti, htm, htu, iat: iat === undefined ? Math.floor(Date.now() / 1000) : iat };
  const signingInput = key.headerPart + '.' + base64url(utf8(JSON.stringify(claims)));
  const signature = await subtle.sign(SIGN, key.privateKey, utf8(signingInput));
  return signingInput + '.' + base64url(new Uint8Array(signature));
}

/**
 * RFC 7638 thumbprint of an EC public JWK: SHA-256 over its required
 * members in lexicographic order, without spaces, base64url. What the
 * access token's `cnf.jkt` must be (RFC 9449 §6.1).
 */
export async function jwkThumbprint(subtle, jwk) {
  const members = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return base64url(new Uint8Array(await subtle.digest('SHA-256', utf8(members))));
}

/**
 * The UTF-8 bytes of a string. k6 has no TextEncoder; encodeURIComponent
 * produces UTF-8 percent-escapes, which are turned back into bytes.
 */
export function utf8(text) {
  const escaped = encodeURIComponent(text);
  const bytes = [];
  for (let i = 0; i < escaped.length; i++) {
    if (escaped[i] === '%') {
      bytes.push(parseInt(escaped.substr(i + 1, 2), 16));
      i += 2;
    } else {
      bytes.push(escaped.charCodeAt(i));
    }
  }
  return new Uint8Array(bytes);
}
