//! Waiting for AWS to finish something (a NAT gateway available, a load balancer active or
//! deleted): poll with a backoff that starts small, so a fast answer is seen at once and a slow
//! one is not hammered, up to a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::AwsError;

/// The first pause between polls; it grows by half each time up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// The pauses a poll makes, in order: 250 ms, growing by half, never above 10 s.
pub fn pauses() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(FIRST_PAUSE), |p| Some((*p * 3 / 2).min(MAX_PAUSE)))
}

/// Who hears that a step is waiting on AWS: what it waits for, and for how long so far.
pub type Watcher = Arc<dyn Fn(&str, Duration) + Send + Sync>;

tokio::task_local! {
    /// The watcher of the step this task runs (`exec` sets it around each step).
    pub static WATCHER: Watcher;
}

/// Calls `check` until it returns `Some`, pausing between calls, for at most `max`. `what`
/// says what is awaited ("the NAT gateway nat-… to become available"): the step's watcher hears
/// it after every poll that found it not done yet, and the error names it when time runs out.
pub async fn until<T, F, Fut>(
    service: &'static str,
    operation: &'static str,
    what: &str,
    max: Duration,
    check: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, AwsError>>,
{
    within(what, max, check).await?.ok_or_else(|| {
        AwsError::local(
            service,
            operation,
            format!("still waiting for {what} after {} s", max.as_secs()),
        )
    })
}

/// `until`, with running out of time an answer (`None`) rather than an error.
pub async fn within<T, F, Fut>(
    what: &str,
    max: Duration,
    mut check: F,
) -> Result<Option<T>, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, AwsError>>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + max;
    for pause in pauses() {
        if let Some(done) = check().await? {
            return Ok(Some(done));
        }
        let _ = WATCHER.try_with(|w| w(what, start.elapsed()));
        if tokio::time::Instant::now() + pause > deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_start_small_and_stop_growing() {
        let p: Vec<Duration> = pauses().take(12).collect();
        assert_eq!(p[0], Duration::from_millis(250));
        assert_eq!(p[1], Duration::from_millis(375));
        assert!(p.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*p.last().unwrap(), MAX_PAUSE);
    }
}
