//! `repositories` and `cluster`.

use super::*;

pub(super) fn repositories(
    r: &mut Reader<'_>,
    n: &Node<'_>,
) -> Option<BTreeMap<String, Repository>> {
    let f = r.open_mapping(n)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_span, value) in f.iter() {
        let valid = (2..=200).contains(&key.len())
            && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            r.error(
                key_span,
                format!("repository name `{key}` must be 2-200 of a-z, 0-9, `-`, `_`, `.`"),
            );
            ok = false;
            continue;
        }
        let repo = (|| {
            if matches!(value.data, saphyr::YamlData::Value(saphyr::Scalar::Null)) {
                return Some(Repository {
                    scan_on_push: true,
                    immutable_tags: true,
                    keep_last: 30,
                });
            }
            let rf = r.mapping(value, &keys(schema::REPOSITORY))?;
            let scan = rf
                .get("scan_on_push")
                .map(|n| r.boolean(n))
                .unwrap_or(Some(true));
            let immutable = rf
                .get("immutable_tags")
                .map(|n| r.boolean(n))
                .unwrap_or(Some(true));
            let keep = rf
                .get("keep_last")
                .map(|n| r.int(n, 1, 10000).map(|v| v as u32))
                .unwrap_or(Some(30));
            Some(Repository {
                scan_on_push: scan?,
                immutable_tags: immutable?,
                keep_last: keep?,
            })
        })();
        match repo {
            Some(repo) => {
                out.insert(key.to_string(), repo);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn cluster(r: &mut Reader<'_>, n: &Node<'_>, env: &str) -> Option<Cluster> {
    let f = r.mapping(n, &keys(schema::CLUSTER))?;
    let name = match f.get("name") {
        Some(n) => r.string(n).and_then(|name| {
            let ok = (1..=255).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                r.error(
                    n.span,
                    format!("cluster name `{name}` must be 1-255 of letters, digits, `-` and `_`"),
                );
                return None;
            }
            Some(name)
        }),
        None => Some(env.to_string()),
    };
    let insights = f
        .get("container_insights")
        .map(|n| r.boolean(n))
        .unwrap_or(Some(true));
    Some(Cluster {
        name: name?,
        container_insights: insights?,
    })
}
