//! The DB subnet group over the database subnets: where RDS places the environment's
//! databases. Known by its name (`<env>-db`; the tagging API does not list subnet groups).

use aws_sdk_rds::types::{DbSubnetGroup as RdsGroup, Tag};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Taken, Want, absent_ok, gone_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub description: String,
    /// A set.
    pub subnet_ids: Vec<R>,
}

/// Its ARN: what its tags are addressed by.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    pub arn: Option<String>,
}

pub struct DbSubnetGroup;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = DbSubnetGroup;
}

pub(crate) fn rds_tags(want: &super::Tags) -> Vec<Tag> {
    want.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The tags of an RDS resource by ARN.
pub(crate) async fn tags_of(aws: &Aws, arn: &str) -> Result<super::Tags, AwsError> {
    let out = aws
        .rds()
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(sdk_error("rds", "ListTagsForResource"))?;
    Ok(tags::collect(out.tag_list().iter().filter_map(|t| {
        Some((t.key()?, t.value().unwrap_or_default()))
    })))
}

async fn describe(aws: &Aws, name: &str) -> Result<Option<RdsGroup>, AwsError> {
    absent_ok(
        aws.rds()
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await
            .map(|out| out.db_subnet_groups.unwrap_or_default().into_iter().next())
            .map_err(sdk_error("rds", "DescribeDBSubnetGroups")),
    )
}

async fn read_one(aws: &Aws, name: &str) -> Result<Option<Live<Attrs, Outputs>>, AwsError> {
    let Some(g) = describe(aws, name).await? else {
        return Ok(None);
    };
    let arn = g.db_subnet_group_arn().unwrap_or_default().to_string();
    let tags = tags_of(aws, &arn).await?;
    let mut subnet_ids: Vec<String> = g
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier().map(str::to_string))
        .collect();
    subnet_ids.sort();
    Ok(Some(Live {
        physical_id: g.db_subnet_group_name().unwrap_or(name).to_string(),
        attrs: Attrs {
            name: g.db_subnet_group_name().unwrap_or(name).to_string(),
            description: g
                .db_subnet_group_description()
                .unwrap_or_default()
                .to_string(),
            subnet_ids,
        },
        outputs: Outputs { arn: Some(arn) },
        tags,
    }))
}

#[async_trait::async_trait]
impl ResourceKind for DbSubnetGroup {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["name"]).sets(&["subnet_ids"]);
    const TAGS: TagApi = TagApi::Rds;
    const IAM: Iam = Iam {
        read: &["rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"],
        create: &["rds:CreateDBSubnetGroup"],
        change: &["rds:ModifyDBSubnetGroup"],
        delete: &["rds:DeleteDBSubnetGroup"],
        scope: IamScope::Arns(&["arn:{partition}:rds:{region}:*:subgrp:{env}-db"]),
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let names = match scope {
            Scope::Environment(_) => vec![crate::naming::db_subnet_group(&aws.environment)],
            Scope::Ids(ids) => ids.to_vec(),
        };
        let found = futures::future::try_join_all(names.iter().map(|n| read_one(aws, n))).await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        aws.rds()
            .create_db_subnet_group()
            .db_subnet_group_name(&a.name)
            .db_subnet_group_description(&a.description)
            .set_subnet_ids(Some(a.subnet_ids.clone()))
            .set_tags(Some(rds_tags(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("rds", "CreateDBSubnetGroup"))?;
        Ok(a.name.clone())
    }

    async fn change(
        &self,
        aws: &Aws,
        _have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let a = &want.attrs;
        aws.rds()
            .modify_db_subnet_group()
            .db_subnet_group_name(&a.name)
            .db_subnet_group_description(&a.description)
            .set_subnet_ids(Some(a.subnet_ids.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("rds", "ModifyDBSubnetGroup"))
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.rds()
                .delete_db_subnet_group()
                .db_subnet_group_name(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("rds", "DeleteDBSubnetGroup")),
        )
    }

    fn tag_target(have: &Live<Attrs, Outputs>) -> String {
        have.outputs.arn.clone().unwrap_or_default()
    }

    /// A subnet group of that name this environment did not make.
    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let mut out = Vec::new();
        for w in wants {
            if describe(aws, &w.attrs.name).await?.is_some() {
                out.push(Taken::new(&w.id, &w.attrs.name, &w.attrs.name));
            }
        }
        Ok(out)
    }
}
