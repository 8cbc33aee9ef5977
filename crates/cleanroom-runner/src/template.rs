//! Tera templates in test files, as clnrm renders them: a file holding
//! `{{ … }}`, `{% … %}` or `{# … #}` is rendered before it is read, with
//! the environment and the file's own `[vars]` (on top) as variables, both
//! by name and under `vars.`, and clnrm's `env(name=…)` and
//! `now_rfc3339()` functions.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

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
    let now = freeze_clock.map_or_else(now_rfc3339, str::to_string);
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

/// The current time as RFC 3339 in UTC, to the second.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_of(secs)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339_of(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (`2025-01-01T00:00:00Z`,
/// fractions and offsets allowed), or why it is not one.
pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time such as \"2025-01-01T00:00:00Z\"");
    let re = regex::Regex::new(
        r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$",
    )
    .map_err(|e| e.to_string())?;
    let c = re.captures(s.trim()).ok_or_else(bad)?;
    let n = |i: usize| -> i64 { c.get(i).map_or(0, |m| m.as_str().parse().unwrap_or(0)) };
    let (year, month, day, hour, min, sec) = (n(1), n(2), n(3), n(4), n(5), n(6));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month.clamp(1, 12) - 1) as usize]
        || hour > 23
        || min > 59
        || sec > 60
        || n(9) > 23
        || n(10) > 59
    {
        return Err(bad());
    }
    // Days since the epoch from the civil date.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let offset = match c.get(8).map(|m| m.as_str()) {
        Some("-") => -(n(9) * 3600 + n(10) * 60),
        Some(_) => n(9) * 3600 + n(10) * 60,
        None => 0,
    };
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
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

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2025-01-01T00:00:00Z"), Ok(1_735_689_600));
        assert_eq!(
            parse_rfc3339("2025-01-01T02:00:00+02:00"),
            Ok(1_735_689_600)
        );
        assert_eq!(rfc3339_of(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339_of(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00.5Z"), Ok(951_782_400));
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-01-01",
            "yesterday",
            "2025-13-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
