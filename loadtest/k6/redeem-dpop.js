// k6 load test of POST /oauth/token with DPoP (RFC 9449): redeem.js's run
// (codes from a seed file, the same scenarios, mix, checks and thresholds),
// each request carrying a DPoP proof of its own. See README.md in this
// directory ("DPoP").
//
//   k6 run -e CODES_FILE="$PWD/codes.ndjson" -e SCENARIO=constant -e RATE=2000 \
//          -e ISSUER=https://id.example loadtest/k6/redeem-dpop.js
//
// Each VU is one client with its own P-256 key (WebCrypto, made on its
// first iteration); each request gets a fresh proof (new jti, iat now) for
// POST {ISSUER}/oauth/token, ISSUER defaulting to TARGET. A redemption
// passes only if its tokens come back bound (token_type DPoP). The proof
// builder is lib/dpop.js, tested under Node (`node --test loadtest/k6/lib/`).

import { codes, requests } from './redeem.js';
import { sendNextDpop } from './lib/run.js';

export { options, setup } from './redeem.js';

export default async function () {
  await sendNextDpop(requests, codes);
}
