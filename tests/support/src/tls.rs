//! A throwaway public key infrastructure for the TLS tests: a CA of its own
//! per test, and certificates it signs, written as PEM files the way a
//! Kubernetes Secret or cert-manager would mount them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use token_endpoint::config::CertificateFiles;

/// A CA and the files of what it signed, in a temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate (PEM): what a client trusts.
    pub ca_file: PathBuf,
    /// Certificate and key for a server on this machine: `localhost` and
    /// `127.0.0.1`, good for serving and, on a Cluster's bus, as a client.
    pub server: CertificateFiles,
    /// Certificate and key of the service as a Redis client (mutual TLS).
    pub client: CertificateFiles,
}

impl TestPki {
    pub fn new() -> Self {
        Self::named("Token endpoint test CA")
    }

    /// A CA under another name, with its own key: one a client of the
    /// first does not trust.
    pub fn named(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA");
        let mut pki = Self {
            server: placeholder(),
            client: placeholder(),
            dir,
            ca,
            ca_file,
        };
        pki.server = pki.issue("server", &["localhost", "127.0.0.1"]);
        pki.client = pki.issue("client", &["token-endpoint"]);
        pki
    }

    /// A certificate for `names` (DNS names or IP addresses), usable to
    /// serve and as a client, written as `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> CertificateFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        // X.509-strict verifiers (OpenSSL's, Python 3.13's) want it.
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("sign the leaf");
        let files = CertificateFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }

    /// Where this PKI's files live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn placeholder() -> CertificateFiles {
    CertificateFiles {
        cert: PathBuf::new(),
        key: PathBuf::new(),
    }
}
