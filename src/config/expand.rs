//! `${VAR}` and `${VAR:-default}` expansion of string values from the process environment.
//!
//! The lookup is passed in, so this stays pure and testable. `$$` is a literal `$`.

/// Expands every `${…}` in `input`. An unset variable without a default is an error naming it.
pub fn expand_vars(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{input}`"))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("`${{{expr}}}` is not a valid variable reference"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set and `${{{name}}}` has no default (write `${{{name}:-default}}`)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "IMAGE_TAG" => Some("abc123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("web:${IMAGE_TAG:-latest}", Ok("web:abc123")),
            ("web:${MISSING:-latest}", Ok("web:latest")),
            ("web:${EMPTY:-latest}", Ok("web:latest")),
            ("${IMAGE_TAG}", Ok("abc123")),
            ("plain", Ok("plain")),
            ("cost $$5", Ok("cost $5")),
            ("a $ b", Ok("a $ b")),
            ("${MISSING}", Err("`MISSING` is not set")),
            ("${1BAD}", Err("not a valid variable")),
            ("${OPEN", Err("unterminated")),
        ];
        for (input, want) in cases {
            let got = expand_vars(input, &env);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{input}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input}: {g}"),
                _ => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
