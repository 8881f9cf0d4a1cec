//! TLS on the node's two listeners, from PEM files that are re-read while the node runs.
//!
//! - The client listener presents the node's certificate; client certificates are asked
//!   for per `tls_client_auth` and verified against `tls_ca`.
//! - The cluster listener always asks for, and verifies, a certificate from the cluster
//!   CA (`tls_ca`): the other nodes present their own node certificates (mutual TLS).
//! - Connections this node opens to the others present the same node certificate.
//!
//! tonic's own server TLS is fixed at start, so the listeners hand tonic connections
//! whose handshake they did with the current [`rustls::ServerConfig`] (see node.rs).
//! Every [`RELOAD_EVERY`] the files are read again; when they changed and still make a
//! valid configuration, new connections use it (certificate rotation without a
//! restart). Connections already open keep the certificates they were made with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tidemark_raft::ClientTls;

/// How often the certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Whether the client listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Clients are not asked for a certificate (server-side TLS only).
    #[default]
    None,
    /// A client may present one; if it does, it must be signed by `tls_ca`.
    Optional,
    /// Every client must present a certificate signed by `tls_ca`.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClientAuth::None),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!("{s:?} is not none, optional or required")),
        }
    }
}

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The files' bytes, to notice a change without trusting modification times.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

struct Loaded {
    contents: Contents,
    client: Arc<ServerConfig>,
    cluster: Arc<ServerConfig>,
    peer: ClientTls,
}

/// The node's current TLS configuration.
pub struct ServerTls {
    files: TlsFiles,
    loaded: RwLock<Loaded>,
}

impl ServerTls {
    /// Reads the files and builds both listeners' configurations; an error says which
    /// file is wrong and how.
    pub fn load(files: TlsFiles) -> Result<Arc<ServerTls>, String> {
        let contents = read(&files)?;
        let loaded = build(&files, contents)?;
        Ok(Arc::new(ServerTls { files, loaded: RwLock::new(loaded) }))
    }

    /// For the next handshake on the client listener.
    pub fn client_listener(&self) -> Arc<ServerConfig> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).client.clone()
    }

    /// For the next handshake on the cluster listener.
    pub fn cluster_listener(&self) -> Arc<ServerConfig> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).cluster.clone()
    }

    /// What this node presents and trusts when it connects to the other nodes.
    pub fn peer_tls(&self) -> ClientTls {
        self.loaded.read().unwrap_or_else(|e| e.into_inner()).peer.clone()
    }

    /// Reads the files again. Ok(true): they changed and are now in use; Ok(false):
    /// unchanged; Err: changed but unusable (the previous certificates stay in use).
    pub fn reload(&self) -> Result<bool, String> {
        let contents = read(&self.files)?;
        if self.loaded.read().unwrap_or_else(|e| e.into_inner()).contents == contents {
            return Ok(false);
        }
        let loaded = build(&self.files, contents)?;
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(true)
    }

    /// Re-reads the files every [`RELOAD_EVERY`] for as long as the node runs, telling
    /// `rotated` about a new client identity. A file caught half-written (certificate
    /// and key not matching yet) is logged once and tried again at the next check.
    pub async fn watch(self: Arc<Self>, rotated: impl Fn(ClientTls) + Send + 'static) {
        let mut last_error = None;
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            match self.reload() {
                Ok(false) => last_error = None,
                Ok(true) => {
                    last_error = None;
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded; new connections use them");
                    rotated(self.peer_tls());
                }
                Err(e) if last_error.as_ref() != Some(&e) => {
                    tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the previous certificates");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
        }
    }
}

/// The common name (CN) of the first certificate a peer presented, if it has one.
pub fn common_name(certs: &[CertificateDer<'_>]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The node a certificate is for: node certificates have the common name `node-<id>`,
/// so one node cannot speak for another, and a client certificate from the same CA
/// reaches no replica.
pub fn certified_node(certs: &[CertificateDer<'_>]) -> Result<tidemark_types::NodeId, String> {
    let cn = common_name(certs).ok_or("the certificate has no common name (node certificates are CN=node-<id>)")?;
    cn.strip_prefix("node-")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("the certificate is for {cn:?}, not a node (node certificates are CN=node-<id>)"))
}

fn read(files: &TlsFiles) -> Result<Contents, String> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    Ok(Contents {
        cert: read(&files.cert, "certificate file (tls_cert)")?,
        key: read(&files.key, "private key file (tls_key)")?,
        ca: files.ca.as_deref().map(|p| read(p, "CA file (tls_ca)")).transpose()?,
    })
}

fn build(files: &TlsFiles, contents: Contents) -> Result<Loaded, String> {
    let cert_path = files.cert.display();
    let certs = CertificateDer::pem_slice_iter(&contents.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file (tls_cert) {cert_path} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("the certificate file (tls_cert) {cert_path} holds no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .map_err(|e| format!("the private key file (tls_key) {} holds no usable key: {e}", files.key.display()))?;
    let roots = match &contents.ca {
        Some(pem) => Some(Arc::new(root_store(pem, files.ca.as_deref().unwrap_or(Path::new("?")))?)),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = |client_auth: ClientAuth| -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (client_auth, &roots) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (auth, Some(roots)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let verifier = if auth == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("tls_ca: {e}"))?)
            }
            (_, None) => return Err("client certificates are verified against tls_ca: set it".into()),
        };
        let mut config = builder.with_single_cert(certs.clone(), key.clone_key()).map_err(|e| {
            format!("certificate {cert_path} and key {} do not work together: {e}", files.key.display())
        })?;
        // gRPC is HTTP/2 only, and tonic's client insists that ALPN says so.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    };
    let client = config(files.client_auth)?;
    let cluster = if roots.is_some() { config(ClientAuth::Required)? } else { client.clone() };
    let peer = ClientTls { ca_pem: contents.ca.clone(), identity: Some((contents.cert.clone(), contents.key.clone())) };
    Ok(Loaded { contents, client, cluster, peer })
}

fn root_store(pem: &[u8], path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the CA file (tls_ca) {} is not PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("the CA file (tls_ca) {} holds a bad certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("the CA file (tls_ca) {} holds no CERTIFICATE block", path.display()));
    }
    Ok(roots)
}
