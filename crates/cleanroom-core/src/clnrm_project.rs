//! clnrm's own project `cleanroom.toml` (`[project]`, `[cli]`,
//! `[containers]`, ...): recognised, the settings that mean something to
//! Cleanroom taken, everything else skipped with one warning.

use std::path::Path;

use crate::config::{key_line, scalar_keys_layer, Layer, Origin};
use crate::error::{Error, Result};
use crate::spec::parse_duration;

/// The tables of clnrm's project file. Any of them but `services` (which
/// Cleanroom's own file may use for its services) marks a file as clnrm's.
const CLNRM_TABLES: [&str; 10] = [
    "project",
    "cli",
    "containers",
    "observability",
    "plugins",
    "performance",
    "test_execution",
    "reporting",
    "security",
    "services",
];

/// The image clnrm runs steps in when its file names none.
pub const CLNRM_DEFAULT_IMAGE: &str = "alpine:latest";

/// What is taken from clnrm's file: `(table, key, our key, what kind)`.
const TAKEN: [(&str, &str, &str, Kind); 4] = [
    ("containers", "default_image", "image", Kind::Text),
    (
        "test_execution",
        "step_timeout",
        "timeout_ms",
        Kind::Duration,
    ),
    (
        "test_execution",
        "default_timeout",
        "test_timeout_ms",
        Kind::Duration,
    ),
    ("cli", "jobs", "jobs", Kind::Jobs),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Duration,
    /// `[cli] jobs`, counted only when `[cli] parallel` is true (clnrm runs
    /// one test at a time otherwise).
    Jobs,
}

/// Whether `doc` is clnrm's project file rather than Cleanroom's own.
pub fn is_clnrm_project(doc: &toml::Table) -> bool {
    CLNRM_TABLES
        .iter()
        .filter(|t| **t != "services")
        .any(|t| doc.get(*t).is_some_and(toml::Value::is_table))
}

/// The layer of a clnrm project file: the taken values, each with its line;
/// Cleanroom's own top-level keys beside them as usual; one warning naming
/// the file and what was skipped.
pub fn clnrm_layer(path: &Path, text: &str, doc: &toml::Table) -> Result<Layer> {
    let origin = |line| Origin::File {
        path: path.to_path_buf(),
        line,
    };
    // Cleanroom's own keys may sit beside clnrm's tables.
    let own: toml::Table = doc
        .iter()
        .filter(|(k, v)| !(v.is_table() && CLNRM_TABLES.contains(&k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut layer = scalar_keys_layer(path, text, &own)?;
    let mut taken = Vec::new();
    for (table, key, ours, kind) in TAKEN {
        let Some(value) = doc.get(table).and_then(|t| t.get(key)) else {
            continue;
        };
        let line = key_line(text, Some(table), key);
        let at = || format!("{}:{line}", path.display());
        let bad = |what: &str| Error::Config {
            origin: at(),
            message: format!("[{table}] {key} must be {what}"),
        };
        let v = match (kind, value) {
            (Kind::Text, toml::Value::String(s)) => s.clone(),
            (Kind::Text, _) => return Err(bad("a string")),
            (Kind::Duration, toml::Value::String(s)) => parse_duration(s)
                .map_err(|e| Error::Config {
                    origin: at(),
                    message: format!("[{table}] {key}: {e}"),
                })?
                .as_millis()
                .to_string(),
            (Kind::Duration, _) => return Err(bad("a duration such as \"60s\"")),
            (Kind::Jobs, toml::Value::Integer(n)) => {
                let parallel = doc
                    .get("cli")
                    .and_then(|c| c.get("parallel"))
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(false);
                if parallel {
                    n.to_string()
                } else {
                    "1".to_string()
                }
            }
            (Kind::Jobs, _) => return Err(bad("a whole number")),
        };
        layer.set(ours, v, origin(line));
        taken.push(format!("[{table}] {key}"));
    }
    if !taken.iter().any(|t| t == "[containers] default_image") {
        // clnrm runs steps without a service in its default image.
        let line = text
            .lines()
            .position(|l| l.trim() == "[containers]")
            .map_or(1, |i| i + 1);
        layer.set("image", CLNRM_DEFAULT_IMAGE, origin(line));
        taken.push(format!("clnrm's default image {CLNRM_DEFAULT_IMAGE}"));
    }
    let skipped: Vec<String> = CLNRM_TABLES
        .iter()
        .filter_map(|t| {
            let table = doc.get(*t)?.as_table()?;
            let rest: Vec<&str> = table
                .keys()
                .map(String::as_str)
                .filter(|k| !TAKEN.iter().any(|(tt, kk, _, _)| tt == t && kk == k))
                .filter(|k| {
                    !(*t == "cli" && *k == "parallel" && taken.contains(&"[cli] jobs".into()))
                })
                .collect();
            if rest.is_empty() {
                None
            } else if rest.len() == table.len() {
                Some(format!("[{t}]"))
            } else {
                Some(format!("[{t}] {}", rest.join(", ")))
            }
        })
        .collect();
    layer.warnings.push(format!(
        "WARN: {} is clnrm's project file: took {}; skipped {} (no meaning here)",
        path.display(),
        if taken.is_empty() {
            "nothing".to_string()
        } else {
            taken.join(", ")
        },
        if skipped.is_empty() {
            "nothing".to_string()
        } else {
            skipped.join("; ")
        },
    ));
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    const CLNRM: &str = r#"[project]
name = "cleanroom"

[cli]
parallel = true
jobs = 4
output_format = "human"

[containers]
reuse_enabled = true
default_image = "cleanroom-busybox:latest"
startup_timeout = "60s"

[services]
default_timeout = "30s"

[observability]
enable_tracing = true

[test_execution]
default_timeout = "300s"
step_timeout = "60s"

[security]
security_level = "medium"
"#;

    #[test]
    fn clnrm_project_file_gives_image_timeouts_and_jobs_with_one_warning() {
        let path = Path::new("/p/cleanroom.toml");
        let layer = Layer::from_config_file(path, CLNRM).unwrap();
        let config = Sources {
            file: Some(layer),
            ..Sources::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.image.value.as_deref(),
            Some("cleanroom-busybox:latest")
        );
        assert_eq!(config.image.origin.to_string(), "/p/cleanroom.toml:11");
        assert_eq!(config.sandbox.timeout.map(|d| d.as_secs()), Some(60));
        assert_eq!(
            config.origin("timeout_ms").to_string(),
            "/p/cleanroom.toml:22"
        );
        assert_eq!(config.test_timeout.value.map(|d| d.as_secs()), Some(300));
        assert_eq!(config.jobs.value, Some(4));
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        let w = &config.warnings[0];
        assert!(w.contains("/p/cleanroom.toml"), "{w}");
        assert!(
            w.contains("[project]") && w.contains("[observability]"),
            "{w}"
        );
        assert!(
            w.contains("[containers] reuse_enabled, startup_timeout"),
            "{w}"
        );
        assert!(!w.contains('\n'), "one line: {w}");
    }

    #[test]
    fn sequential_clnrm_runs_one_test_at_a_time_and_bad_values_name_their_line() {
        let text = CLNRM.replace("parallel = true", "parallel = false");
        let l = Layer::from_config_file(Path::new("c.toml"), &text).unwrap();
        assert_eq!(l.get("jobs").map(|(v, _)| v.as_str()), Some("1"));

        let text = CLNRM.replace("step_timeout = \"60s\"", "step_timeout = \"soon\"");
        let e = Layer::from_config_file(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:22: [test_execution] step_timeout"),
            "{e}"
        );
    }

    #[test]
    fn without_a_default_image_clnrm_s_own_default_is_taken() {
        let l = Layer::from_config_file(Path::new("c.toml"), "[project]\nname = \"x\"\n").unwrap();
        assert_eq!(
            l.get("image").map(|(v, _)| v.as_str()),
            Some("alpine:latest")
        );
        assert!(l.warnings[0].contains("clnrm's default image alpine:latest"));
    }

    #[test]
    fn own_keys_beside_clnrm_tables_still_count_and_are_checked() {
        let text = format!("backend = \"local\"\n{CLNRM}");
        let l = Layer::from_config_file(Path::new("c.toml"), &text).unwrap();
        assert_eq!(l.get("backend").map(|(v, _)| v.as_str()), Some("local"));
        let text = format!("bakend = \"local\"\n{CLNRM}");
        let e = Layer::from_config_file(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `backend`"), "{e}");
    }
}
