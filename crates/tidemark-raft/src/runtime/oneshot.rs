//! Oneshot channel: a thin wrapper over `tokio::sync::oneshot` (deterministic under madsim).

use openraft::async_runtime::Oneshot;
use openraft::async_runtime::OneshotSender;
use openraft::OptionalSend;
use tokio::sync::oneshot;

/// openraft's oneshot channel family.
#[derive(Debug, Clone, Copy)]
pub struct TidemarkOneshot;

/// Sending half of a [`TidemarkOneshot`] channel; the receiver is tokio's own.
#[derive(Debug)]
pub struct TidemarkOneshotSender<T>(oneshot::Sender<T>);

impl Oneshot for TidemarkOneshot {
    type Sender<T: OptionalSend> = TidemarkOneshotSender<T>;
    type Receiver<T: OptionalSend> = oneshot::Receiver<T>;
    type ReceiverError = oneshot::error::RecvError;

    #[inline]
    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (TidemarkOneshotSender(tx), rx)
    }
}

impl<T: OptionalSend> OneshotSender<T> for TidemarkOneshotSender<T> {
    #[inline]
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}
