//! TLS material from files named by settings: the listener's certificate
//! (`TOKEN_ENDPOINT_TLS_*`) and what Redis connections trust and present
//! (`TOKEN_ENDPOINT_REDIS_TLS_*`). Every failure names its setting.
//!
//! One rustls provider for the process, aws-lc-rs: it already signs the
//! tokens, and a build that also links `ring` (a test client does) would
//! otherwise leave rustls unable to pick a default.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use secrecy::{ExposeSecret, SecretSlice};

use crate::config::ConfigError;

/// The process's rustls provider, installed as the default on first use.
pub fn provider() -> Arc<CryptoProvider> {
    // Err: one is installed already (by an earlier call, or by the
    // embedding program); that one is used.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The most a TLS or password file may hold. A certificate chain is a few
/// KiB and a CA bundle a few hundred; the listener's files are read again
/// on every reload tick, so a stray 300 MB file must not be.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A regular file's bytes, at most [`MAX_FILE_BYTES`]. Anything else is
/// refused before it is read: a FIFO or a device would block the reading
/// thread (the listener's reload thread, for good) or never end.
pub fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let fail =
        |why: String| ConfigError::new(setting, format!("cannot read {}: {why}", path.display()));
    let is_regular = |metadata: &std::fs::Metadata| -> Result<(), ConfigError> {
        if !metadata.is_file() {
            return Err(fail("not a regular file".into()));
        }
        if metadata.len() > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{} bytes, more than the {MAX_FILE_BYTES} a PEM or password file may hold",
                metadata.len()
            )));
        }
        Ok(())
    };
    // Symbolic links are followed (Kubernetes mounts Secrets through them).
    is_regular(&std::fs::metadata(path).map_err(|e| fail(e.to_string()))?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Replaced by a FIFO between the look and the open: do not wait for a
    // writer. No effect on a regular file.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| fail(e.to_string()))?;
    is_regular(&file.metadata().map_err(|e| fail(e.to_string()))?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "it grew past the {MAX_FILE_BYTES} bytes a PEM or password file may hold"
        )));
    }
    Ok(bytes)
}

/// The PEM certificates of a file: at least one.
pub fn certificates(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(
                setting,
                format!("{} is not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            setting,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// The PEM private key of a file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    // The parser's error would quote no key material, but say nothing of
    // it either way.
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
        ConfigError::new(
            setting,
            format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
        )
    })
}

/// A certificate chain and its private key, read and checked to belong
/// together: what a TLS listener serves.
pub fn certified_key(
    (cert_setting, cert_path): (&'static str, &Path),
    (key_setting, key_path): (&'static str, &Path),
) -> Result<CertifiedKey, ConfigError> {
    let chain = certificates(cert_setting, cert_path, &read(cert_setting, cert_path)?)?;
    let key_pem = SecretSlice::from(read(key_setting, key_path)?);
    let key = private_key(key_setting, key_path, key_pem.expose_secret())?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|e| {
        ConfigError::new(
            key_setting,
            format!("{}: a key rustls cannot sign with: {e}", key_path.display()),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| {
        ConfigError::new(
            key_setting,
            format!(
                "{} is not the key of the certificate in {}: {e}",
                key_path.display(),
                cert_path.display()
            ),
        )
    })?;
    Ok(certified)
}

/// A client certificate chain and its key, as PEM, for mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert: Vec<u8>,
    pub key: Arc<SecretSlice<u8>>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_bytes", &self.cert.len())
            .field("key", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = read("TOKEN_ENDPOINT_TLS_CERT_FILE", &fifo).unwrap_err();
        assert!(err.reason.contains("not a regular file"), "{err}");
        let err = read("TOKEN_ENDPOINT_TLS_CERT_FILE", dir.path()).unwrap_err();
        assert!(err.reason.contains("not a regular file"), "{err}");
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let err = read("TOKEN_ENDPOINT_TLS_CERT_FILE", &big).unwrap_err();
        assert!(err.reason.contains("more than the"), "{err}");
        let fits = dir.path().join("fits.pem");
        std::fs::write(&fits, vec![b'A'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(
            read("TOKEN_ENDPOINT_TLS_CERT_FILE", &fits).unwrap().len() as u64,
            MAX_FILE_BYTES
        );
    }
}
