//! Security groups with their rules. Rules are flattened to one entry per protocol, port range
//! and source (a CIDR block or another group), and diffed as sets, so ordering and the way AWS
//! groups them never show up as changes. AWS's default allow-all egress is revoked when the file
//! does not ask for it.

use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup as Ec2Group, UserIdGroupPair,
};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Taken, Want, gone_ok};
use crate::aws::ec2::{retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub name: String,
    pub description: String,
    pub vpc_id: R,
    pub ingress: Vec<Rule<R>>,
    pub egress: Vec<Rule<R>>,
}

/// One rule: a protocol (`-1` for all, then no ports), a port range, and one source or
/// destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule<R = Id> {
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr_ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_security_group_id: Option<R>,
}

impl<R> Rule<R> {
    /// TCP on one port.
    pub fn tcp(port: u16) -> Rule<R> {
        Rule::tcp_range(port, port)
    }

    /// TCP on a range of ports.
    pub fn tcp_range(from: u16, to: u16) -> Rule<R> {
        Rule {
            protocol: "tcp".into(),
            from_port: Some(i32::from(from)),
            to_port: Some(i32::from(to)),
            cidr_ipv4: None,
            cidr_ipv6: None,
            source_security_group_id: None,
        }
    }

    /// Every protocol and port.
    pub fn all() -> Rule<R> {
        Rule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            cidr_ipv4: None,
            cidr_ipv6: None,
            source_security_group_id: None,
        }
    }
}

pub struct SecurityGroup;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = SecurityGroup;
}

/// One rule per source, in the shape `desired` writes.
fn flatten(perms: &[IpPermission]) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1");
        let base = || {
            let mut r = Rule::all();
            r.protocol = protocol.to_string();
            if protocol != "-1" {
                r.from_port = p.from_port();
                r.to_port = p.to_port();
            }
            r
        };
        for range in p.ip_ranges() {
            out.extend(range.cidr_ip().map(|c| Rule {
                cidr_ipv4: Some(c.to_string()),
                ..base()
            }));
        }
        for range in p.ipv6_ranges() {
            out.extend(range.cidr_ipv6().map(|c| Rule {
                cidr_ipv6: Some(c.to_string()),
                ..base()
            }));
        }
        for g in p.user_id_group_pairs() {
            out.extend(g.group_id().map(|id| Rule {
                source_security_group_id: Some(id.to_string()),
                ..base()
            }));
        }
    }
    out
}

fn permission(rule: &Rule) -> IpPermission {
    let mut b = IpPermission::builder().ip_protocol(&rule.protocol);
    if rule.protocol != "-1" {
        b = b.set_from_port(rule.from_port).set_to_port(rule.to_port);
    }
    if let Some(c) = &rule.cidr_ipv4 {
        b = b.ip_ranges(IpRange::builder().cidr_ip(c).build());
    }
    if let Some(c) = &rule.cidr_ipv6 {
        b = b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
    }
    if let Some(g) = &rule.source_security_group_id {
        b = b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build());
    }
    b.build()
}

fn live(g: &Ec2Group) -> Option<Live<Attrs>> {
    Some(Live {
        physical_id: g.group_id()?.to_string(),
        attrs: Attrs {
            name: g.group_name().unwrap_or_default().to_string(),
            description: g.description().unwrap_or_default().to_string(),
            vpc_id: g.vpc_id().unwrap_or_default().to_string(),
            ingress: flatten(g.ip_permissions()),
            egress: flatten(g.ip_permissions_egress()),
        },
        outputs: NoOutputs {},
        tags: tags::from_ec2(g.tags()),
    })
}

/// Revokes what the group has and the file does not want, then authorises what is missing.
async fn converge(aws: &Aws, group: &str, have: &Attrs, want: &Attrs) -> Result<(), AwsError> {
    for (ingress, have, want) in [
        (true, &have.ingress, &want.ingress),
        (false, &have.egress, &want.egress),
    ] {
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
            if ingress {
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
            if ingress {
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
impl ResourceKind for SecurityGroup {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema =
        Schema::replace_on(&["name", "description", "vpc_id"]).sets(&["ingress", "egress"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeSecurityGroups"],
        create: &[
            "ec2:CreateSecurityGroup",
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupEgress",
        ],
        change: &[
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupEgress",
        ],
        delete: &[
            "ec2:RevokeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupEgress",
            "ec2:DeleteSecurityGroup",
        ],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        let groups = aws
            .ec2
            .describe_security_groups()
            .set_filters(Some(scope_filters(aws, scope, "group-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeSecurityGroups"))?;
        Ok(groups.iter().filter_map(live).collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_security_group()
            .group_name(&want.attrs.name)
            .description(&want.attrs.description)
            .vpc_id(&want.attrs.vpc_id)
            .tag_specifications(tags::ec2_spec(ResourceType::SecurityGroup, &want.tags))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateSecurityGroup"))?;
        let group = out.group_id().unwrap_or_default().to_string();
        let have = super::read_one(self, aws, &group).await?;
        converge(aws, &group, &have.attrs, &want.attrs).await?;
        Ok(group)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        converge(aws, &have.physical_id, &have.attrs, &want.attrs).await
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

    /// Group names are unique per VPC: only groups in a VPC that already exists can collide.
    async fn taken(&self, aws: &Aws, wants: &[Want<Attrs>]) -> Result<Vec<Taken>, AwsError> {
        let mut vpcs: Vec<&str> = wants
            .iter()
            .map(|w| w.attrs.vpc_id.as_str())
            .filter(|v| v.starts_with("vpc-"))
            .collect();
        vpcs.sort_unstable();
        vpcs.dedup();
        if vpcs.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = wants.iter().map(|w| w.attrs.name.clone()).collect();
        let vpcs: Vec<String> = vpcs.into_iter().map(str::to_string).collect();
        let found = aws
            .ec2
            .describe_security_groups()
            .filters(crate::aws::ec2::filter("vpc-id", &vpcs))
            .filters(crate::aws::ec2::filter("group-name", &names))
            .send()
            .await
            .map_err(sdk_error("ec2", "DescribeSecurityGroups"))?;
        Ok(wants
            .iter()
            .filter_map(|w| {
                let g = found.security_groups().iter().find(|g| {
                    g.group_name() == Some(w.attrs.name.as_str())
                        && g.vpc_id() == Some(w.attrs.vpc_id.as_str())
                })?;
                Some(Taken::new(&w.id, &w.attrs.name, g.group_id()?))
            })
            .collect())
    }
}
