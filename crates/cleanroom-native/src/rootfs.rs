//! Root filesystems, prepared in the caller: the host's own toolchain with a
//! generated `/etc`, a directory, or a tarball unpacked once into a cache.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use cleanroom_core::image_config::Accounts;
use cleanroom_core::{Error, ImageRun, Removed, Result, RootFs, SandboxSpec, User};

use crate::plan::{check_mountable, RootPlan, TopEntry};

/// What a spec's rootfs becomes.
pub fn plan(spec: &SandboxSpec) -> Result<RootPlan> {
    match &spec.rootfs {
        RootFs::Host => Ok(host(spec)),
        RootFs::Dir(dir) => directory(dir),
        RootFs::Tar(tar) => directory(&unpacked(tar)?),
        RootFs::Image(reference) => {
            // The image's layers merged once into one directory by the store.
            let store = cleanroom_image::Store::open_default()?;
            let image = store.resolve(reference)?;
            directory(&store.rootfs_dir(&image)?)
        }
    }
}

/// `spec` under its image's own config (Env, WorkingDir, User,
/// Entrypoint/Cmd), by the rule of [`cleanroom_core::image_config`]; `spec`
/// as it is for other root filesystems. A named image user is looked up in
/// the image's `/etc/passwd` and `/etc/group`.
pub fn image_run(spec: &SandboxSpec) -> Result<ImageRun> {
    let RootFs::Image(reference) = &spec.rootfs else {
        return Ok(ImageRun::plain(spec));
    };
    let store = cleanroom_image::Store::open_default()?;
    let image = store.resolve(reference)?;
    let config = image.runtime_config();
    let named = config
        .user
        .as_deref()
        .is_some_and(|u| u.parse::<User>().is_err());
    let accounts = if named && spec.user == User::DEFAULT {
        let root = store.rootfs_dir(&image)?;
        let read = |f: &str| std::fs::read_to_string(root.join("etc").join(f)).unwrap_or_default();
        Some(Accounts {
            passwd: read("passwd"),
            group: read("group"),
        })
    } else {
        None
    };
    config.apply(spec, accounts.as_ref())
}

/// Whether `spec`'s rootfs is there to use, without preparing it: for
/// `auto`, which passes over a backend that would fail.
pub fn available(spec: &SandboxSpec) -> std::result::Result<(), String> {
    match &spec.rootfs {
        RootFs::Host => Ok(()),
        RootFs::Dir(dir) if dir.is_dir() => Ok(()),
        RootFs::Dir(dir) => Err(format!("rootfs directory {} does not exist", dir.display())),
        RootFs::Tar(tar) if tar.is_file() => Ok(()),
        RootFs::Tar(tar) => Err(format!("rootfs tarball {} does not exist", tar.display())),
        RootFs::Image(reference) => cleanroom_image::Store::open_default()
            .and_then(|store| store.resolve(reference))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// Host directories the `host` rootfs shows: `/usr`, `/bin`, `/sbin`, `/lib*`.
fn host(spec: &SandboxSpec) -> RootPlan {
    let mut entries = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("lib"))
                .collect()
        })
        .unwrap_or_default();
    names.extend(["usr", "bin", "sbin"].map(String::from));
    names.sort();
    names.dedup();
    for name in names {
        if let Some(e) = top_entry(Path::new("/"), &name) {
            entries.push(e);
        }
    }
    let etc_binds = [
        "/etc/ld.so.cache",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/pki",
        "/etc/alternatives",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .map(|p| {
        let dir = p.is_dir();
        (p, dir)
    })
    .collect();
    RootPlan::Host {
        entries,
        etc_files: etc_files(spec),
        etc_binds,
    }
}

/// The generated `/etc`: the spec's user and nothing of the host's accounts.
fn etc_files(spec: &SandboxSpec) -> Vec<(Cow<'static, str>, Vec<u8>)> {
    let (uid, gid) = (spec.user.uid, spec.user.gid);
    let home = spec.workdir.display();
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!(
            "user:x:{uid}:{gid}:cleanroom user:{home}:/bin/sh\n"
        ));
    }
    if gid != 0 {
        group.push_str(&format!("user:x:{gid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    [
        ("passwd", passwd.into_bytes()),
        ("group", group.into_bytes()),
        ("hosts", hosts.into_bytes()),
        ("hostname", format!("{}\n", spec.hostname).into_bytes()),
        (
            "resolv.conf",
            b"# written by cleanroom: no name servers inside the sandbox\n".to_vec(),
        ),
        (
            "nsswitch.conf",
            b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".to_vec(),
        ),
        ("os-release", os_release()),
    ]
    .into_iter()
    .map(|(name, content)| (Cow::Borrowed(name), content))
    .collect()
}

/// The host's `os-release` (it describes the `/usr` the sandbox runs), read
/// through the host's `/etc` or `/usr/lib`; a generic one when it has none.
/// Test files read it to learn what they run on.
fn os_release() -> Vec<u8> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            // A regular file of sane size only: this is read on every plan.
            (meta.is_file() && meta.len() <= 64 << 10)
                .then(|| std::fs::read(p).ok())
                .flatten()
        })
        .unwrap_or_else(|| b"NAME=Linux\nID=linux\nPRETTY_NAME=\"Linux\"\n".to_vec())
}

fn top_entry(dir: &Path, name: &str) -> Option<TopEntry> {
    let p = dir.join(name);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if meta.file_type().is_symlink() {
        Some(TopEntry::Symlink(
            name.to_string(),
            std::fs::read_link(&p).ok()?,
        ))
    } else if meta.is_dir() {
        Some(TopEntry::Dir(name.to_string()))
    } else if meta.is_file() {
        Some(TopEntry::File(name.to_string()))
    } else {
        None
    }
}

fn directory(dir: &Path) -> Result<RootPlan> {
    let path = std::fs::canonicalize(dir).map_err(|e| {
        Error::io(
            format!("rootfs directory {}: it must exist", dir.display()),
            e,
        )
    })?;
    if !path.is_dir() {
        return Err(Error::InvalidSpec(format!(
            "rootfs {} is not a directory; give file:///DIR or tar:///FILE.tar",
            path.display()
        )));
    }
    check_mountable(&path)?;
    let mut entries = Vec::new();
    let list = std::fs::read_dir(&path)
        .map_err(|e| Error::io(format!("listing rootfs {}", path.display()), e))?;
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(entry) = top_entry(&path, &name) {
            entries.push(entry);
        }
    }
    Ok(RootPlan::Dir {
        path,
        entries,
        tree: None,
        // Settled by the plan once it knows the mount points.
        upper: true,
    })
}

/// Where unpacked rootfs tarballs are kept: `$CLEANROOM_HOME/cache/native-tar`,
/// else `$XDG_CACHE_HOME/cleanroom/native-tar`, else
/// `~/.cache/cleanroom/native-tar`.
pub fn cache_dir() -> PathBuf {
    cleanroom_core::paths::cache_dir("native-tar")
}

/// Prefix of a tarball being unpacked in the cache: `.unpacking-<owner tag>-<key>`.
const UNPACKING: &str = ".unpacking-";

/// The tarball unpacked (once) into the cache; keyed by path, size and mtime.
fn unpacked(tar: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let tar = std::fs::canonicalize(tar).map_err(|e| {
        Error::io(
            format!("rootfs tarball {}: it must exist", tar.display()),
            e,
        )
    })?;
    let meta =
        std::fs::metadata(&tar).map_err(|e| Error::io(format!("reading {}", tar.display()), e))?;
    let key = format!(
        "{}\0{}\0{}.{}",
        tar.display(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let cache = cache_dir();
    // What a killed caller left half-unpacked goes first (one readdir).
    for p in cleanroom_core::owner::sweep(&cache, UNPACKING) {
        tracing::info!("removed {} (its unpacking process is gone)", p.display());
    }
    let name = cleanroom_core::paths::cache_key(key.as_bytes());
    let dest = cache.join(format!("tar-{name}"));
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&cache)
        .map_err(|e| Error::io(format!("creating the rootfs cache {}", cache.display()), e))?;
    let tmp = cache.join(format!(
        "{UNPACKING}{}-{name}",
        cleanroom_core::owner::tag()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    // The image store's unpacker: gzip or zstd, safe paths, no device nodes.
    if let Err(e) = cleanroom_image::unpack_tarball(&tar, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &dest).is_err() {
        // Another caller unpacked the same tarball first: use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dest.is_dir() {
            return Err(Error::backend(
                "native",
                format!(
                    "could not move the unpacked {} into {}",
                    tar.display(),
                    dest.display()
                ),
            ));
        }
    }
    Ok(dest)
}

/// Removes half-unpacked tarballs whose unpacking process is gone.
pub fn gc() -> Vec<Removed> {
    cleanroom_core::owner::sweep(&cache_dir(), UNPACKING)
        .into_iter()
        .map(|p| {
            Removed::one(
                Removed::TEMP,
                format!(
                    "native: removed {} (its unpacking process is gone)",
                    p.display()
                ),
            )
        })
        .collect()
}
