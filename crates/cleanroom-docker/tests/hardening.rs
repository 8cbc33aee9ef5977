//! The hardening of the contract, read back from each engine's own inspect
//! output (not just requested): user, capabilities, read-only root, tmpfs,
//! network, no-new-privileges, limits, seccomp, hostname, environment,
//! working directory, read-only mounts and the cleanup labels.

use std::collections::BTreeMap;

use cleanroom_core::{Backend, Mount, RootFs, SandboxSpec};
use cleanroom_docker::{
    DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE, LABEL_CREATED_BY, LABEL_PID,
    LABEL_SESSION,
};

fn spec() -> SandboxSpec {
    let mut s = SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()));
    s.memory = Some(96 << 20);
    s.cpus = Some(0.5);
    s.pids = Some(64);
    s.hostname = "hardened".into();
    s.env.insert("SPEC_VAR".into(), "x".into());
    s.mounts
        .push(Mount::read_only(std::env::temp_dir(), "/hosttmp"));
    s
}

async fn check(backend: EngineBackend) {
    let name = backend.name().to_string();
    let a = backend.availability().await;
    assert!(a.available, "{name} is not available: {a:?}");
    let spec = spec();
    let sb = backend.create(&spec, None).await.expect("create");
    let docker = backend.endpoint().unwrap().connect().unwrap();
    let info = docker
        .inspect_container(sb.id(), None)
        .await
        .expect("inspect");
    let config = info.config.clone().unwrap_or_default();
    let hc = info.host_config.clone().unwrap_or_default();
    let ctx = format!("{name}: config={config:#?} host_config={hc:#?}");

    assert_eq!(config.user.as_deref(), Some("1000:1000"), "{ctx}");
    let dropped = hc.cap_drop.clone().unwrap_or_default();
    let added = hc.cap_add.clone().unwrap_or_default();
    // Docker records `ALL`; Podman lists each capability of its default
    // set that it dropped (the exec below shows the bounding set is empty).
    let podman_defaults = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    assert!(
        dropped.iter().any(|c| c.eq_ignore_ascii_case("all"))
            || podman_defaults
                .iter()
                .all(|d| dropped.iter().any(|c| c.trim_start_matches("CAP_") == *d)),
        "capabilities not all dropped: {ctx}"
    );
    assert!(added.is_empty(), "capabilities added: {ctx}");
    assert_eq!(hc.readonly_rootfs, Some(true), "{ctx}");
    let tmpfs = hc.tmpfs.clone().unwrap_or_default();
    assert!(
        tmpfs.contains_key("/tmp") && tmpfs.contains_key("/workdir"),
        "{ctx}"
    );
    assert_eq!(hc.network_mode.as_deref(), Some("none"), "{ctx}");
    let secopt = hc.security_opt.clone().unwrap_or_default();
    assert!(
        secopt.iter().any(|o| o.starts_with("no-new-privileges")),
        "{ctx}"
    );
    assert!(
        !secopt.iter().any(|o| o.contains("unconfined")),
        "seccomp or another profile is unconfined: {ctx}"
    );
    assert_eq!(hc.memory, Some(96 << 20), "{ctx}");
    assert_eq!(hc.memory_swap, Some(96 << 20), "{ctx}");
    assert_eq!(hc.nano_cpus, Some(500_000_000), "{ctx}");
    assert_eq!(hc.pids_limit, Some(64), "{ctx}");
    assert_eq!(config.hostname.as_deref(), Some("hardened"), "{ctx}");
    assert_eq!(config.working_dir.as_deref(), Some("/workdir"), "{ctx}");
    let want_env: Vec<String> = spec
        .environment(&BTreeMap::new())
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let env = config.env.clone().unwrap_or_default();
    for v in &want_env {
        assert!(env.contains(v), "{v} missing from the environment: {ctx}");
    }
    let mounts = info.mounts.clone().unwrap_or_default();
    let host_mount = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/hosttmp"))
        .unwrap_or_else(|| panic!("no /hosttmp mount: {mounts:#?}"));
    assert_eq!(host_mount.rw, Some(false), "{mounts:#?}");
    let labels = config.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(LABEL_PID).map(String::as_str),
        Some(std::process::id().to_string().as_str())
    );
    assert_eq!(
        labels.get(LABEL_CREATED_BY).map(String::as_str),
        Some("cleanroom")
    );
    assert_eq!(
        labels.get(LABEL_SESSION).map(String::as_str),
        Some(cleanroom_docker::session())
    );

    // The engine's default seccomp profile and no_new_privs are in force
    // for a command, and the limits are really applied to the cgroup.
    let r = sb
        .exec(cleanroom_core::Cmd::shell(
            "grep -E '^(Seccomp|NoNewPrivs|CapBnd|CapEff):' /proc/self/status; \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max \
                 /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null",
        ))
        .await
        .expect("exec");
    let out = r.stdout_lossy();
    assert!(out.contains("Seccomp:\t2"), "{name}: {out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{name}: {out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{name}: {out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{name}: {out}");
    assert!(out.contains(&(96u64 << 20).to_string()), "{name}: {out}");
    assert!(out.lines().any(|l| l.trim() == "64"), "{name}: {out}");
    sb.remove().await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hardening_is_read_back_from_inspect() {
    check(DockerBackend::new(DEFAULT_IMAGE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_hardening_is_read_back_from_inspect() {
    check(PodmanBackend::new(DEFAULT_IMAGE)).await;
}
