//! Route tables with their routes and subnet associations, managed as one resource: `routes` and
//! `subnet_ids` are sets that updates converge (routes added, replaced or removed; subnets
//! associated or released). The VPC's `local` route is AWS's and never shown.

use aws_sdk_ec2::types::{Filter, ResourceType, Route};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::{
    env_filter, filter, gone_ok, id_tag, retry_while, str_attr, sync_tags, tag_spec, tags_json,
};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct RouteTable;

fn route_json(r: &Route) -> Option<Value> {
    let dest = r.destination_cidr_block()?;
    if r.gateway_id() == Some("local") {
        return None;
    }
    let mut m = serde_json::Map::new();
    m.insert("destination_cidr_block".into(), dest.into());
    if let Some(g) = r.gateway_id() {
        m.insert("gateway_id".into(), g.into());
    }
    if let Some(n) = r.nat_gateway_id() {
        m.insert("nat_gateway_id".into(), n.into());
    }
    Some(Value::Object(m))
}

/// A live table: attributes plus the association ids that updates and deletes need.
struct Table {
    live: LiveResource,
    associations: Vec<(String, String)>, // (association id, subnet id)
}

async fn read_tables(aws: &Aws, filters: Vec<Filter>) -> Result<Vec<Table>, AwsError> {
    let tables = aws
        .ec2
        .describe_route_tables()
        .set_filters(Some(filters))
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
            let routes: Vec<Value> = t.routes().iter().filter_map(route_json).collect();
            let subnets: Vec<&str> = associations.iter().map(|(_, s)| s.as_str()).collect();
            Some(Table {
                live: LiveResource {
                    kind: Kind::RouteTable,
                    physical_id: t.route_table_id()?.to_string(),
                    id: id_tag(t.tags()),
                    attrs: json!({
                        "vpc_id": t.vpc_id(),
                        "routes": routes,
                        "subnet_ids": subnets,
                        "tags": tags_json(t.tags()),
                    }),
                },
                associations,
            })
        })
        .collect())
}

async fn read_table(aws: &Aws, physical: &str) -> Result<Option<Table>, AwsError> {
    Ok(
        read_tables(aws, vec![filter("route-table-id", &[physical.to_string()])])
            .await?
            .into_iter()
            .next(),
    )
}

fn target(route: &Value) -> (Option<&str>, Option<&str>) {
    (
        route["gateway_id"].as_str(),
        route["nat_gateway_id"].as_str(),
    )
}

async fn converge(aws: &Aws, table: &Table, attrs: &Value) -> Result<(), AwsError> {
    let rt = table.live.physical_id.as_str();
    let empty = Vec::new();
    let want_routes = attrs["routes"].as_array().unwrap_or(&empty);
    let have_routes = table.live.attrs["routes"].as_array().unwrap_or(&empty);
    for want in want_routes {
        let dest = str_attr(want, "destination_cidr_block");
        let existing = have_routes
            .iter()
            .find(|h| h["destination_cidr_block"].as_str() == Some(dest));
        let (gw, nat) = target(want);
        match existing {
            Some(h) if target(h) == (gw, nat) => {}
            Some(_) => {
                aws.ec2
                    .replace_route()
                    .route_table_id(rt)
                    .destination_cidr_block(dest)
                    .set_gateway_id(gw.map(str::to_string))
                    .set_nat_gateway_id(nat.map(str::to_string))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "ReplaceRoute"))?;
            }
            None => {
                aws.ec2
                    .create_route()
                    .route_table_id(rt)
                    .destination_cidr_block(dest)
                    .set_gateway_id(gw.map(str::to_string))
                    .set_nat_gateway_id(nat.map(str::to_string))
                    .send()
                    .await
                    .map_err(sdk_error("ec2", "CreateRoute"))?;
            }
        }
    }
    for have in have_routes {
        let dest = str_attr(have, "destination_cidr_block");
        if !want_routes
            .iter()
            .any(|w| w["destination_cidr_block"].as_str() == Some(dest))
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
    let want_subnets: Vec<&str> = attrs["subnet_ids"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (assoc, subnet) in &table.associations {
        if !want_subnets.contains(&subnet.as_str()) {
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
    for subnet in want_subnets {
        if !table.associations.iter().any(|(_, s)| s == subnet) {
            aws.ec2
                .associate_route_table()
                .route_table_id(rt)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(sdk_error("ec2", "AssociateRouteTable"))?;
        }
    }
    sync_tags(aws, rt, &table.live.attrs["tags"], &attrs["tags"]).await
}

#[async_trait::async_trait]
impl Adapter for RouteTable {
    fn kind(&self) -> Kind {
        Kind::RouteTable
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        Ok(read_tables(aws, vec![env_filter(&aws.environment)])
            .await?
            .into_iter()
            .map(|t| t.live)
            .collect())
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        Ok(read_tables(aws, vec![filter("route-table-id", ids)])
            .await?
            .into_iter()
            .map(|t| t.live)
            .collect())
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .ec2
            .create_route_table()
            .vpc_id(str_attr(attrs, "vpc_id"))
            .tag_specifications(tag_spec(ResourceType::RouteTable, attrs))
            .send()
            .await
            .map_err(sdk_error("ec2", "CreateRouteTable"))?;
        let rt = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .unwrap_or_default()
            .to_string();
        let table = read_table(aws, &rt).await?.ok_or_else(|| {
            AwsError::local(
                "ec2",
                "DescribeRouteTables",
                format!("route table {rt} vanished after creation"),
            )
        })?;
        converge(aws, &table, attrs).await?;
        read_one(self, aws, &rt).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let table = read_table(aws, physical).await?.ok_or_else(|| {
            AwsError::local(
                "ec2",
                "DescribeRouteTables",
                format!("route table {physical} no longer exists"),
            )
        })?;
        converge(aws, &table, attrs).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        let Some(table) = read_table(aws, physical).await? else {
            return Ok(());
        };
        for (assoc, _) in &table.associations {
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
