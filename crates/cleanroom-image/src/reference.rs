//! Image references: `name[:tag]`, `name@sha256:...`, with Docker Hub
//! normalisation (`busybox` is `busybox:latest`, and
//! `docker.io/library/busybox` is the same image).

use std::fmt;
use std::str::FromStr;

use cleanroom_core::Error;

use crate::digest::Digest;

const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    /// Registry host (with port), `None` for Docker Hub.
    registry: Option<String>,
    /// Repository path without the Docker Hub `library/` prefix.
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host, `docker.io` for Docker Hub images.
    pub fn registry(&self) -> &str {
        self.registry.as_deref().unwrap_or(DOCKER_HUB)
    }

    /// The repository path as a registry knows it (`library/busybox` on Docker Hub).
    pub fn repository_path(&self) -> String {
        if self.registry.is_none() && !self.repository.contains('/') {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }

    /// The short name: registry (unless Docker Hub) and repository, no tag.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// The tag, if any (`latest` is filled in when there is neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference without its digest (the name the store keeps).
    pub fn without_digest(&self) -> Reference {
        Reference {
            tag: Some(self.tag.clone().unwrap_or_else(|| "latest".into())),
            digest: None,
            ..self.clone()
        }
    }

    /// Parses `s`, naming `s` in the error.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let bad = |why: &str| {
            Error::Image {
            reference: s.to_owned(),
            message: format!(
                "invalid image reference: {why}; expected NAME[:TAG] or NAME@sha256:DIGEST, e.g. busybox:latest"
            ),
        }
        };
        let s_trim = s.strip_prefix("docker://").unwrap_or(s);
        if s_trim.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match s_trim.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| bad("bad digest"))?)),
            None => (s_trim, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad(&format!("bad tag `{t}`")));
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            Some(parts.remove(0).to_owned())
        } else {
            None
        };
        let registry = match registry.as_deref() {
            Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => None,
            _ => registry,
        };
        if registry.is_none() && parts.len() > 1 && parts[0] == "library" {
            parts.remove(0);
        }
        if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty path component"));
        }
        for p in &parts {
            let ok = p
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(&format!(
                    "repository component `{p}` must be lowercase letters, digits, `.`, `_` or `-`"
                )));
            }
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository: parts.join("/"),
            tag,
            digest,
        })
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(n("busybox"), "busybox:latest");
        assert_eq!(n("busybox:1.36"), "busybox:1.36");
        assert_eq!(n("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(n("index.docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(n("library/busybox"), "busybox:latest");
        assert_eq!(n("docker.io/foo/bar:x"), "foo/bar:x");
        assert_eq!(
            Reference::parse("busybox").unwrap().repository_path(),
            "library/busybox"
        );
    }

    #[test]
    fn keeps_registries_with_ports() {
        let r = Reference::parse("docker://127.0.0.1:5000/test/busybox:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository_path(), "test/busybox");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(n("localhost:5000/x"), "localhost:5000/x:latest");
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"x");
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.to_string(), format!("busybox@{d}"));
        assert_eq!(r.without_digest().to_string(), "busybox:latest");
    }

    #[test]
    fn rejects_bad_references_naming_them() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a//b",
            "busybox@sha256:12",
            "x:-y",
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid image reference"), "{bad}: {e}");
        }
    }
}
