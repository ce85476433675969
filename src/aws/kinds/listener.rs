//! Listeners of the load balancer: HTTP (forwarding, or redirecting to HTTPS when HTTPS is
//! configured) and HTTPS with the certificate. Read with the load balancer (see `Shared`).

use aws_sdk_elasticloadbalancingv2::types::{Certificate, Listener as ElbListener, ProtocolEnum};
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::{
    Iam, IamScope, Id, Live, NoOutputs, ResourceKind, Scope, Tags, Want, absent_ok, gone_ok,
};
use crate::aws::elbv2::{ListenerAction, tags_of};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs<R = Id> {
    pub load_balancer_arn: R,
    pub port: u16,
    pub protocol: String,
    /// HTTPS only: the file's certificate, or the one infra requests for the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<R>,
    pub default_action: ListenerAction<R>,
}

pub struct Listener;

impl super::Desire for Attrs<crate::model::Ref> {
    type Kind = Listener;
}

/// Listeners by ARN (one DescribeListeners).
async fn by_arns(aws: &Aws, arns: &[String]) -> Result<Vec<ElbListener>, AwsError> {
    absent_ok(
        aws.elbv2
            .describe_listeners()
            .set_listener_arns(Some(arns.to_vec()))
            .send()
            .await
            .map(|out| out.listeners().to_vec())
            .map_err(sdk_error("elbv2", "DescribeListeners")),
    )
}

/// Described listeners with their tags (one DescribeTags per twenty).
async fn with_tags(aws: &Aws, listeners: &[ElbListener]) -> Result<Vec<Live<Attrs>>, AwsError> {
    let arns: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.listener_arn().map(str::to_string))
        .collect();
    Ok(lives(listeners, tags_of(aws, &arns).await?))
}

fn lives(listeners: &[ElbListener], mut all_tags: HashMap<String, Tags>) -> Vec<Live<Attrs>> {
    listeners
        .iter()
        .filter_map(|l| {
            let arn = l.listener_arn()?;
            Some(Live {
                physical_id: arn.to_string(),
                attrs: Attrs {
                    load_balancer_arn: l.load_balancer_arn().unwrap_or_default().to_string(),
                    port: l
                        .port()
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or_default(),
                    protocol: l
                        .protocol()
                        .map(|p| p.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    certificate_arn: l
                        .certificates()
                        .first()
                        .and_then(|c| c.certificate_arn())
                        .map(str::to_string),
                    default_action: ListenerAction::from_aws(l.default_actions().first()?),
                },
                outputs: NoOutputs {},
                tags: all_tags.remove(arn).unwrap_or_default(),
            })
        })
        .collect()
}

fn certificates(attrs: &Attrs) -> Option<Vec<Certificate>> {
    attrs
        .certificate_arn
        .as_ref()
        .map(|c| vec![Certificate::builder().certificate_arn(c).build()])
}

#[async_trait::async_trait]
impl ResourceKind for Listener {
    type Attrs = Attrs;
    type Outputs = NoOutputs;
    const SCHEMA: Schema = Schema::replace_on(&["load_balancer_arn"]);
    const TAGS: TagApi = TagApi::Elbv2;
    const IAM: Iam = Iam {
        // A new certificate is described until it is issued (before a create or change).
        read: &[
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeTags",
            "acm:DescribeCertificate",
        ],
        create: &["elasticloadbalancing:CreateListener"],
        change: &["elasticloadbalancing:ModifyListener"],
        delete: &["elasticloadbalancing:DeleteListener"],
        scope: IamScope::Tags,
    };

    async fn read(&self, aws: &Aws, scope: Scope<'_>) -> Result<Vec<Live<Attrs>>, AwsError> {
        match scope {
            // The listeners come with the load balancer and their tags, read once for the kinds
            // that need them.
            Scope::Environment(env) => {
                let view = env.shared.elb().await?;
                Ok(lives(&view.listeners, view.tags.clone()))
            }
            // One at a time: a listener that is gone fails the whole call.
            Scope::Ids(ids) => {
                let reads = ids.iter().map(|id| by_arns(aws, std::slice::from_ref(id)));
                let found: Vec<ElbListener> = futures::future::try_join_all(reads)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
                with_tags(aws, &found).await
            }
        }
    }

    /// A certificate still being validated is waited for: the load balancer takes only an
    /// issued one.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        if let Some(cert) = &a.certificate_arn {
            super::certificate::issued(aws, cert).await?;
        }
        let out = aws
            .elbv2
            .create_listener()
            .load_balancer_arn(&a.load_balancer_arn)
            .port(i32::from(a.port))
            .protocol(ProtocolEnum::from(a.protocol.as_str()))
            .set_certificates(certificates(a))
            .default_actions(a.default_action.to_aws())
            .set_tags(Some(tags::elbv2(&want.tags)))
            .send()
            .await
            .map_err(sdk_error("elbv2", "CreateListener"))?;
        Ok(out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn change(
        &self,
        aws: &Aws,
        have: &Live<Attrs>,
        want: &Want<Attrs>,
    ) -> Result<(), AwsError> {
        let (h, w) = (&have.attrs, &want.attrs);
        if h.port != w.port
            || h.protocol != w.protocol
            || h.certificate_arn != w.certificate_arn
            || h.default_action != w.default_action
        {
            if let Some(cert) = w
                .certificate_arn
                .as_ref()
                .filter(|c| h.certificate_arn.as_ref() != Some(*c))
            {
                super::certificate::issued(aws, cert).await?;
            }
            aws.elbv2
                .modify_listener()
                .listener_arn(&have.physical_id)
                .port(i32::from(w.port))
                .protocol(ProtocolEnum::from(w.protocol.as_str()))
                .set_certificates(certificates(w))
                .default_actions(w.default_action.to_aws())
                .send()
                .await
                .map_err(sdk_error("elbv2", "ModifyListener"))?;
        }
        Ok(())
    }

    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        gone_ok(
            aws.elbv2
                .delete_listener()
                .listener_arn(physical)
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_error("elbv2", "DeleteListener")),
        )
    }
}
