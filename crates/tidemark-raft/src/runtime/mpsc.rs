//! Bounded mpsc channel: a thin wrapper over `tokio::sync::mpsc`.
//!
//! tokio's sync primitives do not depend on the tokio runtime or its RNG, so they behave
//! deterministically under madsim; the wrappers exist only to implement openraft's traits.

use std::future::Future;

use futures::TryFutureExt;
use openraft::async_runtime::Mpsc;
use openraft::async_runtime::MpscReceiver;
use openraft::async_runtime::MpscSender;
use openraft::async_runtime::MpscWeakSender;
use openraft::async_runtime::SendError;
use openraft::async_runtime::TryRecvError;
use openraft::OptionalSend;
use tokio::sync::mpsc;

/// openraft's bounded mpsc channel family.
#[derive(Debug, Clone, Copy)]
pub struct TidemarkMpsc;

/// Sending half of a [`TidemarkMpsc`] channel.
#[derive(Debug)]
pub struct TidemarkMpscSender<T>(mpsc::Sender<T>);

/// Receiving half of a [`TidemarkMpsc`] channel.
#[derive(Debug)]
pub struct TidemarkMpscReceiver<T>(mpsc::Receiver<T>);

/// A sender that does not keep a [`TidemarkMpsc`] channel open.
#[derive(Debug)]
pub struct TidemarkMpscWeakSender<T>(mpsc::WeakSender<T>);

// Manual impls: derive would demand `T: Clone`, which the handles do not need.
impl<T> Clone for TidemarkMpscSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Clone for TidemarkMpscWeakSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Mpsc for TidemarkMpsc {
    type Sender<T: OptionalSend> = TidemarkMpscSender<T>;
    type Receiver<T: OptionalSend> = TidemarkMpscReceiver<T>;
    type WeakSender<T: OptionalSend> = TidemarkMpscWeakSender<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = mpsc::channel(buffer);
        (TidemarkMpscSender(tx), TidemarkMpscReceiver(rx))
    }
}

impl<T: OptionalSend> MpscSender<TidemarkMpsc, T> for TidemarkMpscSender<T> {
    #[inline]
    fn send(&self, msg: T) -> impl Future<Output = Result<(), SendError<T>>> + OptionalSend {
        self.0.send(msg).map_err(|e| SendError(e.0))
    }

    #[inline]
    fn downgrade(&self) -> TidemarkMpscWeakSender<T> {
        TidemarkMpscWeakSender(self.0.downgrade())
    }
}

impl<T: OptionalSend> MpscReceiver<T> for TidemarkMpscReceiver<T> {
    #[inline]
    fn recv(&mut self) -> impl Future<Output = Option<T>> + OptionalSend {
        self.0.recv()
    }

    #[inline]
    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            mpsc::error::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

impl<T: OptionalSend> MpscWeakSender<TidemarkMpsc, T> for TidemarkMpscWeakSender<T> {
    #[inline]
    fn upgrade(&self) -> Option<TidemarkMpscSender<T>> {
        self.0.upgrade().map(TidemarkMpscSender)
    }
}
