//! A TOML document as a small tree whose every key and value remembers its
//! byte span, so that each problem found later can name its line and column.

use std::ops::Range;

use toml_edit::{Document, Item, Value};

/// A value and where it is in the file.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// One key of a table, with its span and its value's.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Spanned<String>,
    pub value: Spanned<Node>,
}

/// A TOML value, tables and arrays included.
#[derive(Clone, Debug)]
pub enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Dates and times: TOML has them, test files have no use for them.
    Datetime,
    Array(Vec<Spanned<Node>>),
    Table(Vec<Entry>),
}

impl Node {
    /// The TOML name of this kind of value, for "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Datetime => "a date-time",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

/// Parses `text`; on a syntax error, the message and where it is.
pub fn parse(text: &str) -> Result<Vec<Entry>, (String, Range<usize>)> {
    let doc = Document::parse(text).map_err(|e| {
        let message: Vec<&str> = e.message().lines().map(str::trim).collect();
        (message.join("; "), e.span().unwrap_or(0..0))
    })?;
    Ok(table_entries(doc.as_table().iter_spanned(), 0..0))
}

trait SpannedIter<'a> {
    fn iter_spanned(self) -> Vec<(Range<usize>, &'a str, &'a Item)>;
}

impl<'a> SpannedIter<'a> for &'a toml_edit::Table {
    fn iter_spanned(self) -> Vec<(Range<usize>, &'a str, &'a Item)> {
        self.iter()
            .map(|(k, item)| {
                let span = self.key(k).and_then(|key| key.span()).unwrap_or(0..0);
                (span, k, item)
            })
            .collect()
    }
}

fn table_entries(entries: Vec<(Range<usize>, &str, &Item)>, parent: Range<usize>) -> Vec<Entry> {
    let mut out: Vec<Entry> = entries
        .into_iter()
        .map(|(kspan, k, item)| {
            let kspan = if kspan == (0..0) {
                parent.clone()
            } else {
                kspan
            };
            Entry {
                key: Spanned {
                    value: k.to_string(),
                    span: kspan.clone(),
                },
                value: item_node(item, kspan),
            }
        })
        .collect();
    // Document order, so problems are reported top to bottom.
    out.sort_by_key(|e| e.key.span.start);
    out
}

fn item_node(item: &Item, key_span: Range<usize>) -> Spanned<Node> {
    match item {
        Item::None => Spanned {
            value: Node::Table(Vec::new()),
            span: key_span,
        },
        Item::Value(v) => value_node(v, key_span),
        Item::Table(t) => {
            let span = t.span().unwrap_or_else(|| key_span.clone());
            Spanned {
                value: Node::Table(table_entries(t.iter_spanned(), span.clone())),
                span,
            }
        }
        Item::ArrayOfTables(a) => {
            let elems = a
                .iter()
                .map(|t| {
                    let span = t.span().unwrap_or_else(|| key_span.clone());
                    Spanned {
                        value: Node::Table(table_entries(t.iter_spanned(), span.clone())),
                        span,
                    }
                })
                .collect();
            Spanned {
                value: Node::Array(elems),
                span: a.span().unwrap_or(key_span),
            }
        }
    }
}

fn value_node(v: &Value, fallback: Range<usize>) -> Spanned<Node> {
    let span = v.span().unwrap_or_else(|| fallback.clone());
    let value = match v {
        Value::String(s) => Node::Str(s.value().clone()),
        Value::Integer(i) => Node::Int(*i.value()),
        Value::Float(f) => Node::Float(*f.value()),
        Value::Boolean(b) => Node::Bool(*b.value()),
        Value::Datetime(_) => Node::Datetime,
        Value::Array(a) => Node::Array(a.iter().map(|e| value_node(e, span.clone())).collect()),
        Value::InlineTable(t) => {
            let mut entries: Vec<Entry> = t
                .iter()
                .map(|(k, val)| {
                    let kspan = t
                        .key(k)
                        .and_then(|key| key.span())
                        .unwrap_or_else(|| span.clone());
                    Entry {
                        key: Spanned {
                            value: k.to_string(),
                            span: kspan.clone(),
                        },
                        value: value_node(val, kspan),
                    }
                })
                .collect();
            entries.sort_by_key(|e| e.key.span.start);
            Node::Table(entries)
        }
    };
    Spanned { value, span }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_their_spans() {
        let text = "[a]\nx = 1\n[[s]]\ny = { z = \"q\" }\n";
        let root = parse(text).unwrap();
        assert_eq!(root[0].key.value, "a");
        let Node::Table(a) = &root[0].value.value else {
            panic!("a is a table")
        };
        assert_eq!(&text[a[0].key.span.clone()], "x");
        assert_eq!(&text[a[0].value.span.clone()], "1");
        let Node::Array(s) = &root[1].value.value else {
            panic!("s is an array of tables")
        };
        let Node::Table(t) = &s[0].value else {
            panic!()
        };
        let Node::Table(inner) = &t[0].value.value else {
            panic!()
        };
        assert_eq!(&text[inner[0].value.span.clone()], "\"q\"");
    }

    #[test]
    fn syntax_errors_have_a_span() {
        let (msg, span) = parse("a = \n").unwrap_err();
        assert!(!msg.is_empty());
        assert_eq!(span.start, 4);
    }
}
