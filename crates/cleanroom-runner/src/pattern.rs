//! [`Pattern`]: an expected-output regex whose syntax is checked when the
//! file is read and which is compiled only when a step's output is checked
//! against it. Compiling every regex of a generated file with tens of
//! thousands of steps up front would make reading it take seconds.

use std::fmt;
use std::sync::{Arc, OnceLock};

use regex::Regex;

/// A regex in multi-line mode (`^` and `$` match at each line).
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    compiled: Arc<OnceLock<Result<Regex, String>>>,
}

impl Pattern {
    /// Checks the syntax only (cheap); the last line of the error otherwise.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        regex_syntax::ParserBuilder::new()
            .multi_line(true)
            .build()
            .parse(source)
            .map_err(|e| last_line(&e.to_string()))?;
        Ok(Pattern {
            source: source.to_string(),
            compiled: Arc::new(OnceLock::new()),
        })
    }

    /// The compiled regex (compiled once, on first use). Valid syntax can
    /// still be too large to compile: that is the error.
    pub fn regex(&self) -> Result<&Regex, String> {
        self.compiled
            .get_or_init(|| {
                regex::RegexBuilder::new(&self.source)
                    .multi_line(true)
                    .build()
                    .map_err(|e| last_line(&e.to_string()))
            })
            .as_ref()
            .map_err(String::clone)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn last_line(detail: &str) -> String {
    detail.lines().last().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_is_checked_up_front_and_lines_anchor() {
        assert_eq!(Pattern::parse("(").unwrap_err(), "error: unclosed group");
        let p = Pattern::parse("^b$").unwrap();
        assert!(p.regex().unwrap().is_match("a\nb\nc"));
        assert_eq!(p.to_string(), "^b$");
        // Valid syntax, too big to compile: found when used.
        let huge = Pattern::parse("(?:a{1000}){1000}").unwrap();
        assert!(huge.regex().is_err());
    }
}
