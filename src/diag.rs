//! Diagnostics that point into a source file: `file:line:column`, a short message, and the offending
//! line with a caret under the span, the way compilers show them.
//!
//! This module is pure: it formats text and never touches the terminal itself.

use std::fmt;
use std::path::PathBuf;

/// A position in a source file. `line` and `column` are 1-based; `len` is the number of characters
/// the caret underline should cover (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// `file:line:column: message` — the one-line form, stable for scripts and editors.
    pub fn headline(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.file.display(),
            self.loc.line,
            self.loc.column,
            self.message
        )
    }

    /// The full form: headline, the source line with a caret under the span, and an optional hint.
    pub fn render(&self, source: &str) -> String {
        let mut out = self.headline();
        out.push('\n');
        if let Some(text) = source.lines().nth(self.loc.line.saturating_sub(1)) {
            let gutter = self.loc.line.to_string();
            let pad = " ".repeat(gutter.len());
            let col = self.loc.column.max(1);
            let available = text.chars().count().saturating_sub(col - 1).max(1);
            let len = self.loc.len.clamp(1, available);
            out.push_str(&format!("{pad} |\n{gutter} | {text}\n{pad} | "));
            out.push_str(&" ".repeat(col - 1));
            out.push_str(&"^".repeat(len));
            out.push('\n');
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  = hint: {hint}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())
    }
}

/// Every problem of one file, with the source text so each can be shown in context.
#[derive(Debug, Clone)]
pub struct FileDiagnostics {
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileDiagnostics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str("error: ");
            out.push_str(&d.render(&self.source));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_sits_under_the_span() {
        let d = Diagnostic {
            file: "environments/stage.yaml".into(),
            loc: Loc {
                line: 2,
                column: 7,
                len: 3,
            },
            message: "bad value".into(),
            hint: Some("try another".into()),
        };
        let text = d.render("a: 1\nkey:  bad\n");
        assert_eq!(
            text,
            "environments/stage.yaml:2:7: bad value\n  |\n2 | key:  bad\n  |       ^^^\n  = hint: try another\n"
        );
    }

    #[test]
    fn span_past_the_line_end_is_clamped() {
        let d = Diagnostic {
            file: "f.yaml".into(),
            loc: Loc {
                line: 1,
                column: 3,
                len: 99,
            },
            message: "m".into(),
            hint: None,
        };
        assert!(d.render("ab\n").ends_with("1 | ab\n  |   ^\n"));
    }
}
