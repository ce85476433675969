//! State in a local file, for trying `infra` out. The lock is a sibling `.lock` file created
//! exclusively; it guards processes on one machine only, never across machines.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Backend, LockInfo, StateDoc, StateError, Version};

pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    pub fn new(path: PathBuf) -> Self {
        LocalBackend { path }
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        p.into()
    }
}

fn version_of(bytes: &[u8]) -> Version {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Version(format!("{:016x}-{}", h.finish(), bytes.len()))
}

fn io(path: &Path, e: std::io::Error) -> StateError {
    StateError::Io(format!("{}: {e}", path.display()))
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a document.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn exists(&self) -> Result<bool, StateError> {
        Ok(true)
    }

    async fn ensure(&self) -> Result<(), StateError> {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
            }
            _ => Ok(()),
        }
    }

    async fn read(&self) -> Result<Option<(StateDoc, Version)>, StateError> {
        match read_opt(&self.path)? {
            None => Ok(None),
            Some(bytes) => Ok(Some((StateDoc::decode(&bytes)?, version_of(&bytes)))),
        }
    }

    async fn read_raw(&self) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        Ok(read_opt(&self.path)?.map(|b| {
            let v = version_of(&b);
            (b, v)
        }))
    }

    async fn newest(&self, _n: usize) -> Result<Vec<crate::state::StoredVersion>, StateError> {
        Err(StateError::NoHistory(self.describe()))
    }

    async fn write(&self, doc: &StateDoc, prev: Option<&Version>) -> Result<Version, StateError> {
        let current = read_opt(&self.path)?.map(|b| version_of(&b));
        if current.as_ref() != prev {
            return Err(StateError::Conflict);
        }
        let bytes = doc.encode();
        write_atomic(&self.path, &bytes)?;
        Ok(version_of(&bytes))
    }

    async fn lock(&self, info: &LockInfo) -> Result<(Version, Option<LockInfo>), StateError> {
        self.ensure().await?;
        let path = self.lock_path();
        let body = serde_json::to_vec_pretty(info).expect("lock serialises");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(&body).map_err(|e| io(&path, e))?;
                Ok((Version(info.id.clone()), None))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let Some((held, _)) = self.lock_info().await? else {
                    return Err(StateError::Conflict);
                };
                if !held.expired() {
                    return Err(StateError::Locked(Box::new(held)));
                }
                write_atomic(&path, &body)?;
                Ok((Version(info.id.clone()), Some(held)))
            }
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn renew(&self, info: &LockInfo, held: &Version) -> Result<Version, StateError> {
        match self.lock_info().await? {
            Some((current, _)) if current.id == held.0 => {
                let body = serde_json::to_vec_pretty(info).expect("lock serialises");
                write_atomic(&self.lock_path(), &body)?;
                Ok(held.clone())
            }
            _ => Err(StateError::LockLost),
        }
    }

    async fn unlock(&self, held: &Version) -> Result<(), StateError> {
        match self.lock_info().await? {
            Some((current, _)) if current.id == held.0 => {
                std::fs::remove_file(self.lock_path()).map_err(|e| io(&self.lock_path(), e))
            }
            _ => Err(StateError::LockLost),
        }
    }

    async fn lock_info(&self) -> Result<Option<(LockInfo, Version)>, StateError> {
        let path = self.lock_path();
        match read_opt(&path)? {
            None => Ok(None),
            Some(bytes) => {
                let info: LockInfo = serde_json::from_slice(&bytes)
                    .map_err(|e| StateError::Io(format!("{}: not a lock: {e}", path.display())))?;
                let v = Version(info.id.clone());
                Ok(Some((info, v)))
            }
        }
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        match self.lock_info().await? {
            Some((info, _)) if info.id == id => {
                std::fs::remove_file(self.lock_path()).map_err(|e| io(&self.lock_path(), e))?;
                Ok(info)
            }
            _ => Err(StateError::NoSuchLock(id.to_string())),
        }
    }
}
