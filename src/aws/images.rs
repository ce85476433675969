//! Image tags to digests: a service whose image names one of this environment's repositories is
//! pinned to the digest the tag points at when the plan is made, so the task definition runs
//! exactly the image that was planned, whatever happens to the tag later.

use std::collections::BTreeMap;

use aws_sdk_ecr::types::ImageIdentifier;

use super::{Aws, sdk_error};
use crate::config::{Environment, Image};
use crate::error::AwsError;

/// Per service: the pinned image reference, or why it could not be resolved.
pub type Resolved = BTreeMap<String, Result<String, String>>;

pub async fn resolve(aws: &Aws, env: &Environment) -> Result<Resolved, AwsError> {
    let mut out = BTreeMap::new();
    let mut uris: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (service, s) in &env.services {
        let Image::Repository { key, tag } = &s.image else {
            continue;
        };
        let repo = crate::naming::repository(&env.name, key);
        if !uris.contains_key(&repo) {
            let uri = match aws
                .ecr
                .describe_repositories()
                .repository_names(&repo)
                .send()
                .await
            {
                Ok(o) => o
                    .repositories()
                    .first()
                    .and_then(|r| r.repository_uri())
                    .map(str::to_string),
                Err(e) => {
                    let e = sdk_error("ecr", "DescribeRepositories")(e);
                    if e.code_is("RepositoryNotFoundException") {
                        None
                    } else {
                        return Err(e);
                    }
                }
            };
            uris.insert(repo.clone(), uri);
        }
        let Some(uri) = uris[&repo].clone() else {
            out.insert(
                service.clone(),
                Err(format!(
                    "service `{service}`: repository {repo} does not exist yet; create it with `infra apply {} --target repository` and push {key}:{tag}",
                    env.name
                )),
            );
            continue;
        };
        let found = aws
            .ecr
            .describe_images()
            .repository_name(&repo)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        let digest = match found {
            Ok(o) => o
                .image_details()
                .first()
                .and_then(|d| d.image_digest())
                .map(str::to_string),
            Err(e) => {
                let e = sdk_error("ecr", "DescribeImages")(e);
                if e.code_is("ImageNotFoundException") {
                    None
                } else {
                    return Err(e);
                }
            }
        };
        out.insert(
            service.clone(),
            match digest {
                Some(d) => Ok(format!("{uri}@{d}")),
                None => Err(format!("service `{service}`: no image tagged `{tag}` in repository {repo}; push it first")),
            },
        );
    }
    Ok(out)
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
