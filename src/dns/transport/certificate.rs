//! The certificate of the DoT and DoH listeners: read from PEM files at start, read again on
//! SIGHUP. A reload that fails (a missing file, a key that does not match) keeps the one in
//! use, so a botched renewal never takes the encrypted listeners down. New handshakes pick up
//! a reloaded certificate; connections already open keep theirs.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use rustls::{
    ServerConfig,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// The certificate and key files, and what was last read from them.
pub(crate) struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Reads `cert_file` (a PEM chain, leaf first) and `key_file` (its PEM private key).
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, String> {
        let provider = Arc::new(ring::default_provider());
        let key = read(cert_file, key_file, &provider)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let key = read(&self.cert_file, &self.key_file, &self.provider)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// A TLS server configuration presenting this certificate, offering `alpn` protocols.
    pub(crate) fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<ServerConfig, String> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS: {error}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(current.clone())
    }
}

fn read(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read tls_cert {}: {error}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "cannot read tls_cert {}: no PEM certificate in it",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| format!("cannot read tls_key {}: {error}", key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| {
        format!(
            "tls_key {} does not fit tls_cert {}: {error}",
            key_file.display(),
            cert_file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let issued = rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .unwrap_or_else(|error| panic!("{error}"));
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, issued.cert.pem()).unwrap_or_else(|error| panic!("{error}"));
        std::fs::write(&key, issued.signing_key.serialize_pem())
            .unwrap_or_else(|error| panic!("{error}"));
        (cert, key)
    }

    fn leaf(certificate: &Certificate) -> Vec<u8> {
        let current = certificate
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.cert[0].to_vec()
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_in_use() {
        let dir = std::env::temp_dir().join(format!("cert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{error}"));
        let (cert, key) = write_pair(&dir, "one.test");
        let certificate = Certificate::load(&cert, &key).unwrap_or_else(|error| panic!("{error}"));
        let first = leaf(&certificate);
        // A key of another certificate: refused, the first stays.
        let (_, other_key) = write_pair(&dir, "two.test");
        std::fs::copy(&other_key, &key).unwrap_or_else(|error| panic!("{error}"));
        let refused = certificate.reload().err().unwrap_or_default();
        assert!(refused.contains("does not fit"), "{refused}");
        assert_eq!(leaf(&certificate), first);
        // A matching pair in place: taken.
        let (new_cert, new_key) = write_pair(&dir, "three.test");
        std::fs::copy(&new_cert, &cert).unwrap_or_else(|error| panic!("{error}"));
        std::fs::copy(&new_key, &key).unwrap_or_else(|error| panic!("{error}"));
        certificate
            .reload()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_ne!(leaf(&certificate), first);
        std::fs::remove_file(&cert).unwrap_or_else(|error| panic!("{error}"));
        let missing = certificate.reload().err().unwrap_or_default();
        assert!(missing.starts_with("cannot read tls_cert"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
