//! What every client command shares: where the cluster is, and how to print.

use std::io::Write;

use anyhow::Context;
use std::path::PathBuf;

use tidemark_client::{Client, ClientConfig, ClientTls};

/// Where to find the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Any live node(s) of the cluster, HOST:PORT[,HOST:PORT...]. One is enough: the
    /// rest of the cluster is discovered from it.
    #[arg(long, env = "TIDEMARK_BOOTSTRAP", default_value = "127.0.0.1:9092", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How to reach nodes that serve TLS (`tidemark serve --tls-cert`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect with TLS, trusting the public web PKI unless --tls-ca is given. Implied by
    /// --tls-ca and --tls-cert.
    #[arg(long, env = "TIDEMARK_TLS")]
    pub tls: bool,
    /// PEM CA certificate that signed the nodes' certificates (TLS on).
    #[arg(long, env = "TIDEMARK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for nodes that ask for one (--tls-client-auth); TLS on.
    #[arg(long, env = "TIDEMARK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TIDEMARK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The SDK's TLS settings, or None for plaintext.
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        if !self.tls && self.tls_ca.is_none() && self.tls_cert.is_none() {
            return Ok(None);
        }
        let tls = ClientTls::from_files(self.tls_ca.as_deref(), self.tls_cert.as_deref(), self.tls_key.as_deref())
            .map_err(anyhow::Error::msg)?;
        Ok(Some(tls))
    }
}

impl ClientArgs {
    /// A client for the bootstrap nodes (no I/O until the first request).
    pub fn client(&self) -> anyhow::Result<Client> {
        let bootstrap: Vec<String> =
            self.bootstrap.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let config = ClientConfig { tls: self.tls.client_tls()?, ..ClientConfig::new(bootstrap) };
        Client::new(config).context("bad --bootstrap (or TIDEMARK_BOOTSTRAP)")
    }
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: aligned tables and sentences.
    #[default]
    Text,
    /// For scripts: JSON (one object per line where a command prints many).
    Json,
}

/// Prints one JSON value as a line on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as a table with left-aligned columns sized to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Node ids for people: `1,2,3`.
pub fn id_list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// A live count of records on stderr for long `produce` and `consume` runs, cleared when
/// dropped. Shown only when stderr is a terminal and the records themselves are not
/// (`records_on_terminal`: typed in, or printed there), so it never mixes with them and
/// scripts never see it.
pub fn record_counter(verb: &'static str, records_on_terminal: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let show = std::io::stderr().is_terminal() && !records_on_terminal;
    let bar = if show { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::hidden() };
    let template = format!("{{spinner}} {verb} {{human_pos}} records in {{elapsed}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar.with_finish(indicatif::ProgressFinish::AndClear)
}
