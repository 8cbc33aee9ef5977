//! What a snapshot leaves out: `.git` always, and only what the user lists
//! in `--exclude` or in the project's `.cleanroomignore` (gitignore syntax).
//! A project's `.gitignore` is deliberately not read: build directories and
//! binaries are part of what the sandbox should see.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{input, Result};

/// The name of the project file holding extra exclude patterns.
pub const IGNORE_FILE: &str = ".cleanroomignore";

/// Compiled exclude patterns, matched against paths relative to the project.
#[derive(Clone, Debug)]
pub struct Excludes {
    rules: Gitignore,
}

impl Excludes {
    /// `patterns` (from `--exclude`) plus `project/.cleanroomignore` when
    /// there is one. A bad pattern is an error naming it and where it came from.
    pub fn load(project: &Path, patterns: &[String]) -> Result<Excludes> {
        let mut builder = GitignoreBuilder::new(project);
        let file = project.join(IGNORE_FILE);
        if file.is_file() {
            if let Some(e) = builder.add(&file) {
                return Err(input(
                    file.display().to_string(),
                    format!("{e}; fix the pattern"),
                ));
            }
        }
        for pattern in patterns {
            builder.add_line(None, pattern).map_err(|e| {
                input(
                    format!("--exclude `{pattern}`"),
                    format!("{e}; use gitignore syntax"),
                )
            })?;
        }
        let rules = builder
            .build()
            .map_err(|e| input("exclude patterns", format!("{e}; use gitignore syntax")))?;
        Ok(Excludes { rules })
    }

    /// No patterns: only `.git` is left out.
    pub fn none() -> Excludes {
        Excludes {
            rules: Gitignore::empty(),
        }
    }

    /// Whether `rel` (relative to the project) is left out of the snapshot.
    /// `.git` never reaches here: the snapshot skips it by name.
    pub fn excluded(&self, rel: &Path, is_dir: bool) -> bool {
        self.rules.matched(rel, is_dir).is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_file_patterns_both_apply() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(IGNORE_FILE), "target/\n*.log\n").unwrap();
        let ex = Excludes::load(tmp.path(), &["node_modules".into()]).unwrap();
        assert!(ex.excluded(Path::new("target"), true));
        assert!(ex.excluded(Path::new("a/b.log"), false));
        assert!(ex.excluded(Path::new("node_modules"), true));
        assert!(!ex.excluded(Path::new("src/main.rs"), false));
        assert!(!Excludes::none().excluded(Path::new("target"), true));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Excludes::load(tmp.path(), &["a{b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a{b"), "{e}");
    }
}
