//! The sandbox's seccomp filter: the one policy of
//! [`cleanroom_core::seccomp_policy`] (which the engine backends receive as
//! a seccomp profile) compiled into BPF for this architecture.
//!
//! A denied call fails with `EPERM`, as under Docker; `clone3` with
//! `ENOSYS`, so the C library falls back to `clone`, whose flags the filter
//! checks. On x86_64 every x32-ABI call fails with `ENOSYS` and any other
//! architecture (i386 through `int 0x80`) kills the process, so no second
//! syscall table slips past the rules.
//!
//! The filter is built ([`default_filter`], [`filter`]) in the parent, before
//! `fork`, as one BPF program: a short hand-written prefix (the ABI guards and
//! the plain denials as a table of comparisons) followed by
//! the rules with arguments, compiled by the pure-Rust `seccompiler` crate.
//! Its length matters: the kernel checks and compiles it again for every
//! sandbox, and runs it on every system call inside. [`apply`] only issues
//! system calls and can therefore run in the forked child, as the very last
//! step before `execve`.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::Arc;

use cleanroom_core::seccomp_policy as policy;
use seccompiler::{sock_filter, BpfProgram, TargetArch};
use serde_json::{json, Value};

/// A compiled filter, ready for [`apply`] in a forked child. Cloning it
/// (once per sandbox's plan) copies two pointers: every clone was an
/// allocation per denied name, made and freed in the caller around each
/// fork.
#[derive(Clone, Debug)]
pub struct Filter {
    /// BPF programs, installed one after the other; the kernel runs all of
    /// them and the strictest verdict wins. The default filter is one.
    programs: Arc<[BpfProgram]>,
    /// The syscalls denied with `EPERM` unconditionally or under conditions.
    denied: Arc<BTreeSet<String>>,
}

impl Filter {
    /// The names of the system calls this filter denies (some only for
    /// certain arguments: `clone` and `unshare` with a namespace flag,
    /// `personality` with an unusual persona), for reports and docs.
    pub fn denied(&self) -> impl Iterator<Item = &str> {
        self.denied.iter().map(String::as_str)
    }

    /// The total number of BPF instructions, for diagnostics.
    pub fn len(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }

    /// Never true: a filter has at least its architecture check.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// On the wire to the fork server ([`crate::fork_server`]): each instruction
/// packed into one number (code, jt, jf, k from the high bits down).
#[derive(serde::Serialize, serde::Deserialize)]
struct FilterWire {
    programs: Vec<Vec<u64>>,
    denied: Vec<String>,
}

impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pack = |i: &sock_filter| {
            u64::from(i.code) << 48 | u64::from(i.jt) << 40 | u64::from(i.jf) << 32 | u64::from(i.k)
        };
        FilterWire {
            programs: self
                .programs
                .iter()
                .map(|p| p.iter().map(pack).collect())
                .collect(),
            denied: self.denied.iter().cloned().collect(),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = FilterWire::deserialize(d)?;
        let unpack = |n: u64| sock_filter {
            code: (n >> 48) as u16,
            jt: (n >> 40) as u8,
            jf: (n >> 32) as u8,
            k: n as u32,
        };
        Ok(Filter {
            programs: wire
                .programs
                .into_iter()
                .map(|p| p.into_iter().map(unpack).collect())
                .collect(),
            denied: Arc::new(wire.denied.into_iter().collect()),
        })
    }
}

/// Changes to the default filter, by system call name (as in `man 2
/// syscalls` and Docker profiles: `"ptrace"`, `"mount"`, `"clone3"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// Calls to let through although the default filter denies them (all
    /// their rules are dropped: allowing `clone` allows namespace flags too).
    pub allow: Vec<String>,
    /// More calls to deny with `EPERM`, unconditionally.
    pub deny: Vec<String>,
}

/// Why a filter could not be built.
#[derive(Debug)]
pub enum Error {
    /// A name in [`FilterOptions`] is not a system call of this architecture.
    UnknownSyscall {
        /// The name as given.
        name: String,
        /// The architecture it was looked up for.
        arch: &'static str,
    },
    /// A name is both in [`FilterOptions::allow`] and [`FilterOptions::deny`].
    Conflict(String),
    /// The compiler rejected the filter: a bug in this module.
    Compile(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownSyscall { name, arch } => write!(
                f,
                "seccomp: `{name}` is not a system call on {arch}; use the name from \
                 `man 2 syscalls` (for example `ptrace`, `mount`, `clone3`)"
            ),
            Error::Conflict(name) => write!(
                f,
                "seccomp: `{name}` is both allowed and denied; keep it in one of the two lists"
            ),
            Error::Compile(msg) => write!(f, "seccomp: building the filter failed: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// The architecture filters are built for: the one this crate is compiled for.
#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "x86_64")]
const ARCH_NAME: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
const ARCH_NAME: &str = "aarch64";

/// The policy ([`cleanroom_core::seccomp_policy`]) names calls; the BPF
/// program needs this architecture's numbers. `None`: not a call here.
fn number(name: &str) -> Option<libc::c_long> {
    Some(match name {
        // The calls with conditional rules.
        "clone" => libc::SYS_clone,
        "unshare" => libc::SYS_unshare,
        "personality" => libc::SYS_personality,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "mount_setattr" => libc::SYS_mount_setattr,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "kcmp" => libc::SYS_kcmp,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "setns" => libc::SYS_setns,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "adjtimex" => libc::SYS_adjtimex,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => libc::SYS_quotactl_fd,
        "syslog" => libc::SYS_syslog,
        "vhangup" => libc::SYS_vhangup,
        "nfsservctl" => libc::SYS_nfsservctl,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "userfaultfd" => libc::SYS_userfaultfd,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "fanotify_init" => libc::SYS_fanotify_init,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        #[cfg(target_arch = "x86_64")]
        "modify_ldt" => libc::SYS_modify_ldt,
        // Removed from the kernel long ago (so not in libc); numbers from
        // arch/x86/entry/syscalls/syscall_64.tbl.
        #[cfg(target_arch = "x86_64")]
        "create_module" => 174,
        #[cfg(target_arch = "x86_64")]
        "get_kernel_syms" => 177,
        #[cfg(target_arch = "x86_64")]
        "query_module" => 178,
        #[cfg(target_arch = "x86_64")]
        "uselib" => libc::SYS_uselib,
        #[cfg(target_arch = "x86_64")]
        "_sysctl" => libc::SYS__sysctl,
        _ => return None,
    })
}

/// The policy's unconditional denials for this architecture, with their
/// numbers (these go into one compact jump table, see [`prefix`]).
fn plain_denials() -> Result<Vec<(&'static str, libc::c_long)>, Error> {
    policy::DENIED
        .iter()
        .filter(|d| d.only_on.is_none_or(|a| a == ARCH_NAME))
        .map(|d| {
            number(d.name).map(|nr| (d.name, nr)).ok_or_else(|| {
                Error::Compile(format!("the policy's `{}` has no number here", d.name))
            })
        })
        .collect()
}

/// The default filter: [`filter`] with no changes.
pub fn default_filter() -> Result<Filter, Error> {
    filter(&FilterOptions::default())
}

/// The default filter with `options` applied.
pub fn filter(options: &FilterOptions) -> Result<Filter, Error> {
    for name in options.allow.iter().chain(&options.deny) {
        check_name(name)?;
    }
    if let Some(name) = options.allow.iter().find(|n| options.deny.contains(n)) {
        return Err(Error::Conflict(name.clone()));
    }
    let allowed = |name: &str| options.allow.iter().any(|a| a == name);

    let mut denied = BTreeSet::new();
    let mut numbers = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (name, nr) in plain_denials()? {
        if !allowed(name) {
            numbers.push(nr as u32);
            denied.insert(name.to_string());
        }
    }
    for name in &options.deny {
        if denied.insert(name.clone()) {
            rules.push(Rule {
                name: name.clone(),
                conditions: Vec::new(),
            });
        }
    }
    // Conditional rules, unless the call is allowed or already denied
    // outright (a condition would turn an unconditional denial into a
    // conditional one).
    let conditional =
        |name: &str, denied: &BTreeSet<String>| !allowed(name) && !denied.contains(name);
    if conditional("clone", &denied) {
        for &flag in policy::CLONE_NAMESPACE_FLAGS {
            rules.push(masked_rule("clone", flag));
        }
        denied.insert("clone".to_string());
    }
    if conditional("unshare", &denied) {
        for flag in policy::unshare_flags() {
            rules.push(masked_rule("unshare", flag));
        }
        denied.insert("unshare".to_string());
    }
    if conditional("personality", &denied) {
        rules.push(Rule {
            name: "personality".to_string(),
            conditions: policy::PERSONALITIES_ALLOWED
                .iter()
                .map(|&p| Cond::Ne(p))
                .collect(),
        });
        denied.insert("personality".to_string());
    }

    // The rules with arguments (and any extra names given) are seccompiler's.
    let main = if rules.is_empty() {
        vec![sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }]
    } else {
        compile(&rules)?
    };
    let clone3_denied = options.deny.iter().any(|d| d == "clone3");
    // One program, not three, and the plain denials as one jump table: the
    // kernel checks and compiles the filter for every sandbox (its cost
    // grows with the length) and runs it on every system call inside.
    let clone3_enosys = policy::ENOSYS_CALLS.contains(&"clone3");
    let mut program = prefix(
        clone3_enosys && !allowed("clone3") && !clone3_denied,
        &numbers,
    );
    program.extend(main);
    Ok(Filter {
        programs: Arc::from(vec![program]),
        denied: Arc::new(denied),
    })
}

/// A call denied with `EPERM` when all its conditions hold (always, with
/// none).
struct Rule {
    name: String,
    conditions: Vec<Cond>,
}

/// A condition on argument 0, compared as a 32-bit value.
#[derive(Clone, Copy)]
enum Cond {
    /// Has every bit of the flag set.
    Flag(u64),
    /// Is not this value.
    Ne(u64),
}

/// A rule matching `name` when argument 0 has `flag` set.
fn masked_rule(name: &str, flag: u64) -> Rule {
    // The low 32 bits: `clone` ignores the upper half of its flags, and
    // `unshare` refuses any flag there.
    Rule {
        name: name.to_string(),
        conditions: vec![Cond::Flag(flag)],
    }
}

/// Compiles `rules` (allow what none matches) for [`ARCH`]. Built directly
/// from seccompiler's types when every call is one [`number`] knows (the
/// default filter: about 0.15 ms less per `cleanroom run` than going through
/// JSON, which builds seccompiler's whole name table); other names given
/// by a caller go through its JSON front end, which knows every call.
fn compile(rules: &[Rule]) -> Result<BpfProgram, Error> {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};
    let err = |e: seccompiler::BackendError| Error::Compile(e.to_string());
    let mut map: std::collections::BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        std::collections::BTreeMap::new();
    for rule in rules {
        let Some(nr) = number(&rule.name) else {
            return compile_json(rules);
        };
        let entry = map.entry(nr).or_default();
        if rule.conditions.is_empty() {
            continue;
        }
        let conditions = rule
            .conditions
            .iter()
            .map(|c| {
                let (op, val) = match *c {
                    Cond::Flag(flag) => (SeccompCmpOp::MaskedEq(flag), flag),
                    Cond::Ne(val) => (SeccompCmpOp::Ne, val),
                };
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, val).map_err(err)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        entry.push(seccompiler::SeccompRule::new(conditions).map_err(err)?);
    }
    let filter = seccompiler::SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(policy::EPERM),
        ARCH,
    )
    .map_err(err)?;
    BpfProgram::try_from(filter).map_err(err)
}

/// [`compile`] through seccompiler's JSON front end.
fn compile_json(rules: &[Rule]) -> Result<BpfProgram, Error> {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            let args: Vec<Value> = r
                .conditions
                .iter()
                .map(|c| match *c {
                    Cond::Flag(flag) => {
                        json!({ "index": 0, "type": "dword", "op": { "masked_eq": flag }, "val": flag })
                    }
                    Cond::Ne(val) => json!({ "index": 0, "type": "dword", "op": "ne", "val": val }),
                })
                .collect();
            if args.is_empty() {
                json!({ "syscall": r.name })
            } else {
                json!({ "syscall": r.name, "args": args })
            }
        })
        .collect();
    let filter = json!({
        "mismatch_action": "allow",
        "match_action": { "errno": policy::EPERM },
        "filter": rules,
    });
    let doc = json!({ "f": filter }).to_string();
    let mut map = seccompiler::compile_from_json(doc.as_bytes(), ARCH).map_err(|e| match e {
        seccompiler::Error::JsonFrontend(ref inner) => {
            // The only name error possible here is a bug in the lists above,
            // as user-given names are checked first.
            Error::Compile(inner.to_string())
        }
        other => Error::Compile(other.to_string()),
    })?;
    map.remove("f")
        .ok_or_else(|| Error::Compile("the compiled filter map lost its entry".to_string()))
}

/// Whether `name` is a system call of this architecture (with a clear error).
fn check_name(name: &str) -> Result<(), Error> {
    let doc = json!({ "f": {
        "mismatch_action": "allow",
        "match_action": "trap",
        "filter": [{ "syscall": name }],
    }})
    .to_string();
    match seccompiler::compile_from_json(doc.as_bytes(), ARCH) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::UnknownSyscall {
            name: name.to_string(),
            arch: ARCH_NAME,
        }),
    }
}

/// Instructions run before seccompiler's program: `clone3` fails with
/// `ENOSYS` (when `clone3_enosys`); on x86_64, so does every x32-ABI call (a
/// number with bit 30 set under the same audit architecture), so none can
/// bypass the rules that match the 64-bit numbers; and each of `denied`
/// fails with `EPERM`, found by a binary search ([`denial_tree`]). A foreign
/// architecture falls straight through to the main program, which kills
/// it. Jumps in classic BPF are relative and forward only, so the main
/// program runs unchanged after this prefix.
fn prefix(clone3_enosys: bool, denied: &[u32]) -> BpfProgram {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    // After the architecture check: A = seccomp_data.nr, then the checks.
    let mut checks = vec![ins(LD_W_ABS, 0, 0, 0)];
    #[cfg(target_arch = "x86_64")]
    {
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        checks.push(ins(JGE_K, 0, 1, X32_SYSCALL_BIT));
        checks.push(ins(RET_K, 0, 0, enosys));
    }
    if clone3_enosys {
        checks.push(ins(JEQ_K, 0, 1, libc::SYS_clone3 as u32));
        checks.push(ins(RET_K, 0, 0, enosys));
    }
    let mut sorted = denied.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    checks.extend(denial_tree(&sorted));
    // The architecture check skips every check on a mismatch; keep its
    // offset in range by construction (at most 255 instructions).
    assert!(checks.len() <= u8::MAX as usize, "seccomp prefix too long");
    let mut program = vec![
        // A = seccomp_data.arch; a foreign one skips the checks.
        ins(LD_W_ABS, 0, 0, 4),
        ins(JEQ_K, 0, checks.len() as u8, AUDIT_ARCH),
    ];
    program.extend(checks);
    program
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Numbers per leaf of [`denial_tree`], compared one by one.
const LEAF: usize = 4;

/// A block that returns `EPERM` when A (the system call number) is one of
/// `sorted` and otherwise runs off its end: a binary search, so a call
/// passes about six comparisons instead of one per denied call. That
/// matters twice: the kernel runs the filter on each system call it cannot
/// decide from its cache, and builds that cache for every sandbox by running
/// the filter once per system call number of each architecture while
/// installing it.
fn denial_tree(sorted: &[u32]) -> Vec<sock_filter> {
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    if sorted.len() <= LEAF {
        // Each match jumps to the `ret EPERM` after this leaf's `ja`.
        let n = sorted.len();
        let mut block: Vec<sock_filter> = sorted
            .iter()
            .enumerate()
            .map(|(i, &nr)| ins(JEQ_K, (n - i) as u8, 0, nr))
            .collect();
        block.push(ins(JA, 0, 0, 1));
        block.push(ins(RET_K, 0, 0, eperm));
        return block;
    }
    // A >= the middle number: the upper half; else the lower half, which
    // then jumps over the upper one.
    let mid = sorted.len() / 2;
    let lower = denial_tree(&sorted[..mid]);
    let upper = denial_tree(&sorted[mid..]);
    let over_lower = u8::try_from(lower.len() + 1).expect("seccomp denial table too long");
    let mut block = vec![ins(JGE_K, over_lower, 0, sorted[mid])];
    block.extend(lower);
    block.push(ins(JA, 0, 0, upper.len() as u32));
    block.extend(upper);
    block
}

/// Sets `no_new_privs` and installs `filter` on the calling thread.
///
/// Async-signal-safe: only `prctl` and `seccomp` system calls, no allocation,
/// no lock, so it runs in a forked child (of a multi-threaded parent too).
/// Call it last before `execve`: from here on the process can no longer
/// mount, unshare, and so on. `no_new_privs` is what lets an unprivileged
/// process install a filter, and is kept through `execve`.
pub fn apply(filter: &Filter) -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integer arguments and touches
    // no memory of ours.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    for program in filter.programs.iter() {
        let Ok(len) = libc::c_ushort::try_from(program.len()) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let prog = libc::sock_fprog {
            len,
            // seccompiler's sock_filter is #[repr(C)] with the same fields as
            // the kernel's (u16 code, u8 jt, u8 jf, u32 k).
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `len` valid instructions that outlive the
        // call; the kernel copies the program and does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program of the kinds built here on a system call
    /// number (arguments all zero), as the kernel would: the return value
    /// and how many instructions ran.
    fn run(program: &[sock_filter], arch: u32, nr: u32) -> (u32, usize) {
        let mut a = 0u32;
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            let i = &program[pc];
            pc += 1;
            steps += 1;
            match i.code {
                LD_W_ABS => {
                    a = if i.k == 4 {
                        arch
                    } else if i.k == 0 {
                        nr
                    } else {
                        0
                    }
                }
                RET_K => return (i.k, steps),
                JA => pc += i.k as usize,
                JEQ_K | JGE_K => {
                    let hit = if i.code == JEQ_K { a == i.k } else { a >= i.k };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                other => panic!("instruction {other:#x} is not expected in the prefix"),
            }
        }
    }

    #[test]
    fn the_denial_search_finds_exactly_the_denied_numbers() {
        const FELL_THROUGH: u32 = 0x1234;
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        #[cfg(target_arch = "x86_64")]
        let arch = 0xc000_003e;
        #[cfg(target_arch = "aarch64")]
        let arch = 0xc000_00b7;
        let policy: Vec<u32> = plain_denials()
            .unwrap()
            .iter()
            .map(|d| d.1 as u32)
            .collect();
        // Every table size up to the policy's, and odd sets with gaps and
        // neighbours, against a plain membership test.
        let mut tables: Vec<Vec<u32>> = (0..=policy.len()).map(|n| policy[..n].to_vec()).collect();
        tables.push(vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]);
        tables.push((0..300).step_by(3).collect());
        for denied in tables {
            let mut program = prefix(true, &denied);
            program.push(ins(RET_K, 0, 0, FELL_THROUGH));
            for nr in 0..1100u32 {
                let want = if nr == libc::SYS_clone3 as u32 {
                    enosys
                } else if denied.contains(&nr) {
                    eperm
                } else {
                    FELL_THROUGH
                };
                assert_eq!(run(&program, arch, nr).0, want, "nr {nr}, table {denied:?}");
            }
            // Another architecture skips every check.
            assert_eq!(
                run(&program, 0x4000_0003, denied.first().copied().unwrap_or(0)).0,
                FELL_THROUGH
            );
            #[cfg(target_arch = "x86_64")]
            assert_eq!(run(&program, arch, 0x4000_0000 | 1).0, enosys);
        }
    }

    #[test]
    fn a_call_passes_few_checks() {
        // The kernel runs the filter once per system call number while
        // installing it (for its cache), for every sandbox, and on each
        // call it cannot decide from that cache.
        let denied: Vec<u32> = plain_denials()
            .unwrap()
            .iter()
            .map(|d| d.1 as u32)
            .collect();
        let mut program = prefix(true, &denied);
        program.push(ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
        #[cfg(target_arch = "x86_64")]
        let arch = 0xc000_003e;
        #[cfg(target_arch = "aarch64")]
        let arch = 0xc000_00b7;
        let longest = (0..1100).map(|nr| run(&program, arch, nr).1).max().unwrap();
        assert!(
            longest <= 20,
            "{longest} instructions for {} denied calls",
            denied.len()
        );
    }

    /// The direct compile gives the JSON front end's program, byte for
    /// byte, for the default filter's rules and for a plain denial.
    #[test]
    fn direct_compile_matches_the_json_front_end() {
        let mut rules: Vec<Rule> = policy::CLONE_NAMESPACE_FLAGS
            .iter()
            .map(|&f| masked_rule("clone", f))
            .chain(policy::unshare_flags().map(|f| masked_rule("unshare", f)))
            .collect();
        rules.push(Rule {
            name: "personality".into(),
            conditions: policy::PERSONALITIES_ALLOWED
                .iter()
                .map(|&p| Cond::Ne(p))
                .collect(),
        });
        rules.push(Rule {
            name: "ptrace".into(),
            conditions: Vec::new(),
        });
        let direct = compile(&rules).expect("direct");
        let json = compile_json(&rules).expect("json");
        let raw = |p: &BpfProgram| -> Vec<(u16, u8, u8, u32)> {
            p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
        };
        assert_eq!(raw(&direct), raw(&json));
    }
}
