//! A Tidemark node: configuration, the tonic services over the broker, and
//! [`Node::start`], the single entry point for the binary, the tests and the simulation.

pub mod admin_api;
pub mod auth;
pub mod client_api;
pub mod cluster;
pub mod config;
pub mod describe;
pub mod dev_certs;
pub mod groups_api;
mod http;
#[cfg(not(madsim))]
mod listener;
pub mod metrics;
pub mod node;
pub mod quota;
pub mod raft_api;
pub mod status;
pub mod tls;

pub use config::{parse_peers, ConfigError, NodeConfig};
#[cfg(not(madsim))]
pub use node::open_storage;
pub use node::{Node, NodeError};
