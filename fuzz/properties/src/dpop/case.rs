//! Proofs to check: test-only keys that sign them, [`DpopCase`] (a valid
//! proof and the edits that break it, or not), the menus edits pick from,
//! and the reading of a case from the fuzzer's bytes.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};

use super::{nonce_json, HTU, HTU_DIFFERENT, HTU_SAME, NOW};

/// The key that signs a case's proof (and whose `jwk` its header carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Es256,
    EdDsa,
    Rs256,
    Ps256,
}

impl Signer {
    pub const ALL: [Signer; 4] = [Self::Es256, Self::EdDsa, Self::Rs256, Self::Ps256];

    pub fn alg(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A test-only key pair and its public `jwk` members (as JSON strings).
pub(super) struct TestKey {
    pair: Pair,
    signer: Signer,
    jwk: Vec<(&'static str, String)>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    fn ed25519(seed: u8) -> Self {
        let pair = match Ed25519KeyPair::from_seed_unchecked(&[seed; 32]) {
            Ok(pair) => pair,
            Err(_) => panic!("any 32 bytes are an Ed25519 seed"),
        };
        let x = b64(pair.public_key().as_ref());
        Self {
            jwk: vec![("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", x)],
            pair: Pair::Ed(pair),
            signer: Signer::EdDsa,
        }
    }

    fn p256() -> Self {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).and_then(
            |pkcs8| {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|_| ring::error::Unspecified)
            },
        );
        let Ok(pair) = pair else {
            panic!("a P-256 key is generated");
        };
        let point = pair.public_key().as_ref();
        let (x, y) = (
            b64(point.get(1..33).unwrap_or_default()),
            b64(point.get(33..65).unwrap_or_default()),
        );
        Self {
            jwk: vec![
                ("kty", "EC".into()),
                ("crv", "P-256".into()),
                ("x", x),
                ("y", y),
            ],
            pair: Pair::Ec(pair),
            signer: Signer::Es256,
        }
    }

    /// The fixture RSA-2048 key (tests/fixtures), for `signer` RS256 or PS256.
    fn rsa(signer: Signer) -> Self {
        const PEM: &str = include_str!("../../../../tests/fixtures/rsa-2048.test-only.pem");
        let body: String = PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let pair = STANDARD
            .decode(body)
            .ok()
            .and_then(|der| RsaKeyPair::from_pkcs8(&der).ok());
        let Some(pair) = pair else {
            panic!("the RSA fixture is a PKCS#8 key");
        };
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        Self {
            jwk: vec![
                ("kty", "RSA".into()),
                ("n", b64(&public.n)),
                ("e", b64(&public.e)),
            ],
            pair: Pair::Rsa(pair),
            signer,
        }
    }

    fn jwk_members(&self) -> Vec<Member> {
        self.jwk
            .iter()
            .map(|(name, value)| Member::new(name, json_string(value)))
            .collect()
    }

    pub(super) fn header_members(&self) -> Vec<Member> {
        vec![
            Member::new("typ", json_string("dpop+jwt")),
            Member::new("alg", json_string(self.signer.alg())),
            Member::new("jwk", object(&self.jwk_members(), &Shape::default())),
        ]
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                let padding: &dyn ring::signature::RsaEncoding = match self.signer {
                    Signer::Ps256 => &RSA_PSS_SHA256,
                    _ => &RSA_PKCS1_SHA256,
                };
                match pair.sign(padding, &rng, message, &mut signature) {
                    Ok(()) => signature,
                    Err(_) => Vec::new(),
                }
            }
        }
    }

    /// `header.claims.signature`, base64url, signed as `with` says.
    pub(super) fn sign_parts(&self, header: &[u8], claims: &[u8], with: &SignWith) -> Vec<u8> {
        let input = format!("{}.{}", b64(header), b64(claims));
        let signature = match with {
            SignWith::Own => self.sign(input.as_bytes()),
            SignWith::Other(signer) => keys().get(*signer, true).sign(input.as_bytes()),
            SignWith::Bytes(bytes) => bytes.clone(),
            SignWith::Truncated(len) => {
                let mut signature = self.sign(input.as_bytes());
                signature.truncate(*len);
                signature
            }
            SignWith::Flipped(bit) => {
                let mut signature = self.sign(input.as_bytes());
                let len = signature.len().max(1);
                if let Some(byte) = signature.get_mut(bit / 8 % len) {
                    *byte ^= 1 << (bit % 8);
                }
                signature
            }
        };
        format!("{input}.{}", b64(&signature)).into_bytes()
    }
}

pub(super) struct Keys {
    es256: TestKey,
    eddsa: TestKey,
    rs256: TestKey,
    ps256: TestKey,
    other_es256: TestKey,
    other_eddsa: TestKey,
}

impl Keys {
    /// The key of `signer`, or its other key: another P-256 or Ed25519
    /// key; for RSA (one fixture key), the same key with the other padding.
    pub(super) fn get(&self, signer: Signer, other: bool) -> &TestKey {
        match (signer, other) {
            (Signer::Es256, false) => &self.es256,
            (Signer::Es256, true) => &self.other_es256,
            (Signer::EdDsa, false) => &self.eddsa,
            (Signer::EdDsa, true) => &self.other_eddsa,
            (Signer::Rs256, false) | (Signer::Ps256, true) => &self.rs256,
            (Signer::Ps256, false) | (Signer::Rs256, true) => &self.ps256,
        }
    }
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        es256: TestKey::p256(),
        eddsa: TestKey::ed25519(1),
        rs256: TestKey::rsa(Signer::Rs256),
        ps256: TestKey::rsa(Signer::Ps256),
        other_es256: TestKey::p256(),
        other_eddsa: TestKey::ed25519(2),
    })
}

/// A `jwk` member of a key, as a JSON string: `other` for the other key
/// of that type ([`Keys::get`]).
pub fn key_member(signer: Signer, other: bool, name: &str) -> String {
    let key = keys().get(signer, other);
    let value = key
        .jwk
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    json_string(value)
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

pub(super) fn base_claims() -> Vec<Member> {
    vec![
        Member::new("jti", json_string("fuzz-jti-0123456789")),
        Member::new("htm", json_string("POST")),
        Member::new("htu", json_string(HTU)),
        Member::new("iat", NOW.to_string()),
    ]
}

// ---------------------------------------------------------------------------
// Structured mutations
// ---------------------------------------------------------------------------

/// A valid proof of `signer`'s key (typ, alg, jwk; jti, htm, htu, iat at
/// [`NOW`]), changed by each edit, in order. With no edit, every policy
/// that accepts the algorithm accepts it (nonces: asks for one).
#[derive(Debug, Clone)]
pub struct DpopCase {
    pub signer: Signer,
    pub jwk: Vec<Edit>,
    pub jwk_shape: Shape,
    pub header: Vec<Edit>,
    pub header_shape: Shape,
    pub claims: Vec<Edit>,
    pub claims_shape: Shape,
    pub sign_with: SignWith,
    pub wire: Vec<Wire>,
}

/// A change to a JSON object's members. Values are raw JSON text.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Every member of that name goes.
    Remove(String),
    /// The first member of that name gets this value (added if none).
    Set(String, String),
    /// A member is added at the end, a second one if the name is there.
    Add(String, String),
    /// The members of that name are spelled with `\u` escapes.
    Escape(String),
    /// The members in the reverse order.
    Reverse,
}

/// How an object is written: as an array of its values instead, and with
/// bytes around it (white space, a BOM, trailing garbage, non-UTF-8).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub array: bool,
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

/// The signature the proof carries.
#[derive(Debug, Clone)]
pub enum SignWith {
    Own,
    /// Another key's ([`Keys::get`]): the `jwk` is not the signer's.
    Other(Signer),
    /// These bytes.
    Bytes(Vec<u8>),
    /// The right one, cut to this many bytes.
    Truncated(usize),
    /// The right one with this bit flipped.
    Flipped(usize),
}

/// A change to the header value's bytes; positions wrap around.
#[derive(Debug, Clone)]
pub enum Wire {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
    /// `=` padding at the end of part `.0 % 3`, `.1 % 3 + 1` times.
    Pad(usize, usize),
    /// Part `n % 3` in the standard alphabet (`+`, `/`).
    StandardAlphabet(usize),
    /// The last character of part `n % 3` changed in its unused bits.
    TrailingBits(usize),
    /// The whole value, `n % 4 + 2` times, joined by `.`.
    Repeat(usize),
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    name: String,
    escaped: bool,
    value: Vec<u8>,
}

impl Member {
    fn new(name: &str, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.to_owned(),
            escaped: false,
            value: value.into(),
        }
    }
}

fn apply(members: &mut Vec<Member>, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Remove(name) => members.retain(|m| m.name != *name),
            Edit::Set(name, value) => match members.iter_mut().find(|m| m.name == *name) {
                Some(member) => member.value = value.clone().into_bytes(),
                None => members.push(Member::new(name, value.as_str())),
            },
            Edit::Add(name, value) => members.push(Member::new(name, value.as_str())),
            Edit::Escape(name) => members
                .iter_mut()
                .filter(|m| m.name == *name)
                .for_each(|m| m.escaped = true),
            Edit::Reverse => members.reverse(),
        }
    }
}

/// `members` written as a JSON object (or array), with `shape`'s bytes
/// around.
pub(super) fn object(members: &[Member], shape: &Shape) -> Vec<u8> {
    let mut out = shape.prefix.clone();
    out.push(if shape.array { b'[' } else { b'{' });
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if !shape.array {
            let name = if member.escaped {
                let escaped: String = member
                    .name
                    .encode_utf16()
                    .map(|unit| format!("\\u{unit:04x}"))
                    .collect();
                format!("\"{escaped}\"")
            } else {
                json_string(&member.name)
            };
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(&member.value);
    }
    out.push(if shape.array { b']' } else { b'}' });
    out.extend_from_slice(&shape.suffix);
    out
}

impl DpopCase {
    /// The valid proof of `signer`, unchanged.
    pub fn valid(signer: Signer) -> Self {
        Self {
            signer,
            jwk: Vec::new(),
            jwk_shape: Shape::default(),
            header: Vec::new(),
            header_shape: Shape::default(),
            claims: Vec::new(),
            claims_shape: Shape::default(),
            sign_with: SignWith::Own,
            wire: Vec::new(),
        }
    }

    /// The `DPoP` header value.
    pub fn render(&self) -> Vec<u8> {
        let key = keys().get(self.signer, false);
        let mut jwk = key.jwk_members();
        apply(&mut jwk, &self.jwk);
        let mut header = key.header_members();
        header.retain(|m| m.name != "jwk");
        header.push(Member::new("jwk", object(&jwk, &self.jwk_shape)));
        apply(&mut header, &self.header);
        let mut claims = base_claims();
        apply(&mut claims, &self.claims);
        let mut wire = key.sign_parts(
            &object(&header, &self.header_shape),
            &object(&claims, &self.claims_shape),
            &self.sign_with,
        );
        for edit in &self.wire {
            edit_wire(&mut wire, edit);
        }
        wire
    }

    /// A case read from arbitrary bytes (the fuzzer's): each byte picks
    /// from the menus ([`names`], [`values`]) or gives raw material.
    pub fn from_bytes(input: &[u8]) -> Self {
        let mut bytes = Reader(input);
        // RSA one time in four: its signatures take twenty times as long.
        const SIGNERS: [Signer; 8] = [
            Signer::EdDsa,
            Signer::Es256,
            Signer::EdDsa,
            Signer::Es256,
            Signer::EdDsa,
            Signer::Es256,
            Signer::Rs256,
            Signer::Ps256,
        ];
        let signer = SIGNERS
            .get(bytes.below(SIGNERS.len()))
            .copied()
            .unwrap_or(Signer::EdDsa);
        let mut case = Self::valid(signer);
        case.jwk = bytes.edits(JWK_NAMES);
        case.header = bytes.edits(HEADER_NAMES);
        case.claims = bytes.edits(CLAIM_NAMES);
        // Zero (the bytes past the end) picks the valid choice each time.
        if bytes.below(4) == 1 {
            case.jwk_shape = bytes.shape();
            case.header_shape = bytes.shape();
            case.claims_shape = bytes.shape();
        }
        case.sign_with = match bytes.below(8) {
            1 => SignWith::Other(Signer::ALL.get(bytes.below(4)).copied().unwrap_or(signer)),
            2 => SignWith::Bytes(bytes.raw()),
            3 => SignWith::Truncated(bytes.below(600)),
            4 => SignWith::Flipped(bytes.below(4096)),
            _ => SignWith::Own,
        };
        for _ in 0..bytes.below(3) {
            let at = bytes.below(usize::MAX);
            let edit = match bytes.below(7) {
                0 => Wire::Insert(at, bytes.raw()),
                1 => Wire::Delete(at, bytes.below(16)),
                2 => Wire::Replace(at, bytes.byte()),
                3 => Wire::Pad(at, bytes.below(3)),
                4 => Wire::StandardAlphabet(at),
                5 => Wire::TrailingBits(at),
                _ => Wire::Repeat(at),
            };
            case.wire.push(edit);
        }
        case
    }
}

fn edit_wire(wire: &mut Vec<u8>, edit: &Wire) {
    let len = wire.len();
    match edit {
        Wire::Insert(at, bytes) => {
            let at = at % (len + 1);
            wire.splice(at..at, bytes.iter().copied());
        }
        Wire::Delete(at, count) => {
            let at = at % (len + 1);
            wire.drain(at..(at + count).min(len));
        }
        Wire::Replace(at, byte) => {
            if let Some(b) = wire.get_mut(at % len.max(1)) {
                *b = *byte;
            }
        }
        Wire::Pad(part, count) => {
            let (_, end) = part_bounds(wire, *part);
            wire.splice(end..end, std::iter::repeat_n(b'=', count % 3 + 1));
        }
        Wire::StandardAlphabet(part) => {
            let (start, end) = part_bounds(wire, *part);
            for b in wire.iter_mut().take(end).skip(start) {
                *b = match *b {
                    b'-' => b'+',
                    b'_' => b'/',
                    other => other,
                };
            }
        }
        Wire::TrailingBits(part) => {
            let (_, end) = part_bounds(wire, *part);
            if let Some(last) = end.checked_sub(1).and_then(|i| wire.get_mut(i)) {
                // Base64url digits differing only in their low bits:
                // A (0) and B (1), and so on.
                *last = match *last {
                    b'A' => b'B',
                    b'Q' => b'R',
                    b'g' => b'h',
                    b'w' => b'x',
                    b'E' => b'F',
                    b'I' => b'J',
                    b'M' => b'N',
                    b'U' => b'V',
                    b'Y' => b'Z',
                    b'c' => b'd',
                    b'k' => b'l',
                    b'o' => b'p',
                    b's' => b't',
                    b'0' => b'1',
                    b'4' => b'5',
                    b'8' => b'9',
                    other => other,
                };
            }
        }
        Wire::Repeat(times) => {
            let once = wire.clone();
            for _ in 0..times % 4 + 1 {
                wire.push(b'.');
                wire.extend_from_slice(&once);
            }
        }
    }
}

/// Where part `n % 3` of a JWS starts and ends (the end of the value
/// if it has fewer parts).
fn part_bounds(wire: &[u8], n: usize) -> (usize, usize) {
    let dots: Vec<usize> = wire
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i)
        .collect();
    let k = n % 3;
    let start = match k.checked_sub(1) {
        None => 0,
        Some(before) => dots.get(before).map_or(wire.len(), |dot| dot + 1),
    };
    let end = dots.get(k).copied().unwrap_or(wire.len());
    (start, end.max(start))
}

/// The names edits pick from.
pub const HEADER_NAMES: &[&str] = &[
    "typ", "alg", "jwk", "crit", "kid", "b64", "x5c", "jku", "nonce", "TYP",
];
pub const JWK_NAMES: &[&str] = &[
    "kty", "crv", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "k", "kid", "use",
    "alg", "key_ops",
];
pub const CLAIM_NAMES: &[&str] = &[
    "jti", "htm", "htu", "iat", "nonce", "ath", "exp", "nbf", "JTI",
];

/// Values edits pick from (raw JSON), by the member they are meant for:
/// each member's interesting values, right and wrong.
struct Menus {
    by_name: Vec<(&'static [&'static str], Vec<String>)>,
    /// Of every type, nested, long: for any member.
    generic: Vec<String>,
    all: Vec<String>,
}

fn raw(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn menus() -> &'static Menus {
    static MENUS: OnceLock<Menus> = OnceLock::new();
    MENUS.get_or_init(|| {
        let typ = raw(&[
            r#""dpop+jwt""#,
            r#""DPoP+JWT""#,
            r#""application/dpop+jwt""#,
            r#""APPLICATION/DPOP+JWT""#,
            r#""jwt""#,
            r#""dpop+jwt ""#,
            r#""dpop\u002bjwt""#,
            r#""application/""#,
            r#""applicationXdpop+jwt""#,
            r#""application/application/dpop+jwt""#,
        ]);
        let alg = raw(&[
            r#""ES256""#,
            r#""EdDSA""#,
            r#""RS256""#,
            r#""PS256""#,
            r#""none""#,
            r#""HS256""#,
            r#""es256""#,
            r#""ES384""#,
            r#""Ed25519""#,
        ]);
        let crit = raw(&["null", "[]", r#"["b64"]"#, r#"["exp"]"#, r#""b64""#]);
        let kty_crv = raw(&[
            r#""EC""#,
            r#""OKP""#,
            r#""RSA""#,
            r#""oct""#,
            r#""ec""#,
            r#""P-256""#,
            r#""P-384""#,
            r#""Ed25519""#,
            r#""Ed448""#,
            r#""X25519""#,
            r#""secp256k1""#,
        ]);
        // Base64url of wrong lengths; each key's members, right and as
        // non-canonical spellings (padded, with a leading zero octet, the
        // standard alphabet, white space, NUL).
        let mut key_members: Vec<String> = [0, 1, 31, 32, 33, 64, 65, 255, 256, 257, 1025]
            .iter()
            .map(|len| json_string(&b64(&vec![0xAB; *len])))
            .collect();
        for signer in Signer::ALL {
            for other in [false, true] {
                for name in ["x", "y", "n", "e"] {
                    let member = key_member(signer, other, name);
                    if member == r#""""# {
                        continue;
                    }
                    let text = member.trim_matches('"');
                    key_members.push(json_string(&format!("{text}=")));
                    key_members.push(json_string(&format!("AA{text}")));
                    key_members.push(json_string(&text.replace('-', "+").replace('_', "/")));
                    key_members.push(json_string(&format!(" {text}")));
                    key_members.push(json_string(&format!("{text}\u{0}")));
                    key_members.push(member);
                }
            }
        }
        let private = raw(&["null", r#""AQAB""#, r#""""#, "{}", "[]", "0"]);
        // A complete jwk of each key (the other ones), a symmetric one.
        let mut jwk: Vec<String> = Signer::ALL
            .iter()
            .map(|signer| {
                let key = keys().get(*signer, true);
                String::from_utf8_lossy(&object(&key.jwk_members(), &Shape::default())).into_owned()
            })
            .collect();
        jwk.push(r#"{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}"#.to_owned());
        let jti: Vec<String> = [
            "a".to_owned(),
            "a".repeat(255),
            "a".repeat(256),
            "a".repeat(257),
            format!("{}\u{e9}", "a".repeat(254)),
            format!("{}\u{e9}", "a".repeat(255)),
        ]
        .iter()
        .map(|jti| json_string(jti))
        .chain([r#""""#.to_owned(), "1".to_owned()])
        .collect();
        let htm = raw(&[
            r#""POST""#,
            r#""post""#,
            r#""GET""#,
            r#""POST ""#,
            r#""P\u004fST""#,
        ]);
        let htu: Vec<String> = HTU_SAME
            .iter()
            .chain(HTU_DIFFERENT)
            .map(|u| json_string(u))
            .collect();
        let iat = raw(&[
            "1800000000",
            "1799999940",
            "1799999939",
            "1800000005",
            "1800000006",
            "1800000000.0",
            "1.8e9",
            "1799999939.999",
            "1800000005.001",
            r#""1800000000""#,
            "18446744073709551615",
            "-9223372036854775808",
            "1e308",
            "-0",
            "null",
        ]);
        let nonce: Vec<String> = (-2..=2)
            .map(nonce_json)
            .chain([r#""AAAA""#.to_owned(), "null".to_owned()])
            .collect();
        let mut generic = raw(&[
            "null",
            "true",
            "false",
            "0",
            "-1",
            "1.5",
            "1e400",
            "[]",
            "{}",
            r#""""#,
            "[1,[2]]",
            r#"{"a":1}"#,
            r#""\u0000""#,
            r#""\ud800""#,
            r#""\"""#,
            "\"\u{e9}\u{1F600}\"",
        ]);
        for depth in [5, 126, 127, 128, 129, 300] {
            generic.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            generic.push(format!(
                "{}1{}",
                r#"{"a":"#.repeat(depth),
                "}".repeat(depth)
            ));
        }
        for len in [33, 2049, 6000, 9000] {
            generic.push(json_string(&"S".repeat(len)));
        }
        let by_name: Vec<(&'static [&'static str], Vec<String>)> = vec![
            (&["typ", "TYP"], typ),
            (&["alg"], alg),
            (&["crit"], crit),
            (&["jwk"], jwk),
            (&["kty", "crv"], kty_crv),
            (&["x", "y", "n", "e"], key_members),
            (&["d", "p", "q", "dp", "dq", "qi", "oth", "k"], private),
            (&["jti", "JTI"], jti),
            (&["htm"], htm),
            (&["htu"], htu),
            (&["iat", "exp", "nbf"], iat),
            (&["nonce"], nonce),
        ];
        let all = by_name
            .iter()
            .flat_map(|(_, values)| values.iter())
            .chain(&generic)
            .cloned()
            .collect();
        Menus {
            by_name,
            generic,
            all,
        }
    })
}

/// Every value of the menus, whatever member it is meant for.
pub fn values() -> &'static [String] {
    &menus().all
}

/// The values meant for member `name` (those of every type, nested or
/// long, for a name without its own).
pub fn values_for(name: &str) -> &'static [String] {
    let menus = menus();
    menus
        .by_name
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map_or(&menus.generic, |(_, values)| values)
}

/// A cursor over the fuzzer's bytes; past the end, every read is zero.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn below(&mut self, n: usize) -> usize {
        let wide = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(wide) % n.max(1)
    }

    /// Up to 63 bytes, raw.
    fn raw(&mut self) -> Vec<u8> {
        let len = self.below(64).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken.to_vec()
    }

    fn pick(&mut self, menu: &[&str]) -> String {
        if self.below(8) == 0 {
            return String::from_utf8_lossy(&self.raw()).into_owned();
        }
        menu.get(self.below(menu.len()))
            .copied()
            .unwrap_or_default()
            .to_owned()
    }

    fn value(&mut self, name: &str) -> String {
        let menu = match self.below(16) {
            0 => return json_string(&String::from_utf8_lossy(&self.raw())),
            1 => return String::from_utf8_lossy(&self.raw()).into_owned(),
            2..=4 => values(),
            _ => values_for(name),
        };
        menu.get(self.below(menu.len()))
            .cloned()
            .unwrap_or_default()
    }

    fn edits(&mut self, names: &[&str]) -> Vec<Edit> {
        (0..self.below(3))
            .map(|_| match self.below(6) {
                0 => Edit::Remove(self.pick(names)),
                1 | 2 => {
                    let name = self.pick(names);
                    let value = self.value(&name);
                    Edit::Set(name, value)
                }
                3 => {
                    let name = self.pick(names);
                    let value = self.value(&name);
                    Edit::Add(name, value)
                }
                4 => Edit::Escape(self.pick(names)),
                _ => Edit::Reverse,
            })
            .collect()
    }

    fn shape(&mut self) -> Shape {
        const AROUND: [&[u8]; 8] = [
            b"",
            b" \n\t",
            b"\xEF\xBB\xBF",
            b"\0",
            b"x",
            b"}",
            b"\xFF",
            b",{}",
        ];
        let mut around = || {
            AROUND
                .get(self.below(AROUND.len()))
                .copied()
                .unwrap_or_default()
                .to_vec()
        };
        Shape {
            prefix: around(),
            suffix: around(),
            array: self.below(2) == 1,
        }
    }
}
