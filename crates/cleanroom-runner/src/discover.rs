//! Finding test files and choosing which to run: discovery under paths,
//! `--filter`, and `--shard i/n`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cleanroom::{Error, Result};

use crate::parse::SUFFIX;

/// Every `*.clnrm.toml` under `paths` (files are taken as given), sorted,
/// skipping `target/` and hidden directories.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let default = [PathBuf::from(".")];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| {
            Error::io(
                format!(
                    "reading test path {} (give a *{SUFFIX} file or a directory)",
                    p.display()
                ),
                e,
            )
        })?;
        if meta.is_dir() {
            walk(p, &mut found)?;
        } else {
            found.push(tidy(p));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name.starts_with('.') || name == "target" || name.starts_with("target-") {
                continue;
            }
            walk(&path, found)?;
        } else if name.ends_with(SUFFIX) && !name.starts_with('.') {
            found.push(tidy(&path));
        }
    }
    Ok(())
}

/// `./a/b` is `a/b`: the same test gets the same name however it was found.
fn tidy(p: &Path) -> PathBuf {
    let s = p.strip_prefix(".").unwrap_or(p);
    if s.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        s.to_path_buf()
    }
}

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config {
            origin: "flag --shard".into(),
            message: format!("`{s}` is not I/N with 1 <= I <= N, for example 2/8"),
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard runs the test at `path`. A stable hash of the path
    /// decides, so every machine splits the same way and the shards
    /// together run every test exactly once.
    pub fn contains(&self, path: &Path) -> bool {
        let key = path.to_string_lossy().replace('\\', "/");
        (cleanroom::hash::fnv1a(key.as_bytes()) % u64::from(self.count)) as u32 == self.index - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_tests() {
        let paths: Vec<PathBuf> = (0..500)
            .map(|i| PathBuf::from(format!("tests/dir{}/t{i}.clnrm.toml", i % 7)))
            .collect();
        for n in [1u32, 2, 3, 8] {
            let mut seen = vec![0u32; paths.len()];
            for i in 1..=n {
                let shard = Shard { index: i, count: n };
                for (k, p) in paths.iter().enumerate() {
                    if shard.contains(p) {
                        seen[k] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|c| *c == 1),
                "n={n}: each test exactly once"
            );
        }
        // Roughly balanced: no shard of 8 gets more than twice its share.
        let counts: Vec<usize> = (1..=8)
            .map(|i| {
                paths
                    .iter()
                    .filter(|p| Shard { index: i, count: 8 }.contains(p))
                    .count()
            })
            .collect();
        assert!(counts.iter().all(|c| *c > 30 && *c < 125), "{counts:?}");
        // Stable: the same split on every run and machine.
        assert!(
            Shard { index: 1, count: 2 }.contains(Path::new("a.clnrm.toml"))
                ^ Shard { index: 2, count: 2 }.contains(Path::new("a.clnrm.toml"))
        );
        assert_eq!(cleanroom::hash::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        for bad in ["0/3", "4/3", "1/0", "x", "1-2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn discovery_skips_target_and_hidden_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for p in [
            "a.clnrm.toml",
            "sub/b.clnrm.toml",
            "target/c.clnrm.toml",
            ".git/d.clnrm.toml",
            "sub/e.toml",
        ] {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let found = discover(&[d.to_path_buf()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![
                PathBuf::from("a.clnrm.toml"),
                PathBuf::from("sub/b.clnrm.toml")
            ]
        );
        let e = discover(&[d.join("missing")]).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
