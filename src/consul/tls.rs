//! Applies the HTTPS options (`CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`,
//! `CONSUL_CLIENT_KEY`, `CONSUL_HTTP_SSL_VERIFY`) to the HTTP client, with rustls and the `ring`
//! provider. A file that cannot be read or holds no usable PEM is an error naming its option.

use std::path::Path;

use reqwest::{Certificate, ClientBuilder, Identity};

use crate::config::ConsulTls;

/// Makes `ring` the process's rustls provider. reqwest is built without one of its own (that
/// would pull in aws-lc and its C build), and panics if none is installed.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Adds the options to `builder`. Without a CA option the system's roots are used.
pub(crate) fn configure(builder: ClientBuilder, tls: &ConsulTls) -> Result<ClientBuilder, String> {
    install_crypto_provider();
    let mut roots = Vec::new();
    if let Some(file) = &tls.ca_file {
        roots.extend(certificates(file, "--ca-file (CONSUL_CACERT)")?);
    }
    if let Some(dir) = &tls.ca_path {
        roots.extend(certificates_in(dir)?);
    }
    let mut builder = builder
        .tls_backend_rustls()
        .tls_danger_accept_invalid_certs(!tls.verify);
    if !roots.is_empty() {
        // Consul's CLI trusts only the given CA, not the system's roots as well.
        builder = builder.tls_certs_only(roots);
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let mut pem = read(cert, "--client-cert (CONSUL_CLIENT_CERT)")?;
        pem.push(b'\n');
        pem.extend(read(key, "--client-key (CONSUL_CLIENT_KEY)")?);
        let identity = Identity::from_pem(&pem).map_err(|e| {
            format!(
                "--client-cert {} / --client-key {}: not a PEM certificate and key ({e})",
                cert.display(),
                key.display()
            )
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

fn read(path: &Path, option: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{option} {}: cannot read ({e})", path.display()))
}

fn certificates(path: &Path, option: &str) -> Result<Vec<Certificate>, String> {
    let pem = read(path, option)?;
    match Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "{option} {}: no PEM certificate in it",
            path.display()
        )),
        Err(e) => Err(format!(
            "{option} {}: not a PEM certificate ({e})",
            path.display()
        )),
    }
}

/// Every certificate in the `.pem` / `.crt` files of `dir`, as Consul's `CONSUL_CAPATH` reads it.
fn certificates_in(dir: &Path) -> Result<Vec<Certificate>, String> {
    const OPTION: &str = "--ca-path (CONSUL_CAPATH)";
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{OPTION} {}: cannot read ({e})", dir.display()))?;
    let mut certs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_pem = path
            .extension()
            .is_some_and(|ext| ext == "pem" || ext == "crt");
        if is_pem {
            certs.extend(certificates(&path, OPTION)?);
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{OPTION} {}: no .pem or .crt certificate in it",
            dir.display()
        ));
    }
    Ok(certs)
}
