//! rlimits applied in forked children and read back: lowered as asked,
//! clamped to the hard limit, never an attempt to raise it.

mod limits_common;

use cleanroom_native::rlimits::{self, Resource, Rlimits, INFINITY};
use limits_common::in_child;

/// Applies `limits` in a child and returns (apply errno or 0, then soft and
/// hard of every resource in `Resource::ALL` order).
fn applied_in_child(pre: Option<(Resource, u64)>, limits: Rlimits) -> [i64; limits_common::SLOTS] {
    in_child(|s| {
        if let Some((resource, hard)) = pre {
            let lowered = Rlimits::none().with(resource, hard);
            if rlimits::apply(&lowered).is_err() {
                s[0] = -1000;
                return;
            }
        }
        s[0] = match rlimits::apply(&limits) {
            Ok(()) => 0,
            Err(e) => -i64::from(e.raw_os_error().unwrap_or(-1)),
        };
        for (i, &r) in Resource::ALL.iter().enumerate() {
            if let Ok((soft, hard)) = rlimits::get(r) {
                s[1 + 2 * i] = soft as i64;
                s[2 + 2 * i] = hard as i64;
            }
        }
    })
}

fn soft_hard(s: &[i64], r: Resource) -> (u64, u64) {
    let i = Resource::ALL.iter().position(|&x| x == r).unwrap();
    (s[1 + 2 * i] as u64, s[2 + 2 * i] as u64)
}

#[test]
fn lowered_limits_are_set_soft_and_hard() {
    let limits = Rlimits::none()
        .with(Resource::Nofile, 64)
        .with(Resource::Core, 0)
        .with(Resource::Fsize, 1 << 20);
    let s = applied_in_child(None, limits);
    assert_eq!(s[0], 0, "apply failed with errno {}", -s[0]);
    assert_eq!(soft_hard(&s, Resource::Nofile), (64, 64));
    assert_eq!(soft_hard(&s, Resource::Core), (0, 0));
    assert_eq!(soft_hard(&s, Resource::Fsize), (1 << 20, 1 << 20));
    // Untouched resources keep the parent's values.
    assert_eq!(
        soft_hard(&s, Resource::Stack),
        rlimits::get(Resource::Stack).unwrap()
    );
}

#[test]
fn values_above_the_hard_limit_are_clamped_not_refused() {
    // The child first lowers its hard NOFILE to 100 (as a caller without
    // CAP_SYS_RESOURCE has some hard limit), then asks for 4096 and infinity.
    let s = applied_in_child(
        Some((Resource::Nofile, 100)),
        Rlimits::none()
            .with(Resource::Nofile, 4096)
            .with(Resource::Cpu, INFINITY),
    );
    assert_eq!(s[0], 0, "apply failed with errno {}", -s[0]);
    assert_eq!(soft_hard(&s, Resource::Nofile), (100, 100));
    let (_, cpu_hard) = rlimits::get(Resource::Cpu).unwrap();
    assert_eq!(soft_hard(&s, Resource::Cpu), (cpu_hard, cpu_hard));
}

#[test]
fn effective_reports_the_clamping_in_the_parent() {
    let (_, hard) = rlimits::get(Resource::Nofile).unwrap();
    let eff = rlimits::effective(&Rlimits::sandbox_default()).unwrap();
    let nofile = eff.iter().find(|e| e.resource == Resource::Nofile).unwrap();
    let want = cleanroom_core::spec::DEFAULT_NOFILE;
    assert_eq!(nofile.requested, want);
    assert_eq!(nofile.effective, hard.min(want));
    assert_eq!(nofile.clamped(), hard < want);
    let core = eff.iter().find(|e| e.resource == Resource::Core).unwrap();
    assert_eq!((core.effective, core.clamped()), (0, false));
    // And the child really gets what `effective` promised.
    let s = applied_in_child(None, Rlimits::sandbox_default());
    assert_eq!(s[0], 0);
    assert_eq!(
        soft_hard(&s, Resource::Nofile),
        (nofile.effective, nofile.effective)
    );
}
