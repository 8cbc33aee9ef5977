//! Where cleanroom keeps files between runs.

use std::path::PathBuf;

/// A cache directory for `what`: `$CLEANROOM_HOME/cache/<what>`, else
/// `$XDG_CACHE_HOME/cleanroom/<what>`, else `~/.cache/cleanroom/<what>`
/// (the system temporary directory when no home is known). Not created.
pub fn cache_dir(what: &str) -> PathBuf {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(h) = set("CLEANROOM_HOME") {
        return PathBuf::from(h).join("cache").join(what);
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cleanroom").join(what)
}

/// A stable file name for a cache entry keyed by `key`: its FNV-1a hash
/// ([`crate::hash::fnv1a`]) as 16 hex digits.
pub fn cache_key(key: &[u8]) -> String {
    format!("{:016x}", crate::hash::fnv1a(key))
}
