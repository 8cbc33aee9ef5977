//! Compose's variable interpolation (`$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `$$`)
//! and the `.env` / `env_file` format.

use std::collections::BTreeMap;

/// Where variables come from: the caller's environment over the project's
/// `.env`, as compose has it.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    pub values: BTreeMap<String, String>,
}

impl Variables {
    /// `.env` values with the process environment on top.
    pub fn from_dotenv_and_process(dotenv: BTreeMap<String, String>) -> Self {
        let mut values = dotenv;
        values.extend(std::env::vars());
        Variables { values }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// What interpolating one string found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issue {
    /// `${VAR:?message}` with VAR unset (or empty): an error.
    Required { name: String, message: String },
    /// `$VAR` with VAR unset: replaced by "" with a warning, as compose does.
    Unset(String),
    /// `${` without its `}`, or a name that is not one.
    Syntax(String),
}

/// Replaces every variable in `s`. Errors and warnings go to `issues`.
pub fn interpolate(s: &str, vars: &Variables, issues: &mut Vec<Issue>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_start) = after.strip_prefix('{') {
            match matching_brace(inner_start) {
                Some(end) => {
                    out.push_str(&braced(&inner_start[..end], vars, issues));
                    rest = &inner_start[end + 1..];
                }
                None => {
                    issues.push(Issue::Syntax(format!(
                        "`${{` without a closing `}}` in `{s}`"
                    )));
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` stays as it is.
                out.push('$');
                rest = after;
            } else {
                let name = &after[..len];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => issues.push(Issue::Unset(name.to_string())),
                }
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    s.char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len())
}

/// The index of the `}` closing a `${`, nested `${...}` skipped.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The inside of `${...}`.
fn braced(inner: &str, vars: &Variables, issues: &mut Vec<Issue>) -> String {
    let len = name_len(inner);
    if len == 0 {
        issues.push(Issue::Syntax(format!(
            "`${{{inner}}}` does not start with a variable name"
        )));
        return String::new();
    }
    let name = &inner[..len];
    let op = &inner[len..];
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let (colon, op) = match op.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, op),
    };
    let present = if colon { set_nonempty } else { value.is_some() };
    let Some(kind) = op.chars().next() else {
        if colon {
            issues.push(Issue::Syntax(format!("`${{{inner}}}` ends after `:`")));
        }
        return match value {
            Some(v) => v.to_string(),
            None => {
                issues.push(Issue::Unset(name.to_string()));
                String::new()
            }
        };
    };
    let arg = &op[kind.len_utf8()..];
    match kind {
        '-' => match present {
            true => value.unwrap_or_default().to_string(),
            false => interpolate(arg, vars, issues),
        },
        '?' => match present {
            true => value.unwrap_or_default().to_string(),
            false => {
                let message = interpolate(arg, vars, issues);
                issues.push(Issue::Required {
                    name: name.to_string(),
                    message,
                });
                String::new()
            }
        },
        '+' => match present {
            true => interpolate(arg, vars, issues),
            false => String::new(),
        },
        _ => {
            issues.push(Issue::Syntax(format!(
                "`${{{inner}}}`: after the name comes `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`"
            )));
            String::new()
        }
    }
}

/// Reads a `.env` / `env_file` file: `KEY=VALUE` lines, `#` comments,
/// optional `export `, single or double quotes. Returns the pairs and the
/// lines that are not pairs (line number, text).
pub fn parse_env_file(text: &str) -> (BTreeMap<String, String>, Vec<(usize, String)>) {
    let mut values = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            bad.push((i + 1, raw.to_string()));
            continue;
        };
        let key = key.trim();
        if name_len(key) != key.len() {
            bad.push((i + 1, raw.to_string()));
            continue;
        }
        let value = value.trim();
        let value = if let Some(q) = value.strip_prefix('"') {
            let end = q.rfind('"').unwrap_or(q.len());
            q[..end].replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(q) = value.strip_prefix('\'') {
            let end = q.rfind('\'').unwrap_or(q.len());
            q[..end].to_string()
        } else {
            // An unquoted value ends at ` #`.
            match value.find(" #") {
                Some(p) => value[..p].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        values.insert(key.to_string(), value);
    }
    (values, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        Variables {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn run(s: &str, v: &Variables) -> (String, Vec<Issue>) {
        let mut issues = Vec::new();
        let out = interpolate(s, v, &mut issues);
        (out, issues)
    }

    #[test]
    fn every_form() {
        let v = vars(&[("A", "x"), ("E", "")]);
        assert_eq!(run("$A ${A} $$A", &v).0, "x x $A");
        assert_eq!(run("${E:-d} ${E-d} ${U-d} ${U:-${A}}", &v).0, "d  d x");
        assert_eq!(run("${A:+y}${E:+y}${E+z}", &v).0, "yz");
        assert_eq!(run("cost: 5$", &v).0, "cost: 5$");
        let (out, issues) = run("${U:?set U first}", &v);
        assert_eq!(out, "");
        assert_eq!(
            issues,
            vec![Issue::Required {
                name: "U".into(),
                message: "set U first".into()
            }]
        );
        assert_eq!(run("$U", &v).1, vec![Issue::Unset("U".into())]);
        assert!(matches!(run("${A", &v).1[0], Issue::Syntax(_)));
    }

    #[test]
    fn env_files() {
        let (vals, bad) = parse_env_file(
            "# c\nA=1\nexport B = two words # note\nC=\"q # kept\"\nD='$raw'\nnot a pair\n",
        );
        assert_eq!(vals["A"], "1");
        assert_eq!(vals["B"], "two words");
        assert_eq!(vals["C"], "q # kept");
        assert_eq!(vals["D"], "$raw");
        assert_eq!(bad, vec![(6, "not a pair".to_string())]);
    }
}
