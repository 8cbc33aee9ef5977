//! The engine's `/info` answer, kept on disk between processes.
//!
//! Podman takes about 0.2 s to answer `/info`, and a short-lived caller
//! (each `cleanroom run`) would pay that every time. An entry belongs to
//! one socket file (its device, inode and change time: a restarted engine
//! makes a new socket) and is trusted for [`MAX_AGE`], so an engine upgraded
//! behind a socket that stays is asked again soon. TCP endpoints are not
//! cached. Any problem with the cache means asking the engine.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::engine_info::EngineInfo;

/// How long an entry is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// Where entries are kept.
fn dir() -> PathBuf {
    cleanroom_core::paths::cache_dir("engine-info")
}

/// The socket's identity and the entry's file in `dir`, for a `unix://` host.
fn entry(dir: &Path, host: &str) -> Option<(String, PathBuf)> {
    let path = host.strip_prefix("unix://")?;
    let m = std::fs::metadata(path).ok()?;
    let identity = format!("{}:{}:{}.{}", m.dev(), m.ino(), m.ctime(), m.ctime_nsec());
    let name = cleanroom_core::paths::cache_key(host.as_bytes());
    let file = dir.join(format!("{name}.json"));
    Some((identity, file))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cached answer for `host`, if it is for the same socket and fresh.
pub fn load(host: &str) -> Option<EngineInfo> {
    load_from(&dir(), host)
}

fn load_from(dir: &Path, host: &str) -> Option<EngineInfo> {
    let (identity, file) = entry(dir, host)?;
    let v: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let age = now().checked_sub(v["saved"].as_u64()?)?;
    if v["socket"].as_str()? != identity || age > MAX_AGE.as_secs() {
        return None;
    }
    let i = &v["info"];
    Some(EngineInfo {
        server_version: i["server_version"].as_str()?.to_string(),
        memory_limit: i["memory_limit"].as_bool()?,
        cpu_cfs_quota: i["cpu_cfs_quota"].as_bool()?,
        pids_limit: i["pids_limit"].as_bool()?,
        seccomp: i["seccomp"].as_bool()?,
        rootless: i["rootless"].as_bool()?,
        cgroup_version: i["cgroup_version"].as_str()?.to_string(),
    })
}

/// Saves `info` for `host` (atomically: a temporary file renamed into
/// place). Failing to save is not an error: the engine is asked next time.
pub fn store(host: &str, info: &EngineInfo) {
    store_in(&dir(), host, info)
}

fn store_in(dir: &Path, host: &str, info: &EngineInfo) {
    let Some((identity, file)) = entry(dir, host) else {
        return;
    };
    let v = json!({
        "socket": identity,
        "saved": now(),
        "info": {
            "server_version": info.server_version,
            "memory_limit": info.memory_limit,
            "cpu_cfs_quota": info.cpu_cfs_quota,
            "pids_limit": info.pids_limit,
            "seccomp": info.seccomp,
            "rootless": info.rootless,
            "cgroup_version": info.cgroup_version,
        },
    });
    let tmp = dir.join(format!(".{}.{}", std::process::id(), now()));
    let saved = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, v.to_string()))
        .and_then(|()| std::fs::rename(&tmp, &file));
    if saved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_tied_to_the_socket_file() {
        let home = tempfile_dir();
        let sock = home.join("engine.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let host = format!("unix://{}", sock.display());
        let info = EngineInfo {
            server_version: "9.9".into(),
            memory_limit: true,
            cpu_cfs_quota: false,
            pids_limit: true,
            seccomp: true,
            rootless: false,
            cgroup_version: "2".into(),
        };
        assert!(load_from(&home, &host).is_none());
        store_in(&home, &host, &info);
        let back = load_from(&home, &host).expect("cached");
        assert_eq!(back.server_version, "9.9");
        assert!(back.memory_limit && !back.cpu_cfs_quota && back.pids_limit);
        // A restarted engine makes a new socket: the entry no longer applies.
        drop(_listener);
        std::fs::remove_file(&sock).unwrap();
        let _again = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(load_from(&home, &host).is_none());
        // TCP endpoints are never cached.
        store_in(&home, "tcp://127.0.0.1:2375", &info);
        assert!(load_from(&home, "tcp://127.0.0.1:2375").is_none());
        let _ = std::fs::remove_dir_all(&home);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cleanroom-info-cache-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
