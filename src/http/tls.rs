//! The optional TLS listener (`TOKEN_ENDPOINT_TLS_CERT_FILE` and
//! `TOKEN_ENDPOINT_TLS_KEY_FILE`): rustls with its safe defaults, TLS 1.2
//! and 1.3 only, and a certificate re-read when its files change, so a
//! rotation (cert-manager renews well before expiry) needs no restart.
//!
//! Each handshake asks [`ReloadingCert`] for the current pair; a thread
//! checks the files every `TOKEN_ENDPOINT_TLS_RELOAD_SECS` and swaps in a
//! changed pair once it loads and its key matches its certificate. A pair
//! that does not (a half-written rotation) is logged and the old one kept:
//! connections keep being served.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{CertificateFiles, ConfigError, ListenerTls};
use crate::tls;

const CERT: &str = "TOKEN_ENDPOINT_TLS_CERT_FILE";
const KEY: &str = "TOKEN_ENDPOINT_TLS_KEY_FILE";

/// The listener's rustls configuration, its certificate loaded now (a bad
/// file stops start-up, naming its setting) and watched from then on.
pub fn server_config(settings: &ListenerTls) -> Result<ServerConfig, ConfigError> {
    let resolver = Arc::new(ReloadingCert::load(&settings.files)?);
    watch(Arc::downgrade(&resolver), settings.reload_every);
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::new(CERT, format!("no TLS version rustls can offer: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // actix-web here speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate and key the listener serves now.
pub struct ReloadingCert {
    files: CertificateFiles,
    current: ArcSwap<CertifiedKey>,
    /// SHA-256 of the file contents last looked at (loaded or not), so
    /// an unchanged pair is neither parsed nor logged again.
    seen: std::sync::Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ReloadingCert {
    fn load(files: &CertificateFiles) -> Result<Self, ConfigError> {
        let seen = fingerprint(files)?;
        let pair = tls::certified_key((CERT, &files.cert), (KEY, &files.key))?;
        Ok(Self {
            files: files.clone(),
            current: ArcSwap::from_pointee(pair),
            seen: std::sync::Mutex::new(seen),
        })
    }

    /// Look at the files once: swap in a changed pair that loads.
    pub fn check(&self) {
        let Ok(now) = fingerprint(&self.files) else {
            // Unreadable for a moment (a rotation mid-way): next time.
            return;
        };
        {
            let Ok(mut seen) = self.seen.lock() else {
                return;
            };
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match tls::certified_key((CERT, &self.files.cert), (KEY, &self.files.key)) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded: new connections get the new one"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "TLS certificate files changed but do not load; still serving the previous certificate"
            ),
        }
    }
}

/// SHA-256 over both files, so that neither file's bytes are kept.
fn fingerprint(files: &CertificateFiles) -> Result<[u8; 32], ConfigError> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(&tls::read(CERT, &files.cert)?);
    digest.update(&[0]);
    digest.update(&tls::read(KEY, &files.key)?);
    let mut out = [0; 32];
    out.copy_from_slice(digest.finish().as_ref());
    Ok(out)
}

/// Check the files every `every` while the listener lives.
fn watch(resolver: Weak<ReloadingCert>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            match resolver.upgrade() {
                Some(resolver) => resolver.check(),
                None => return,
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the TLS certificate reload thread: rotations need a restart");
    }
}
