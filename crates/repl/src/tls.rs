//! TLS for peer links (mutual, with the cluster CA) and the helpers the
//! client listener shares: PEM loading with errors that name the file, and a
//! byte stream that is either plain TCP or TLS.
//!
//! Peer links: every region presents one certificate, signed by the cluster
//! CA, that carries its region id as a DNS subject alternative name. It
//! serves as server certificate on the replication listener and as client
//! certificate when dialing. The dialer verifies the acceptor's certificate
//! against the cluster CA and for the name of the region it expects at that
//! address (`--peer ID=HOST:PORT`: the name is `ID`, whatever HOST is); the
//! acceptor requires a client certificate from the cluster CA and, once the
//! dialer said who it is, that the certificate names that region. The HMAC
//! proof of the cluster secret then runs inside the TLS stream.
//!
//! Only the ring crypto provider is used.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why TLS settings could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{flag} {path}: {what}")]
    Content {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error("--tls-key {key} does not belong to the certificate in --tls-cert {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("--tls-cert {path} does not name region {region:?} as a DNS subject alternative name, which --tls-replication requires")]
    NotForRegion { path: PathBuf, region: String },
    #[error("{0}")]
    Other(String),
}

/// The crypto provider of every TLS configuration in Meridian.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first).
pub fn load_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(flag, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(flag, path, "holds no PEM CERTIFICATE".into()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let bytes = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| content(flag, path, format!("holds no usable PEM private key: {e}")))
}

/// Reads a PEM CA bundle into a trust store.
pub fn load_roots(flag: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(flag, path)? {
        roots
            .add(cert)
            .map_err(|e| content(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn content(flag: &'static str, path: &Path, what: String) -> TlsConfigError {
    TlsConfigError::Content {
        flag,
        path: path.to_path_buf(),
        what,
    }
}

/// The certificate files of one region.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

/// What a TLS server asks of clients (`--tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    No,
    /// A certificate is verified against the CA if the client sends one.
    Optional,
    /// A certificate signed by the CA is required.
    Required,
}

/// A server configuration presenting `files.cert`; clients are verified
/// against `files.ca` as `auth` says. Fails if the key does not match the
/// certificate.
pub fn server_config(files: &TlsFiles, auth: ClientAuth) -> Result<ServerConfig, TlsConfigError> {
    let certs = load_certs("--tls-cert", &files.cert)?;
    let key = load_key("--tls-key", &files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Other(e.to_string()))?;
    let builder = match (auth, &files.ca) {
        (ClientAuth::No, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsConfigError::Other(
                "verifying client certificates needs --tls-ca".into(),
            ))
        }
        (auth, Some(ca)) => {
            let roots = load_roots("--tls-ca", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| content("--tls-ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| key_error(files, e))
}

fn key_error(files: &TlsFiles, e: rustls::Error) -> TlsConfigError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsConfigError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        other => content("--tls-key", &files.key, other.to_string()),
    }
}

/// Mutual TLS for peer links: the acceptor's and the dialer's sides.
#[derive(Clone)]
pub struct PeerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// Loads `files` (the CA is required) and checks that the certificate
    /// names `region`, so a misissued certificate fails at startup rather
    /// than at every peer.
    pub fn load(files: &TlsFiles, region: &str) -> Result<PeerTls, TlsConfigError> {
        let Some(ca) = &files.ca else {
            return Err(TlsConfigError::Other(
                "--tls-replication needs --tls-ca (the cluster CA)".into(),
            ));
        };
        let server = server_config(files, ClientAuth::Required)?;
        let certs = load_certs("--tls-cert", &files.cert)?;
        let name = server_name(region).map_err(TlsConfigError::Other)?;
        let leaf = ParsedCertificate::try_from(&certs[0])
            .map_err(|e| content("--tls-cert", &files.cert, e.to_string()))?;
        if rustls::client::verify_server_name(&leaf, &name).is_err() {
            return Err(TlsConfigError::NotForRegion {
                path: files.cert.clone(),
                region: region.to_string(),
            });
        }
        let roots = load_roots("--tls-ca", ca)?;
        let key = load_key("--tls-key", &files.key)?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Other(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| key_error(files, e))?;
        Ok(PeerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        })
    }
}

/// The name a region's certificate must carry: its id, as a DNS name.
pub fn server_name(region: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(region.to_string()).map_err(|_| {
        format!("region id {region:?} is not a valid DNS name, which TLS on peer links needs")
    })
}

/// The verified certificate a TLS client presented, if any.
pub fn peer_certificate(stream: &Transport) -> Option<CertificateDer<'static>> {
    let Transport::TlsServer(tls) = stream else {
        return None;
    };
    let certs = tls.get_ref().1.peer_certificates()?;
    certs.first().map(|c| c.clone().into_owned())
}

/// Whether `cert` carries `region` as a DNS subject alternative name.
pub fn names_region(cert: &CertificateDer<'_>, region: &str) -> bool {
    let (Ok(cert), Ok(name)) = (ParsedCertificate::try_from(cert), server_name(region)) else {
        return false;
    };
    rustls::client::verify_server_name(&cert, &name).is_ok()
}

/// How a TLS failure on a link should be read.
pub enum TlsFailure<'a> {
    /// The other side sent an alert: it refused us (often our certificate).
    TheyRefused(&'a rustls::Error),
    /// This side refused the other: its certificate, or bytes that are not TLS.
    WeRefused(&'a rustls::Error),
}

/// The TLS error behind an I/O error, if there is one.
pub fn tls_failure(e: &io::Error) -> Option<TlsFailure<'_>> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::AlertReceived(_) => TlsFailure::TheyRefused(tls),
        _ => TlsFailure::WeRefused(tls),
    })
}

/// A connection that is plain TCP or TLS (either side), so one code path
/// serves both.
pub enum Transport {
    Plain(TcpStream),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::TlsServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::TlsServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::TlsServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::TlsServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    pub(crate) struct Ca(Issuer<'static, KeyPair>, PathBuf);

    pub(crate) fn ca(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        Ca(Issuer::new(params, key), path)
    }

    pub(crate) fn files(dir: &Path, ca: &Ca, stem: &str, names: &[&str]) -> TlsFiles {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.0).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        TlsFiles {
            cert: c,
            key: k,
            ca: Some(ca.1.clone()),
        }
    }

    #[test]
    fn a_region_certificate_must_name_the_region() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path(), "ca");
        let ra = files(dir.path(), &ca, "ra", &["ra"]);
        assert!(PeerTls::load(&ra, "ra").is_ok());
        let err = PeerTls::load(&ra, "rb").unwrap_err();
        assert!(matches!(err, TlsConfigError::NotForRegion { .. }), "{err}");
        let cert = load_certs("--tls-cert", &ra.cert).unwrap();
        assert!(names_region(&cert[0], "ra"));
        assert!(!names_region(&cert[0], "rb"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path(), "ca");
        let ra = files(dir.path(), &ca, "ra", &["ra"]);
        let rb = files(dir.path(), &ca, "rb", &["rb"]);
        let mixed = TlsFiles {
            key: rb.key.clone(),
            ..ra
        };
        let err = PeerTls::load(&mixed, "ra").unwrap_err();
        assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains(rb.key.to_str().unwrap()));
    }

    /// A dialer with a certificate from another CA: the acceptor refuses it
    /// (its own failure, counted there), the dialer learns by an alert.
    #[tokio::test]
    async fn a_foreign_certificate_fails_and_each_side_knows_who_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = ca(dir.path(), "cluster");
        let foreign = ca(dir.path(), "foreign");
        let acceptor = PeerTls::load(&files(dir.path(), &cluster, "ra", &["ra"]), "ra").unwrap();
        // Trusts the cluster CA, presents a foreign certificate.
        let mut impostor_files = files(dir.path(), &foreign, "rd", &["rd"]);
        impostor_files.ca = Some(cluster.1.clone());
        let impostor = PeerTls::load(&impostor_files, "rd").unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.acceptor.accept(tcp).await.map(|_| ())
        });
        let tcp = TcpStream::connect(at).await.unwrap();
        let dialed = impostor
            .connector
            .connect(server_name("ra").unwrap(), tcp)
            .await;
        let accept_err = accepting.await.unwrap().unwrap_err();
        assert!(matches!(
            tls_failure(&accept_err),
            Some(TlsFailure::WeRefused(_))
        ));
        // TLS 1.3: the dialer's handshake completes; the alert comes on
        // its first read.
        let mut stream = dialed.unwrap();
        let mut byte = [0u8; 1];
        let read_err = tokio::io::AsyncReadExt::read(&mut stream, &mut byte)
            .await
            .unwrap_err();
        assert!(matches!(
            tls_failure(&read_err),
            Some(TlsFailure::TheyRefused(_))
        ));
    }
}
