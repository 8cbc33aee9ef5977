//! YAML into [`Node`]s with line numbers, built from the parser's events so
//! that anchors, aliases and merge keys (`<<: *base`) are resolved here,
//! and every key keeps the line it is on.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::tree::{resolve_plain, Key, Node, ScalarKind, Value};

/// Reads the first document of `text`; an empty file is an empty map.
/// Errors carry the line they are on.
pub fn parse(text: &str) -> Result<Node, (usize, String)> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| (e.marker().line(), e.info().to_string()))?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Map(Vec::new()),
        line: 1,
    }))
}

/// A collection being built: its node, the anchor to record it under, and
/// for a map the key read but not yet given a value.
struct Open {
    node: Node,
    anchor: usize,
    pending_key: Option<Node>,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: BTreeMap<usize, Node>,
    root: Option<Node>,
    error: Option<(usize, String)>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let kind = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    ScalarKind::Str
                };
                let node = Node::scalar(text, kind, line);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.add(node)
                }
                None => self.fail(line, "an alias refers to an anchor not defined before it"),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Open {
                node: Node {
                    value: Value::List(Vec::new()),
                    line,
                },
                anchor,
                pending_key: None,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Open {
                node: Node {
                    value: Value::Map(Vec::new()),
                    line,
                },
                anchor,
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.stack.pop() else { return };
                let mut node = open.node;
                if let Value::Map(entries) = &mut node.value {
                    apply_merge_keys(entries);
                }
                if open.anchor > 0 {
                    self.anchors.insert(open.anchor, node.clone());
                }
                self.add(node);
            }
            _ => {}
        }
    }
}

impl Builder {
    fn fail(&mut self, line: usize, message: &str) {
        if self.error.is_none() {
            self.error = Some((line, message.to_string()));
        }
    }

    /// Puts a finished node into the collection being built (or makes it
    /// the document).
    fn add(&mut self, node: Node) {
        let Some(top) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        match &mut top.node.value {
            Value::List(items) => items.push(node),
            Value::Map(entries) => match top.pending_key.take() {
                None => top.pending_key = Some(node),
                Some(key) => {
                    let Some(name) = key.text().map(str::to_string).or_else(|| {
                        // `? ~` or a null key: compose has none; keep it visible.
                        key.is_null().then(|| "null".to_string())
                    }) else {
                        let line = key.line;
                        self.fail(
                            line,
                            "a mapping key must be a plain value, not a list or map",
                        );
                        return;
                    };
                    if let Some(dup) = entries.iter().find(|(k, _)| k.name == name && name != "<<")
                    {
                        let line = key.line;
                        let first = dup.0.line;
                        self.fail(
                            line,
                            &format!("key `{name}` is given twice (first on line {first})"),
                        );
                        return;
                    }
                    entries.push((
                        Key {
                            name,
                            line: key.line,
                        },
                        node,
                    ));
                }
            },
            Value::Scalar(..) => {}
        }
    }
}

/// `<<: *base` and `<<: [*a, *b]`: the merged maps' keys that the map does
/// not set itself, the first merged map winning, as YAML's merge key type says.
fn apply_merge_keys(entries: &mut Vec<(Key, Node)>) {
    let Some(pos) = entries.iter().position(|(k, _)| k.name == "<<") else {
        return;
    };
    let (_, merged) = entries.remove(pos);
    let sources: Vec<Node> = match merged.value {
        Value::Map(_) => vec![merged],
        Value::List(items) => items,
        Value::Scalar(..) => Vec::new(),
    };
    for source in sources {
        if let Value::Map(src) = source.value {
            for (k, v) in src {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
        }
    }
    // A second `<<` (not valid YAML, but seen) merges too.
    apply_merge_keys(entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_anchors_and_merge_keys() {
        let text = "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n  b: *base\n";
        let root = parse(text).unwrap();
        let services = root.get("services").unwrap();
        assert_eq!(services.line, 5);
        let a = services.get("a").unwrap();
        assert_eq!(a.get("image").unwrap().text(), Some("busybox"));
        assert_eq!(a.get("restart").unwrap().text(), Some("no"));
        let keys: Vec<_> = a
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| (k.name.as_str(), k.line))
            .collect();
        assert_eq!(keys[0], ("restart", 7));
        assert_eq!(
            services.get("b").unwrap().get("restart").unwrap().text(),
            Some("always")
        );
    }

    #[test]
    fn scalars_resolve_and_errors_have_lines() {
        let root = parse("a: 1\nb: '1'\nc: true\nd:\n").unwrap();
        assert_eq!(
            root.get("a").unwrap().value,
            Value::Scalar("1".into(), ScalarKind::Int)
        );
        assert_eq!(
            root.get("b").unwrap().value,
            Value::Scalar("1".into(), ScalarKind::Str)
        );
        assert!(root.get("d").unwrap().is_null());
        let (line, _) = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(line >= 2, "{line}");
        let (line, msg) = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("twice"), "{msg}");
    }
}
