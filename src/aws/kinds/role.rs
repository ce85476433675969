//! The environment's IAM roles. The task execution role: trusted by ECS tasks, with one inline
//! policy granting exactly what Fargate needs for this environment. The ECS infrastructure role
//! (only when a service deploys blue/green, canary or linear): trusted by ECS, with AWS's managed
//! policy for shifting load balancer traffic. IAM is global, so the names carry the region; roles
//! are read by name (GetRole, GetRolePolicy, and ListAttachedRolePolicies for a role that
//! carries managed policies), never by listing the account's roles.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Iam, IamScope, Live, NoOutputs, ResourceKind, Scope, Taken, Want, absent_ok};
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
    /// The inline policy document, when the role has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// AWS managed policies attached to the role, by ARN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<String>,
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

/// Whether a role of this environment carries managed policies (the execution role does not: its
/// read costs no listing).
fn has_managed(aws: &Aws, name: &str) -> bool {
    name != naming::execution_role(&aws.environment, &aws.region)
}

/// The managed policies attached to a role.
async fn attached(aws: &Aws, name: &str) -> Result<Vec<String>, AwsError> {
    let mut arns: Vec<String> = aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("iam", "ListAttachedRolePolicies"))?
        .into_iter()
        .filter_map(|p| p.policy_arn)
        .collect();
    arns.sort();
    Ok(arns)
}

async fn read(aws: &Aws, name: &str) -> Result<Option<Live<Attrs>>, AwsError> {
    // All by name, at once: a role that does not exist has no policies either.
    let (role, policy, managed) = futures::try_join!(
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
                    .map(|out| Some(document(out.policy_document())))
                    .map_err(sdk_error("iam", "GetRolePolicy")),
            )
        },
        async {
            match has_managed(aws, name) {
                true => absent_ok(attached(aws, name).await),
                false => Ok(Vec::new()),
            }
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
            managed_policies: managed,
        },
        outputs: NoOutputs {},
        tags: tags::collect(role.tags().iter().map(|t| (t.key(), t.value()))),
    }))
}

async fn attach(aws: &Aws, name: &str, arn: &str) -> Result<(), AwsError> {
    aws.iam
        .attach_role_policy()
        .role_name(name)
        .policy_arn(arn)
        .send()
        .await
        .map(|_| ())
        .map_err(sdk_error("iam", "AttachRolePolicy"))
}

async fn detach(aws: &Aws, name: &str, arn: &str) -> Result<(), AwsError> {
    absent_ok(
        aws.iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("iam", "DetachRolePolicy")),
    )
}

async fn delete_policy(aws: &Aws, name: &str) -> Result<(), AwsError> {
    absent_ok(
        aws.iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(POLICY)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("iam", "DeleteRolePolicy")),
    )
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
    const SCHEMA: Schema = Schema::replace_on(&["name"]).sets(&["managed_policies"]);
    const TAGS: TagApi = TagApi::Iam;
    const IAM: Iam = Iam {
        read: &[
            "iam:GetRole",
            "iam:GetRolePolicy",
            "iam:ListAttachedRolePolicies",
        ],
        create: &[
            "iam:CreateRole",
            "iam:PutRolePolicy",
            "iam:AttachRolePolicy",
        ],
        change: &[
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
        ],
        delete: &[
            "iam:DeleteRolePolicy",
            "iam:DetachRolePolicy",
            "iam:DeleteRole",
        ],
        scope: IamScope::Arns(&["arn:{partition}:iam::*:role/infra-{env}-{region}-*"]),
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let names: Vec<String> = match scope {
            Scope::Environment(_) => {
                let mut names = vec![naming::execution_role(&aws.environment, &aws.region)];
                if aws.names.infrastructure_role {
                    names.push(naming::infrastructure_role(&aws.environment, &aws.region));
                }
                if aws.names.bastion {
                    names.push(naming::bastion(&aws.environment, &aws.region));
                }
                names
            }
            Scope::Ids(ids) => ids.iter().map(|id| name_of(id).to_string()).collect(),
        };
        let found = futures::future::try_join_all(names.iter().map(|n| read(aws, n))).await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .iam
            .create_role()
            .role_name(&a.name)
            .description(if a.name.ends_with("-bastion") {
                "infra: lets this environment's bastion use Session Manager"
            } else if a.managed_policies.is_empty() {
                "infra: lets ECS start this environment's tasks"
            } else {
                "infra: lets ECS shift this environment's load balancer traffic"
            })
            .assume_role_policy_document(a.assume_role_policy.to_string())
            .set_tags(Some(tags::iam(&want.tags)?))
            .send()
            .await
            .map_err(sdk_error("iam", "CreateRole"))?;
        if let Some(policy) = &a.policy {
            put_policy(aws, &a.name, policy).await?;
        }
        for arn in &a.managed_policies {
            attach(aws, &a.name, arn).await?;
        }
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
            match &want.attrs.policy {
                Some(policy) => put_policy(aws, name, policy).await?,
                None => delete_policy(aws, name).await?,
            }
        }
        for arn in &want.attrs.managed_policies {
            if !have.attrs.managed_policies.contains(arn) {
                attach(aws, name, arn).await?;
            }
        }
        for arn in &have.attrs.managed_policies {
            if !want.attrs.managed_policies.contains(arn) {
                detach(aws, name, arn).await?;
            }
        }
        Ok(())
    }

    fn tag_target(have: &Live<Attrs>) -> String {
        name_of(&have.physical_id).to_string()
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let name = name_of(physical);
        // A role with policies cannot be deleted: they go first (every attached one, since AWS
        // refuses otherwise; a role infra created holds only what infra attached).
        delete_policy(aws, name).await?;
        for arn in absent_ok(attached(aws, name).await)? {
            detach(aws, name, arn.as_str()).await?;
        }
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
