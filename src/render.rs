//! The only code that prints: plans as text (with colour when the terminal takes it) or JSON,
//! live progress of an apply, and the closing summary.
//!
//! Text is built as `String`s by pure functions (snapshot-tested); printing goes through
//! `anstream`, which strips colour when stdout is not a terminal, `NO_COLOR` is set or
//! `--no-color` was given.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::exec::{Progress, Report};
use crate::model::UNKNOWN;
use crate::plan::graph::Op;
use crate::plan::{Action, Change, Note, Plan, Warning};
use serde::Serialize;

const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default();
const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// A value as shown in a plan: JSON, with references written `ref(id)`, and references to what
/// AWS computes for a resource `ref(id).field` (`ref(load-balancer).dns_name`).
pub fn show(v: &Value) -> String {
    match crate::model::as_reference(v) {
        Some((id, None)) => return format!("ref({id})"),
        Some((id, Some(pointer))) => {
            let path: Vec<String> = pointer
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            return format!("ref({id}).{}", path.join("."));
        }
        None => {}
    }
    match v {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {}", show(v))).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::String(s) if s == UNKNOWN => s.clone(),
        other => other.to_string(),
    }
}

fn symbol(action: Action) -> (&'static str, Style) {
    match action {
        Action::Create => ("+", GREEN),
        Action::Update => ("~", YELLOW),
        Action::Replace => ("-/+", RED),
        Action::Delete => ("-", RED),
        Action::Adopt => ("=", GREEN),
        Action::Forget => ("-", DIM),
    }
}

fn note_text(n: &Note) -> String {
    match n {
        Note::DeletedOutside => "deleted outside infra".into(),
        Note::ChangedOutside { fields } => format!("changed outside infra: {}", fields.join(", ")),
        Note::FoundByTag => "found by tag, adopted".into(),
        Note::RemovedFromFile => "removed from the file".into(),
        Note::UntrackedByTag => "tagged for this environment but in neither state nor file".into(),
        Note::ReplaceAsked => "replaced as --replace asks".into(),
        Note::DataLoss => {
            "ITS DATA IS LOST (a final snapshot is kept only when it was protected)".into()
        }
        Note::RolledBack { to, at } => format!(
            "rolled back by `infra rollback` at {at} to {}: apply returns it to the file's revision; to stay, make the file describe that revision (its image tag, cpu, memory…)",
            to.rsplit('/').next().unwrap_or(to)
        ),
    }
}

fn change_text(c: &Change, out: &mut String) {
    let (sym, style) = symbol(c.action);
    let mut head = format!("  {} {}", paint(style, sym), paint(BOLD, &c.id));
    if let Some(p) = &c.physical_id {
        let _ = write!(head, "  {p}");
    }
    let mut notes: Vec<String> = c.notes.iter().map(note_text).collect();
    if c.protected && matches!(c.action, Action::Delete | Action::Replace) {
        notes.push("protected: deletion allowed by --allow-destroy-protected".into());
    }
    match c.action {
        Action::Replace => notes.push("must be replaced".into()),
        Action::Forget => notes.push("will be removed from state".into()),
        _ => {}
    }
    if !notes.is_empty() {
        let _ = write!(head, "  {}", paint(DIM, &format!("({})", notes.join("; "))));
    }
    out.push_str(&head);
    out.push('\n');
    match c.action {
        Action::Create if c.diffs.is_empty() => {
            if let Some(Value::Object(attrs)) = &c.after {
                let width = attrs.keys().map(String::len).max().unwrap_or(0);
                let mut entries: Vec<(&String, &Value)> = attrs.iter().collect();
                entries.sort_by_key(|(k, _)| *k);
                let deep = c.kind.schema().deep_fields;
                for (k, v) in entries {
                    match v {
                        // A large structured value: one element a line.
                        Value::Array(items) if deep.contains(&k.as_str()) && !items.is_empty() => {
                            for (i, item) in items.iter().enumerate() {
                                let _ = writeln!(out, "      {k}[{i}] = {}", show(item));
                            }
                        }
                        _ => {
                            let _ = writeln!(out, "      {k:width$} = {}", show(v));
                        }
                    }
                }
            }
        }
        Action::Create | Action::Update | Action::Replace | Action::Adopt => {
            for d in &c.diffs {
                if let (Some(Value::Object(b)), Some(Value::Object(a))) = (&d.before, &d.after) {
                    map_diff(&d.field, b, a, out);
                    continue;
                }
                let before = d
                    .before
                    .as_ref()
                    .map(show)
                    .unwrap_or_else(|| "(none)".into());
                let after = d
                    .after
                    .as_ref()
                    .map(show)
                    .unwrap_or_else(|| "(none)".into());
                let _ = write!(
                    out,
                    "      {} {} = {before} → {after}",
                    paint(YELLOW, "~"),
                    d.field
                );
                if d.forces_replacement {
                    let _ = write!(out, "  {}", paint(RED, "# forces replacement"));
                }
                out.push('\n');
            }
        }
        Action::Delete | Action::Forget => {}
    }
}

/// A map attribute (tags) shown key by key: only what changes.
fn map_diff(
    field: &str,
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
    out: &mut String,
) {
    let mut keys: Vec<&String> = after.keys().collect();
    keys.sort();
    for k in keys {
        let v = &after[k];
        match before.get(k) {
            Some(old) if old == v => {}
            Some(old) => {
                let _ = writeln!(
                    out,
                    "      {} {field}.{k} = {} → {}",
                    paint(YELLOW, "~"),
                    show(old),
                    show(v)
                );
            }
            None => {
                let _ = writeln!(out, "      {} {field}.{k} = {}", paint(GREEN, "+"), show(v));
            }
        }
    }
    let mut gone: Vec<(&String, &Value)> = before.iter().collect();
    gone.sort_by_key(|(k, _)| *k);
    for (k, old) in gone {
        if !after.contains_key(k) {
            let _ = writeln!(out, "      {} {field}.{k} = {}", paint(RED, "-"), show(old));
        }
    }
}

/// The whole plan as text, ending with the summary line.
pub fn plan_text(plan: &Plan, backend: &str) -> String {
    let mut out = String::new();
    // After the changes: notes (a kept image is not a change) and warnings.
    let notes = || {
        let mut text = String::new();
        for w in &plan.warnings {
            let label = match w {
                Warning::ImageKept { .. } => paint(DIM, "note:"),
                _ => paint(YELLOW, "warning:"),
            };
            let _ = writeln!(text, "{label} {}", warning_text(w));
        }
        text
    };
    if plan.create_backend {
        let _ = writeln!(
            out,
            "State storage {backend} does not exist yet: apply will create it (versioning on, default encryption, public access blocked)."
        );
    }
    let found = plan
        .changes
        .iter()
        .filter(|c| c.notes.contains(&Note::FoundByTag))
        .count();
    match (plan.base.is_none() && !plan.create_backend, found) {
        (true, 0) => {
            let _ = writeln!(out, "No state at {backend} yet: this is the first apply.");
        }
        (true, n) => {
            let _ = writeln!(
                out,
                "No state at {backend}, but {n} resource(s) carry this environment's tags: they are adopted, not created again (`infra state recover` records them without other changes)."
            );
        }
        _ => {}
    }
    if plan.changes.is_empty() {
        out.push_str(&notes());
        if !plan.lint.is_empty() {
            out.push_str(&lint_text(&plan.lint));
        }
        if let Some(cost) = &plan.cost {
            out.push_str(&cost_delta_text(cost, &plan.region));
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("No changes. AWS matches the file.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{} of {} ({}):\n",
        if plan.operation == crate::plan::Operation::Destroy {
            "Destroy"
        } else {
            "Changes"
        },
        paint(BOLD, &plan.environment),
        plan.region
    );
    for c in &plan.changes {
        change_text(c, &mut out);
    }
    let notes = notes();
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    if !plan.lint.is_empty() {
        out.push('\n');
        out.push_str(&lint_text(&plan.lint));
    }
    if let Some(cost) = &plan.cost {
        out.push('\n');
        out.push_str(&cost_delta_text(cost, &plan.region));
    }
    let s = plan.summary();
    let _ = write!(
        out,
        "\nPlan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
    if s.adopt > 0 || s.forget > 0 {
        let _ = write!(
            out,
            " ({} to adopt, {} to forget from state.)",
            s.adopt, s.forget
        );
    }
    out.push('\n');
    out
}

/// Names a plan would create that AWS already holds, each with the import that adopts it.
pub fn taken(environment: &str, taken: &[crate::aws::kinds::Taken]) -> String {
    let mut out = format!(
        "{} name{} this plan would create already exist{} in AWS, outside {environment}'s state:",
        taken.len(),
        if taken.len() == 1 { "" } else { "s" },
        if taken.len() == 1 { "s" } else { "" },
    );
    for t in taken {
        let _ = write!(
            out,
            "\n  {}: `{}` exists ({})\n    adopt it: infra import {environment} {} {}",
            t.id, t.name, t.physical_id, t.id, t.physical_id
        );
    }
    out
}

/// A month's cost: `$12.34`, or `$12.34–$45.67` when autoscaling decides.
fn money(low: f64, high: Option<f64>) -> String {
    match high {
        Some(h) if h - low > 0.005 => format!("${low:.2}–${h:.2}"),
        _ => format!("${low:.2}"),
    }
}

/// The cost lines of a plan: before → after and the delta, then each line that changes.
pub fn cost_delta_text(d: &crate::cost::Delta, region: &str) -> String {
    let mut out = String::new();
    let diff = d.after.monthly_total - d.before.monthly_total;
    let _ = write!(
        out,
        "Cost (USD a month, {region} prices of {}): {} → {}",
        crate::cost::PRICES_DATE,
        money(d.before.monthly_total, d.before.monthly_total_max),
        money(d.after.monthly_total, d.after.monthly_total_max),
    );
    if diff.abs() < 0.005 {
        out.push_str(" (unchanged)\n");
    } else {
        let _ = writeln!(
            out,
            " ({}{:.2})",
            if diff > 0.0 { "+$" } else { "-$" },
            diff.abs()
        );
    }
    for (resource, before, after) in &d.changed {
        let _ = match (before, after) {
            (None, Some(a)) => writeln!(out, "  + {resource}  {}", money(*a, None)),
            (Some(b), None) => writeln!(out, "  - {resource}  {}", money(*b, None)),
            (Some(b), Some(a)) => writeln!(
                out,
                "  ~ {resource}  {} → {}",
                money(*b, None),
                money(*a, None)
            ),
            (None, None) => Ok(()),
        };
    }
    out
}

/// `infra cost`: the lines of each environment side by side, by group, with totals.
pub fn cost_table(estimates: &[(String, crate::cost::Estimate)], regions: &[String]) -> String {
    use std::collections::BTreeSet;
    let mut rows: BTreeSet<(crate::cost::Group, String)> = BTreeSet::new();
    for (_, e) in estimates {
        for l in &e.lines {
            rows.insert((l.group, l.resource.clone()));
        }
    }
    let mut regions: Vec<&String> = regions.iter().collect();
    regions.sort();
    regions.dedup();
    let mut table: Vec<Vec<String>> = vec![
        std::iter::once("group".to_string())
            .chain(std::iter::once("resource".to_string()))
            .chain(estimates.iter().map(|(n, _)| n.clone()))
            .collect(),
    ];
    for (group, resource) in &rows {
        let mut row = vec![group.name().to_string(), resource.clone()];
        for (_, e) in estimates {
            row.push(
                e.lines
                    .iter()
                    .find(|l| l.group == *group && &l.resource == resource)
                    .map(|l| {
                        let m = money(l.monthly, l.monthly_max);
                        match &l.usage {
                            Some(u) => format!("{m} ({u})"),
                            None => m,
                        }
                    })
                    .unwrap_or_else(|| "-".to_string()),
            );
        }
        table.push(row);
    }
    let mut total = vec!["total".to_string(), String::new()];
    total.extend(
        estimates
            .iter()
            .map(|(_, e)| money(e.monthly_total, e.monthly_total_max)),
    );
    table.push(total);
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "Monthly estimate in USD ({} prices of {}; usage-priced lines say what they assume, from each file's `usage`):\n\n",
        regions
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        crate::cost::PRICES_DATE
    );
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                if i < 2 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Lint findings, one block each: severity and rule, where, what; why it matters and the fix.
/// Accepted ones say so, with the file's reason.
pub fn lint_text(findings: &[crate::lint::Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let head = match (&f.accepted, f.severity) {
            (Some(_), _) => paint(DIM, &format!("accepted[{}]", f.rule)),
            (None, crate::lint::Severity::Error) => paint(RED, &format!("error[{}]", f.rule)),
            (None, crate::lint::Severity::Warning) => {
                paint(YELLOW, &format!("warning[{}]", f.rule))
            }
        };
        let _ = writeln!(out, "{head} {}:{}: {}", f.file, f.line, f.message);
        match &f.accepted {
            Some(reason) => {
                let _ = writeln!(out, "  accepted by the file: {reason}");
            }
            None => {
                let _ = writeln!(out, "  why: {}", crate::lint::rule(&f.rule).why);
                let _ = writeln!(out, "  fix: {}", f.fix);
            }
        }
    }
    out
}

/// The closing line of `infra lint`.
pub fn lint_summary(findings: &[crate::lint::Finding]) -> String {
    let open: Vec<_> = findings.iter().filter(|f| f.accepted.is_none()).collect();
    let errors = open
        .iter()
        .filter(|f| f.severity == crate::lint::Severity::Error)
        .count();
    let accepted = findings.len() - open.len();
    let accepted = if accepted > 0 {
        format!(", {accepted} accepted")
    } else {
        String::new()
    };
    if open.is_empty() {
        format!("No findings{accepted}.\n")
    } else {
        format!(
            "{} finding(s): {errors} error(s), {} warning(s){accepted}.\n",
            open.len(),
            open.len() - errors
        )
    }
}

/// What a warning says.
pub fn warning_text(w: &Warning) -> String {
    match w {
        Warning::Twins {
            id,
            recorded,
            others,
        } => format!(
            "{} also carry the id `{id}` but state records {recorded}; they are left alone",
            others.join(", ")
        ),
        Warning::Network { message } | Warning::Image { message } | Warning::Status { message } => {
            message.clone()
        }
        Warning::ImageKept {
            service,
            key,
            digest,
            tag,
            untagged,
        } => {
            let mut text = format!("{service}: image kept as deployed: {key}@{digest}");
            if let Some(tag) = tag {
                text.push_str(&format!(" (tag {tag})"));
            }
            if *untagged {
                text.push_str(
                    "\n  no tag of the repository points at this digest any more: it was deployed by hand, or its tag moved; `--image` sets the one you mean",
                );
            }
            text
        }
    }
}

/// The documented `plan --json` output, version 1: the fields it has always had (`format`,
/// `environment`, `region`, `state`, `operation`, `base`, `create_backend`, `changes`, `warnings`
/// as text, `summary`) plus `format_version` and `critical_path_steps` (the longest chain of
/// steps, the least number of sequential steps any apply of it needs). Its own type, so the
/// saved-plan file can change without breaking what scripts read.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    pub format_version: u32,
    pub format: u32,
    pub environment: &'a str,
    pub region: &'a str,
    pub state: &'a crate::config::StateConfig,
    pub operation: crate::plan::Operation,
    pub base: Option<&'a crate::plan::Base>,
    pub create_backend: bool,
    pub changes: &'a [Change],
    pub warnings: Vec<String>,
    /// The file's lint findings (as `infra lint --format json` gives them).
    pub lint: &'a [crate::lint::Finding],
    pub summary: crate::plan::Summary,
    pub critical_path_steps: usize,
}

/// The plan as JSON for machines (`PlanJson`).
pub fn plan_json(plan: &Plan) -> String {
    let (_, deps) = crate::plan::graph::steps(&plan.changes);
    let out = PlanJson {
        format_version: 1,
        // What this field has always said in this output; the saved-plan file has its own.
        format: 1,
        environment: &plan.environment,
        region: &plan.region,
        state: &plan.state,
        operation: plan.operation,
        base: plan.base.as_ref(),
        create_backend: plan.create_backend,
        changes: &plan.changes,
        warnings: plan.warnings.iter().map(warning_text).collect(),
        lint: &plan.lint,
        summary: plan.summary(),
        critical_path_steps: crate::plan::graph::critical_path(&deps),
    };
    serde_json::to_string_pretty(&out).expect("json") + "\n"
}

/// The question `apply` and `destroy` ask before changing anything.
pub fn confirm_question(operation: crate::plan::Operation, env: &str) -> String {
    match operation {
        crate::plan::Operation::Apply => format!("Apply these changes to {env}?"),
        crate::plan::Operation::Destroy => {
            format!("Destroy every resource of {env}? This cannot be undone.")
        }
    }
}

pub fn confirm_prompt(question: &str) -> String {
    format!("\n{question}\n  Only 'yes' will be accepted: ")
}

pub fn cancelled(verb: &str) -> String {
    format!("{verb} cancelled: nothing was changed.\n")
}

pub fn saved_plan(path: &std::path::Path) -> String {
    format!(
        "\nSaved the plan to {}. Apply exactly this with `infra apply --plan {}`.\n",
        path.display(),
        path.display()
    )
}

pub fn valid_file(path: &std::path::Path) -> String {
    format!("{}: valid\n", path.display())
}

pub fn error_line(e: &dyn std::fmt::Display) -> String {
    format!("error: {e}\n")
}

/// `infra state list`: id, kind and physical id, one resource a line.
pub fn state_list(doc: Option<&crate::state::StateDoc>) -> String {
    let mut text = String::new();
    for (id, r) in doc.iter().flat_map(|d| &d.resources) {
        let _ = writeln!(text, "{id}\t{}\t{}", r.kind, r.physical_id);
    }
    text
}

/// `infra state list --json`: `{format_version, resources: [{id, kind, physical_id}]}`.
pub fn state_list_json(doc: Option<&crate::state::StateDoc>) -> String {
    let resources: Vec<Value> = doc
        .iter()
        .flat_map(|d| &d.resources)
        .map(
            |(id, r)| serde_json::json!({ "id": id, "kind": r.kind, "physical_id": r.physical_id }),
        )
        .collect();
    serde_json::to_string_pretty(
        &serde_json::json!({ "format_version": 1, "resources": resources }),
    )
    .expect("json")
        + "\n"
}

pub const NOTHING_TO_RECOVER: &str =
    "Nothing to recover: the state holds every resource tagged for this environment.\n";

pub fn lock_removed(lock_id: &str, holder: &str) -> String {
    format!("Removed lock {lock_id}: {holder}\n")
}

pub fn took_over_lock(holder: &str) -> String {
    format!("note: took over an expired lock: {holder}\n")
}

pub fn creating_backend(backend: &str) -> String {
    format!(
        "Creating state storage {backend} (versioning on, default encryption, public access blocked).\n"
    )
}

/// The hint that names the newest valid version of a broken state.
pub fn restore_hint(env: &str, good: &crate::ops::VersionRow, count: usize) -> String {
    let age = good
        .last_modified
        .map(|t| format!(", written {}", ago(t)))
        .unwrap_or_default();
    format!(
        "{count} stored versions; the newest valid one is serial {}{age}: `infra state restore {env} {}` makes it current again",
        good.serial.unwrap_or_default(),
        good.version_id
    )
}

fn ago(t: jiff::Timestamp) -> String {
    let secs = (jiff::Timestamp::now() - t).get_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// `infra state versions`: one version a line, newest first.
pub fn state_versions(rows: &[crate::ops::VersionRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "VERSION\tWRITTEN\tSERIAL\tLINEAGE\tRESOURCES\tBY");
    for r in rows {
        let when = r.last_modified.map(|t| t.to_string()).unwrap_or_default();
        let current = if r.latest { " (current)" } else { "" };
        match (&r.serial, &r.lineage, &r.resources) {
            (Some(s), Some(l), Some(n)) => {
                let by = r.written_by.as_deref().unwrap_or("-");
                let _ = writeln!(
                    out,
                    "{}{current}\t{when}\t{s}\t{l}\t{n}\t{by}",
                    r.version_id
                );
            }
            _ => {
                let why = r.error.as_deref().unwrap_or("unknown");
                let _ = writeln!(
                    out,
                    "{}{current}\t{when}\tdoes not parse: {why}",
                    r.version_id
                );
            }
        }
    }
    out
}

/// `infra state versions --json`: `{versions: [{version_id, last_modified, serial, lineage, valid, …}]}`.
pub fn state_versions_json(rows: &[crate::ops::VersionRow]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "format_version": 1, "versions": rows }))
        .expect("json")
        + "\n"
}

/// What a restore changes, resource by resource, before it asks.
pub fn restore_text(r: &crate::ops::Restore) -> String {
    let mut out = format!(
        "Making {} (lineage {}) the current state as serial {}:\n",
        r.source, r.chosen.lineage, r.chosen.serial
    );
    let empty = std::collections::BTreeMap::new();
    let now = r.current.as_ref().map(|c| &c.resources).unwrap_or(&empty);
    let mut changed = 0;
    for (id, res) in &r.chosen.resources {
        match now.get(id) {
            None => {
                let _ = writeln!(out, "  {} {id} ({})", paint(GREEN, "+"), res.physical_id);
                changed += 1;
            }
            Some(c) if c.physical_id != res.physical_id || c.attributes != res.attributes => {
                let _ = writeln!(
                    out,
                    "  {} {id} ({} → {})",
                    paint(YELLOW, "~"),
                    c.physical_id,
                    res.physical_id
                );
                changed += 1;
            }
            Some(_) => {}
        }
    }
    for (id, c) in now {
        if !r.chosen.resources.contains_key(id) {
            let _ = writeln!(out, "  {} {id} ({})", paint(RED, "-"), c.physical_id);
            changed += 1;
        }
    }
    if changed == 0 {
        out.push_str("  the restored state records the same resources as the current one\n");
    }
    out.push_str(
        "Only the state changes; AWS is not touched. `infra plan` then shows what the restored state believes against live AWS.\n",
    );
    out
}

pub fn initialised(path: &std::path::Path, env: &str) -> String {
    format!(
        "Wrote {} (and {} beside it, which gives editors completion and checks). Next: `infra validate {env}`, then `infra plan {env}`.\n",
        path.display(),
        crate::config::SCHEMA_FILE
    )
}

pub fn workflow_written(path: &std::path::Path, env: &str) -> String {
    format!(
        "Wrote {}: it plans {env} on pull requests and applies the reviewed plan on merge. Its first lines say which repository variables and GitHub Environment it needs.\n",
        path.display()
    )
}

pub fn forget_question(id: &str, env: &str) -> String {
    format!(
        "Stop managing `{id}` in {env}? It stays in AWS, untouched, and infra never deletes it."
    )
}

pub fn forgotten(id: &str, physical: &str) -> String {
    format!("Forgot `{id}` ({physical}): it stays in AWS and infra no longer manages it.\n")
}

pub fn import_text(i: &crate::ops::Import) -> String {
    format!(
        "Import {} {} as `{}`: tag it as this environment's and record it in state. Nothing else changes; `infra plan` then shows how it differs from the file.\n",
        i.kind, i.live.physical_id, i.id
    )
}

pub fn import_question(env: &str) -> String {
    format!("Import this resource into {env}?")
}

/// What `infra deploy` is about to do: the images, the changes (as a plan shows them), what
/// else of the file the services take along, and the changes it leaves to `apply`.
pub fn deploy_text(
    d: &crate::ops::Deploy,
    images: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let tags: Vec<String> = images.iter().map(|(k, t)| format!("{k}:{t}")).collect();
    let _ = writeln!(
        out,
        "Deploying {} to {} of {}.",
        tags.join(", "),
        d.services.join(", "),
        d.plan.environment
    );
    if d.plan.is_empty() {
        let _ = writeln!(out, "No changes: they run these images already.");
    } else {
        out.push('\n');
        for c in &d.plan.changes {
            change_text(c, &mut out);
        }
        let extra: Vec<String> = d
            .plan
            .changes
            .iter()
            .flat_map(|c| {
                c.diffs
                    .iter()
                    .filter(|f| {
                        let deployed = matches!(f.field.as_str(), "task_definition" | "tags")
                            || (f.field == "container" && only_image_differs(f));
                        !deployed
                    })
                    .map(move |f| format!("{}.{}", c.id, f.field))
            })
            .collect();
        if !extra.is_empty() {
            let _ = writeln!(
                out,
                "\nAlso applied, as the file now says: {}.",
                extra.join(", ")
            );
        }
    }
    if !d.elsewhere.is_empty() {
        let _ = writeln!(
            out,
            "Left for `infra apply {}`: {} other change(s) in the file ({}).",
            d.plan.environment,
            d.elsewhere.len(),
            d.elsewhere.join(", ")
        );
    }
    out
}

/// Whether two containers differ only in their image.
fn only_image_differs(f: &crate::plan::FieldDiff) -> bool {
    let strip = |v: &Option<serde_json::Value>| {
        let mut v = v.clone().unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("image");
        }
        v
    };
    strip(&f.before) == strip(&f.after)
}

/// `infra status` as text: a block per service, the alarms (counted by state, those not OK
/// named), then the verdict.
pub fn status_text(env: &str, status: &crate::aws::status::Status) -> String {
    let (services, problems) = (&status.services, &status.problems);
    let mut out = format!("Status of {env}:\n\n");
    if services.is_empty() {
        out.push_str("  no services\n");
    }
    for s in services {
        let _ = write!(
            out,
            "  {}  {}/{} running, {} pending · rollout {}{} · targets {} healthy, {} unhealthy",
            paint(BOLD, &s.name),
            s.running,
            s.desired,
            s.pending,
            s.rollout.as_deref().unwrap_or("none"),
            s.stage
                .as_deref()
                .map(|st| format!(" ({st})"))
                .unwrap_or_default(),
            s.targets.healthy,
            s.targets.unhealthy
        );
        match (&s.tag, &s.image) {
            (Some(tag), Some(digest)) => {
                let _ = write!(out, " · image tag {tag} ({digest})");
            }
            (None, Some(digest)) => {
                let _ = write!(out, " · image {digest}");
            }
            _ => {}
        }
        out.push('\n');
        for r in &s.targets.reasons {
            let _ = writeln!(out, "      {r}");
        }
        for e in &s.events {
            let _ = writeln!(out, "      event: {e}");
        }
    }
    if !status.alarms.is_empty() {
        let count = |state: &str| status.alarms.iter().filter(|a| a.state == state).count();
        let _ = writeln!(
            out,
            "\n  {}  {} OK, {} in ALARM, {} without enough data",
            paint(BOLD, "alarms"),
            count("OK"),
            count("ALARM"),
            count("INSUFFICIENT_DATA")
        );
        for a in status.alarms.iter().filter(|a| a.state != "OK") {
            let _ = writeln!(out, "      {}: {}", a.name, a.state);
        }
    }
    out.push('\n');
    if problems.is_empty() {
        out.push_str("Healthy.\n");
    } else {
        let _ = writeln!(out, "Degraded:");
        for p in problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

/// A status printed by `--watch`: text gets the time it was read; JSON stays one document each.
pub fn status_stamp(text: &str, json: bool) -> String {
    match json {
        true => text.to_string(),
        false => format!(
            "{}\n{text}",
            paint(DIM, &jiff::Zoned::now().strftime("%H:%M:%S").to_string())
        ),
    }
}

/// `infra status --json`, version 1: `{format_version, environment, healthy, problems,
/// services: [{name, running, desired, pending, rollout, stage, image, tag, targets: {healthy,
/// unhealthy}, events}], alarms: [{name, state, reason}]}`.
pub fn status_json(env: &str, status: &crate::aws::status::Status) -> String {
    let problems = &status.problems;
    let services: Vec<serde_json::Value> = status
        .services
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "running": s.running,
                "desired": s.desired,
                "pending": s.pending,
                "rollout": s.rollout,
                "stage": s.stage,
                "image": s.image,
                "tag": s.tag,
                "targets": {"healthy": s.targets.healthy, "unhealthy": s.targets.unhealthy},
                "events": s.events,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "format_version": 1,
        "environment": env,
        "healthy": problems.is_empty(),
        "problems": problems,
        "services": services,
        "alarms": status.alarms,
    }))
    .expect("status serialises");
    text.push('\n');
    text
}

/// What `infra rollback` is about to do.
pub fn rollback_text(service: &str, intent: &crate::aws::rollback::Intent) -> String {
    use crate::aws::rollback::Intent;
    let short = |arn: &str| arn.rsplit('/').next().unwrap_or(arn).to_string();
    match intent {
        Intent::Stop { deployment } => format!(
            "Service {service}: its deployment {} is in progress; it will be stopped and rolled back to the revision it replaces.\n",
            short(deployment)
        ),
        Intent::Revert { from, to } => format!(
            "Service {service}: task definition {} → {} (the revision kept from before the last change).\n",
            short(from),
            short(to)
        ),
    }
}

/// After `infra rollback`: what the file and the service now say.
pub fn rolled_back(service: &str, env: &str) -> String {
    format!(
        "Rolled back service {service}. The file still describes the newer revision: `infra plan {env}` shows the difference, and `infra apply {env}` would return to it.\n"
    )
}

pub fn imported(id: &str) -> String {
    format!("Imported `{id}`.\n")
}

pub fn restore_question(env: &str) -> String {
    format!("Restore this state for {env}?")
}

pub fn restored(source: &str, serial: u64) -> String {
    format!("Restored {source} as serial {serial}.\n")
}

pub const BROKEN_STATE_RESET: &str = "The current state document did not parse: replaced by an empty one (the broken one stays in the bucket's history); recovering from tags.\n";

/// A resource in `infra graph`.
pub struct GraphNode {
    pub kind: crate::model::Kind,
    /// What it needs first.
    pub deps: Vec<String>,
    /// What a saved plan does to it.
    pub action: Option<Action>,
}

/// The resource graph: an arrow from each resource to what depends on it (the order apply
/// creates them in), coloured by planned action when there is one.
pub fn graph(
    nodes: &std::collections::BTreeMap<String, GraphNode>,
    format: crate::cli::GraphFormat,
) -> String {
    let colour = |a: Option<Action>| match a {
        Some(Action::Create) => Some(("create", "#2da44e")),
        Some(Action::Update) => Some(("update", "#bf8700")),
        Some(Action::Replace) => Some(("replace", "#bc4c00")),
        Some(Action::Delete) => Some(("delete", "#cf222e")),
        Some(Action::Adopt) => Some(("adopt", "#0969da")),
        Some(Action::Forget) => Some(("forget", "#6e7781")),
        None => None,
    };
    let ids: Vec<&String> = nodes.keys().collect();
    let index = |id: &str| ids.iter().position(|i| *i == id);
    let mut out = String::new();
    match format {
        crate::cli::GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, (id, n)) in nodes.iter().enumerate() {
                let _ = writeln!(out, "  r{i}[\"{id}<br/><small>{}</small>\"]", n.kind);
            }
            for (i, n) in nodes.values().enumerate() {
                for dep in &n.deps {
                    if let Some(d) = index(dep) {
                        let _ = writeln!(out, "  r{d} --> r{i}");
                    }
                }
            }
            let mut used = std::collections::BTreeSet::new();
            for (i, n) in nodes.values().enumerate() {
                if let Some((class, fill)) = colour(n.action) {
                    let _ = writeln!(out, "  class r{i} {class}");
                    used.insert((class, fill));
                }
            }
            for (class, fill) in used {
                let _ = writeln!(out, "  classDef {class} stroke:{fill},stroke-width:3px");
            }
        }
        crate::cli::GraphFormat::Dot => {
            out.push_str(
                "digraph infra {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n",
            );
            for (id, n) in nodes {
                let style = colour(n.action)
                    .map(|(class, c)| format!(", color=\"{c}\", penwidth=3, tooltip=\"{class}\""))
                    .unwrap_or_default();
                let _ = writeln!(out, "  \"{id}\" [label=\"{id}\\n({})\"{style}];", n.kind);
            }
            for (id, n) in nodes {
                for dep in &n.deps {
                    if nodes.contains_key(dep) {
                        let _ = writeln!(out, "  \"{dep}\" -> \"{id}\";");
                    }
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

pub fn print(text: &str) {
    let mut out = anstream::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn eprint(text: &str) {
    let mut out = anstream::stderr();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// What a step is doing and has done, in words: a replaced task definition revision is kept for
/// rollback, not deleted.
fn step_words(change: &Change, op: Op) -> (&'static str, &'static str) {
    if crate::exec::retires_kept(change, op) {
        return ("retiring", "kept for rollback");
    }
    op_words(op)
}

fn op_words(op: Op) -> (&'static str, &'static str) {
    match op {
        Op::Create => ("creating", "created"),
        Op::Update => ("updating", "updated"),
        Op::Delete => ("deleting", "deleted"),
        Op::Adopt => ("adopting", "adopted"),
        Op::Forget => ("forgetting", "forgotten"),
    }
}

/// Shows an apply as it runs: on a terminal, a spinner per running step that says what it waits
/// for; without one (CI logs), plain lines stamped with the UTC time, a waiting step saying so
/// when the wait starts and every `WAIT_LINE_EVERY` after. A line per event either way.
pub struct Reporter {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<(String, Op), ProgressBar>>,
    /// When each waiting step last got a line (without a terminal).
    waits: Mutex<HashMap<(String, Op), Duration>>,
}

/// How often a step that is still waiting says so in a log.
const WAIT_LINE_EVERY: Duration = Duration::from_secs(30);

/// `HH:MM:SS` (UTC) of `t`.
fn clock(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

impl Reporter {
    pub fn new(interactive: bool) -> Self {
        let multi =
            interactive.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            multi,
            bars: Mutex::new(HashMap::new()),
            waits: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(anstream::adapter::strip_str(&text).to_string());
            }
            None => print(&format!(
                "{} {}\n",
                clock(std::time::SystemTime::now()),
                text.trim_start()
            )),
        }
    }

    /// Something followed after the steps (an ECS rollout): a spinner saying `status` on a
    /// terminal, a stamped line otherwise.
    pub fn track(&self, id: &str, status: &str) {
        let key = (id.to_string(), Op::Update);
        let Some(m) = &self.multi else {
            self.line(format!("  {id}: {status}"));
            return;
        };
        let mut bars = self.bars.lock().expect("bars");
        let bar = bars.entry(key).or_insert_with(|| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} [{elapsed}]").expect("template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(format!("{id}: {status}"));
    }

    /// The end of something `track` followed, as a line.
    pub fn tracked(&self, id: &str, outcome: &str) {
        if let Some(bar) = self
            .bars
            .lock()
            .expect("bars")
            .remove(&(id.to_string(), Op::Update))
        {
            bar.finish_and_clear();
        }
        self.line(format!("  {id}: {outcome}"));
    }

    fn end_bar(&self, change: &Change, op: Op) {
        if let Some(bar) = self
            .bars
            .lock()
            .expect("bars")
            .remove(&(change.id.clone(), op))
        {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn started(&self, change: &Change, op: Op) {
        let (doing, _) = step_words(change, op);
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} [{elapsed}]").expect("template"),
            );
            bar.set_message(format!("{}: {doing}…", change.id));
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bars
                .lock()
                .expect("bars")
                .insert((change.id.clone(), op), bar);
        } else {
            self.line(format!("  {}: {doing}…", change.id));
        }
    }

    fn finished(&self, change: &Change, op: Op, physical: Option<&str>, elapsed: Duration) {
        self.end_bar(change, op);
        let (_, done) = step_words(change, op);
        let what = physical.map(|p| format!(" ({p})")).unwrap_or_default();
        self.line(format!(
            "  {}: {}{what} [{:.1}s]",
            change.id,
            paint(GREEN, done),
            elapsed.as_secs_f64()
        ));
    }

    fn failed(&self, change: &Change, op: Op, error: &crate::error::AwsError) {
        self.end_bar(change, op);
        let (doing, _) = step_words(change, op);
        self.line(format!(
            "  {}: {} {doing}: {error}",
            change.id,
            paint(RED, "failed")
        ));
    }

    fn skipped(&self, change: &Change, op: Op, because: &str) {
        let (doing, _) = step_words(change, op);
        self.line(format!(
            "  {}: {} ({doing} needs {because}, which failed)",
            change.id,
            paint(DIM, "skipped")
        ));
    }

    fn note(&self, message: &str) {
        self.line(format!("{} {message}", paint(YELLOW, "note:")));
    }

    fn waiting(&self, change: &Change, op: Op, what: &str, elapsed: Duration) {
        let key = (change.id.clone(), op);
        if let Some(bar) = self.bars.lock().expect("bars").get(&key) {
            let (doing, _) = step_words(change, op);
            bar.set_message(format!("{}: {doing}… waiting for {what}", change.id));
            return;
        }
        if self.multi.is_some() {
            return;
        }
        let mut waits = self.waits.lock().expect("waits");
        let due = match waits.get(&key) {
            None => true,
            Some(last) => elapsed >= *last + WAIT_LINE_EVERY,
        };
        if due {
            waits.insert(key, elapsed);
            drop(waits);
            self.line(format!(
                "  {}: waiting for {what} [{:.0}s]",
                change.id,
                elapsed.as_secs_f64()
            ));
        }
    }
}

/// Where the time of an apply or destroy went, one line: the plan (refresh included), the steps,
/// the rollouts followed, and the total.
pub fn timings(plan: Option<Duration>, report: &Report, total: Duration) -> String {
    let mut parts: Vec<String> = plan
        .map(|p| format!("plan {:.1}s", p.as_secs_f64()))
        .into_iter()
        .collect();
    parts.push(format!(
        "changes {:.1}s",
        report.steps_elapsed.as_secs_f64()
    ));
    if let Some(r) = report.rollouts_elapsed {
        parts.push(format!("rollouts {:.1}s", r.as_secs_f64()));
    }
    format!(
        "{} {} ({})\n",
        paint(DIM, "Took"),
        format_args!("{:.1}s", total.as_secs_f64()),
        parts.join(", ")
    )
}

/// The closing lines of an apply or destroy.
pub fn report_text(report: &Report, verb: &str) -> String {
    let count = |op: Op| report.done.iter().filter(|(_, o)| *o == op).count();
    let mut out = String::new();
    let mut done = format!(
        "{} created, {} updated, {} deleted",
        count(Op::Create),
        count(Op::Update),
        count(Op::Delete) - report.kept.len()
    );
    if !report.kept.is_empty() {
        let _ = write!(done, ", {} kept for rollback", report.kept.len());
    }
    if report.ok() {
        let _ = writeln!(
            out,
            "\n{} {done}.",
            paint(GREEN, &format!("{verb} complete:"))
        );
        return out;
    }
    let _ = writeln!(
        out,
        "\n{} {done}; {} failed, {} skipped.",
        paint(RED, &format!("{verb} incomplete:")),
        report.failed.len(),
        report.skipped.len()
    );
    for (id, _, e) in &report.failed {
        let _ = writeln!(out, "  failed: {id}: {e}");
    }
    for (id, _) in &report.skipped {
        let _ = writeln!(out, "  skipped: {id}");
    }
    if report.interrupted {
        let _ = writeln!(out, "  interrupted before the remaining steps started");
    }
    out.push_str(
        "Everything that completed is recorded in state; run the command again to continue.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cli::GraphFormat;
    use crate::model::Kind;

    #[test]
    fn a_replaced_revision_kept_for_rollback_is_not_counted_as_deleted() {
        let report = Report {
            done: vec![
                ("task-definition.web".into(), Op::Create),
                ("service.web".into(), Op::Update),
                ("task-definition.web".into(), Op::Delete),
                ("log-group.old".into(), Op::Delete),
            ],
            kept: vec!["task-definition.web".into()],
            ..Report::default()
        };
        let text = report_text(&report, "Apply");
        assert!(
            text.ends_with(" 1 created, 1 updated, 1 deleted, 1 kept for rollback.\n"),
            "{text}"
        );
    }

    fn nodes() -> BTreeMap<String, GraphNode> {
        let node = |kind, deps: &[&str], action| GraphNode {
            kind,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            action,
        };
        [
            ("vpc", node(Kind::Vpc, &[], None)),
            (
                "subnet.public.a",
                node(Kind::Subnet, &["vpc"], Some(Action::Create)),
            ),
            (
                "internet-gateway",
                node(Kind::InternetGateway, &["vpc"], Some(Action::Update)),
            ),
            (
                "nat.a",
                node(Kind::NatGateway, &["subnet.public.a"], Some(Action::Delete)),
            ),
        ]
        .into_iter()
        .map(|(id, n)| (id.to_string(), n))
        .collect()
    }

    #[test]
    fn the_graph_in_mermaid_and_dot() {
        insta::assert_snapshot!("graph_mermaid", graph(&nodes(), GraphFormat::Mermaid));
        insta::assert_snapshot!("graph_dot", graph(&nodes(), GraphFormat::Dot));
    }
}
