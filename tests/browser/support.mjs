// What the browser tests share: the SPA's server, the service binary, the
// browser, signing in through the page and recording what the library sent,
// and reading JWTs and keys. Not a test file itself (node --test runs only
// *.test.mjs here).
//
// TOKEN_ENDPOINT_BIN names the binary (default target/debug/token-endpoint);
// CHROMIUM the browser (default /usr/bin/chromium). .ci/run installs both.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SPA = join(ROOT, "examples", "spa");
const BIN = process.env.TOKEN_ENDPOINT_BIN || join(ROOT, "target", "debug", "token-endpoint");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// The demo client's origins (src/clients.rs, DEMO_ORIGINS) on localhost.
export const DEMO_PORTS = [5173, 3000, 4200, 8000];

/** A TCP port nobody listens on now. */
export function freePort(port = 0) {
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
export function serveSpa(port) {
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

/** Before any test: the SPA's packages and the browser are there. */
export function checkPrerequisites() {
  assert.ok(
    existsSync(join(SPA, "node_modules", "oidc-client-ts")),
    "examples/spa has no node_modules: npm ci --prefix examples/spa",
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
}

/**
 * A registry with one public client, `spa`, allowed from
 * http://localhost:<spaPort> only; its login page may send codes to both
 * names of the SPA server, so that the disallowed origin gets a code to try.
 */
export function spaRegistry(spaPort) {
  return `[[clients]]
client_id = "spa"
token_endpoint_auth_method = "none"
audience = "https://api.example"
allowed_cors_origins = ["http://localhost:${spaPort}"]
redirect_uris = ["http://localhost:${spaPort}/", "http://127.0.0.1:${spaPort}/"]
`;
}

/** Start the service with `env`; resolves once it answers /livez. */
export async function startService(env) {
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
    if (child.exitCode !== null) {
      break;
    }
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

/** Debian's Chromium, headless, with its profile in `userDataDir`. */
export function launchBrowser(userDataDir) {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir,
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
}

/**
 * Open the SPA at `origin` in a new page of `target` (the browser, or a
 * browser context of its own: its own IndexedDB), with `query` added to
 * authority and client_id (`{ dpop: "1" }`). Records, for as long as the
 * page lives, every navigation to the authorization endpoint and every
 * token request the library sends with its answer (status, headers, body),
 * in `seen`.
 */
export async function openSpa(target, origin, authority, clientId, query = {}) {
  const page = await target.newPage();
  const tokenUrl = `${authority}/oauth/token`;
  const seen = { authorize: [], tokenRequests: [], tokenResponses: [] };
  page.on("request", (request) => {
    if (request.url().startsWith(`${authority}/dev/authorize?`)) {
      seen.authorize.push(new URL(request.url()));
    }
    if (request.url() === tokenUrl && request.method() === "POST") {
      seen.tokenRequests.push({ headers: request.headers(), body: request.postData() });
    }
  });
  page.on("response", (response) => {
    if (response.url() === tokenUrl && response.request().method() === "POST") {
      seen.tokenResponses.push({
        status: response.status(),
        headers: response.headers(),
        // Read from the browser's network log, whatever CORS lets the page read.
        body: response.text().then(
          (text) => JSON.parse(text),
          (error) => ({ unreadable: String(error) }),
        ),
      });
    }
  });
  const start = new URL(`${origin}/`);
  start.searchParams.set("authority", authority);
  start.searchParams.set("client_id", clientId);
  for (const [name, value] of Object.entries(query)) {
    start.searchParams.set(name, value);
  }
  await page.goto(start.href);
  return { page, seen };
}

/**
 * What the page says once it settled: "signed in" or "error", and what it
 * shows. The time limit only turns a hang into a failure that says where
 * the page stopped.
 */
export async function settled(page) {
  try {
    await page.waitForFunction(
      () => ["signed in", "error"].includes(document.getElementById("status")?.textContent),
      // Checked on each document and at each DOM change, not on animation
      // frames (the default), which a loaded headless Chromium may not run.
      { polling: "mutation", timeout: 20_000 },
    );
  } catch (error) {
    const where = await page
      .evaluate(() => `${location.href}: ${document.getElementById("status")?.textContent} ${document.getElementById("error")?.textContent}`)
      .catch((e) => String(e));
    throw new Error(`${error.message}; the page is at ${where}`);
  }
  return page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    error: document.getElementById("error").textContent,
    response: document.getElementById("response").textContent,
    binding: document.getElementById("binding").textContent,
    access: document.getElementById("access-token").textContent,
    id: document.getElementById("id-token").textContent,
    location: location.href,
  }));
}

/** Click "Sign in" on an open SPA page and wait for how it ended. */
export async function clickSignIn(page) {
  await page.click("#sign-in");
  return settled(page);
}

/**
 * Open the SPA at `origin`, click "Sign in", and wait for the page to say
 * how it ended. `seen.tokenRequest` and `seen.tokenResponse` are the last
 * token request and its answer.
 */
export async function signIn(target, origin, authority, clientId, query = {}) {
  const { page, seen } = await openSpa(target, origin, authority, clientId, query);
  const result = await clickSignIn(page);
  seen.tokenRequest = seen.tokenRequests.at(-1) ?? null;
  seen.tokenResponse = seen.tokenResponses.at(-1) ?? null;
  return { page, seen, ...result };
}

/** A JWT's (or JWS's) header and claims, decoded, not verified. */
export function decodeJwt(jwt) {
  const [header, claims] = jwt
    .split(".")
    .slice(0, 2)
    .map((part) => JSON.parse(Buffer.from(part, "base64url")));
  return { header, claims };
}

/**
 * The RFC 7638 thumbprint of a public JWK: SHA-256 over the JSON object of
 * its required members only, in lexicographic order and without
 * whitespace, base64url without padding.
 */
export function jwkThumbprint(jwk) {
  const required = { EC: ["crv", "kty", "x", "y"], OKP: ["crv", "kty", "x"], RSA: ["e", "kty", "n"] }[
    jwk.kty
  ];
  assert.ok(required, `no thumbprint for kty ${jwk.kty}`);
  for (const member of required) {
    assert.equal(typeof jwk[member], "string", `the JWK has no ${member}`);
  }
  const canonical = `{${required.map((m) => `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`).join(",")}}`;
  return createHash("sha256").update(canonical, "utf8").digest("base64url");
}

/**
 * From inside `page`: the DPoP key pair oidc-client-ts keeps for `clientId`
 * (IndexedDbDPoPStore: database "oidc", object store "dpop", keyed by client
 * id), as the public JWK, whether the private key is extractable, and the
 * nonce stored with it; null when there is none. Never creates the
 * database (the library creates it with its store).
 */
export function storedDpopKey(page, clientId) {
  return page.evaluate(async (key) => {
    if (!(await indexedDB.databases()).some((db) => db.name === "oidc")) {
      return null;
    }
    const request = (r) =>
      new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
    const db = await request(indexedDB.open("oidc"));
    try {
      if (!db.objectStoreNames.contains("dpop")) {
        return null;
      }
      const state = await request(db.transaction("dpop").objectStore("dpop").get(key));
      if (!state) {
        return null;
      }
      return {
        publicJwk: await crypto.subtle.exportKey("jwk", state.keys.publicKey),
        privateExtractable: state.keys.privateKey.extractable,
        nonce: state.nonce ?? null,
      };
    } finally {
      db.close();
    }
  }, clientId);
}

/** From inside `page`: forget the DPoP key pair kept for `clientId`. */
export function forgetDpopKey(page, clientId) {
  return page.evaluate(async (key) => {
    const request = (r) =>
      new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
    const db = await request(indexedDB.open("oidc"));
    try {
      const tx = db.transaction("dpop", "readwrite");
      tx.objectStore("dpop").delete(key);
      await new Promise((resolve, reject) => {
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }, clientId);
}
