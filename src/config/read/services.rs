//! `services`: each service, its image, environment, secrets, deployment and autoscaling, and the
//! quotas that grow with their number.

use super::*;

/// Valid Fargate task sizes: memory (MiB) allowed for each cpu (units).
pub fn fargate_memory_ok(cpu: u32, memory: u32) -> bool {
    let gib = |g: u32| g * 1024;
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (gib(1)..=gib(4)).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (gib(2)..=gib(8)).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (gib(4)..=gib(16)).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (gib(8)..=gib(30)).contains(&memory) && memory.is_multiple_of(1024),
        8192 => (gib(16)..=gib(60)).contains(&memory) && memory.is_multiple_of(gib(4)),
        16384 => (gib(32)..=gib(120)).contains(&memory) && memory.is_multiple_of(gib(8)),
        _ => false,
    }
}

/// What `uses` gives a service: the database's address, port and name, and the user and
/// password of its managed secret.
pub const DB_VARIABLES: &[&str] = &["DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"];

pub(super) fn services(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
    lb: Option<&LoadBalancer>,
    lb_given: bool,
    alarms_given: bool,
    region: Option<&str>,
) -> Option<BTreeMap<String, Service>> {
    let f = r.open_mapping(n)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    // (pattern, service, span) for duplicate detection; services on the default action.
    let mut paths: HashMap<String, String> = HashMap::new();
    let mut default_action: Option<String> = None;
    // Key spans, in file order, once per target group and per listener rule a service gets.
    let (mut with_port, mut routed): (Vec<Span>, Vec<Span>) = (Vec::new(), Vec::new());
    // The first test port given, and its service: a load balancer has one test listener.
    let mut test: Option<(u16, String)> = None;
    for (name, key_span, value) in f.iter() {
        let valid = (1..=255).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            r.error(
                key_span,
                format!("service name `{name}` must start with a letter and use letters, digits, `-` and `_`"),
            );
            ok = false;
            continue;
        }
        match service(
            r,
            name,
            key_span,
            value,
            repos,
            lb,
            (lb_given, alarms_given),
            region,
            &mut paths,
            &mut default_action,
        ) {
            Some(s) => {
                if s.port.is_some() && lb.is_some() {
                    let shifts = s.deployment.shifts_traffic();
                    // A traffic-shifting service has a second target group, a rule even on
                    // the default action, and one more on the test listener.
                    with_port.extend(std::iter::repeat_n(key_span, 1 + usize::from(shifts)));
                    let rules = usize::from(!s.path_patterns.is_empty() || shifts)
                        + usize::from(shifts && s.deployment.test_port.is_some());
                    routed.extend(std::iter::repeat_n(key_span, rules));
                }
                if let Some(port) = s.deployment.test_port {
                    match &test {
                        Some((first, other)) if *first != port => {
                            let at = value_of(value, "deployment")
                                .and_then(|d| value_span(d, "test_port"))
                                .unwrap_or(key_span);
                            r.error_hint(
                                at,
                                format!("`test_port` {port} differs from service `{other}`'s {first}: the load balancer has one test listener"),
                                format!("give every service the same test_port ({first})"),
                            );
                            ok = false;
                        }
                        Some(_) => {}
                        None => test = Some((port, name.to_string())),
                    }
                }
                out.insert(name.to_string(), s);
            }
            None => ok = false,
        }
    }
    // Quotas that grow with the file: refused here, with the line that crosses them, rather
    // than halfway through an apply.
    for (spans, quota, what) in [
        (
            &with_port,
            quotas::TARGET_GROUPS_PER_LOAD_BALANCER,
            "Target groups per Application Load Balancer",
        ),
        (
            &routed,
            quotas::RULES_PER_LOAD_BALANCER,
            "Rules per Application Load Balancer",
        ),
    ] {
        if let Some(&at) = spans.get(quota) {
            r.error_hint(
                at,
                format!(
                    "the services up to here need {} of AWS's `{what}`, whose default quota is {quota}",
                    spans.len()
                ),
                "split the services across environments, or have the quota raised for the account",
            );
            ok = false;
        }
    }
    if let Some(at) = f
        .iter()
        .nth(quotas::SERVICES_PER_CLUSTER)
        .map(|(_, s, _)| s)
    {
        r.error(
            at,
            format!(
                "more than {} services: AWS's `Services per cluster` quota",
                quotas::SERVICES_PER_CLUSTER
            ),
        );
        ok = false;
    }
    ok.then_some(out)
}

#[allow(clippy::too_many_arguments)]
fn service(
    r: &mut Reader<'_>,
    name: &str,
    key_span: Span,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
    lb: Option<&LoadBalancer>,
    (lb_given, alarms_given): (bool, bool),
    region: Option<&str>,
    paths: &mut HashMap<String, String>,
    default_action: &mut Option<String>,
) -> Option<Service> {
    let f = r.mapping(n, &keys(schema::SERVICE))?;
    let image = r.require(&f, "image").and_then(|n| image(r, n, repos));
    let cpu_node = r.require(&f, "cpu");
    let cpu = cpu_node.and_then(|n| r.int(n, 256, 16384).map(|v| v as u32));
    let memory_node = r.require(&f, "memory");
    let memory = memory_node.and_then(|n| r.int(n, 512, 122880).map(|v| v as u32));
    if let (Some(c), Some(m), Some(mn)) = (cpu, memory, memory_node)
        && !fargate_memory_ok(c, m)
    {
        r.error_hint(
                mn.span,
                format!("Fargate has no task size with cpu {c} and memory {m}"),
                "cpu 256 takes 512, 1024 or 2048; cpu 512 takes 1024-4096; cpu 1024 takes 2048-8192; cpu 2048 takes 4096-16384; cpu 4096 takes 8192-30720 (steps of 1024)",
            );
    }
    let port_node = f.get("port");
    let port = match port_node {
        Some(p) => port(r, p).map(Some),
        None => Some(None),
    };
    if let (Some(Some(_)), Some(pn)) = (port, port_node)
        && !lb_given
    {
        r.error_hint(
            pn.span,
            format!("service `{name}` has a port but the environment has no `load_balancer`"),
            "add `load_balancer: {}` to use the defaults",
        );
    }
    let desired_count = f
        .get("desired_count")
        .map(|n| r.int(n, 0, 5000).map(|v| v as u32))
        .unwrap_or(Some(1));
    let health_check_path = match f.get("health_check_path") {
        Some(n) => r.string(n).and_then(|p| {
            if !p.starts_with('/') || p.len() > 1024 {
                r.error(
                    n.span,
                    format!("health check path `{p}` must start with `/`"),
                );
                return None;
            }
            Some(p)
        }),
        None => Some("/".to_string()),
    };
    let path_patterns = match f.get("path_patterns") {
        None => Some(Vec::new()),
        Some(list) => r.sequence(list).map(|items| {
            let mut out = Vec::new();
            for item in items {
                let Some(p) = r.string(item) else { continue };
                if !p.starts_with('/') || p.len() > 128 {
                    r.error(
                        item.span,
                        format!(
                            "path pattern `{p}` must start with `/` and be at most 128 characters"
                        ),
                    );
                    continue;
                }
                if let Some(other) = paths.get(&p) {
                    r.error(
                        item.span,
                        format!("path pattern `{p}` is already routed to service `{other}`"),
                    );
                    continue;
                }
                paths.insert(p.clone(), name.to_string());
                out.push(p);
            }
            if items.len() > 5 {
                r.error(list.span, "an ALB rule takes at most 5 path patterns");
            }
            out
        }),
    };
    if let (Some(Some(_)), Some(patterns)) = (port, &path_patterns)
        && patterns.is_empty()
        && lb.is_some()
    {
        if let Some(other) = default_action.as_ref() {
            r.error_hint(
                    key_span,
                    format!("services `{other}` and `{name}` both have a port and no `path_patterns`; only one can take the listener's default action"),
                    "give one of them `path_patterns`",
                );
        } else {
            *default_action = Some(name.to_string());
        }
    }
    let environment = f
        .get("environment")
        .map(|n| env_vars(r, n))
        .unwrap_or_default();
    let secrets = f
        .get("secrets")
        .map(|n| secrets(r, n, region))
        .unwrap_or_default();
    if let Some(dup) = secrets.keys().find(|k| environment.contains_key(*k)) {
        let at = f.get("secrets").map(|n| n.span).unwrap_or(f.span);
        r.error(
            at,
            format!("`{dup}` is both an environment variable and a secret"),
        );
    }
    // Which databases it reaches (that they exist is checked with `databases`); their variables
    // are the service's own.
    let uses = match f.get("uses") {
        None => Some(Vec::new()),
        Some(list) => r.sequence(list).map(|items| {
            let mut out: Vec<String> = Vec::new();
            for item in items {
                let Some(db) = r.string(item) else { continue };
                if out.contains(&db) {
                    r.error(item.span, format!("database `{db}` is listed twice"));
                    continue;
                }
                out.push(db);
            }
            out
        }),
    };
    if let (Some(u), Some(list)) = (&uses, f.get("uses"))
        && !u.is_empty()
    {
        for var in DB_VARIABLES {
            if environment.contains_key(*var) || secrets.contains_key(*var) {
                r.error(
                    list.span,
                    format!("`{var}` is set by `uses` and also by the service's own environment or secrets"),
                );
            }
        }
    }
    let deployment = match f.get("deployment") {
        Some(n) => deployment(r, n, alarms_given),
        None => Some(Deployment {
            strategy: Strategy::Rolling,
            min_healthy_percent: 100,
            max_percent: 200,
            circuit_breaker: CircuitBreaker::Rollback,
            bake_minutes: 0,
            canary_percent: None,
            step_percent: None,
            step_bake_minutes: None,
            test_port: None,
            rollback_alarms: false,
        }),
    };
    // What blue/green, canary and linear need of the service, at the `strategy` line.
    if let (Some(d), Some(dn)) = (&deployment, f.get("deployment"))
        && d.strategy != Strategy::Rolling
    {
        let at = strategy_span(dn).unwrap_or(dn.span);
        let has_port = matches!(port, Some(Some(_)));
        if !has_port || !lb_given {
            r.error_hint(
                at,
                "blue_green, canary and linear shift load balancer traffic between two target groups: the service needs a `port` and the environment a `load_balancer`",
                "give the service a port behind the load balancer, or use `strategy: rolling`",
            );
        }
        if let (Some(test), Some(lb)) = (d.test_port, lb)
            && (test == lb.http_port || lb.https.as_ref().is_some_and(|h| h.port == test))
        {
            r.error(
                at,
                format!("`test_port` {test} is a port the load balancer already listens on for production traffic"),
            );
        }
    }
    let autoscaling = match f.get("autoscaling") {
        Some(n) => autoscaling(
            r,
            n,
            desired_count,
            matches!(port, Some(Some(_))) && lb_given,
        )
        .map(Some),
        None => Some(None),
    };
    Some(Service {
        image: image?,
        cpu: cpu?,
        memory: memory?,
        port: port?,
        desired_count: desired_count?,
        health_check_path: health_check_path?,
        path_patterns: path_patterns?,
        environment,
        secrets,
        uses: uses?,
        deployment: deployment?,
        autoscaling: autoscaling?,
    })
}

fn image(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    repos: Option<&BTreeMap<String, Repository>>,
) -> Option<Image> {
    let text = r.string(n)?;
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        r.error(n.span, format!("`{text}` is not an image reference"));
        return None;
    }
    // A full reference has a registry or a namespace: anything with a `/`.
    if text.contains('/') {
        return Some(Image::External(text));
    }
    // No tag: the pipeline owns it (`--image KEY=TAG`), never an implied `latest`.
    let (key, tag) = match text.split_once(':') {
        Some((k, t)) => (k, Some(t)),
        None => (text.as_str(), None),
    };
    if tag.is_some_and(|tag| tag.is_empty() || tag.len() > 128) {
        r.error(n.span, format!("`{text}` has an empty or too long tag"));
        return None;
    }
    if repos.is_some_and(|repos| repos.contains_key(key)) {
        return Some(Image::Repository {
            key: key.to_string(),
            tag: tag.map(str::to_string),
        });
    }
    let known: Vec<&str> = repos
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    r.error_hint(
        n.span,
        format!("image `{text}` names repository `{key}`, which is not in `repositories`"),
        if known.is_empty() {
            format!("add `repositories: {{{key}: {{}}}}`, or write a full reference such as `docker.io/library/{text}`")
        } else {
            format!("known repositories: {}; or write a full reference such as `docker.io/library/{text}`", known.join(", "))
        },
    );
    None
}

fn env_vars(r: &mut Reader<'_>, n: &Node<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(f) = r.open_mapping(n) else {
        return out;
    };
    for (key, key_span, value) in f.iter() {
        if !valid_env_name(key) {
            r.error(
                key_span,
                format!("`{key}` is not a valid environment variable name"),
            );
            continue;
        }
        if let Some(v) = r.scalar_string(value) {
            out.insert(key.to_string(), v);
        }
    }
    out
}

fn valid_env_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn secrets(r: &mut Reader<'_>, n: &Node<'_>, region: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(f) = r.open_mapping(n) else {
        return out;
    };
    for (key, key_span, value) in f.iter() {
        if !valid_env_name(key) {
            r.error(
                key_span,
                format!("`{key}` is not a valid environment variable name"),
            );
            continue;
        }
        let Some(arn) = r.string(value) else { continue };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && matches!(parts[2], "secretsmanager" | "ssm")
            && !parts[5].is_empty();
        if !ok {
            r.error(
                value.span,
                format!("secret `{key}` must be a Secrets Manager or SSM parameter ARN"),
            );
            continue;
        }
        if let Some(region) = region
            && parts[3] != region
        {
            r.error(
                value.span,
                format!(
                    "secret `{key}` is in region `{}`, not the environment's `{region}`",
                    parts[3]
                ),
            );
            continue;
        }
        out.insert(key.to_string(), arn);
    }
    out
}

/// The span of `strategy` in a deployment mapping, if it says one.
fn strategy_span(n: &Node<'_>) -> Option<Span> {
    value_span(n, "strategy")
}

/// The span of the value of `key` in mapping `n`.
fn value_span(n: &Node<'_>, key: &str) -> Option<Span> {
    let saphyr::YamlData::Mapping(m) = &n.data else {
        return None;
    };
    m.iter()
        .find(|(k, _)| crate::config::yaml::scalar_text(k).as_deref() == Some(key))
        .map(|(_, v)| v.span)
}

/// The node of the value of `key` in mapping `n`.
fn value_of<'n>(n: &'n Node<'n>, key: &str) -> Option<&'n Node<'n>> {
    let saphyr::YamlData::Mapping(m) = &n.data else {
        return None;
    };
    m.iter()
        .find(|(k, _)| crate::config::yaml::scalar_text(k).as_deref() == Some(key))
        .map(|(_, v)| v)
}

fn deployment(r: &mut Reader<'_>, n: &Node<'_>, alarms_given: bool) -> Option<Deployment> {
    let f = r.mapping(n, &keys(schema::DEPLOYMENT))?;
    let strategy = f
        .get("strategy")
        .map(|n| {
            r.choice(
                n,
                &[
                    ("rolling", Strategy::Rolling),
                    ("blue_green", Strategy::BlueGreen),
                    ("canary", Strategy::Canary),
                    ("linear", Strategy::Linear),
                ],
            )
        })
        .unwrap_or(Some(Strategy::Rolling));
    let min = f
        .get("min_healthy_percent")
        .map(|n| r.int(n, 0, 100).map(|v| v as u32))
        .unwrap_or(Some(100));
    let max = f
        .get("max_percent")
        .map(|n| r.int(n, 100, 200).map(|v| v as u32))
        .unwrap_or(Some(200));
    if let (Some(lo), Some(hi)) = (min, max)
        && lo == 100
        && hi == 100
    {
        let at = f.get("max_percent").map(|n| n.span).unwrap_or(f.span);
        r.error(
            at,
            "min_healthy_percent 100 with max_percent 100 leaves ECS no room to deploy",
        );
    }
    let cb = f
        .get("circuit_breaker")
        .map(|n| {
            r.choice(
                n,
                &[
                    ("off", CircuitBreaker::Off),
                    ("on", CircuitBreaker::On),
                    ("rollback", CircuitBreaker::Rollback),
                ],
            )
        })
        .unwrap_or(Some(CircuitBreaker::Rollback));
    let bake = f
        .get("bake_minutes")
        .map(|n| r.int(n, 0, 1440).map(|v| v as u32));
    let tenth = |r: &mut Reader<'_>, n: &Node<'_>, v: Option<f64>| {
        v.filter(|v| {
            let ok = ((v * 10.0).round() - v * 10.0).abs() < 1e-9;
            if !ok {
                r.error(n.span, format!("{v} is not a multiple of 0.1"));
            }
            ok
        })
    };
    let canary = f.get("canary_percent").map(|n| {
        let v = r.number(n, 0.1, 100.0);
        (n, tenth(r, n, v))
    });
    let step = f.get("step_percent").map(|n| {
        let v = r.number(n, 3.0, 100.0);
        (n, tenth(r, n, v))
    });
    let step_bake = f
        .get("step_bake_minutes")
        .map(|n| (n, r.int(n, 0, 1440).map(|v| v as u32)));
    let test_port = f
        .get("test_port")
        .map(|n| (n, r.int(n, 1, 65535).map(|v| v as u16)));
    let rollback_alarms = match f.get("rollback_alarms") {
        Some(n) => {
            let v = r.boolean(n);
            if v == Some(true) && !alarms_given {
                r.error_hint(
                    n.span,
                    "`rollback_alarms` needs the service's alarms",
                    "add an `alarms:` section (its thresholds have defaults)",
                );
            }
            v
        }
        None => Some(false),
    };
    if let Some(s) = strategy {
        if let (Some(c), true) = (f.get("circuit_breaker"), s != Strategy::Rolling) {
            r.error(
                c.span,
                "`circuit_breaker` applies to rolling deployments; blue_green, canary and linear roll back on their own",
            );
        }
        if let (Some((sb, _)), false) =
            (step_bake, matches!(s, Strategy::Canary | Strategy::Linear))
        {
            r.error(sb.span, "`step_bake_minutes` applies to canary and linear");
        }
        if let (Some((tp, _)), true) = (test_port, s == Strategy::Rolling) {
            r.error(
                tp.span,
                "`test_port` applies to blue_green, canary and linear, not rolling",
            );
        }
        if let (Some(b), true) = (f.get("bake_minutes"), s == Strategy::Rolling) {
            r.error(
                b.span,
                "`bake_minutes` applies to blue_green, canary and linear, not rolling",
            );
        }
        if let Some((cn, _)) = canary.filter(|_| s != Strategy::Canary) {
            r.error(
                cn.span,
                "`canary_percent` applies only to `strategy: canary`",
            );
        }
        if let Some((sn, _)) = step.filter(|_| s != Strategy::Linear) {
            r.error(sn.span, "`step_percent` applies only to `strategy: linear`");
        }
        if s == Strategy::Canary && canary.is_none() {
            r.error(f.span, "`strategy: canary` needs `canary_percent`");
        }
        if s == Strategy::Linear && step.is_none() {
            r.error(f.span, "`strategy: linear` needs `step_percent`");
        }
    }
    Some(Deployment {
        strategy: strategy?,
        min_healthy_percent: min?,
        max_percent: max?,
        circuit_breaker: cb?,
        // AWS's default bake time for the three that bake.
        bake_minutes: bake.unwrap_or(Some(match strategy {
            Some(Strategy::Rolling) | None => 0,
            Some(_) => 5,
        }))?,
        canary_percent: canary.map(|(_, v)| v).transpose_opt()?,
        step_percent: step.map(|(_, v)| v).transpose_opt()?,
        step_bake_minutes: step_bake.map(|(_, v)| v).transpose_opt()?,
        test_port: test_port.map(|(_, v)| v).transpose_opt()?,
        rollback_alarms: rollback_alarms?,
    })
}

/// `Option<Option<T>>` where the inner `None` means "invalid": `Some(None)` → fail.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}

impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}

fn autoscaling(
    r: &mut Reader<'_>,
    n: &Node<'_>,
    desired: Option<u32>,
    behind_lb: bool,
) -> Option<Autoscaling> {
    let f = r.mapping(n, &keys(schema::AUTOSCALING))?;
    let min = r
        .require(&f, "min")
        .and_then(|n| r.int(n, 0, 5000).map(|v| v as u32));
    let max = r
        .require(&f, "max")
        .and_then(|n| r.int(n, 1, 5000).map(|v| v as u32));
    let percent = |r: &mut Reader<'_>, key: &str| {
        f.get(key)
            .map(|n| r.int(n, 1, 100).map(|v| Some(v as u32)))
            .unwrap_or(Some(None))
    };
    let mut cpu = percent(r, "cpu_percent");
    let memory = percent(r, "memory_percent");
    let requests = match f.get("requests_per_target") {
        None => Some(None),
        Some(n) if !behind_lb => {
            r.error_hint(
                n.span,
                "`requests_per_target` counts requests through the load balancer, and this service has none",
                "give the service a `port` (and the environment a `load_balancer`), or scale on cpu_percent / memory_percent",
            );
            None
        }
        Some(n) => r.int(n, 1, 1_000_000).map(|v| Some(v as u32)),
    };
    // No target at all: keep average CPU at 70 %.
    if ["cpu_percent", "memory_percent", "requests_per_target"]
        .iter()
        .all(|k| f.get(k).is_none())
    {
        cpu = Some(Some(70));
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            r.error(f.span, format!("autoscaling min {lo} is above max {hi}"));
            return None;
        }
        if let Some(d) = desired.filter(|d| !(lo..=hi).contains(d)) {
            r.error(
                f.span,
                format!("desired_count {d} is outside autoscaling min {lo} .. max {hi}"),
            );
            return None;
        }
    }
    Some(Autoscaling {
        min: min?,
        max: max?,
        cpu_percent: cpu?,
        memory_percent: memory?,
        requests_per_target: requests?,
    })
}
