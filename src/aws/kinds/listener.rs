//! Listeners of the load balancer: HTTP (forwarding, or redirecting to HTTPS when HTTPS is
//! configured) and HTTPS with the certificate. Read with the load balancer's DescribeListeners.

use aws_sdk_elasticloadbalancingv2::types::{Certificate, ProtocolEnum};
use serde_json::{Value, json};

use super::{Adapter, read_one};
use crate::aws::ec2::str_attr;
use crate::aws::elbv2::{action, action_json, load_balancer_arn, sync_tags, tag_list, tags};
use crate::aws::{Aws, sdk_error, tag_pairs};
use crate::error::AwsError;
use crate::model::Kind;
use crate::plan::LiveResource;

pub struct Listener;

async fn read(
    aws: &Aws,
    lb: Option<&str>,
    arns: Option<Vec<String>>,
) -> Result<Vec<LiveResource>, AwsError> {
    let out = match aws
        .elbv2
        .describe_listeners()
        .set_load_balancer_arn(lb.map(str::to_string))
        .set_listener_arns(arns)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = sdk_error("elbv2", "DescribeListeners")(e);
            return if e.code_is("ListenerNotFound") || e.code_is("LoadBalancerNotFound") {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
    };
    let arns: Vec<String> = out
        .listeners()
        .iter()
        .filter_map(|l| l.listener_arn().map(str::to_string))
        .collect();
    let all_tags = tags(aws, &arns).await?;
    Ok(out
        .listeners()
        .iter()
        .filter_map(|l| {
            let arn = l.listener_arn()?;
            let tags = all_tags
                .iter()
                .find(|(a, _)| a == arn)
                .map(|(_, t)| t.clone())
                .unwrap_or(json!({}));
            let mut attrs = json!({
                "load_balancer_arn": l.load_balancer_arn(),
                "port": l.port(),
                "protocol": l.protocol().map(|p| p.as_str()),
                "default_action": l.default_actions().first().map(action_json),
                "tags": tags,
            });
            if let Some(cert) = l.certificates().first().and_then(|c| c.certificate_arn()) {
                attrs["certificate_arn"] = json!(cert);
            }
            Some(LiveResource {
                kind: Kind::Listener,
                physical_id: arn.to_string(),
                id: tags["infra:id"].as_str().map(str::to_string),
                attrs,
            })
        })
        .collect())
}

fn certificates(attrs: &Value) -> Option<Vec<Certificate>> {
    attrs["certificate_arn"]
        .as_str()
        .map(|c| vec![Certificate::builder().certificate_arn(c).build()])
}

#[async_trait::async_trait]
impl Adapter for Listener {
    fn kind(&self) -> Kind {
        Kind::Listener
    }

    async fn read_all(&self, aws: &Aws) -> Result<Vec<LiveResource>, AwsError> {
        match load_balancer_arn(aws).await? {
            Some(lb) => read(aws, Some(&lb), None).await,
            None => Ok(Vec::new()),
        }
    }

    async fn read_ids(&self, aws: &Aws, ids: &[String]) -> Result<Vec<LiveResource>, AwsError> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(read(aws, None, Some(vec![id.clone()])).await?);
        }
        Ok(out)
    }

    async fn create(&self, aws: &Aws, _id: &str, attrs: &Value) -> Result<LiveResource, AwsError> {
        let out = aws
            .elbv2
            .create_listener()
            .load_balancer_arn(str_attr(attrs, "load_balancer_arn"))
            .port(attrs["port"].as_i64().unwrap_or(80) as i32)
            .protocol(ProtocolEnum::from(str_attr(attrs, "protocol")))
            .set_certificates(certificates(attrs))
            .default_actions(action(&attrs["default_action"]))
            .set_tags(Some(tag_list(tag_pairs(attrs))))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateListener"))?;
        let arn = out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string();
        read_one(self, aws, &arn).await
    }

    async fn update(
        &self,
        aws: &Aws,
        physical: &str,
        attrs: &Value,
    ) -> Result<LiveResource, AwsError> {
        let have = read_one(self, aws, physical).await?;
        let settings = ["port", "protocol", "certificate_arn", "default_action"];
        if settings.iter().any(|k| have.attrs[*k] != attrs[*k]) {
            aws.elbv2
                .modify_listener()
                .listener_arn(physical)
                .port(attrs["port"].as_i64().unwrap_or(80) as i32)
                .protocol(ProtocolEnum::from(str_attr(attrs, "protocol")))
                .set_certificates(certificates(attrs))
                .default_actions(action(&attrs["default_action"]))
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyListener"))?;
        }
        sync_tags(aws, physical, &have.attrs["tags"], &attrs["tags"]).await?;
        read_one(self, aws, physical).await
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        match aws
            .elbv2
            .delete_listener()
            .listener_arn(physical)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = sdk_error("elbv2", "DeleteListener")(e);
                if e.code_is("ListenerNotFound") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
