//! TLS for the gRPC client side, shared by the SDK (client to node) and the node's own
//! connections to other nodes (Raft, `Hello`, describe calls).
//!
//! It holds PEM text, not file names, so a program can embed its certificates; the CLI and
//! the node read files into it (see [`ClientTls::from_files`]). Under `--cfg madsim`
//! `Endpoint::tls_config` ignores it: the simulation runs without TLS.

use std::path::Path;

use tonic::transport::Endpoint;
use tonic_real::transport::{Certificate, ClientTlsConfig, Identity};

/// What a client trusts and what it presents.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA certificate(s) that signed the nodes' certificates. None: the public
    /// web PKI roots (for nodes with certificates from a public CA).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate chain and its private key, for nodes that ask for one
    /// (`--tls-client-auth required|optional`; always between nodes).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

impl ClientTls {
    /// Reads the CA, certificate and key files; `cert` and `key` go together. Errors name
    /// the file and the flag that gave it.
    pub fn from_files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<ClientTls, String> {
        let read = |path: &Path, what: &str| {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
                return Err(format!("the {what} {} is not PEM (no -----BEGIN line)", path.display()));
            }
            Ok(pem)
        };
        let ca_pem = ca.map(|p| read(p, "CA certificate file (--tls-ca)")).transpose()?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => {
                Some((read(c, "certificate file (--tls-cert)")?, read(k, "private key file (--tls-key)")?))
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
        };
        Ok(ClientTls { ca_pem, identity })
    }

    /// The endpoint for `addr` (`HOST:PORT`): `https` with this TLS, or plain `http`
    /// without it. The server name checked against the node's certificate is `HOST`.
    pub fn endpoint(tls: Option<&ClientTls>, addr: &str) -> Result<Endpoint, String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| e.to_string())?;
        let Some(tls) = tls else { return Ok(endpoint) };
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_webpki_roots(),
        };
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint.tls_config(config).map_err(|e| format!("TLS settings: {e}"))
    }
}
