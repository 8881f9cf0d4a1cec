//! The generated gRPC code for `proto/tidemark/v1`, and the one place where wire errors
//! and domain errors meet: [`error`] turns a Tidemark error into a gRPC status carrying
//! the stable code and leader hint, and back.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tidemark.v1");
}

pub mod error;
pub mod tls;
