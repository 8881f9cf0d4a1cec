//! Development certificates, for `tidemark dev --tls` and the tests: a throwaway CA, a
//! certificate per node (CN `node-<id>`, as the cluster listener requires) and one client
//! certificate, so the secure setup is one command away. Made with rcgen; for development
//! only (the CA key is not even kept).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Where the files of a dev cluster's TLS are.
pub struct DevTls {
    pub dir: PathBuf,
}

/// The common name of the client certificate (`User:admin` once authentication lands).
pub const CLIENT_NAME: &str = "admin";

impl DevTls {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn node_cert(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.pem"))
    }
    pub fn node_key(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.key"))
    }
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    /// The certificate of another client, `User:<name>` (see [`DevTls::ensure_users`]).
    pub fn user_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("user-{name}.pem"))
    }
    pub fn user_key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("user-{name}.key"))
    }

    /// The certificates in `dir`, made now unless a previous run left them all there (a
    /// kept --data-dir keeps its CA, so exported client settings stay valid).
    pub fn ensure(dir: &Path, nodes: u64) -> Result<DevTls, String> {
        Self::ensure_users(dir, nodes, &[])
    }

    /// Like [`DevTls::ensure`], with a client certificate for each of `users` too.
    pub fn ensure_users(dir: &Path, nodes: u64, users: &[&str]) -> Result<DevTls, String> {
        let tls = DevTls { dir: dir.to_path_buf() };
        let mut wanted = vec![tls.ca(), tls.client_cert(), tls.client_key()];
        wanted.extend((1..=nodes).flat_map(|i| [tls.node_cert(i), tls.node_key(i)]));
        wanted.extend(users.iter().flat_map(|u| [tls.user_cert(u), tls.user_key(u)]));
        if wanted.iter().all(|f| f.exists()) {
            return Ok(tls);
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        tls.generate(nodes, users).map_err(|e| format!("generating development certificates: {e}"))?;
        Ok(tls)
    }

    fn generate(&self, nodes: u64, users: &[&str]) -> Result<(), String> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        ca.distinguished_name.push(DnType::CommonName, "Tidemark development CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(rcgen_error)?).map_err(rcgen_error)?;
        write(&self.ca(), &ca.pem(), false)?;
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        for id in 1..=nodes {
            // A node presents this certificate to clients and, as a client, to the others.
            let uses = [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let (cert, key) = leaf(&ca, &format!("node-{id}"), names.clone(), &uses)?;
            write(&self.node_cert(id), &cert, false)?;
            write(&self.node_key(id), &key, true)?;
        }
        let (cert, key) = leaf(&ca, CLIENT_NAME, Vec::new(), &[ExtendedKeyUsagePurpose::ClientAuth])?;
        write(&self.client_cert(), &cert, false)?;
        write(&self.client_key(), &key, true)?;
        for user in users {
            let (cert, key) = leaf(&ca, user, Vec::new(), &[ExtendedKeyUsagePurpose::ClientAuth])?;
            write(&self.user_cert(user), &cert, false)?;
            write(&self.user_key(user), &key, true)?;
        }
        Ok(())
    }
}

/// A certificate for `name` signed by `ca`, as (certificate PEM, key PEM).
fn leaf(
    ca: &CertifiedIssuer<'_, KeyPair>,
    name: &str,
    alt_names: Vec<String>,
    uses: &[ExtendedKeyUsagePurpose],
) -> Result<(String, String), String> {
    let mut params = CertificateParams::new(alt_names).map_err(rcgen_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = uses.to_vec();
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.signed_by(&key, ca).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn rcgen_error(e: rcgen::Error) -> String {
    e.to_string()
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::write(path, text).map_err(failed)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_every_file_once_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let tls = DevTls::ensure(dir.path(), 2).unwrap();
        let ca = std::fs::read_to_string(tls.ca()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(std::fs::read_to_string(tls.node_key(2)).unwrap().contains("PRIVATE KEY"));
        // A second start on the same directory keeps the CA (clients' settings stay valid).
        let again = DevTls::ensure(dir.path(), 2).unwrap();
        assert_eq!(std::fs::read_to_string(again.ca()).unwrap(), ca);
        // One more node than before: everything is made anew, with a new CA.
        let more = DevTls::ensure(dir.path(), 3).unwrap();
        assert!(more.node_cert(3).exists());
        assert_ne!(std::fs::read_to_string(more.ca()).unwrap(), ca);
    }
}
