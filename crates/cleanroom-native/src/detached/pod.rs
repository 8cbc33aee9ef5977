//! Joining a named sandbox's network from any process: `Network::Pod(id)`
//! where `id` is the sandbox's state directory (its `SandboxInfo::id`).
//!
//! The namespaces come from the sandbox's own init over its control
//! socket, not through `/proc/<init_pid>/ns`: a pid in a record is only a
//! hint (the init may have died and its pid gone to a stranger), and the
//! init is not dumpable, so a caller without privileges may not open its
//! `/proc` entries anyway. The socket is the sandbox's and nobody else's
//! (0600 in the caller's 0700 directory, the peer's uid checked by the
//! init), so what arrives over it is that sandbox's namespaces.

use std::path::Path;

use cleanroom_core::detached::{current_uid, state_dir, validate_name};
use cleanroom_core::{Error, Result};

use super::state;
use crate::client::Channel;
use crate::plan::Pod;

fn refuse(id: &str, why: impl std::fmt::Display) -> Error {
    Error::backend(
        "native",
        format!("network pod:{id}: cannot join that sandbox's network: {why}"),
    )
}

/// The pod of this user's running named sandbox whose state directory is
/// `id`; `Ok(None)` when `id` is not such a directory at all.
pub async fn join(id: &str) -> Result<Option<Pod>> {
    let dir = Path::new(id);
    let root = state_dir()?;
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    if dir.parent() != Some(root.as_path()) || validate_name(name).is_err() || !dir.is_dir() {
        return Ok(None);
    }
    let uid = current_uid();
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::symlink_metadata(dir).map_err(|e| Error::io(format!("reading {id}"), e))?,
    );
    if owner != uid {
        return Err(refuse(
            id,
            format!("its directory belongs to uid {owner}, not to you (uid {uid})"),
        ));
    }
    let record = state::read_record(dir).ok_or_else(|| {
        refuse(
            id,
            "it has no record (still being created, or dead); see `cleanroom ps -a`",
        )
    })?;
    if record.owner_uid != uid || record.backend != "native" {
        return Err(refuse(
            id,
            format!(
                "its record is of backend `{}` and uid {}, not a native sandbox of yours (uid {uid})",
                record.backend, record.owner_uid
            ),
        ));
    }
    if !state::lock_held(dir) || state::read_exit(dir).is_some() {
        return Err(refuse(
            id,
            format!(
                "sandbox `{}` is not running; start it again or `cleanroom rm` it",
                record.name
            ),
        ));
    }
    let chan = Channel::connect_path(&dir.join(state::SOCKET), &record.name)
        .await
        .map_err(|e| refuse(id, e))?;
    let (net, user) = chan.namespaces().await.map_err(|e| refuse(id, e))?;
    Ok(Some(Pod {
        net,
        user,
        uid: record.spec.user.uid,
        gid: record.spec.user.gid,
    }))
}
