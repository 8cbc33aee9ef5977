//! A busybox root filesystem for tests, built once per test process from the
//! host's static busybox (scripts/setup.d installs busybox-static).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `<tmp>/cleanroom-native-busybox-<pid>/root`: `/bin/busybox` with a
/// relative symlink per applet, `/etc/marker`, empty `/proc`, `/dev`, `/tmp`.
pub fn busybox_rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("busybox is needed for the busybox rootfs tests (install busybox-static)");
        let base =
            std::env::temp_dir().join(format!("cleanroom-native-busybox-{}", std::process::id()));
        // Leftovers of earlier test processes that are gone.
        for e in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("cleanroom-native-busybox-")
                .or_else(|| name.strip_prefix("cleanroom-native-home-"))
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let root = base.join("root");
        let _ = std::fs::remove_dir_all(&base);
        for d in ["bin", "etc", "proc", "dev", "tmp", "root"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let list = std::process::Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.contains('/') {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        std::fs::write(root.join("etc/marker"), "busybox-rootfs\n").unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        // World-readable so a rootless test user can use it too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        root
    })
}

/// The rootfs packed into a tarball next to it.
#[allow(dead_code)] // used by some of the test binaries that include this module
pub fn busybox_tarball() -> PathBuf {
    let root = busybox_rootfs();
    let tar = root.with_file_name("root.tar");
    if !tar.exists() {
        let file = std::fs::File::create(&tar).unwrap();
        let mut b = tar::Builder::new(file);
        b.follow_symlinks(false);
        b.append_dir_all(".", root).unwrap();
        b.finish().unwrap();
    }
    tar
}

/// Imports the conformance suite's config test image
/// ([`cleanroom_core::conformance::CONFIG_IMAGE`]) into the default store,
/// once per test process.
#[allow(dead_code)] // used by some of the test binaries that include this module
pub fn import_config_image() {
    use cleanroom_core::conformance::{config_image_config, config_image_rootfs_tar, CONFIG_IMAGE};
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let layer = config_image_rootfs_tar().expect("building the config image's rootfs");
        let archive = cleanroom_image::docker_archive(&layer, &config_image_config(), CONFIG_IMAGE)
            .expect("writing the config image's archive");
        let path =
            std::env::temp_dir().join(format!("cleanroom-config-image-{}.tar", std::process::id()));
        std::fs::write(&path, archive).expect("writing the config image's archive");
        let store = cleanroom_image::Store::open_default().expect("opening the image store");
        let imported = store.import(&path.display().to_string(), Some(CONFIG_IMAGE));
        let _ = std::fs::remove_file(&path);
        imported.expect("importing the config test image into the native store");
    });
}
