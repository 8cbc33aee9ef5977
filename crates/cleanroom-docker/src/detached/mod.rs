//! Named sandboxes that outlive their creator (`cleanroom create`, `run -d`)
//! on an engine: a container with every hardening setting of a one-shot run
//! but without its keep-alive and auto-removal, so that it runs on after
//! this process and, once exited, keeps its exit code and logs until `rm`.
//!
//! The container is called `cleanroom-NAME` (the engines reserve names, so
//! two concurrent creates of one name give one sandbox and one "already in
//! use") and labelled with the name, the owner's uid and a record of what a
//! later process needs to exec in it (the spec, its report, the image's
//! user). State is always read back from the engine: there is no second
//! copy that could disagree.

mod handle;
mod lookup;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::query_parameters::CreateContainerOptionsBuilder;
use cleanroom_core::detached::{current_uid, now_secs, NAME_LABEL};
use cleanroom_core::{
    Cmd, DetachOptions, Detached, Enforcement, Error, Network, Prepared, Result, SandboxInfo,
    SandboxSpec, SandboxState,
};
use serde::{Deserialize, Serialize};

use crate::backend::Shared;
use crate::container::{
    clean_env_argv, create_body, host_name, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST,
};
use crate::endpoint::Engine;

pub use handle::EngineDetached;
pub(crate) use lookup::{attach, gc_dead, list};

/// The uid of the user who made it: `ps` and name lookups see only their own.
pub const LABEL_UID: &str = "io.cleanroom.uid";
/// What a later process needs to exec in the sandbox (its spec, report
/// and image user), as JSON.
pub const LABEL_RECORD: &str = "io.cleanroom.record";
/// Label keys under these prefixes are ours; `--label` may not set them.
pub(super) const RESERVED_PREFIXES: [&str; 2] = ["io.cleanroom.", "cleanroom."];

/// The main process of a sandbox made by `create`: it idles, and ends
/// cleanly (exit 0) on the SIGTERM of `stop`. A shell as PID 1 also reaps
/// the orphans of execs.
const IDLE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// A created container that never started is left by a creator that died
/// in between; younger than this, its creator may still be starting it.
pub(super) const UNSTARTED_GRACE_SECS: u64 = 60;

/// What a later process needs to run commands in the sandbox as its
/// creator would have, carried in the [`LABEL_RECORD`] label.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Bumped when the fields change meaning.
    pub(super) version: u32,
    /// The Cleanroom version that wrote it, for the error of another.
    #[serde(default)]
    pub(super) made_by: String,
    /// The spec under the image's config.
    pub(super) spec: SandboxSpec,
    pub(super) enforcement: Enforcement,
    pub(super) image: String,
    /// The main command as given; empty for an idle sandbox.
    pub(super) command: Vec<String>,
    pub(super) created: u64,
    /// The image's named user, which execs run as.
    pub(super) user_name: Option<String>,
    /// The image's WorkingDir, where execs start unless they name one.
    pub(super) start_dir: Option<PathBuf>,
}

const RECORD_VERSION: u32 = 1;

impl Record {
    /// The record in `label`, or, when another version of Cleanroom wrote
    /// it in a form this one does not read, that version.
    pub(super) fn read(label: &str) -> std::result::Result<Record, String> {
        match serde_json::from_str::<Record>(label) {
            Ok(r) if r.version == RECORD_VERSION => Ok(r),
            _ => {
                let raw: serde_json::Value = serde_json::from_str(label).unwrap_or_default();
                Err(raw["made_by"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| "of another version".to_string(), str::to_string))
            }
        }
    }
}

/// The container a sandbox name maps to.
pub fn container_name(name: &str) -> String {
    format!("cleanroom-{name}")
}

/// `cleanroom create` / `run -d` on an engine.
pub(crate) async fn create(
    shared: &Shared,
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
    prepared: Prepared,
) -> Result<Box<dyn Detached>> {
    check_labels(&options.labels)?;
    let engine = shared.engine;
    let run = shared.image_run(spec).await?;
    let main = main.map(|m| run.main_command(m)).transpose()?;
    let spec = &run.spec;
    let image = shared.image_for(spec)?;
    let (docker, _) = shared.client()?;
    shared.info().await?;

    let mut body = create_body(engine, spec, &image, None);
    let (argv, env, workdir) = match &main {
        Some(cmd) => {
            cmd.validate()?;
            if cmd.program.contains('=') {
                return Err(Error::InvalidSpec(format!(
                    "program `{}` contains `=`; the {} backend cannot run such a name, rename it",
                    cmd.program,
                    engine.name()
                )));
            }
            let env = spec.environment(&cmd.env);
            let workdir = cmd.workdir.clone().or_else(|| run.start_dir.clone());
            (clean_env_argv(&env, &cmd.argv()), env, workdir)
        }
        None => (
            ["sh", "-c", IDLE].map(String::from).to_vec(),
            spec.environment(&BTreeMap::new()),
            run.start_dir.clone(),
        ),
    };
    let record = Record {
        version: RECORD_VERSION,
        made_by: env!("CARGO_PKG_VERSION").to_string(),
        spec: spec.clone(),
        enforcement: prepared.into_enforcement(),
        image: image.clone(),
        command: main.as_ref().map(|m| m.argv()).unwrap_or_default(),
        created: now_secs(),
        user_name: run.user_name.clone(),
        start_dir: run.start_dir.clone(),
    };
    body.entrypoint = Some(argv[..1].to_vec());
    body.cmd = Some(argv[1..].to_vec());
    body.env = Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    if let Some(dir) = workdir {
        body.working_dir = Some(dir.display().to_string());
    }
    if let Some(u) = &run.user_name {
        body.user = Some(u.clone());
    }
    body.labels = Some(labels(&options, &record)?);
    // No keep-alive: nobody holds its stdin, and it is not removed when it
    // exits, so `ps -a` shows its exit code and `logs` its output.
    body.attach_stdin = Some(false);
    body.open_stdin = Some(false);
    body.stdin_once = Some(false);
    body.stop_signal = Some("SIGTERM".into());
    body.stop_timeout = Some(10);
    let seccomp = crate::seccomp_profile::security_opt(engine)?;
    if let Some(hc) = body.host_config.as_mut() {
        hc.auto_remove = Some(false);
        hc.security_opt.get_or_insert_with(Vec::new).push(seccomp);
    }
    let leader = match (&spec.network, engine) {
        (Network::Pod(leader), Engine::Podman) => {
            let pid = crate::pod::join_by_path(&docker, leader, &mut body).await?;
            Some((leader, pid))
        }
        _ => None,
    };

    let opts = CreateContainerOptionsBuilder::new()
        .name(&container_name(&options.name))
        .build();
    let id = match docker.create_container(Some(opts), body).await {
        Ok(created) => created.id,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => return Err(name_in_use(engine, &options.name)),
        Err(e) => {
            return Err(Error::backend(
                engine.name(),
                format!(
                    "creating sandbox `{}` from image `{image}`: {e}",
                    options.name
                ),
            ))
        }
    };
    let handle = EngineDetached {
        docker: docker.clone(),
        engine,
        id: id.clone(),
        info: SandboxInfo {
            name: options.name.clone(),
            backend: engine.name().to_string(),
            image: record.image.clone(),
            state: SandboxState::Running,
            created: record.created,
            command: record.command.clone(),
            labels: options.labels.clone(),
            id,
        },
        record,
    };
    if let Err(e) = handle.finish_start(leader).await {
        let _ = handle.remove(true).await;
        return Err(e);
    }
    Ok(Box::new(handle))
}

/// The error of a second create of a name: the engine keeps names unique.
fn name_in_use(engine: Engine, name: &str) -> Error {
    Error::Config {
        origin: format!("sandbox `{name}`"),
        message: format!(
            "the name is already in use (by a {} container); choose another or remove it \
             with `cleanroom rm {name}`",
            engine.name()
        ),
    }
}

/// User labels must not pass for ours.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for key in labels.keys() {
        if key.is_empty() || RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            return Err(Error::Config {
                origin: format!("label `{key}`"),
                message: format!(
                    "keys starting with {} are Cleanroom's own (and a key may not be empty); \
                     choose another",
                    RESERVED_PREFIXES.join(" or ")
                ),
            });
        }
    }
    Ok(())
}

fn labels(options: &DetachOptions, record: &Record) -> Result<HashMap<String, String>> {
    let record = serde_json::to_string(record)
        .map_err(|e| Error::backend("engine", format!("encoding the sandbox record: {e}")))?;
    let mut labels: HashMap<String, String> = options
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend([
        (NAME_LABEL.to_string(), options.name.clone()),
        (LABEL_UID.to_string(), current_uid().to_string()),
        (LABEL_RECORD.to_string(), record),
        // What every container of ours carries, so that `docker ps
        // --filter label=cleanroom.created-by=cleanroom` shows it; without
        // the pid label, `gc` never takes it for a dead caller's.
        (LABEL_CREATED_BY.to_string(), CREATED_BY.to_string()),
        (LABEL_HOST.to_string(), host_name()),
    ]);
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_version_names_it() {
        let other = r#"{"version": 99, "made_by": "9.9.9"}"#;
        assert_eq!(Record::read(other).unwrap_err(), "9.9.9");
        assert_eq!(Record::read("{}").unwrap_err(), "of another version");
    }

    #[test]
    fn reserved_label_keys_are_refused() {
        let ok = BTreeMap::from([("team".to_string(), "a".to_string())]);
        check_labels(&ok).unwrap();
        for key in ["io.cleanroom.name", "cleanroom.pid", ""] {
            let bad = BTreeMap::from([(key.to_string(), "x".to_string())]);
            let e = check_labels(&bad).unwrap_err().to_string();
            assert!(e.contains("Cleanroom's own"), "{key}: {e}");
        }
    }
}
