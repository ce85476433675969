//! The state document and the storage it lives in.
//!
//! The document is versioned JSON: a format `version`, a `serial` bumped on every write, a `lineage`
//! fixed when it is first created, and per logical id the kind, physical id, last applied attributes
//! and dependencies. `decode` reads every format this build knows and upgrades it; `encode` always
//! writes the current one.
//!
//! A `Backend` stores the document with compare-and-swap writes and guards it with a lease lock.
//! The S3 backend lives in `aws::s3_backend` (it needs the SDK); the local one is here.

mod local;
pub mod lock;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Kind;

pub use local::LocalBackend;

/// The format this build writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub version: u32,
    pub serial: u64,
    pub lineage: String,
    pub environment: String,
    pub resources: BTreeMap<String, StateResource>,
    /// Resources infra stopped managing (`state forget`), by physical id, with the logical id
    /// they had: never matched, adopted or deleted again, though they keep their tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forgotten: BTreeMap<String, String>,
    /// Who wrote this version (`user@host`), for `state versions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    /// Services `infra rollback` moved back to an earlier task definition revision, by logical
    /// id, until an apply changes them again: the plan says why the service and the file
    /// disagree.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rolled_back: BTreeMap<String, RolledBack>,
}

/// A rollback `infra rollback` carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The task definition revision the service ran before.
    pub from: String,
    /// The revision it runs since.
    pub to: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateResource {
    pub kind: Kind,
    pub physical_id: String,
    pub attributes: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Recorded from the file when applied, and kept: deleting it needs
    /// `--allow-destroy-protected` even once the file no longer says so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

impl StateDoc {
    /// A fresh document for an environment that has never been applied.
    pub fn new(environment: &str) -> Self {
        StateDoc {
            version: FORMAT_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            environment: environment.to_string(),
            resources: BTreeMap::new(),
            forgotten: BTreeMap::new(),
            written_by: None,
            rolled_back: BTreeMap::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("state serialises");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(StateError::Corrupt)?;
        let version = raw.get("version").and_then(Value::as_u64).unwrap_or(0);
        match version {
            1 => serde_json::from_value(raw).map_err(StateError::Corrupt),
            v if v > u64::from(FORMAT_VERSION) => Err(StateError::TooNew(v)),
            v => Err(StateError::UnknownVersion(v)),
        }
    }

    pub fn physical_id(&self, id: &str) -> Option<&str> {
        self.resources.get(id).map(|r| r.physical_id.as_str())
    }
}

/// An opaque version of the stored document (an S3 ETag, a content hash): what a compare-and-swap
/// write must still find there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// Who is writing, for locks and state versions: a CI run (`github:ACTOR run ID`,
/// `gitlab:USER job ID`), or `user@host`.
pub fn writer() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(actor), Some(run)) = (var("GITHUB_ACTOR"), var("GITHUB_RUN_ID")) {
        return format!("github:{actor} run {run}");
    }
    if let (Some(user), Some(job)) = (var("GITLAB_USER_LOGIN"), var("CI_JOB_ID")) {
        return format!("gitlab:{user} job {job}");
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    match var("USER")
        .or_else(|| var("LOGNAME"))
        .or_else(|| var("USERNAME"))
    {
        Some(user) => format!("{user}@{host}"),
        None if var("CI").is_some() => format!("ci@{host}"),
        None => format!("pid {}@{host}", std::process::id()),
    }
}

/// Who holds a lock, for how long, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub operation: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub created: jiff::Timestamp,
    pub expires: jiff::Timestamp,
}

impl LockInfo {
    pub fn new(operation: &str, lease: std::time::Duration) -> Self {
        let now = jiff::Timestamp::now();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            who: writer(),
            host,
            pid: std::process::id(),
            created: now,
            expires: now + jiff::SignedDuration::try_from(lease).unwrap_or_default(),
        }
    }

    pub fn expired(&self) -> bool {
        self.expires < jiff::Timestamp::now()
    }

    /// "apply by ana@ci-7 (pid 42), started 3m ago, lock id …"
    pub fn describe(&self) -> String {
        let age = jiff::Timestamp::now().duration_since(self.created);
        format!(
            "`{}` by {} (pid {}), started {}s ago, lease until {}; lock id {}",
            self.operation,
            self.who,
            self.pid,
            age.as_secs().max(0),
            self.expires,
            self.id
        )
    }
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state document is not valid: {0}")]
    Corrupt(serde_json::Error),
    #[error("the state was written by a newer infra (format {0}); upgrade infra")]
    TooNew(u64),
    #[error("the state has unknown format version {0}")]
    UnknownVersion(u64),
    #[error("the state is locked: {}", .0.describe())]
    Locked(Box<LockInfo>),
    #[error(
        "the state changed since it was read (another writer won the race); nothing was overwritten"
    )]
    Conflict,
    #[error("this process no longer holds the lock (its lease expired and was taken over)")]
    LockLost,
    #[error("no lock {0} is held on this state")]
    NoSuchLock(String),
    #[error("{0}")]
    Io(String),
    #[error("{0} keeps no history of the state (only S3 state is versioned)")]
    NoHistory(String),
    #[error(transparent)]
    Aws(#[from] crate::error::AwsError),
}

/// One stored version of the state object, as its history keeps it.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The storage's id of this version (an S3 version id).
    pub id: String,
    pub last_modified: Option<jiff::Timestamp>,
    /// The current version.
    pub latest: bool,
    pub bytes: Vec<u8>,
}

/// Where state is kept. Every write is conditional on the version last read.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// `s3://bucket/key` or a file path: for messages.
    fn describe(&self) -> String;
    /// Whether the storage exists (the S3 bucket); `ensure` creates it.
    async fn exists(&self) -> Result<bool, StateError>;
    async fn ensure(&self) -> Result<(), StateError>;
    async fn read(&self) -> Result<Option<(StateDoc, Version)>, StateError>;
    /// The stored bytes and their version, whether or not they parse.
    async fn read_raw(&self) -> Result<Option<(Vec<u8>, Version)>, StateError>;
    /// Every stored version of the document, newest first (S3 versioning). A backend that keeps
    /// no history says so with `StateError::NoHistory`.
    async fn history(&self) -> Result<Vec<StoredVersion>, StateError> {
        self.newest(usize::MAX).await
    }
    /// The newest `n` stored versions, newest first (one listing, `n` reads).
    async fn newest(&self, n: usize) -> Result<Vec<StoredVersion>, StateError>;
    /// The version before the current one, if the storage keeps history and there is one.
    async fn previous(&self) -> Result<Option<StoredVersion>, StateError> {
        Ok(self.newest(2).await?.into_iter().find(|v| !v.latest))
    }
    /// Writes `doc` only if the stored version is still `prev` (`None`: only if nothing is stored).
    async fn write(&self, doc: &StateDoc, prev: Option<&Version>) -> Result<Version, StateError>;
    /// Takes the lock, or takes over one whose lease expired (returning the dead holder).
    async fn lock(&self, info: &LockInfo) -> Result<(Version, Option<LockInfo>), StateError>;
    /// Extends a held lock; fails with `LockLost` if someone else holds it now.
    async fn renew(&self, info: &LockInfo, held: &Version) -> Result<Version, StateError>;
    async fn unlock(&self, held: &Version) -> Result<(), StateError>;
    /// The current lock, if any.
    async fn lock_info(&self) -> Result<Option<(LockInfo, Version)>, StateError>;
    /// Removes a lock by id, whoever holds it (`infra state unlock`).
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError>;
    /// What the storage lacks to keep the state safe (S3: versioning, default encryption, a
    /// public access block), each as a short phrase; none for storage without such settings.
    async fn weaknesses(&self) -> Result<Vec<String>, StateError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_newer_formats() {
        let mut doc = StateDoc::new("stage");
        doc.resources.insert(
            "vpc".into(),
            StateResource {
                kind: Kind::Vpc,
                physical_id: "vpc-1".into(),
                attributes: serde_json::json!({"cidr_block": "10.0.0.0/16"}),
                depends_on: vec![],
                protected: false,
            },
        );
        let back = StateDoc::decode(&doc.encode()).unwrap();
        assert_eq!(back, doc);
        let newer = br#"{"version": 99, "serial": 1}"#;
        assert!(matches!(
            StateDoc::decode(newer),
            Err(StateError::TooNew(99))
        ));
        assert!(matches!(
            StateDoc::decode(b"{"),
            Err(StateError::Corrupt(_))
        ));
    }
}
