//! Which engine to talk to and where its Engine API socket is.
//!
//! Docker: `DOCKER_HOST`, else the current context of a given `docker` CLI
//! (`docker context inspect`), else `/var/run/docker.sock`. Podman:
//! `CONTAINER_HOST`, else the rootful `/run/podman/podman.sock` (as root) or
//! the rootless `$XDG_RUNTIME_DIR/podman/podman.sock`.

use std::path::{Path, PathBuf};

use bollard::{ClientVersion, Docker};
use cleanroom_core::{Error, Result};

/// The Engine API version spoken: Docker 20.10 and Podman 4's compatible
/// API both serve it, and newer engines still accept it.
pub const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Seconds before a request to the engine gives up.
const REQUEST_TIMEOUT_SECS: u64 = 600;

/// The two engines this crate drives through the same API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// The backend name: `docker` or `podman`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// What to do when the engine does not answer.
    pub fn start_hint(self) -> String {
        match self {
            Engine::Docker => "start the Docker engine (`sudo systemctl start docker`, or \
                `dockerd --bridge=none --iptables=false &` as root), or point DOCKER_HOST at a \
                running one"
                .to_string(),
            Engine::Podman => format!(
                "start Podman's API service: as root `podman system service --time=0 \
                 unix:///run/podman/podman.sock &`, rootless `podman system service --time=0 &` \
                 (socket $XDG_RUNTIME_DIR/podman/podman.sock), or set CONTAINER_HOST. {}",
                PODMAN_RLIMIT_FIX
            ),
        }
    }
}

/// How to make Podman run containers on machines without CAP_SYS_RESOURCE
/// or with a hybrid cgroup layout; shown by `doctor` and in errors.
pub const PODMAN_RLIMIT_FIX: &str = "If Podman fails to start containers with a `setrlimit` / \
    RLIMIT_NOFILE or RLIMIT_NPROC error (no CAP_SYS_RESOURCE, e.g. inside another container) or \
    crun rejects the cgroup layout, give the service a containers.conf with \
    `[containers] default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]` and \
    `[engine] runtime = \"runc\"` (Cleanroom ships one in scripts/podman/containers.conf; \
    start the service with CONTAINERS_CONF pointing at it)";

/// Where an engine's API answers, and how we found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub engine: Engine,
    /// `unix:///path`, `tcp://host:port` or `http://host:port`.
    pub host: String,
    /// Where `host` came from, for messages (`DOCKER_HOST`, `default socket`, ...).
    pub origin: String,
}

impl Endpoint {
    /// Finds the endpoint of `engine`; `docker_bin` is a Docker CLI whose
    /// current context names the endpoint (used when DOCKER_HOST is unset).
    pub fn discover(engine: Engine, docker_bin: Option<&Path>) -> Result<Endpoint> {
        let env_var = match engine {
            Engine::Docker => "DOCKER_HOST",
            Engine::Podman => "CONTAINER_HOST",
        };
        if let Ok(host) = std::env::var(env_var) {
            if !host.trim().is_empty() {
                return Ok(Endpoint {
                    engine,
                    host: host.trim().to_string(),
                    origin: env_var.to_string(),
                });
            }
        }
        if let (Engine::Docker, Some(bin)) = (engine, docker_bin) {
            return Ok(Endpoint {
                engine,
                host: context_host(bin)?,
                origin: format!("the current context of {}", bin.display()),
            });
        }
        let (path, origin) = match engine {
            Engine::Docker => (
                PathBuf::from("/var/run/docker.sock"),
                "the default socket".to_string(),
            ),
            Engine::Podman => podman_socket(),
        };
        Ok(Endpoint {
            engine,
            host: format!("unix://{}", path.display()),
            origin,
        })
    }

    /// A client for this endpoint. Connecting is lazy: nothing is sent yet.
    pub fn connect(&self) -> Result<Docker> {
        let res = if let Some(path) = self.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, &API_VERSION)
        } else if self.host.starts_with("tcp://") || self.host.starts_with("http://") {
            Docker::connect_with_http(&self.host, REQUEST_TIMEOUT_SECS, &API_VERSION)
        } else {
            return Err(Error::Config {
                origin: self.origin.clone(),
                message: format!(
                    "{} endpoint `{}` is neither unix://PATH nor tcp://HOST:PORT",
                    self.engine.name(),
                    self.host
                ),
            });
        };
        res.map_err(|e| {
            Error::backend(
                self.engine.name(),
                format!("connecting to {} ({}): {e}", self.host, self.origin),
            )
        })
    }
}

/// Podman's socket: rootful when we are root, else the user's rootless one.
fn podman_socket() -> (PathBuf, String) {
    let rootful = PathBuf::from("/run/podman/podman.sock");
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return (rootful, "the rootful socket".into());
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => (
            PathBuf::from(dir).join("podman/podman.sock"),
            "the rootless socket in $XDG_RUNTIME_DIR".into(),
        ),
        _ => (
            rootful,
            "the rootful socket (XDG_RUNTIME_DIR is unset)".into(),
        ),
    }
}

/// `Endpoints.docker.Host` of the current context of the Docker CLI `bin`.
fn context_host(bin: &Path) -> Result<String> {
    let out = std::process::Command::new(bin)
        .args(["context", "inspect"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::io(
                format!(
                    "running `{} context inspect` to find the Docker endpoint",
                    bin.display()
                ),
                e,
            )
        })?;
    let bad = |msg: String| Error::Config {
        origin: format!("`{} context inspect`", bin.display()),
        message: msg,
    };
    if !out.status.success() {
        return Err(bad(format!(
            "exited with {}: {}; set DOCKER_HOST instead",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| bad(format!("output is not JSON ({e}); set DOCKER_HOST instead")))?;
    v.get(0)
        .and_then(|c| c.pointer("/Endpoints/docker/Host"))
        .and_then(|h| h.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            bad("no Endpoints.docker.Host in the output; set DOCKER_HOST instead".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cli_context_names_the_socket() {
        // Any executable printing a context list will do; `sh` stands in
        // for a CLI so the test does not depend on a docker binary.
        let dir = std::env::temp_dir().join(format!("cleanroom-ctx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("docker");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho '[{\"Name\":\"x\",\"Endpoints\":{\"docker\":{\"Host\":\"unix:///x.sock\"}}}]'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(context_host(&fake).unwrap(), "unix:///x.sock");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
