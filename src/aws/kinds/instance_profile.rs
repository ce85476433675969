//! The bastion's instance profile: its role, for the instance to carry. Read by its name
//! (IAM is global: the name carries the region).

use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Want, absent_ok, gone_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    /// The role's ARN.
    pub role: R,
}

pub struct InstanceProfile;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = InstanceProfile;
}

fn name_of(physical: &str) -> &str {
    physical.rsplit('/').next().unwrap_or(physical)
}

async fn read_one(aws: &Aws, name: &str) -> Result<Option<Live<Attrs>>, AwsError> {
    let profile = absent_ok(
        aws.iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map(|out| out.instance_profile)
            .map_err(sdk_error("iam", "GetInstanceProfile")),
    )?;
    Ok(profile.map(|p| Live {
        physical_id: p.arn().to_string(),
        attrs: Attrs {
            name: p.instance_profile_name().to_string(),
            role: p
                .roles()
                .first()
                .map(|r| r.arn().to_string())
                .unwrap_or_default(),
        },
        outputs: NoOutputs {},
        tags: tags::collect(p.tags().iter().map(|t| (t.key(), t.value()))),
    }))
}

async fn set_role(aws: &Aws, name: &str, role: &str, add: bool) -> Result<(), AwsError> {
    let role = name_of(role);
    if add {
        aws.iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(role)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("iam", "AddRoleToInstanceProfile"))
    } else {
        gone_ok(
            aws.iam
                .remove_role_from_instance_profile()
                .instance_profile_name(name)
                .role_name(role)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "RemoveRoleFromInstanceProfile")),
        )
    }
}

#[async_trait::async_trait]
impl ResourceKind for InstanceProfile {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]);
    const TAGS: TagApi = TagApi::IamInstanceProfile;
    const IAM: Iam = Iam {
        read: &["iam:GetInstanceProfile"],
        create: &["iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile"],
        change: &[
            "iam:AddRoleToInstanceProfile",
            "iam:RemoveRoleFromInstanceProfile",
        ],
        delete: &[
            "iam:RemoveRoleFromInstanceProfile",
            "iam:DeleteInstanceProfile",
        ],
        scope: IamScope::Arns(&["arn:{partition}:iam::*:instance-profile/infra-{env}-{region}-*"]),
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let names: Vec<String> = match scope {
            Scope::Environment(_) if aws.names.bastion => {
                vec![crate::naming::bastion(&aws.environment, &aws.region)]
            }
            Scope::Environment(_) => Vec::new(),
            Scope::Ids(ids) => ids.iter().map(|i| name_of(i).to_string()).collect(),
        };
        let found = futures::future::try_join_all(names.iter().map(|n| read_one(aws, n))).await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let out = aws
            .iam
            .create_instance_profile()
            .instance_profile_name(&a.name)
            .set_tags(Some(tags::iam(&want.tags)?))
            .send()
            .await
            .map_err(sdk_error("iam", "CreateInstanceProfile"))?;
        set_role(aws, &a.name, &a.role, true).await?;
        Ok(out
            .instance_profile
            .map(|p| p.arn().to_string())
            .unwrap_or_default())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        if have.attrs.role != want.attrs.role {
            if !have.attrs.role.is_empty() {
                set_role(aws, &want.attrs.name, &have.attrs.role, false).await?;
            }
            set_role(aws, &want.attrs.name, &want.attrs.role, true).await?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let name = name_of(physical);
        if let Some(have) = read_one(aws, name).await?
            && !have.attrs.role.is_empty()
        {
            set_role(aws, name, &have.attrs.role, false).await?;
        }
        gone_ok(
            aws.iam
                .delete_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("iam", "DeleteInstanceProfile")),
        )
    }

    fn tag_target(have: &Live<Attrs>) -> String {
        have.attrs.name.clone()
    }
}
