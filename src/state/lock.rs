//! Holding the state lock: take it (or take over an expired lease), renew it in the background
//! while working, notice if it was lost, release it at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The expired holder this lock was taken over from, if any.
    pub took_over: Option<LockInfo>,
}

impl LockGuard {
    pub async fn acquire(backend: Arc<dyn Backend>, operation: &str) -> Result<Self, StateError> {
        let lease = lease();
        let info = LockInfo::new(operation, lease);
        let (version, took_over) = backend.lock(&info).await?;
        let version = Arc::new(Mutex::new(version));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let backend = backend.clone();
            let version = version.clone();
            let lost = lost.clone();
            let mut info = info.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    info.expires = jiff::Timestamp::now()
                        + jiff::SignedDuration::try_from(lease).unwrap_or_default();
                    let held = version.lock().expect("lock version").clone();
                    match backend.renew(&info, &held).await {
                        Ok(v) => *version.lock().expect("lock version") = v,
                        Err(StateError::LockLost) => {
                            lost.store(true, Ordering::SeqCst);
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
            took_over,
        })
    }

    /// Fails once the lock has been lost, so no write happens without it.
    pub fn check(&self) -> Result<(), StateError> {
        if self.lost.load(Ordering::SeqCst) {
            Err(StateError::LockLost)
        } else {
            Ok(())
        }
    }

    pub fn id(&self) -> String {
        self.info.lock().expect("lock info").id.clone()
    }

    pub async fn release(self) -> Result<(), StateError> {
        self.renewer.abort();
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
