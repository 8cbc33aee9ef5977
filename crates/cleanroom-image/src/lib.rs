//! Cleanroom's image store: a verified, content-addressed store of OCI
//! images under the user's data directory, with import from `docker save`
//! archives, OCI layouts, root filesystem tarballs and directories, registry
//! pulls, and safe unpacking into layer directories or one merged rootfs.

mod digest;
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
mod time;
mod unpack;

pub use digest::{Digest, Hasher};
pub use image::{Compression, Image, ImageConfig, ImageInfo, LayerRef};
pub use import::{Progress, ProgressFn, Source};
pub use lock::ImageLease;
pub use maintenance::{GcReport, RemoveReport, VerifyReport};
pub use pull::Credentials;
pub use reference::Reference;
pub use store::{default_root, Store};
pub use unpack::{LayerMeta, UnpackedLayer};
