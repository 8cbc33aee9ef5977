//! What the CLI's test binaries share.

/// Whether `cleanroom doctor --json` (its stdout) lists the native backend
/// as available; under CI=true it must be.
pub fn native_in_doctor(doctor_stdout: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(doctor_stdout).unwrap_or_default();
    let ok = v
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| b["name"] == "native" && b["available"] == true);
    assert!(
        ok || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the native backend is not available: {}",
        String::from_utf8_lossy(doctor_stdout)
    );
    if !ok {
        eprintln!("NOTE: native backend not available here; its part of this test did not run");
    }
    ok
}
