// node --test loadtest/k6/lib/   (Node 20; no dependencies)
//
// The DPoP proof builder k6 runs (dpop.js), checked with Node's own crypto:
// the signature is verified twice, by WebCrypto and by node:crypto's
// independent ECDSA (P1363 encoding), and the thumbprint against RFC 9449's
// example and a hash computed here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify, webcrypto } from 'node:crypto';

import { dpopProof, generateProofKey, jwkThumbprint, tokenEndpoint, utf8 } from './dpop.js';

const subtle = webcrypto.subtle;
const HTU = 'https://id.loadtest/oauth/token';

function decodePart(part) {
  assert.match(part, /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  return Buffer.from(part, 'base64url');
}

function parts(proof) {
  const p = proof.split('.');
  assert.equal(p.length, 3, 'a compact JWS');
  return { header: JSON.parse(decodePart(p[0])), payload: JSON.parse(decodePart(p[1])), p };
}

test('a proof has the header and claims RFC 9449 §4.2 asks for', async () => {
  const key = await generateProofKey(subtle);
  const proof = await dpopProof(subtle, key, { htu: HTU, jti: 'jti-1', iat: 1700000000 });
  const { header, payload } = parts(proof);
  assert.equal(header.typ, 'dpop+jwt');
  assert.equal(header.alg, 'ES256');
  assert.deepEqual(Object.keys(header.jwk).sort(), ['crv', 'kty', 'x', 'y'], 'public members only');
  assert.equal(header.jwk.kty, 'EC');
  assert.equal(header.jwk.crv, 'P-256');
  assert.equal(decodePart(header.jwk.x).length, 32);
  assert.equal(decodePart(header.jwk.y).length, 32);
  assert.deepEqual(payload, { jti: 'jti-1', htm: 'POST', htu: HTU, iat: 1700000000 });
});

test('the signature verifies with the header key, by WebCrypto and by node:crypto', async () => {
  const key = await generateProofKey(subtle);
  const proof = await dpopProof(subtle, key, { htu: HTU, jti: 'jti-2' });
  const { header, p } = parts(proof);
  const signingInput = Buffer.from(`${p[0]}.${p[1]}`, 'ascii');
  const signature = decodePart(p[2]);
  assert.equal(signature.length, 64, 'r || s, not DER');

  const imported = await subtle.importKey('jwk', header.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'verify',
  ]);
  const es256 = { name: 'ECDSA', hash: 'SHA-256' };
  assert.equal(await subtle.verify(es256, imported, signature, signingInput), true);

  const publicKey = createPublicKey({ key: header.jwk, format: 'jwk' });
  assert.equal(verify('sha256', signingInput, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature), true);

  // A changed claim no longer verifies.
  const forged = Buffer.from(`${p[0]}.${Buffer.from('{"jti":"x"}').toString('base64url')}`, 'ascii');
  assert.equal(await subtle.verify(es256, imported, signature, forged), false);
});

test('the thumbprint is RFC 7638 over the header key: RFC 9449 example, and recomputed here', async () => {
  // RFC 9449 §4.1's example key, and the cnf.jkt §6.1 derives from it.
  const example = {
    kty: 'EC',
    x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs',
    y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA',
    crv: 'P-256',
  };
  assert.equal(await jwkThumbprint(subtle, example), '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I');

  const key = await generateProofKey(subtle);
  const { header } = parts(await dpopProof(subtle, key, { htu: HTU, jti: 'jti-3' }));
  const canonical = `{"crv":"P-256","kty":"EC","x":"${header.jwk.x}","y":"${header.jwk.y}"}`;
  const expected = createHash('sha256').update(canonical).digest('base64url');
  assert.equal(await jwkThumbprint(subtle, header.jwk), expected);
  assert.equal(await jwkThumbprint(subtle, key.jwk), expected);
});

test('iat defaults to whole seconds; one key signs many proofs, each its own', async () => {
  const key = await generateProofKey(subtle);
  const a = parts(await dpopProof(subtle, key, { htu: HTU, jti: 'a' }));
  const b = parts(await dpopProof(subtle, key, { htu: HTU, jti: 'b' }));
  assert.ok(Number.isInteger(a.payload.iat));
  assert.deepEqual(a.header, b.header, 'the same key in every proof');
  assert.notEqual(a.p[2], b.p[2]);
  await assert.rejects(dpopProof(subtle, key, { htu: HTU }), /jti/);
  await assert.rejects(dpopProof(subtle, key, { jti: 'c' }), /htu/);
});

test('the htu is the issuer token endpoint; text is UTF-8', () => {
  assert.equal(tokenEndpoint('https://id.example/'), 'https://id.example/oauth/token');
  assert.equal(tokenEndpoint('http://127.0.0.1:8080'), 'http://127.0.0.1:8080/oauth/token');
  for (const text of ['ascii', 'é', '€ x', '𝄞', '']) {
    assert.deepEqual(utf8(text), new Uint8Array(new TextEncoder().encode(text)));
  }
});
