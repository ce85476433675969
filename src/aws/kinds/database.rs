//! RDS PostgreSQL instances (`databases.<name>`): in the database subnets, never publicly
//! accessible, storage encrypted, the master password made and kept by RDS in Secrets Manager
//! (infra never sees it: services get the secret's ARN, the plan and state its ARN only).
//!
//! What RDS changes in place (class, storage, Multi-AZ, backups, version, groups, deletion
//! protection) is an update, applied at once and waited for; what it cannot (identifier,
//! database name, user, encryption, subnet group) replaces the instance, which loses its data:
//! a protected one needs `--allow-destroy-protected`, and one that was protected is deleted
//! with a final snapshot that outlives it.

use std::time::Duration;

use aws_sdk_rds::types::DbInstance;
use serde::{Deserialize, Serialize};

use super::db_subnet_group::rds_tags;
use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Want, absent_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error, wait};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub identifier: String,
    pub engine: String,
    /// The major version (`16`); RDS picks the minor one and upgrades it.
    pub engine_version: String,
    pub instance_class: String,
    pub allocated_storage: u32,
    pub multi_az: bool,
    pub backup_retention_days: u32,
    pub db_name: String,
    pub master_username: String,
    pub subnet_group: R,
    /// A set.
    pub security_groups: Vec<R>,
    pub storage_encrypted: bool,
    pub publicly_accessible: bool,
    pub deletion_protection: bool,
    /// The master password is RDS's, in Secrets Manager.
    pub managed_password: bool,
}

/// Where it answers, and the secret that holds its user and password (`username`, `password`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    pub arn: Option<String>,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub secret_arn: Option<String>,
}

pub struct Database;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Database;
}

/// How long RDS may take to make, change or delete an instance.
const WAIT: Duration = Duration::from_secs(60 * 60);

fn live(db: &DbInstance) -> Option<Live<Attrs, Outputs>> {
    let identifier = db.db_instance_identifier()?.to_string();
    let mut security_groups: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
        .collect();
    security_groups.sort();
    let tags = tags::collect(
        db.tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    );
    Some(Live {
        physical_id: identifier.clone(),
        attrs: Attrs {
            identifier,
            engine: db.engine().unwrap_or_default().to_string(),
            engine_version: db
                .engine_version()
                .unwrap_or_default()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
            instance_class: db.db_instance_class().unwrap_or_default().to_string(),
            allocated_storage: db.allocated_storage().unwrap_or_default().max(0) as u32,
            multi_az: db.multi_az().unwrap_or_default(),
            backup_retention_days: db.backup_retention_period().unwrap_or_default().max(0) as u32,
            db_name: db.db_name().unwrap_or_default().to_string(),
            master_username: db.master_username().unwrap_or_default().to_string(),
            subnet_group: db
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .unwrap_or_default()
                .to_string(),
            security_groups,
            storage_encrypted: db.storage_encrypted().unwrap_or_default(),
            publicly_accessible: db.publicly_accessible().unwrap_or_default(),
            deletion_protection: db.deletion_protection().unwrap_or_default(),
            managed_password: db.master_user_secret().is_some(),
        },
        outputs: Outputs {
            arn: db.db_instance_arn().map(str::to_string),
            address: db.endpoint().and_then(|e| e.address()).map(str::to_string),
            port: db.endpoint().and_then(|e| e.port()),
            secret_arn: db
                .master_user_secret()
                .and_then(|s| s.secret_arn())
                .map(str::to_string),
        },
        tags,
    })
}

async fn describe(aws: &Aws, identifier: &str) -> Result<Option<DbInstance>, AwsError> {
    absent_ok(
        aws.rds()
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await
            .map(|out| out.db_instances.unwrap_or_default().into_iter().next())
            .map_err(sdk_error("rds", "DescribeDBInstances")),
    )
}

/// Waits for the instance to be available again (after a create or a change).
async fn available(aws: &Aws, identifier: &str) -> Result<(), AwsError> {
    wait::until(
        "rds",
        "DescribeDBInstances",
        &format!("the database {identifier} to be available"),
        WAIT,
        || async {
            let db = describe(aws, identifier).await?;
            Ok(db
                .filter(|d| d.db_instance_status() == Some("available"))
                .map(|_| ()))
        },
    )
    .await
}

#[async_trait::async_trait]
impl ResourceKind for Database {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&[
        "identifier",
        "engine",
        "db_name",
        "master_username",
        "subnet_group",
        "storage_encrypted",
        "managed_password",
    ])
    .sets(&["security_groups"]);
    const TAGS: TagApi = TagApi::Rds;
    const IAM: Iam = Iam {
        read: &["rds:DescribeDBInstances", "rds:ListTagsForResource"],
        create: &[
            "rds:CreateDBInstance",
            "secretsmanager:CreateSecret",
            "secretsmanager:TagResource",
        ],
        change: &["rds:ModifyDBInstance"],
        delete: &["rds:DeleteDBInstance", "secretsmanager:DeleteSecret"],
        scope: IamScope::TagsExcept(
            &[
                "secretsmanager:CreateSecret",
                "secretsmanager:TagResource",
                "secretsmanager:DeleteSecret",
            ],
            "RDS makes and deletes the managed password's secret with the caller's permissions, under its own name and tags",
        ),
    };
    const READS_STATE: bool = false;

    /// One tag lookup finds the environment's instances; each is described (its tags come
    /// with it).
    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let ids: Vec<String> = match scope {
            Scope::Environment(_) => tags::tagged(aws, &["rds:db"])
                .await?
                .into_keys()
                .filter_map(|arn| arn.rsplit(':').next().map(str::to_string))
                .collect(),
            Scope::Ids(ids) => ids.to_vec(),
        };
        let found = futures::future::try_join_all(ids.iter().map(|i| describe(aws, i))).await?;
        Ok(found.iter().flatten().filter_map(live).collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        aws.rds()
            .create_db_instance()
            .db_instance_identifier(&a.identifier)
            .engine(&a.engine)
            .engine_version(&a.engine_version)
            .db_instance_class(&a.instance_class)
            .allocated_storage(a.allocated_storage as i32)
            .multi_az(a.multi_az)
            .backup_retention_period(a.backup_retention_days as i32)
            .db_name(&a.db_name)
            .master_username(&a.master_username)
            .manage_master_user_password(a.managed_password)
            .db_subnet_group_name(&a.subnet_group)
            .set_vpc_security_group_ids(Some(a.security_groups.clone()))
            .storage_encrypted(a.storage_encrypted)
            .publicly_accessible(a.publicly_accessible)
            .deletion_protection(a.deletion_protection)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(rds_tags(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("rds", "CreateDBInstance"))?;
        available(aws, &a.identifier).await?;
        Ok(a.identifier.clone())
    }

    /// Applied at once (not at the next maintenance window), and waited for.
    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let (h, w) = (&have.attrs, &want.attrs);
        let mut sorted = w.security_groups.clone();
        sorted.sort();
        if h.instance_class == w.instance_class
            && h.allocated_storage == w.allocated_storage
            && h.multi_az == w.multi_az
            && h.backup_retention_days == w.backup_retention_days
            && h.engine_version == w.engine_version
            && h.security_groups == sorted
            && h.deletion_protection == w.deletion_protection
            && h.publicly_accessible == w.publicly_accessible
        {
            return Ok(());
        }
        let mut m = aws
            .rds()
            .modify_db_instance()
            .db_instance_identifier(&have.physical_id)
            .db_instance_class(&w.instance_class)
            .allocated_storage(w.allocated_storage as i32)
            .multi_az(w.multi_az)
            .backup_retention_period(w.backup_retention_days as i32)
            .set_vpc_security_group_ids(Some(w.security_groups.clone()))
            .deletion_protection(w.deletion_protection)
            .publicly_accessible(w.publicly_accessible)
            .apply_immediately(true);
        if h.engine_version != w.engine_version {
            m = m
                .engine_version(&w.engine_version)
                .allow_major_version_upgrade(true);
        }
        m.send()
            .await
            .map_err(sdk_error("rds", "ModifyDBInstance"))?;
        available(aws, &have.physical_id).await
    }

    /// Deletes the instance and waits until it is gone. One with deletion protection (a
    /// protected environment's, which the plan let go only with `--allow-destroy-protected`)
    /// has it lifted first and leaves a final snapshot `<identifier>-final-<time>` behind.
    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some(db) = describe(aws, physical).await? else {
            return Ok(());
        };
        let protected = db.deletion_protection().unwrap_or_default();
        if protected {
            aws.rds()
                .modify_db_instance()
                .db_instance_identifier(physical)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(sdk_error("rds", "ModifyDBInstance"))?;
        }
        let snapshot = format!(
            "{physical}-final-{}",
            jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
        );
        let deleted = aws
            .rds()
            .delete_db_instance()
            .db_instance_identifier(physical)
            .skip_final_snapshot(!protected)
            .set_final_db_snapshot_identifier(protected.then_some(snapshot))
            .delete_automated_backups(!protected)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk_error("rds", "DeleteDBInstance"));
        super::gone_ok(deleted)?;
        wait::until(
            "rds",
            "DescribeDBInstances",
            &format!("the database {physical} to be deleted"),
            WAIT,
            || async { Ok(describe(aws, physical).await?.is_none().then_some(())) },
        )
        .await
    }

    fn tag_target(have: &Live<Attrs, Outputs>) -> String {
        have.outputs.arn.clone().unwrap_or_default()
    }
}
