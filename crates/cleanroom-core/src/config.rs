//! Configuration: where the effective settings come from.
//!
//! Precedence, highest first: command-line flags, environment variables
//! (`CLEANROOM_BACKEND`, `CLEANROOM_IMAGE`, `CLEANROOM_TIMEOUT_MS`, ...), the
//! nearest `cleanroom.toml`, `[package.metadata.cleanroom]` or
//! `[workspace.metadata.cleanroom]` in the nearest `Cargo.toml`, defaults.
//! Every value remembers its [`Origin`], so `cleanroom config` can say where
//! it came from and an error can name the file, line and value at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::choice::BackendChoice;
use crate::error::{Error, Result};
use crate::fields::{Field, FIELDS};
use crate::input_file::read_input_file;
use crate::line_index::LineIndex;
use crate::spec::{RootFs, SandboxSpec};

/// The file name searched for from the working directory upwards.
pub const CONFIG_FILE: &str = "cleanroom.toml";

/// Where one effective value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Default,
    /// `[package.metadata.cleanroom]` or `[workspace.metadata.cleanroom]`.
    CargoToml {
        path: PathBuf,
        line: usize,
    },
    File {
        path: PathBuf,
        line: usize,
    },
    Env {
        var: String,
    },
    Flag {
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::CargoToml { path, line } | Origin::File { path, line } => {
                write!(f, "{}:{line}", path.display())
            }
            Origin::Env { var } => write!(f, "environment {var}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// One layer of settings as raw strings, before they are checked. Flags,
/// the environment and each file produce one.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// What reading the source skipped, one line each (a clnrm project file).
    pub(crate) warnings: Vec<String>,
}

impl Layer {
    /// Sets `key` (a [`FIELDS`] key) to `value` from `origin`.
    ///
    /// # Panics
    /// When `key` is not a [`FIELDS`] key: that is a bug in the caller.
    pub fn set(&mut self, key: &str, value: impl Into<String>, origin: Origin) -> &mut Self {
        let key = canonical_key(key).unwrap_or_else(|| panic!("`{key}` is not a config key"));
        self.values.insert(key, (value.into(), origin));
        self
    }

    /// A flag's value, when the flag was given.
    pub fn flag(&mut self, key: &str, flag: &str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = value {
            self.set(
                key,
                v,
                Origin::Flag {
                    flag: flag.to_string(),
                },
            );
        }
        self
    }

    /// A field's flag given on the command line as `raw` (a duration for
    /// a field in milliseconds).
    pub fn field_flag(&mut self, field: &Field, raw: &str) -> Result<&mut Self> {
        let value = field.from_duration_form(raw).map_err(|e| Error::Config {
            origin: format!("flag {}", field.flag_name()),
            message: e.to_string(),
        })?;
        Ok(self.flag(field.key, &field.flag_name(), Some(value)))
    }

    /// The layer of `CLEANROOM_*` variables in `vars` (empty values count as unset).
    pub fn from_env_vars(vars: impl IntoIterator<Item = (String, String)>) -> Layer {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let mut layer = Layer::default();
        for field in FIELDS {
            if let Some(v) = vars.get(field.env).filter(|v| !v.trim().is_empty()) {
                layer.set(
                    field.key,
                    v.clone(),
                    Origin::Env {
                        var: field.env.to_string(),
                    },
                );
            }
        }
        layer
    }

    /// The layer of this process's environment.
    pub fn from_env() -> Layer {
        Layer::from_env_vars(std::env::vars())
    }

    /// Parses a `cleanroom.toml`: every top-level key must be known. clnrm's
    /// project file (`[project]`, `[containers]`, ...) is recognised: what
    /// means something here is taken, the rest skipped with one warning.
    pub fn from_config_file(path: &Path, text: &str) -> Result<Layer> {
        let doc = parse_toml(path, text)?;
        if crate::clnrm_project::is_clnrm_project(&doc) {
            return crate::clnrm_project::clnrm_layer(path, text, &doc);
        }
        scalar_keys_layer(path, text, &doc)
    }

    /// The `[package.metadata.cleanroom]` table of a `Cargo.toml`, or
    /// failing that its `[workspace.metadata.cleanroom]`; `None` when it has neither.
    pub fn from_cargo_toml(path: &Path, text: &str) -> Result<Option<Layer>> {
        let doc = parse_toml(path, text)?;
        for section in ["package", "workspace"] {
            let table = doc
                .get(section)
                .and_then(|s| s.get("metadata"))
                .and_then(|m| m.get("cleanroom"));
            if let Some(table) = table {
                let prefix = format!("{section}.metadata.cleanroom");
                let layer =
                    table_layer(path, text, table, Some(&prefix), |line| Origin::CargoToml {
                        path: path.to_path_buf(),
                        line,
                    })?;
                return Ok(Some(layer));
            }
        }
        Ok(None)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&(String, Origin)> {
        self.values.get(key)
    }
}

fn canonical_key(key: &str) -> Option<&'static str> {
    FIELDS.iter().map(|f| f.key).find(|k| *k == key)
}

fn parse_toml(path: &Path, text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        let message: Vec<&str> = e.message().lines().map(str::trim).collect();
        Error::Config {
            origin: format!("{}:{line}:{column}", path.display()),
            message: format!("invalid TOML: {}", message.join("; ")),
        }
    })
}

/// The 1-based line and column of byte offset `at` in `text`, for a single
/// lookup; to locate many offsets of one text, build a [`LineIndex`] once.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    LineIndex::new(text).line_column(at)
}

/// Finds the line where `key` is assigned, inside `[prefix]` when given.
pub(crate) fn key_line(text: &str, prefix: Option<&str>, key: &str) -> usize {
    let mut in_section = prefix.is_none();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_section = prefix.is_some_and(|p| p == name);
            continue;
        }
        if in_section {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return i + 1;
                }
            }
        }
    }
    1
}

/// The layer of a config file's top-level keys (each must be known).
pub(crate) fn scalar_keys_layer(path: &Path, text: &str, doc: &toml::Table) -> Result<Layer> {
    table_layer(path, text, &toml::Value::Table(doc.clone()), None, |line| {
        Origin::File {
            path: path.to_path_buf(),
            line,
        }
    })
}

fn table_layer(
    path: &Path,
    text: &str,
    table: &toml::Value,
    prefix: Option<&str>,
    origin: impl Fn(usize) -> Origin,
) -> Result<Layer> {
    let table = table.as_table().ok_or_else(|| Error::Config {
        origin: path.display().to_string(),
        message: format!("`{}` must be a table", prefix.unwrap_or("cleanroom")),
    })?;
    let mut layer = Layer::default();
    for (key, value) in table {
        // `[services.NAME]` tables describe an environment (cleanroom-env
        // reads them), not the sandbox configuration.
        if prefix.is_none() && key == "services" {
            continue;
        }
        let line = key_line(text, prefix, key);
        let at = format!("{}:{line}", path.display());
        // A duration string (`timeout = "30s"`) is accepted beside a
        // field's key in milliseconds.
        let duration_field = FIELDS.iter().find(|f| f.duration_key == Some(key.as_str()));
        let (key, value) = match (duration_field, value) {
            (Some(field), toml::Value::String(s)) => {
                let ms = field.from_duration_form(s).map_err(|e| Error::Config {
                    origin: at.clone(),
                    message: e.to_string(),
                })?;
                (field.key, ms)
            }
            (_, v) => {
                let k = key.as_str();
                let Some(k) = canonical_key(k) else {
                    return Err(Error::Config {
                        origin: at,
                        message: unknown_key_message(k),
                    });
                };
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(Error::Config {
                            origin: at,
                            message: format!(
                                "`{k}` must be a string, number or boolean, not {}",
                                other.type_str()
                            ),
                        })
                    }
                };
                (k, v)
            }
        };
        layer.set(key, value, origin(line));
    }
    Ok(layer)
}

fn unknown_key_message(key: &str) -> String {
    let known: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
    let closest = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3);
    match closest {
        Some((_, k)) => format!("unknown key `{key}`; did you mean `{k}`?"),
        None => format!("unknown key `{key}`; known keys: {}", known.join(", ")),
    }
}

/// Levenshtein distance, for did-you-mean suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A checked value and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// The effective configuration. The settings of [`FIELDS`] that land in
/// the spec live in [`Config::sandbox`], with where each came from in
/// [`Config::origin`]; the others have a field of their own.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub backend: Setting<BackendChoice>,
    /// The image (or rootfs: `host`, `file://DIR`, `tar://FILE`); `None` is the host rootfs.
    pub image: Setting<Option<String>>,
    /// `cleanroom test`: tests run at once (`None`: one per core).
    pub jobs: Setting<Option<usize>>,
    /// `cleanroom test`: each whole test's time limit.
    pub test_timeout: Setting<Option<Duration>>,
    /// The spec settings' values (the root filesystem comes from `image`).
    pub sandbox: SandboxSpec,
    /// Where each spec setting that is not at its default came from, by key.
    pub origins: BTreeMap<&'static str, Origin>,
    /// The files that were read, nearest first.
    pub files: Vec<PathBuf>,
    /// What reading them skipped (one line each, `WARN: ...`), to show once.
    pub warnings: Vec<String>,
}

/// `cleanroom config --json`: each field as `{value, origin}`, then the files.
impl Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(Some(FIELDS.len() + 2))?;
        for field in FIELDS {
            let (_, origin) = (field.show)(self);
            let setting = Setting {
                value: (field.json)(self),
                origin: origin.clone(),
            };
            map.serialize_entry(field.duration_key.unwrap_or(field.key), &setting)?;
        }
        map.serialize_entry("files", &self.files)?;
        map.serialize_entry("warnings", &self.warnings)?;
        map.end()
    }
}

/// The sources a [`Config`] is built from, highest precedence first.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub flags: Layer,
    pub env: Layer,
    pub file: Option<Layer>,
    pub cargo: Option<Layer>,
    pub files: Vec<PathBuf>,
}

impl Sources {
    /// Reads the environment, and the nearest `cleanroom.toml` and
    /// `Cargo.toml` (with a cleanroom table) from `dir` upwards.
    pub fn discover(dir: &Path, flags: Layer) -> Result<Sources> {
        let mut sources = Sources {
            flags,
            env: Layer::from_env(),
            ..Sources::default()
        };
        let explicit = std::env::var_os("CLEANROOM_CONFIG").map(PathBuf::from);
        let config_file = match explicit {
            Some(p) => Some(p),
            None => find_upwards(dir, |d| {
                let p = d.join(CONFIG_FILE);
                present(&p).then_some(p)
            }),
        };
        if let Some(path) = config_file {
            let text = read(&path)?;
            sources.file = Some(Layer::from_config_file(&path, &text)?);
            sources.files.push(path);
        }
        let mut cargo = None;
        let mut cur = Some(dir);
        while let Some(d) = cur {
            let p = d.join("Cargo.toml");
            if present(&p) {
                let text = read(&p)?;
                if let Some(layer) = Layer::from_cargo_toml(&p, &text)? {
                    cargo = Some((p, layer));
                    break;
                }
            }
            cur = d.parent();
        }
        if let Some((p, layer)) = cargo {
            sources.cargo = Some(layer);
            sources.files.push(p);
        }
        Ok(sources)
    }

    /// Checks every value and resolves precedence.
    pub fn resolve(&self) -> Result<Config> {
        let layers: Vec<&Layer> = [Some(&self.flags), Some(&self.env)]
            .into_iter()
            .chain([self.file.as_ref(), self.cargo.as_ref()])
            .flatten()
            .collect();
        let mut config = Config::defaults();
        for field in FIELDS {
            if let Some((raw, origin)) = layers.iter().find_map(|l| l.get(field.key)) {
                field.set_checked(&mut config, raw, origin.clone())?;
            }
        }
        config.files = self.files.clone();
        config.warnings = [self.file.as_ref(), self.cargo.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|l| l.warnings.iter().cloned())
            .collect();
        Ok(config)
    }
}

/// A config file's text: only a regular file of bounded size is read; a
/// FIFO, device, directory or symlink loop in its place is an error naming it.
fn read(path: &Path) -> Result<String> {
    read_input_file(path).map_err(|e| Error::Config {
        origin: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Whether anything is at `path` (a dangling symlink, a FIFO and a directory
/// too), so that reading it reports what is wrong instead of skipping it.
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn find_upwards(dir: &Path, probe: impl Fn(&Path) -> Option<PathBuf>) -> Option<PathBuf> {
    dir.ancestors().find_map(probe)
}

impl Config {
    /// The configuration seen from `dir` with `flags` on top.
    pub fn load(dir: &Path, flags: Layer) -> Result<Config> {
        Sources::discover(dir, flags)?.resolve()
    }

    /// The configuration seen from the current directory, without flags.
    pub fn load_default() -> Result<Config> {
        let dir =
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
        Config::load(&dir, Layer::default())
    }

    /// Every setting at its default.
    pub fn defaults() -> Config {
        fn default<T>(value: T) -> Setting<T> {
            Setting {
                value,
                origin: Origin::Default,
            }
        }
        Config {
            backend: default(BackendChoice::Auto),
            image: default(None),
            jobs: default(None),
            test_timeout: default(None),
            sandbox: SandboxSpec::default(),
            origins: BTreeMap::new(),
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Where the spec setting `key` came from.
    pub fn origin(&self, key: &str) -> &Origin {
        static DEFAULT: Origin = Origin::Default;
        self.origins.get(key).unwrap_or(&DEFAULT)
    }

    /// The spec these settings describe.
    pub fn spec(&self) -> Result<SandboxSpec> {
        let rootfs = match &self.image.value {
            Some(i) => i.parse()?,
            None => RootFs::Host,
        };
        Ok(SandboxSpec {
            rootfs,
            ..self.sandbox.clone()
        })
    }

    /// `(key, value, origin)` for every setting, for `cleanroom config`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        FIELDS
            .iter()
            .map(|f| {
                let (value, origin) = (f.show)(self);
                (f.key, value, origin.to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Network, UserNs};

    fn env(pairs: &[(&str, &str)]) -> Layer {
        Layer::from_env_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn precedence_flags_env_file_cargo_default() {
        let file = Layer::from_config_file(
            Path::new("cleanroom.toml"),
            "backend = \"docker\"\nimage = \"busybox\"\ntimeout_ms = 5000\n",
        )
        .unwrap();
        let cargo = Layer::from_cargo_toml(
            Path::new("Cargo.toml"),
            "[package]\nname = \"x\"\n\n[package.metadata.cleanroom]\nbackend = \"podman\"\nmemory = \"64M\"\npids = 10\n",
        )
        .unwrap()
        .unwrap();
        let mut flags = Layer::default();
        flags.flag("image", "--image", Some("alpine"));
        let sources = Sources {
            flags,
            env: env(&[("CLEANROOM_BACKEND", "local"), ("CLEANROOM_PIDS", "")]),
            file: Some(file),
            cargo: Some(cargo),
            files: vec![],
        };
        let c = sources.resolve().unwrap();
        assert_eq!(c.image.value.as_deref(), Some("alpine"));
        assert_eq!(c.image.origin.to_string(), "flag --image");
        assert_eq!(c.backend.value, BackendChoice::Local);
        assert_eq!(
            c.backend.origin.to_string(),
            "environment CLEANROOM_BACKEND"
        );
        assert_eq!(c.sandbox.timeout, Some(Duration::from_millis(5000)));
        assert_eq!(c.origin("timeout_ms").to_string(), "cleanroom.toml:3");
        assert_eq!(c.sandbox.memory, Some(64 << 20));
        assert_eq!(c.origin("memory").to_string(), "Cargo.toml:6");
        // An empty variable counts as unset, so Cargo.toml's value shows through.
        assert_eq!(c.sandbox.pids, Some(10));
        assert_eq!(c.origin("network"), &Origin::Default);
    }

    #[test]
    fn workspace_metadata_is_read_when_package_has_none() {
        let l = Layer::from_cargo_toml(
            Path::new("Cargo.toml"),
            "[workspace]\nmembers = []\n[workspace.metadata.cleanroom]\nbackend = \"native\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.get("backend").unwrap().0, "native");
        assert!(
            Layer::from_cargo_toml(Path::new("C"), "[package]\nname=\"x\"\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_source_line_and_value() {
        let e = Layer::from_config_file(
            Path::new("/p/cleanroom.toml"),
            "backend = \"x\"\ntimeot_ms = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "/p/cleanroom.toml:2: unknown key `timeot_ms`; did you mean `timeout_ms`?"
        );

        let e = Layer::from_config_file(Path::new("c.toml"), "backend = \n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:1:11: invalid TOML"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");

        let bad = Sources {
            file: Some(
                Layer::from_config_file(Path::new("c.toml"), "\nbackend = \"nonsense\"\n").unwrap(),
            ),
            ..Sources::default()
        };
        let e = bad.resolve().unwrap_err().to_string();
        assert!(e.starts_with("c.toml:2: backend = `nonsense`"), "{e}");

        let e = Sources {
            env: env(&[("CLEANROOM_TIMEOUT_MS", "30s")]),
            ..Sources::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CLEANROOM_TIMEOUT_MS") && e.contains("30s"),
            "{e}"
        );
    }

    #[test]
    fn spec_from_config() {
        let mut flags = Layer::default();
        flags
            .flag("memory", "--memory", Some("1G"))
            .flag("network", "--network", Some("host"))
            .flag("strict", "--strict", Some("true"));
        let c = Sources {
            flags,
            ..Sources::default()
        }
        .resolve()
        .unwrap();
        let s = c.spec().unwrap();
        assert_eq!(s.memory, Some(1 << 30));
        assert_eq!(s.network, Network::Host);
        assert!(s.strict);
        assert_eq!(s.rootfs, RootFs::Host);
    }

    #[test]
    fn tmpfs_size_and_userns_from_the_environment() {
        let c = Sources {
            env: env(&[
                ("CLEANROOM_TMPFS_SIZE", "8M"),
                ("CLEANROOM_USERNS", "identity"),
            ]),
            ..Sources::default()
        }
        .resolve()
        .unwrap();
        let s = c.spec().unwrap();
        assert_eq!(s.tmpfs_size, Some(8 << 20));
        assert_eq!(s.userns, UserNs::Identity);
        assert!(c
            .rows()
            .iter()
            .any(|(k, v, o)| *k == "userns" && v == "identity" && o.contains("CLEANROOM_USERNS")));
        let e = Sources {
            env: env(&[("CLEANROOM_USERNS", "host-root")]),
            ..Sources::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CLEANROOM_USERNS") && e.contains("identity"),
            "{e}"
        );
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
