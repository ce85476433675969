//! The workflows behind the commands: open a session (config, AWS clients, state backend), make a
//! plan, and carry one out under the state lock. Commands stay thin: they parse flags, call these,
//! print, and pick an exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::aws::{self, Aws, s3_backend::S3Backend};
use crate::config::{self, Environment, StateConfig};
use crate::desired::{self, Desired};
use crate::exec::{self, Report, StateWriter};
use crate::model::{Kind, LiveResource};
use crate::plan::{self, Base, Operation, PLAN_FORMAT, Plan};
use crate::render;
use crate::state::lock::LockGuard;
use crate::state::{Backend, LocalBackend, StateDoc, StateError, StateResource, Version};

/// An error with a hint the user can act on; printed as `error:` then `hint:`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted {
        message: message.into(),
        hint: hint.into(),
    }
    .into()
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    pub dir: PathBuf,
    pub parallelism: usize,
    /// Cap on AWS requests per second, retries included.
    pub max_rps: Option<NonZeroU32>,
}

/// What a command works on: the clients of the environment's region and its state backend.
pub struct Session {
    pub aws: Aws,
    pub backend: Arc<dyn Backend>,
}

pub fn load_env(globals: &Globals, name: &str) -> Result<Environment> {
    Ok(config::load(&globals.dir, name)?)
}

/// The ECS names of an environment, which ECS reads need.
pub fn names(env: &Environment) -> aws::Names {
    aws::Names {
        cluster: env.cluster_name().map(str::to_string),
        services: env.services.keys().cloned().collect(),
        autoscaled: env
            .services
            .iter()
            .filter(|(_, s)| s.autoscaling.is_some())
            .map(|(n, _)| n.clone())
            .collect(),
        infrastructure_role: env.services.values().any(|s| s.deployment.shifts_traffic()),
        bastion: env.bastion.is_some(),
    }
}

/// `open` for an environment read from its file.
pub async fn open_env(globals: &Globals, env: &Environment) -> Session {
    open(globals, &env.region, &env.name, &env.state, names(env)).await
}

pub async fn open(
    globals: &Globals,
    region: &str,
    environment: &str,
    state: &StateConfig,
    names: aws::Names,
) -> Session {
    let mut aws = aws::connect(region, environment, globals.max_rps).await;
    aws.names = names;
    let backend: Arc<dyn Backend> = match state {
        StateConfig::S3 {
            bucket,
            key,
            kms_key_id,
        } => Arc::new(S3Backend::new(&aws, bucket, key, kms_key_id.as_deref())),
        StateConfig::Local { path } => Arc::new(LocalBackend::new(path.clone())),
    };
    Session { aws, backend }
}

/// The stored state, if any, checked to belong to this environment.
pub async fn read_state(
    session: &Session,
    environment: &str,
) -> Result<Option<(StateDoc, Version)>> {
    let where_ = session.backend.describe();
    let stored = match session.backend.read().await {
        Ok(stored) => stored,
        Err(e @ (StateError::Corrupt(_) | StateError::UnknownVersion(_))) => {
            return Err(broken_state(session, environment, e).await);
        }
        Err(e) => return Err(anyhow::Error::from(e).context(format!("reading state {where_}"))),
    };
    if let Some((doc, _)) = &stored
        && doc.environment != environment
    {
        bail!(
            "state {where_} belongs to environment `{}`, not `{environment}`",
            doc.environment
        );
    }
    Ok(stored)
}

/// A stored version of the state as `state versions` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionRow {
    pub version_id: String,
    pub last_modified: Option<jiff::Timestamp>,
    pub latest: bool,
    pub valid: bool,
    pub serial: Option<u64>,
    pub lineage: Option<String>,
    pub resources: Option<usize>,
    pub written_by: Option<String>,
    /// Why it does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every stored version of the state, newest first.
pub async fn state_versions(session: &Session) -> Result<Vec<(VersionRow, Option<StateDoc>)>> {
    let history = session
        .backend
        .history()
        .await
        .with_context(|| format!("listing the versions of {}", session.backend.describe()))?;
    Ok(history
        .into_iter()
        .map(|v| {
            let doc = StateDoc::decode(&v.bytes);
            let row = VersionRow {
                version_id: v.id,
                last_modified: v.last_modified,
                latest: v.latest,
                valid: doc.is_ok(),
                serial: doc.as_ref().ok().map(|d| d.serial),
                lineage: doc.as_ref().ok().map(|d| d.lineage.clone()),
                resources: doc.as_ref().ok().map(|d| d.resources.len()),
                written_by: doc.as_ref().ok().and_then(|d| d.written_by.clone()),
                error: doc.as_ref().err().map(|e| e.to_string()),
            };
            (row, doc.ok())
        })
        .collect())
}

/// The error for a current document that does not parse: which object and version, that earlier
/// versions exist (the newest valid one's serial and age), and both ways out.
async fn broken_state(session: &Session, env: &str, e: StateError) -> anyhow::Error {
    let where_ = session.backend.describe();
    let versions = state_versions(session).await.unwrap_or_default();
    let current = versions
        .iter()
        .find(|(r, _)| r.latest)
        .map(|(r, _)| format!(" (version {})", r.version_id))
        .unwrap_or_default();
    let good = versions.iter().find(|(r, _)| r.valid).map(|(r, _)| r);
    let mut hint = String::new();
    if let Some(g) = good {
        hint.push_str(&render::restore_hint(env, g, versions.len()));
        hint.push('\n');
    }
    hint.push_str(&format!(
        "`infra state recover {env} --force` rebuilds it from the environment's tags (the broken version is kept)"
    ));
    hinted(format!("state {where_}{current} does not parse: {e}"), hint)
}

/// Replaces a current document that does not parse by an empty one of the newest valid
/// version's lineage (serial above every stored one), under the lock, as a new version: the
/// broken one stays in the history. Returns whether there was anything to replace.
pub async fn reset_broken_state(session: &Session, env: &str) -> Result<bool> {
    let guard = lock(session, env, "state recover").await?;
    let result = async {
        let Some((bytes, version)) = session.backend.read_raw().await? else {
            return Ok(false);
        };
        if StateDoc::decode(&bytes).is_ok() {
            return Ok(false);
        }
        let versions = state_versions(session).await.unwrap_or_default();
        let mut doc = StateDoc::new(env);
        if let Some(d) = versions.iter().find_map(|(_, d)| d.as_ref()) {
            doc.lineage = d.lineage.clone();
            doc.forgotten = d.forgotten.clone();
        }
        doc.serial = versions
            .iter()
            .filter_map(|(r, _)| r.serial)
            .max()
            .unwrap_or(0)
            + 1;
        doc.written_by = Some(crate::state::writer());
        guard.check().await?;
        session.backend.write(&doc, Some(&version)).await?;
        Ok::<_, anyhow::Error>(true)
    }
    .await;
    guard.release().await?;
    result
}

/// Makes stored version `version_id` current again, as a new version whose serial is above every
/// stored one, compare-and-swap under the lock. Returns what changed, for the confirmation.
pub struct Restore {
    pub chosen: StateDoc,
    pub current: Option<StateDoc>,
    /// "version <id>" or "file <path>", for messages.
    pub source: String,
}

/// Reads what pushing `doc` would do: its environment must be this one, its lineage the current
/// one's unless `force`; its serial becomes one above every stored version.
pub async fn prepare_push(
    session: &Session,
    env: &str,
    doc: StateDoc,
    source: String,
    force: bool,
) -> Result<Restore> {
    if doc.environment != env {
        bail!(
            "{source} is the state of environment `{}`, not `{env}`",
            doc.environment
        );
    }
    let current = match session.backend.read_raw().await? {
        Some((bytes, _)) => StateDoc::decode(&bytes).ok(),
        None => None,
    };
    if let Some(c) = &current
        && c.lineage != doc.lineage
        && !force
    {
        return Err(hinted(
            format!(
                "{source} is of lineage {}, the current state of lineage {}",
                doc.lineage, c.lineage
            ),
            "a state of another lineage describes other resources; pass --force if that is what you want",
        ));
    }
    let stored_max = match session.backend.history().await {
        Ok(h) => h
            .iter()
            .filter_map(|v| StateDoc::decode(&v.bytes).ok().map(|d| d.serial))
            .max(),
        Err(_) => current.as_ref().map(|c| c.serial),
    };
    let mut chosen = doc;
    if let Some(c) = &current {
        chosen.forgotten.extend(c.forgotten.clone());
    }
    chosen.serial = chosen.serial.max(stored_max.unwrap_or(0)) + 1;
    Ok(Restore {
        chosen,
        current,
        source,
    })
}

/// Reads what a restore would do, refusing a version of another lineage unless `force`.
pub async fn prepare_restore(
    session: &Session,
    env: &str,
    version_id: &str,
    force: bool,
) -> Result<Restore> {
    let versions = state_versions(session).await?;
    let Some((row, doc)) = versions.iter().find(|(r, _)| r.version_id == version_id) else {
        return Err(hinted(
            format!("{} has no version {version_id}", session.backend.describe()),
            format!("`infra state versions {env}` lists them"),
        ));
    };
    let Some(chosen) = doc.clone() else {
        bail!(
            "version {version_id} does not parse either: {}",
            row.error.clone().unwrap_or_default()
        );
    };
    if chosen.environment != env {
        bail!(
            "version {version_id} is the state of environment `{}`, not `{env}`",
            chosen.environment
        );
    }
    let current = versions
        .iter()
        .find(|(r, _)| r.latest)
        .and_then(|(_, d)| d.clone());
    if let Some(c) = &current
        && c.lineage != chosen.lineage
        && !force
    {
        return Err(hinted(
            format!(
                "version {version_id} is of lineage {}, the current state of lineage {}",
                chosen.lineage, c.lineage
            ),
            "a state of another lineage describes other resources; pass --force if that is what you want",
        ));
    }
    let mut chosen = chosen;
    // What was let go of stays let go of.
    if let Some(c) = &current {
        chosen.forgotten.extend(c.forgotten.clone());
    }
    chosen.serial = versions
        .iter()
        .filter_map(|(r, _)| r.serial)
        .max()
        .unwrap_or(0)
        + 1;
    Ok(Restore {
        chosen,
        current,
        source: format!("version {version_id}"),
    })
}

/// Writes a prepared restore (or push) under the lock, compare-and-swap on the current object.
pub async fn restore(session: &Session, env: &str, r: &Restore) -> Result<()> {
    let guard = lock(session, env, "state restore").await?;
    let result = async {
        let current = session.backend.read_raw().await?.map(|(_, v)| v);
        let mut doc = r.chosen.clone();
        doc.written_by = Some(crate::state::writer());
        guard.check().await?;
        session.backend.write(&doc, current.as_ref()).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    guard.release().await?;
    result
}

/// Refuses to write over a current document older than the one before it in the same lineage:
/// someone put an old copy back by hand, and writing on would build on forgotten resources.
/// `previous` is the version before the current one, read from the object's history (one
/// listing, one read, made beside the read of the current one); a backend without history has
/// none, and the check passes.
fn check_not_backwards(
    session: &Session,
    current: &StateDoc,
    previous: Option<crate::state::StoredVersion>,
) -> Result<()> {
    let previous = previous
        .as_ref()
        .and_then(|v| StateDoc::decode(&v.bytes).ok().map(|d| (v, d)));
    if let Some((v, prev)) = previous
        && prev.lineage == current.lineage
        && prev.serial > current.serial
    {
        return Err(hinted(
            format!(
                "the current state of {} (serial {}) is older than the version before it ({}, serial {}): an old copy was put back by hand; nothing was written",
                session.backend.describe(),
                current.serial,
                v.id,
                prev.serial
            ),
            format!(
                "`infra state versions {env}` lists the history; `infra state restore {env} VERSION_ID` makes the right one current",
                env = current.environment
            ),
        ));
    }
    Ok(())
}

/// `infra state forget`: stops managing `id` without deleting it, under the lock.
pub async fn forget(session: &Session, env: &str, id: &str) -> Result<StateResource> {
    let guard = lock(session, env, "state forget").await?;
    let result = async {
        let Some((mut doc, version)) = read_state(session, env).await? else {
            bail!("{} holds no state", session.backend.describe());
        };
        let Some(r) = doc.resources.remove(id) else {
            return Err(hinted(
                format!("`{id}` is not in the state of {env}"),
                format!("`infra state list {env}` lists what is"),
            ));
        };
        doc.forgotten.insert(r.physical_id.clone(), id.to_string());
        doc.serial += 1;
        doc.written_by = Some(crate::state::writer());
        guard.check().await?;
        session.backend.write(&doc, Some(&version)).await?;
        Ok(r)
    }
    .await;
    guard.release().await?;
    result
}

/// What `infra import` found, before it asks.
pub struct Import {
    pub id: String,
    pub kind: Kind,
    pub live: LiveResource,
    pub depends_on: Vec<String>,
    pub protected: bool,
}

/// Finds the resource `physical` as the file's `id` would have it: the id must be in the file and
/// not in state, the resource must exist and belong to no other environment.
pub async fn prepare_import(
    session: &Session,
    env: &Environment,
    id: &str,
    physical: &str,
) -> Result<Import> {
    let d = desired::expand(env);
    let Some(want) = d.resources.get(id) else {
        return Err(hinted(
            format!("`{id}` is not a resource of {}'s file", env.name),
            format!("`infra graph {}` shows every logical id", env.name),
        ));
    };
    if let Some((doc, _)) = read_state(session, &env.name).await?
        && let Some(r) = doc.resources.get(id)
    {
        bail!("`{id}` is already managed: {}", r.physical_id);
    }
    let adapter = crate::aws::kinds::adapter(want.kind);
    let found = adapter
        .read_ids(&session.aws, &[physical.to_string()])
        .await
        .with_context(|| format!("reading {} {physical}", want.kind))?;
    let Some(live) = found.into_iter().next() else {
        bail!("no {} {physical} exists", want.kind);
    };
    let owner = live.attrs["tags"][crate::model::TAG_ENVIRONMENT].as_str();
    if let Some(other) = owner.filter(|o| *o != env.name) {
        bail!(
            "{} {} belongs to environment `{other}`; infra never takes what another environment manages",
            want.kind,
            live.physical_id
        );
    }
    Ok(Import {
        id: id.to_string(),
        kind: want.kind,
        depends_on: want.deps().into_iter().collect(),
        protected: want.protected,
        live,
    })
}

/// Tags the resource as this environment's `id` and records it, under the lock.
pub async fn import(session: &Session, env: &Environment, i: &Import) -> Result<()> {
    if !session.backend.exists().await? {
        session.backend.ensure().await?;
    }
    let guard = lock(session, &env.name, "import").await?;
    let result = async {
        let stored = read_state(session, &env.name).await?;
        let (mut doc, version) = match stored {
            Some((d, v)) => (d, Some(v)),
            None => (StateDoc::new(&env.name), None),
        };
        let tags = crate::model::tags_for(&env.name, &env.tags, &i.id);
        let live = crate::aws::kinds::adapter(i.kind)
            .adopt(&session.aws, &i.live.physical_id, &tags)
            .await?;
        doc.forgotten.remove(&live.physical_id);
        doc.resources.insert(
            i.id.clone(),
            StateResource {
                kind: i.kind,
                physical_id: live.physical_id,
                attributes: live.attrs,
                depends_on: i.depends_on.clone(),
                protected: i.protected,
            },
        );
        doc.serial += 1;
        doc.written_by = Some(crate::state::writer());
        guard.check().await?;
        session.backend.write(&doc, version.as_ref()).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    guard.release().await?;
    result
}

/// What a plan may go past.
#[derive(Debug, Clone)]
pub struct Allow {
    /// Deleting or replacing protected resources.
    pub destroy_protected: bool,
    /// Pinning images whose scan has findings at or above `block_severity`.
    pub vulnerable: bool,
    /// The least severity (ECR's names: CRITICAL, HIGH, MEDIUM, LOW) that stops a plan.
    pub block_severity: String,
    /// `--image KEY=TAG`: the tag this run gives each repository key the file leaves untagged.
    pub images: BTreeMap<String, String>,
    /// `--replace ID`: resources to replace although nothing about them differs.
    pub replace: Vec<String>,
}

impl Default for Allow {
    fn default() -> Self {
        Allow {
            destroy_protected: false,
            vulnerable: false,
            block_severity: "CRITICAL".into(),
            images: BTreeMap::new(),
            replace: Vec::new(),
        }
    }
}

/// `--image KEY=TAG` names keys the file leaves without a tag: any other is a mistake, refused
/// before any AWS call.
pub fn check_image_keys(env: &Environment, images: &BTreeMap<String, String>) -> Result<()> {
    for key in images.keys() {
        let used = env.services.values().any(|s| {
            matches!(&s.image, crate::config::Image::Repository { key: k, tag: None } if k == key)
        });
        if !used {
            let tagless: Vec<&str> = env
                .services
                .values()
                .filter_map(|s| match &s.image {
                    crate::config::Image::Repository { key, tag: None } => Some(key.as_str()),
                    _ => None,
                })
                .collect();
            return Err(hinted(
                format!(
                    "--image {key}=…: no service of {} says `image: {key}` (a repository key without a tag)",
                    env.name
                ),
                if tagless.is_empty() {
                    "--image sets the tag of services whose file says `image: KEY`; this file gives every image's tag itself".to_string()
                } else {
                    format!("keys the pipeline sets here: {}", tagless.join(", "))
                },
            ));
        }
    }
    Ok(())
}

/// The `--image` flags as a map; a key given twice is a mistake.
pub fn image_tags(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, t) in pairs {
        if let Some(before) = out.insert(k.clone(), t.clone())
            && before != *t
        {
            bail!("--image {k} is given twice ({before} and {t})");
        }
    }
    Ok(out)
}

/// `KEY=TAG` of `--image`.
pub fn parse_image_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, t)) if !k.is_empty() && !t.is_empty() && !t.contains(char::is_whitespace) => {
            Ok((k.to_string(), t.to_string()))
        }
        _ => Err(format!("`{text}` is not KEY=TAG (e.g. web=3f2a1c)")),
    }
}

/// The images the pipeline owns and this run does not set (`image: KEY`, no `--image`): each
/// service keeps the digest its live task definition runs, which must still be in the
/// repository. A service that does not run yet has nothing to keep: an error naming `--image`
/// (which stops the plan when its task definition is part of it).
async fn kept_images(
    session: &Session,
    env: &Environment,
    overrides: &BTreeMap<String, String>,
    live: &[crate::model::LiveResource],
) -> Result<(aws::images::Resolved, Vec<plan::Warning>)> {
    let owned: Vec<(&String, &String)> = env
        .services
        .iter()
        .filter_map(|(name, s)| match &s.image {
            crate::config::Image::Repository { key, tag: None } if !overrides.contains_key(key) => {
                Some((name, key))
            }
            _ => None,
        })
        .collect();
    // Services running the same image ask the repository about it once.
    type Asked = std::sync::Arc<tokio::sync::OnceCell<Option<Vec<String>>>>;
    let asked: std::sync::Mutex<std::collections::HashMap<String, Asked>> = Default::default();
    let asked = &asked;
    let found = futures::future::try_join_all(owned.iter().map(|(name, key)| async move {
        let service_id = crate::naming::id::service(name);
        let pass = format!(
            "pass `--image {key}=TAG` (or deploy one with `infra deploy {} --image {key}=TAG`)",
            env.name
        );
        let running = live
            .iter()
            .find(|l| l.kind == Kind::Service && l.id.as_deref() == Some(service_id.as_str()))
            .and_then(|l| l.attrs["task_definition"].as_str().map(str::to_string));
        let Some(arn) = running else {
            return Ok(((*name).clone(), Err(format!("service `{name}` does not run yet and its file says `image: {key}` without a tag, so there is no deployed image to keep: {pass}")), None));
        };
        let td = match live
            .iter()
            .find(|l| l.kind == Kind::TaskDefinition && l.physical_id == arn)
        {
            Some(l) => Some(l.clone()),
            None => crate::aws::kinds::adapter(Kind::TaskDefinition)
                .read_ids(&session.aws, std::slice::from_ref(&arn))
                .await?
                .into_iter()
                .next(),
        };
        let Some(td) = td else {
            return Ok(((*name).clone(), Err(format!("service `{name}` runs task definition {arn}, which is gone, so there is no deployed image to keep: {pass}")), None));
        };
        let image = td.attrs["container"]["image"].as_str().unwrap_or_default().to_string();
        let cell = asked
            .lock()
            .expect("image asks")
            .entry(image.clone())
            .or_default()
            .clone();
        let there = cell
            .get_or_try_init(|| aws::images::still_there(&session.aws, &image))
            .await?
            .clone();
        let Some(tags) = there else {
            return Ok(((*name).clone(), Err(format!("service `{name}` runs {image}, which is no longer in its repository: {pass}")), None));
        };
        let shown = td.attrs["tags"]["infra:image"].as_str().map(str::to_string);
        let tag = shown
            .as_deref()
            .and_then(|s| s.split_once(':'))
            .map(|(_, t)| t.to_string());
        let digest = image.split_once('@').map_or(image.as_str(), |(_, d)| d).to_string();
        let note = plan::Warning::ImageKept {
            service: (*name).clone(),
            key: (*key).clone(),
            digest,
            tag,
            untagged: tags.is_empty(),
        };
        let pinned = desired::Pinned {
            image,
            shown: shown.unwrap_or_else(|| (*key).clone()),
        };
        Ok::<_, anyhow::Error>(((*name).clone(), Ok(pinned), Some(note)))
    }))
    .await?;
    let mut resolved = aws::images::Resolved::new();
    let mut notes = Vec::new();
    for (name, result, note) in found {
        resolved.insert(name, result);
        notes.extend(note);
    }
    Ok((resolved, notes))
}

/// How long a plan waits for the scan of an image it pins to finish.
const SCAN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Refreshes live state and diffs it against the file (or against nothing, for destroy).
pub async fn make_plan(
    session: &Session,
    env: &Environment,
    operation: Operation,
    targets: &[String],
    allow: &Allow,
) -> Result<(Plan, StateDoc)> {
    let allow_destroy_protected = allow.destroy_protected;
    check_image_keys(env, &allow.images)?;
    // Kinds neither the file nor the state has cost no read at all. Those of the file whose
    // reads do not need the state are read while the state is fetched, with the image tags and
    // an existing network.
    let desired_kinds: BTreeSet<Kind> = match operation {
        Operation::Apply => desired::expand(env)
            .resources
            .values()
            .map(|r| r.kind)
            .collect(),
        Operation::Destroy => BTreeSet::new(),
    };
    let early_kinds: BTreeSet<Kind> = desired_kinds
        .iter()
        .copied()
        .filter(|k| !crate::aws::kinds::adapter(*k).reads_state())
        .collect();
    let ((base, backend_exists, state, late), early, images, network, zone, ami) = futures::try_join!(
        async {
            let stored = read_state(session, &env.name).await?;
            // Stored state proves the storage exists; only without it is there more to ask.
            let backend_exists = stored.is_some()
                || session.backend.exists().await.with_context(|| {
                    format!("checking state storage {}", session.backend.describe())
                })?;
            let base = stored.as_ref().map(|(d, _)| Base {
                lineage: d.lineage.clone(),
                serial: d.serial,
            });
            let state = stored
                .map(|(d, _)| d)
                .unwrap_or_else(|| StateDoc::new(&env.name));
            // The kinds that need the state start as soon as it is here.
            let late: BTreeSet<Kind> = desired_kinds
                .iter()
                .copied()
                .chain(state.resources.values().map(|r| r.kind))
                .filter(|k| !early_kinds.contains(k))
                .collect();
            let live = aws::refresh(&session.aws, &state, &late, Default::default())
                .await
                .context("reading live resources from AWS")?;
            Ok::<_, anyhow::Error>((base, backend_exists, state, live))
        },
        async {
            aws::refresh_early(&session.aws, &early_kinds)
                .await
                .context("reading live resources from AWS")
        },
        async {
            match operation {
                Operation::Apply => aws::images::resolve(&session.aws, env, &allow.images)
                    .await
                    .context("resolving image tags in ECR"),
                Operation::Destroy => Ok(Default::default()),
            }
        },
        async {
            // A network someone else owns is read, never written: what it is decides where the
            // load balancer's egress goes, and whether the plan can go on at all.
            match (operation, env.network.existing()) {
                (Operation::Apply, Some(net)) => aws::existing::observe(&session.aws, net)
                    .await
                    .map(|seen| aws::existing::judge(net, env.load_balancer.is_some(), &seen))
                    .with_context(|| format!("reading the existing network {}", net.vpc_id)),
                _ => Ok(Default::default()),
            }
        },
        async {
            // The domain's records live in its public hosted zone, found by name.
            let domain = env.load_balancer.as_ref().and_then(|lb| lb.domain.as_ref());
            match (operation, domain) {
                (Operation::Apply, Some(d)) => {
                    aws::kinds::dns_record::hosted_zone(&session.aws, &d.zone)
                        .await
                        .map(Some)
                        .with_context(|| format!("looking up the hosted zone {}", d.zone))
                }
                _ => Ok(None),
            }
        },
        async {
            // The latest Amazon Linux 2023 for the bastion's architecture.
            match (operation, &env.bastion) {
                (Operation::Apply, Some(b)) => aws::bastion_ami(&session.aws, &b.instance_type)
                    .await
                    .map(Some)
                    .context("looking up the latest Amazon Linux 2023 AMI"),
                _ => Ok(None),
            }
        }
    )?;
    let mut network = network;
    // A bastion keeps the AMI it was made with; a newer one is said, not applied.
    let kept_ami = state
        .resources
        .get(crate::naming::id::BASTION)
        .and_then(|r| r.attributes["image_id"].as_str())
        .map(str::to_string);
    let mut ami_note = None;
    if let (Some(kept), Some(latest)) = (&kept_ami, &ami)
        && kept != latest
    {
        ami_note = Some(plan::Warning::Status {
            message: format!(
                "bastion: it runs {kept}; a newer Amazon Linux 2023 AMI is out ({latest}): `infra apply {} --replace bastion` moves it",
                env.name
            ),
        });
    }
    network.facts.bastion_ami = kept_ami.or(ami);
    match zone {
        Some(Ok(id)) => network.facts.hosted_zone_id = Some(id),
        Some(Err(problem)) => {
            return Err(hinted(
                problem,
                "load_balancer.domain.zone names a public Route 53 hosted zone of this account",
            ));
        }
        None => {}
    }
    // What the early reads missed of what state recorded is read by id now (usually nothing).
    let mut live = late;
    live.extend(
        aws::refresh(&session.aws, &state, &early_kinds, early)
            .await
            .context("reading live resources from AWS")?,
    );
    if !network.problems.is_empty() {
        return Err(hinted(
            network.problems.join("\n"),
            "network.existing names a VPC and its subnets as they are in AWS; fix the ids in the file",
        ));
    }
    let mut images = images;
    let mut warnings_kept = Vec::new();
    let desired = match operation {
        Operation::Apply => {
            let (kept, notes) = kept_images(session, env, &allow.images, &live).await?;
            images.extend(kept);
            warnings_kept = notes;
            let pinned: BTreeMap<String, desired::Pinned> = images
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_ref().ok()?.clone())))
                .collect();
            let mut facts = network.facts.clone();
            facts.validation = desired::Facts::validation_of(
                live.iter()
                    .filter(|l| l.kind == Kind::Certificate)
                    .map(|l| &l.attrs),
            );
            desired::expand_with(env, &pinned, &facts)
        }
        Operation::Destroy => Desired::default(),
    };
    let options = plan::Options {
        targets: targets.to_vec(),
        allow_destroy_protected,
        replace: allow.replace.clone(),
    };
    let (mut changes, mut warnings) = plan::diff(&desired, &state, &live, &options)?;
    warnings.extend(warnings_kept);
    warnings.extend(ami_note);
    // Where the environment's certificate stands, whatever the plan does with it.
    if operation == Operation::Apply {
        for c in live.iter().filter(|l| l.kind == Kind::Certificate) {
            let status = c.attrs["status"].as_str().unwrap_or("UNKNOWN");
            let expiry = c.attrs["not_after"]
                .as_str()
                .map(|t| format!(", expires {t}"))
                .unwrap_or_default();
            warnings.push(plan::Warning::Status {
                message: format!(
                    "certificate {}: {status}{expiry}",
                    c.attrs["domain_name"].as_str().unwrap_or_default()
                ),
            });
        }
    }
    warnings.extend(
        network
            .warnings
            .into_iter()
            .map(|message| plan::Warning::Network { message }),
    );
    // Destroying, nothing was "removed from the file": everything goes because it was asked to.
    if operation == Operation::Destroy {
        for c in &mut changes {
            c.notes.retain(|n| *n != plan::Note::RemovedFromFile);
        }
    }
    // A create whose unique name AWS already holds would fail halfway through the apply (or,
    // for a cluster, quietly take someone's over): stop here and say how to adopt it instead.
    if operation == Operation::Apply {
        let creates: Vec<(Kind, String, serde_json::Value)> = changes
            .iter()
            .filter(|c| c.action == plan::Action::Create)
            .filter_map(|c| {
                let after = c.after.as_ref()?;
                let resolved = crate::model::resolve_with(
                    after,
                    &|id| state.physical_id(id).map(str::to_string),
                    &|id, pointer| {
                        let r = state.resources.get(id)?;
                        crate::model::output_of(&r.attributes, pointer)
                    },
                );
                Some((c.kind, c.id.clone(), resolved))
            })
            .collect();
        let taken = aws::taken(&session.aws, &creates)
            .await
            .context("checking that the names this plan creates are free")?;
        if !taken.is_empty() {
            return Err(hinted(
                render::taken(&env.name, &taken),
                "`infra import` adopts an existing resource (apply then brings it to the file); or rename or remove the one that is in the way",
            ));
        }
    }
    // The image gate: every image of this environment's registry that this plan newly pins is
    // judged by its scan; findings at or above the threshold stop the plan.
    let mut pinned: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == Kind::TaskDefinition)
        .filter_map(|c| {
            let image = c.after.as_ref()?["container"]["image"].as_str()?;
            let before = c
                .before
                .as_ref()
                .and_then(|b| b["container"]["image"].as_str());
            (image.contains(".dkr.ecr.") && image.contains("@sha256:") && before != Some(image))
                .then(|| image.to_string())
        })
        .collect();
    pinned.sort();
    pinned.dedup();
    let scans = futures::future::try_join_all(
        pinned
            .iter()
            .map(|image| aws::images::scan(&session.aws, image, SCAN_WAIT)),
    )
    .await
    .context("reading the scan findings of the images this plan pins")?;
    let mut blocked = Vec::new();
    let mut unscanned = Vec::new();
    for (image, scan) in pinned.iter().zip(&scans) {
        match aws::images::blocks(image, scan, &allow.block_severity) {
            Some(why) if allow.vulnerable => warnings.push(plan::Warning::Image {
                message: format!("{why}\n  (let through by --allow-vulnerable)"),
            }),
            Some(why) => blocked.push(why),
            None if *scan == aws::images::Scan::NotScanned => {
                // Which service pins it: the line the finding points at.
                let service = changes
                    .iter()
                    .find(|c| {
                        c.kind == Kind::TaskDefinition
                            && c.after
                                .as_ref()
                                .and_then(|a| a["container"]["image"].as_str())
                                == Some(image.as_str())
                    })
                    .and_then(|c| c.id.strip_prefix("task-definition."))
                    .unwrap_or_default()
                    .to_string();
                unscanned.push(crate::lint::finding_at(
                    env,
                    "image-not-scanned",
                    &["services", &service, "image"],
                    format!("image {image} of service `{service}` has not been scanned"),
                ));
            }
            None => {
                if let Some(message) = aws::images::note(image, scan) {
                    warnings.push(plan::Warning::Image { message });
                }
            }
        }
    }
    if !blocked.is_empty() {
        return Err(hinted(
            blocked.join("\n"),
            "fix the image and push it again, or pass --allow-vulnerable to pin it anyway",
        ));
    }
    // The state storage, read live before a plan that would write into it.
    let bucket = match (operation, backend_exists && !changes.is_empty()) {
        (Operation::Apply, true) => {
            let weak = session.backend.weaknesses().await.with_context(|| {
                format!("reading the settings of {}", session.backend.describe())
            })?;
            (!weak.is_empty())
                .then(|| {
                    crate::lint::finding_at(
                        env,
                        "state-bucket-unprotected",
                        &["state", "s3"],
                        format!(
                            "the state bucket of {}: {}",
                            session.backend.describe(),
                            weak.join("; ")
                        ),
                    )
                })
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    // An unresolved image only matters if its task definition is part of this plan.
    for (service, result) in &images {
        if let Err(why) = result {
            let id = crate::naming::id::task_definition(service);
            if changes.iter().any(|c| c.id == id && c.after.is_some()) {
                bail!("{why}");
            }
        }
    }
    Ok((
        Plan {
            format: PLAN_FORMAT,
            environment: env.name.clone(),
            region: env.region.clone(),
            state: env.state.clone(),
            operation,
            base,
            create_backend: !backend_exists,
            changes,
            warnings,
            names: names(env),
            lint: match operation {
                Operation::Apply => {
                    let mut findings = crate::lint::lint_graph(env, &desired);
                    findings.extend(unscanned);
                    findings.extend(bucket);
                    findings
                }
                Operation::Destroy => Vec::new(),
            },
            cost: crate::cost::of_plan(env, &state, &desired),
        },
        state,
    ))
}

/// A plan that only records in state what AWS holds under this environment's tags and the state
/// does not: every change found by tag becomes an adoption of the resource as it is.
pub async fn recovery_plan(session: &Session, env: &Environment) -> Result<Plan> {
    let (mut plan, _) = make_plan(session, env, Operation::Apply, &[], &Allow::default()).await?;
    plan.changes
        .retain(|c| c.notes.contains(&plan::Note::FoundByTag));
    for c in &mut plan.changes {
        c.action = plan::Action::Adopt;
        c.diffs.clear();
    }
    plan.warnings.clear();
    Ok(plan)
}

/// Asks "yes" on the terminal.
pub fn confirm(question: &str) -> Result<bool> {
    render::print(&render::confirm_prompt(question));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim() == "yes")
}

/// Refuses to go on without a terminal to confirm on, unless approval was given up front.
pub fn require_approval_possible(auto_approve: bool, verb: &str) -> Result<()> {
    if !auto_approve && !std::io::stdin().is_terminal() {
        return Err(hinted(
            format!("`infra {verb}` needs confirmation, and there is no terminal to ask on"),
            format!(
                "review with `infra plan`, then run `infra {verb} --auto-approve`, or save a plan with `--out FILE` and run `infra apply --plan FILE`"
            ),
        ));
    }
    Ok(())
}

pub fn save_plan(plan: &Plan, path: &Path) -> Result<()> {
    let text = serde_json::to_vec_pretty(plan).expect("plan serialises");
    std::fs::write(path, text).with_context(|| format!("writing plan {}", path.display()))
}

pub fn load_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read(path).with_context(|| format!("reading plan {}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an infra plan file", path.display()))?;
    if plan.format != PLAN_FORMAT {
        bail!(
            "{} is plan format {}, this infra reads format {PLAN_FORMAT}",
            path.display(),
            plan.format
        );
    }
    Ok(plan)
}

fn lock_error(e: StateError, backend: &dyn Backend, env: &str) -> anyhow::Error {
    match e {
        StateError::Locked(info) => hinted(
            format!(
                "state {} is locked: {}",
                backend.describe(),
                info.describe()
            ),
            format!(
                "wait for it to finish; if that process is gone, run `infra state unlock {env} {}`",
                info.id
            ),
        ),
        other => anyhow::Error::new(other).context(format!("locking state {}", backend.describe())),
    }
}

/// Takes the state lock, saying so when an expired one is taken over.
pub async fn lock(session: &Session, env: &str, operation: &str) -> Result<LockGuard> {
    let guard = LockGuard::acquire(
        session.backend.clone(),
        operation,
        session.aws.fence.clone(),
    )
    .await
    .map_err(|e| lock_error(e, session.backend.as_ref(), env))?;
    if let Some(dead) = &guard.took_over {
        render::eprint(&render::took_over_lock(&dead.describe()));
    }
    Ok(guard)
}

/// Runs a plan that the user has approved. Creates the state storage if the plan says so, takes
/// the lock unless `held` already holds it, refuses if the state moved since the plan, and
/// releases the lock at the end.
pub async fn run_plan(
    session: &Session,
    plan: &Plan,
    held: Option<LockGuard>,
    globals: &Globals,
    verb: &str,
    wait: bool,
) -> Result<Report> {
    let guard = match held {
        Some(g) => g,
        None => {
            if plan.create_backend {
                render::print(&render::creating_backend(&session.backend.describe()));
            }
            session.backend.ensure().await.with_context(|| {
                format!("creating state storage {}", session.backend.describe())
            })?;
            lock(session, &plan.environment, verb).await?
        }
    };
    let result = run_locked(session, plan, &guard, globals, wait).await;
    let released = guard.release().await;
    let report = result?;
    released.with_context(|| format!("releasing the lock on {}", session.backend.describe()))?;
    Ok(report)
}

async fn run_locked(
    session: &Session,
    plan: &Plan,
    guard: &LockGuard,
    globals: &Globals,
    wait: bool,
) -> Result<Report> {
    // The current document and the one before it, together.
    let (stored, previous) = futures::join!(
        read_state(session, &plan.environment),
        session.backend.previous()
    );
    let stored = stored?;
    let base = stored.as_ref().map(|(d, _)| Base {
        lineage: d.lineage.clone(),
        serial: d.serial,
    });
    if base != plan.base {
        let show = |b: &Option<Base>| match b {
            Some(b) => format!("serial {} of lineage {}", b.serial, b.lineage),
            None => "no state".to_string(),
        };
        return Err(hinted(
            format!(
                "the state moved since this plan was made (plan: {}; now: {})",
                show(&plan.base),
                show(&base)
            ),
            "make a new plan and review it",
        ));
    }
    if let Some((doc, _)) = &stored {
        check_not_backwards(session, doc, previous.ok().flatten())?;
    }
    let (doc, version) = match stored {
        Some((d, v)) => (d, Some(v)),
        None => (StateDoc::new(&plan.environment), None),
    };
    let mut writer = StateWriter {
        backend: session.backend.as_ref(),
        doc,
        version,
        lock: Some(guard),
    };
    let progress = Arc::new(render::Reporter::new(std::io::stderr().is_terminal()));
    let options = exec::Options {
        parallelism: globals.parallelism,
        progress: progress.clone(),
        adapters: exec::registry(),
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut report = exec::execute(plan, &session.aws, &mut writer, &options, interrupt).await;
    if wait && report.state_error.is_none() {
        follow_rollouts(session, plan, &writer.doc, &mut report, progress.as_ref()).await;
    }
    Ok(report)
}

/// Follows the ECS deployment of every service this run created or changed; a failed one is a
/// failed step of the run.
async fn follow_rollouts(
    session: &Session,
    plan: &Plan,
    state: &StateDoc,
    report: &mut Report,
    progress: &render::Reporter,
) {
    use crate::exec::Progress;
    use crate::plan::graph::Op;
    let timeout = std::env::var("INFRA_ROLLOUT_TIMEOUT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(30 * 60));
    // (id, ARN, whether ECS shifts traffic: blue/green, canary and linear are followed through
    // their service deployment's lifecycle stages).
    let services: Vec<(String, String, bool)> = plan
        .changes
        .iter()
        .filter(|c| c.kind == crate::model::Kind::Service)
        .filter(|c| {
            report
                .done
                .iter()
                .any(|(id, op)| id == &c.id && matches!(op, Op::Create | Op::Update))
        })
        .filter_map(|c| {
            let recorded = state.resources.get(&c.id)?;
            let strategy = recorded.attributes["deployment"]["strategy"].as_str();
            Some((
                c.id.clone(),
                recorded.physical_id.clone(),
                strategy.is_some_and(|s| s != "rolling"),
            ))
        })
        .collect();
    if services.is_empty() {
        return;
    }
    progress.note(&format!(
        "following {} ECS rollout(s); `--no-wait` skips this",
        services.len()
    ));
    let started = std::time::Instant::now();
    let results = futures::future::join_all(services.iter().map(|(id, arn, shifts)| async move {
        progress.track(id, "rollout: starting");
        let say = move |line: String| {
            let status = line.split_once(": ").map_or(line.as_str(), |(_, s)| s);
            progress.track(id, &format!("rollout: {status}"));
        };
        let poll = std::time::Duration::from_secs(5);
        let r = match shifts {
            true => {
                aws::rollout::follow_deployment(&session.aws.ecs, arn, timeout, poll, &say).await
            }
            false => aws::rollout::follow(&session.aws.ecs, arn, timeout, poll, &say).await,
        };
        progress.tracked(
            id,
            match &r {
                Ok(()) => "rollout complete",
                Err(_) => "rollout failed",
            },
        );
        r
    }))
    .await;
    for ((id, _, _), result) in services.into_iter().zip(results) {
        if let Err(e) = result {
            report.failed.push((id, Op::Update, e));
        }
    }
    report.rollouts_elapsed = Some(started.elapsed());
}

/// `infra rollback`: under the lock, stops the service's deployment in progress with rollback,
/// or moves the service back to the revision kept for it; records what it did in state (the
/// service's revision, and `rolled_back` for the plan to explain) and follows the deployment
/// unless `wait` is false.
pub async fn rollback(
    session: &Session,
    env: &Environment,
    service: &str,
    auto_approve: bool,
    wait: bool,
) -> Result<bool> {
    use crate::aws::rollback::{self, Intent};
    require_approval_possible(auto_approve, "rollback")?;
    let id = crate::naming::id::service(service);
    let guard = lock(session, &env.name, "rollback").await?;
    let result = async {
        let Some((mut doc, version)) = read_state(session, &env.name).await? else {
            bail!(
                "`{}` has no state yet: nothing was applied, so nothing can be rolled back",
                env.name
            );
        };
        let Some(recorded) = doc.resources.get(&id).cloned() else {
            return Err(hinted(
                format!("service `{service}` is not in the state of `{}`", env.name),
                "`infra output ENV` and the file list the services infra manages",
            ));
        };
        let arn = recorded.physical_id.clone();
        let intent = rollback::decide(&session.aws, &arn)
            .await
            .with_context(|| format!("deciding how to roll back service `{service}`"))?;
        render::print(&render::rollback_text(service, &intent));
        if !auto_approve && !confirm(&format!("Roll back service `{service}` of {}?", env.name))? {
            render::eprint(&render::cancelled("rollback"));
            return Ok(false);
        }
        rollback::carry_out(&session.aws, &arn, &intent).await?;
        let say = |line: String| render::eprint(&format!("  {line}"));
        let timeout = std::time::Duration::from_secs(30 * 60);
        let poll = std::time::Duration::from_secs(5);
        let before = recorded.attributes["task_definition"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let now_runs = match &intent {
            Intent::Revert { to, .. } => Some(to.clone()),
            Intent::Stop { deployment } if wait => Some(
                rollback::await_stop(&session.aws, &arn, deployment, timeout, poll, &say).await?,
            ),
            Intent::Stop { .. } => None,
        };
        // A service whose image the pipeline owns agrees with its file whatever it runs: the
        // revision it returned to becomes the environment's again. Otherwise state records the
        // rollback, for the plan to explain the difference with the file.
        let owned = matches!(
            env.services.get(service).map(|s| &s.image),
            Some(crate::config::Image::Repository { tag: None, .. })
        );
        if let Some(to) = now_runs.filter(|to| *to != before) {
            let td_id = crate::naming::id::task_definition(service);
            let swapped = match (&intent, owned) {
                (Intent::Revert { from, to }, true) => {
                    rollback::swap_kept(&session.aws, from, to).await?;
                    crate::aws::kinds::adapter(Kind::TaskDefinition)
                        .read_ids(&session.aws, std::slice::from_ref(to))
                        .await?
                        .into_iter()
                        .next()
                }
                _ => None,
            };
            if let Some(r) = doc.resources.get_mut(&id) {
                r.attributes["task_definition"] = serde_json::Value::String(to.clone());
            }
            match swapped {
                Some(mut td) => {
                    if let Some(tags) = td.attrs["tags"].as_object_mut() {
                        tags.remove(crate::aws::kinds::task_definition::TAG_PREVIOUS);
                    }
                    if let Some(r) = doc.resources.get_mut(&td_id) {
                        r.physical_id = td.physical_id;
                        r.attributes = td.attrs;
                    }
                }
                None => {
                    doc.rolled_back.insert(
                        id.clone(),
                        crate::state::RolledBack {
                            from: before,
                            to,
                            at: jiff::Timestamp::now()
                                .round(jiff::Unit::Second)?
                                .to_string(),
                        },
                    );
                }
            }
            doc.serial += 1;
            doc.written_by = Some(crate::state::writer());
            guard.check().await?;
            session.backend.write(&doc, Some(&version)).await?;
        }
        if wait && let Intent::Revert { .. } = intent {
            let shifts = recorded.attributes["deployment"]["strategy"]
                .as_str()
                .is_some_and(|s| s != "rolling");
            match shifts {
                true => {
                    aws::rollout::follow_deployment(&session.aws.ecs, &arn, timeout, poll, &say)
                        .await?
                }
                false => aws::rollout::follow(&session.aws.ecs, &arn, timeout, poll, &say).await?,
            }
        }
        Ok::<_, anyhow::Error>(true)
    }
    .await;
    guard.release().await?;
    result
}

/// What `infra deploy` will do: the plan of the deployed services' task definitions and
/// services, and the other changes the file holds (left for `apply`), by logical id.
pub struct Deploy {
    pub plan: Plan,
    /// The services deployed.
    pub services: Vec<String>,
    /// Logical ids whose file and state differ outside the deployed services.
    pub elsewhere: Vec<String>,
}

/// Plans `infra deploy`: the services whose file says `image: KEY` for a key of `images` (or
/// those of `only`), each pinned to the digest its tag has now. Reads only those services, the
/// task definitions they run and the tags: everything else is taken from state, as recorded.
pub async fn plan_deploy(
    session: &Session,
    env: &Environment,
    images: &BTreeMap<String, String>,
    only: &[String],
) -> Result<Deploy> {
    use crate::config::Image;
    check_image_keys(env, images)?;
    for name in only {
        match env.services.get(name).map(|s| &s.image) {
            None => bail!("--service {name}: {} has no such service", env.name),
            Some(Image::Repository { key, tag: None }) if images.contains_key(key) => {}
            Some(_) => {
                return Err(hinted(
                    format!("--service {name}: its image is not one `--image` sets"),
                    "deploy updates services whose file says `image: KEY` for a KEY given with --image",
                ));
            }
        }
    }
    let deployed: Vec<String> = env
        .services
        .iter()
        .filter(|(name, s)| {
            matches!(&s.image, Image::Repository { key, tag: None } if images.contains_key(key))
                && (only.is_empty() || only.contains(name))
        })
        .map(|(name, _)| name.clone())
        .collect();
    let Some((state, version)) = read_state(session, &env.name).await? else {
        bail!(
            "`{}` has no state yet: `infra apply` it once, then deploy",
            env.name
        );
    };
    let _ = version;
    let mut scoped = env.clone();
    scoped.services.retain(|name, _| deployed.contains(name));
    let ids: Vec<(String, String)> = deployed
        .iter()
        .map(|s| {
            (
                crate::naming::id::task_definition(s),
                crate::naming::id::service(s),
            )
        })
        .collect();
    let recorded_of = |id: &str| state.resources.get(id).map(|r| r.physical_id.clone());
    let service_arns: Vec<String> = ids
        .iter()
        .map(|(_, svc)| {
            recorded_of(svc).ok_or_else(|| {
                hinted(
                    format!("`{svc}` is not applied yet"),
                    format!(
                        "`infra apply {}` creates it; deploy updates services that exist",
                        env.name
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    // The tags, and the services as they run: at once.
    let (resolved, services) = futures::try_join!(
        async {
            aws::images::resolve(&session.aws, &scoped, images)
                .await
                .context("resolving image tags in ECR")
        },
        async {
            crate::aws::kinds::adapter(Kind::Service)
                .read_ids(&session.aws, &service_arns)
                .await
                .context("reading the deployed services")
        }
    )?;
    for result in resolved.values() {
        if let Err(why) = result {
            bail!("{why}");
        }
    }
    // The task definitions they run: state's record when it is that revision (revisions never
    // change), else read.
    let running: Vec<String> = services
        .iter()
        .filter_map(|s| s.attrs["task_definition"].as_str().map(str::to_string))
        .collect();
    let unknown: Vec<String> = running
        .iter()
        .filter(|arn| !state.resources.values().any(|r| &r.physical_id == *arn))
        .cloned()
        .collect();
    let mut live: Vec<crate::model::LiveResource> =
        crate::aws::kinds::adapter(Kind::TaskDefinition)
            .read_ids(&session.aws, &unknown)
            .await
            .context("reading the deployed task definitions")?;
    let ours: BTreeSet<String> = ids
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    for s in services {
        live.push(crate::model::LiveResource {
            id: state
                .resources
                .iter()
                .find(|(_, r)| r.physical_id == s.physical_id)
                .map(|(id, _)| id.clone())
                .or(s.id),
            ..s
        });
    }
    // Everything else as state recorded it (the running task definitions too, when recorded).
    for (id, r) in &state.resources {
        let is_running_td = r.kind == Kind::TaskDefinition && running.contains(&r.physical_id);
        if ours.contains(id) && !is_running_td {
            continue;
        }
        if live.iter().any(|l| l.physical_id == r.physical_id) {
            continue;
        }
        live.push(crate::model::LiveResource {
            kind: r.kind,
            physical_id: r.physical_id.clone(),
            id: Some(id.clone()),
            attrs: r.attributes.clone(),
        });
    }
    // A deployed service's live task definition is the one it runs, whatever state says.
    for ((td_id, _), arn) in ids.iter().zip(&running) {
        for l in live.iter_mut() {
            if l.kind == Kind::TaskDefinition && l.physical_id == *arn {
                l.id = Some(td_id.clone());
            }
        }
    }
    // Every other service keeps the image state recorded for it.
    let mut pinned: BTreeMap<String, desired::Pinned> = BTreeMap::new();
    for name in env.services.keys() {
        if let Some(Ok(p)) = resolved.get(name) {
            pinned.insert(name.clone(), p.clone());
        } else if let Some(r) = state
            .resources
            .get(&crate::naming::id::task_definition(name))
        {
            pinned.insert(
                name.clone(),
                desired::Pinned {
                    image: r.attributes["container"]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    shown: r.attributes["tags"]["infra:image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                },
            );
        }
    }
    // A network someone else owns is not read either: its CIDR is what the load balancer's
    // group was last given.
    let facts = desired::Facts {
        vpc_cidr: state
            .resources
            .get(crate::naming::id::ALB_SECURITY_GROUP)
            .and_then(|r| r.attributes["egress"][0]["cidr_ipv4"].as_str())
            .map(str::to_string),
        validation: desired::Facts::validation_of(
            state
                .resources
                .values()
                .filter(|r| r.kind == Kind::Certificate)
                .map(|r| &r.attributes),
        ),
        bastion_ami: state
            .resources
            .get(crate::naming::id::BASTION)
            .and_then(|r| r.attributes["image_id"].as_str())
            .map(str::to_string),
        // Nor is the domain's zone: its records name it.
        hosted_zone_id: state
            .resources
            .values()
            .find(|r| r.kind == Kind::DnsRecord)
            .and_then(|r| r.attributes["zone_id"].as_str())
            .map(str::to_string),
    };
    let desired = desired::expand_with(env, &pinned, &facts);
    let options = plan::Options {
        targets: Vec::new(),
        allow_destroy_protected: false,
        replace: Vec::new(),
    };
    let (changes, warnings) = plan::diff(&desired, &state, &live, &options)?;
    let (changes, others): (Vec<_>, Vec<_>) =
        changes.into_iter().partition(|c| ours.contains(&c.id));
    let mut elsewhere: Vec<String> = others.into_iter().map(|c| c.id).collect();
    elsewhere.sort();
    Ok(Deploy {
        plan: Plan {
            format: PLAN_FORMAT,
            environment: env.name.clone(),
            region: env.region.clone(),
            state: env.state.clone(),
            operation: Operation::Apply,
            base: Some(Base {
                lineage: state.lineage.clone(),
                serial: state.serial,
            }),
            create_backend: false,
            changes,
            warnings,
            names: names(env),
            lint: Vec::new(),
            cost: None,
        },
        services: deployed,
        elsewhere,
    })
}

/// `infra status`: the services state records, read live, and the verdict.
pub async fn status(session: &Session, env: &Environment) -> Result<crate::aws::status::Status> {
    let Some((state, _)) = read_state(session, &env.name).await? else {
        bail!("`{}` has no state yet: nothing was applied", env.name);
    };
    let outputs = crate::outputs::outputs(&state, None, &env.region);
    let deployed = outputs
        .get("services")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut wanted = Vec::new();
    let mut cluster = None;
    for r in state.resources.values().filter(|r| r.kind == Kind::Service) {
        let name = r.attributes["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut target_groups: Vec<String> = r.attributes["load_balancers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["target_group_arn"].as_str().map(str::to_string))
            .collect();
        target_groups.extend(
            r.attributes["advanced"]["alternate_target_group_arn"]
                .as_str()
                .map(str::to_string),
        );
        let shown = deployed.iter().find(|s| s["name"] == name.as_str());
        cluster = cluster
            .or_else(|| crate::aws::rollout::split(&r.physical_id).map(|(c, _)| c.to_string()));
        wanted.push(crate::aws::status::Wanted {
            name,
            arn: r.physical_id.clone(),
            target_groups,
            image: shown.and_then(|s| s["digest"].as_str()).map(str::to_string),
            tag: shown.and_then(|s| s["tag"].as_str()).map(str::to_string),
        });
    }
    let alarm_names: Vec<String> = state
        .resources
        .values()
        .filter(|r| r.kind == Kind::Alarm)
        .map(|r| r.physical_id.clone())
        .collect();
    let (services, alarms) = futures::try_join!(
        async {
            match &cluster {
                Some(cluster) => crate::aws::status::read(&session.aws, cluster, &wanted)
                    .await
                    .context("reading the services"),
                None => Ok(Vec::new()),
            }
        },
        async {
            crate::aws::status::alarms(&session.aws, &alarm_names)
                .await
                .context("reading the alarms")
        },
    )?;
    let problems = crate::aws::status::judge(&services, &alarms);
    Ok(crate::aws::status::Status {
        services,
        alarms,
        problems,
    })
}
