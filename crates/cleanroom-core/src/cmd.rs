//! [`Cmd`]: one command to run inside a sandbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A program, its arguments and what it runs with. Built with the methods
/// below or converted from an argv: `Cmd::from(["echo", "hello"])`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Set over the sandbox's environment.
    pub env: BTreeMap<String, String>,
    /// Overrides the sandbox's working directory.
    pub workdir: Option<PathBuf>,
    /// Bytes written to the command's stdin, which is then closed.
    /// `None` gives an empty stdin, never the caller's.
    pub stdin: Option<Vec<u8>>,
    /// Overrides the sandbox's timeout for this command.
    #[serde(with = "crate::spec::opt_millis")]
    pub timeout: Option<Duration>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            ..Cmd::default()
        }
    }

    /// `sh -c SCRIPT`.
    pub fn shell(script: impl Into<String>) -> Self {
        Cmd::new("sh").arg("-c").arg(script)
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Program followed by arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// The command as a shell would show it, for messages.
    pub fn display(&self) -> String {
        self.argv()
            .iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Rejects an empty program, invalid variable names and a timeout out
    /// of [`crate::ranges::timeout`]'s range.
    pub fn validate(&self) -> crate::Result<()> {
        if self.program.is_empty() {
            return Err(crate::Error::InvalidSpec(
                "empty command: give a program to run, for example `-- echo hello`".into(),
            ));
        }
        self.timeout.map(crate::ranges::timeout).transpose()?;
        for k in self.env.keys() {
            crate::spec::validate_env_key(k)?;
        }
        Ok(())
    }
}

impl<const N: usize> From<[&str; N]> for Cmd {
    fn from(argv: [&str; N]) -> Self {
        Cmd::from(argv.as_slice())
    }
}

impl<const N: usize> From<[String; N]> for Cmd {
    fn from(argv: [String; N]) -> Self {
        Cmd::from(Vec::from(argv))
    }
}

impl From<&[&str]> for Cmd {
    fn from(argv: &[&str]) -> Self {
        let mut it = argv.iter();
        let program = it.next().map(|s| s.to_string()).unwrap_or_default();
        Cmd::new(program).args(it.copied())
    }
}

impl From<Vec<String>> for Cmd {
    fn from(argv: Vec<String>) -> Self {
        let mut it = argv.into_iter();
        let program = it.next().unwrap_or_default();
        Cmd::new(program).args(it)
    }
}

impl From<Vec<&str>> for Cmd {
    fn from(argv: Vec<&str>) -> Self {
        Cmd::from(argv.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_arrays_and_vecs() {
        let c = Cmd::from(["echo", "hello"]);
        assert_eq!(c.argv(), vec!["echo", "hello"]);
        let c = Cmd::from([String::from("echo"), String::from("hi")]);
        assert_eq!(c.argv(), vec!["echo", "hi"]);
        let c = Cmd::from(vec!["a".to_string(), "b c".to_string()]);
        assert_eq!(c.display(), "a 'b c'");
        assert!(Cmd::from(Vec::<String>::new()).validate().is_err());
    }
}
