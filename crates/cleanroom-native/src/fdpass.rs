//! File descriptors inside a serialized value: each is written as its index
//! in the list of descriptors that travels beside the message
//! (`SCM_RIGHTS`), and read back by taking the received descriptor at that
//! index.
//!
//! Serde has no place for a descriptor, so the list lives for the length
//! of one [`encode`] or [`decode`] call on the calling thread; the fields
//! that hold descriptors name one of the `with` modules here
//! (`#[serde(with = "crate::fdpass")]`, [`option`], [`vec`](mod@vec), [`pair`],
//! [`array`](mod@array)). Used for the plan sent to the fork server ([`crate::fork_server`]).

use std::cell::RefCell;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// Raw numbers of the descriptors met while encoding.
    static SENT: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    /// The descriptors received, taken out one by one while decoding.
    static RECEIVED: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// `value` as JSON, and the descriptors it holds in the order their indices
/// name them. The descriptors are borrowed from `value`: send them before
/// it is dropped.
pub fn encode<T: Serialize>(value: &T) -> serde_json::Result<(Vec<u8>, Vec<RawFd>)> {
    SENT.with(|s| *s.borrow_mut() = Some(Vec::new()));
    let bytes = serde_json::to_vec(value);
    let fds = SENT.with(|s| s.borrow_mut().take()).unwrap_or_default();
    Ok((bytes?, fds))
}

/// The value [`encode`] made, with `fds` the descriptors received with it.
/// Descriptors no index named are closed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> serde_json::Result<T> {
    RECEIVED.with(|r| *r.borrow_mut() = Some(fds.into_iter().map(Some).collect()));
    let value = serde_json::from_slice(bytes);
    RECEIVED.with(|r| r.borrow_mut().take());
    value
}

/// The descriptors of [`encode`], borrowed for sending.
///
/// # Safety
/// Every number must be open (held by the encoded value) for `'a`.
pub unsafe fn borrow<'a>(fds: &[RawFd]) -> Vec<BorrowedFd<'a>> {
    fds.iter()
        // SAFETY: the caller keeps the value holding them alive for 'a.
        .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
        .collect()
}

fn index_of<E: serde::ser::Error>(fd: &OwnedFd) -> Result<u32, E> {
    SENT.with(|s| match s.borrow_mut().as_mut() {
        Some(list) => {
            list.push(fd.as_raw_fd());
            Ok((list.len() - 1) as u32)
        }
        None => Err(E::custom("a descriptor serialized outside fdpass::encode")),
    })
}

fn take<E: serde::de::Error>(index: u32) -> Result<OwnedFd, E> {
    RECEIVED.with(|r| {
        r.borrow_mut()
            .as_mut()
            .and_then(|list| list.get_mut(index as usize))
            .and_then(Option::take)
            .ok_or_else(|| E::custom(format!("descriptor {index} was not received")))
    })
}

pub fn serialize<S: Serializer>(fd: &OwnedFd, s: S) -> Result<S::Ok, S::Error> {
    index_of(fd)?.serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    take(u32::deserialize(d)?)
}

/// For an `Option<OwnedFd>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(fd: &Option<OwnedFd>, s: S) -> Result<S::Ok, S::Error> {
        fd.as_ref().map(index_of).transpose()?.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OwnedFd>, D::Error> {
        Option::<u32>::deserialize(d)?.map(take).transpose()
    }
}

/// For a `Vec<OwnedFd>`.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(fds: &[OwnedFd], s: S) -> Result<S::Ok, S::Error> {
        fds.iter()
            .map(index_of)
            .collect::<Result<Vec<u32>, _>>()?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OwnedFd>, D::Error> {
        Vec::<u32>::deserialize(d)?.into_iter().map(take).collect()
    }
}

/// For an `Option<(OwnedFd, OwnedFd)>`.
pub mod pair {
    use super::*;

    type Pair = Option<(OwnedFd, OwnedFd)>;

    pub fn serialize<S: Serializer>(pair: &Pair, s: S) -> Result<S::Ok, S::Error> {
        pair.as_ref()
            .map(|(a, b)| Ok::<_, S::Error>((index_of(a)?, index_of(b)?)))
            .transpose()?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pair, D::Error> {
        Option::<(u32, u32)>::deserialize(d)?
            .map(|(a, b)| Ok((take(a)?, take(b)?)))
            .transpose()
    }
}

/// For an `[OwnedFd; N]`.
pub mod array {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(
        fds: &[OwnedFd; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::vec::serialize(fds, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[OwnedFd; N], D::Error> {
        let fds = super::vec::deserialize(d)?;
        let got = fds.len();
        fds.try_into()
            .map_err(|_| serde::de::Error::custom(format!("{got} descriptors where {N} belong")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "crate::fdpass")]
        one: OwnedFd,
        #[serde(with = "crate::fdpass::option")]
        maybe: Option<OwnedFd>,
        #[serde(with = "crate::fdpass::vec")]
        many: Vec<OwnedFd>,
        #[serde(with = "crate::fdpass::pair")]
        pair: Option<(OwnedFd, OwnedFd)>,
        #[serde(with = "crate::fdpass::array")]
        three: [OwnedFd; 3],
        name: String,
    }

    fn fd() -> OwnedFd {
        rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .expect("/dev/null opens")
    }

    #[test]
    fn descriptors_round_trip_by_index() {
        let holder = Holder {
            one: fd(),
            maybe: None,
            many: vec![fd(), fd()],
            pair: Some((fd(), fd())),
            three: [fd(), fd(), fd()],
            name: "x".into(),
        };
        let (bytes, raw) = encode(&holder).expect("encodes");
        assert_eq!(raw.len(), 8);
        assert_eq!(raw[0], holder.one.as_raw_fd());
        assert_eq!(raw[7], holder.three[2].as_raw_fd());
        // As received: fresh copies, in the same order.
        let copies = raw
            .iter()
            .map(|&n| {
                // SAFETY: `holder` keeps every number open meanwhile.
                let b = unsafe { BorrowedFd::borrow_raw(n) };
                b.try_clone_to_owned().expect("dup")
            })
            .collect::<Vec<_>>();
        let numbers: Vec<RawFd> = copies.iter().map(AsRawFd::as_raw_fd).collect();
        let back: Holder = decode(&bytes, copies).expect("decodes");
        assert_eq!(back.one.as_raw_fd(), numbers[0]);
        assert_eq!(back.many[1].as_raw_fd(), numbers[2]);
        assert!(back.maybe.is_none());
        assert_eq!(back.three[2].as_raw_fd(), numbers[7]);
        assert_eq!(back.name, "x");
    }

    #[test]
    fn a_missing_descriptor_is_an_error_not_a_guess() {
        let holder = Holder {
            one: fd(),
            maybe: Some(fd()),
            many: Vec::new(),
            pair: None,
            three: [fd(), fd(), fd()],
            name: String::new(),
        };
        let (bytes, _) = encode(&holder).expect("encodes");
        let err = decode::<Holder>(&bytes, vec![fd()])
            .err()
            .expect("too few descriptors fail");
        assert!(
            err.to_string().contains("descriptor 1 was not received"),
            "{err}"
        );
    }
}
