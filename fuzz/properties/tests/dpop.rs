//! The `DPoP` header property ([`dpop::dpop_case`], [`dpop::dpop_header`])
//! driven by proptest on the stable toolchain: generated structured
//! mutations of valid proofs (odd JWKs, private members, duplicated and
//! escaped members, non-objects, deep nesting, wrong signatures, extra
//! dots, non-UTF-8, padding) and arbitrary bytes. See `fuzz/README.md`.
//!
//! `PROPTEST_CASES=N` replaces the case counts.

// A test fails by panicking; the workspace lints forbid it in production code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};

use token_endpoint_fuzz_properties::dpop::{
    self, DpopCase, Edit, Outcome, Shape, SignWith, Signer, Wire, CLAIM_NAMES, HEADER_NAMES,
    JWK_NAMES,
};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn name(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(names).prop_map(str::to_owned),
        1 => "[a-z]{0,3}",
    ]
}

/// A value for member `name`: mostly one meant for it, else any.
fn value(name: String) -> impl Strategy<Value = (String, String)> {
    let value = prop_oneof![
        12 => select(dpop::values_for(&name)),
        4 => select(dpop::values()),
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => "\\PC{0,12}",
    ];
    (Just(name), value)
}

fn edit(names: &'static [&'static str]) -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => name(names).prop_map(Edit::Remove),
        4 => name(names).prop_flat_map(value).prop_map(|(n, v)| Edit::Set(n, v)),
        2 => name(names).prop_flat_map(value).prop_map(|(n, v)| Edit::Add(n, v)),
        1 => name(names).prop_map(Edit::Escape),
        1 => Just(Edit::Reverse),
    ]
}

fn edits(names: &'static [&'static str]) -> impl Strategy<Value = Vec<Edit>> {
    prop_oneof![
        3 => Just(Vec::new()),
        2 => vec(edit(names), 1..3),
    ]
}

const AROUND: &[&[u8]] = &[
    b"",
    b" \n\t",
    b"\xEF\xBB\xBF",
    b"\0",
    b"x",
    b"}",
    b"\xFF",
    b",{}",
];

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        12 => Just(Shape::default()),
        1 => (any::<bool>(), select(AROUND), select(AROUND)).prop_map(|(array, prefix, suffix)| {
            Shape {
                array,
                prefix: prefix.to_vec(),
                suffix: suffix.to_vec(),
            }
        }),
    ]
}

fn sign_with() -> impl Strategy<Value = SignWith> {
    prop_oneof![
        12 => Just(SignWith::Own),
        2 => select(Signer::ALL.to_vec()).prop_map(SignWith::Other),
        1 => vec(any::<u8>(), 0..600).prop_map(SignWith::Bytes),
        1 => (0usize..600).prop_map(SignWith::Truncated),
        1 => any::<usize>().prop_map(SignWith::Flipped),
    ]
}

fn wire_edit() -> impl Strategy<Value = Wire> {
    let byte = prop_oneof![Just(b'.'), Just(0u8), Just(0xFF), Just(b' '), any::<u8>()];
    prop_oneof![
        (any::<usize>(), vec(byte.clone(), 1..8)).prop_map(|(at, bytes)| Wire::Insert(at, bytes)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Wire::Delete(at, n)),
        (any::<usize>(), byte).prop_map(|(at, b)| Wire::Replace(at, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(part, n)| Wire::Pad(part, n)),
        any::<usize>().prop_map(Wire::StandardAlphabet),
        any::<usize>().prop_map(Wire::TrailingBits),
        any::<usize>().prop_map(Wire::Repeat),
        Just(Wire::Insert(0, vec![b'.'; 1000])),
        Just(Wire::Insert(usize::MAX, vec![b'A'; 9000])),
    ]
}

fn dpop_case() -> impl Strategy<Value = DpopCase> {
    (
        select(Signer::ALL.to_vec()),
        (edits(JWK_NAMES), shape()),
        (edits(HEADER_NAMES), shape()),
        (edits(CLAIM_NAMES), shape()),
        sign_with(),
        prop_oneof![6 => Just(Vec::new()), 1 => vec(wire_edit(), 1..3)],
    )
        .prop_map(
            |(
                signer,
                (jwk, jwk_shape),
                (header, header_shape),
                (claims, claims_shape),
                sign_with,
                wire,
            )| {
                DpopCase {
                    signer,
                    jwk,
                    jwk_shape,
                    header,
                    header_shape,
                    claims,
                    claims_shape,
                    sign_with,
                    wire,
                }
            },
        )
}

/// Every structured mutation meets the property under each policy; and the
/// generator reaches every answer (accepted, refused, nonce asked), so the
/// property's every branch is exercised, not only refusals.
#[test]
fn structured_mutations_of_valid_proofs() {
    let counts = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let total = cases(512);
    let result = runner(total).run(&dpop_case(), |case| {
        for outcome in dpop::dpop_case(&case) {
            let index = match outcome {
                Outcome::Accepted => 0,
                Outcome::Refused => 1,
                Outcome::NonceAsked => 2,
            };
            counts[index].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let [accepted, refused, nonce_asked] = counts.map(AtomicUsize::into_inner);
    println!(
        "{total} cases x 3 policies: {accepted} accepted, {refused} refused, {nonce_asked} asked for a nonce"
    );
    let least = total as usize / 20;
    assert!(
        accepted >= least && refused >= least && nonce_asked >= least,
        "the generator reaches every answer: {accepted} accepted, {refused} refused, {nonce_asked} nonce asked of {total} cases"
    );
}

/// Arbitrary bytes: as a header value, as a signed payload and header, and
/// read as a structured case.
#[test]
fn arbitrary_bytes() {
    let bytes = prop_oneof![
        vec(any::<u8>(), 0..256),
        "[A-Za-z0-9_.=+/ -]{0,300}".prop_map(String::into_bytes),
        "\\PC{0,100}".prop_map(String::into_bytes),
    ];
    if let Err(failure) = runner(cases(256)).run(&bytes, |input| {
        dpop::dpop_header(&input);
        Ok(())
    }) {
        panic!("{failure}");
    }
}

/// The unchanged proof of each key is accepted by the policies of its
/// algorithm (ES256 and EdDSA by default, RSA only when enabled), and with
/// nonces required it is asked for one; with a live nonce it is accepted,
/// with one of the previous step it is accepted and a fresh one comes back.
/// Without these the mutations would start from a proof already refused.
#[test]
fn valid_proofs_are_accepted() {
    use Outcome::{Accepted, NonceAsked, Refused};
    for signer in Signer::ALL {
        let by_default = if matches!(signer, Signer::Es256 | Signer::EdDsa) {
            Accepted
        } else {
            Refused
        };
        assert_eq!(
            dpop::dpop_case(&DpopCase::valid(signer)),
            [by_default, Accepted, NonceAsked],
            "{signer:?}"
        );
        for steps in [-1, 0, 1] {
            let mut case = DpopCase::valid(signer);
            case.claims = vec![Edit::Add("nonce".into(), dpop::nonce_json(steps))];
            assert_eq!(
                dpop::dpop_case(&case),
                [by_default, Accepted, Accepted],
                "{signer:?} nonce {steps}"
            );
        }
        for steps in [-2, 2] {
            let mut case = DpopCase::valid(signer);
            case.claims = vec![Edit::Add("nonce".into(), dpop::nonce_json(steps))];
            assert_eq!(
                dpop::dpop_case(&case)[2],
                NonceAsked,
                "{signer:?} nonce {steps}"
            );
        }
    }
}

/// Each value of the menus alone, in the member it is meant for: one
/// edit from a valid proof, so no other change hides what the value does
/// (a window one second too wide, a `typ` compared with its case: random
/// cases rarely try exactly that value alone).
#[test]
fn every_listed_value_alone() {
    let mut tried = 0;
    for (names, of) in [
        (HEADER_NAMES, "header"),
        (CLAIM_NAMES, "claims"),
        (JWK_NAMES, "jwk"),
    ] {
        for name in names {
            let signer = match *name {
                "y" => Signer::Es256,
                "n" | "e" => Signer::Rs256,
                _ => Signer::EdDsa,
            };
            for value in dpop::values_for(name) {
                let mut case = DpopCase::valid(signer);
                let edit = vec![Edit::Set((*name).to_owned(), value.clone())];
                match of {
                    "header" => case.header = edit,
                    "claims" => case.claims = edit,
                    _ => case.jwk = edit,
                }
                dpop::dpop_case(&case);
                tried += 1;
            }
        }
    }
    println!("{tried} single edits");
}

/// Writes the seed corpus, `fuzz/corpus/dpop/`: valid proofs of each key
/// (dated [`dpop::NOW`], the property's clock) and one broken way per
/// file. Run once by hand; the files are kept, not regenerated (ES256 and
/// PS256 signatures are randomized):
/// `cargo test -p token-endpoint-fuzz-properties --test dpop -- --ignored write_seed_corpus`
#[test]
#[ignore = "writes fuzz/corpus/dpop/"]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/dpop");
    std::fs::create_dir_all(&dir).unwrap();
    let valid = DpopCase::valid;
    let with = |signer, edit: &dyn Fn(&mut DpopCase)| {
        let mut case = valid(signer);
        edit(&mut case);
        case
    };
    let set = |name: &str, value: &str| Edit::Set(name.into(), value.into());
    let add = |name: &str, value: &str| Edit::Add(name.into(), value.into());
    let secret = format!("\"{}\"", "SECRET".repeat(16));
    let cases: Vec<(&str, DpopCase)> = vec![
        ("valid_es256", valid(Signer::Es256)),
        ("valid_eddsa", valid(Signer::EdDsa)),
        ("valid_rs256", valid(Signer::Rs256)),
        ("valid_ps256", valid(Signer::Ps256)),
        (
            "valid_nonce_previous_step",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![add("nonce", &dpop::nonce_json(-1))]
            }),
        ),
        (
            "valid_typ_application_upper_case",
            with(Signer::EdDsa, &|c| {
                c.header = vec![set("typ", "\"APPLICATION/DPOP+JWT\"")]
            }),
        ),
        (
            "valid_htu_normalised",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("htu", "\"HTTPS://ID.TEST:443/a/../oauth/%74oken?x#y\"")]
            }),
        ),
        (
            "valid_escaped_names_reordered",
            with(Signer::Es256, &|c| {
                c.header = vec![Edit::Escape("typ".into()), Edit::Reverse];
                c.claims = vec![Edit::Escape("jti".into()), Edit::Reverse];
            }),
        ),
        (
            "valid_deeply_nested_ignored_member",
            with(Signer::EdDsa, &|c| {
                c.header = vec![add(
                    "kid",
                    &format!("{}{}", "[".repeat(300), "]".repeat(300)),
                )]
            }),
        ),
        (
            "jwk_private_d_null",
            with(Signer::Es256, &|c| c.jwk = vec![add("d", "null")]),
        ),
        (
            "jwk_kty_oct",
            with(Signer::EdDsa, &|c| {
                c.header = vec![set(
                    "jwk",
                    r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}"#,
                )]
            }),
        ),
        (
            "jwk_k_member",
            with(Signer::EdDsa, &|c| c.jwk = vec![add("k", "\"c2VjcmV0\"")]),
        ),
        (
            "jwk_crv_p384",
            with(Signer::Es256, &|c| c.jwk = vec![set("crv", "\"P-384\"")]),
        ),
        (
            "jwk_kty_rsa_for_es256",
            with(Signer::Es256, &|c| c.jwk = vec![set("kty", "\"RSA\"")]),
        ),
        (
            "jwk_x_31_bytes",
            with(Signer::EdDsa, &|c| {
                c.jwk = vec![set("x", "\"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqw\"")]
            }),
        ),
        (
            "jwk_x_padded",
            with(Signer::EdDsa, &|c| {
                let x = dpop::key_member(Signer::EdDsa, false, "x");
                c.jwk = vec![set("x", &format!("{}=\"", x.trim_end_matches('"')))];
            }),
        ),
        (
            "jwk_rsa_n_leading_zero",
            with(Signer::Rs256, &|c| {
                let n = dpop::key_member(Signer::Rs256, false, "n");
                c.jwk = vec![set("n", &format!("\"AA{}", n.trim_start_matches('"')))];
            }),
        ),
        (
            "jwk_as_array",
            with(Signer::EdDsa, &|c| c.jwk_shape.array = true),
        ),
        (
            "jwk_as_long_string",
            with(Signer::EdDsa, &|c| c.header = vec![set("jwk", &secret)]),
        ),
        (
            "header_as_array",
            with(Signer::EdDsa, &|c| {
                c.header = vec![add("crit", "null")];
                c.header_shape.array = true;
            }),
        ),
        (
            "claims_as_array",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![add("nonce", "null")];
                c.claims_shape.array = true;
            }),
        ),
        (
            "header_duplicate_typ",
            with(Signer::EdDsa, &|c| {
                c.header = vec![add("typ", "\"dpop+jwt\"")]
            }),
        ),
        (
            "header_duplicate_escaped_alg",
            with(Signer::EdDsa, &|c| {
                c.header = vec![add("alg", "\"EdDSA\""), Edit::Escape("alg".into())]
            }),
        ),
        (
            "header_crit_null",
            with(Signer::EdDsa, &|c| c.header = vec![add("crit", "null")]),
        ),
        (
            "header_nested_over_limit",
            with(Signer::EdDsa, &|c| {
                c.header = vec![set(
                    "typ",
                    &format!("{}{}", "{\"a\":".repeat(130), "}".repeat(130)),
                )]
            }),
        ),
        (
            "header_bom_prefix",
            with(Signer::EdDsa, &|c| {
                c.header_shape.prefix = b"\xEF\xBB\xBF".to_vec()
            }),
        ),
        (
            "header_kid_non_ascii",
            with(Signer::EdDsa, &|c| {
                c.header = vec![set("kid", "\"\u{e9}\"")]
            }),
        ),
        (
            "typ_long",
            with(Signer::EdDsa, &|c| c.header = vec![set("typ", &secret)]),
        ),
        (
            "alg_none",
            with(Signer::EdDsa, &|c| c.header = vec![set("alg", "\"none\"")]),
        ),
        (
            "alg_hs256",
            with(Signer::EdDsa, &|c| c.header = vec![set("alg", "\"HS256\"")]),
        ),
        (
            "signature_other_key",
            with(Signer::Es256, &|c| {
                c.sign_with = SignWith::Other(Signer::Es256)
            }),
        ),
        (
            "signature_pss_for_rs256",
            with(Signer::Rs256, &|c| {
                c.sign_with = SignWith::Other(Signer::Rs256)
            }),
        ),
        (
            "signature_truncated",
            with(Signer::EdDsa, &|c| c.sign_with = SignWith::Truncated(63)),
        ),
        (
            "signature_trailing_bits",
            with(Signer::EdDsa, &|c| c.wire = vec![Wire::TrailingBits(2)]),
        ),
        (
            "payload_standard_alphabet_padded",
            with(Signer::EdDsa, &|c| {
                c.wire = vec![Wire::StandardAlphabet(1), Wire::Pad(1, 0)]
            }),
        ),
        (
            "htm_get",
            with(Signer::EdDsa, &|c| c.claims = vec![set("htm", "\"GET\"")]),
        ),
        (
            "htu_trailing_slash",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("htu", "\"https://id.test/oauth/token/\"")]
            }),
        ),
        (
            "htu_userinfo",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("htu", "\"https://user@id.test/oauth/token\"")]
            }),
        ),
        (
            "iat_61_s_old",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("iat", "1799999939")]
            }),
        ),
        (
            "iat_string",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("iat", "\"1800000000\"")]
            }),
        ),
        (
            "jti_257_bytes",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![set("jti", &format!("\"{}\u{e9}\"", "a".repeat(255)))]
            }),
        ),
        (
            "jti_empty",
            with(Signer::EdDsa, &|c| c.claims = vec![set("jti", "\"\"")]),
        ),
        (
            "jti_duplicate",
            with(Signer::EdDsa, &|c| c.claims = vec![add("jti", "\"other\"")]),
        ),
        (
            "nonce_stale",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![add("nonce", &dpop::nonce_json(-2))]
            }),
        ),
        (
            "extra_dots_1000",
            with(Signer::EdDsa, &|c| {
                c.wire = vec![Wire::Insert(0, vec![b'.'; 1000])]
            }),
        ),
        (
            "four_parts",
            with(Signer::EdDsa, &|c| {
                c.wire = vec![Wire::Insert(usize::MAX, b".x".to_vec())]
            }),
        ),
        (
            "repeated_proof",
            with(Signer::EdDsa, &|c| c.wire = vec![Wire::Repeat(0)]),
        ),
        (
            "embedded_nul",
            with(Signer::EdDsa, &|c| c.wire = vec![Wire::Insert(40, vec![0])]),
        ),
        (
            "not_utf8_byte",
            with(Signer::EdDsa, &|c| {
                c.wire = vec![Wire::Insert(40, vec![0xFF])]
            }),
        ),
        (
            "longer_than_8_kib",
            with(Signer::EdDsa, &|c| {
                c.claims = vec![add("pad", &format!("\"{}\"", "A".repeat(8192)))]
            }),
        ),
    ];
    for (name, case) in cases {
        std::fs::write(dir.join(name), case.render()).unwrap();
    }
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(
        dir.join("bearer_scheme"),
        b"Bearer eyJhbGciOiJFUzI1NiJ9.e30.",
    )
    .unwrap();
}
