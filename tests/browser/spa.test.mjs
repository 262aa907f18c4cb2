// A real single-page app in a real browser: examples/spa (oidc-client-ts,
// installed from its lock file) served from one origin, the real service
// binary on another, Debian's Chromium driven headless by puppeteer-core.
//
//   cargo build && npm ci --prefix examples/spa && npm ci --prefix tests/browser
//   node --test tests/browser/
//
// TOKEN_ENDPOINT_BIN names the binary (default target/debug/token-endpoint);
// CHROMIUM the browser (default /usr/bin/chromium). .ci/run installs both.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SPA = join(ROOT, "examples", "spa");
const BIN = process.env.TOKEN_ENDPOINT_BIN || join(ROOT, "target", "debug", "token-endpoint");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// The demo client's origins (src/clients.rs, DEMO_ORIGINS) on localhost.
const DEMO_PORTS = [5173, 3000, 4200, 8000];

/** A TCP port nobody listens on now. */
function freePort(port = 0) {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: chosen } = server.address();
      server.close(() => resolve(chosen));
    });
  });
}

/** Serve examples/spa (its node_modules included) on 127.0.0.1:`port`. */
function serveSpa(port) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
    const file = join(SPA, path.endsWith("/") ? join(path, "index.html") : path);
    if (!file.startsWith(SPA) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" });
    response.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

/** Start the service with `env`; resolves once it answers /livez. */
async function startService(env) {
  assert.ok(
    existsSync(BIN),
    `${BIN} is missing: build it first (cargo build), or set TOKEN_ENDPOINT_BIN`,
  );
  const port = await freePort();
  const child = spawn(BIN, [], {
    env: { PATH: process.env.PATH, TOKEN_ENDPOINT_BIND: `127.0.0.1:${port}`, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/livez`)).ok) {
        return { url, child, log: () => log };
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill();
  throw new Error(`the service did not start:\n${log}`);
}

const work = mkdtempSync(join(tmpdir(), "token-endpoint-browser-"));
let browser;
let spaServer;
let spaPort;
let service;

before(async () => {
  assert.ok(
    existsSync(join(SPA, "node_modules", "oidc-client-ts")),
    "examples/spa has no node_modules: npm ci --prefix examples/spa",
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  spaPort = await freePort();
  spaServer = await serveSpa(spaPort);
  // One client, `spa`, allowed from http://localhost:<spaPort> only; its
  // login page may send codes to both names of the SPA server, so that the
  // disallowed origin gets a code to try.
  const registry = join(work, "clients.toml");
  writeFileSync(
    registry,
    `[[clients]]
client_id = "spa"
token_endpoint_auth_method = "none"
audience = "https://api.example"
allowed_cors_origins = ["http://localhost:${spaPort}"]
redirect_uris = ["http://localhost:${spaPort}/", "http://127.0.0.1:${spaPort}/"]
`,
  );
  service = await startService({
    TOKEN_ENDPOINT_CLIENTS_FILE: registry,
    TOKEN_ENDPOINT_DEV_ENDPOINTS: "on",
  });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: join(work, "chromium"),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  service?.child.kill();
  spaServer?.close();
  rmSync(work, { recursive: true, force: true });
});

/**
 * Open the SPA at `origin`, click "Sign in", and wait for the page to say
 * how it ended. Records the token request the library sent and its answer.
 */
async function signIn(origin, authority, clientId) {
  const page = await browser.newPage();
  const seen = { tokenRequest: null, tokenResponse: null };
  page.on("request", (request) => {
    if (request.url() === `${authority}/oauth/token` && request.method() === "POST") {
      seen.tokenRequest = { headers: request.headers(), body: request.postData() };
    }
  });
  page.on("response", (response) => {
    if (response.url() === `${authority}/oauth/token` && response.request().method() === "POST") {
      seen.tokenResponse = { status: response.status(), headers: response.headers() };
    }
  });
  const start = new URL(`${origin}/`);
  start.searchParams.set("authority", authority);
  start.searchParams.set("client_id", clientId);
  await page.goto(start.href);
  await page.click("#sign-in");
  await page.waitForFunction(
    () => ["signed in", "error"].includes(document.getElementById("status").textContent),
    { timeout: 20_000 },
  );
  const result = await page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    error: document.getElementById("error").textContent,
    access: document.getElementById("access-token").textContent,
    id: document.getElementById("id-token").textContent,
    location: location.href,
  }));
  return { page, seen, ...result };
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

test("the README's browser walk-through: the example on a demo origin against the zero-configuration demo", async () => {
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
  } finally {
    demo.child.kill();
    spa.close();
  }
});
