//! A request body that must keep arriving at a minimum rate (slow-body / slowloris uploads
//! are cut off instead of holding a connection and a handler for ever).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// After `grace`, at least `bytes_per_sec` on average since the body started.
#[derive(Clone, Copy, Debug)]
pub struct MinRate {
    pub grace: Duration,
    pub bytes_per_sec: u64,
}

/// The body did not keep up with [`MinRate`].
#[derive(Debug, thiserror::Error)]
#[error(
    "request body too slow: {received} bytes in {elapsed_s:.1} s (minimum {bytes_per_sec} bytes/s after {grace_s} s)"
)]
pub struct BodyTooSlow {
    pub received: u64,
    pub elapsed_s: f64,
    pub bytes_per_sec: u64,
    pub grace_s: u64,
}

pin_project_lite::pin_project! {
    pub struct SlowBodyGuard<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        start: Instant,
        received: u64,
        rate: MinRate,
        done: bool,
    }
}

impl<B> SlowBodyGuard<B> {
    pub fn new(inner: B, rate: MinRate) -> Self {
        let start = Instant::now();
        SlowBodyGuard {
            inner,
            deadline: tokio::time::sleep_until(start + rate.grace),
            start,
            received: 0,
            rate,
            done: false,
        }
    }
}

/// When the next byte must have arrived for `received` bytes to meet the rate.
fn next_deadline(start: Instant, received: u64, rate: MinRate) -> Instant {
    let per_sec = rate.bytes_per_sec.max(1);
    // Cap far in the future (a day) so the arithmetic cannot overflow.
    let secs = (received / per_sec).min(86_400);
    start + rate.grace + Duration::from_secs(secs)
}

impl<B> Body for SlowBodyGuard<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.received = this.received.saturating_add(d.len() as u64);
                    let next = next_deadline(*this.start, *this.received, *this.rate);
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    let err = BodyTooSlow {
                        received: *this.received,
                        elapsed_s: this.start.elapsed().as_secs_f64(),
                        bytes_per_sec: this.rate.bytes_per_sec,
                        grace_s: this.rate.grace.as_secs(),
                    };
                    return Poll::Ready(Some(Err(Box::new(err))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when `err` (or its sources) says the body was too slow.
pub fn is_too_slow(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cur = e.source();
    }
    false
}
