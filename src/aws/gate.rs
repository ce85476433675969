//! What every HTTP request to AWS passes before it leaves — in the HTTP connector, the one async
//! place every attempt (retries included) goes through.
//!
//! - `Pace` (`--max-rps`): each request takes the next slot of one schedule shared by all clients
//!   of the process, so however many steps run at once, requests leave at most `max_rps` a
//!   second, evenly spaced.
//! - `Fence` (`state::lock`): while a run holds the state lock, a request leaves only while the
//!   lease is known to be ours. A lease not renewed for half its length (the process was paused,
//!   or S3 did not answer) holds requests back until a renewal proves the lock is still ours; a
//!   renewal that finds the lock taken over fails them without sending. So a holder paused past
//!   its lease and overtaken by another run stops before its next write, in AWS as in state.
//!   The state bucket's own client is not fenced: renewing the lock goes through it.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::result::ConnectorError;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

pub use crate::state::lock::Fence;
use tokio::time::Instant;

/// The schedule: when the next request may leave.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    pub fn new(per_second: NonZeroU32) -> Self {
        Pace {
            interval: Duration::from_secs(1) / per_second.get(),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Takes the next free slot and waits until it comes.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[derive(Debug)]
struct Gated {
    inner: SharedHttpConnector,
    pace: Option<Arc<Pace>>,
    fence: Option<Arc<Fence>>,
}

impl HttpConnector for Gated {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pace, fence) = (self.inner.clone(), self.pace.clone(), self.fence.clone());
        HttpConnectorFuture::new(async move {
            if let Some(fence) = &fence {
                // A user error: the SDK does not retry it.
                fence
                    .pass()
                    .await
                    .map_err(|e| ConnectorError::user(e.into()))?;
            }
            if let Some(pace) = &pace {
                pace.wait().await;
                // The slot may have been a long wait: look at the lease again.
                if let Some(fence) = &fence {
                    fence
                        .pass()
                        .await
                        .map_err(|e| ConnectorError::user(e.into()))?;
                }
            }
            inner.call(request).await
        })
    }
}

/// `client`, with every request first passing the fence and then waiting for its slot.
pub fn gated(
    client: SharedHttpClient,
    pace: Option<Arc<Pace>>,
    fence: Option<Arc<Fence>>,
) -> SharedHttpClient {
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Gated {
            inner: client.http_connector(settings, components),
            pace: pace.clone(),
            fence: fence.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_leave_evenly_spaced_whoever_asks() {
        let pace = Arc::new(Pace::new(NonZeroU32::new(20).unwrap()));
        let start = Instant::now();
        // Six concurrent callers: the last slot is five intervals (5 × 50 ms) after the first.
        let waits: Vec<_> = (0..6)
            .map(|_| {
                let pace = pace.clone();
                tokio::spawn(async move {
                    pace.wait().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut times = Vec::new();
        for w in waits {
            times.push(w.await.unwrap());
        }
        times.sort();
        // The n-th request never leaves before its slot, n × 50 ms after the first (timer
        // granularity aside). A slot served late under load does not move the ones after it.
        for (n, t) in times.iter().enumerate() {
            let slot = Duration::from_millis(50 * n as u64);
            assert!(
                *t + Duration::from_millis(5) >= slot,
                "request {n} left at {t:?}, before its slot at {slot:?}: {times:?}"
            );
        }
    }
}
