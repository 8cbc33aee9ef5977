//! Links the `cleanroom` binary as a position-dependent executable on
//! x86_64 Linux with glibc.
//!
//! Every run of `cleanroom` pays for its start-up before it does anything:
//! as a position-independent executable (rustc's default) the dynamic
//! loader applies about 31,000 relative relocations at each start, and each
//! page they write is a page fault and a copy. Linked at a fixed address,
//! the linker resolves them once, at build time. Only the final link of
//! this package's binary changes (`rustc-link-arg-bins`): the object code,
//! and with it every other crate and test binary, is built as before, so
//! the switch costs no rebuild. The cost is that the binary's own code and
//! data are no longer placed at a random address (the heap, stacks and
//! libraries still are).
//!
//! `CLEANROOM_PIE=1` at build time keeps the default.

fn main() {
    println!("cargo:rerun-if-env-changed=CLEANROOM_PIE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu_x86_64 = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64";
    if linux_gnu_x86_64 && var("CLEANROOM_PIE") != "1" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
