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
