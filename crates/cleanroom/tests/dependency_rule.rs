//! The dependency rule of DESIGN.md, checked against `cargo metadata`.
//!
//! Change the table here and in DESIGN.md together, deliberately.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Which workspace crates each workspace crate may depend on (any kind of
/// dependency: normal, dev or build).
const ALLOWED: &[(&str, &[&str])] = &[
    ("cleanroom-core", &[]),
    ("cleanroom-image", &["cleanroom-core"]),
    ("cleanroom-native", &["cleanroom-core", "cleanroom-image"]),
    ("cleanroom-docker", &["cleanroom-core"]),
    (
        "cleanroom-vm",
        &["cleanroom-core", "cleanroom-image", "cleanroom-native"],
    ),
    (
        "cleanroom",
        &[
            "cleanroom-core",
            "cleanroom-image",
            "cleanroom-native",
            "cleanroom-docker",
            "cleanroom-vm",
        ],
    ),
    ("cleanroom-env", &["cleanroom"]),
    ("cleanroom-workspace", &["cleanroom"]),
    ("cleanroom-runner", &["cleanroom", "cleanroom-env"]),
    (
        "cleanroom-cli",
        &[
            "cleanroom",
            "cleanroom-runner",
            "cleanroom-env",
            "cleanroom-workspace",
        ],
    ),
];

/// Every edge between workspace members, as `(from, to)`.
fn workspace_edges() -> BTreeSet<(String, String)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = v["packages"].as_array().expect("packages array");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut edges = BTreeSet::new();
    for p in packages {
        let from = p["name"].as_str().unwrap_or_default();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let to = d["name"].as_str().unwrap_or_default();
            if members.contains(to) {
                edges.insert((from.to_string(), to.to_string()));
            }
        }
    }
    edges
}

/// The edges of `edges` that the table does not allow, as readable lines.
fn forbidden(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    edges
        .iter()
        .filter(|(from, to)| {
            !allowed
                .get(from.as_str())
                .is_some_and(|ok| ok.contains(&to.as_str()))
        })
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect()
}

#[test]
fn workspace_follows_the_dependency_rule() {
    let edges = workspace_edges();
    assert!(
        edges.contains(&("cleanroom-cli".into(), "cleanroom".into())),
        "cargo metadata did not show the workspace's own edges: {edges:?}"
    );
    let bad = forbidden(&edges);
    assert!(
        bad.is_empty(),
        "dependency edges outside the DESIGN.md table: {}",
        bad.join(", ")
    );
}

#[test]
fn every_workspace_crate_is_in_the_table() {
    let names: BTreeSet<String> = workspace_edges()
        .into_iter()
        .flat_map(|(a, b)| [a, b])
        .collect();
    for n in names {
        assert!(
            ALLOWED.iter().any(|(c, _)| *c == n),
            "crate {n} is not in the dependency table"
        );
    }
}

#[test]
fn a_forbidden_edge_is_caught() {
    let mut edges = workspace_edges();
    edges.insert(("cleanroom-core".into(), "cleanroom-native".into()));
    edges.insert(("cleanroom-docker".into(), "cleanroom-image".into()));
    assert_eq!(
        forbidden(&edges),
        [
            "cleanroom-core -> cleanroom-native",
            "cleanroom-docker -> cleanroom-image"
        ]
    );
}
