//! `--max-rps`: every HTTP request to AWS — retries and credential calls included — takes the next
//! slot of one schedule shared by all clients of the process, so however many steps run at once,
//! requests leave at most `max_rps` a second, evenly spaced. The wait happens in the HTTP
//! connector, the one async place every attempt passes through, on tokio's timer.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
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
struct Paced {
    inner: SharedHttpConnector,
    pace: Arc<Pace>,
}

impl HttpConnector for Paced {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pace) = (self.inner.clone(), self.pace.clone());
        HttpConnectorFuture::new(async move {
            pace.wait().await;
            inner.call(request).await
        })
    }
}

/// `client`, with every request waiting for its slot in `pace`.
pub fn paced(client: SharedHttpClient, pace: Arc<Pace>) -> SharedHttpClient {
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Paced {
            inner: client.http_connector(settings, components),
            pace: pace.clone(),
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
        assert!(times[5] >= Duration::from_millis(250), "{times:?}");
        for pair in times.windows(2) {
            // Each slot is 50 ms after the previous one (timer granularity aside).
            assert!(pair[1] - pair[0] >= Duration::from_millis(45), "{times:?}");
        }
    }
}
