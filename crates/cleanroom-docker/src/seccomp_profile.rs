//! Cleanroom's one syscall policy ([`cleanroom_core::seccomp_policy`], the
//! rule set native compiles) rendered as a Docker/OCI seccomp profile, and
//! handed to the engine in place of its default profile: Docker takes the
//! JSON itself in `SecurityOpt`, Podman's compatible API (4.x) a path on
//! its host, so the profile is also written to a file once.

use std::path::PathBuf;
use std::sync::OnceLock;

use cleanroom_core::seccomp_policy as policy;
use cleanroom_core::{Error, Result};
use serde_json::{json, Value};

use crate::endpoint::Engine;

/// The libseccomp architecture the engine's host runs (the client's own:
/// the engines are reached over a local socket).
fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "aarch64" => vec!["SCMP_ARCH_AARCH64"],
        _ => vec!["SCMP_ARCH_X86_64"],
    }
}

/// One rule denying `name` with `errno` when argument 0 masked with `mask`
/// equals `value` (OCI: `value` is the mask, `valueTwo` the datum).
fn masked(name: &str, mask: u64, value: u64) -> Value {
    json!({
        "names": [name],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": policy::EPERM,
        "args": [{ "index": 0, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ" }],
    })
}

/// The profile: allow by default, deny what the policy denies, with the
/// errno native returns. `personality`'s "only these values" becomes one
/// masked comparison per block of the other values (a profile cannot
/// combine comparisons on one argument).
pub fn profile() -> Value {
    let arch = std::env::consts::ARCH;
    let plain: Vec<&str> = policy::DENIED
        .iter()
        .filter(|d| d.only_on.is_none_or(|a| a == arch))
        .map(|d| d.name)
        .collect();
    let mut rules = vec![
        json!({ "names": plain, "action": "SCMP_ACT_ERRNO", "errnoRet": policy::EPERM }),
        json!({ "names": policy::ENOSYS_CALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": policy::ENOSYS }),
    ];
    for &flag in policy::CLONE_NAMESPACE_FLAGS {
        rules.push(masked("clone", flag, flag));
    }
    for flag in policy::unshare_flags() {
        rules.push(masked("unshare", flag, flag));
    }
    for (mask, value) in policy::complement_blocks(policy::PERSONALITIES_ALLOWED) {
        rules.push(masked("personality", mask, value));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    })
}

/// The `SecurityOpt` entry that gives `engine` the profile.
pub fn security_opt(engine: Engine) -> Result<String> {
    static TEXT: OnceLock<String> = OnceLock::new();
    static FILE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let text = TEXT.get_or_init(|| profile().to_string());
    match engine {
        Engine::Docker => Ok(format!("seccomp={text}")),
        Engine::Podman => {
            let path = FILE
                .get_or_init(|| write_once(text))
                .as_ref()
                .map_err(|e| Error::backend("podman", e.clone()))?;
            // A cache cleaned while this process runs gets the file back.
            if !path.is_file() {
                write_once(text).map_err(|e| Error::backend("podman", e))?;
            }
            Ok(format!("seccomp={}", path.display()))
        }
    }
}

/// The profile in the cache, named by its content, written atomically
/// (readable by the Podman service, which opens it).
fn write_once(text: &str) -> std::result::Result<PathBuf, String> {
    let dir = cleanroom_core::paths::cache_dir("seccomp");
    let path = dir.join(format!(
        "profile-{}.json",
        cleanroom_core::paths::cache_key(text.as_bytes())
    ));
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(path);
    }
    let fail = |what: &str, e: std::io::Error| {
        format!(
            "writing the seccomp profile for Podman ({what} {}): {e}; set CLEANROOM_HOME to a \
             writable directory",
            dir.display()
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail("creating", e))?;
    let tmp = dir.join(format!(".profile-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| fail("writing into", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail("renaming into", e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_holds_every_rule_of_the_policy() {
        let p = profile();
        let rules = p["syscalls"].as_array().unwrap();
        let names = |r: &Value| -> Vec<String> {
            r["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        };
        for call in ["mount", "ptrace", "keyctl", "bpf", "setns"] {
            assert!(names(&rules[0]).iter().any(|n| n == call), "{call}");
        }
        assert_eq!(rules[1]["errnoRet"], json!(38));
        let unshare = rules.iter().filter(|r| names(r) == ["unshare"]).count();
        assert_eq!(unshare, policy::unshare_flags().count());
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
