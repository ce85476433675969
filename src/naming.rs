//! Every AWS name and logical id `infra` gives a resource, in one place. `desired` names what it
//! asks for with these, adapters find what exists with the same functions, and `outputs`, `ops`
//! and image resolution read names back through them, so a name is never spelled twice. Pure.

/// Logical ids (`vpc`, `subnet.public.us-east-1a`, `service.web`, …): stable, readable, and the
/// `infra:id` tag of the resource.
pub mod id {
    pub const VPC: &str = "vpc";
    pub const INTERNET_GATEWAY: &str = "internet-gateway";
    pub const LOAD_BALANCER: &str = "load-balancer";
    pub const CLUSTER: &str = "cluster";
    pub const EXECUTION_ROLE: &str = "role.task-execution";
    pub const ALB_SECURITY_GROUP: &str = "security-group.alb";
    pub const ROUTE_TABLE_PUBLIC: &str = "route-table.public";
    pub const LISTENER_HTTP: &str = "listener.http";
    pub const LISTENER_HTTPS: &str = "listener.https";
    /// The listener on `test_port` that reaches a new revision before production does.
    pub const LISTENER_TEST: &str = "listener.test";
    /// The role ECS assumes to shift load balancer traffic in blue/green, canary and linear
    /// deployments.
    pub const INFRASTRUCTURE_ROLE: &str = "role.ecs-infrastructure";
    pub const ALARM_TOPIC: &str = "alarm-topic";
    pub const DASHBOARD: &str = "dashboard";
    pub const DB_SUBNET_GROUP: &str = "db-subnet-group";
    pub const BASTION: &str = "bastion";
    pub const BASTION_ROLE: &str = "role.bastion";
    pub const BASTION_PROFILE: &str = "instance-profile.bastion";
    pub const BASTION_SECURITY_GROUP: &str = "security-group.bastion";
    pub const ROUTE_TABLE_DATABASE: &str = "route-table.database";

    pub fn database(name: &str) -> String {
        format!("database.{name}")
    }
    pub fn database_security_group(name: &str) -> String {
        format!("security-group.database.{name}")
    }
    /// The ACM certificate infra requests for `load_balancer.domain`.
    pub const CERTIFICATE: &str = "certificate";

    /// The CNAME that proves to ACM that the environment holds `name`.
    pub fn validation_record(name: &str) -> String {
        format!("dns-record.validation.{name}")
    }
    /// The alias record that points `name` at the load balancer.
    pub fn dns_record(name: &str) -> String {
        format!("dns-record.{name}")
    }

    /// `public` or `private` subnet of a zone.
    pub fn subnet(tier: &str, zone: &str) -> String {
        format!("subnet.{tier}.{zone}")
    }
    pub fn elastic_ip(zone: &str) -> String {
        format!("elastic-ip.{zone}")
    }
    pub fn nat(zone: &str) -> String {
        format!("nat.{zone}")
    }
    pub fn private_route_table(zone: &str) -> String {
        format!("route-table.private.{zone}")
    }
    pub fn service_security_group(service: &str) -> String {
        format!("security-group.service.{service}")
    }
    pub fn repository(key: &str) -> String {
        format!("repository.{key}")
    }
    pub fn log_group(service: &str) -> String {
        format!("log-group.{service}")
    }
    pub fn target_group(service: &str) -> String {
        format!("target-group.{service}")
    }
    /// The second target group of a blue/green, canary or linear service.
    pub fn green_target_group(service: &str) -> String {
        format!("target-group.{service}.green")
    }
    pub fn listener_rule(service: &str) -> String {
        format!("listener-rule.{service}")
    }
    /// A blue/green, canary or linear service's rule on the test listener.
    pub fn test_listener_rule(service: &str) -> String {
        format!("listener-rule.{service}.test")
    }
    pub fn task_definition(service: &str) -> String {
        format!("task-definition.{service}")
    }
    pub fn service(service: &str) -> String {
        format!("service.{service}")
    }
    pub fn scalable_target(service: &str) -> String {
        format!("scalable-target.{service}")
    }
    /// `what`: a service's `<svc>.cpu|memory|unhealthy|running`, `alb.5xx|latency`,
    /// `nat.<zone>`.
    pub fn alarm(what: &str) -> String {
        format!("alarm.{what}")
    }
    /// `metric`: `cpu`, `memory` or `requests`.
    pub fn scaling_policy(service: &str, metric: &str) -> String {
        format!("scaling-policy.{service}.{metric}")
    }
}

/// The load balancer's name: the environment's.
pub fn load_balancer(env: &str) -> String {
    env.to_string()
}

/// A target group name: `<env>-<service>`, or when that exceeds AWS's 32 characters, a prefix of
/// it and a stable hash of the whole.
pub fn target_group(env: &str, service: &str) -> String {
    let full = format!("{env}-{service}");
    if full.len() <= 32 {
        return full;
    }
    // FNV-1a: stable across builds and platforms.
    let hash = full.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let prefix = full[..23].trim_end_matches('-');
    format!("{prefix}-{hash:08x}")
}

/// The second ("green") target group of a service: `<env>-<service>-g`, shortened like any other.
pub fn green_target_group(env: &str, service: &str) -> String {
    target_group(env, &format!("{service}-g"))
}

/// The task definition family of a service.
pub fn task_family(env: &str, service: &str) -> String {
    format!("{env}-{service}")
}

/// Every ECR repository of the environment starts with this.
pub fn repository_prefix(env: &str) -> String {
    format!("{env}/")
}

pub fn repository(env: &str, key: &str) -> String {
    format!("{}{key}", repository_prefix(env))
}

/// Every log group of the environment starts with this.
pub fn log_group_prefix(env: &str) -> String {
    format!("/ecs/{env}/")
}

pub fn log_group(env: &str, service: &str) -> String {
    format!("{}{service}", log_group_prefix(env))
}

/// The task execution role. IAM names are global to the account, hence the region.
pub fn execution_role(env: &str, region: &str) -> String {
    format!("infra-{env}-{region}-task-execution")
}

/// The role ECS uses to move load balancer traffic during blue/green, canary and linear
/// deployments (region in the name, like the execution role).
pub fn infrastructure_role(env: &str, region: &str) -> String {
    format!("infra-{env}-{region}-ecs-infra")
}

/// What Application Auto Scaling calls an ECS service.
pub fn scalable_resource(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// A scaling policy's name (policies cannot be tagged: the name is their identity). With empty
/// `service` and `metric`, the prefix every policy of the environment has.
pub fn scaling_policy(env: &str, service: &str, metric: &str) -> String {
    if service.is_empty() {
        format!("infra-{env}-")
    } else {
        format!("infra-{env}-{service}-{metric}")
    }
}

/// Every alarm of the environment starts with this.
pub fn alarm_prefix(env: &str) -> String {
    format!("infra-{env}-")
}

/// An alarm's name: `infra-<env>-<what>`, `what` as in its logical id with `-` for `.`
/// (`web-cpu`, `alb-5xx`, `nat-us-east-1a`).
pub fn alarm(env: &str, what: &str) -> String {
    format!("{}{}", alarm_prefix(env), what.replace('.', "-"))
}

/// The SNS topic alarms notify.
pub fn alarm_topic(env: &str) -> String {
    format!("infra-{env}-alarms")
}

/// The environment's CloudWatch dashboard (dashboards cannot be tagged: the name is its
/// identity).
pub fn dashboard(env: &str) -> String {
    format!("infra-{env}")
}

/// The bastion's role and instance profile (IAM is global: the name carries the region).
pub fn bastion(env: &str, region: &str) -> String {
    format!("infra-{env}-{region}-bastion")
}

/// The DB subnet group of the environment's databases.
pub fn db_subnet_group(env: &str) -> String {
    format!("{env}-db")
}

/// The RDS instance identifier of `databases.<name>`.
pub fn database(env: &str, name: &str) -> String {
    format!("{env}-{name}")
}

pub fn database_security_group(env: &str, name: &str) -> String {
    format!("{env}-database-{name}")
}

pub fn alb_security_group(env: &str) -> String {
    format!("{env}-alb")
}

pub fn service_security_group(env: &str, service: &str) -> String {
    format!("{env}-service-{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(load_balancer("stage"), "stage");
        assert_eq!(target_group("stage", "web"), "stage-web");
        assert_eq!(green_target_group("stage", "web"), "stage-web-g");
        assert_eq!(task_family("stage", "web"), "stage-web");
        assert_eq!(repository("stage", "web"), "stage/web");
        assert_eq!(log_group("stage", "web"), "/ecs/stage/web");
        assert_eq!(
            execution_role("stage", "us-east-1"),
            "infra-stage-us-east-1-task-execution"
        );
        assert_eq!(
            infrastructure_role("stage", "us-east-1"),
            "infra-stage-us-east-1-ecs-infra"
        );
        assert_eq!(
            id::subnet("public", "us-east-1a"),
            "subnet.public.us-east-1a"
        );
    }

    #[test]
    fn long_target_group_names_fit_and_stay_distinct() {
        let a = target_group("production-europe", "payments-reconciliation");
        let b = target_group("production-europe", "payments-reconciliation2");
        assert!(a.len() <= 32 && b.len() <= 32);
        assert_ne!(a, b);
        assert_eq!(
            a,
            target_group("production-europe", "payments-reconciliation")
        );
    }
}
