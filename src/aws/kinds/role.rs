//! The task execution role: trusted by ECS tasks, with one inline policy granting exactly what
//! Fargate needs for this environment. IAM is global, so the role's name carries the region; it
//! is read by name (GetRole, GetRolePolicy), never by listing the account's roles.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Live, NoOutputs, ResourceKind, Scope, Taken, Want, absent_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;
use crate::naming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub name: String,
    /// The trust policy document.
    pub assume_role_policy: Value,
    /// The inline policy document.
    pub policy: Value,
}

pub struct Role;

impl super::Desire for Attrs {
    type Kind = Role;
}

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

async fn read(aws: &Aws, name: &str) -> Result<Option<Live<Attrs>>, AwsError> {
    // Both by name, at once: a role that does not exist has no policy either.
    let (role, policy) = futures::try_join!(
        async {
            absent_ok(
                aws.iam
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map(|out| out.role)
                    .map_err(sdk_error("iam", "GetRole")),
            )
        },
        async {
            absent_ok(
                aws.iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(POLICY)
                    .send()
                    .await
                    .map(|out| document(out.policy_document()))
                    .map_err(sdk_error("iam", "GetRolePolicy")),
            )
        }
    )?;
    let Some(role) = role else { return Ok(None) };
    Ok(Some(Live {
        physical_id: role.arn().to_string(),
        attrs: Attrs {
            name: role.role_name().to_string(),
            assume_role_policy: role
                .assume_role_policy_document()
                .map(document)
                .unwrap_or_default(),
            policy,
        },
        outputs: NoOutputs {},
        tags: tags::collect(role.tags().iter().map(|t| (t.key(), t.value()))),
    }))
}

async fn put_policy(aws: &Aws, name: &str, policy: &Value) -> Result<(), AwsError> {
    aws.iam
        .put_role_policy()
        .role_name(name)
        .policy_name(POLICY)
        .policy_document(policy.to_string())
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("iam", "PutRolePolicy"))
}

#[async_trait::async_trait]
impl ResourceKind for Role {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]);
    const TAGS: TagApi = TagApi::Iam;
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let names: Vec<String> = match scope {
            Scope::Environment(_) => vec![naming::execution_role(&aws.environment, &aws.region)],
            Scope::Ids(ids) => ids.iter().map(|id| name_of(id).to_string()).collect(),
        };
        let mut out = Vec::new();
        for name in names {
            out.extend(read(aws, &name).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .iam
            .create_role()
            .role_name(&a.name)
            .description("infra: lets ECS start this environment's tasks")
            .assume_role_policy_document(a.assume_role_policy.to_string())
            .set_tags(Some(tags::iam(&want.tags)?))
            .send()
            .await
            .map_err(sdk_error("iam", "CreateRole"))?;
        put_policy(aws, &a.name, &a.policy).await?;
        Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let name = name_of(&have.physical_id);
        if have.attrs.assume_role_policy != want.attrs.assume_role_policy {
            aws.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(want.attrs.assume_role_policy.to_string())
                .send()
                .await
                .map_err(sdk_error("iam", "UpdateAssumeRolePolicy"))?;
        }
        if have.attrs.policy != want.attrs.policy {
            put_policy(aws, name, &want.attrs.policy).await?;
        }
        Ok(())
    }

    fn tag_target(have: &Live<Attrs>) -> String {
        name_of(&have.physical_id).to_string()
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let name = name_of(physical);
        // A role with policies cannot be deleted: the inline policy goes first.
        absent_ok(
            aws.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(POLICY)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "DeleteRolePolicy")),
        )?;
        absent_ok(
            aws.iam
                .delete_role()
                .role_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "DeleteRole")),
        )
    }

    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let asks = wants.iter().map(|w| async move {
            let arn = absent_ok(
                aws.iam
                    .get_role()
                    .role_name(&w.attrs.name)
                    .send()
                    .await
                    .map(|out| out.role().map(|r| r.arn().to_string()))
                    .map_err(sdk_error("iam", "GetRole")),
            )?;
            Ok::<_, AwsError>(arn.map(|arn| Taken::new(&w.id, &w.attrs.name, &arn)))
        });
        Ok(futures::future::try_join_all(asks)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}
