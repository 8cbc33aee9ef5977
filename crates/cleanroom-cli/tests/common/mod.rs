//! What the CLI's end-to-end tests share: the binary with a clean
//! environment, output as text, and whether the native backend runs here.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `cleanroom` binary run in `dir` with `args`, none of the caller's
/// `CLEANROOM_*` settings leaking in.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cleanroom"));
    c.args(args).current_dir(dir);
    for field in cleanroom::fields::FIELDS {
        c.env_remove(field.env);
    }
    c.env_remove("CLEANROOM_CONFIG");
    c
}

/// [`command`] run to its end.
pub fn cleanroom(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .output()
        .expect("running the cleanroom binary")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether the native backend works here (asked from `dir`); under
/// CI=true it must.
pub fn native_available(dir: &Path) -> bool {
    backend_available(dir, "native")
}

/// Whether `backend` works here, as `cleanroom doctor` sees it from `dir`;
/// under CI=true it must, and otherwise its absence is said, never silent.
pub fn backend_available(dir: &Path, backend: &str) -> bool {
    let out = command(dir, &["doctor", "--json"])
        .output()
        .expect("running the cleanroom binary");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let ok = v
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["name"] == backend && b["available"] == true);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the {backend} backend is not available: {}",
            text(&out.stdout)
        );
        eprintln!("NOTE: {backend} backend not available here; its part of this test did not run");
    }
    ok
}
