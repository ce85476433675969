//! Route tables with their routes and subnet associations, managed as one resource: `routes` and
//! `subnet_ids` are sets that updates converge (routes added, replaced or removed; subnets
//! associated or released). The VPC's `local` route is AWS's and never shown.

use aws_sdk_ec2::types::{ResourceType, Route as Ec2Route};
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Id, Live, ResourceKind, Scope, Want, gone_ok};
use crate::aws::ec2::{retry_while, scope_filters};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub vpc_id: R,
    pub routes: Vec<Route<R>>,
    pub subnet_ids: Vec<R>,
}

/// A route to an internet gateway or a NAT gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route<R = Id> {
    pub destination_cidr_block: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_gateway_id: Option<R>,
}

impl Route {
    fn target(&self) -> (Option<&str>, Option<&str>) {
        (self.gateway_id.as_deref(), self.nat_gateway_id.as_deref())
    }
}

/// The association ids that updates and deletes need; not kept in state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outputs {
    #[serde(skip)]
    associations: Vec<(String, String)>, // (association id, subnet id)
}

pub struct RouteTable;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = RouteTable;
}

fn route(r: &Ec2Route) -> Option<Route> {
    let dest = r.destination_cidr_block()?;
    if r.gateway_id() == Some("local") {
        return None;
    }
    Some(Route {
        destination_cidr_block: dest.to_string(),
        gateway_id: r.gateway_id().map(str::to_string),
        nat_gateway_id: r.nat_gateway_id().map(str::to_string),
    })
}

async fn converge(aws: &Aws, have: &Live<Attrs, Outputs>, want: &Attrs) -> Result<(), AwsError> {
    let rt = have.physical_id.as_str();
    for w in &want.routes {
        let dest = &w.destination_cidr_block;
        let existing = have
            .attrs
            .routes
            .iter()
            .find(|h| &h.destination_cidr_block == dest);
        match existing {
            Some(h) if h.target() == w.target() => {}
            Some(_) => {
                aws.ec2
                    .replace_route()
                    .route_table_id(rt)
                    .destination_cidr_block(dest)
                    .set_gateway_id(w.gateway_id.clone())
                    .set_nat_gateway_id(w.nat_gateway_id.clone())
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "ReplaceRoute"))?;
            }
            None => {
                aws.ec2
                    .create_route()
                    .route_table_id(rt)
                    .destination_cidr_block(dest)
                    .set_gateway_id(w.gateway_id.clone())
                    .set_nat_gateway_id(w.nat_gateway_id.clone())
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "CreateRoute"))?;
            }
        }
    }
    for h in &have.attrs.routes {
        let dest = &h.destination_cidr_block;
        if !want
            .routes
            .iter()
            .any(|w| &w.destination_cidr_block == dest)
        {
            gone_ok(
                aws.ec2
                    .delete_route()
                    .route_table_id(rt)
                    .destination_cidr_block(dest)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DeleteRoute")),
            )?;
        }
    }
    for (assoc, subnet) in &have.outputs.associations {
        if !want.subnet_ids.contains(subnet) {
            gone_ok(
                aws.ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DisassociateRouteTable")),
            )?;
        }
    }
    for subnet in &want.subnet_ids {
        if !have.outputs.associations.iter().any(|(_, s)| s == subnet) {
            aws.ec2
                .associate_route_table()
                .route_table_id(rt)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(sdk_error("ec2", "AssociateRouteTable"))?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl ResourceKind for RouteTable {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema::replace_on(&["vpc_id"]).sets(&["routes", "subnet_ids"]);
    const TAGS: TagApi = TagApi::Ec2;
    const IAM: Iam = Iam {
        read: &["ec2:DescribeRouteTables"],
        create: &[
            "ec2:CreateRouteTable",
            "ec2:CreateRoute",
            "ec2:AssociateRouteTable",
        ],
        change: &[
            "ec2:CreateRoute",
            "ec2:ReplaceRoute",
            "ec2:DeleteRoute",
            "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable",
        ],
        delete: &["ec2:DisassociateRouteTable", "ec2:DeleteRouteTable"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let tables = aws
            .ec2
            .describe_route_tables()
            .set_filters(Some(scope_filters(aws, scope, "route-table-id")))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(sdk_error("ec2", "DescribeRouteTables"))?;
        Ok(tables
            .into_iter()
            .filter_map(|t| {
                let associations: Vec<(String, String)> = t
                    .associations()
                    .iter()
                    .filter(|a| a.main() != Some(true))
                    .filter_map(|a| {
                        Some((
                            a.route_table_association_id()?.to_string(),
                            a.subnet_id()?.to_string(),
                        ))
                    })
                    .collect();
                Some(Live {
                    physical_id: t.route_table_id()?.to_string(),
                    attrs: Attrs {
                        vpc_id: t.vpc_id().unwrap_or_default().to_string(),
                        routes: t.routes().iter().filter_map(route).collect(),
                        subnet_ids: associations.iter().map(|(_, s)| s.clone()).collect(),
                    },
                    outputs: Outputs { associations },
                    tags: tags::from_ec2(t.tags()),
                })
            })
            .collect())
    }

    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let out = aws
            .ec2
            .create_route_table()
            .vpc_id(&want.attrs.vpc_id)
            .tag_specifications(tags::ec2_spec(ResourceType::RouteTable, &want.tags))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateRouteTable"))?;
        let rt = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .unwrap_or_default()
            .to_string();
        let have = super::read_one(self, aws, &rt).await?;
        converge(aws, &have, &want.attrs).await?;
        Ok(rt)
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs, Outputs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        converge(aws, have, &want.attrs).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let found = self.read(aws, Scope::Ids(&[physical.to_string()])).await?;
        let Some(table) = found.first() else {
            return Ok(());
        };
        for (assoc, _) in &table.outputs.associations {
            gone_ok(
                aws.ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DisassociateRouteTable")),
            )?;
        }
        gone_ok(
            retry_while(&["DependencyViolation"], || async {
                aws.ec2
                    .delete_route_table()
                    .route_table_id(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("ec2", "DeleteRouteTable"))
            })
            .await,
        )
    }
}
