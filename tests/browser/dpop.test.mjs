// DPoP (RFC 9449) from a real browser: the example SPA with `dpop=1` turns on
// oidc-client-ts's own DPoP (a non-extractable P-256 key pair in IndexedDB,
// a proof on the token request, the nonce retry, `dpop_jkt` with `bind=1`),
// in Debian's headless Chromium against the real binary. What the library
// sends is its own; these tests check that the service answers it as RFC 9449
// says, and record what was sent and answered when it does not.
//
// Each test runs in a browser context of its own, so it starts without a key.
// The thumbprints are computed here (support.mjs, jwkThumbprint) from the
// public key the library keeps, not taken from the library or the service.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkPrerequisites,
  clickSignIn,
  decodeJwt,
  forgetDpopKey,
  freePort,
  jwkThumbprint,
  launchBrowser,
  openSpa,
  serveSpa,
  settled,
  signIn,
  spaRegistry,
  startService,
  storedDpopKey,
} from "./support.mjs";

const CLIENT = "spa";
const work = mkdtempSync(join(tmpdir(), "token-endpoint-browser-dpop-"));
let browser;
let spaServer;
let origin;
let registry;
let service;
const contexts = [];

before(async () => {
  checkPrerequisites();
  const spaPort = await freePort();
  spaServer = await serveSpa(spaPort);
  origin = `http://localhost:${spaPort}`;
  registry = join(work, "clients.toml");
  writeFileSync(registry, spaRegistry(spaPort));
  service = await startService({
    TOKEN_ENDPOINT_CLIENTS_FILE: registry,
    TOKEN_ENDPOINT_DEV_ENDPOINTS: "on",
  });
  browser = await launchBrowser(join(work, "chromium"));
});

after(async () => {
  for (const context of contexts) {
    await context.close();
  }
  await browser?.close();
  service?.child.kill();
  spaServer?.close();
  rmSync(work, { recursive: true, force: true });
});

/** A browser context of its own: its own IndexedDB, so no key yet. */
async function freshContext() {
  const context = await browser.createBrowserContext();
  contexts.push(context);
  return context;
}

/** The header and claims of the DPoP proof on a recorded request, and its key's thumbprint. */
function proofOf(request) {
  const proof = request.headers.dpop;
  assert.ok(proof, `the token request carried no DPoP header: ${JSON.stringify(request.headers)}`);
  assert.equal(proof.split(".").length, 3, "a compact JWS");
  const { header, claims } = decodeJwt(proof);
  return { header, claims, jkt: jwkThumbprint(header.jwk) };
}

/**
 * What went back and forth at the token endpoint, for a failure message:
 * each request's DPoP proof (decoded) and each answer's status, headers and
 * body, with the tokens shortened to their `cnf`.
 */
async function exchanges(seen, log) {
  const lines = [];
  for (const [i, request] of seen.tokenRequests.entries()) {
    const answer = seen.tokenResponses[i];
    const proof = request.headers.dpop ? decodeJwt(request.headers.dpop) : null;
    lines.push(`request ${i + 1}: DPoP ${proof ? JSON.stringify(proof) : "(none)"}`);
    if (!answer) {
      lines.push(`answer ${i + 1}: none`);
      continue;
    }
    const body = { ...(await answer.body) };
    if (body.access_token) {
      body.access_token = `<JWT, cnf ${JSON.stringify(decodeJwt(body.access_token).claims.cnf)}>`;
    }
    if (body.id_token) {
      body.id_token = "<JWT>";
    }
    lines.push(`answer ${i + 1}: ${answer.status} ${JSON.stringify(answer.headers)} ${JSON.stringify(body)}`);
  }
  return `${lines.join("\n")}\nservice log:\n${log()}`;
}

/**
 * A DPoP sign-in as it must end: the page got token type DPoP, the library
 * keeps a non-extractable key, the last token request carried a proof made
 * with that key for this token endpoint, and the access token is bound to
 * that key's thumbprint. Returns the thumbprint.
 */
async function assertDpopSignIn({ page, seen, result, authority, log }) {
  const context = await exchanges(seen, log);
  assert.equal(result.status, "signed in", `the page says: ${result.error}\n${context}`);
  const tokenResponse = seen.tokenResponses.at(-1);
  assert.equal(tokenResponse.status, 200, `the token request succeeded\n${context}`);
  assert.equal((await tokenResponse.body).token_type, "DPoP", `the service answered token_type DPoP\n${context}`);
  assert.equal(JSON.parse(result.response).token_type, "DPoP", "the library passed token_type on");

  const stored = await storedDpopKey(page, CLIENT);
  assert.ok(stored, "oidc-client-ts keeps a key pair in IndexedDB");
  assert.equal(stored.privateExtractable, false, "the private key is not extractable");
  assert.equal(stored.publicJwk.kty, "EC");
  assert.equal(stored.publicJwk.crv, "P-256");
  const jkt = jwkThumbprint(stored.publicJwk);

  const { header, claims, jkt: proofJkt } = proofOf(seen.tokenRequests.at(-1));
  assert.equal(header.typ, "dpop+jwt");
  assert.equal(header.alg, "ES256");
  assert.equal(header.jwk.d, undefined, "the proof carries the public key only");
  assert.equal(proofJkt, jkt, "the proof is made with the key the library keeps");
  assert.equal(claims.htm, "POST");
  assert.equal(claims.htu, `${authority}/oauth/token`);
  assert.ok(claims.jti, "the proof has a jti");

  const access = JSON.parse(result.access);
  assert.equal(access.header.typ, "at+jwt");
  assert.deepEqual(access.claims.cnf, { jkt }, `cnf.jkt is the thumbprint of the library's key\n${context}`);
  assert.ok(result.binding.includes(jkt), `the page shows the binding: ${result.binding}`);
  return jkt;
}

test("the thumbprint these tests compute is RFC 7638's (its §3.1 example) and RFC 9449's (its EC example)", () => {
  // Known answers from the RFCs, so that a thumbprint here and one in the
  // service cannot agree on the same mistake.
  const rsa = {
    kty: "RSA",
    e: "AQAB",
    alg: "RS256",
    kid: "2011-04-29",
    n:
      "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
  };
  assert.equal(jwkThumbprint(rsa), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  const ec = {
    kty: "EC",
    x: "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    y: "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    crv: "P-256",
  };
  assert.equal(jwkThumbprint(ec), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
});

test("a DPoP sign-in: a proof on the token request, token type DPoP, cnf.jkt the library's key", async () => {
  const { page, seen, ...result } = await signIn(await freshContext(), origin, service.url, CLIENT, {
    dpop: "1",
  });
  await assertDpopSignIn({ page, seen, result, authority: service.url, log: service.log });
  assert.equal(seen.tokenRequests.length, 1, "one token request, no retry without nonces");
  assert.equal(seen.authorize.length, 1);
  assert.equal(seen.authorize[0].searchParams.get("dpop_jkt"), null, "without bind=1, no dpop_jkt");
  const answer = seen.tokenResponses[0];
  assert.equal(answer.headers["access-control-allow-origin"], origin);
  assert.equal(answer.headers["cache-control"], "no-store");
  const id = JSON.parse(result.id);
  assert.equal(id.claims.cnf, undefined, "the ID token is unchanged");
  await page.close();
  // The library does not read it, but a client choosing an algorithm would.
  const discovery = await (await fetch(`${service.url}/.well-known/openid-configuration`)).json();
  assert.ok(
    discovery.dpop_signing_alg_values_supported?.includes("ES256"),
    `discovery advertises ES256, the one algorithm oidc-client-ts signs with: ${JSON.stringify(discovery.dpop_signing_alg_values_supported)}`,
  );
});

test("after a reload the library signs in again with the same key: the same cnf.jkt", async () => {
  const context = await freshContext();
  const { page, seen, ...first } = await signIn(context, origin, service.url, CLIENT, { dpop: "1" });
  const before = await assertDpopSignIn({ page, seen, result: first, authority: service.url, log: service.log });
  await page.reload();
  assert.equal(
    await page.$eval("#dpop", (box) => box.checked),
    true,
    "the DPoP switch survives the reload",
  );
  const second = await clickSignIn(page);
  const after = await assertDpopSignIn({ page, seen, result: second, authority: service.url, log: service.log });
  assert.equal(seen.tokenRequests.length, 2, "a second token request");
  const codes = seen.tokenRequests.map((r) => new URLSearchParams(r.body).get("code"));
  assert.notEqual(codes[0], codes[1], "a second code");
  assert.notEqual(JSON.parse(first.access).claims.jti, JSON.parse(second.access).claims.jti, "a second token");
  assert.equal(after, before, "the same key, so the same cnf.jkt");
  await page.close();
});

test("with nonces required: 400 use_dpop_nonce with a DPoP-Nonce the page can read, the library retries with it", async () => {
  const nonces = await startService({
    TOKEN_ENDPOINT_CLIENTS_FILE: registry,
    TOKEN_ENDPOINT_DEV_ENDPOINTS: "on",
    TOKEN_ENDPOINT_DPOP_NONCE: "required",
  });
  try {
    const { page, seen, ...result } = await signIn(await freshContext(), origin, nonces.url, CLIENT, {
      dpop: "1",
    });
    const context = await exchanges(seen, nonces.log);
    assert.equal(seen.tokenRequests.length, 2, `a first request and one retry:\n${context}`);
    assert.equal(seen.tokenResponses.length, 2, `two answers\n${context}`);
    const [firstRequest, retry] = seen.tokenRequests;
    const [challenge, success] = seen.tokenResponses;

    // The first proof has no nonce; the answer asks for one, readably.
    const firstProof = proofOf(firstRequest);
    assert.equal(firstProof.claims.nonce, undefined, "the library's first proof has no nonce");
    assert.equal(challenge.status, 400, `the first request is refused\n${context}`);
    assert.equal((await challenge.body).error, "use_dpop_nonce", `with use_dpop_nonce\n${context}`);
    const nonce = challenge.headers["dpop-nonce"];
    assert.ok(nonce, `the 400 carries DPoP-Nonce:\n${context}`);
    assert.equal(challenge.headers["access-control-allow-origin"], origin, `readable by the page\n${context}`);
    const exposed = (challenge.headers["access-control-expose-headers"] ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase());
    assert.ok(exposed.includes("dpop-nonce"), `DPoP-Nonce is exposed to the page:\n${context}`);

    // The library read it (it retries only on a DPoP-Nonce it can read) and
    // signed a new proof with it, same key, new jti.
    const retryProof = proofOf(retry);
    assert.equal(retryProof.claims.nonce, nonce, "the retry's proof carries the nonce the service sent");
    assert.equal(retryProof.jkt, firstProof.jkt, "the same key");
    assert.notEqual(retryProof.claims.jti, firstProof.claims.jti, "a new jti");
    assert.equal(
      new URLSearchParams(retry.body).get("code"),
      new URLSearchParams(firstRequest.body).get("code"),
      "the same code: the refused request did not consume it",
    );
    assert.equal(success.status, 200, `the retry succeeds\n${context}`);
    await assertDpopSignIn({ page, seen, result, authority: nonces.url, log: nonces.log });
    await page.close();
  } finally {
    nonces.child.kill();
  }
});

test("with bind=1 the library sends dpop_jkt to /dev/authorize and the bound code redeems with that key", async () => {
  const { page, seen, ...result } = await signIn(await freshContext(), origin, service.url, CLIENT, {
    bind: "1",
  });
  const jkt = await assertDpopSignIn({ page, seen, result, authority: service.url, log: service.log });
  assert.equal(seen.authorize.length, 1);
  assert.equal(seen.authorize[0].searchParams.get("dpop_jkt"), jkt, "dpop_jkt is the key's thumbprint");
  await page.close();
});

test("a code bound with dpop_jkt does not redeem with another key: invalid_grant", async () => {
  const { page, seen } = await openSpa(await freshContext(), origin, service.url, CLIENT, { bind: "1" });
  // Hold the way back from the login page: answer the callback navigation
  // with a blank page of the SPA's origin, then drop the key there, so the
  // library makes a new one for the token request.
  let callback;
  const hold = (request) => {
    const url = new URL(request.url());
    if (!callback && request.isNavigationRequest() && url.origin === origin && url.searchParams.has("code")) {
      callback = request.url();
      request.respond({ status: 200, contentType: "text/html", body: "<!doctype html><title>held</title>" });
    } else {
      request.continue();
    }
  };
  await page.setRequestInterception(true);
  page.on("request", hold);
  await page.click("#sign-in");
  await page.waitForFunction(() => document.title === "held", { polling: "mutation", timeout: 20_000 });
  page.off("request", hold);
  await page.setRequestInterception(false);
  const bound = seen.authorize[0]?.searchParams.get("dpop_jkt");
  assert.ok(bound, "the library sent dpop_jkt");
  assert.equal(jwkThumbprint((await storedDpopKey(page, CLIENT)).publicJwk), bound);
  await forgetDpopKey(page, CLIENT);
  assert.equal(await storedDpopKey(page, CLIENT), null);

  await page.goto(callback);
  const result = await settled(page);
  const context = await exchanges(seen, service.log);
  assert.equal(result.status, "error", `the page must not get tokens:\n${context}`);
  assert.equal(seen.tokenRequests.length, 1, `one token request\n${context}`);
  const other = jwkThumbprint((await storedDpopKey(page, CLIENT)).publicJwk);
  assert.notEqual(other, bound, "a new key");
  assert.equal(proofOf(seen.tokenRequests[0]).jkt, other, "the proof is made with the new key");
  assert.equal(seen.tokenResponses[0].status, 400, `refused\n${context}`);
  assert.equal((await seen.tokenResponses[0].body).error, "invalid_grant", `with invalid_grant\n${context}`);
  await page.close();
});
