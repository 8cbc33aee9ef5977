//! Copying whole trees in and out of a long-lived sandbox; symlinks are
//! copied as symlinks, never followed on the host.

use std::path::Path;

use cleanroom_core::{Backend, Cmd, SandboxSpec};
use cleanroom_native::NativeBackend;

#[tokio::test(flavor = "multi_thread")]
async fn trees_round_trip_and_symlinks_stay_links() {
    let host = std::env::temp_dir().join(format!("cleanroom-native-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    let src = host.join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(src.join("sub/deeper/big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();

    let sb = NativeBackend::new()
        .create(&SandboxSpec::default(), None)
        .await
        .expect("create");
    sb.copy_in(&src, Path::new("tree")).await.expect("copy_in");
    let r = sb
        .exec(Cmd::shell(
            "cat tree/a.txt; echo; readlink tree/link; wc -c < tree/sub/deeper/big.bin",
        ))
        .await
        .unwrap();
    assert_eq!(
        r.stdout_lossy(),
        "alpha\na.txt\n300000\n",
        "{}",
        r.stderr_lossy()
    );

    // A symlink made inside pointing at a host path comes out as a link.
    sb.exec(Cmd::shell(
        "ln -s /etc tree/escape && echo inside > tree/new.txt",
    ))
    .await
    .unwrap();
    let out = host.join("out");
    sb.copy_out(Path::new("/workdir/tree"), &out)
        .await
        .expect("copy_out");
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(out.join("new.txt")).unwrap(), b"inside\n");
    assert_eq!(std::fs::read(out.join("sub/deeper/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read_link(out.join("escape")).unwrap(),
        Path::new("/etc")
    );
    sb.remove().await.unwrap();
    let _ = std::fs::remove_dir_all(&host);
}
