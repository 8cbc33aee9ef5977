//! The small string syntaxes of environment files: shell-like words
//! (`command: echo "a b"`), port specs (`127.0.0.1:8080:80/tcp`), lexical
//! path clean-up, and did-you-mean suggestions.

use std::path::{Path, PathBuf};

use crate::model::Port;

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `80`, `8080:80`, `127.0.0.1:8080:80`, any with `/tcp`.
pub fn parse_port(s: &str) -> Result<Port, ()> {
    let s = s.strip_suffix("/tcp").unwrap_or(s);
    let num = |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or(());
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [c] => Ok(Port {
            container: num(c)?,
            host: None,
        }),
        [c, h] | [c, h, _] => Ok(Port {
            container: num(c)?,
            host: if h.is_empty() { None } else { Some(num(h)?) },
        }),
        _ => Err(()),
    }
}

/// Splits words as `sh` would (quotes and backslashes), without expanding anything.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" in `{s}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_sh_does() {
        assert_eq!(
            split_words("sh -c 'echo a b' \"x\\\"y\" z\\ w").unwrap(),
            ["sh", "-c", "echo a b", "x\"y", "z w"]
        );
        assert!(split_words("echo 'a").is_err());
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn port_forms() {
        assert_eq!(
            parse_port("80"),
            Ok(Port {
                container: 80,
                host: None
            })
        );
        assert_eq!(
            parse_port("8080:80"),
            Ok(Port {
                container: 80,
                host: Some(8080)
            })
        );
        assert_eq!(
            parse_port("127.0.0.1:8080:80/tcp"),
            Ok(Port {
                container: 80,
                host: Some(8080)
            })
        );
        assert!(parse_port("3000-3005").is_err());
        assert!(parse_port("0").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("imgae", ["image", "command"]), Some("image"));
        assert_eq!(did_you_mean("zzz", ["image", "command"]), None);
    }
}
