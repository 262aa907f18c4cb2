// A real single-page app in a real browser: examples/spa (oidc-client-ts,
// installed from its lock file) served from one origin, the real service
// binary on another, Debian's Chromium driven headless by puppeteer-core.
//
//   cargo build && npm ci --prefix examples/spa && npm ci --prefix tests/browser
//   node --test tests/browser/
//
// The helpers (support.mjs) say which binary and browser.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DEMO_PORTS,
  checkPrerequisites,
  freePort,
  jwkThumbprint,
  launchBrowser,
  serveSpa,
  signIn as signInWith,
  spaRegistry,
  startService,
  storedDpopKey,
} from "./support.mjs";

const work = mkdtempSync(join(tmpdir(), "token-endpoint-browser-"));
let browser;
let spaServer;
let spaPort;
let service;

before(async () => {
  checkPrerequisites();
  spaPort = await freePort();
  spaServer = await serveSpa(spaPort);
  const registry = join(work, "clients.toml");
  writeFileSync(registry, spaRegistry(spaPort));
  service = await startService({
    TOKEN_ENDPOINT_CLIENTS_FILE: registry,
    TOKEN_ENDPOINT_DEV_ENDPOINTS: "on",
  });
  browser = await launchBrowser(join(work, "chromium"));
});

after(async () => {
  await browser?.close();
  service?.child.kill();
  spaServer?.close();
  rmSync(work, { recursive: true, force: true });
});

/** Sign in through the SPA at `origin` in this file's browser (support.mjs, signIn). */
function signIn(origin, authority, clientId, query) {
  return signInWith(browser, origin, authority, clientId, query);
}

/** From inside `page`: a POST with a DPoP header, which needs a preflight. */
function preflightedPost(page, tokenUrl) {
  return page.evaluate(async (url) => {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", DPoP: "not-a-proof" },
        body: "grant_type=authorization_code",
      });
      return {
        read: true,
        status: response.status,
        body: await response.json(),
        requestId: response.headers.get("x-request-id"),
      };
    } catch (error) {
      return { read: false, error: String(error) };
    }
  }, tokenUrl);
}

test("an SPA signs in cross-origin: discovery, /dev/authorize, the callback and the token request", async () => {
  const origin = `http://localhost:${spaPort}`;
  const { page, seen, status, error, access, id, location } = await signIn(
    origin,
    service.url,
    "spa",
  );
  assert.equal(status, "signed in", `the page says: ${error}\n${service.log()}`);
  assert.equal(location, `${origin}/`, "code and state are gone from the address bar");
  const accessToken = JSON.parse(access);
  assert.equal(accessToken.header.typ, "at+jwt");
  assert.equal(accessToken.claims.iss, service.url);
  assert.equal(accessToken.claims.client_id, "spa");
  assert.deepEqual(accessToken.claims.aud, ["https://api.example"]);
  assert.equal(accessToken.claims.sub, "alice");
  const idToken = JSON.parse(id);
  assert.equal(idToken.claims.aud, "spa");
  assert.equal(idToken.claims.iss, service.url);
  assert.equal(idToken.claims.sub, "alice");
  assert.equal(idToken.claims.grant_id, accessToken.claims.grant_id);
  // The token request was a cross-origin browser request, answered for it.
  assert.ok(seen.tokenRequest, "oidc-client-ts sent the token request");
  assert.equal(seen.tokenResponse.status, 200);
  assert.equal(seen.tokenResponse.headers["access-control-allow-origin"], origin);
  assert.match(seen.tokenResponse.headers.vary, /Origin/);

  // A request that needs a preflight (a DPoP header): the browser sends the
  // preflight, the answer allows it, and the error that follows is readable,
  // X-Request-Id included.
  const answer = await preflightedPost(page, `${service.url}/oauth/token`);
  assert.equal(answer.read, true, `the browser blocked it: ${answer.error}`);
  assert.equal(answer.status, 400);
  assert.equal(answer.body.error, "invalid_request");
  assert.ok(answer.requestId, "X-Request-Id is exposed");
  await page.close();
});

test("from an origin the client does not allow, the answer cannot be read and the code is not consumed", async () => {
  const origin = `http://127.0.0.1:${spaPort}`;
  const { page, seen, status, error } = await signIn(origin, service.url, "spa");
  assert.equal(status, "error", "the page must not get tokens");
  assert.match(error, /fetch|network/i, `a CORS failure, not an OAuth error: ${error}`);
  assert.ok(seen.tokenRequest, "oidc-client-ts sent the token request");
  assert.equal(seen.tokenResponse?.headers["access-control-allow-origin"], undefined);
  // The service saw the browser's Origin and refused before the take.
  const metrics = await (await fetch(`${service.url}/metrics`)).text();
  assert.match(metrics, /token_requests_total\{outcome="invalid_request",reason="origin_not_allowed"\} 1/);
  assert.match(service.log(), /cors_origin_not_allowed/);
  // The request the browser sent, replayed without an Origin (a native app
  // or a server holding the same code and verifier): the code is still there.
  const form = new URLSearchParams(seen.tokenRequest.body);
  assert.ok(form.get("code") && form.get("code_verifier"));
  const response = await fetch(`${service.url}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: form,
  });
  const tokens = await response.json();
  assert.equal(response.status, 200, JSON.stringify(tokens));
  assert.ok(tokens.access_token);
  // Even a request that needs no client is unreadable from this origin.
  const answer = await preflightedPost(page, `${service.url}/oauth/token`);
  assert.equal(answer.read, false, "the browser let a disallowed origin read the answer");
  await page.close();
});

test("the README's browser walk-through: the example on a demo origin against the zero-configuration demo, with and without DPoP", async () => {
  let port;
  for (const candidate of DEMO_PORTS) {
    try {
      port = await freePort(candidate);
      break;
    } catch {
      // taken here; try the next of the demo's origins
    }
  }
  assert.ok(port, `none of the demo's ports ${DEMO_PORTS} is free`);
  const spa = await serveSpa(port);
  const demo = await startService({});
  try {
    const { page, status, error, access } = await signIn(`http://localhost:${port}`, demo.url, "demo");
    assert.equal(status, "signed in", `the page says: ${error}\n${demo.log()}`);
    assert.equal(JSON.parse(access).claims.client_id, "demo");
    await page.close();
    // The README's DPoP switch (?dpop=1), in a context of its own (no key yet);
    // what DPoP must do is dpop.test.mjs's.
    const context = await browser.createBrowserContext();
    try {
      const dpop = await signInWith(context, `http://localhost:${port}`, demo.url, "demo", { dpop: "1" });
      assert.equal(dpop.status, "signed in", `the page says: ${dpop.error}\n${demo.log()}`);
      assert.equal(JSON.parse(dpop.response).token_type, "DPoP");
      const jkt = jwkThumbprint((await storedDpopKey(dpop.page, "demo")).publicJwk);
      assert.deepEqual(JSON.parse(dpop.access).claims.cnf, { jkt });
    } finally {
      await context.close();
    }
  } finally {
    demo.child.kill();
    spa.close();
  }
});
