//! Operating the service: request ids, readiness.

use crate::helpers::*;

/// A sane `X-Request-Id` from upstream is echoed back, on success and error
/// alike; a missing or unsafe one is replaced by a fresh, unique id.
#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app(Backend::Embedded).await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let given = app
        .http
        .post(app.token_url())
        .header("X-Request-Id", "lb-7f3a.42")
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .expect("answer");
    assert_eq!(given.status(), 400);
    assert_eq!(id_of(&given).as_deref(), Some("lb-7f3a.42"));

    let unsafe_id = app
        .http
        .get(format!("{}/livez", app.address))
        .header("X-Request-Id", "two words\tand a tab")
        .send()
        .await
        .expect("answer");
    let replaced = id_of(&unsafe_id).expect("an id");
    assert!(
        !replaced.contains(' ') && !replaced.is_empty(),
        "{replaced}"
    );

    let first = id_of(&app.get("/livez").await).expect("an id");
    let second = id_of(&app.get("/livez").await).expect("an id");
    assert_ne!(first, second);
    assert_ne!(first, replaced);
}
