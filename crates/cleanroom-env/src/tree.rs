//! One tree for both file formats: TOML tables and YAML mappings become
//! [`Node`]s that remember their line, so one reader checks keys and
//! reports `file:line` for either.

/// A value and the line it starts on (from 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
}

/// What a scalar was written as: YAML's plain scalars resolve as YAML 1.2's
/// core schema does; quoted ones are always strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The text as written (unquoted) and what it resolves to.
    Scalar(String, ScalarKind),
    List(Vec<Node>),
    /// Keys in file order, each with its own line.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub line: usize,
}

impl Node {
    pub fn scalar(text: impl Into<String>, kind: ScalarKind, line: usize) -> Node {
        Node {
            value: Value::Scalar(text.into(), kind),
            line,
        }
    }

    /// The scalar's text (numbers and booleans as written), or `None` for a
    /// list, a map or null.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(_, ScalarKind::Null) => None,
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Scalar(_, ScalarKind::Null))
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Node]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// What kind of value this is, for messages ("expected a list, found a map").
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar(_, ScalarKind::Null) => "nothing",
            Value::Scalar(_, ScalarKind::Bool) => "a boolean",
            Value::Scalar(_, ScalarKind::Int) => "a number",
            Value::Scalar(_, ScalarKind::Float) => "a number",
            Value::Scalar(_, ScalarKind::Str) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// How a plain (unquoted) YAML scalar resolves (YAML 1.2 core schema, plus
/// the `yes`/`no` compose files written for YAML 1.1 still use).
pub fn resolve_plain(s: &str) -> ScalarKind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
        _ if s.parse::<i64>().is_ok() => ScalarKind::Int,
        _ if s.parse::<f64>().is_ok() && s.chars().any(|c| c.is_ascii_digit()) => ScalarKind::Float,
        _ => ScalarKind::Str,
    }
}

/// Reads a TOML document into a [`Node`] (line numbers from the spans).
pub fn from_toml(text: &str) -> Result<Node, (usize, String)> {
    let doc: toml_edit::Document<String> =
        toml_edit::Document::parse(text.to_string()).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or_default();
            (line, e.message().to_string())
        })?;
    Ok(toml_table(text, doc.as_table(), 1))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn toml_table(text: &str, t: &dyn toml_edit::TableLike, line: usize) -> Node {
    let mut entries = Vec::new();
    for (k, item) in t.iter() {
        let key_line = t
            .key(k)
            .and_then(|key| key.span())
            .map(|s| line_of(text, s.start))
            .unwrap_or(line);
        if let Some(node) = toml_item(text, item, key_line) {
            entries.push((
                Key {
                    name: k.to_string(),
                    line: key_line,
                },
                node,
            ));
        }
    }
    Node {
        value: Value::Map(entries),
        line,
    }
}

fn toml_item(text: &str, item: &toml_edit::Item, line: usize) -> Option<Node> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(toml_value(text, v, line)),
        toml_edit::Item::Table(t) => Some(toml_table(text, t, line)),
        toml_edit::Item::ArrayOfTables(a) => Some(Node {
            value: Value::List(a.iter().map(|t| toml_table(text, t, line)).collect()),
            line,
        }),
    }
}

fn toml_value(text: &str, v: &toml_edit::Value, line: usize) -> Node {
    use toml_edit::Value as V;
    let line = v.span().map(|s| line_of(text, s.start)).unwrap_or(line);
    let value = match v {
        V::String(s) => Value::Scalar(s.value().clone(), ScalarKind::Str),
        V::Integer(i) => Value::Scalar(i.value().to_string(), ScalarKind::Int),
        V::Float(f) => Value::Scalar(f.value().to_string(), ScalarKind::Float),
        V::Boolean(b) => Value::Scalar(b.value().to_string(), ScalarKind::Bool),
        V::Datetime(d) => Value::Scalar(d.value().to_string(), ScalarKind::Str),
        V::Array(a) => Value::List(a.iter().map(|x| toml_value(text, x, line)).collect()),
        V::InlineTable(t) => return toml_table(text, t, line),
    };
    Node { value, line }
}
