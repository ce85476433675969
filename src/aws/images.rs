//! Image tags to digests: a service whose image names one of this environment's repositories is
//! pinned to the digest the tag points at when the plan is made, so the task definition runs
//! exactly the image that was planned, whatever happens to the tag later.

use std::collections::BTreeMap;

use aws_sdk_ecr::types::ImageIdentifier;

use super::{Aws, sdk_error};
use crate::config::{Environment, Image};
use crate::desired::Pinned;
use crate::error::AwsError;

/// Per service: the pinned image, or why it could not be resolved. Services whose image is an
/// environment repository without a tag this run (no tag in the file, none given with
/// `--image`) are not in it: they keep what they run (`deployed`).
pub type Resolved = BTreeMap<String, Result<Pinned, String>>;

/// The repository key and the tag a service's image takes this run: the file's, or the one
/// `--image KEY=TAG` gives a key the file leaves without a tag.
/// The IAM actions resolving image tags to digests and reading scans calls (`infra policy`).
pub const IAM_READS: &[&str] = &[
    "ecr:DescribeImages",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeRepositories",
];

pub fn tag_for<'a>(
    image: &'a Image,
    overrides: &'a BTreeMap<String, String>,
) -> Option<(&'a str, &'a str)> {
    match image {
        Image::Repository {
            key,
            tag: Some(tag),
        } => Some((key, tag)),
        Image::Repository { key, tag: None } => {
            overrides.get(key).map(|t| (key.as_str(), t.as_str()))
        }
        Image::External(_) => None,
    }
}

/// The repository's URI, or None when it does not exist.
async fn repository_uri(aws: &Aws, repo: &str) -> Result<Option<String>, AwsError> {
    match aws
        .ecr
        .describe_repositories()
        .repository_names(repo)
        .send()
        .await
    {
        Ok(o) => Ok(o
            .repositories()
            .first()
            .and_then(|r| r.repository_uri())
            .map(str::to_string)),
        Err(e) => {
            let e = sdk_error("ecr", "DescribeRepositories")(e);
            if e.code_is("RepositoryNotFoundException") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// One image of a repository by tag or digest: its digest and tags, or None when absent.
async fn image(
    aws: &Aws,
    repo: &str,
    id: ImageIdentifier,
) -> Result<Option<(String, Vec<String>)>, AwsError> {
    match aws
        .ecr
        .describe_images()
        .repository_name(repo)
        .image_ids(id)
        .send()
        .await
    {
        Ok(o) => Ok(o
            .image_details()
            .first()
            .and_then(|d| Some((d.image_digest()?.to_string(), d.image_tags().to_vec())))),
        Err(e) => {
            let e = sdk_error("ecr", "DescribeImages")(e);
            if e.code_is("ImageNotFoundException") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Resolves every tag this run gives to a digest: each repository and each tag asked once, all
/// at once.
pub async fn resolve(
    aws: &Aws,
    env: &Environment,
    overrides: &BTreeMap<String, String>,
) -> Result<Resolved, AwsError> {
    let wanted: Vec<(&String, &str, &str)> = env
        .services
        .iter()
        .filter_map(|(service, s)| {
            let (key, tag) = tag_for(&s.image, overrides)?;
            Some((service, key, tag))
        })
        .collect();
    let mut repos: Vec<&str> = wanted.iter().map(|(_, k, _)| *k).collect();
    repos.sort_unstable();
    repos.dedup();
    let uris: BTreeMap<&str, Option<String>> =
        futures::future::try_join_all(repos.iter().map(|key| async move {
            let repo = crate::naming::repository(&env.name, key);
            Ok::<_, AwsError>((*key, repository_uri(aws, &repo).await?))
        }))
        .await?
        .into_iter()
        .collect();
    let mut tags: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|(_, k, _)| uris[k].is_some())
        .map(|(_, k, t)| (*k, *t))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let digests: BTreeMap<(&str, &str), Option<String>> =
        futures::future::try_join_all(tags.iter().map(|(key, tag)| async move {
            let repo = crate::naming::repository(&env.name, key);
            let found = image(
                aws,
                &repo,
                ImageIdentifier::builder().image_tag(*tag).build(),
            )
            .await?;
            Ok::<_, AwsError>(((*key, *tag), found.map(|(d, _)| d)))
        }))
        .await?
        .into_iter()
        .collect();
    let mut out = BTreeMap::new();
    for (service, key, tag) in wanted {
        let repo = crate::naming::repository(&env.name, key);
        let result = match (&uris[key], digests.get(&(key, tag))) {
            (None, _) => Err(format!(
                "service `{service}`: repository {repo} does not exist yet; create it with `infra apply {} --target repository` and push {key}:{tag}",
                env.name
            )),
            (Some(uri), Some(Some(digest))) => Ok(Pinned {
                image: format!("{uri}@{digest}"),
                shown: format!("{key}:{tag}"),
            }),
            (Some(_), _) => Err(format!(
                "service `{service}`: no image tagged `{tag}` in repository {repo}; push it first"
            )),
        };
        out.insert(service.clone(), result);
    }
    Ok(out)
}

/// Whether a deployed image (`<uri>@sha256:…`) is still in its repository, and the tags that
/// point at it now.
pub async fn still_there(aws: &Aws, image_ref: &str) -> Result<Option<Vec<String>>, AwsError> {
    let Some((uri, digest)) = image_ref.split_once('@') else {
        return Ok(None);
    };
    let repo = uri.split_once('/').map_or(uri, |(_, r)| r);
    Ok(image(
        aws,
        repo,
        ImageIdentifier::builder().image_digest(digest).build(),
    )
    .await?
    .map(|(_, tags)| tags))
}

/// What a scan of one pinned image says.
#[derive(Debug, Clone, PartialEq)]
pub enum Scan {
    /// Finished: counts by severity (`CRITICAL`, `HIGH`, …) and the worst findings first.
    Complete {
        counts: BTreeMap<String, i32>,
        top: Vec<String>,
    },
    /// Still running after the wait.
    InProgress,
    /// No scan exists (scan on push off, or pushed before it was on).
    NotScanned,
    /// The scan failed or cannot scan this image.
    Failed(String),
}

/// Severities from the worst down, as ECR names them.
pub const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"];

fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len())
}

/// The scan of `image` (`<registry>/<repository>@sha256:…`), waiting up to `wait` for one that is
/// still running.
pub async fn scan(aws: &Aws, image: &str, wait: std::time::Duration) -> Result<Scan, AwsError> {
    let Some((repo_uri, digest)) = image.split_once('@') else {
        return Ok(Scan::NotScanned);
    };
    let repository = repo_uri.split_once('/').map_or(repo_uri, |(_, r)| r);
    let ask = || async {
        let out = aws
            .ecr
            .describe_image_scan_findings()
            .repository_name(repository)
            .image_id(ImageIdentifier::builder().image_digest(digest).build())
            .max_results(1000)
            .send()
            .await
            .map_err(sdk_error("ecr", "DescribeImageScanFindings"));
        let out = match out {
            Err(e) if e.code_is("ScanNotFoundException") => return Ok(Some(Scan::NotScanned)),
            other => other?,
        };
        let status = out
            .image_scan_status()
            .and_then(|s| s.status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        Ok(match status.as_str() {
            "IN_PROGRESS" | "PENDING" => None,
            "COMPLETE" | "ACTIVE" | "" => {
                let findings = out.image_scan_findings();
                let counts: BTreeMap<String, i32> = findings
                    .and_then(|f| f.finding_severity_counts())
                    .map(|c| {
                        c.iter()
                            .map(|(k, v)| (k.as_str().to_string(), *v))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut listed: Vec<(usize, String)> = findings
                    .map(|f| f.findings())
                    .unwrap_or_default()
                    .iter()
                    .map(|x| {
                        let severity = x.severity().map(|s| s.as_str()).unwrap_or("UNDEFINED");
                        let package = x
                            .attributes()
                            .iter()
                            .find(|a| a.key() == "package_name")
                            .and_then(|a| a.value())
                            .unwrap_or("?");
                        (
                            rank(severity),
                            format!("{} {severity} in {package}", x.name().unwrap_or("?")),
                        )
                    })
                    .collect();
                listed.sort();
                Some(Scan::Complete {
                    counts,
                    top: listed.into_iter().take(5).map(|(_, s)| s).collect(),
                })
            }
            other => Some(Scan::Failed(
                out.image_scan_status()
                    .and_then(|s| s.description())
                    .map(str::to_string)
                    .unwrap_or_else(|| other.to_string()),
            )),
        })
    };
    Ok(
        super::wait::within(&format!("the scan of {image} to finish"), wait, ask)
            .await?
            .unwrap_or(Scan::InProgress),
    )
}

/// The gate's verdict on one scan: `Some(why)` when findings at or above `block` (a severity
/// name) stop the plan.
pub fn blocks(image: &str, scan: &Scan, block: &str) -> Option<String> {
    let Scan::Complete { counts, top } = scan else {
        return None;
    };
    let limit = rank(block);
    let over: Vec<String> = SEVERITIES
        .iter()
        .filter(|s| rank(s) <= limit)
        .filter_map(|s| {
            counts
                .get(*s)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {s}"))
        })
        .collect();
    if over.is_empty() {
        return None;
    }
    let mut why = format!(
        "image {image} has {} finding(s) at or above {block}",
        over.join(", ")
    );
    for t in top {
        why.push_str(&format!("\n    {t}"));
    }
    Some(why)
}

/// What a plan says about a scan that does not block it.
pub fn note(image: &str, scan: &Scan) -> Option<String> {
    match scan {
        Scan::Complete { .. } => None,
        Scan::InProgress => Some(format!(
            "image {image}: its scan is still running; the plan did not wait for it to finish"
        )),
        Scan::NotScanned => Some(format!(
            "image {image} has not been scanned (turn on `scan_on_push`, or start a scan in ECR)"
        )),
        Scan::Failed(why) => Some(format!("image {image}: the scan did not complete: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_blocks_at_its_threshold_and_notes_what_it_cannot_judge() {
        let scan = Scan::Complete {
            counts: [("CRITICAL".to_string(), 2), ("HIGH".to_string(), 5)].into(),
            top: vec!["CVE-1 CRITICAL in openssl".into()],
        };
        let why = blocks("r@sha256:x", &scan, "CRITICAL").unwrap();
        assert_eq!(
            why,
            "image r@sha256:x has 2 CRITICAL finding(s) at or above CRITICAL\n    CVE-1 CRITICAL in openssl"
        );
        assert!(
            blocks("r", &scan, "HIGH")
                .unwrap()
                .contains("2 CRITICAL, 5 HIGH")
        );
        let high_only = Scan::Complete {
            counts: [("HIGH".to_string(), 1)].into(),
            top: vec![],
        };
        assert_eq!(blocks("r", &high_only, "CRITICAL"), None);
        assert_eq!(blocks("r", &Scan::NotScanned, "LOW"), None);
        assert!(
            note("r", &Scan::NotScanned)
                .unwrap()
                .contains("not been scanned")
        );
        assert_eq!(note("r", &scan), None);
    }
}
