//! The shadow history and the change summary, on a workspace whose files
//! are edited directly (what a sandbox's command would do to them).

mod common;

use std::fs;
use std::path::PathBuf;

use cleanroom_workspace::changes::changes;
use cleanroom_workspace::history::{exec_message, History};
use cleanroom_workspace::{ChangeKind, ChangeSummary};
use common::{sandbox_edits, Fixture};

fn history(f: &Fixture) -> History {
    History::open(
        &f.layout.history(),
        &f.layout.tree(),
        &f.layout.stat_cache(),
    )
    .unwrap()
}

fn summary(f: &Fixture, paths: &[&str]) -> ChangeSummary {
    let h = history(f);
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    changes(&h, h.base().unwrap(), &paths, false).unwrap().0
}

#[test]
fn snapshot_is_the_base_and_nothing_changed_yet() {
    let f = Fixture::new();
    let h = history(&f);
    assert_eq!(h.base().unwrap().to_string(), f.meta.base);
    assert!(summary(&f, &[]).is_empty());
    assert_eq!(
        h.commit("nothing").unwrap(),
        None,
        "no commit when nothing changed"
    );
    assert!(
        !f.ws(".git").exists(),
        "the project's .git is not in the workspace"
    );
}

#[test]
fn every_kind_of_change_is_listed_binary_ones_with_sizes() {
    let f = Fixture::new();
    sandbox_edits(&f);
    let s = summary(&f, &[]);
    let by_path = |p: &str| {
        s.files
            .iter()
            .find(|c| c.path == p)
            .unwrap_or_else(|| panic!("{p} missing from {s:#?}"))
    };
    let main = by_path("src/main.rs");
    assert_eq!(main.status, ChangeKind::Modified);
    assert_eq!((main.lines_added, main.lines_removed), (2, 1));
    assert_eq!(by_path("src/new.txt").status, ChangeKind::Added);
    assert_eq!(by_path("src/lib.rs").status, ChangeKind::Deleted);
    let tool = by_path("tool.sh");
    assert_eq!(tool.status, ChangeKind::ModeChanged);
    assert_eq!(
        (tool.old_mode.as_deref(), tool.new_mode.as_deref()),
        (Some("100644"), Some("100755"))
    );
    let bin = by_path("out.bin");
    assert!(bin.binary);
    assert_eq!((bin.old_size, bin.new_size), (None, Some(7)));
    let renamed = by_path("src/renamed.txt");
    assert_eq!(renamed.status, ChangeKind::Renamed);
    assert_eq!(renamed.old_path.as_deref(), Some("src/old_name.txt"));
    let link = by_path("main-link");
    assert!(link.symlink);
    assert_eq!(link.new_mode.as_deref(), Some("120000"));
    assert_eq!(s.files.len(), 7, "{s:#?}");

    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["files"].as_array().unwrap().len(), 7);
    let stat = s.stat();
    assert!(stat.contains("Bin 0 -> 7 bytes"), "{stat}");
    assert!(stat.contains("7 file(s) changed"), "{stat}");

    let h = history(&f);
    let (_, patch) = changes(&h, h.base().unwrap(), &[], true).unwrap();
    let patch = String::from_utf8(patch.unwrap()).unwrap();
    assert!(patch.contains("+    println!(\"hello\");"), "{patch}");
    assert!(patch.contains("-    println!(\"hi\");"), "{patch}");
    assert!(patch.contains("Binary files"), "{patch}");
}

#[test]
fn path_filters_limit_the_summary() {
    let f = Fixture::new();
    sandbox_edits(&f);
    let s = summary(&f, &["src/main.rs", "out.bin"]);
    let paths: Vec<&str> = s.files.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["out.bin", "src/main.rs"]);
}

#[test]
fn commits_record_changes_and_log_lists_them() {
    let f = Fixture::new();
    let h = history(&f);
    fs::write(f.ws("a.txt"), "1").unwrap();
    let c1 = h
        .commit(&exec_message("sh -c 'echo 1 > a.txt'", 0))
        .unwrap();
    assert!(c1.is_some());
    assert_eq!(
        h.commit("again").unwrap(),
        None,
        "unchanged: no second commit"
    );
    fs::write(f.ws("a.txt"), "2").unwrap();
    h.commit(&exec_message("false", 1)).unwrap().unwrap();
    let log = h.log().unwrap();
    let messages: Vec<&str> = log.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "exec: false (exit 1)",
            "exec: sh -c 'echo 1 > a.txt' (exit 0)",
            "snapshot (base)"
        ]
    );
}

#[test]
fn a_same_size_edit_in_the_same_second_is_still_seen() {
    // The stat cache must not hide a rewrite that keeps size and mtime.
    let f = Fixture::new();
    let h = history(&f);
    let p = f.ws("README.md");
    let mtime = fs::metadata(&p).unwrap().modified().unwrap();
    fs::write(&p, "# DEMO\nline two\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(h.commit("edit").unwrap().is_some());
}

#[test]
fn export_makes_a_real_repository() {
    let f = Fixture::new();
    let h = history(&f);
    fs::write(f.ws("a.txt"), "1\n").unwrap();
    h.commit("add a").unwrap().unwrap();
    let out = f.tmp.path().join("exported");
    h.export(&out).unwrap();
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"1\n");
    assert_eq!(
        fs::read(out.join("logo.bin")).unwrap(),
        fs::read(f.host("logo.bin")).unwrap()
    );
    let repo = git2::Repository::open(&out).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    assert_eq!(walk.count(), 2);
    let e = h.export(&out).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn git_dirs_and_fifos_planted_in_the_workspace_are_listed_as_skipped() {
    let f = Fixture::new();
    fs::create_dir_all(f.ws(".git/hooks")).unwrap();
    fs::write(f.ws(".git/hooks/post-commit"), "#!/bin/sh\nrm -rf ~\n").unwrap();
    fs::create_dir_all(f.ws("sub/.git")).unwrap();
    fs::write(f.ws("sub/.git/config"), "x").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.ws("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let s = summary(&f, &[]);
    assert!(s.files.is_empty(), "{s:#?}");
    let skipped: Vec<&str> = s.skipped.iter().map(|k| k.path.as_str()).collect();
    assert!(
        skipped.contains(&".git") && skipped.contains(&"sub/.git") && skipped.contains(&"pipe"),
        "{skipped:?}"
    );
}

#[test]
fn a_workspace_replaced_by_a_symlink_is_refused() {
    let f = Fixture::new();
    let tree = f.layout.tree();
    fs::rename(&tree, f.tmp.path().join("moved")).unwrap();
    std::os::unix::fs::symlink("/", &tree).unwrap();
    let e = history(&f).commit("x").unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn git_itself_accepts_the_hand_written_packs() {
    // Enough new files that the commit packs them (few are written loose).
    let f = Fixture::new();
    let h = history(&f);
    fs::create_dir_all(f.ws("many")).unwrap();
    for i in 0..200 {
        fs::write(f.ws(&format!("many/{i}.txt")), format!("file {i}\n")).unwrap();
    }
    h.commit("many files").unwrap().unwrap();
    let packs = fs::read_dir(f.layout.history().join("objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pack")
        })
        .count();
    assert!(
        packs >= 2,
        "the base and the commit are packed ({packs} packs)"
    );
    let fsck = match std::process::Command::new("git")
        .arg("--git-dir")
        .arg(f.layout.history())
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var_os("CI").is_some() => panic!("git is needed under CI: {e}"),
        Err(e) => return eprintln!("skipped: git does not run ({e})"),
    };
    assert!(
        fsck.status.success(),
        "git fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
