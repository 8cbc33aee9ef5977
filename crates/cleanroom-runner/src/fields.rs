//! Reading typed fields out of a [`crate::tree`] table, reporting each
//! wrong type or value as a [`crate::Problem`] and carrying on.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use regex::Regex;

use crate::problem::{is_typo, unknown_key, Problems};
use crate::tree::{Entry, Node};

/// The reader of one file: its problems so far and its directory.
pub(crate) struct Reader<'a> {
    pub problems: Problems<'a>,
    /// The test file's directory, for relative host paths.
    pub dir: &'a Path,
}

/// The entry for `key`, if present.
pub(crate) fn get<'e>(entries: &'e [Entry], key: &str) -> Option<&'e Entry> {
    entries.iter().find(|e| e.key.value == key)
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a Path, text: &'a str, dir: &'a Path) -> Self {
        Reader {
            problems: Problems::new(file, text),
            dir,
        }
    }

    pub fn problem(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.problems.add(span, message);
    }

    /// Reports every key of `entries` not in `known`: a warning (clnrm
    /// ignores unknown keys), but a problem when strict or when the key is
    /// one edit away from a known one (a typo that would silently do nothing).
    pub fn known_keys(&mut self, entries: &[Entry], what: &str, known: &[&str]) {
        self.known_keys_ignoring(entries, what, known, &[]);
    }

    /// [`Reader::known_keys`], where the keys in `ignored` are clnrm's own
    /// that Cleanroom accepts without honouring: warned about as such.
    pub fn known_keys_ignoring(
        &mut self,
        entries: &[Entry],
        what: &str,
        known: &[&str],
        ignored: &[&str],
    ) {
        for e in entries {
            let key = e.key.value.as_str();
            if known.contains(&key) {
                continue;
            }
            if ignored.contains(&key) {
                let msg =
                    format!("`{key}` in {what} is clnrm's and is not honoured here (ignored)");
                self.problems.warn(&e.key.span, msg);
            } else if is_typo(key, known) {
                let msg = unknown_key(what, key, known);
                self.problem(&e.key.span, msg);
            } else {
                let msg = format!("{} (ignored)", unknown_key(what, key, known));
                self.problems.warn(&e.key.span, msg);
            }
        }
    }

    fn wrong_type(&mut self, e: &Entry, expected: &str) {
        let msg = format!(
            "`{}` must be {expected}, not {}",
            e.key.value,
            e.value.value.kind()
        );
        self.problem(&e.value.span, msg);
    }

    /// The entries of a table value, or a problem.
    pub fn table<'e>(&mut self, e: &'e Entry) -> Option<&'e [Entry]> {
        match &e.value.value {
            Node::Table(t) => Some(t),
            _ => {
                self.wrong_type(e, "a table");
                None
            }
        }
    }

    pub fn string(&mut self, e: &Entry) -> Option<String> {
        match &e.value.value {
            Node::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(e, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, e: &Entry) -> Option<bool> {
        match &e.value.value {
            Node::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(e, "true or false");
                None
            }
        }
    }

    /// A non-negative integer that fits `T`.
    pub fn uint<T: TryFrom<i64>>(&mut self, e: &Entry) -> Option<T> {
        match &e.value.value {
            Node::Int(i) => match T::try_from(*i) {
                Ok(v) if *i >= 0 => Some(v),
                _ => {
                    let msg = format!("`{}` = {i} is out of range", e.key.value);
                    self.problem(&e.value.span, msg);
                    None
                }
            },
            _ => {
                self.wrong_type(e, "a whole number");
                None
            }
        }
    }

    /// A timeout: `"30s"`, `"500ms"`, `"2m"`, or an integer number of
    /// milliseconds, within [`cleanroom::ranges::timeout`].
    pub fn duration(&mut self, e: &Entry) -> Option<Duration> {
        let parsed = match &e.value.value {
            Node::Str(s) => cleanroom::parse_duration(s),
            Node::Int(i) if *i >= 0 => Ok(Duration::from_millis(*i as u64)),
            _ => {
                self.wrong_type(e, "a duration such as \"30s\"");
                return None;
            }
        };
        let checked = parsed.and_then(cleanroom::ranges::timeout);
        self.report(e, checked.map_err(|err| strip(&err)))
    }

    /// `parsed` (already read from `e`) passed through a range check from
    /// [`cleanroom::ranges`], its error reported at `e`.
    pub fn in_range<T>(
        &mut self,
        e: &Entry,
        parsed: Option<T>,
        check: impl FnOnce(T) -> cleanroom::Result<T>,
    ) -> Option<T> {
        let checked = check(parsed?).map_err(|err| strip(&err));
        self.report(e, checked)
    }

    /// An exit code, within [`cleanroom::ranges::exit_code`].
    pub fn exit_code(&mut self, e: &Entry) -> Option<i32> {
        match &e.value.value {
            Node::Int(i) => {
                let checked = cleanroom::ranges::exit_code(*i).map_err(|err| strip(&err));
                self.report(e, checked)
            }
            _ => {
                self.wrong_type(e, "an integer");
                None
            }
        }
    }

    /// `"512M"`, `"1G"`, or an integer number of bytes.
    pub fn size(&mut self, e: &Entry) -> Option<u64> {
        let parsed = match &e.value.value {
            Node::Str(s) => cleanroom::parse_size(s).map_err(|err| strip(&err)),
            Node::Int(i) if *i > 0 => Ok(*i as u64),
            _ => {
                self.wrong_type(e, "a size such as \"512M\"");
                return None;
            }
        };
        self.report(e, parsed)
    }

    /// A value parsed from a string with `FromStr`, errors reported.
    pub fn parsed<T>(&mut self, e: &Entry) -> Option<T>
    where
        T: std::str::FromStr<Err = cleanroom::Error>,
    {
        let s = self.string(e)?;
        let parsed = s.parse::<T>().map_err(|err| strip(&err));
        self.report(e, parsed)
    }

    /// A regex in multi-line mode (`^`/`$` match at each line).
    pub fn regex(&mut self, e: &Entry) -> Option<Regex> {
        let s = self.string(e)?;
        // `^` and `$` match at line starts and ends: output is lines.
        match regex::RegexBuilder::new(&s).multi_line(true).build() {
            Ok(r) => Some(r),
            Err(err) => {
                let detail = err.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                let msg = format!("`{}` is not a valid regex: {last}", e.key.value);
                self.problem(&e.value.span, msg);
                None
            }
        }
    }

    /// An expected-output regex: its syntax checked now, compiled when used.
    pub fn pattern(&mut self, e: &Entry) -> Option<crate::pattern::Pattern> {
        let s = self.string(e)?;
        match crate::pattern::Pattern::parse(&s) {
            Ok(p) => Some(p),
            Err(last) => {
                let msg = format!("`{}` is not a valid regex: {last}", e.key.value);
                self.problem(&e.value.span, msg);
                None
            }
        }
    }

    /// An array of strings (an argv). A single string means `sh -c STRING`
    /// when `shell` is set.
    pub fn argv(&mut self, e: &Entry, shell: bool) -> Option<Vec<String>> {
        match &e.value.value {
            Node::Str(s) if shell => Some(vec!["sh".into(), "-c".into(), s.clone()]),
            Node::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match &item.value {
                        Node::Str(s) => out.push(s.clone()),
                        other => {
                            let msg = format!(
                                "`{}` must hold strings only, not {}",
                                e.key.value,
                                other.kind()
                            );
                            self.problem(&item.span, msg);
                            return None;
                        }
                    }
                }
                if out.is_empty() || out[0].is_empty() {
                    let msg = format!(
                        "`{}` is empty; give the program and its arguments, e.g. [\"echo\", \"hi\"]",
                        e.key.value
                    );
                    self.problem(&e.value.span, msg);
                    return None;
                }
                Some(out)
            }
            _ => {
                self.wrong_type(e, "an array of strings such as [\"echo\", \"hi\"]");
                None
            }
        }
    }

    /// A table of string values: environment variables.
    pub fn env(&mut self, e: &Entry) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(entries) = self.table(e) else {
            return out;
        };
        for var in entries {
            if let Err(err) = cleanroom::spec::validate_env_key(&var.key.value) {
                self.problem(&var.key.span, strip(&err));
                continue;
            }
            let value = match &var.value.value {
                Node::Str(s) => s.clone(),
                Node::Int(i) => i.to_string(),
                Node::Bool(b) => b.to_string(),
                other => {
                    let msg = format!(
                        "environment variable `{}` must be a string, not {}",
                        var.key.value,
                        other.kind()
                    );
                    self.problem(&var.value.span, msg);
                    continue;
                }
            };
            out.insert(var.key.value.clone(), value);
        }
        out
    }

    pub fn report<T>(&mut self, e: &Entry, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(msg) => {
                let msg = format!("`{}`: {msg}", e.key.value);
                self.problem(&e.value.span, msg);
                None
            }
        }
    }
}

/// A core error's message without its "invalid sandbox spec: " prefix.
pub(crate) fn strip(e: &cleanroom::Error) -> String {
    match e {
        cleanroom::Error::InvalidSpec(m) => m.clone(),
        other => other.to_string(),
    }
}
