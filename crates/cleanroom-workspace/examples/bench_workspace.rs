//! The workspace benchmark, side by side in one run: start (snapshot +
//! base commit) against `cp -a` and `git worktree add`; diff after 1,000
//! changed files against `git status` + `git diff --stat`; sync of those
//! files against `rsync -a`. Not a timed test: numbers for the README.
//!
//! `cargo run -p cleanroom-workspace --example bench_workspace [-- FILES MB]`
//! (default 10000 files, 100 MB) in a directory under `$TMPDIR`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom_workspace::changes::changes;
use cleanroom_workspace::excludes::Excludes;
use cleanroom_workspace::history::History;
use cleanroom_workspace::sync::{sync, SyncOptions};
use cleanroom_workspace::{prepare_files, Layout};

const CHANGED: usize = 1000;

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mb: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let project = tmp.path().join("project");
    let size = mb * 1_000_000 / files;
    generate(&project, files, size);
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "-A"]);
    git(
        &project,
        &[
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
    println!("project: {files} files, {} MB, {} bytes each", mb, size);

    // start
    let cp = time(|| run("cp", &["-a", p(&project), p(&tmp.path().join("cp-copy"))]));
    let wt = time(|| {
        git(
            &project,
            &["worktree", "add", "-q", p(&tmp.path().join("worktree"))],
        )
    });
    let layout = Layout::new(&tmp.path().join("ws"), "bench").unwrap();
    let mut meta = None;
    let start = time(|| {
        meta = Some(
            prepare_files(
                &layout,
                &project,
                &Excludes::none(),
                Vec::new(),
                "native",
                None,
                None,
            )
            .unwrap()
            .0,
        )
    });
    let meta = meta.unwrap();
    row(
        "start (snapshot + base commit)",
        start,
        &[("cp -a", cp), ("git worktree add", wt)],
    );

    // diff after CHANGED files changed, on both sides of the comparison
    let tree = layout.tree();
    for i in 0..CHANGED {
        let rel = rel_of(i * (files / CHANGED), files);
        for root in [&tree, &project] {
            let path = root.join(&rel);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(b"a changed line\n");
            std::fs::write(&path, bytes).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let history = History::open(&layout.history(), &tree, &layout.stat_cache()).unwrap();
    let base = history.base().unwrap();
    let mut n = 0;
    let diff = time(|| n = changes(&history, base, &[], false).unwrap().0.files.len());
    assert_eq!(n, CHANGED);
    let git_diff = time(|| {
        git(&project, &["status", "--porcelain"]);
        git(&project, &["diff", "--stat"]);
    });
    row(
        &format!("diff ({CHANGED} changed)"),
        diff,
        &[("git status + git diff --stat", git_diff)],
    );
    let diff_again = time(|| n = changes(&history, base, &[], false).unwrap().0.files.len());
    row("diff again (nothing new)", diff_again, &[]);

    // sync of those files, against rsync of the same tree into a copy
    git(&project, &["checkout", "-q", "--", "."]);
    let rsync_dest = tmp.path().join("cp-copy");
    let synced = time(|| {
        let r = sync(&layout, &meta, &SyncOptions::default()).unwrap();
        assert_eq!(r.applied.len(), CHANGED, "{:?}", r.conflicts.first());
    });
    let rsync = if which("rsync") {
        Some(time(|| {
            run("rsync", &["-a", &format!("{}/", p(&tree)), p(&rsync_dest)])
        }))
    } else {
        eprintln!("rsync is not installed (scripts/setup.d/60-workspace-bench.sh installs it)");
        None
    };
    let others: Vec<(&str, Duration)> = rsync.map(|r| ("rsync -a", r)).into_iter().collect();
    row(&format!("sync ({CHANGED} files)"), synced, &others);
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

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn row(what: &str, ours: Duration, others: &[(&str, Duration)]) {
    let vs: Vec<String> = others
        .iter()
        .map(|(name, d)| format!("{name} {:.0} ms (ratio {:.2})", ms(*d), ms(ours) / ms(*d)))
        .collect();
    println!("| {what} | {:.0} ms | {} |", ms(ours), vs.join(" · "));
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

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .expect("the tool runs");
    assert!(status.success(), "{program} {args:?} failed");
}

fn which(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}
