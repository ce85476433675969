//! `infra output`: values of the applied environment, read from state (no AWS call).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::Kind;
use crate::naming::id;
use crate::state::StateDoc;

/// Every output, by name. `domain`: the name the file gives the load balancer; once its record
/// is applied, the environment's `url` is `https://` that name.
pub fn outputs(
    state: &StateDoc,
    domain: Option<&str>,
    region: &str,
) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let ids = |kind: Kind, prefix: &str| -> Vec<Value> {
        state
            .resources
            .iter()
            .filter(|(id, r)| r.kind == kind && id.starts_with(prefix))
            .map(|(_, r)| Value::String(r.physical_id.clone()))
            .collect()
    };
    if let Some(vpc) = state.physical_id(id::VPC) {
        out.insert("vpc_id", json!(vpc));
    }
    out.insert(
        "public_subnet_ids",
        Value::Array(ids(Kind::Subnet, &id::subnet("public", ""))),
    );
    out.insert(
        "private_subnet_ids",
        Value::Array(ids(Kind::Subnet, &id::subnet("private", ""))),
    );
    let nat_ips: Vec<Value> = state
        .resources
        .values()
        .filter(|r| r.kind == Kind::ElasticIp)
        .filter_map(|r| r.attributes.get("public_ip").cloned())
        .collect();
    out.insert("nat_public_ips", Value::Array(nat_ips));
    let repos: serde_json::Map<String, Value> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == Kind::Repository)
        .filter_map(|(id, r)| {
            let key = id.strip_prefix(&id::repository(""))?;
            Some((key.to_string(), r.attributes.get("uri")?.clone()))
        })
        .collect();
    if !repos.is_empty() {
        out.insert("repository_urls", Value::Object(repos));
    }
    if let Some(lb) = state.resources.get(id::LOAD_BALANCER) {
        out.insert("load_balancer_dns", lb.attributes["dns_name"].clone());
        // Where the environment answers: the load balancer's address on its HTTP listener.
        if let Some(dns) = lb.attributes["dns_name"].as_str() {
            let port = state
                .resources
                .get(id::LISTENER_HTTP)
                .and_then(|l| l.attributes["port"].as_u64())
                .filter(|p| *p != 80)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            out.insert("url", json!(format!("http://{dns}{port}")));
        }
    }
    if let Some(name) = domain.filter(|n| state.resources.contains_key(&id::dns_record(n))) {
        let port = state
            .resources
            .get(id::LISTENER_HTTPS)
            .and_then(|l| l.attributes["port"].as_u64())
            .filter(|p| *p != 443)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        out.insert("url", json!(format!("https://{name}{port}")));
    }
    // The databases' addresses, the way to the bastion, and through it to each database.
    let databases: Vec<(&str, &str)> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == Kind::Database)
        .filter_map(|(id, r)| {
            Some((
                id.strip_prefix("database.")?,
                r.attributes["address"].as_str()?,
            ))
        })
        .collect();
    if !databases.is_empty() {
        out.insert(
            "database_endpoints",
            Value::Object(
                databases
                    .iter()
                    .map(|(n, a)| (n.to_string(), json!(format!("{a}:5432"))))
                    .collect(),
            ),
        );
    }
    if let Some(b) = state.resources.get(id::BASTION) {
        let instance = &b.physical_id;
        let ssh = b.attributes["key_name"]
            .as_str()
            .zip(b.attributes["public_ip"].as_str());
        let connect = match ssh {
            Some((key, ip)) => format!("ssh -i {key}.pem ec2-user@{ip}"),
            None => format!("aws ssm start-session --region {region} --target {instance}"),
        };
        out.insert("bastion", json!(connect));
        let tunnels: serde_json::Map<String, Value> = databases
            .iter()
            .map(|(n, address)| {
                let command = match ssh {
                    Some((key, ip)) => {
                        format!("ssh -i {key}.pem -N -L 5432:{address}:5432 ec2-user@{ip}")
                    }
                    None => format!(
                        "aws ssm start-session --region {region} --target {instance} --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters host={address},portNumber=5432,localPortNumber=5432"
                    ),
                };
                (n.to_string(), json!(command))
            })
            .collect();
        if !tunnels.is_empty() {
            out.insert("database_tunnels", Value::Object(tunnels));
        }
    }
    // Each service with what it runs: its task definition revision, the image it pins, and the
    // tag it was deployed with (`infra:image`) and that image's digest.
    let services: Vec<Value> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == Kind::Service)
        .map(|(_, r)| {
            let td_arn = r.attributes["task_definition"].as_str().unwrap_or_default();
            let td = state.resources.values().find(|t| t.physical_id == td_arn);
            let image = td.and_then(|t| t.attributes["container"]["image"].as_str());
            let shown = td.and_then(|t| t.attributes["tags"]["infra:image"].as_str());
            json!({
                "name": r.attributes["name"],
                "task_definition": td_arn,
                "image": image,
                "tag": shown.and_then(|s| s.split_once(':')).map(|(_, t)| t),
                "digest": image.and_then(|i| i.split_once('@')).map(|(_, d)| d),
            })
        })
        .collect();
    if !services.is_empty() {
        out.insert("services", Value::Array(services));
    }
    if let Some(c) = state.resources.get(id::CLUSTER) {
        out.insert("cluster", c.attributes["name"].clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateResource;

    #[test]
    fn outputs_come_from_state() {
        let mut doc = StateDoc::new("stage");
        for (id, kind, phys, attrs) in [
            ("vpc", Kind::Vpc, "vpc-1", json!({})),
            (
                "subnet.public.us-east-1a",
                Kind::Subnet,
                "subnet-a",
                json!({}),
            ),
            (
                "subnet.private.us-east-1a",
                Kind::Subnet,
                "subnet-b",
                json!({}),
            ),
            (
                "elastic-ip.us-east-1a",
                Kind::ElasticIp,
                "eipalloc-1",
                json!({"public_ip": "1.2.3.4"}),
            ),
            (
                "repository.web",
                Kind::Repository,
                "stage/web",
                json!({"uri": "123.dkr.ecr/stage/web"}),
            ),
            (
                "cluster",
                Kind::Cluster,
                "arn:cluster",
                json!({"name": "stage"}),
            ),
            (
                "task-definition.web",
                Kind::TaskDefinition,
                "arn:td/stage-web:3",
                json!({"container": {"image": "123.dkr.ecr/stage/web@sha256:ab"}, "tags": {"infra:image": "web:3f2a1c"}}),
            ),
            (
                "service.web",
                Kind::Service,
                "arn:svc/stage/web",
                json!({"name": "web", "task_definition": "arn:td/stage-web:3"}),
            ),
            (
                "load-balancer",
                Kind::LoadBalancer,
                "arn:lb",
                json!({"dns_name": "stage-1.us-east-1.elb.amazonaws.com"}),
            ),
            (
                "listener.http",
                Kind::Listener,
                "arn:l",
                json!({"port": 8080}),
            ),
        ] {
            doc.resources.insert(
                id.into(),
                StateResource {
                    kind,
                    physical_id: phys.into(),
                    attributes: attrs,
                    depends_on: vec![],
                    protected: false,
                },
            );
        }
        let o = outputs(&doc, None, "us-east-1");
        assert_eq!(o["vpc_id"], "vpc-1");
        assert_eq!(o["public_subnet_ids"], json!(["subnet-a"]));
        assert_eq!(o["private_subnet_ids"], json!(["subnet-b"]));
        assert_eq!(o["nat_public_ips"], json!(["1.2.3.4"]));
        assert_eq!(
            o["repository_urls"],
            json!({"web": "123.dkr.ecr/stage/web"})
        );
        assert_eq!(o["cluster"], "stage");
        assert_eq!(o["url"], "http://stage-1.us-east-1.elb.amazonaws.com:8080");
        // A domain the file names is the address once its record is applied, not before.
        assert_eq!(
            outputs(&doc, Some("app.example.com"), "us-east-1")["url"],
            "http://stage-1.us-east-1.elb.amazonaws.com:8080"
        );
        let mut with_domain = doc.clone();
        with_domain.resources.insert(
            "dns-record.app.example.com".into(),
            StateResource {
                kind: Kind::DnsRecord,
                physical_id: "Z1/app.example.com./A".into(),
                attributes: json!({"type": "A"}),
                depends_on: vec![],
                protected: false,
            },
        );
        assert_eq!(
            outputs(&with_domain, Some("app.example.com"), "us-east-1")["url"],
            "https://app.example.com"
        );
        assert_eq!(
            o["services"],
            json!([{
                "name": "web",
                "task_definition": "arn:td/stage-web:3",
                "image": "123.dkr.ecr/stage/web@sha256:ab",
                "tag": "3f2a1c",
                "digest": "sha256:ab",
            }])
        );
    }
}
