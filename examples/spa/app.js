// The example single-page app: sign in with oidc-client-ts (a public client:
// authorization code + PKCE, no secret), redeem the code at the token
// endpoint from this page's origin, and show what came back.
//
// Settings come from the form (kept in sessionStorage for the way back from
// the login page), or from ?authority=...&client_id=...&dpop=1&bind=1 on the
// first load. The defaults are the embedded demo: `cargo run --release` at
// http://127.0.0.1:8080, client `demo`, bearer tokens.
//
// DPoP (RFC 9449): with `dpop` the library keeps a non-extractable P-256 key
// pair in IndexedDB (database "oidc", store "dpop", keyed by client id) and
// signs a proof for the token request, so the access token is bound to that
// key (`cnf.jkt`). With `bind` (which implies `dpop`) it also sends the key's
// thumbprint as `dpop_jkt` to the authorization endpoint, so the code itself
// redeems only with that key.
"use strict";

const DEFAULTS = { authority: "http://127.0.0.1:8080", client_id: "demo" };
const $ = (id) => document.getElementById(id);

function settings() {
  const query = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem("example-spa-settings") || "{}");
  const flag = (name) => (query.has(name) ? query.get(name) === "1" : Boolean(saved[name]));
  const bind = flag("bind");
  return {
    authority: query.get("authority") || saved.authority || DEFAULTS.authority,
    client_id: query.get("client_id") || saved.client_id || DEFAULTS.client_id,
    dpop: flag("dpop") || bind,
    bind,
  };
}

function userManager({ authority, client_id, dpop, bind }) {
  return new oidc.UserManager({
    authority,
    client_id,
    // This page is its own callback: the client's redirect URI is its origin's root.
    redirect_uri: location.origin + "/",
    response_type: "code",
    scope: "openid profile",
    // Tokens live as long as the tab, no longer.
    userStore: new oidc.WebStorageStateStore({ store: sessionStorage }),
    loadUserInfo: false,
    // The same store on every load: the key outlives the tab, so a reload
    // (or the way back from the login page) signs with the same key.
    dpop: dpop ? { store: new oidc.IndexedDbDPoPStore(), bind_authorization_code: bind } : undefined,
  });
}

// A JWT's header and claims, decoded (not verified: this page only shows them).
function decode(jwt) {
  const part = (p) => JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")));
  const [header, claims] = jwt.split(".");
  return { header: part(header), claims: part(claims) };
}

function show(user) {
  $("status").textContent = "signed in";
  $("tokens").hidden = false;
  $("response").textContent = JSON.stringify(
    { token_type: user.token_type, expires_in: user.expires_in, scope: user.scope },
    null,
    2,
  );
  const access = decode(user.access_token);
  const jkt = access.claims.cnf && access.claims.cnf.jkt;
  $("binding").textContent = jkt
    ? `${user.token_type}: the access token is bound to this browser's key, cnf.jkt ${jkt}`
    : `${user.token_type}: the access token is not bound to a key`;
  $("access-token").textContent = JSON.stringify(access, null, 2);
  $("id-token").textContent = JSON.stringify(decode(user.id_token), null, 2);
}

function fail(error) {
  $("status").textContent = "error";
  $("error").textContent = String(error && error.message ? error.message : error);
}

async function main() {
  const current = settings();
  $("authority").value = current.authority;
  $("client-id").value = current.client_id;
  $("dpop").checked = current.dpop;
  $("bind").checked = current.bind;
  $("settings").addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = {
      authority: $("authority").value.trim(),
      client_id: $("client-id").value.trim(),
      dpop: $("dpop").checked || $("bind").checked,
      bind: $("bind").checked,
    };
    sessionStorage.setItem("example-spa-settings", JSON.stringify(chosen));
    $("status").textContent = "signing in";
    try {
      await userManager(chosen).signinRedirect();
    } catch (error) {
      fail(error);
    }
  });
  const query = new URLSearchParams(location.search);
  if (query.has("code") || query.has("error")) {
    // Back from the login page: redeem the code (cross-origin POST to the
    // token endpoint), then drop code and state from the address bar.
    $("status").textContent = "redeeming";
    try {
      const user = await userManager(current).signinRedirectCallback();
      history.replaceState(null, "", location.pathname);
      show(user);
    } catch (error) {
      fail(error);
    }
  }
}

main();
