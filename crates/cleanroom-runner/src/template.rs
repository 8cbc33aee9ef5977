//! Tera templates in test files, as clnrm renders them: a file holding
//! `{{ … }}`, `{% … %}` or `{# … #}` is rendered before it is read, with
//! the environment and the file's own `[vars]` (on top) as variables, both
//! by name and under `vars.`, and clnrm's `env(name=…)` and
//! `now_rfc3339()` functions.

use serde_json::{Map, Value};
use std::collections::HashMap;

use crate::tree::{self, Node};

/// A rendered file, or why it could not be rendered.
pub(crate) enum Rendered {
    /// Not a template: read as written.
    Plain,
    Text(String),
    Failed(String),
}

/// Whether `text` holds template syntax (clnrm's own test).
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Renders `text` when it is a template. `freeze_clock` (an RFC 3339 time)
/// is what `now_rfc3339()` returns when given.
pub(crate) fn render(
    text: &str,
    env: &HashMap<String, String>,
    freeze_clock: Option<&str>,
) -> Rendered {
    if !is_template(text) {
        return Rendered::Plain;
    }
    let mut vars = Map::new();
    for (k, v) in env {
        vars.insert(k.clone(), Value::String(v.clone()));
    }
    let own = own_vars(text);
    for (k, v) in &own {
        vars.insert(k.clone(), v.clone());
    }
    let mut context = tera::Context::new();
    for (k, v) in &vars {
        context.insert(k.as_str(), v);
    }
    context.insert("vars", &Value::Object(own));
    context.insert("matrix", &Value::Object(Map::new()));

    let mut engine = tera::Tera::default();
    let environment = env.clone();
    engine.register_function(
        "env",
        move |args: &HashMap<String, Value>| -> tera::Result<Value> {
            let name = args
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| tera::Error::msg("env() needs name=\"VARIABLE\""))?;
            match (environment.get(name), args.get("default")) {
                (Some(v), _) => Ok(Value::String(v.clone())),
                (None, Some(d)) => Ok(d.clone()),
                (None, None) => Err(tera::Error::msg(format!(
                    "environment variable `{name}` is not set (give default=\"...\")"
                ))),
            }
        },
    );
    let now = freeze_clock.map_or_else(cleanroom::time::now_rfc3339, str::to_string);
    engine.register_function(
        "now_rfc3339",
        move |_: &HashMap<String, Value>| -> tera::Result<Value> { Ok(Value::String(now.clone())) },
    );
    match engine.render_str(text, &context) {
        Ok(out) => Rendered::Text(out),
        Err(e) => Rendered::Failed(one_line(&e)),
    }
}

/// Tera's error and its causes on one line.
fn one_line(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The file's `[vars]` table, read before rendering: from the whole file
/// when it is already valid TOML, else from the `[vars]` section alone.
fn own_vars(text: &str) -> Map<String, Value> {
    let table = |root: &[tree::Entry]| {
        root.iter()
            .find(|e| e.key.value == "vars")
            .and_then(|e| match json(&e.value.value) {
                Value::Object(m) => Some(m),
                _ => None,
            })
    };
    if let Ok(root) = tree::parse(text) {
        return table(&root).unwrap_or_default();
    }
    let mut section = String::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        // A table header or template syntax at the start of a line ends it.
        if t.starts_with('[') || t.starts_with('{') {
            inside = t == "[vars]";
        }
        if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    tree::parse(&section)
        .ok()
        .and_then(|root| table(&root))
        .unwrap_or_default()
}

fn json(node: &Node) -> Value {
    match node {
        Node::Str(s) => Value::String(s.clone()),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => Value::from(*f),
        Node::Bool(b) => Value::Bool(*b),
        Node::Datetime => Value::Null,
        Node::Array(items) => Value::Array(items.iter().map(|i| json(&i.value)).collect()),
        Node::Table(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.value.clone(), json(&e.value.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn vars_and_environment_render_with_vars_on_top() {
        let text = "[vars]\nname = \"from-vars\"\n\n[meta]\nname = \"{{ vars.name }}-{{ name }}-{{ HOME_DIR }}-{{ env(name='HOME_DIR') }}\"\n";
        let out = match render(
            text,
            &env(&[("HOME_DIR", "/h"), ("name", "from-env")]),
            None,
        ) {
            Rendered::Text(out) => out,
            Rendered::Failed(e) => panic!("{e}"),
            Rendered::Plain => panic!("a template"),
        };
        assert!(
            out.contains("name = \"from-vars-from-vars-/h-/h\""),
            "{out}"
        );
        assert!(matches!(
            render("a = 1\n", &env(&[]), None),
            Rendered::Plain
        ));
    }

    #[test]
    fn vars_are_found_when_the_raw_file_is_not_toml() {
        let text = "[vars]\nn = 2\n\n{% for i in range(end=vars.n) %}[[steps]]\nname = \"s{{ i }}\"\n{% endfor %}\n";
        let out = match render(text, &env(&[]), None) {
            Rendered::Text(out) => out,
            Rendered::Failed(e) => panic!("{e}"),
            Rendered::Plain => panic!("a template"),
        };
        assert!(
            out.contains("name = \"s0\"") && out.contains("name = \"s1\""),
            "{out}"
        );
    }

    #[test]
    fn frozen_clock_and_errors() {
        let Rendered::Text(out) = render(
            "t = \"{{ now_rfc3339() }}\"\n",
            &env(&[]),
            Some("2025-01-01T00:00:00Z"),
        ) else {
            panic!("renders")
        };
        assert_eq!(out, "t = \"2025-01-01T00:00:00Z\"\n");
        let Rendered::Failed(e) = render("t = \"{{ fake_name() }}\"\n", &env(&[]), None) else {
            panic!("fails")
        };
        assert!(e.contains("fake_name") && !e.contains('\n'), "{e}");
    }
}
