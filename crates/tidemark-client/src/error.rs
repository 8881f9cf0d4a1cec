//! The SDK's one error type. Every failure a caller can see says what happened, whether
//! trying again can help ([`ClientError::is_retriable`]) and, when the server sent one,
//! the stable Tidemark [`ErrorCode`] to branch on.
//!
//! Errors are `Clone` because one failed batch fails every record future in it.

use std::time::Duration;

use tidemark_proto::error::{code_of, expected_sequence_of, leader_of};
use tidemark_types::{ErrorCode, NodeId};
use tonic::{Code, Status};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a Tidemark error (it carried a `tidemark-code`).
    #[error("{code}: {message}")]
    Server {
        code: ErrorCode,
        message: String,
        /// On NotLeader: the leader the server named, when it knew one.
        leader: Option<(NodeId, String)>,
        /// On OutOfOrderSequence: the sequence the partition would accept.
        expected_sequence: Option<i32>,
    },
    /// The node could not be reached, or the connection broke mid-request.
    #[error(
        "could not reach a Tidemark node at {address}: {message}. Is a node running at {address}? \
         Check the bootstrap addresses (--bootstrap or TIDEMARK_BOOTSTRAP)"
    )]
    Transport { address: String, message: String },
    /// The TLS handshake with the node failed, or one side spoke TLS and the other did not:
    /// a settings mismatch that retrying cannot mend. `hint` says what to change.
    #[error("TLS with the node at {address} failed: {message}. {hint}")]
    Tls { address: String, message: String, hint: &'static str },
    /// A gRPC status without a Tidemark code: a proxy, a non-Tidemark server, or a
    /// transport failure tonic reported as a status.
    #[error("gRPC error from {address}: {code:?}: {message}")]
    Grpc { address: String, code: Code, message: String },
    /// The operation did not finish in time, retries included. `last` is the error of the
    /// last attempt, when there was one: usually the real cause.
    #[error("{what} did not complete within {elapsed:.1?}{}", last.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Timeout { what: String, elapsed: Duration, last: Option<Box<ClientError>> },
    /// The caller passed something the SDK refuses before sending (bad name, no bootstrap...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server sent something the SDK cannot use (a corrupt batch, a missing field).
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
    /// The producer was closed (or dropped) before this record was acknowledged.
    #[error("the producer is closed")]
    Closed,
}

impl ClientError {
    /// Turns a status received from `address` into an error, keeping the Tidemark code and
    /// the leader hint when present.
    pub fn from_status(status: &Status, address: &str) -> ClientError {
        if let Some(code) = code_of(status) {
            return ClientError::Server {
                code,
                message: status.message().to_string(),
                leader: leader_of(status),
                expected_sequence: expected_sequence_of(status),
            };
        }
        let message = with_sources(status);
        if let Some(hint) = tls_hint(&message) {
            return ClientError::Tls { address: address.to_string(), message, hint };
        }
        // Tidemark servers tag every error they raise, so an untagged UNAVAILABLE comes from
        // the transport (connection refused, reset, not yet connected).
        if status.code() == Code::Unavailable {
            return ClientError::Transport { address: address.to_string(), message };
        }
        ClientError::Grpc { address: address.to_string(), code: status.code(), message }
    }

    /// A Tidemark error raised on the client side, in the server's terms.
    pub(crate) fn server(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError::Server { code, message: message.into(), leader: None, expected_sequence: None }
    }

    /// On OutOfOrderSequence: the sequence the partition expects next.
    pub fn expected_sequence(&self) -> Option<i32> {
        match self {
            ClientError::Server { expected_sequence, .. } => *expected_sequence,
            _ => None,
        }
    }

    /// The Tidemark code the server sent, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::Timeout { .. } => Some(ErrorCode::Timeout),
            _ => None,
        }
    }

    /// Whether the same request may succeed if tried again (maybe on another node).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::Transport { .. } => true,
            ClientError::Grpc { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
            ),
            ClientError::Timeout { .. } => true,
            ClientError::InvalidArgument(_)
            | ClientError::Protocol(_)
            | ClientError::Closed
            | ClientError::Tls { .. } => false,
        }
    }

    /// The leader hint of a NotLeader error.
    pub fn leader_hint(&self) -> Option<(NodeId, &str)> {
        match self {
            ClientError::Server { code: ErrorCode::NotLeader, leader: Some((id, addr)), .. } => Some((*id, addr)),
            _ => None,
        }
    }

    /// Whether the cached metadata is probably stale after this error: the next attempt
    /// should refresh it before choosing where to send.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            ClientError::Server { code, leader, .. } => match code {
                ErrorCode::NotLeader => leader.is_none(),
                ErrorCode::UnknownTopic | ErrorCode::UnknownPartition | ErrorCode::Unavailable => true,
                _ => false,
            },
            ClientError::Transport { .. } | ClientError::Grpc { .. } | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Whether the error says the topic (or partition) is not known to the node that
    /// answered. Right after a topic is created, lagging nodes say this for a moment.
    pub fn is_unknown_topic(&self) -> bool {
        matches!(self.code(), Some(ErrorCode::UnknownTopic | ErrorCode::UnknownPartition))
    }

    pub(crate) fn timeout(what: impl Into<String>, elapsed: Duration, last: Option<ClientError>) -> ClientError {
        ClientError::Timeout { what: what.into(), elapsed, last: last.map(Box::new) }
    }
}

/// What to change when `message` (a status with its causes) shows a TLS mismatch. The
/// texts are rustls's and h2's: there is no structured error to match across tonic.
fn tls_hint(message: &str) -> Option<&'static str> {
    const HINTS: [(&[&str], &str); 5] = [
        (
            // The node's alert: it refused this client's certificate, or its lack of one.
            &["received fatal alert"],
            "The node requires a client certificate signed by its CA: give --tls-cert and --tls-key \
             (TIDEMARK_TLS_CERT, TIDEMARK_TLS_KEY), or ClientTls::identity in the SDK",
        ),
        (
            &["UnknownIssuer", "invalid peer certificate"],
            "The node's certificate is not signed by a CA this client trusts: give that CA with --tls-ca \
             (TIDEMARK_TLS_CA), or ClientTls::ca_pem in the SDK",
        ),
        (
            &["NotValidForName"],
            "The node's certificate does not name the address this client used: connect by a name or IP the \
             certificate holds (the node's --advertise), or reissue it with that name",
        ),
        (
            &["InvalidContentType", "corrupt message", "wrong version number"],
            "The node does not speak TLS: connect without --tls, --tls-ca and --tls-cert (TIDEMARK_TLS*)",
        ),
        (
            &["frame with invalid size", "h2 protocol error"],
            "The node may serve TLS (serve --tls-cert) while this client does not: connect with --tls-ca \
             (TIDEMARK_TLS_CA) or --tls",
        ),
    ];
    HINTS.iter().find(|(needles, _)| needles.iter().any(|n| message.contains(n))).map(|(_, hint)| *hint)
}

/// The status message followed by its causes ("tcp connect error: Connection refused"),
/// since the message alone rarely says what actually went wrong.
fn with_sources(status: &Status) -> String {
    let mut msg = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_proto::error::status;

    #[test]
    fn tls_mismatches_are_named_and_not_retried() {
        let s = Status::unknown("transport error: connection error: received fatal alert: CertificateRequired");
        let e = ClientError::from_status(&s, "a:1");
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("--tls-cert"), "{e}");
        let s = Status::internal("h2 protocol error: http2 error: frame with invalid size");
        assert!(ClientError::from_status(&s, "a:1").to_string().contains("--tls-ca"));
        let plain = ClientError::from_status(&Status::unavailable("tcp connect error"), "a:1");
        assert!(matches!(plain, ClientError::Transport { .. }) && plain.is_retriable());
    }

    #[test]
    fn keeps_code_and_leader_hint() {
        let s = status(ErrorCode::NotLeader, "not the leader", Some((2, "10.0.0.2:9092")));
        let e = ClientError::from_status(&s, "10.0.0.1:9092");
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert!(e.is_retriable());
        assert_eq!(e.leader_hint(), Some((2, "10.0.0.2:9092")));
        assert!(!e.invalidates_metadata(), "a hint is enough; no refresh needed");

        let s = status(ErrorCode::NotLeader, "not the leader", None);
        let e = ClientError::from_status(&s, "10.0.0.1:9092");
        assert_eq!(e.leader_hint(), None);
        assert!(e.invalidates_metadata());
    }

    #[test]
    fn untagged_unavailable_is_a_transport_error_naming_the_address() {
        let e = ClientError::from_status(&Status::unavailable("tcp connect error"), "127.0.0.1:9999");
        assert!(matches!(e, ClientError::Transport { .. }));
        assert!(e.is_retriable());
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:9999") && text.contains("--bootstrap"), "{text}");
    }

    #[test]
    fn non_retriable_codes_stay_non_retriable() {
        let e = ClientError::from_status(&status(ErrorCode::RecordTooLarge, "record 0 is too big", None), "a:1");
        assert!(!e.is_retriable());
        assert_eq!(e.code(), Some(ErrorCode::RecordTooLarge));
        assert!(e.to_string().contains("record 0 is too big"));
        let e = ClientError::from_status(&status(ErrorCode::UnknownTopic, "no topic t", None), "a:1");
        assert!(e.is_unknown_topic() && !e.is_retriable() && e.invalidates_metadata());
    }

    #[test]
    fn timeout_reports_the_last_cause() {
        let last = ClientError::Transport { address: "h:1".into(), message: "refused".into() };
        let e = ClientError::timeout("produce to t/0", Duration::from_secs(30), Some(last));
        assert_eq!(e.code(), Some(ErrorCode::Timeout));
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
