//! Raft for Tidemark: the openraft type configuration, an async runtime that runs on
//! tokio and inside madsim alike, the log store and state machine adaptor over the
//! injected storage engine, group commit, and the one gRPC transport shared by all groups.

pub mod blocking;
pub mod checkpoint;
pub mod codec;
pub mod flusher;
pub mod group;
pub mod log_store;
pub mod network;
pub mod pipeline;
pub mod planted;
pub mod recent;
pub mod repair;
pub mod runtime;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use checkpoint::CheckpointPolicy;
pub use flusher::Flusher;
pub use group::{raft_config, GroupContext, RaftTiming};
pub use log_store::LogStore;
pub use network::{NetworkFactory, PeerPool};
pub use repair::Repairs;
pub use state_machine::{GroupStateMachine, StateMachineLogic};
pub use tidemark_proto::tls::ClientTls;
pub use tidemark_proto::v1::RaftRpc;
pub use transport::GroupRegistry;
pub use types::{Command, CommandResponse, Raft, TypeConfig};
