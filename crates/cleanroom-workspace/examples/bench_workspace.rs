//! The workspace benchmark: each measure against its anchor, paired, as
//! whole processes, in one run. Each round times ours and the anchor one
//! after the other, the order swapped every round (A B, B A, ...), with
//! the page cache warm and dirty data written back (`sync`) before each
//! timing; the table gives medians and the ratio of medians.
//!
//! - start (snapshot + base commit) against `cp -a` of the same tree and
//!   `git worktree add` of it;
//! - diff after 1,000 changed files against `git status` + `git diff
//!   --stat` in a real repository with the same change;
//! - sync of 1,000 changed files against `rsync -a` of the same tree.
//!
//! `cargo run --release -p cleanroom-workspace --example bench_workspace
//! [-- FILES MB ROUNDS]` (default 10000 files, 100 MB, 6 rounds) in a
//! directory under `$TMPDIR`. Not a timed test: numbers for the README.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom_workspace::changes::changes;
use cleanroom_workspace::excludes::Excludes;
use cleanroom_workspace::history::History;
use cleanroom_workspace::sync::{sync, SyncOptions};
use cleanroom_workspace::{prepare_files, Layout};

const CHANGED: usize = 1000;
const NAME: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // One operation, as its own process (what the parent times).
        Some("op-start") => return op_start(Path::new(&args[1]), Path::new(&args[2])),
        Some("op-diff") => return op_diff(Path::new(&args[1]), args[2].parse().unwrap()),
        Some("op-sync") => return op_sync(Path::new(&args[1]), args[2].parse().unwrap()),
        // For profiling one operation by hand.
        Some("op-generate") => {
            let (files, mb): (usize, usize) = (args[2].parse().unwrap(), args[3].parse().unwrap());
            return generate(Path::new(&args[1]), files, mb * 1_000_000 / files);
        }
        Some("op-change") => {
            let root = PathBuf::from(&args[1]);
            return change_files(&[&root], args[2].parse().unwrap(), args[3].parse().unwrap());
        }
        _ => {}
    }
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (files, mb, rounds) = (num(0, 10_000), num(1, 100), num(2, 6));
    let tmp = tempfile::tempdir().expect("a temp dir");
    let project = tmp.path().join("project");
    let size = mb * 1_000_000 / files;
    generate(&project, files, size);
    // The repository's objects live outside the project (`.git` is a
    // one-line file), so that `cp -a` copies what the snapshot copies.
    let git_dir = tmp.path().join("project.git");
    git(
        &project,
        &[
            "init",
            "-q",
            "-b",
            "main",
            "--separate-git-dir",
            p(&git_dir),
        ],
    );
    git(&project, &["add", "-A"]);
    git(
        &project,
        &[
            "-c",
            "gc.auto=0",
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-q",
            "-m",
            "base",
        ],
    );
    // Packed, as a cloned repository is (and no `gc --auto` mid-run).
    git(&project, &["gc", "-q"]);
    git(&project, &["config", "gc.auto", "0"]);
    println!("project: {files} files, {mb} MB, {size} bytes each; {rounds} paired rounds");
    let me = std::env::current_exe().expect("the bench binary");
    let ws_root = tmp.path().join("ws");

    // start
    let (cp_dir, wt_dir) = (tmp.path().join("cp-copy"), tmp.path().join("worktree"));
    let mut t = Timings::new(&["workspace start", "cp -a", "git worktree add"]);
    for round in 0..rounds {
        let _ = std::fs::remove_dir_all(&ws_root);
        let _ = std::fs::remove_dir_all(&cp_dir);
        let _ = std::fs::remove_dir_all(&wt_dir);
        git(&project, &["worktree", "prune"]);
        let _ = Command::new("git")
            .args(["-C", p(&project), "branch", "-q", "-D", "worktree"])
            .output();
        // Removing 30,000 files leaves the file system busy for a while:
        // whichever command came first paid for it.
        run(Path::new("sync"), &[]);
        std::thread::sleep(Duration::from_secs(2));
        t.round(round, |which| match which {
            0 => run(&me, &["op-start", p(&project), p(&ws_root)]),
            1 => run(Path::new("cp"), &["-a", p(&project), p(&cp_dir)]),
            _ => run(
                Path::new("git"),
                &["-C", p(&project), "worktree", "add", "-q", p(&wt_dir)],
            ),
        });
    }
    t.print("start (snapshot + base commit)");

    // diff: each round changes the same 1,000 files again, in the
    // workspace and in the repository alike.
    let tree = Layout::new(&ws_root, NAME).unwrap().tree();
    let mut t = Timings::new(&["workspace diff", "git status + git diff --stat"]);
    let mut again = Timings::new(&["workspace diff again", "git status + git diff --stat again"]);
    for round in 0..rounds {
        change_files(&[&tree, &project], files, round);
        t.round(round, |which| match which {
            0 => run(&me, &["op-diff", p(&ws_root), &CHANGED.to_string()]),
            _ => git_status_and_diff(&project),
        });
        again.round(round, |which| match which {
            0 => run(&me, &["op-diff", p(&ws_root), &CHANGED.to_string()]),
            _ => git_status_and_diff(&project),
        });
    }
    t.print(&format!("diff ({CHANGED} changed files)"));
    again.print("diff again (nothing new)");

    // sync: the project back at the base, then each round changes the
    // same 1,000 files in the workspace and syncs them; rsync copies the
    // workspace into a copy of the project.
    git(&project, &["checkout", "-q", "--", "."]);
    let _ = std::fs::remove_dir_all(&cp_dir);
    run(Path::new("cp"), &["-a", p(&project), p(&cp_dir)]);
    if !which("rsync") {
        eprintln!("rsync is not installed (scripts/setup.d/60-workspace-bench.sh installs it)");
        return;
    }
    let mut t = Timings::new(&["workspace sync", "rsync -a"]);
    for round in 0..rounds {
        if round > 0 {
            change_files(&[&tree], files, rounds + round);
        }
        t.round(round, |which| match which {
            0 => run(&me, &["op-sync", p(&ws_root), &CHANGED.to_string()]),
            _ => run(
                Path::new("rsync"),
                &["-a", &format!("{}/", p(&tree)), p(&cp_dir)],
            ),
        });
    }
    t.print(&format!("sync ({CHANGED} changed files)"));
}

fn op_start(project: &Path, ws_root: &Path) {
    let layout = Layout::new(ws_root, NAME).unwrap();
    prepare_files(
        &layout,
        project,
        &Excludes::none(),
        Vec::new(),
        "native",
        None,
        None,
    )
    .unwrap();
}

fn op_diff(ws_root: &Path, expected: usize) {
    let layout = Layout::new(ws_root, NAME).unwrap();
    let history = History::open(&layout.history(), &layout.tree(), &layout.stat_cache()).unwrap();
    let base = history.base().unwrap();
    let n = changes(&history, base, &[], false).unwrap().0.files.len();
    assert_eq!(n, expected);
}

fn op_sync(ws_root: &Path, expected: usize) {
    let layout = Layout::new(ws_root, NAME).unwrap();
    let meta = layout.read_meta().unwrap();
    let r = sync(&layout, &meta, &SyncOptions::default()).unwrap();
    assert_eq!(r.applied.len(), expected, "{:?}", r.conflicts.first());
}

/// Paired timings of a few commands, by name.
struct Timings {
    names: Vec<&'static str>,
    samples: Vec<Vec<Duration>>,
}

impl Timings {
    fn new(names: &[&'static str]) -> Timings {
        Timings {
            names: names.to_vec(),
            samples: vec![Vec::new(); names.len()],
        }
    }

    /// Times each command once, forwards on even rounds, backwards on odd
    /// ones, dirty data written back before each.
    fn round(&mut self, round: usize, mut command: impl FnMut(usize)) {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            run(Path::new("sync"), &[]);
            let started = Instant::now();
            command(which);
            self.samples[which].push(started.elapsed());
        }
    }

    fn print(&self, what: &str) {
        let ours = median(&self.samples[0]);
        let mut line = format!("| {what} | {:.0} ms |", ms(ours));
        for (name, samples) in self.names.iter().zip(&self.samples).skip(1) {
            let theirs = median(samples);
            line += &format!(
                " {name} {:.0} ms (ratio {:.2}) |",
                ms(theirs),
                ms(ours) / ms(theirs)
            );
        }
        println!("{line}");
        for (name, samples) in self.names.iter().zip(&self.samples) {
            let all: Vec<String> = samples.iter().map(|d| format!("{:.0}", ms(*d))).collect();
            println!("    {name}: {} ms", all.join(" "));
        }
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn git_status_and_diff(repo: &Path) {
    run(Path::new("git"), &["-C", p(repo), "status", "--porcelain"]);
    run(Path::new("git"), &["-C", p(repo), "diff", "--stat"]);
}

/// Appends a line to the same `CHANGED` files under each of `roots`.
fn change_files(roots: &[&PathBuf], files: usize, round: usize) {
    for i in 0..CHANGED {
        let rel = rel_of(i * (files / CHANGED), files);
        for root in roots {
            let path = root.join(&rel);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(format!("a changed line, round {round}\n").as_bytes());
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

fn generate(root: &Path, files: usize, size: usize) {
    let mut seed: u64 = 0x2545F4914F6CDD1D;
    for i in 0..files {
        let path = root.join(rel_of(i, files));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = Vec::with_capacity(size);
        while text.len() < size {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let word = (seed % 8 + 2) as usize;
            text.extend((0..word).map(|k| b'a' + ((seed >> (k * 5)) % 26) as u8));
            text.push(if seed % 11 == 0 { b'\n' } else { b' ' });
        }
        text.truncate(size);
        std::fs::write(path, text).unwrap();
    }
}

fn rel_of(i: usize, files: usize) -> String {
    let per_dir = 100.min(files);
    format!("d{:03}/f{:05}.txt", i / per_dir, i)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `program` to its end, its output discarded; a failure stops the bench.
fn run(program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("the tool runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}
