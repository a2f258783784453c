//! TLS for weft's management connections (etcd over `https://`, OpenFlow over `ssl:`/`pssl:`), with rustls and
//! the ring provider that weft's IPsec already uses. Certificates and keys are PEM files.
//!
//! Both ends are always authenticated by a CA the operator names: servers by their certificate chain (and, for
//! etcd, their name or address), clients of an OpenFlow listener by a certificate that CA signed, as Open
//! vSwitch's `pssl:` does. Like Open vSwitch, an OpenFlow connection checks the peer's chain but not its name
//! (controller certificates made by `ovs-pki` carry none).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// ring's provider: weft already builds ring for IPsec (aws-lc-rs, rustls' default, would add a C and cmake
/// build). rustls marks it deprecated because it has no post-quantum key exchange; classical X25519 and ECDHE
/// are what etcd and Open vSwitch offer today.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{path}: no usable PEM private key: {e}"))
}

fn roots(ca: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| format!("{ca}: {e}"))?;
    }
    Ok(roots)
}

/// Whether the server's name or address must be in its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCheck {
    /// As browsers and etcd's own clients do.
    Verify,
    /// The chain only, as Open vSwitch's SSL connections do.
    ChainOnly,
}

/// A client configuration: servers must present a chain to `ca`; `cert_key` is our certificate and key
/// when the server asks for one.
pub fn client_config(ca: &str, cert_key: Option<(&str, &str)>, names: NameCheck) -> Result<Arc<ClientConfig>, String> {
    let roots = Arc::new(roots(ca)?);
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let b = match names {
        NameCheck::Verify => b.with_root_certificates(roots),
        NameCheck::ChainOnly => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| e.to_string())?;
            b.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        }
    };
    let cfg = match cert_key {
        Some((c, k)) => b.with_client_auth_cert(certs(c)?, key(k)?).map_err(|e| format!("{c}: {e}"))?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// A server configuration presenting `cert`/`key`, taking only clients whose certificate `ca` signed.
pub fn server_config(ca: &str, cert: &str, key_path: &str) -> Result<Arc<ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| format!("{ca}: {e}"))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| format!("{cert}: {e}"))?;
    Ok(Arc::new(cfg))
}

/// Checks the chain and signatures as WebPKI does, and takes a certificate whose names do not include the
/// server's (only a name mismatch is forgiven; the chain was verified before the name is looked at).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A TCP connection, in the clear or inside TLS.
pub enum Stream {
    Plain(TcpStream),
    Client(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<rustls::StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath (for timeouts and addresses).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Client(s) => s.get_ref(),
            Stream::Server(s) => s.get_ref(),
        }
    }

    /// Opens TLS as a client over `tcp` towards `host` (a name or an address) and completes the handshake
    /// (within the socket's timeouts), so that a refused certificate is an error here.
    pub fn connect(cfg: &Arc<ClientConfig>, host: &str, tcp: TcpStream) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let conn = ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock)?;
        Ok(Stream::Client(Box::new(s)))
    }

    /// Accepts TLS as a server over `tcp` and completes the handshake (the client's certificate checked).
    pub fn accept(cfg: &Arc<ServerConfig>, tcp: TcpStream) -> io::Result<Stream> {
        let conn = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        handshake(&mut s.conn, &mut s.sock)?;
        Ok(Stream::Server(Box::new(s)))
    }
}

fn handshake<C, D>(conn: &mut C, sock: &mut TcpStream) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    while conn.is_handshaking() {
        conn.complete_io(sock).map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    }
    Ok(())
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Client(s) => s.read(buf),
            Stream::Server(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Client(s) => s.write(buf),
            Stream::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Client(s) => s.flush(),
            Stream::Server(s) => s.flush(),
        }
    }
}
