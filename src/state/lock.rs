//! Holding the state lock: take it (or take over an expired lease), renew it in the background
//! while working, notice if it was lost, release it at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Backend, LockInfo, StateError, Version};

/// The lease a lock is taken for; renewed every third of it. `INFRA_LOCK_LEASE_SECONDS` overrides.
pub fn lease() -> Duration {
    std::env::var("INFRA_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(120))
}

pub struct LockGuard {
    backend: Arc<dyn Backend>,
    info: Mutex<LockInfo>,
    version: Arc<Mutex<Version>>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    fence: Arc<Fence>,
    /// The expired holder this lock was taken over from, if any.
    pub took_over: Option<LockInfo>,
}

impl LockGuard {
    /// Takes the lock; `fence` then holds back AWS requests whenever the lease is in doubt.
    pub async fn acquire(
        backend: Arc<dyn Backend>,
        operation: &str,
        fence: Arc<Fence>,
    ) -> Result<Self, StateError> {
        let lease = lease();
        let info = LockInfo::new(operation, lease);
        let (version, took_over) = backend.lock(&info).await?;
        fence.renewed(lease);
        let version = Arc::new(Mutex::new(version));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let backend = backend.clone();
            let version = version.clone();
            let lost = lost.clone();
            let fence = fence.clone();
            let mut info = info.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    info.expires = jiff::Timestamp::now()
                        + jiff::SignedDuration::try_from(lease).unwrap_or_default();
                    let held = version.lock().expect("lock version").clone();
                    let asked = Instant::now();
                    match backend.renew(&info, &held).await {
                        Ok(v) => {
                            *version.lock().expect("lock version") = v;
                            fence.renewed_at(asked, lease);
                        }
                        Err(StateError::LockLost) => {
                            lost.store(true, Ordering::SeqCst);
                            fence.lost();
                            return;
                        }
                        // A passing failure: the lease still has two thirds left; try again.
                        Err(e) => tracing::warn!("renewing the state lock: {e}"),
                    }
                }
            })
        };
        Ok(LockGuard {
            backend,
            info: Mutex::new(info),
            version,
            lost,
            renewer,
            fence,
            took_over,
        })
    }

    /// Returns once the lease is known to be ours (waiting for a renewal if it is in doubt); fails
    /// once the lock has been lost, so no state write happens without it.
    pub async fn check(&self) -> Result<(), StateError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(StateError::LockLost);
        }
        self.fence.pass().await
    }

    /// Whether a renewal found the lock taken over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn id(&self) -> String {
        self.info.lock().expect("lock info").id.clone()
    }

    pub async fn release(self) -> Result<(), StateError> {
        self.renewer.abort();
        self.fence.released();
        if self.lost.load(Ordering::SeqCst) {
            return Err(StateError::LockLost);
        }
        let held = self.version.lock().expect("lock version").clone();
        match self.backend.unlock(&held).await {
            // A renewal may have landed just as it was cancelled: if the lock is still ours,
            // release it at its current version.
            Err(StateError::LockLost) => match self.backend.lock_info().await? {
                Some((info, v)) if info.id == self.id() => self.backend.unlock(&v).await,
                _ => Err(StateError::LockLost),
            },
            other => other,
        }
    }
}

/// The lease of the state lock as the connector sees it.
#[derive(Debug, Default)]
pub struct Fence {
    lease: Mutex<Lease>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Lease {
    /// Last renewal and the lease length, while a lock is held.
    held: Option<(Instant, Duration)>,
    lost: bool,
}

enum Gate {
    Open,
    Wait,
    Lost,
}

impl Fence {
    /// The lock was taken (or renewed) just now.
    pub fn renewed(&self, lease: Duration) {
        self.renewed_at(Instant::now(), lease);
    }

    /// The lock was renewed by a request sent at `asked`: the lease runs from then.
    pub fn renewed_at(&self, asked: Instant, lease: Duration) {
        self.set(|l| l.held = Some((asked, lease)));
    }

    /// The lock was found taken over: nothing goes out any more.
    pub fn lost(&self) {
        self.set(|l| l.lost = true);
    }

    /// The lock was released: requests are no longer fenced.
    pub fn released(&self) {
        self.set(|l| l.held = None);
    }

    fn set(&self, f: impl FnOnce(&mut Lease)) {
        f(&mut self.lease.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_waiters();
    }

    fn gate(&self) -> Gate {
        let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        match lease.held {
            _ if lease.lost => Gate::Lost,
            Some((renewed, length)) if renewed.elapsed() >= length / 2 => Gate::Wait,
            _ => Gate::Open,
        }
    }

    /// Waits until the lease is known to be ours; fails if it was lost.
    pub async fn pass(&self) -> Result<(), StateError> {
        loop {
            // Registered before looking, so a change in between still wakes us.
            let changed = self.changed.notified();
            match self.gate() {
                Gate::Open => return Ok(()),
                Gate::Lost => return Err(StateError::LockLost),
                Gate::Wait => {
                    let _ = tokio::time::timeout(Duration::from_millis(250), changed).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_lease_holds_requests_until_renewed_and_a_lost_one_fails_them() {
        let fence = Arc::new(Fence::default());
        // No lock held: open.
        assert!(fence.pass().await.is_ok());
        let lease = Duration::from_millis(200);
        fence.renewed(lease);
        assert!(fence.pass().await.is_ok());
        tokio::time::sleep(lease / 2).await;
        // Stale: a request waits, and goes once the lease is renewed.
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.pass().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a stale lease let a request through"
        );
        fence.renewed(lease);
        assert!(waiting.await.unwrap());
        // Stale again, and the renewal finds the lock taken over: the request fails.
        tokio::time::sleep(lease / 2).await;
        let waiting = tokio::spawn({
            let fence = fence.clone();
            async move { fence.pass().await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        fence.lost();
        assert!(!waiting.await.unwrap());
        assert!(fence.pass().await.is_err());
    }
}
