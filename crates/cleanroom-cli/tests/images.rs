//! `cleanroom import|images|rmi` against a real store in a temporary home.

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn cleanroom(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(args)
        .env("CLEANROOM_HOME", home)
        .output()
        .expect("running the cleanroom binary")
}

#[test]
fn import_list_verify_remove() {
    let home = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("etc")).unwrap();
    std::fs::write(rootfs.path().join("etc/os-release"), "NAME=test\n").unwrap();
    let source = format!("file://{}", rootfs.path().display());

    let out = cleanroom(home.path(), &["import", &source, "--tag", "t:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported t:1"));

    let out = cleanroom(home.path(), &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["reference"], "t:1");
    assert!(v[0]["digest"].as_str().unwrap().starts_with("sha256:"));

    let out = cleanroom(home.path(), &["images", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = cleanroom(home.path(), &["rmi", "t:1"]);
    assert!(out.status.success());
    let out = cleanroom(home.path(), &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = cleanroom(home.path(), &["import", "/nonexistent/image.tar"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/image.tar"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_pull_the_registry_refuses_names_the_image_and_stores_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reference = "docker://127.0.0.1:5000/cleanroom-cli-test/absent:1";
    let out = cleanroom(home.path(), &["pull", reference]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cleanroom-cli-test/absent"), "{err}");
    let out = cleanroom(home.path(), &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
}

#[test]
fn a_broken_image_is_listed_and_marked_and_repair_drops_its_tag() {
    let home = tempfile::tempdir().unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("etc")).unwrap();
    let source = format!("file://{}", rootfs.path().display());
    for (tag, content) in [("good:1", "ID=good\n"), ("bad:1", "ID=bad\n")] {
        std::fs::write(rootfs.path().join("etc/os-release"), content).unwrap();
        let out = cleanroom(home.path(), &["import", &source, "--tag", tag]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cleanroom(home.path(), &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = v
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "bad:1")
        .unwrap();
    let manifest = bad["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    std::fs::remove_file(home.path().join("blobs/sha256").join(manifest)).unwrap();

    let out = cleanroom(home.path(), &["images"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(stdout.lines().any(|l| l.starts_with("good:1")), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bad:1") && l.contains("BROKEN")),
        "{stdout}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("image bad:1 is broken") && err.contains("rmi bad:1"),
        "{err}"
    );

    let out = cleanroom(home.path(), &["images", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems: Vec<bool> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["problem"].is_null())
        .collect();
    assert_eq!(problems, [false, true], "{v}");

    let out = cleanroom(home.path(), &["images", "verify", "--repair"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("dropped the tag bad:1") && stdout.contains("re-import"),
        "{stdout}"
    );
    let out = cleanroom(home.path(), &["images", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn run_without_a_command_runs_the_images_entrypoint_and_cmd() {
    use cleanroom::conformance::{config_image_config, config_image_rootfs_tar, CONFIG_IMAGE};
    let home = tempfile::tempdir().unwrap();
    if !common::native_available(home.path()) {
        return;
    }
    let layer = config_image_rootfs_tar().unwrap();
    let archive = home.path().join("config-image.tar");
    std::fs::write(
        &archive,
        cleanroom::images::docker_archive(&layer, &config_image_config(), CONFIG_IMAGE).unwrap(),
    )
    .unwrap();
    let out = cleanroom(home.path(), &["import", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--backend", "native", "--image", CONFIG_IMAGE];
        args.extend(extra);
        let out = cleanroom(home.path(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No command: Entrypoint (`env FROM_ENTRYPOINT=yes`) + Cmd.
    assert_eq!(run(&[]), "default-cmd yes yes\n");
    // A command replaces Cmd and keeps Entrypoint, in the image's WorkingDir.
    assert_eq!(
        run(&["--", "sh", "-c", "echo $FROM_ENTRYPOINT $FOO; pwd; id -u"]),
        "yes yes\n/data\n4242\n"
    );
    // Flags win over the image's config.
    assert_eq!(
        run(&[
            "--env",
            "FOO=flag",
            "--user",
            "2000:2000",
            "--workdir",
            "/w",
            "--",
            "sh",
            "-c",
            "echo $FOO; pwd; id -u"
        ]),
        "flag\n/w\n2000\n"
    );
}
