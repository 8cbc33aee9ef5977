//! Registry pulls (`docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`) through the
//! OCI distribution client (`oci-client`). The manifest is verified against
//! the pinned digest (or the registry's `Docker-Content-Digest`), a
//! multi-arch index resolves to this host's platform, and every blob is
//! verified as it enters the store; a mismatch fails the pull and the import
//! transaction removes whatever it had stored.
//!
//! Loopback registries are spoken to over plain HTTP (as Docker does);
//! `CLEANROOM_INSECURE_REGISTRIES` (comma-separated `host:port`) adds more.
//! Credentials are given as [`Credentials`]; [`Credentials::from_env`]
//! reads `CLEANROOM_REGISTRY_TOKEN` (bearer), or `CLEANROOM_REGISTRY_USER`
//! and `CLEANROOM_REGISTRY_PASSWORD` (basic, also used for the token
//! exchange), else anonymous.

use std::fs::File;

use cleanroom_core::{Error, IoContext, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::import::{Imported, Tx};
use crate::reference::Reference;

const ACCEPTED: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Credentials for a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (anonymous token exchange where the registry wants one).
    Anonymous,
    /// HTTP basic auth, also used for the bearer-token exchange.
    Basic {
        /// User name.
        user: String,
        /// Password or access token.
        password: String,
    },
    /// A bearer token sent as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// From the environment: `CLEANROOM_REGISTRY_TOKEN` (bearer), or
    /// `CLEANROOM_REGISTRY_USER` and `CLEANROOM_REGISTRY_PASSWORD` (basic),
    /// else anonymous.
    pub fn from_env() -> Credentials {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(t) = var("CLEANROOM_REGISTRY_TOKEN") {
            Credentials::Bearer(t)
        } else if let (Some(user), Some(password)) = (
            var("CLEANROOM_REGISTRY_USER"),
            var("CLEANROOM_REGISTRY_PASSWORD"),
        ) {
            Credentials::Basic { user, password }
        } else {
            Credentials::Anonymous
        }
    }

    fn to_oci(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { user, password } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

fn is_insecure(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = name == "localhost"
        || name == "[::1]"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || std::env::var("CLEANROOM_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .any(|h| h.trim() == host)
}

struct Pull<'a> {
    client: oci_client::Client,
    auth: RegistryAuth,
    reference: &'a Reference,
    shown: String,
}

impl Pull<'_> {
    fn failed(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Image {
            reference: self.shown.clone(),
            message: format!(
                "the registry {} refused or failed {what}: {e}",
                self.reference.registry()
            ),
        }
    }

    fn oci_ref(&self, digest: Option<&Digest>) -> Result<oci_client::Reference> {
        let mut s = format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository_path()
        );
        match (digest.or(self.reference.digest()), self.reference.tag()) {
            (Some(d), _) => s.push_str(&format!("@{d}")),
            (None, Some(t)) => s.push_str(&format!(":{t}")),
            (None, None) => s.push_str(":latest"),
        }
        s.parse().map_err(|e| Error::Image {
            reference: self.shown.clone(),
            message: format!("cannot be used as a registry reference: {e}"),
        })
    }

    /// Fetches a manifest or index and checks it against `want` (or the
    /// digest the registry states).
    async fn manifest(&self, want: Option<&Digest>) -> Result<(Vec<u8>, Digest)> {
        let r = self.oci_ref(want)?;
        let (bytes, stated) = self
            .client
            .pull_manifest_raw(&r, &self.auth, ACCEPTED)
            .await
            .map_err(|e| self.failed("the manifest", e))?;
        let got = Digest::of(&bytes);
        let expected = match want {
            Some(d) => Some(d.clone()),
            None => stated.parse::<Digest>().ok(),
        };
        if let Some(exp) = expected {
            if exp != got {
                return Err(Error::Image {
                    reference: self.shown.clone(),
                    message: format!(
                        "the manifest does not match its digest: expected {exp}, got {got}; nothing was stored"
                    ),
                });
            }
        }
        Ok((bytes.to_vec(), got))
    }

    async fn blob_to(&self, digest: &Digest, out: tokio::fs::File) -> Result<()> {
        let r = self.oci_ref(None)?;
        let d = digest.to_string();
        self.client
            .pull_blob(&r, d.as_str(), out)
            .await
            .map_err(|e| self.failed(&format!("blob {digest}"), e))
    }
}

/// Pulls `reference` into the store (the caller holds the store lock).
pub(crate) fn pull_locked(
    tx: &mut Tx<'_>,
    reference: &Reference,
    creds: &Credentials,
) -> Result<Imported> {
    let shown = format!("docker://{reference}");
    // Through the bridge, so a caller already inside a tokio runtime can pull too.
    cleanroom_core::bridge::wait(pull_async(tx, reference, creds, shown))
}

async fn pull_async(
    tx: &mut Tx<'_>,
    reference: &Reference,
    creds: &Credentials,
    shown: String,
) -> Result<Imported> {
    let registry = reference.registry().to_owned();
    let protocol = if is_insecure(&registry) {
        ClientProtocol::HttpsExcept(vec![registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let p = Pull {
        client: oci_client::Client::new(ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            ..ClientConfig::default()
        }),
        auth: creds.to_oci(),
        reference,
        shown: shown.clone(),
    };
    let (mut bytes, mut digest) = p.manifest(reference.digest()).await?;
    for _ in 0..4 {
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
            reference: shown.clone(),
            message: format!("the registry sent a manifest that is not JSON: {e}"),
        })?;
        let is_index = v.get("manifests").is_some();
        if !is_index {
            break;
        }
        let index: ImageIndex = serde_json::from_value(v).map_err(|e| Error::Image {
            reference: shown.clone(),
            message: format!("the registry sent an invalid image index: {e}"),
        })?;
        let pick = crate::import::select_platform(index.manifests(), &shown)?;
        let want = Digest::from_oci(pick.digest())?;
        (bytes, digest) = p.manifest(Some(&want)).await?;
    }
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
        reference: shown.clone(),
        message: format!("the registry sent an invalid image manifest: {e}"),
    })?;
    for l in manifest.layers() {
        if crate::image::Compression::from_media_type(l.media_type()).is_none() {
            return Err(Error::Image {
                reference: shown.clone(),
                message: format!(
                    "layer {} has media type `{}`, which Cleanroom cannot unpack",
                    l.digest(),
                    l.media_type()
                ),
            });
        }
    }
    let descs = std::iter::once(("config".to_owned(), manifest.config())).chain(
        manifest
            .layers()
            .iter()
            .map(|l| (format!("layer {}", l.digest()), l)),
    );
    for (what, d) in descs {
        let want = Digest::from_oci(d.digest())?;
        if tx.store.has_blob(&want) && tx.store.blob_is_intact(&want).unwrap_or(false) {
            continue;
        }
        let tmp = tx.store.temp_file("pull")?;
        let f = tmp
            .reopen()
            .context(|| format!("opening {}", tmp.path().display()))?;
        p.blob_to(&want, tokio::fs::File::from_std(f)).await?;
        let f = File::open(tmp.path()).context(|| format!("opening {}", tmp.path().display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        tx.put(
            std::io::BufReader::with_capacity(1 << 20, f),
            Some(&want),
            &what,
            size,
        )?;
    }
    let (stored, _) = tx.put(
        bytes.as_slice(),
        Some(&digest),
        "manifest",
        Some(bytes.len() as u64),
    )?;
    // A digest-only pull is named after its digest, not `latest`.
    let name = match reference.tag() {
        Some(_) => reference.without_digest(),
        None => reference.with_tag(&format!("sha256-{}", stored.short())),
    };
    Ok(Imported {
        manifest: stored,
        names: vec![name.to_string()],
    })
}
