#!/usr/bin/env node
// Build DPoP proofs exactly as the k6 DPoP variant does (lib/dpop.js, the
// module redeem-dpop.js runs) and print them as one JSON object:
//
//   node loadtest/k6/print-dpop-proof.mjs HTU [COUNT]
//   {"jkt":"<RFC 7638 thumbprint>","proofs":["<JWS>", ...]}
//
// COUNT (default 1) proofs from one key, each with its own jti, iat now.
// The Rust integration test sends them to a real server: that is how the k6
// proof builder is checked against the service's verifier without k6.
//
// Exit status: 0 with the JSON on stdout; 2 on wrong usage.

import { randomBytes, webcrypto } from 'node:crypto';

import { base64url } from './lib/codes.js';
import { dpopProof, generateProofKey, jwkThumbprint } from './lib/dpop.js';

const args = process.argv.slice(2);
const count = args.length === 2 ? Number(args[1]) : 1;
if (args.length < 1 || args.length > 2 || !Number.isInteger(count) || count < 1 || args[0].startsWith('-')) {
  process.stderr.write('usage: node loadtest/k6/print-dpop-proof.mjs HTU [COUNT]\n');
  process.exitCode = 2;
} else {
  const subtle = webcrypto.subtle;
  const key = await generateProofKey(subtle);
  const proofs = [];
  for (let i = 0; i < count; i++) {
    proofs.push(await dpopProof(subtle, key, { htu: args[0], jti: base64url(randomBytes(16)) }));
  }
  process.stdout.write(JSON.stringify({ jkt: await jwkThumbprint(subtle, key.jwk), proofs }) + '\n');
}
