//! The task execution role: trusted by ECS tasks, with one inline policy granting exactly what
//! Fargate needs for this environment. IAM is global, so the role's name carries the region; it
//! is read by name (GetRole, GetRolePolicy), never by listing the account's roles.

use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::{Aws, sdk_error, tag_changes, tag_pairs, tags_value};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Role;

/// The inline policy's name on the role.
const POLICY: &str = "infra-task-execution";

/// IAM returns policy documents URL-encoded.
fn document(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(&decoded).unwrap_or(Value::Null)
}

fn name_of(physical: &str) -> &str {
    physical.rsplit('/').next().unwrap_or(physical)
}

async fn read(aws: &Aws, name: &str) -> Result<Option<LiveResource>, AwsError> {
    let role = match aws.iam.get_role().role_name(name).send().await {
        Ok(out) => match out.role {
            Some(r) => r,
            None => return Ok(None),
        },
        Err(e) => {
            let e = sdk_error("iam", "GetRole")(e);
            return if e.code_is("NoSuchEntity") {
                Ok(None)
            } else {
                Err(e)
            };
        }
    };
    let policy = match aws
        .iam
        .get_role_policy()
        .role_name(name)
        .policy_name(POLICY)
        .send()
        .await
    {
        Ok(out) => document(out.policy_document()),
        Err(e) => {
            let e = sdk_error("iam", "GetRolePolicy")(e);
            if e.code_is("NoSuchEntity") {
                Value::Null
            } else {
                return Err(e);
            }
        }
    };
    let tags = tags_value(role.tags().iter().map(|t| (t.key(), t.value())));
    Ok(Some(LiveResource {
        kind: Kind::Role,
        physical_id: role.arn().to_string(),
        id: tags["infra:id"].as_str().map(str::to_string),
        attrs: json!({
            "name": role.role_name(),
            "assume_role_policy": role.assume_role_policy_document().map(document),
            "policy": policy,
            "tags": tags,
        }),
    }))
}

async fn put_policy(aws: &Aws, name: &str, attrs: &Value) -> Result<(), AwsError> {
    aws.iam
        .put_role_policy()
        .role_name(name)
        .policy_name(POLICY)
        .policy_document(attrs["policy"].to_string())
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("iam", "PutRolePolicy"))
}

fn iam_tags(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value set")
        })
        .collect()
}

#[async_trait::async_trait]
impl Adapter for Role {
    fn kind(&self) -> Kind {
        Kind::Role
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        let name = format!("infra-{}-{}-task-execution", aws.environment, aws.region);
        Ok(read(aws, &name).await?.into_iter().collect())
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(read(aws, name_of(id)).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let name = attrs["name"].as_str().unwrap_or_default();
        let out = aws
            .iam
            .create_role()
            .role_name(name)
            .description("infra: lets ECS start this environment's tasks")
            .assume_role_policy_document(attrs["assume_role_policy"].to_string())
            .set_tags(Some(iam_tags(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("iam", "CreateRole"))?;
        put_policy(aws, name, attrs).await?;
        let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
        read_one(self, aws, &arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let name = name_of(physical);
        let have = read_one(self, aws, physical).await?;
        if have.attrs["assume_role_policy"] != attrs["assume_role_policy"] {
            aws.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(attrs["assume_role_policy"].to_string())
                .send()
                .await
                .map_err(sdk_error("iam", "UpdateAssumeRolePolicy"))?;
        }
        if have.attrs["policy"] != attrs["policy"] {
            put_policy(aws, name, attrs).await?;
        }
        let (set, remove) = tag_changes(&have.attrs["tags"], &attrs["tags"]);
        if !set.is_empty() {
            aws.iam
                .tag_role()
                .role_name(name)
                .set_tags(Some(iam_tags(set)))
                .send()
                .await
                .map_err(sdk_error("iam", "TagRole"))?;
        }
        if !remove.is_empty() {
            aws.iam
                .untag_role()
                .role_name(name)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(sdk_error("iam", "UntagRole"))?;
        }
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let name = name_of(physical);
        // A role with policies cannot be deleted: the inline policy goes first.
        for result in [
            aws.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(POLICY)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "DeleteRolePolicy")),
            aws.iam
                .delete_role()
                .role_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "DeleteRole")),
        ] {
            match result {
                Err(e) if !e.code_is("NoSuchEntity") => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
