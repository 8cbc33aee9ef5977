//! [`BackendChoice`]: which backend a user asked for.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `auto` or one backend by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Podman, then Docker, then native, then local: the first available.
    #[default]
    Auto,
    Native,
    Podman,
    Docker,
    Local,
    /// A microVM per sandbox; never picked by `auto`.
    Vm,
}

impl BackendChoice {
    /// The concrete backends in the order `auto` tries them.
    pub const AUTO_ORDER: [BackendChoice; 4] = [
        BackendChoice::Podman,
        BackendChoice::Docker,
        BackendChoice::Native,
        BackendChoice::Local,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Native => "native",
            BackendChoice::Podman => "podman",
            BackendChoice::Docker => "docker",
            BackendChoice::Local => "local",
            BackendChoice::Vm => "vm",
        }
    }

    /// Parses a name, saying where it came from when it is unknown
    /// (`--backend`, `CLEANROOM_BACKEND`, `cleanroom.toml:3`, ...).
    pub fn parse(name: &str, origin: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "native" => Ok(BackendChoice::Native),
            "podman" => Ok(BackendChoice::Podman),
            "docker" => Ok(BackendChoice::Docker),
            "local" => Ok(BackendChoice::Local),
            "vm" => Ok(BackendChoice::Vm),
            _ => Err(Error::UnknownBackend {
                name: name.to_string(),
                origin: origin.to_string(),
            }),
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BackendChoice::parse(s, "input")
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_say_where_they_came_from() {
        let e = BackendChoice::parse("nonsense", "--backend")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense") && e.contains("--backend"), "{e}");
        assert_eq!(
            BackendChoice::parse("Docker", "x").unwrap(),
            BackendChoice::Docker
        );
    }
}
