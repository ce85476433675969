//! The ACM certificate of `load_balancer.domain`: the name and its aliases, validated by DNS.
//! Requested with its tags; its validation records (the CNAMEs ACM asks for, one per name) are
//! outputs that the `dns-record.validation.*` resources write into the zone. The HTTPS listener
//! waits for it to be issued (`issued`). A change of names replaces it create-before-destroy:
//! the new one is issued and attached before the old one is deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_acm::types::{CertificateDetail, CertificateStatus, Tag, ValidationMethod};
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Iam, IamScope, Live, ResourceKind, Scope, Tags, Want, absent_ok, gone_ok};
use crate::aws::tags::{self, TagApi};
use crate::aws::{Aws, sdk_error, wait};
use crate::error::AwsError;
use crate::model::Schema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attrs {
    pub domain_name: String,
    /// The other names it covers (a set; the domain name itself is not repeated).
    pub subject_alternative_names: Vec<String>,
    pub validation_method: String,
}

/// What ACM says of it: where it stands, until when, and the records that prove the names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    pub status: Option<String>,
    /// RFC 3339, once issued.
    pub not_after: Option<String>,
    /// The CNAME ACM looks for, by the name it validates.
    pub validation: BTreeMap<String, ValidationRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub name: String,
    pub value: String,
}

pub struct Certificate;

impl super::Desire for Attrs {
    type Kind = Certificate;
}

/// How long the HTTPS listener waits for its certificate to be issued. DNS validation usually
/// takes minutes once the records resolve; ACM itself gives up after 72 hours.
pub const ISSUE_WAIT: Duration = Duration::from_secs(45 * 60);

/// How long a new certificate may take to show the records it wants (AWS: seconds).
const RECORDS_WAIT: Duration = Duration::from_secs(120);

/// How long a certificate the load balancer just let go of may stay "in use" (AWS: seconds).
const RELEASE_WAIT: Duration = Duration::from_secs(300);

fn live(c: &CertificateDetail, tags: Tags) -> Option<Live<Attrs, Outputs>> {
    let domain_name = c.domain_name()?.to_string();
    let mut sans: Vec<String> = c
        .subject_alternative_names()
        .iter()
        .filter(|n| **n != domain_name)
        .cloned()
        .collect();
    sans.sort();
    let validation = c
        .domain_validation_options()
        .iter()
        .filter_map(|o| {
            let r = o.resource_record()?;
            Some((
                o.domain_name().to_string(),
                ValidationRecord {
                    name: r.name().to_ascii_lowercase(),
                    value: r.value().to_ascii_lowercase(),
                },
            ))
        })
        .collect();
    let method = c
        .domain_validation_options()
        .first()
        .and_then(|o| o.validation_method())
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "DNS".into());
    Some(Live {
        physical_id: c.certificate_arn()?.to_string(),
        attrs: Attrs {
            domain_name,
            subject_alternative_names: sans,
            validation_method: method,
        },
        outputs: Outputs {
            status: c.status().map(|s| s.as_str().to_string()),
            not_after: c
                .not_after()
                .and_then(|t| jiff::Timestamp::from_second(t.secs()).ok())
                .map(|t| t.to_string()),
            validation,
        },
        tags,
    })
}

async fn describe(aws: &Aws, arn: &str) -> Result<Option<CertificateDetail>, AwsError> {
    absent_ok(
        aws.acm()
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .map(|out| out.certificate)
            .map_err(sdk_error("acm", "DescribeCertificate")),
    )
}

async fn tags_of(aws: &Aws, arn: &str) -> Result<Tags, AwsError> {
    let out = aws
        .acm()
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .map_err(sdk_error("acm", "ListTagsForCertificate"))?;
    Ok(tags::collect(
        out.tags()
            .iter()
            .map(|t| (t.key(), t.value().unwrap_or_default())),
    ))
}

/// The certificate as ACM has it now (None once deleted), with `tags` or its own.
async fn read_one(
    aws: &Aws,
    arn: &str,
    tags: Option<Tags>,
) -> Result<Option<Live<Attrs, Outputs>>, AwsError> {
    let (detail, tags) = futures::try_join!(describe(aws, arn), async {
        match tags {
            Some(t) => Ok(t),
            None => tags_of(aws, arn).await,
        }
    })?;
    Ok(detail.as_ref().and_then(|c| live(c, tags)))
}

/// Waits until the certificate `arn` is issued: the HTTPS listener cannot use it before. When
/// it does not come, the error names the records ACM looks for and how to check the zone.
pub async fn issued(aws: &Aws, arn: &str) -> Result<(), AwsError> {
    let found = wait::within(
        &format!("the certificate {arn} to be issued"),
        ISSUE_WAIT,
        || async {
            let c = describe(aws, arn).await?.ok_or_else(|| {
                AwsError::local(
                    "acm",
                    "DescribeCertificate",
                    format!("the certificate {arn} does not exist"),
                )
            })?;
            match c.status() {
                Some(CertificateStatus::Issued) => Ok(Some(())),
                Some(CertificateStatus::PendingValidation) | None => Ok(None),
                Some(other) => Err(AwsError::local(
                    "acm",
                    "DescribeCertificate",
                    format!(
                        "the certificate {arn} is {} ({}): it will not be issued; delete it (`aws acm delete-certificate --certificate-arn {arn}`) and apply again, which requests a new one",
                        other.as_str(),
                        c.failure_reason()
                            .map(|r| r.as_str())
                            .unwrap_or("no reason given")
                    ),
                )),
            }
        },
    )
    .await?;
    if found.is_some() {
        return Ok(());
    }
    let records = describe(aws, arn)
        .await?
        .map(|c| {
            c.domain_validation_options()
                .iter()
                .filter_map(|o| o.resource_record())
                .map(|r| format!("{} CNAME {}", r.name(), r.value()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Err(AwsError::local(
        "acm",
        "DescribeCertificate",
        format!(
            "the certificate {arn} is still waiting for DNS validation after {} minutes. ACM looks for {records}, which this apply wrote in the domain's hosted zone: check that the domain is delegated to that zone (its NS records at the registrar or parent zone are the zone's name servers, e.g. `dig +short NS <zone>`), then run apply again; state is consistent and the wait resumes",
            ISSUE_WAIT.as_secs() / 60
        ),
    ))
}

#[async_trait::async_trait]
impl ResourceKind for Certificate {
    type Attrs = Attrs;
    type Outputs = Outputs;
    const SCHEMA: Schema = Schema {
        replace_on: &[
            "domain_name",
            "subject_alternative_names",
            "validation_method",
        ],
        set_fields: &["subject_alternative_names"],
        create_before_destroy: true,
        deep_fields: &[],
    };
    const TAGS: TagApi = TagApi::Acm;
    const IAM: Iam = Iam {
        read: &["acm:DescribeCertificate", "acm:ListTagsForCertificate"],
        create: &["acm:RequestCertificate"],
        change: &[],
        delete: &["acm:DeleteCertificate"],
        scope: IamScope::Tags,
    };
    const READS_STATE: bool = false;

    /// One tag lookup finds the environment's certificates; each is described (an environment
    /// has one, two while its names change).
    async fn read(
        &self,
        aws: &Aws,
        scope: Scope<'_>,
    ) -> Result<Vec<Live<Attrs, Outputs>>, AwsError> {
        let found: Vec<(String, Option<Tags>)> = match scope {
            Scope::Environment(_) => tags::tagged(aws, &["acm:certificate"])
                .await?
                .into_iter()
                .map(|(arn, t)| (arn, Some(t)))
                .collect(),
            Scope::Ids(ids) => ids.iter().map(|a| (a.clone(), None)).collect(),
        };
        Ok(try_join_all(
            found
                .into_iter()
                .map(|(arn, t)| async move { read_one(aws, &arn, t).await }),
        )
        .await?
        .into_iter()
        .flatten()
        .collect())
    }

    /// Requests it (tagged), then waits for ACM to say which records prove the names.
    async fn create(&self, aws: &Aws, want: &Want<Attrs>) -> Result<String, AwsError> {
        let a = &want.attrs;
        let tags = want
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AwsError::local("acm", "RequestCertificate", e.to_string()))?;
        let mut names = vec![a.domain_name.clone()];
        names.extend(a.subject_alternative_names.iter().cloned());
        let arn = aws
            .acm()
            .request_certificate()
            // A retried request whose answer was lost gets the same certificate, not a twin.
            .idempotency_token(uuid::Uuid::new_v4().simple().to_string())
            .domain_name(&a.domain_name)
            .set_subject_alternative_names(Some(names.clone()))
            .validation_method(ValidationMethod::from(a.validation_method.as_str()))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(sdk_error("acm", "RequestCertificate"))?
            .certificate_arn
            .unwrap_or_default();
        wait::until(
            "acm",
            "DescribeCertificate",
            &format!("the certificate {arn} to name its validation records"),
            RECORDS_WAIT,
            || async {
                let c = describe(aws, &arn).await?;
                let ready = c.is_some_and(|c| {
                    names.iter().all(|n| {
                        c.domain_validation_options()
                            .iter()
                            .any(|o| o.domain_name() == n && o.resource_record().is_some())
                    })
                });
                Ok(ready.then_some(()))
            },
        )
        .await?;
        Ok(arn)
    }

    /// Deletes it once no listener holds it: the load balancer lets go a few seconds after the
    /// listener moved to the new one.
    async fn delete(&self, aws: &Aws, physical: &str) -> Result<(), AwsError> {
        wait::until(
            "acm",
            "DeleteCertificate",
            &format!("the load balancer to let go of the certificate {physical}"),
            RELEASE_WAIT,
            || async {
                let r = aws
                    .acm()
                    .delete_certificate()
                    .certificate_arn(physical)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(sdk_error("acm", "DeleteCertificate"));
                match r {
                    Err(e) if e.code.as_deref() == Some("ResourceInUseException") => Ok(None),
                    other => gone_ok(other).map(Some),
                }
            },
        )
        .await
    }
}
