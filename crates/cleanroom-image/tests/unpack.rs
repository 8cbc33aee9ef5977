//! Unpacking: whiteouts in overlayfs form and in the merged rootfs, links
//! kept, device nodes skipped, and crafted archives that try to write
//! outside the target refused with nothing written outside.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cleanroom_image::Store;
use common::{layer, oci_layout, write_tree, E};

/// Imports `layers` as one image through an OCI layout and returns the store and reference.
fn image_of(dir: &Path, layers: Vec<Vec<u8>>) -> (Store, &'static str) {
    let s = Store::open(dir.join("store")).unwrap();
    let d = dir.join("layout");
    let _ = fs::remove_dir_all(&d);
    write_tree(&d, &oci_layout(&layers, "t", None));
    s.import(d.to_str().unwrap(), Some("img:t")).unwrap();
    (s, "img:t")
}

fn three_layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            E::Dir("a", 0o755),
            E::File("a/x", b"x", 0o644),
            E::File("a/y", b"y", 0o644),
            E::Dir("d", 0o755),
            E::File("d/old", b"old", 0o644),
            E::Dir("d/sub", 0o755),
            E::File("d/sub/deep", b"deep", 0o644),
            E::File("keep", b"keep", 0o600),
            E::Hardlink("keep2", "keep"),
            E::Dir("ro", 0o555),
            E::File("ro/f", b"r", 0o444),
        ]),
        layer(&[
            E::File("a/.wh.x", b"", 0o644),
            E::File("d/.wh..wh..opq", b"", 0o644),
            E::File("d/new", b"new", 0o644),
            E::Symlink("lnk", "a/y"),
            E::CharDev("dev/null", 1, 3),
        ]),
        layer(&[
            E::File("a/x", b"back", 0o644),
            E::File(".wh.lnk", b"", 0o644),
        ]),
    ]
}

#[test]
fn whiteouts_links_and_devices_in_the_merged_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, r) = image_of(tmp.path(), three_layers());
    let img = s.resolve(r).unwrap();
    let root = s.rootfs_dir(&img).unwrap();
    assert_eq!(
        fs::read(root.join("a/x")).unwrap(),
        b"back",
        "re-added above its whiteout"
    );
    assert_eq!(fs::read(root.join("a/y")).unwrap(), b"y");
    assert_eq!(fs::read(root.join("d/new")).unwrap(), b"new");
    assert!(
        !root.join("d/old").exists() && !root.join("d/sub").exists(),
        "opaque dir hides lower content"
    );
    assert!(
        fs::symlink_metadata(root.join("lnk")).is_err(),
        "symlink whited out by the top layer"
    );
    assert_eq!(
        fs::metadata(root.join("keep")).unwrap().ino(),
        fs::metadata(root.join("keep2")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(root.join("keep")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(!root.join("dev/null").exists(), "device nodes are skipped");
    // Without root the owner keeps write permission on directories, so the
    // user can remove what it unpacked.
    let ro = if rustix::process::geteuid().is_root() {
        0o555
    } else {
        0o755
    };
    assert_eq!(fs::metadata(root.join("ro")).unwrap().mode() & 0o777, ro);
    // Second call reuses the directory.
    assert_eq!(s.rootfs_dir(&img).unwrap(), root);
    // And gc can remove read-only trees.
    s.remove(r).unwrap();
    assert!(!root.exists());
}

#[test]
fn layer_dirs_are_overlayfs_lower_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, r) = image_of(tmp.path(), three_layers());
    let img = s.resolve(r).unwrap();
    let layers = s.unpack_layers(&img).unwrap();
    assert_eq!(layers.len(), 3);
    let l1 = &layers[1];
    assert_eq!(l1.meta.whiteouts, ["a/x"]);
    assert_eq!(l1.meta.opaque_dirs, ["d"]);
    assert!(
        l1.meta.notes.iter().any(|n| n.contains("/dev/null")),
        "{:?}",
        l1.meta.notes
    );
    assert!(l1.meta.overlay_ready, "whiteout devices can be made here");
    let wh = fs::symlink_metadata(l1.dir.join("a/x")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert!(!l1.dir.join("d/.wh..wh..opq").exists());
    let attr = if rustix::process::geteuid().is_root() {
        "trusted.overlay.opaque"
    } else {
        "user.overlay.opaque"
    };
    let mut buf = [0u8; 4];
    let n = rustix::fs::lgetxattr(l1.dir.join("d"), attr, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    let dirs = s.layer_dirs(&img).unwrap();
    assert_eq!(
        dirs,
        layers
            .iter()
            .map(|l| l.dir.clone())
            .collect::<Vec<PathBuf>>()
    );
    assert!(dirs.iter().all(|d| d.starts_with(s.root().join("layers"))));
    // Unpacked once: a second image sharing the base layer reuses it.
    let before = fs::metadata(&dirs[0]).unwrap().ino();
    let d2 = tmp.path().join("layout2");
    let mut two = three_layers();
    two.truncate(1);
    two.push(layer(&[E::File("other", b"o", 0o644)]));
    write_tree(&d2, &oci_layout(&two, "t", None));
    s.import(d2.to_str().unwrap(), Some("img2")).unwrap();
    let dirs2 = s.layer_dirs(&s.resolve("img2").unwrap()).unwrap();
    assert_eq!(dirs2[0], dirs[0]);
    assert_eq!(fs::metadata(&dirs2[0]).unwrap().ino(), before);
}

/// A target and a sibling "outside" directory; returns (store dir, outside dir).
fn arena(tmp: &Path) -> (PathBuf, PathBuf) {
    let outside = tmp.join("outside");
    fs::create_dir_all(&outside).unwrap();
    (tmp.join("arena"), outside)
}

fn assert_refused(entries: Vec<Vec<u8>>, outside: &Path, arena: &Path, expect: &str) {
    fs::create_dir_all(arena).unwrap();
    let (s, r) = image_of(arena, entries);
    let img = s.resolve(r).unwrap();
    let e = s.rootfs_dir(&img).unwrap_err().to_string();
    assert!(
        e.contains("refusing to unpack") && e.contains(expect),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    for leaked in ["evil", "store/evil", "store/layers/evil", "store/tmp/evil"] {
        assert!(!arena.join(leaked).exists(), "{leaked} written");
    }
    assert_eq!(
        s.root().join("layers").read_dir().unwrap().count(),
        0,
        "no layer left"
    );
    assert!(!Path::new("/abs/evil").exists());
}

#[test]
fn dot_dot_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (arena, outside) = arena(tmp.path());
    for name in ["../evil", "a/../../evil", "../../../../outside/evil"] {
        let l = layer(&[E::Dir("a", 0o755), E::File(name, b"pwned", 0o644)]);
        assert_refused(
            vec![l],
            &outside,
            &arena.join(name.replace('/', "_")),
            "`..`",
        );
    }
}

#[test]
fn absolute_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (arena, outside) = arena(tmp.path());
    let abs = format!("{}/evil", outside.display());
    let l = layer(&[E::File(&abs, b"pwned", 0o644)]);
    assert_refused(vec![l], &outside, &arena, "absolute");
    let l = layer(&[E::File("/abs/evil", b"pwned", 0o644)]);
    assert_refused(vec![l], &outside, &arena.join("2"), "absolute");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (arena, outside) = arena(tmp.path());
    let target = outside.display().to_string();
    let l = layer(&[
        E::Symlink("link", &target),
        E::File("link/evil", b"pwned", 0o644),
    ]);
    assert_refused(vec![l], &outside, &arena, "symlink `link`");
    // The same across layers: a symlink below, a file through it above.
    let l1 = layer(&[E::Symlink("link", &target)]);
    let l2 = layer(&[E::File("link/evil", b"pwned", 0o644)]);
    fs::create_dir_all(arena.join("2")).unwrap();
    let (s, r) = image_of(&arena.join("2"), vec![l1, l2]);
    let img = s.resolve(r).unwrap();
    // Per layer, `link` is a plain directory in the upper layer; merged, the
    // directory replaces the symlink (as overlayfs shows it). Either way
    // nothing reaches the outside.
    let root = s.rootfs_dir(&img).unwrap();
    assert!(fs::symlink_metadata(root.join("link")).unwrap().is_dir());
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    // Relative symlink climbing out, then a file through it.
    let l = layer(&[
        E::Symlink("up", "../../../.."),
        E::File("up/evil", b"pwned", 0o644),
    ]);
    assert_refused(vec![l], &outside, &arena.join("3"), "symlink `up`");
}

#[test]
fn hard_links_out_of_the_image_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (arena, outside) = arena(tmp.path());
    let passwd_before = fs::read("/etc/passwd").unwrap();
    let l = layer(&[E::Hardlink("passwd", "/etc/passwd")]);
    assert_refused(vec![l], &outside, &arena, "hard link");
    let l = layer(&[E::Hardlink("passwd", "../../../../../../etc/passwd")]);
    assert_refused(vec![l], &outside, &arena.join("2"), "hard link");
    // Through a symlink to /etc.
    let l = layer(&[
        E::Symlink("etc", "/etc"),
        E::Hardlink("passwd", "etc/passwd"),
    ]);
    assert_refused(vec![l], &outside, &arena.join("3"), "hard link");
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_before);
    // A hard link to a symlink is the symlink itself, not its target.
    let target = format!("{}/victim", outside.display());
    fs::write(&target, "safe").unwrap();
    let l = layer(&[
        E::Symlink("s", &target),
        E::Hardlink("h", "s"),
        E::File("h", b"pwned", 0o644),
    ]);
    fs::create_dir_all(arena.join("4")).unwrap();
    let (s, r) = image_of(&arena.join("4"), vec![l]);
    s.rootfs_dir(&s.resolve(r).unwrap()).unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "safe");
}

#[test]
fn a_file_replacing_a_symlink_does_not_follow_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (arena, outside) = arena(tmp.path());
    let target = format!("{}/victim", outside.display());
    fs::write(&target, "safe").unwrap();
    let l = layer(&[E::Symlink("f", &target), E::File("f", b"pwned", 0o644)]);
    fs::create_dir_all(&arena).unwrap();
    let (s, r) = image_of(&arena, vec![l]);
    let root = s.rootfs_dir(&s.resolve(r).unwrap()).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"pwned");
    assert_eq!(fs::read_to_string(&target).unwrap(), "safe");
    // Across layers too (symlink below, file above).
    let l1 = layer(&[E::Symlink("g", &target)]);
    let l2 = layer(&[E::File("g", b"pwned", 0o644)]);
    fs::create_dir_all(arena.join("2")).unwrap();
    let (s, r) = image_of(&arena.join("2"), vec![l1, l2]);
    s.rootfs_dir(&s.resolve(r).unwrap()).unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "safe");
}

fn listing(root: &Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .arg(".")
        .current_dir(root)
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// The layer directories stacked by the real overlayfs show exactly what the
/// merged rootfs holds (in a private mount namespace, so nothing leaks).
#[test]
fn overlayfs_of_the_layer_dirs_equals_the_merged_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, r) = image_of(tmp.path(), three_layers());
    let img = s.resolve(r).unwrap();
    let merged = s.rootfs_dir(&img).unwrap();
    let mut dirs = s.layer_dirs(&img).unwrap();
    dirs.reverse(); // overlayfs lists the top layer first
    let lower: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let root = rustix::process::geteuid().is_root();
    let opts = format!(
        "{}lowerdir={}",
        if root { "" } else { "userxattr," },
        lower.join(":")
    );
    let script = format!(
        "mount -t overlay overlay -o {opts} {m} && cd {m} && find . | sort && echo --- && cat a/x",
        m = mnt.display()
    );
    let mut cmd = std::process::Command::new("unshare");
    if !root {
        cmd.arg("--map-root-user");
    }
    let out = cmd
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("running unshare (util-linux)");
    assert!(
        out.status.success(),
        "mounting the layer dirs as overlayfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (list, cat) = text.split_once("---\n").unwrap();
    let mut seen: Vec<String> = list.lines().map(str::to_owned).collect();
    seen.sort();
    assert_eq!(seen, listing(&merged));
    assert_eq!(cat, "back");
}

/// Small files are written on worker threads (`writer.rs`): entries of one
/// layer that touch the same path still apply in archive order, a hard link
/// finds its target written, a file over 1 MiB (written in line) is whole,
/// and the seal taken from the workers' hashes matches the tree.
#[test]
fn files_written_on_workers_keep_the_archive_order() {
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("many/d{}/f{i}", i % 7)).collect();
    let bodies: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("body {i}").repeat(i).into_bytes())
        .collect();
    let big: Vec<u8> = (0..(3 << 20) / 4)
        .flat_map(|i: u32| i.to_le_bytes())
        .collect();
    let mut entries = vec![
        E::File("dup", b"first", 0o644),
        E::File("dup", b"second", 0o644),
        E::File("t", b"target", 0o644),
        E::Hardlink("h", "t"),
        E::File("x", b"a file first", 0o644),
        E::Dir("x", 0o755),
        E::File("x/in", b"in", 0o644),
        E::Dir("y", 0o755),
        E::File("y/z", b"z", 0o644),
        E::Symlink("y", "t"),
        E::File("big", &big, 0o644),
    ];
    for (n, b) in names.iter().zip(&bodies) {
        entries.push(E::File(n, b, 0o640));
    }
    let (s, r) = image_of(tmp.path(), vec![layer(&entries)]);
    let root = s.rootfs_dir(&s.resolve(r).unwrap()).unwrap();
    assert_eq!(fs::read(root.join("dup")).unwrap(), b"second");
    assert_eq!(fs::read(root.join("h")).unwrap(), b"target");
    let (t, h) = (
        fs::metadata(root.join("t")).unwrap(),
        fs::metadata(root.join("h")).unwrap(),
    );
    assert_eq!(
        (t.dev(), t.ino()),
        (h.dev(), h.ino()),
        "h is a hard link of t"
    );
    assert!(root.join("x").is_dir());
    assert_eq!(fs::read(root.join("x/in")).unwrap(), b"in");
    assert_eq!(fs::read_link(root.join("y")).unwrap(), Path::new("t"));
    assert_eq!(fs::read(root.join("big")).unwrap(), big);
    for (n, b) in names.iter().zip(&bodies) {
        assert_eq!(&fs::read(root.join(n)).unwrap(), b, "{n}");
        let mode = fs::metadata(root.join(n)).unwrap().mode() & 0o7777;
        assert!(mode & 0o640 == 0o640, "{n}: mode {mode:o}");
    }
    assert!(
        s.verify(false).unwrap().is_ok(),
        "the seal matches the tree"
    );
    // A flipped byte in a worker-written file shows in the full check.
    fs::write(root.join(&names[299]), b"changed").unwrap();
    assert!(!s.verify(false).unwrap().is_ok());
}
