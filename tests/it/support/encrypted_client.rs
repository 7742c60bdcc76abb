//! DNS over TLS and over HTTPS from a chosen source address, trusting the test CA: raw TLS
//! streams (to stall a request part way), one DoT exchange, and DoH GET and POST with the
//! response's headers.

use std::{net::SocketAddr, path::Path, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{ClientConfig, RootCertStore, pki_types::ServerName},
};

/// A TLS connection to `server` from `source`, trusting `ca`, offering `alpn`.
pub async fn tls_stream(
    server: SocketAddr,
    source: &str,
    ca: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    consul_dns_bridge::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for cert in rustls_pki_certs(&pem) {
        let _ = roots.add(cert);
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        source.parse().map_err(std::io::Error::other)?,
        0,
    ))?;
    let stream = socket.connect(server).await?;
    let name = ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

fn rustls_pki_certs(pem: &[u8]) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// One DNS message over DoT: its answer.
pub async fn dot_exchange(
    server: SocketAddr,
    source: &str,
    ca: &Path,
    message: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = tls_stream(server, source, ca, &[b"dot"]).await?;
    let len = u16::try_from(message.len()).map_err(std::io::Error::other)?;
    stream
        .write_all(&[&len.to_be_bytes()[..], message].concat())
        .await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// One DNS message over DoH (`GET /dns-query?dns=`), from `source`: the answer's bytes and
/// its `Cache-Control` header.
pub async fn doh_get(
    server: SocketAddr,
    source: &str,
    ca: &Path,
    message: &[u8],
) -> Result<(Vec<u8>, Option<String>), String> {
    consul_dns_bridge::install_crypto_provider();
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .local_address(
            source
                .parse::<std::net::IpAddr>()
                .map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let encoded = data_encoding::BASE64URL_NOPAD.encode(message);
    let url = format!("https://{server}/dns-query?dns={encoded}");
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let cache_control = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((body.to_vec(), cache_control))
}
