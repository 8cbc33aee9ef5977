//! Registry pulls (`docker://HOST/NAME:TAG`). Not built yet.

use cleanroom_core::{Error, Result};

use crate::import::Tx;
use crate::reference::Reference;

pub(crate) fn pull_locked(_tx: &mut Tx<'_>, r: &Reference) -> Result<crate::import::Imported> {
    Err(Error::Image {
        reference: r.to_string(),
        message:
            "registry pulls are not supported yet; `docker save` the image and import the archive"
                .into(),
    })
}
