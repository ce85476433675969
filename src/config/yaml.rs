//! A small typed reader over a YAML tree that keeps source positions.
//!
//! serde stops at the first error; users want every problem of a file at once. So the file is parsed
//! into a position-carrying tree (saphyr's `MarkedYaml`) and read field by field here: each accessor
//! records a diagnostic at the exact span and returns `None`, and reading carries on.

use std::path::Path;

use saphyr::{MarkedYaml, Scalar, YamlData};
use saphyr_parser::Span;

use super::expand::expand_vars;
use crate::diag::{Diagnostic, Loc};

pub type Node<'a> = MarkedYaml<'a>;

/// Turns a saphyr span into a 1-based location.
pub fn loc(span: Span) -> Loc {
    let len = if span.end.line() == span.start.line() {
        span.end.col().saturating_sub(span.start.col())
    } else {
        1
    };
    Loc {
        line: span.start.line(),
        column: span.start.col() + 1,
        len: len.max(1),
    }
}

/// Reads values out of one file's tree, collecting diagnostics.
pub struct Reader<'s> {
    file: &'s Path,
    env: &'s dyn Fn(&str) -> Option<String>,
    pub errors: Vec<Diagnostic>,
}

/// The entries of a mapping whose keys were all checked against the allowed set.
pub struct Fields<'n> {
    pub span: Span,
    entries: Vec<(String, Span, &'n Node<'n>)>,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Node<'n>> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| *v)
    }

    /// Every entry in file order: key, key span, value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Span, &'n Node<'n>)> + '_ {
        self.entries.iter().map(|(k, s, v)| (k.as_str(), *s, *v))
    }
}

fn type_name(node: &Node<'_>) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing (null)",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "an integer",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(..) => "a tagged value",
        YamlData::Alias(_) => "an alias",
        YamlData::BadValue => "an invalid value",
    }
}

fn untag<'a, 'n>(node: &'a Node<'n>) -> &'a Node<'n> {
    match &node.data {
        YamlData::Tagged(_, inner) => inner,
        _ => node,
    }
}

impl<'s> Reader<'s> {
    pub fn new(file: &'s Path, env: &'s dyn Fn(&str) -> Option<String>) -> Self {
        Reader {
            file,
            env,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.error_at(loc(span), message, None);
    }

    pub fn error_hint(&mut self, span: Span, message: impl Into<String>, hint: impl Into<String>) {
        self.error_at(loc(span), message, Some(hint.into()));
    }

    pub fn error_at(&mut self, loc: Loc, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(Diagnostic {
            file: self.file.to_path_buf(),
            loc,
            message: message.into(),
            hint,
        });
    }

    fn expected(&mut self, node: &Node<'_>, what: &str) {
        let found = type_name(node);
        self.error(node.span, format!("expected {what}, found {found}"));
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are reported (with a suggestion
    /// when one is close) and skipped.
    pub fn mapping<'n>(&mut self, node: &'n Node<'n>, allowed: &[&str]) -> Option<Fields<'n>> {
        let node = untag(node);
        let YamlData::Mapping(map) = &node.data else {
            self.expected(node, "a mapping");
            return None;
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(key) = scalar_text(k) else {
                self.expected(k, "a string key");
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&key.as_str()) {
                let hint = closest(&key, allowed)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("expected one of: {}", allowed.join(", ")));
                self.error_hint(k.span, format!("unknown key `{key}`"), hint);
                continue;
            }
            entries.push((key, k.span, v));
        }
        Some(Fields {
            span: node.span,
            entries,
        })
    }

    /// A mapping with arbitrary keys (tags, service names, …).
    pub fn open_mapping<'n>(&mut self, node: &'n Node<'n>) -> Option<Fields<'n>> {
        self.mapping(node, &[])
    }

    pub fn require<'n>(&mut self, fields: &Fields<'n>, key: &str) -> Option<&'n Node<'n>> {
        let found = fields.get(key);
        if found.is_none() {
            self.error(fields.span, format!("missing required key `{key}`"));
        }
        found
    }

    /// A string scalar with `${VAR}` / `${VAR:-default}` expanded from the process environment.
    pub fn string(&mut self, node: &Node<'_>) -> Option<String> {
        let node = untag(node);
        let raw = match &node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            YamlData::Representation(s, ..) => s.to_string(),
            _ => {
                self.expected(node, "a string");
                return None;
            }
        };
        match expand_vars(&raw, self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(node.span, e);
                None
            }
        }
    }

    /// Any scalar, as text: for maps of free-form values such as tags and environment variables.
    pub fn scalar_string(&mut self, node: &Node<'_>) -> Option<String> {
        let node = untag(node);
        match &node.data {
            YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => self.string(node),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
            YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
            _ => {
                self.expected(node, "a string");
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node<'_>) -> Option<bool> {
        match &untag(node).data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.expected(node, "`true` or `false`");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&mut self, node: &Node<'_>, min: i64, max: i64) -> Option<i64> {
        match &untag(node).data {
            YamlData::Value(Scalar::Integer(i)) if (min..=max).contains(i) => Some(*i),
            YamlData::Value(Scalar::Integer(i)) => {
                self.error(
                    node.span,
                    format!("{i} is out of range: expected {min} to {max}"),
                );
                None
            }
            _ => {
                self.expected(node, "an integer");
                None
            }
        }
    }

    /// A number (integer or decimal) within `min..=max`.
    pub fn number(&mut self, node: &Node<'_>, min: f64, max: f64) -> Option<f64> {
        let value = match &untag(node).data {
            YamlData::Value(Scalar::Integer(i)) => *i as f64,
            YamlData::Value(Scalar::FloatingPoint(f)) => f.into_inner(),
            _ => {
                self.expected(node, "a number");
                return None;
            }
        };
        if (min..=max).contains(&value) {
            Some(value)
        } else {
            self.error(
                node.span,
                format!("{value} is out of range: expected {min} to {max}"),
            );
            None
        }
    }

    pub fn sequence<'n>(&mut self, node: &'n Node<'n>) -> Option<&'n [Node<'n>]> {
        match &untag(node).data {
            YamlData::Sequence(items) => Some(items.as_slice()),
            _ => {
                self.expected(node, "a list");
                None
            }
        }
    }

    /// A value from a closed set of words.
    pub fn choice<T: Copy>(&mut self, node: &Node<'_>, choices: &[(&str, T)]) -> Option<T> {
        let word = self.string(node)?;
        match choices.iter().find(|(w, _)| *w == word) {
            Some((_, v)) => Some(*v),
            None => {
                let all: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                self.error(
                    node.span,
                    format!("`{word}` is not one of: {}", all.join(", ")),
                );
                None
            }
        }
    }
}

/// The text of a scalar node, whatever its resolved type (keys such as `80:` are integers).
pub fn scalar_text(node: &Node<'_>) -> Option<String> {
    match &untag(node).data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Representation(s, ..) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        _ => None,
    }
}

/// The allowed word closest to a misspelt one, if it is close enough to be a likely typo.
fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
