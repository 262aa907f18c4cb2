"""DPoP (RFC 9449) interoperability with Python's requests-oauth2client.

The real service binary, started here on a free port (embedded store, dev
endpoints on, a clients file written here), and a client library written by
others driving the whole authorization-code + PKCE + DPoP exchange: the
library builds the authorization request (PKCE, and `dpop_jkt` when it binds
the code), `GET /dev/authorize` redirects with a code as a login page would,
the library validates that callback and redeems the code with its own token
request and DPoP machinery (proofs, the `use_dpop_nonce` retry, the ID token's
validation). Nothing here builds a proof or a token request by hand.

What the service did is checked apart from both: thumbprints are computed
here from RFC 7638 with hashlib, and every token request the library sent is
recorded by a `requests` response hook, proof and answer.

    python3 -m venv target/python-interop
    target/python-interop/bin/pip install --require-hashes -r tests/python/requirements.lock
    target/python-interop/bin/python -m unittest discover -s tests/python -v

TOKEN_ENDPOINT_BIN names the binary (default target/debug/token-endpoint);
.ci/run does all of this after `cargo test` built it.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import requests
from requests_oauth2client import (
    BearerToken,
    DPoPKey,
    DPoPToken,
    InvalidGrant,
    InvalidRequest,
    OAuth2Client,
)
from requests_oauth2client.discovery import oidc_discovery_document_url

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TOKEN_ENDPOINT_BIN") or str(ROOT / "target" / "debug" / "token-endpoint")
# A loopback redirect URI: /dev/authorize redirects to it; nothing listens
# there, the test reads the redirect's Location instead of following it.
REDIRECT_URI = "http://127.0.0.1/cb"
# Every HTTP call made here outside the library: a bound on a hang, not a
# check of how long anything takes.
HTTP_TIMEOUT = 10


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def jwt_parts(compact):
    """The header and claims of a compact JWS, unverified."""
    header, claims, _signature = compact.split(".")
    return b64url_json(header), b64url_json(claims)


def thumbprint(jwk):
    """RFC 7638 SHA-256 JWK thumbprint, base64url: the required members
    only, sorted, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry(*clients):
    """A clients file (docs/token-endpoint.md, "Client registry"): public
    clients that /dev/authorize may send codes to at REDIRECT_URI."""
    out = []
    for client_id, extra in clients:
        out.append(
            f"""[[clients]]
client_id = "{client_id}"
token_endpoint_auth_method = "none"
audience = "https://api.example"
id_token_signed_response_alg = "ES256"
redirect_uris = ["{REDIRECT_URI}"]
{extra}
"""
        )
    return "\n".join(out)


class Service:
    """The real binary on a free loopback port, with its own clients file."""

    def __init__(self, clients_toml, **env):
        if not os.path.exists(BIN):
            raise AssertionError(f"{BIN} is missing: build it first (cargo build), or set TOKEN_ENDPOINT_BIN")
        self.dir = tempfile.mkdtemp(prefix="token-endpoint-python-")
        clients = Path(self.dir) / "clients.toml"
        clients.write_text(clients_toml)
        port = free_port()
        self.issuer = f"http://127.0.0.1:{port}"
        self.log_path = Path(self.dir) / "stderr.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [BIN],
                env={
                    "PATH": os.environ.get("PATH", ""),
                    "TOKEN_ENDPOINT_BIND": f"127.0.0.1:{port}",
                    "TOKEN_ENDPOINT_CLIENTS_FILE": str(clients),
                    "TOKEN_ENDPOINT_DEV_ENDPOINTS": "on",
                    **env,
                },
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        for _ in range(200):
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.issuer}/livez", timeout=HTTP_TIMEOUT).ok:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        log = self.log()
        self.stop()
        raise AssertionError(f"the service did not start (exit {self.process.returncode}):\n{log}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class TokenRequests:
    """A `requests` response hook: every POST to the token endpoint the
    library made, in order, as its Response (which holds its request)."""

    def __init__(self, token_endpoint):
        self.token_endpoint = token_endpoint
        self.seen = []

    def __call__(self, response, *args, **kwargs):
        if response.request.method == "POST" and response.request.url == self.token_endpoint:
            self.seen.append(response)
        return response

    def describe(self):
        """What was sent and answered, for failure messages and the report."""
        lines = []
        for r in self.seen:
            proof = r.request.headers.get("DPoP")
            claims = jwt_parts(proof)[1] if proof else None
            nonce_headers = {k: v for k, v in r.raw.headers.items() if k.lower() == "dpop-nonce"}
            lines.append(f"  sent proof claims {claims}; got {r.status_code} {r.text[:200]!r}, nonce headers {nonce_headers}")
        return "\n".join(lines) or "  (no token request)"


class Interop(unittest.TestCase):
    """One service per class; each test makes its own library client."""

    service = None
    env = {}
    clients = registry(("py", ""))

    @classmethod
    def setUpClass(cls):
        cls.service = Service(cls.clients, **cls.env)

    @classmethod
    def tearDownClass(cls):
        if cls.service is not None:
            cls.service.stop()

    def client(self, client_id="py", **options):
        """The library's client, from the service's discovery document, with
        a hook that records its token requests in `self.token_requests`."""
        session = requests.Session()
        self.token_requests = TokenRequests(f"{self.service.issuer}/oauth/token")
        session.hooks["response"].append(self.token_requests)
        # testing=True: the library refuses plain-http endpoints otherwise.
        return OAuth2Client.from_discovery_endpoint(
            issuer=self.service.issuer,
            client_id=client_id,
            session=session,
            testing=True,
            redirect_uri=REDIRECT_URI,
            id_token_signed_response_alg="ES256",
            **options,
        )

    def authorize(self, client, **options):
        """The library's authorization request, sent to /dev/authorize; the
        library validates the redirect (state, iss) into its
        AuthorizationResponse."""
        request = client.authorization_request(scope="openid profile", **options)
        answer = client.session.get(request.uri, allow_redirects=False, timeout=HTTP_TIMEOUT)
        self.assertEqual(answer.status_code, 302, f"/dev/authorize: {answer.status_code} {answer.text}")
        return request, request.validate_callback(answer.headers["Location"])

    def redeem(self, client, response, **options):
        """The library redeems an AuthorizationResponse (code, PKCE verifier,
        redirect URI, and the key that bound the code, if any), then
        validates the ID token.

        requests-oauth2client 1.8.0 cannot validate the ID token of a
        DPoPToken: BearerToken.validate_id_token checks everything, then
        rebuilds the token as `self.__class__(...)` without `_dpop_key`, a
        TypeError. So the token request skips it and the same ID token is
        validated by that same method on a BearerToken holding the same
        values (signature against the JWKS, iss, aud, azp, exp, nonce,
        at_hash over the access token)."""
        token = client.authorization_code(response, validate=False, **options)
        self.assertIsNotNone(token.id_token, "scope openid: an ID token")
        BearerToken(
            access_token=token.access_token,
            expires_at=token.expires_at,
            scope=token.scope,
            id_token=token.id_token,
        ).validate_id_token(client, response)
        return token

    def dev_code(self, **grant):
        """A code from POST /dev/codes (src/http/dev.rs): the code and its
        PKCE verifier."""
        answer = requests.post(f"{self.service.issuer}/dev/codes", json=grant, timeout=HTTP_TIMEOUT)
        self.assertEqual(answer.status_code, 200, f"POST /dev/codes {grant}: {answer.status_code} {answer.text}")
        body = answer.json()
        return body["code"], body["code_verifier"]

    def assertBoundTo(self, token, key):
        """A DPoP token whose access token's cnf.jkt is `key`'s thumbprint,
        computed here, and the thumbprint of the jwk in the proof the library
        sent last."""
        sent = self.token_requests.describe()
        self.assertIsInstance(token, DPoPToken, sent)
        self.assertEqual(token.token_type, "DPoP", sent)
        expected = thumbprint(dict(key.public_jwk))
        proof_header, _ = jwt_parts(self.token_requests.seen[-1].request.headers["DPoP"])
        self.assertEqual(thumbprint(proof_header["jwk"]), expected)
        _, claims = jwt_parts(token.access_token)
        self.assertEqual(claims.get("cnf"), {"jkt": expected}, sent)


class DPoPRedemption(Interop):
    """Cases 1 and 3: proofs at the token endpoint, and codes bound to a key."""

    def test_discovery_names_the_proof_algorithms(self):
        # The library's discovery support keeps only the endpoints
        # (from_discovery_document reads no DPoP metadata): the document is
        # read here from the address the library derives for the issuer.
        client = self.client()
        document = client.session.get(oidc_discovery_document_url(self.service.issuer), timeout=HTTP_TIMEOUT).json()
        algs = document.get("dpop_signing_alg_values_supported")
        self.assertIsInstance(algs, list, document)
        self.assertIn(client.dpop_alg, algs, "the library's default proof algorithm")
        self.assertIn("EdDSA", algs)
        self.assertEqual(client.token_endpoint, f"{self.service.issuer}/oauth/token")

    def test_a_dpop_redemption_is_bound_to_the_librarys_key(self):
        client = self.client()
        _, response = self.authorize(client)
        token = self.redeem(client, response, dpop=True)
        self.assertBoundTo(token, token.dpop_key)
        # One request: no nonce was asked for.
        self.assertEqual(len(self.token_requests.seen), 1, self.token_requests.describe())
        header, claims = jwt_parts(self.token_requests.seen[0].request.headers["DPoP"])
        self.assertEqual(header["typ"], "dpop+jwt")
        self.assertEqual(header["alg"], "ES256")
        self.assertEqual(claims["htu"], client.token_endpoint)
        self.assertNotIn("nonce", claims)

    def test_an_eddsa_key_is_accepted_too(self):
        client = self.client(dpop_alg="EdDSA")
        _, response = self.authorize(client)
        token = self.redeem(client, response, dpop=True)
        self.assertEqual(jwt_parts(self.token_requests.seen[0].request.headers["DPoP"])[0]["alg"], "EdDSA")
        self.assertBoundTo(token, token.dpop_key)

    def test_without_a_proof_the_token_is_a_bearer_token(self):
        # The control for the case above: the same flow with DPoP off, and
        # the library validating the ID token itself, as it does by default.
        client = self.client()
        _, response = self.authorize(client)
        token = client.authorization_code(response)
        self.assertNotIsInstance(token, DPoPToken)
        self.assertIsInstance(token, BearerToken)
        self.assertEqual(token.token_type, "Bearer")
        self.assertNotIn("DPoP", self.token_requests.seen[0].request.headers)
        self.assertNotIn("cnf", jwt_parts(token.access_token)[1])

    def test_a_code_bound_with_dpop_jkt_redeems_with_that_key(self):
        # The library binds the code itself: it sends its key's thumbprint
        # as dpop_jkt in the authorization request (RFC 9449 section 10).
        key = DPoPKey.generate()
        client = self.client()
        request, response = self.authorize(client, dpop_key=key)
        self.assertEqual(request.furl.args["dpop_jkt"], thumbprint(dict(key.public_jwk)))
        token = self.redeem(client, response)
        self.assertBoundTo(token, key)

    def test_a_code_bound_to_another_key_is_refused(self):
        key, other = DPoPKey.generate(), DPoPKey.generate()
        client = self.client()
        _, response = self.authorize(client, dpop_key=other)
        try:
            client.authorization_code(
                response.code,
                code_verifier=response.code_verifier,
                redirect_uri=response.redirect_uri,
                dpop_key=key,
            )
        except InvalidGrant as refused:
            self.assertEqual(refused.error, "invalid_grant")
            self.assertEqual(refused.response.status_code, 400)
        else:
            self.fail(f"redeemed with a key the code is not bound to:\n{self.token_requests.describe()}")

    def test_dev_codes_binds_a_code_with_dpop_jkt(self):
        key, other = DPoPKey.generate(), DPoPKey.generate()
        client = self.client()
        code, verifier = self.dev_code(client_id="py", dpop_jkt=thumbprint(dict(key.public_jwk)))
        token = client.authorization_code(code, code_verifier=verifier, dpop_key=key)
        self.assertBoundTo(token, key)
        code, verifier = self.dev_code(client_id="py", dpop_jkt=thumbprint(dict(other.public_jwk)))
        try:
            client.authorization_code(code, code_verifier=verifier, dpop_key=key)
        except InvalidGrant:
            pass
        else:
            self.fail(f"redeemed with a key the code is not bound to:\n{self.token_requests.describe()}")


class NonceRetry(Interop):
    """Case 2: TOKEN_ENDPOINT_DPOP_NONCE=required, and the library's retry."""

    env = {"TOKEN_ENDPOINT_DPOP_NONCE": "required"}

    def test_the_library_retries_with_the_servers_nonce(self):
        client = self.client()
        _, response = self.authorize(client)
        token = self.redeem(client, response, dpop=True)
        sent = self.token_requests.describe()
        self.assertEqual(len(self.token_requests.seen), 2, f"a refusal then a retry:\n{sent}")
        first, retry = self.token_requests.seen
        self.assertEqual(first.status_code, 400, sent)
        self.assertEqual(first.json()["error"], "use_dpop_nonce", sent)
        nonce = first.headers.get("DPoP-Nonce")
        self.assertTrue(nonce, f"no DPoP-Nonce header:\n{sent}")
        first_header, first_claims = jwt_parts(first.request.headers["DPoP"])
        retry_header, retry_claims = jwt_parts(retry.request.headers["DPoP"])
        self.assertNotIn("nonce", first_claims)
        self.assertEqual(retry_claims.get("nonce"), nonce, sent)
        self.assertNotEqual(retry_claims["jti"], first_claims["jti"])
        self.assertEqual(retry_header["jwk"], first_header["jwk"])
        self.assertEqual(retry.status_code, 200, sent)
        # The library kept the nonce on its key for the next request.
        self.assertEqual(token.dpop_key.as_nonce, nonce)
        self.assertBoundTo(token, token.dpop_key)

    def test_without_a_proof_no_nonce_is_asked_for(self):
        # Nonces concern proofs: a Bearer redemption is not refused for one.
        client = self.client()
        _, response = self.authorize(client)
        token = client.authorization_code(response)
        self.assertEqual(token.token_type, "Bearer")
        self.assertEqual(len(self.token_requests.seen), 1, self.token_requests.describe())


class DPoPBoundClient(Interop):
    """Case 4: a client registered with dpop_bound_access_tokens = true."""

    clients = registry(("bound", "dpop_bound_access_tokens = true"))

    def test_a_redemption_without_a_proof_is_refused(self):
        client = self.client("bound")
        _, response = self.authorize(client)
        try:
            client.authorization_code(response)
        except InvalidRequest as refused:
            self.assertEqual(refused.error, "invalid_request")
            self.assertEqual(refused.response.status_code, 400)
        else:
            self.fail(f"redeemed without a proof:\n{self.token_requests.describe()}")
        self.assertNotIn("DPoP", self.token_requests.seen[0].request.headers)

    def test_the_library_configured_alike_gets_a_dpop_token(self):
        # The library's own client setting of the same name (RFC 9449
        # section 5.2): it proofs, and binds the code, by default.
        client = self.client("bound", dpop_bound_access_tokens=True)
        request, response = self.authorize(client)
        self.assertIsNotNone(request.dpop_key)
        token = self.redeem(client, response)
        self.assertBoundTo(token, request.dpop_key)


if __name__ == "__main__":
    unittest.main()
