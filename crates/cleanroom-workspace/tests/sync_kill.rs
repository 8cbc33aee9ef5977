//! kill -9 of a sync at random points, 50 times: afterwards every file is
//! the old version or the new one (never half-written), and the next sync
//! finishes the job.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom_workspace::sync::{sync, SyncOptions};
use cleanroom_workspace::Layout;
use common::{contents, Fixture};

/// Set in the child: `<workspace root>\n<name>`.
const CHILD: &str = "CLEANROOM_WS_SYNC_CHILD";
const FILES: usize = 80;
const ROUNDS: usize = 50;
/// Big enough that a half-written file shows (several writes' worth),
/// small enough that 50 rounds stay quick.
const SIZE: usize = 12_000;

fn old_bytes(i: usize) -> Vec<u8> {
    vec![b'o'; SIZE + i]
}

/// Runs a sync and nothing else when started as the child of
/// [`killed_syncs_leave_old_or_new_files_and_finish_next_time`].
#[test]
fn sync_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (root, name) = spec.split_once('\n').expect("root and name");
    let layout = Layout::new(Path::new(root), name).unwrap();
    let meta = layout.read_meta().unwrap();
    sync(&layout, &meta, &SyncOptions::default()).unwrap();
}

/// Each path's old and new content (`None`: absent).
type Versions = BTreeMap<String, [Option<Vec<u8>>; 2]>;

/// A workspace whose sandbox rewrote, deleted and added many files; the
/// old and new content of every path (absent = `None`).
fn busy_fixture() -> (Fixture, Versions) {
    // Made once (not Fixture::new plus a second snapshot): each of the 50
    // rounds needs a fresh one.
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    common::make_project(&project);
    let project = fs::canonicalize(&project).unwrap();
    let mut versions = BTreeMap::new();
    fs::create_dir(project.join("many")).unwrap();
    for i in 0..FILES {
        fs::write(project.join(format!("many/f{i}")), old_bytes(i)).unwrap();
    }
    let layout = Layout::new(&tmp.path().join("workspaces"), "demo").unwrap();
    let (meta, _) = cleanroom_workspace::prepare_files(
        &layout,
        &project,
        &cleanroom_workspace::excludes::Excludes::none(),
        Vec::new(),
        "native",
        None,
        None,
    )
    .unwrap();
    let f = Fixture {
        tmp,
        project,
        layout,
        meta,
    };
    for i in 0..FILES {
        let rel = format!("many/f{i}");
        let old = Some(old_bytes(i));
        let new = match i % 5 {
            0 => None,
            _ => Some(vec![b'n'; SIZE + 1000 + i]),
        };
        match &new {
            Some(bytes) => fs::write(f.ws(&rel), bytes).unwrap(),
            None => fs::remove_file(f.ws(&rel)).unwrap(),
        }
        versions.insert(rel, [old, new]);
    }
    for i in 0..FILES / 5 {
        let rel = format!("added/d{}/g{i}", i % 4);
        fs::create_dir_all(f.ws(&rel).parent().unwrap()).unwrap();
        fs::write(f.ws(&rel), vec![b'a'; SIZE]).unwrap();
        versions.insert(rel, [None, Some(vec![b'a'; SIZE])]);
    }
    (f, versions)
}

fn child(f: &Fixture) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.stdout(std::process::Stdio::null());
    cmd.args(["--exact", "sync_child", "--nocapture", "--test-threads=1"]);
    let root = f.layout.dir.parent().unwrap();
    cmd.env(CHILD, format!("{}\n{}", root.display(), f.layout.name));
    cmd
}

/// A small deterministic generator (the seed is printed on failure).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn killed_syncs_leave_old_or_new_files_and_finish_next_time() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    // How long a whole sync takes in a child (the quickest of three), to
    // spread the kills over it.
    let mut full = Duration::MAX;
    for _ in 0..3 {
        let (f, _) = busy_fixture();
        let t = Instant::now();
        assert!(child(&f).status().unwrap().success());
        full = full.min(t.elapsed());
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    let mut interrupted = 0;
    let mut mid_apply = 0;
    for round in 0..ROUNDS {
        let (f, versions) = busy_fixture();
        // Every other round aims at the sync's second half, where it
        // changes the project (the first half is mostly starting up).
        let span = full.as_micros() as u64;
        let from = if round % 2 == 0 { 0 } else { span * 3 / 5 };
        let delay = Duration::from_micros(from + rng.next() % (span * 6 / 5 - from + 1));
        let mut proc = child(&f).spawn().unwrap();
        std::thread::sleep(delay);
        // SIGKILL, as kill -9: no chance to clean up.
        let _ = proc.kill();
        let status = proc.wait().unwrap();
        if !status.success() {
            interrupted += 1;
        }
        if f.layout.journal().exists() {
            mid_apply += 1;
        }
        for (rel, [old, new]) in &versions {
            let now = fs::read(f.host(rel)).ok();
            assert!(
                now == *old || now == *new,
                "round {round} (seed {seed}, kill after {delay:?}): {rel} is neither old nor new ({:?} bytes)",
                now.map(|b| b.len())
            );
        }
        // The next sync completes: everything new, no temp files left.
        let report = sync(&f.layout, &f.meta, &SyncOptions::default()).unwrap();
        assert!(report.conflicts.is_empty(), "round {round}: {report:#?}");
        for (rel, [_, new]) in &versions {
            assert_eq!(
                fs::read(f.host(rel)).ok(),
                *new,
                "round {round}: {rel} after the second sync"
            );
        }
        let temps: Vec<String> = contents(&f.project)
            .into_keys()
            .filter(|k| k.ends_with(".cleanroom-tmp"))
            .collect();
        assert!(
            temps.is_empty(),
            "round {round}: temp files left: {temps:?}"
        );
        assert!(!f.layout.journal().exists());
    }
    eprintln!(
        "{interrupted} of {ROUNDS} syncs killed before they finished, {mid_apply} while changing the project (full sync: {full:?})"
    );
    assert!(
        mid_apply >= ROUNDS / 10,
        "too few kills landed while the sync changed files to prove anything"
    );
}
