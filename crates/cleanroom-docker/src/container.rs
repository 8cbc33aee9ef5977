//! The hardened container configuration a [`SandboxSpec`] becomes, and the
//! labels that let `gc` find what a dead caller left behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};
use cleanroom_core::{Cmd, Network, SandboxSpec};

use crate::endpoint::Engine;

pub const LABEL_SESSION: &str = "cleanroom.session";
pub const LABEL_CREATED_BY: &str = "cleanroom.created-by";
pub const LABEL_PID: &str = "cleanroom.pid";
/// The host that created it: `gc` only judges pids of its own machine.
pub const LABEL_HOST: &str = "cleanroom.host";
pub const CREATED_BY: &str = "cleanroom";

/// The idle main process of a sandbox without a main command: busybox and
/// coreutils `sleep` both accept this (the largest 32-bit signed value).
pub const IDLE: [&str; 2] = ["sleep", "2147483647"];

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

/// The create body for `spec` running `main` (idle when `None`) from `image`.
pub fn create_body(
    engine: Engine,
    spec: &SandboxSpec,
    image: &str,
    main: Option<&Cmd>,
) -> ContainerCreateBody {
    let (argv, workdir, env) = match main {
        Some(cmd) => (
            clean_env_argv(&spec.environment(&cmd.env), &cmd.argv()),
            cmd.workdir.clone().unwrap_or_else(|| spec.workdir.clone()),
            spec.environment(&cmd.env),
        ),
        None => (
            IDLE.iter().map(|s| s.to_string()).collect(),
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
            tmpfs.insert(
                t.target.display().to_string(),
                format!("{TMPFS_OPTS},size={size}"),
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

    let ulimits = match engine {
        // Podman raises nofile/nproc by default, which fails without
        // CAP_SYS_RESOURCE; ask for values any process may set.
        Engine::Podman => Some(vec![
            ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(1024),
                hard: Some(1024),
            },
            ResourcesUlimits {
                name: Some("nproc".into()),
                soft: Some(1024),
                hard: Some(1024),
            },
        ]),
        Engine::Docker => None,
    };

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
        auto_remove: Some(false),
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
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        stop_signal: Some("SIGKILL".into()),
        stop_timeout: Some(1),
        host_config: Some(host_config),
        ..Default::default()
    }
}
