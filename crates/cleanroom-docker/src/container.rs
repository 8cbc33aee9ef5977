//! The hardened container configuration a [`SandboxSpec`] becomes, and the
//! labels that let `gc` find what a dead caller left behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};
use cleanroom_core::spec::{DEFAULT_NOFILE, DEFAULT_NPROC, WORKDIR_MODE};
use cleanroom_core::{Cmd, Network, SandboxSpec, User};

use crate::endpoint::Engine;

pub const LABEL_SESSION: &str = "cleanroom.session";
pub const LABEL_CREATED_BY: &str = "cleanroom.created-by";
pub const LABEL_PID: &str = "cleanroom.pid";
/// The host that created it: `gc` only judges pids of its own machine.
pub const LABEL_HOST: &str = "cleanroom.host";
pub const CREATED_BY: &str = "cleanroom";

/// The main process of a sandbox without a main command: it reads the
/// container's stdin, which the creating process holds open through an
/// attach connection, and ends at EOF, when that process is gone. The
/// container then exits and the engine removes it (`AutoRemove`): a
/// container dies with its owner, with no daemon of ours.
pub const KEEP_ALIVE: [&str; 1] = ["cat"];

/// The same for a sandbox with a main command (`"$@"`): the command runs
/// beside the keep-alive with stdin closed, and the sandbox outlives it (as a
/// native sandbox does) until its owner removes it or dies.
const KEEP_ALIVE_WITH_MAIN: &str = "\"$@\" </dev/null & exec cat >/dev/null";

/// Unique per process: `<pid>-<start time in ns>`.
pub fn session() -> &'static str {
    static SESSION: OnceLock<String> = OnceLock::new();
    SESSION.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}-{nanos:x}", std::process::id())
    })
}

/// A fresh container name in this session.
pub fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "cleanroom-{}-{}",
        session(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// This machine's hostname, for the host label.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn labels() -> HashMap<String, String> {
    HashMap::from([
        (LABEL_SESSION.to_string(), session().to_string()),
        (LABEL_CREATED_BY.to_string(), CREATED_BY.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
        (LABEL_HOST.to_string(), host_name()),
    ])
}

/// `env -i K=V... PROG ARGS`: the program sees exactly `env`, nothing the
/// engine adds (Podman sets `container` and `TERM`, Docker `HOSTNAME`).
pub fn clean_env_argv(env: &BTreeMap<String, String>, argv: &[String]) -> Vec<String> {
    let mut v = vec!["env".to_string(), "-i".to_string()];
    v.extend(env.iter().map(|(k, val)| format!("{k}={val}")));
    v.extend(argv.iter().cloned());
    v
}

/// `exec` because Docker's tmpfs default is `noexec`, while the contract (and
/// native and Podman) let a copied-in script run from /tmp and /workdir.
const TMPFS_OPTS: &str = "rw,exec,nosuid,nodev,mode=1777";

/// The working directory's tmpfs: mode [`WORKDIR_MODE`] and owned by the
/// sandbox's user, as on native. Podman chowns to the container's user
/// (`U`, names too); Docker takes numeric `uid=`/`gid=` only.
fn workdir_tmpfs_opts(engine: Engine, user: &str) -> String {
    let base = format!("rw,exec,nosuid,nodev,mode={WORKDIR_MODE:o}");
    match engine {
        Engine::Podman => format!("{base},U"),
        Engine::Docker => match user.parse::<User>() {
            Ok(u) => format!("{base},uid={},gid={}", u.uid, u.gid),
            Err(_) => base,
        },
    }
}

/// The create body for `spec` running `main` (idle when `None`) from `image`.
pub fn create_body(
    engine: Engine,
    spec: &SandboxSpec,
    image: &str,
    main: Option<&Cmd>,
) -> ContainerCreateBody {
    let (argv, workdir, env) = match main {
        Some(cmd) => {
            let mut argv: Vec<String> = ["sh", "-c", KEEP_ALIVE_WITH_MAIN, "sh"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            argv.extend(clean_env_argv(&spec.environment(&cmd.env), &cmd.argv()));
            (
                argv,
                cmd.workdir.clone().unwrap_or_else(|| spec.workdir.clone()),
                spec.environment(&cmd.env),
            )
        }
        None => (
            KEEP_ALIVE.iter().map(|s| s.to_string()).collect(),
            spec.workdir.clone(),
            spec.environment(&BTreeMap::new()),
        ),
    };

    // Every tmpfs sized as on every backend (`/dev/shm` is the engine's
    // own, sized with `ShmSize`); a bind mount at /tmp or the working
    // directory takes the place of its tmpfs.
    let mut tmpfs: HashMap<String, String> = HashMap::new();
    let mut shm_size = None;
    let mounted = |p: &std::path::Path| spec.mounts.iter().any(|m| m.target == p);
    let sized = spec.tmpfs_mounts();
    let own = sized.len() - spec.tmpfs.len();
    for (i, t) in sized.into_iter().enumerate() {
        let size = t.size.unwrap_or(cleanroom_core::spec::DEFAULT_TMPFS_CAP);
        if i < own && t.target == std::path::Path::new("/dev/shm") {
            shm_size = Some(size as i64);
        } else if i >= own || !mounted(&t.target) {
            // The working directory has one mode and owner on every backend.
            let opts = if i < own && t.target == spec.workdir {
                workdir_tmpfs_opts(engine, &spec.user.to_string())
            } else {
                TMPFS_OPTS.to_string()
            };
            tmpfs.insert(
                t.target.display().to_string(),
                format!("{opts},size={size}"),
            );
        }
    }

    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.display().to_string()),
            source: Some(m.source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();

    let network_mode = match &spec.network {
        Network::None => "none".to_string(),
        Network::Host => "host".to_string(),
        Network::Pod(id) => format!("container:{id}"),
    };
    // A container joining another's network namespace may not set a hostname.
    let hostname = match spec.network {
        Network::Pod(_) => None,
        _ => Some(spec.hostname.clone()),
    };

    // The limits native sets too (the engines' own defaults differ, and
    // Podman's raise fails without CAP_SYS_RESOURCE): values any process may set.
    let ulimits = Some(
        [("nofile", DEFAULT_NOFILE), ("nproc", DEFAULT_NPROC)]
            .map(|(name, v)| ResourcesUlimits {
                name: Some(name.into()),
                soft: Some(v as i64),
                hard: Some(v as i64),
            })
            .to_vec(),
    );

    let host_config = HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        readonly_rootfs: Some(spec.read_only_root),
        security_opt: Some(vec!["no-new-privileges".into()]),
        network_mode: Some(network_mode),
        tmpfs: Some(tmpfs),
        shm_size,
        mounts: Some(mounts),
        memory: spec.memory.map(|m| m as i64),
        memory_swap: spec.memory.map(|m| m as i64),
        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
        pids_limit: spec.pids.map(|p| p as i64),
        ulimits,
        // The keep-alive's EOF ends the container; the engine removes it.
        auto_remove: Some(true),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname,
        user: Some(spec.user.to_string()),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        // A non-empty entrypoint replaces the image's entrypoint and cmd.
        entrypoint: Some(argv[..1].to_vec()),
        cmd: Some(argv[1..].to_vec()),
        working_dir: Some(workdir.display().to_string()),
        labels: Some(labels()),
        // Stdin stays open for the keep-alive until the one attached client
        // (the creating process, see `Container::start`) disconnects.
        attach_stdin: Some(true),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        stop_signal: Some("SIGKILL".into()),
        stop_timeout: Some(1),
        host_config: Some(host_config),
        ..Default::default()
    }
}
