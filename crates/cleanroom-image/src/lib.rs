//! Cleanroom's image store: a verified, content-addressed store of OCI
//! images under the user's data directory, with import from `docker save`
//! archives, OCI layouts, root filesystem tarballs and directories, registry
//! pulls, and safe unpacking into layer directories or one merged rootfs.
//!
//! ```no_run
//! # fn main() -> cleanroom_core::Result<()> {
//! use cleanroom_image::Store;
//!
//! let store = Store::open_default()?; // $CLEANROOM_HOME, $XDG_DATA_HOME/cleanroom or ~/.local/share/cleanroom
//! store.import("busybox.tar", None)?; // a `docker save` archive naming busybox:latest
//! let image = store.resolve("busybox")?; // manifest and config, verified
//! let _lease = store.lease(&image)?; // keeps gc away while in use
//! let lower_dirs = store.layer_dirs(&image)?; // overlayfs lower dirs, lowest first
//! let merged = store.rootfs_dir(&image)?; // or one merged directory
//! let defaults = image.runtime_config(); // Env, WorkingDir, User, Entrypoint, Cmd
//! # let _ = (lower_dirs, merged, defaults);
//! # Ok(())
//! # }
//! ```

mod archive;
mod copy;
mod digest;
mod extract;
mod fsutil;
mod image;
mod import;
mod lock;
mod maintenance;
mod merge;
mod pull;
mod reference;
mod safepath;
mod store;
mod stream;
mod tree;
use cleanroom_core::time;
mod unpack;
mod writer;

pub use archive::docker_archive;
pub use digest::{Digest, Hasher};
pub use image::{runtime_config_of, Compression, Image, ImageConfig, ImageInfo, LayerRef};
pub use import::{Progress, ProgressFn, Source};
pub use lock::ImageLease;
pub use maintenance::{GcReport, RemoveReport, VerifyReport};
pub use pull::Credentials;
pub use reference::Reference;
pub use store::{default_root, Store};
pub use unpack::{unpack_tarball, LayerMeta, UnpackedLayer};
