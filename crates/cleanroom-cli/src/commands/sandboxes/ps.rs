//! `cleanroom ps [-a] [--json] [--filter label=K=V]`: named sandboxes on
//! every backend that answers.

use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::detached::now_secs;
use cleanroom::{Error, Result, SandboxInfo};

use crate::cli::PsArgs;
use crate::output;

pub fn main(args: PsArgs) -> Result<ExitCode> {
    let filters = filters(&args.filter)?;
    let only = super::lookup_choice(&args.lookup)?;
    let (mut found, skipped) = wait(cleanroom::named::list(args.all, only))?;
    for s in &skipped {
        tracing::info!("not listed: {s}");
    }
    found.retain(|i| filters.iter().all(|f| f.matches(i)));
    found.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    if args.json {
        output::json(&found)?;
    } else {
        say!("{}", table(&found, now_secs()));
    }
    Ok(ExitCode::SUCCESS)
}

/// One `--filter label=K[=V]`.
#[derive(Debug, PartialEq, Eq)]
struct LabelFilter {
    key: String,
    value: Option<String>,
}

impl LabelFilter {
    fn matches(&self, info: &SandboxInfo) -> bool {
        match (info.labels.get(&self.key), &self.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

fn filters(given: &[String]) -> Result<Vec<LabelFilter>> {
    given
        .iter()
        .map(|f| {
            let Some(rest) = f.strip_prefix("label=").filter(|r| !r.is_empty()) else {
                return Err(Error::Config {
                    origin: "flag --filter".into(),
                    message: format!("`{f}` is not label=KEY or label=KEY=VALUE"),
                });
            };
            Ok(match rest.split_once('=') {
                Some((k, v)) => LabelFilter {
                    key: k.to_string(),
                    value: Some(v.to_string()),
                },
                None => LabelFilter {
                    key: rest.to_string(),
                    value: None,
                },
            })
        })
        .collect()
}

/// NAME BACKEND IMAGE STATUS CREATED COMMAND, in aligned columns.
fn table(found: &[SandboxInfo], now: u64) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["NAME", "BACKEND", "IMAGE", "STATUS", "CREATED", "COMMAND"].map(String::from)];
    for i in found {
        rows.push([
            i.name.clone(),
            i.backend.clone(),
            i.image.clone(),
            i.state.to_string(),
            ago(now.saturating_sub(i.created)),
            command_line(&i.command),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("   ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `5 seconds ago`, `3 minutes ago`, `2 hours ago`, `4 days ago`.
fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// The command as a shell would show it, shortened to 40 characters.
fn command_line(argv: &[String]) -> String {
    let line = argv
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > 40 {
        format!("{}…", line.chars().take(39).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleanroom::SandboxState;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn info(name: &str, l: &[(&str, &str)]) -> SandboxInfo {
        SandboxInfo {
            name: name.into(),
            backend: "docker".into(),
            image: "busybox".into(),
            state: SandboxState::Exited { code: 2 },
            created: 100,
            command: vec!["sh".into(), "-c".into(), "sleep 1".into()],
            labels: labels(l),
            id: "abc".into(),
        }
    }

    #[test]
    fn label_filters_match_key_or_key_and_value() {
        let f = filters(&["label=team=a".into(), "label=ci".into()]).unwrap();
        assert!(f
            .iter()
            .all(|f| f.matches(&info("x", &[("team", "a"), ("ci", "")]))));
        assert!(!f[0].matches(&info("x", &[("team", "b")])));
        let e = filters(&["name=x".into()]).unwrap_err().to_string();
        assert!(e.contains("label=KEY"), "{e}");
    }

    #[test]
    fn the_table_has_docker_columns() {
        let t = table(&[info("web", &[])], 160);
        let mut lines = t.lines();
        let head = lines.next().unwrap();
        assert!(
            head.starts_with("NAME") && head.ends_with("COMMAND"),
            "{head}"
        );
        let row = lines.next().unwrap();
        for cell in [
            "web",
            "docker",
            "busybox",
            "exited (2)",
            "1 minute ago",
            "sh -c \"sleep 1\"",
        ] {
            assert!(row.contains(cell), "{row} lacks {cell}");
        }
    }
}
