//! The code record: what the login frontend stores under each authorization
//! code, and the checks a redemption makes against it.
//!
//! The contract is documented in docs/contract.md; this module is its
//! executable form. [`crate::contract::frontend`] writes records by it, the
//! stores take them by it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::pkce::{self, ChallengeMethod, CodeVerifier};

/// The longest authorization code this service looks up. Longer values are
/// rejected before any store is asked (codes are 43 characters when issued
/// by [`crate::contract::frontend`]).
pub const MAX_CODE_LEN: usize = 512;

/// A code record, as the login frontend wrote it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    pub code_challenge: String,
    pub code_challenge_method: ChallengeMethod,
    pub sub: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Extra ID-token claims (`email`, `name`, ...). Registered claim names
    /// in here are ignored when the ID token is minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    /// RFC 8707 resource indicator(s): the access token's audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// RFC 9449 §10: the `dpop_jkt` of the authorization request, the
    /// thumbprint of the key the code is bound to. The redemption must
    /// carry a DPoP proof of that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// `resource`: one URI or several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Resource {
    One(String),
    Many(Vec<String>),
}

impl std::fmt::Debug for CodeRecord {
    /// The challenge and the nonce are left out: neither is a secret on its
    /// own, but neither helps anyone reading a log either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeRecord")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("code_challenge_method", &self.code_challenge_method)
            .field("sub", &self.sub)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why a stored record cannot be redeemed at all: the frontend broke the
/// contract. Carries no part of the record.
#[derive(Debug, Clone, thiserror::Error)]
#[error("code record violates the frontend contract: {0}")]
pub struct BadRecord(pub String);

/// What is wrong with a record, without any of its values: serde_json's own
/// messages quote them (`invalid type: string "…", expected …`), and a
/// record may hold personal data or whatever a broken frontend wrote. Kept:
/// the kind of fault, the field names and expectations of this schema, and
/// the position.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof => format!("record is not valid JSON ({at})"),
        Category::Io => format!("record could not be read ({at})"),
        Category::Data => {
            let message = e.to_string();
            let expected = message
                .rsplit_once(", expected ")
                .map(|(_, rest)| rest.rsplit_once(" at line ").map_or(rest, |(x, _)| x))
                .filter(|x| x.len() <= 120);
            let field = |prefix: &str| {
                message
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.split('`').nth(1))
                    .filter(|name| name.len() <= 64)
                    .map(str::to_owned)
            };
            if let Some(name) = field("missing field ") {
                format!("missing field `{name}` ({at})")
            } else if let Some(expected) = expected {
                format!("a value is not what the contract allows: expected {expected} ({at})")
            } else {
                format!("record does not match the contract ({at})")
            }
        }
    }
}

impl CodeRecord {
    /// The record in `raw`: the one reading of a record, on every store. A
    /// member named twice counts by its last occurrence, as ECMAScript's
    /// `JSON.parse` and RFC 7519 §4's second option read it; serde refuses
    /// a duplicated field, so such a record is read again through a map,
    /// which keeps the last (docs/contract.md, "Duplicated members").
    pub fn parse(raw: &[u8]) -> Result<Self, BadRecord> {
        match serde_json::from_slice(raw) {
            Err(e) if e.is_data() && e.to_string().starts_with("duplicate field ") => {
                serde_json::from_slice::<Value>(raw)
                    .and_then(Self::deserialize)
                    .map_err(|e| BadRecord(describe(&e)))
            }
            parsed => parsed.map_err(|e| BadRecord(describe(&e))),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing a struct of strings, numbers and serde_json values
        // cannot fail: no map has non-string keys.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the scope contains `openid` (OpenID Connect Core §3.1.2.1).
    pub fn is_openid(&self) -> bool {
        self.scope.split(' ').any(|s| s == "openid")
    }
}

/// What a redemption presents, to be checked against the record before the
/// code is consumed.
#[derive(Debug)]
pub struct Presented<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub verifier: &'a CodeVerifier,
    /// Whether this client may redeem codes bound with the `plain` method.
    pub allow_plain: bool,
    /// The thumbprint of the request's DPoP key, if it sent a proof.
    pub dpop_jkt: Option<&'a str>,
}

/// A check that failed. The code is *not* consumed by any of these: someone
/// who holds only the code must not be able to destroy it for the client it
/// was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Client,
    RedirectUri,
    PlainNotAllowed,
    Pkce,
    /// The code is bound to a DPoP key (`dpop_jkt`) and the request sent
    /// no proof.
    DpopProofMissing,
    /// The code is bound to another DPoP key than the proof's.
    DpopKey,
}

/// The checks of RFC 6749 §4.1.3 and RFC 7636 §4.6, made before anything is
/// consumed, on every store.
///
/// - the code was issued to this client;
/// - `redirect_uri` is present and identical when the authorization request
///   carried one, and absent when it did not (the safer reading: a value we
///   cannot compare is refused);
/// - the `plain` method is used only by clients allowed to;
/// - the verifier answers the challenge (constant-time comparison);
/// - a code bound to a DPoP key (RFC 9449 §10) comes with a proof of that
///   key. Checked after PKCE, so only the holder of the verifier learns
///   that the code is bound.
pub fn check(record: &CodeRecord, presented: &Presented<'_>) -> Result<(), Mismatch> {
    if record.client_id != presented.client_id {
        return Err(Mismatch::Client);
    }
    if record.redirect_uri.as_deref() != presented.redirect_uri {
        return Err(Mismatch::RedirectUri);
    }
    if record.code_challenge_method == ChallengeMethod::Plain && !presented.allow_plain {
        return Err(Mismatch::PlainNotAllowed);
    }
    if !pkce::verify(
        presented.verifier,
        record.code_challenge_method,
        &record.code_challenge,
    ) {
        return Err(Mismatch::Pkce);
    }
    if let Some(bound) = &record.dpop_jkt {
        match presented.dpop_jkt {
            None => return Err(Mismatch::DpopProofMissing),
            Some(jkt) if jkt != bound => return Err(Mismatch::DpopKey),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Why a record's `resource` cannot be granted to the client (RFC 8707
/// `invalid_target`). Carries no value: the description is for a client that
/// holds the verifier, and it must not echo what the frontend stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetMismatch {
    /// `""` or `[]`: RFC 9068 §2.2 requires an audience.
    Empty,
    /// A URI that is not one of the client's resource indicators.
    NotAllowed,
    /// The same URI twice.
    Repeated,
}

impl TargetMismatch {
    pub fn description(self) -> &'static str {
        match self {
            Self::Empty => {
                "the grant's resource is empty; an access token needs an audience (RFC 8707, RFC 9068 section 2.2)"
            }
            Self::NotAllowed => {
                "the grant's resource names a URI outside this client's registered audience (RFC 8707 section 2)"
            }
            Self::Repeated => "the grant's resource lists the same URI twice (RFC 8707 section 2)",
        }
    }
}

/// RFC 8707: a record's `resource` may only narrow the client's audience. It
/// is absent (the token gets the client's whole `audience`), or a non-empty
/// set of URIs, each one of `allowed` (the client's resource indicators),
/// none twice. Checked in that order: empty, then not allowed, then twice. The frontend passes through what the client asked for at
/// `/authorize` without knowing the registry: this is where a client asking
/// for another API's tokens is stopped.
pub fn check_resource(
    resource: Option<&Resource>,
    allowed: &[String],
) -> Result<(), TargetMismatch> {
    let uris: &[String] = match resource {
        None => return Ok(()),
        Some(Resource::One(uri)) => std::slice::from_ref(uri),
        Some(Resource::Many(uris)) => uris,
    };
    if uris.is_empty() || uris.iter().any(String::is_empty) {
        return Err(TargetMismatch::Empty);
    }
    if !uris.iter().all(|uri| allowed.contains(uri)) {
        return Err(TargetMismatch::NotAllowed);
    }
    let repeated = uris
        .iter()
        .enumerate()
        .any(|(i, uri)| uris.iter().take(i).any(|earlier| earlier == uri));
    if repeated {
        return Err(TargetMismatch::Repeated);
    }
    Ok(())
}

/// Whether `code` can be an authorization code under the contract: 1 to
/// [`MAX_CODE_LEN`] characters of RFC 3986's unreserved set
/// (`[A-Za-z0-9-._~]`, which holds base64url). RFC 6749 Appendix A.11
/// allows any VSCHAR, but this service derives Redis keys from the code,
/// and a brace would move them to another Cluster slot.
pub fn is_well_formed_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_LEN && code.bytes().all(pkce::is_unreserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_may_only_narrow_the_audience() {
        let allowed = vec!["https://a.test".to_string(), "https://b.test".to_string()];
        let one = |s: &str| Resource::One(s.into());
        let many = |v: &[&str]| Resource::Many(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(check_resource(None, &allowed), Ok(()));
        assert_eq!(
            check_resource(Some(&one("https://b.test")), &allowed),
            Ok(())
        );
        assert_eq!(
            check_resource(Some(&many(&["https://b.test", "https://a.test"])), &allowed),
            Ok(())
        );
        for (resource, expected) in [
            (one(""), TargetMismatch::Empty),
            (many(&[]), TargetMismatch::Empty),
            (many(&[""]), TargetMismatch::Empty),
            (one("https://c.test"), TargetMismatch::NotAllowed),
            (one("https://A.test"), TargetMismatch::NotAllowed),
            (
                many(&["https://a.test", "https://c.test"]),
                TargetMismatch::NotAllowed,
            ),
            (
                many(&["https://a.test", "https://a.test"]),
                TargetMismatch::Repeated,
            ),
        ] {
            assert_eq!(
                check_resource(Some(&resource), &allowed),
                Err(expected),
                "{resource:?}"
            );
        }
        assert_eq!(
            check_resource(Some(&one("https://a.test")), &[]),
            Err(TargetMismatch::NotAllowed)
        );
    }

    /// A bad record is described by field, expectation and position, never
    /// by its values.
    #[test]
    fn bad_record_reasons_carry_no_value() {
        let secret = "nonce-VALUE-1, expected anything";
        let cases = [
            format!(
                r#"{{"client_id": "a", "code_challenge": "c", "code_challenge_method": "{secret}"}}"#
            ),
            format!(r#"{{"client_id": 5, "nonce": "{secret}"}}"#),
            format!(r#"{{"client_id": ["{secret}"]}}"#),
            format!("not json {secret}"),
            r#"{"code_challenge": "c"}"#.to_owned(),
        ];
        for raw in &cases {
            let reason = CodeRecord::parse(raw.as_bytes()).unwrap_err().0;
            assert!(!reason.contains("VALUE"), "{reason}");
            assert!(reason.contains("line 1"), "{reason}");
        }
        let missing = CodeRecord::parse(br#"{"code_challenge": "c"}"#)
            .unwrap_err()
            .0;
        assert!(missing.contains("missing field `"), "{missing}");
    }

    /// A member named twice counts by its last occurrence, however it is
    /// spelled.
    #[test]
    fn a_member_named_twice_counts_by_its_last_occurrence() {
        let record = crate::contract::frontend::prepare(crate::contract::frontend::Grant::new(
            "app", "user", "openid",
        ))
        .unwrap()
        .1;
        let body = record.to_json();
        let body = body.strip_suffix('}').unwrap();
        for (extra, client_id) in [
            (r#""client_id":"other""#, "other"),
            (r#""client\u005fid":"other""#, "other"),
            (r#""client_id":"other","client_id":"app""#, "app"),
            (r#""x-extra":1,"x-extra":2"#, "app"),
        ] {
            let raw = format!("{body},{extra}}}");
            let parsed = CodeRecord::parse(raw.as_bytes()).unwrap();
            assert_eq!(parsed.client_id, client_id, "{raw}");
            assert_eq!(parsed.sub, record.sub);
        }
        let twice_wrong = format!(r#"{body},"sub":["VALUE"]}}"#);
        let reason = CodeRecord::parse(twice_wrong.as_bytes()).unwrap_err().0;
        assert!(!reason.contains("VALUE"), "{reason}");
    }
}
