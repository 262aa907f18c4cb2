//! The fuzz targets' seed corpus (`fuzz/corpus/<target>/`), replayed through
//! the very functions the fuzzers call, on the stable toolchain: every
//! property of `token_endpoint_fuzz_properties` holds for every seed, and for every
//! minimized find added since. See `fuzz/README.md`.

// A test fails by panicking; the workspace lints forbid it in production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use token_endpoint_fuzz_properties as fuzzing;

/// Run every file of `fuzz/corpus/<target>/` through `property`, and fail
/// naming each file that breaks it, or if the directory holds no file.
fn replay(target: &str, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("list the corpus").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds no seed: the replay would prove nothing",
        dir.display()
    );
    let broken: Vec<String> = files
        .iter()
        .filter(|path| {
            let input = std::fs::read(path).expect("read a corpus file");
            catch_unwind(AssertUnwindSafe(|| property(&input))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        broken.is_empty(),
        "{} of {} inputs in {} break a property (the panic messages above say which): {broken:#?}",
        broken.len(),
        files.len(),
        dir.display()
    );
}

/// Request bodies: form parsing and request validation.
#[test]
fn form() {
    replay("form", fuzzing::form);
}

/// `Authorization` header values: HTTP Basic client authentication.
#[test]
fn auth_header() {
    replay("auth_header", fuzzing::auth_header);
}

/// Stored code records: parsing, serialization and the redemption checks.
#[test]
fn code_record() {
    replay("code_record", fuzzing::code_record);
}

/// A client's allowed CORS origins: normalization.
#[test]
fn origin() {
    replay("origin", fuzzing::origin);
}

/// `DPoP` header values: proof verification (RFC 9449).
#[test]
fn dpop() {
    replay("dpop", fuzzing::dpop_header);
}
