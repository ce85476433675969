//! Architecture invariants stated as absences, checked on the source text (in the style of
//! rust-analyzer's tidy tests): only `src/aws/` speaks to AWS, the pure layers touch neither the
//! file system nor the process environment, and only `render` and `main` print.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file as (path relative to the crate, text).
fn all() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 20, "the source tree was not found");
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Lines of `text` containing `needle`, comments aside.
fn uses(text: &str, needle: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//") && l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect()
}

fn violations(allowed: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in all() {
        if allowed(&path) {
            continue;
        }
        for needle in needles {
            for line in uses(&text, needle) {
                found.push(format!("{path}:{line}: {needle}"));
            }
        }
    }
    found
}

#[test]
fn only_the_aws_module_imports_the_sdk() {
    let found = violations(
        |p| p.starts_with("src/aws/"),
        &["aws_sdk_", "aws_smithy_", "aws_config"],
    );
    assert!(
        found.is_empty(),
        "AWS SDK outside src/aws/:\n{}",
        found.join("\n")
    );
}

/// The layers that turn a file into a plan are pure: same input, same output, no I/O.
#[test]
fn pure_layers_touch_neither_files_nor_the_process_environment() {
    let pure = |p: &str| {
        (p.starts_with("src/config/") && p != "src/config/load.rs" && p != "src/config/tests.rs")
            || p.starts_with("src/plan/") && !p.ends_with("tests.rs")
            || [
                "src/desired.rs",
                "src/model.rs",
                "src/naming.rs",
                "src/policy.rs",
                "src/exec/queue.rs",
            ]
            .contains(&p)
    };
    let found = violations(
        |p| !pure(p),
        &[
            "std::fs",
            "std::env",
            "std::io::std",
            "std::process",
            "tokio",
            "std::net",
        ],
    );
    assert!(
        found.is_empty(),
        "I/O in a pure layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_render_and_main_print() {
    let found = violations(
        |p| p == "src/render.rs" || p == "src/main.rs",
        &["println!", "eprintln!", "print!(", "eprint!(", "dbg!("],
    );
    assert!(
        found.is_empty(),
        "printing outside render/main:\n{}",
        found.join("\n")
    );
}

/// The checks above would pass on an empty tree: make sure they can fail.
#[test]
fn the_checks_can_fail() {
    assert!(!uses("use aws_sdk_ec2::Client;", "aws_sdk_").is_empty());
    assert!(uses("// aws_sdk_ec2 in a comment", "aws_sdk_").is_empty());
    let found = violations(|p| p != "src/aws/mod.rs", &["aws_sdk_"]);
    assert!(
        !found.is_empty(),
        "src/aws/mod.rs imports the SDK, so this must find it"
    );
}
