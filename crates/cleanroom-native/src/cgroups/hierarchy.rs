//! Where the cgroup hierarchies are and where this process sits in them,
//! from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One mounted hierarchy and this process's cgroup in it.
#[derive(Clone, Debug)]
pub(crate) struct Hierarchy {
    /// Where the hierarchy is mounted.
    pub mount: PathBuf,
    /// This process's cgroup directory: new cgroups go below it. For v2, the
    /// parent of the leaf this process may have moved itself into (see
    /// [`leaf_name`]).
    pub base: PathBuf,
    /// v1: the controllers the hierarchy carries (from the mount options).
    /// v2: empty (read `cgroup.controllers` of `base` instead).
    pub controllers: Vec<String>,
}

/// Every hierarchy this process can see.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// cgroup v1 hierarchies with at least one controller.
    pub v1: Vec<Hierarchy>,
    /// The cgroup v2 (unified) hierarchy, if mounted.
    pub v2: Option<Hierarchy>,
}

impl Layout {
    /// The v1 hierarchy carrying `controller`, if any.
    pub fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// Every hierarchy, v1 then v2.
    pub fn all(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v1.iter().chain(self.v2.iter())
    }
}

/// The layout, discovered once per process (mounts and our own cgroup do
/// not change under us; moving into our own leaf keeps `base`).
pub(crate) fn layout() -> Result<&'static Layout, String> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| discover().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The name of the leaf a v2 caller moves itself into when its own cgroup
/// must become an inner node (the "no internal processes" rule).
pub(crate) fn leaf_name(pid: u32) -> String {
    format!("cleanroom-{pid}-self")
}

/// Reads the mount table and our cgroup membership.
pub(crate) fn discover() -> io::Result<Layout> {
    let mountinfo = read("/proc/self/mountinfo")?;
    let membership = read("/proc/self/cgroup")?;
    Ok(parse(&mountinfo, &membership, std::process::id()))
}

/// Builds the layout from the text of `/proc/self/mountinfo` and
/// `/proc/self/cgroup` (separate for unit tests).
pub(crate) fn parse(mountinfo: &str, membership: &str, pid: u32) -> Layout {
    // (hierarchy controllers, path) from /proc/self/cgroup; v2 is "0::path".
    let mut v2_path: Option<&str> = None;
    let mut v1_paths: Vec<(Vec<&str>, &str)> = Vec::new();
    for (id, ctls, path) in memberships(membership) {
        if id == "0" && ctls.is_empty() {
            v2_path = Some(path);
        } else if !ctls.is_empty() {
            v1_paths.push((ctls.split(',').collect(), path));
        }
    }

    let mut layout = Layout::default();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let root = unescape(left[3]);
        let mount = PathBuf::from(unescape(left[4]));
        match right[0] {
            "cgroup2" => {
                if layout.v2.is_some() {
                    continue;
                }
                let Some(path) = v2_path else { continue };
                let Some(mut base) = own_dir(&mount, &root, path) else {
                    continue;
                };
                if base.file_name().and_then(|n| n.to_str()) == Some(leaf_name(pid).as_str()) {
                    base.pop();
                }
                layout.v2 = Some(Hierarchy {
                    mount,
                    base,
                    controllers: Vec::new(),
                });
            }
            "cgroup" => {
                let controllers: Vec<String> = right[2]
                    .split(',')
                    .filter(|o| is_controller(o))
                    .map(str::to_string)
                    .collect();
                let Some(first) = controllers.first() else {
                    continue;
                };
                if layout.v1_with(first).is_some() {
                    continue; // a second mount of the same hierarchy
                }
                let Some((_, path)) = v1_paths.iter().find(|(c, _)| c.contains(&first.as_str()))
                else {
                    continue;
                };
                let Some(base) = own_dir(&mount, &root, path) else {
                    continue;
                };
                layout.v1.push(Hierarchy {
                    mount,
                    base,
                    controllers,
                });
            }
            _ => {}
        }
    }
    layout
}

/// The lines of `/proc/self/cgroup` as (hierarchy id, controllers, path);
/// v2's is `("0", "", path)`.
fn memberships(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        Some((parts.next()?, parts.next()?, parts.next()?))
    })
}

/// A v1 mount option that names a controller (not `rw`, `name=...`, ...).
fn is_controller(option: &str) -> bool {
    const CONTROLLERS: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    CONTROLLERS.contains(&option)
}

/// The directory of cgroup `path` under a mount of hierarchy root `root`,
/// or `None` when the cgroup is not visible through that mount.
fn own_dir(mount: &Path, root: &str, path: &str) -> Option<PathBuf> {
    let rel = if root == "/" {
        path.strip_prefix('/')?
    } else {
        let rest = path.strip_prefix(root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest.trim_start_matches('/')
    };
    if rel.split('/').any(|c| c == "..") {
        return None; // outside our cgroup namespace
    }
    Some(if rel.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(rel)
    })
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(octal) {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A controller's hierarchy as [`quick`] found it.
#[derive(Clone, Debug)]
pub(crate) enum Quick {
    /// A v1 hierarchy that carries the controller.
    V1(Hierarchy),
    /// No v1 hierarchy carries it: the v2 hierarchy.
    V2(Hierarchy),
}

/// Where systemd, and so nearly every machine, mounts the hierarchies.
const STANDARD: &str = "/sys/fs/cgroup";

/// `statfs` types of cgroup v1 and v2 mounts (`CGROUP_SUPER_MAGIC`,
/// `CGROUP2_SUPER_MAGIC`), as one integer type on every target.
const CGROUP_V1_MAGIC: i64 = 0x0027_e0eb;
const CGROUP_V2_MAGIC: i64 = 0x6367_7270;

/// The hierarchy that carries `controller` in v1, else the v2 one, found
/// from `/proc/self/cgroup` alone when it is mounted where systemd mounts
/// it (v1 at `/sys/fs/cgroup/<its controllers>`, v2 at `/sys/fs/cgroup` or
/// `/sys/fs/cgroup/unified`), checked with `statfs`, and our own cgroup
/// there lists this process (so the mount shows the hierarchy from its
/// root, as the mount table would have said). `None` when anything
/// differs; then [`layout`] reads the mount table. Reading it is slow
/// (0.05 ms of 0.08 here, more with many mounts) and, worse, waits for the
/// kernel's mount lock, which the mount namespace of a sandbox that just
/// ended, still being torn down, or the init of one starting, may hold:
/// a `--memory` run right after another took 0.45 ms longer with it.
pub(crate) fn quick(controller: &str) -> Option<Quick> {
    let membership = read("/proc/self/cgroup").ok()?;
    let pid = std::process::id();
    let mut v2_path = None;
    for (id, list, path) in memberships(&membership) {
        if id == "0" && list.is_empty() {
            v2_path = Some(path);
            continue;
        }
        if !list.split(',').any(|c| c == controller) {
            continue;
        }
        let mount = Path::new(STANDARD).join(list);
        let base = own_dir(&mount, "/", path)?;
        if !is_fs(&mount, CGROUP_V1_MAGIC) || !lists(&base, pid) {
            return None;
        }
        let controllers = list
            .split(',')
            .filter(|c| is_controller(c))
            .map(str::to_string)
            .collect();
        return Some(Quick::V1(Hierarchy {
            mount,
            base,
            controllers,
        }));
    }
    quick_v2_at(v2_path?, pid).map(Quick::V2)
}

/// The v2 hierarchy as [`quick`] finds it, or `None` (then [`layout`]).
pub(crate) fn quick_v2() -> Option<Hierarchy> {
    let membership = read("/proc/self/cgroup").ok()?;
    let (_, _, path) =
        memberships(&membership).find(|(id, list, _)| *id == "0" && list.is_empty())?;
    quick_v2_at(path, std::process::id())
}

/// The v2 hierarchy where this process is in cgroup `path`.
fn quick_v2_at(path: &str, pid: u32) -> Option<Hierarchy> {
    let mount = [PathBuf::from(STANDARD), Path::new(STANDARD).join("unified")]
        .into_iter()
        .find(|m| is_fs(m, CGROUP_V2_MAGIC))?;
    let mut base = own_dir(&mount, "/", path)?;
    if !lists(&base, pid) {
        return None;
    }
    if base.file_name().and_then(|n| n.to_str()) == Some(leaf_name(pid).as_str()) {
        base.pop();
    }
    Some(Hierarchy {
        mount,
        base,
        controllers: Vec::new(),
    })
}

/// Whether `path` is the root of a filesystem of type `magic` (a cgroup
/// mount's directory is one of that type; a subdirectory would be too, but
/// [`quick`] only asks about mount points).
fn is_fs(path: &Path, magic: i64) -> bool {
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type as i64 == magic)
}

/// Whether cgroup directory `dir` lists process `pid`.
fn lists(dir: &Path, pid: u32) -> bool {
    let Ok(procs) = read(dir.join("cgroup.procs")) else {
        return false;
    };
    let pid = pid.to_string();
    procs.lines().any(|l| l == pid)
}

/// Reads a whole file, naming it in the error. A buffer of a usual
/// mountinfo's size (see [`crate::proc_stat::read_sized`]): two `read`
/// calls where growing from 32 bytes took eight.
pub(crate) fn read(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    crate::proc_stat::read_sized(path, 16 * 1024)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}

/// Whether this process may write `path` (`access(2)` with `W_OK`, which
/// also sees read-only mounts).
pub(crate) fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
1:cpu:/
0::/
";

    #[test]
    fn hybrid_layout() {
        let l = parse(MOUNTINFO, CGROUP, 7);
        let mem = l.v1_with("memory").unwrap();
        assert_eq!(mem.base, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(
            l.v1_with("cpu").unwrap().base,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert!(
            l.v1_with("cpuacct").is_none(),
            "no membership line for cpuacct"
        );
        let v2 = l.v2.unwrap();
        assert_eq!(v2.base, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unified_layout_with_our_leaf() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/user.slice/run-1.scope/cleanroom-42-self\n";
        let l = parse(mi, cg, 42);
        assert!(l.v1.is_empty());
        assert_eq!(
            l.v2.unwrap().base,
            Path::new("/sys/fs/cgroup/user.slice/run-1.scope")
        );
        // Someone else's leaf is not ours to step out of.
        let l = parse(mi, cg, 43);
        assert!(l.v2.unwrap().base.ends_with("cleanroom-42-self"));
    }

    #[test]
    fn mount_roots_and_escapes() {
        let mi = "30 23 0:26 /a\\040b /mnt/cg\\040x rw - cgroup2 cgroup2 rw\n";
        let l = parse(mi, "0::/a b/c\n", 1);
        assert_eq!(l.v2.unwrap().base, Path::new("/mnt/cg x/c"));
        let l = parse(mi, "0::/elsewhere\n", 1);
        assert!(l.v2.is_none());
        let l = parse(mi, "0::/a bc\n", 1);
        assert!(l.v2.is_none(), "a prefix that is not a path component");
    }

    /// On this machine, for real: wherever the quick lookup answers, it
    /// answers what the mount table says.
    #[test]
    fn quick_agrees_with_the_mount_table() {
        let full = discover().expect("read the mount table");
        for controller in ["memory", "cpu", "pids"] {
            let (quick, full) = match quick(controller) {
                Some(Quick::V1(q)) => (q, full.v1_with(controller).cloned()),
                Some(Quick::V2(q)) => (q, full.v2.clone()),
                None => continue,
            };
            let full =
                full.unwrap_or_else(|| panic!("{controller}: only the quick lookup found it"));
            assert_eq!(quick.mount, full.mount, "{controller}");
            assert_eq!(quick.base, full.base, "{controller}");
            assert_eq!(quick.controllers, full.controllers, "{controller}");
        }
    }
}
