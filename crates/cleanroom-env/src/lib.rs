//! Environments: a few services brought up in dependency order, hermetically,
//! from `[services.*]` tables or compose files read as they are — the model,
//! the graph, the plan, and `up`/`down` over Cleanroom's named sandboxes.
//!
//! [`load`] reads an environment (every problem at `file:line`), [`plan()`]
//! says what `up` would do without starting anything, and [`engine`] starts,
//! watches and removes it.

mod compose;
pub mod convert;
pub mod engine;
mod fields;
pub mod graph;
pub mod health;
mod interpolate;
pub mod model;
pub mod plan;
mod problem;
pub mod scoped;
mod syntax;
mod toml_file;
mod tree;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use interpolate::{interpolate, parse_env_file, Issue, Variables};
pub use model::*;
pub use plan::{plan, Plan};
pub use problem::{Location, Problem, Problems, Severity};
pub use syntax::did_you_mean;
pub use toml_file::{Tables, SERVICE_KEYS};

/// The files `up` looks for, in order, when no `-f` is given (after
/// `cleanroom.toml` with a `[services]` table).
pub const COMPOSE_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// What failed, for the command line to print.
#[derive(Debug)]
pub enum EnvError {
    /// What is wrong with the files, each at `file:line`.
    Problems(Vec<Problem>),
    /// Starting, probing or stopping failed; the message says which
    /// service and why.
    Run(String),
    /// A dependency did not reach its condition.
    Blocked(Box<engine::Blocked>),
    Cleanroom(cleanroom::Error),
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Problems(list) => {
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            EnvError::Run(m) => f.write_str(m),
            EnvError::Blocked(b) => write!(f, "{b}"),
            EnvError::Cleanroom(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EnvError {}

impl From<cleanroom::Error> for EnvError {
    fn from(e: cleanroom::Error) -> Self {
        EnvError::Cleanroom(e)
    }
}

/// How to find and read an environment.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The directory it is looked for in (and named after).
    pub dir: PathBuf,
    /// `-f FILE`, in order; empty looks in `dir`.
    pub files: Vec<PathBuf>,
    /// `-p NAME`.
    pub project_name: Option<String>,
    /// `--profile NAME`; `COMPOSE_PROFILES` adds to them.
    pub profiles: Vec<String>,
    /// `--strict`: unknown keys and other warnings are errors.
    pub strict: bool,
}

/// Reads the environment that `options` point at; every problem of every
/// file at once, with `file:line`.
pub fn load(options: &LoadOptions) -> Result<Environment, EnvError> {
    let files = if options.files.is_empty() {
        discover(&options.dir)?
    } else {
        options.files.iter().map(|f| options.dir.join(f)).collect()
    };
    let mut problems = Problems {
        strict: options.strict,
        ..Problems::default()
    };
    let mut env = Environment {
        files: files.clone(),
        ..Environment::default()
    };
    let mut name_in_file = None;
    let is_toml = |p: &Path| p.extension().is_some_and(|e| e == "toml");
    if files.iter().any(|f| is_toml(f)) {
        if files.len() > 1 {
            return Err(EnvError::Run(
                "several -f files are merged only for compose files; give one TOML file".into(),
            ));
        }
        let text = std::fs::read_to_string(&files[0])
            .map_err(|e| EnvError::Run(format!("{}: cannot read it: {e}", files[0].display())))?;
        if toml_file::read(&files[0], &text, &mut problems, &mut env).is_none() {
            return Err(EnvError::Run(format!(
                "{}: has no [services.NAME] tables",
                files[0].display()
            )));
        }
    } else {
        let project_dir = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
        let vars = dotenv(&project_dir, &mut problems);
        let mut merged: Option<compose::ComposeFile> = None;
        for f in &files {
            let Some(file) = compose::read_file(f, &vars, &mut problems) else {
                continue;
            };
            match &mut merged {
                None => merged = Some(file),
                Some(m) => compose::merge_files(&mut m.root, file.root),
            }
        }
        if let Some(m) = merged {
            name_in_file = m
                .root
                .get("name")
                .and_then(|n| n.text())
                .map(str::to_string);
            // Problems name the last file: lines of merged files are their own.
            compose::read_services(
                &m.root,
                &m.path,
                &project_dir,
                &vars,
                &mut problems,
                &mut env,
            );
        }
    }
    let active = active_profiles(&options.profiles);
    env.services
        .retain(|s| s.profiles.is_empty() || s.profiles.iter().any(|p| active.contains(p)));
    env.name = match options.project_name.clone().or(name_in_file) {
        Some(n) => {
            let clean = project_name(&n);
            if clean != n || clean.is_empty() {
                return Err(EnvError::Run(format!(
                    "environment name `{n}` is not valid: use lowercase letters, digits, `_` and `-`"
                )));
            }
            n
        }
        None => {
            let dir = std::fs::canonicalize(&options.dir).unwrap_or_else(|_| options.dir.clone());
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let clean = project_name(&base);
            if clean.is_empty() {
                "default".to_string()
            } else {
                clean
            }
        }
    };
    graph::levels(&env, &mut problems);
    env.warnings = problems.finish()?;
    Ok(env)
}

/// The services of `tables` in TOML `text` (a test file at `path`, as
/// written or rendered), read as `cleanroom.toml`'s are, with their
/// dependencies checked: the services in file order and every problem,
/// warnings included, at `file:line`.
pub fn read_service_tables(
    path: &Path,
    text: &str,
    tables: Tables<'_>,
) -> (Vec<Service>, Vec<Problem>) {
    let mut problems = Problems::default();
    let mut env = Environment::default();
    toml_file::read_tables(path, text, tables, &mut problems, &mut env);
    graph::levels(&env, &mut problems);
    (env.services, problems.list)
}

/// `COMPOSE_PROFILES` (comma-separated) and `--profile`.
fn active_profiles(flags: &[String]) -> Vec<String> {
    let mut active = flags.to_vec();
    if let Ok(v) = std::env::var("COMPOSE_PROFILES") {
        active.extend(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    active
}

/// The environment file of `dir`: `cleanroom.toml` with `[services]`, else
/// the first compose file name that exists.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, EnvError> {
    let toml = dir.join("cleanroom.toml");
    if let Ok(text) = std::fs::read_to_string(&toml) {
        if crate::tree::from_toml(&text)
            .ok()
            .is_some_and(|root| root.get("services").is_some())
        {
            return Ok(vec![toml]);
        }
    }
    for name in COMPOSE_FILE_NAMES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(vec![p]);
        }
    }
    Err(EnvError::Run(format!(
        "no environment in {}: give -f FILE, or add [services.NAME] tables to cleanroom.toml, or a compose.yaml",
        dir.display()
    )))
}

/// `.env` of the project directory, under the caller's environment.
fn dotenv(dir: &Path, problems: &mut Problems) -> Variables {
    let path = dir.join(".env");
    let values = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let (values, bad) = parse_env_file(&text);
            for (line, raw) in bad {
                problems.warn(
                    Location::new(&path, line),
                    format!("`{raw}` is not KEY=VALUE; skipped"),
                );
            }
            values
        }
        Err(_) => Default::default(),
    };
    Variables::from_dotenv_and_process(values)
}

/// A directory name made into an environment name as compose makes a
/// project name: lowercase letters, digits, `_` and `-`, starting with a
/// letter or digit.
pub fn project_name(raw: &str) -> String {
    let lower: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}
