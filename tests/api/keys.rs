//! Keys: algorithms, the JWKS, RFC 7638 `kid`s, and refusing bad key files.

use std::sync::Arc;

use token_endpoint::config::ConfigError;

use crate::helpers::*;

/// Each client's ID token is signed with the algorithm it registered
/// (ES256, RS256, EdDSA) and verifies against the JWKS; access tokens are
/// always signed by the first key (ES256 here).
#[tokio::test]
async fn id_tokens_use_each_clients_algorithm() {
    let app = spawn_app(Backend::Embedded).await;
    let jwks = app.jwks().await;
    for (client, alg) in [
        ("public-app", "ES256"),
        ("rsa-app", "RS256"),
        ("eddsa-app", "EdDSA"),
    ] {
        let issued = app.issue(grant(client)).await;
        let answer = app.post_form(&TestApp::form(&issued, client)).await;
        assert_eq!(answer.status, 200, "{client}: {answer:?}");
        let id = answer.body["id_token"].as_str().unwrap();
        assert_eq!(jwt_parts(id).0["alg"], alg);
        let claims = verify_jwt(id, &jwks, client);
        // at_hash: SHA-512 for EdDSA (OpenID Connect Core errata), else SHA-256.
        let access = answer.body["access_token"].as_str().unwrap();
        assert_eq!(jwt_parts(access).0["alg"], "ES256");
        let digest = if alg == "EdDSA" {
            ring::digest::digest(&ring::digest::SHA512, access.as_bytes())
        } else {
            ring::digest::digest(&ring::digest::SHA256, access.as_bytes())
        };
        let half = &digest.as_ref()[..digest.as_ref().len() / 2];
        assert_eq!(
            claims["at_hash"],
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, half)
        );
    }
}

/// The JWKS lists every signing key and the verification-only key, each
/// with `kid` equal to its RFC 7638 thumbprint, and no private member.
#[tokio::test]
async fn jwks_publishes_signing_and_verification_keys() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let jwks: serde_json::Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k["kty"].as_str().unwrap(), k["alg"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("EC", "ES256"),
            ("RSA", "RS256"),
            ("OKP", "EdDSA"),
            ("EC", "ES256")
        ]
    );
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
        let canonical = match key["kty"].as_str().unwrap() {
            "EC" => format!(
                r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
                key["x"], key["y"]
            ),
            "OKP" => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, key["x"]),
            _ => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, key["e"], key["n"]),
        };
        let thumbprint = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()),
        );
        assert_eq!(key["kid"], thumbprint);
        assert_eq!(key["use"], "sig");
    }
}

/// A discovery document names the token endpoint and the JWKS.
#[tokio::test]
async fn discovery_document_points_at_the_endpoints() {
    let app = spawn_app(Backend::Embedded).await;
    let doc: serde_json::Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
}

async fn start_error(
    tweak: impl FnOnce(&mut token_endpoint::config::Settings, &AppFiles),
) -> ConfigError {
    let files = Arc::new(AppFiles::new());
    let mut s = settings(&files, None);
    tweak(&mut s, &files);
    match token_endpoint::service::build(&s).await {
        Ok(_) => panic!("start-up should have failed"),
        Err(e) => e,
    }
}

/// Key files that cannot be used stop start-up, naming the setting and why.
#[tokio::test]
async fn bad_key_files_stop_startup() {
    let err = start_error(|s, files| {
        let sec1 = files.dir.path().join("sec1.pem");
        std::fs::write(
            &sec1,
            "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        s.signing_keys = vec![sec1];
    })
    .await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_SIGNING_KEYS");
    assert!(err.reason.contains("openssl pkcs8"), "{err}");

    let err = start_error(|s, _| s.signing_keys = vec!["/does/not/exist.pem".into()]).await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_SIGNING_KEYS");
    assert!(err.reason.contains("/does/not/exist.pem"), "{err}");

    let err =
        start_error(|s, _| s.signing_keys = vec![fixture("ec-p256-public.test-only.pem")]).await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_SIGNING_KEYS");

    let err = start_error(|s, _| s.verification_keys = vec![fixture("README.md")]).await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_VERIFICATION_KEYS");
}

/// A client registered for an algorithm no configured key has: refused at
/// start-up, not at its first redemption.
#[tokio::test]
async fn client_algorithm_without_a_key_stops_startup() {
    let err = start_error(|s, files| s.signing_keys = vec![files.es256_key.clone()]).await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_CLIENTS_FILE");
    assert!(
        err.reason.contains("RS256") || err.reason.contains("EdDSA"),
        "{err}"
    );
}

/// The example registry that deploy/ ships (compose mounts it, the k8s
/// ConfigMap carries it) loads as the service loads it.
#[test]
fn the_shipped_example_registry_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/clients.toml");
    let registry =
        token_endpoint::clients::ClientRegistry::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let spa = registry.get("spa").expect("the example's public client");
    assert!(spa.allows_origin("https://app.example.com"));
}
