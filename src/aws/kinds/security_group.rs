//! Security groups with their rules. Rules are flattened to one entry per protocol, port range
//! and source (a CIDR block or another group), and diffed as sets, so ordering and the way AWS
//! groups them never show up as changes. AWS's default allow-all egress is revoked when the file
//! does not ask for it.

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup as Ec2Group,
    UserIdGroupPair,
};
use serde_json::{Map, Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{
    env_filter, filter, gone_ok, id_tag, retry_while, str_attr, sync_tags, tag_spec, tags_json,
};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct SecurityGroup;

fn rule(p: &IpPermission, source: (&str, &str)) -> Value {
    let mut m = Map::new();
    let protocol = p.ip_protocol().unwrap_or("-1");
    m.insert("protocol".into(), protocol.into());
    if protocol != "-1" {
        m.insert("from_port".into(), p.from_port().into());
        m.insert("to_port".into(), p.to_port().into());
    }
    m.insert(source.0.into(), source.1.into());
    Value::Object(m)
}

/// One rule per source, in the shape `desired.rs` writes.
fn flatten(perms: &[IpPermission]) -> Vec<Value> {
    let mut out = Vec::new();
    for p in perms {
        for r in p.ip_ranges() {
            out.extend(r.cidr_ip().map(|c| rule(p, ("cidr_ipv4", c))));
        }
        for r in p.ipv6_ranges() {
            out.extend(r.cidr_ipv6().map(|c| rule(p, ("cidr_ipv6", c))));
        }
        for g in p.user_id_group_pairs() {
            out.extend(
                g.group_id()
                    .map(|id| rule(p, ("source_security_group_id", id))),
            );
        }
    }
    out
}

fn permission(rule: &Value) -> IpPermission {
    let protocol = str_attr(rule, "protocol");
    let mut b = IpPermission::builder().ip_protocol(protocol);
    if protocol != "-1" {
        b = b
            .from_port(rule["from_port"].as_i64().unwrap_or(0) as i32)
            .to_port(rule["to_port"].as_i64().unwrap_or(0) as i32);
    }
    if let Some(c) = rule["cidr_ipv4"].as_str() {
        b = b.ip_ranges(IpRange::builder().cidr_ip(c).build());
    }
    if let Some(c) = rule["cidr_ipv6"].as_str() {
        b = b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
    }
    if let Some(g) = rule["source_security_group_id"].as_str() {
        b = b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build());
    }
    b.build()
}

fn live(g: &Ec2Group) -> Option<LiveResource> {
    Some(LiveResource {
        kind: Kind::SecurityGroup,
        physical_id: g.group_id()?.to_string(),
        id: id_tag(g.tags()),
        attrs: json!({
            "name": g.group_name(),
            "description": g.description(),
            "vpc_id": g.vpc_id(),
            "ingress": flatten(g.ip_permissions()),
            "egress": flatten(g.ip_permissions_egress()),
            "tags": tags_json(g.tags()),
        }),
    })
}

async fn read(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<LiveResource>, AwsError> {
    let groups = aws
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(sdk_error("ec2", "DescribeSecurityGroups"))?;
    Ok(groups.iter().filter_map(live).collect())
}

fn rules(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Revokes what the group has and the file does not want, then authorises what is missing.
async fn converge(aws: &Aws, group: &str, have: &Value, want: &Value) -> Result<(), AwsError> {
    for direction in ["ingress", "egress"] {
        let (have, want) = (rules(&have[direction]), rules(&want[direction]));
        let revoke: Vec<IpPermission> = have
            .iter()
            .filter(|r| !want.contains(r))
            .map(permission)
            .collect();
        let add: Vec<IpPermission> = want
            .iter()
            .filter(|r| !have.contains(r))
            .map(permission)
            .collect();
        if !revoke.is_empty() {
            if direction == "ingress" {
                aws.ec2
                    .revoke_security_group_ingress()
                    .group_id(group)
                    .set_ip_permissions(Some(revoke))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "RevokeSecurityGroupIngress"))?;
            } else {
                aws.ec2
                    .revoke_security_group_egress()
                    .group_id(group)
                    .set_ip_permissions(Some(revoke))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "RevokeSecurityGroupEgress"))?;
            }
        }
        if !add.is_empty() {
            if direction == "ingress" {
                aws.ec2
                    .authorize_security_group_ingress()
                    .group_id(group)
                    .set_ip_permissions(Some(add))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "AuthorizeSecurityGroupIngress"))?;
            } else {
                aws.ec2
                    .authorize_security_group_egress()
                    .group_id(group)
                    .set_ip_permissions(Some(add))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "AuthorizeSecurityGroupEgress"))?;
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Adapter for SecurityGroup {
    fn kind(&self) -> Kind {
        Kind::SecurityGroup
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![env_filter(&aws.environment)]).await
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        read(aws, vec![filter("group-id", ids)]).await
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_security_group()
            .group_name(str_attr(attrs, "name"))
            .description(str_attr(attrs, "description"))
            .vpc_id(str_attr(attrs, "vpc_id"))
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, attrs))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateSecurityGroup"))?;
        let group = out.group_id().unwrap_or_default().to_string();
        let have = read_one(self, aws, &group).await?;
        converge(aws, &group, &have.attrs, attrs).await?;
        read_one(self, aws, &group).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        converge(aws, physical, &have.attrs, attrs).await?;
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        // Network interfaces of stopped tasks and of a deleted load balancer drain for a while.
        gone_ok(
            retry_while(&["DependencyViolation"], || async {
                aws.ec2
                    .delete_security_group()
                    .group_id(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DeleteSecurityGroup"))
            })
            .await,
        )
    }
}
