//! cgroup limits against the real kernel: an allocation past the memory
//! limit is OOM-killed and reported, a bounded fork bomb stops at the pids
//! limit, the CPU quota is written and throttles, everything is killed and
//! removed, and gc removes only what dead owners left.
//!
//! As root these must work (the CI machine has cgroup v1 memory, cpu and
//! pids and an empty v2 hierarchy); as an ordinary user without a delegated
//! cgroup, probe() must say the limits are not enforced, and why.

mod limits_common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cleanroom_native::cgroups::{self, Cgroup, Controller, Limits, Version};
use cleanroom_native::clone;
use limits_common::is_root;

const MIB: u64 = 1 << 20;

/// The limits, when this machine can enforce them; otherwise checks that
/// the refusal is explained (and fails as root: the CI machine can).
fn enforceable(limits: Limits) -> Option<Limits> {
    let support = cgroups::probe(&limits);
    if support.all_enforceable() {
        return Some(limits);
    }
    for l in support.limits.iter().filter(|l| !l.enforceable) {
        assert!(
            l.reason.contains(l.controller.name()) && l.reason.len() > 40,
            "an unenforceable limit needs a reason naming the controller: {l:?}"
        );
    }
    assert!(
        !is_root(),
        "as root these limits must be enforceable here: {:?}",
        support.warnings()
    );
    eprintln!(
        "not enforceable as this user, as expected: {:?}",
        support.warnings()
    );
    None
}

/// Spawns `sh -c script` that joins `cgroup` before it execs.
fn spawn_in(cgroup: &Cgroup, script: &str) -> Child {
    let procs = cgroup.open_procs().expect("open cgroup.procs");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: join_raw only writes to already open descriptors.
    unsafe {
        cmd.pre_exec(move || procs.join_raw());
    }
    cmd.spawn().expect("spawn sh")
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("child {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Whether `pid` exists and is not a zombie (a killed process whose parent
/// died waits for the reaper it was reparented to).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

#[test]
fn probe_explains_every_limit() {
    let all = Limits {
        memory: Some(64 * MIB),
        cpus: Some(1.0),
        pids: Some(64),
    };
    let support = cgroups::probe(&all);
    assert_eq!(support.limits.len(), 3);
    for l in &support.limits {
        assert!(!l.reason.is_empty(), "{l:?}");
        if l.enforceable {
            assert!(l.version.is_some(), "{l:?}");
        }
    }
    // Only what was asked is reported.
    let one = cgroups::probe(&Limits {
        pids: Some(1),
        ..Limits::default()
    });
    assert_eq!(one.limits.len(), 1);
    assert_eq!(one.limits[0].controller, Controller::Pids);
    assert!(cgroups::probe(&Limits::default()).limits.is_empty());
    if !is_root() {
        // No delegated v2 subtree for this user here: not enforced, with
        // the way out in the message.
        for l in support.limits.iter().filter(|l| !l.enforceable) {
            assert!(l.reason.contains("Delegate=yes"), "{l:?}");
        }
        assert_eq!(
            support.enforceable(&all).controllers().count(),
            support.limits.iter().filter(|l| l.enforceable).count()
        );
    } else {
        enforceable(all);
    }
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let Some(limits) = enforceable(Limits {
        memory: Some(32 * MIB),
        ..Limits::default()
    }) else {
        return;
    };
    let cg = Cgroup::create(&limits).expect("create");
    let dir = cg.path_of(Controller::Memory).unwrap().to_path_buf();
    match cg.version_of(Controller::Memory).unwrap() {
        Version::V1 => assert_eq!(read(&dir.join("memory.limit_in_bytes")), "33554432"),
        Version::V2 => assert_eq!(read(&dir.join("memory.max")), "33554432"),
    }
    assert!(!cg.oom_killed(), "fresh cgroup");
    // The shell keeps ~100 MB in a variable: over the limit.
    let mut child = spawn_in(
        &cg,
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
    );
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    assert!(!status.success(), "the allocation must fail: {status:?}");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "OOM kill: {status:?}");
    assert!(cg.oom_killed(), "oom_killed() after the OOM kill");
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
    cg.remove().expect("remove");
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn pids_limit_stops_a_bounded_fork_bomb_and_all_is_cleaned() {
    let Some(limits) = enforceable(Limits {
        pids: Some(20),
        ..Limits::default()
    }) else {
        return;
    };
    let cg = Cgroup::create(&limits).expect("create");
    let dir = cg.path_of(Controller::Pids).unwrap().to_path_buf();
    assert_eq!(read(&dir.join("pids.max")), "20");
    // 200 background sleeps; the shell gives up (exit 2) when fork fails.
    let mut child = spawn_in(
        &cg,
        "i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; echo all-forked",
    );
    let status = wait_timeout(&mut child, Duration::from_secs(30));
    assert!(!status.success(), "fork must fail at the limit: {status:?}");
    let procs = cg.procs().expect("procs");
    assert!(
        !procs.is_empty() && procs.len() <= 20,
        "{} processes in a cgroup limited to 20",
        procs.len()
    );
    if let Ok(events) = std::fs::read_to_string(dir.join("pids.events")) {
        assert!(
            field(&events, "max").unwrap_or(0) > 0,
            "pids.events: {events}"
        );
    }
    let start = Instant::now();
    cg.kill_all().expect("kill_all");
    eprintln!(
        "killed {} sleeping processes in {:?}",
        procs.len(),
        start.elapsed()
    );
    assert!(cg.procs().unwrap().is_empty());
    // The sleeps were reparented and reaped; none is left.
    std::thread::sleep(Duration::from_millis(100));
    let survivors: Vec<u32> = procs.iter().copied().filter(|&p| alive(p)).collect();
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
    cg.remove().expect("remove");
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn cpu_quota_is_written_and_throttles() {
    let Some(limits) = enforceable(Limits {
        cpus: Some(0.5),
        ..Limits::default()
    }) else {
        return;
    };
    let cg = Cgroup::create(&limits).expect("create");
    let dir = cg.path_of(Controller::Cpu).unwrap().to_path_buf();
    match cg.version_of(Controller::Cpu).unwrap() {
        Version::V1 => {
            assert_eq!(read(&dir.join("cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&dir.join("cpu.cfs_period_us")), "100000");
        }
        Version::V2 => {
            assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        }
    }
    let mut child = spawn_in(&cg, "while :; do :; done");
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    // utime + stime of the busy shell, in clock ticks.
    let stat = read(Path::new(&format!("/proc/{}/stat", child.id())));
    let wall = start.elapsed().as_secs_f64();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ratio = ticks as f64 / hz / wall;
    let throttled = field(&read(&dir.join("cpu.stat")), "nr_throttled").unwrap_or(0);
    eprintln!(
        "cpu quota 0.5: busy loop got {ratio:.2} CPU over {wall:.2} s, throttled {throttled} times"
    );
    cg.kill_all().expect("kill_all");
    let _ = child.wait();
    assert!(
        ratio < 0.75,
        "a 0.5 CPU quota let a busy loop use {ratio:.2} CPU"
    );
    // nr_throttled is only printed: on a busy 2-core machine the loop may
    // not even reach its quota.
    cg.remove().expect("remove");
}

#[test]
fn drop_kills_and_removes() {
    let Some(limits) = enforceable(Limits {
        pids: Some(50),
        memory: Some(256 * MIB),
        ..Limits::default()
    }) else {
        return;
    };
    let cg = Cgroup::create(&limits).expect("create");
    assert!(cg
        .name()
        .starts_with(&format!("cleanroom-{}-", std::process::id())));
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
    assert!(
        paths.len() >= 2,
        "pids and memory (v1: two hierarchies): {paths:?}"
    );
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    cg.add_process(child.id()).expect("add_process");
    for p in &paths {
        assert!(read(&p.join("cgroup.procs")).contains(&child.id().to_string()));
    }
    drop(cg);
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn gc_removes_dead_owners_cgroups_and_keeps_live_ones() {
    let Some(limits) = enforceable(Limits {
        memory: Some(64 * MIB),
        ..Limits::default()
    }) else {
        return;
    };
    let ours = Cgroup::create(&limits).expect("create");
    // A dead owner: a process that has exited and been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead_owner = gone.id();
    // A live owner.
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    // A process left in the dead owner's cgroup.
    let mut orphan = Command::new("sleep").arg("60").spawn().unwrap();

    let mut dead_dirs = Vec::new();
    let mut live_dirs = Vec::new();
    for p in ours.paths() {
        let base = p.parent().unwrap();
        let dead = base.join(format!("cleanroom-{dead_owner}-0"));
        let alive = base.join(format!("cleanroom-{}-0", live.id()));
        std::fs::create_dir(&dead).unwrap();
        std::fs::create_dir(&alive).unwrap();
        std::fs::write(dead.join("cgroup.procs"), orphan.id().to_string()).unwrap();
        dead_dirs.push(dead);
        live_dirs.push(alive);
    }
    let report = cgroups::gc().expect("gc");
    let removed = report.removed;
    for d in &dead_dirs {
        assert!(!d.exists(), "gc left {}", d.display());
        assert!(removed.contains(&d.display().to_string()), "{removed:?}");
    }
    let status = wait_timeout(&mut orphan, Duration::from_secs(10));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "gc kills what was left"
    );
    for d in &live_dirs {
        assert!(d.exists(), "gc removed a live owner's {}", d.display());
        std::fs::remove_dir(d).unwrap();
    }
    for p in ours.paths() {
        assert!(p.exists(), "gc removed our own {}", p.display());
    }
    let _ = live.kill();
    let _ = live.wait();
    ours.remove().expect("remove");
}

/// Set in the re-executed test binary that sees only a cgroup v2 mount.
const V2_CHILD: &str = "CLEANROOM_TEST_CGROUP_V2_ONLY";

#[test]
fn cgroup_v2_tracks_and_kills_and_reports_missing_controllers() {
    if !is_root() {
        // Needs a private mount namespace; probe_explains_every_limit
        // covers the unprivileged answer.
        return;
    }
    run_in_v2_only("v2_only_child_body", None);
}

#[test]
fn rootless_in_a_delegated_v2_subtree_tracks_and_kills() {
    if !is_root() {
        return; // setting up the delegation needs root
    }
    run_in_v2_only("v2_delegated_child_body", Some(65534));
}

/// The first cgroup2 mount point in this process's mount table.
fn v2_mount_here() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
}

/// Re-runs this test binary, test `body` only, in a private mount namespace
/// where /sys/fs/cgroup (v1 hierarchies and all) is detached and a fresh
/// cgroup2 is mounted at a temporary directory: a pure cgroup v2 machine.
/// With `delegate_to`, the child first moves into a new cgroup
/// `cleanroom-deleg-test-<pid>` chowned to that uid (what systemd's
/// `Delegate=yes` does) and then runs as that uid.
fn run_in_v2_only(body: &str, delegate_to: Option<u32>) {
    let me = std::process::id();
    let mnt = std::env::temp_dir().join(format!("cleanroom-cg2-test-{me}-{body}"));
    std::fs::create_dir_all(&mnt).unwrap();
    let cstr = |p: &Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let target = cstr(&mnt);
    let deleg_name = format!("cleanroom-deleg-test-{me}");
    let deleg = mnt.join(&deleg_name);
    let deleg_files: Vec<std::ffi::CString> = [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ]
    .iter()
    .map(|f| {
        cstr(&if f.is_empty() {
            deleg.clone()
        } else {
            deleg.join(f)
        })
    })
    .collect();
    // A copy of this binary that any uid can run, outside `mnt`.
    let exe = std::env::current_exe().unwrap();
    let bin_dir = std::env::temp_dir().join(format!("cleanroom-cg2-bin-{me}-{body}"));
    let program = if delegate_to.is_some() {
        std::fs::create_dir_all(&bin_dir).unwrap();
        let copy = bin_dir.join("cgroups-test");
        std::fs::copy(&exe, &copy).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        exe
    };
    let mut cmd = Command::new(&program);
    cmd.args(["--exact", body, "--nocapture", "--test-threads=1"])
        .env(V2_CHILD, &mnt)
        .current_dir("/");
    // SAFETY: only raw system calls on C strings built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = c"none";
            if libc::mount(
                none.as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            if libc::umount2(c"/sys/fs/cgroup".as_ptr(), libc::MNT_DETACH) != 0 {
                return fail();
            }
            if libc::mount(
                none.as_ptr(),
                target.as_ptr(),
                c"cgroup2".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            let Some(uid) = delegate_to else {
                return Ok(());
            };
            if libc::mkdir(deleg_files[0].as_ptr(), 0o755) != 0 {
                return fail();
            }
            for f in &deleg_files {
                if libc::chown(f.as_ptr(), uid, uid) != 0 {
                    return fail();
                }
            }
            let fd = libc::open(deleg_files[1].as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return fail();
            }
            libc::close(fd);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(uid, uid, uid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("re-run the test binary");
    let _ = std::fs::remove_dir(&mnt);
    let _ = std::fs::remove_dir_all(&bin_dir);
    if delegate_to.is_some() {
        // The delegated cgroup lives on in the one v2 hierarchy.
        let host = v2_mount_here().expect("a cgroup2 mount").join(&deleg_name);
        if host.exists() {
            std::fs::remove_dir(&host)
                .unwrap_or_else(|e| panic!("removing {}: {e}", host.display()));
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{body} failed: {}\n{}\n{}",
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run by `rootless_in_a_delegated_v2_subtree_tracks_and_kills` as uid
/// 65534 in a delegated v2 cgroup; a no-op otherwise.
#[test]
fn v2_delegated_child_body() {
    let Some(mnt) = std::env::var_os(V2_CHILD) else {
        return;
    };
    let mnt = PathBuf::from(mnt);
    assert!(!is_root(), "the delegated child runs unprivileged");
    let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = membership
        .lines()
        .find_map(|l| l.strip_prefix("0::/"))
        .unwrap_or_else(|| panic!("no v2 line in {membership}"));
    assert!(own.starts_with("cleanroom-deleg-test-"), "{membership}");
    let deleg = mnt.join(own);

    // No v2 controller is delegated here: limits not enforced, with reason.
    let support = cgroups::probe(&Limits {
        memory: Some(64 * MIB),
        ..Limits::default()
    });
    let l = support.get(Controller::Memory).unwrap();
    let available = std::fs::read_to_string(deleg.join("cgroup.controllers")).unwrap();
    if !available.split_whitespace().any(|c| c == "memory") {
        assert!(
            !l.enforceable && l.reason.contains("not available"),
            "{l:?}"
        );
    }

    // Tracking and killing work rootless, below the delegated cgroup.
    let cg = Cgroup::create(&Limits::default()).expect("create in the delegated subtree");
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
    assert_eq!(paths.len(), 1);
    assert!(paths[0].starts_with(&deleg), "{paths:?}");
    let mut kids: Vec<Child> = (0..2)
        .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
        .collect();
    for k in &kids {
        cg.add_process(k.id())
            .expect("add_process as the delegated user");
    }
    let mut forker = spawn_in(&cg, "sleep 60 & wait");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cg.procs().unwrap().len(), 4, "2 sleeps, sh and its sleep");
    cg.kill_all().expect("kill_all as the delegated user");
    for k in kids.iter_mut().chain([&mut forker]) {
        let status = wait_timeout(k, Duration::from_secs(10));
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    cg.remove().expect("remove");
    assert!(!paths[0].exists());
    // gc as an ordinary user: nothing of a live owner, no error.
    let report = cgroups::gc().expect("gc");
    assert!(report.removed.is_empty(), "{report:?}");
    println!("delegated v2 checks done");
}

/// Run by `cgroup_v2_tracks_and_kills_and_reports_missing_controllers` in
/// the v2-only child; a no-op otherwise.
#[test]
fn v2_only_child_body() {
    let Some(mnt) = std::env::var_os(V2_CHILD) else {
        return;
    };
    let mnt = PathBuf::from(mnt);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(" - cgroup "),
        "v1 still visible:\n{mountinfo}"
    );

    // The controllers are not enabled in this v2 hierarchy: not enforced,
    // and the reason says so.
    let all = Limits {
        memory: Some(64 * MIB),
        cpus: Some(1.0),
        pids: Some(64),
    };
    let support = cgroups::probe(&all);
    for c in Controller::ALL {
        let available = std::fs::read_to_string(mnt.join("cgroup.controllers")).unwrap();
        let l = support.get(c).unwrap();
        assert_eq!(l.version, Some(Version::V2), "{l:?}");
        if available.split_whitespace().any(|a| a == c.name()) {
            continue; // a pure v2 machine: this one is really there
        }
        assert!(!l.enforceable, "{l:?}");
        assert!(l.reason.contains("not available"), "{l:?}");
        let err = Cgroup::create(&Limits {
            memory: all.memory.filter(|_| c == Controller::Memory),
            cpus: all.cpus.filter(|_| c == Controller::Cpu),
            pids: all.pids.filter(|_| c == Controller::Pids),
        })
        .expect_err("an unenforceable limit cannot be created");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
    }

    // Without limits the cgroup still tracks and kills, through cgroup.kill.
    for use_signals in [false, true] {
        let cg = Cgroup::create(&Limits::default()).expect("create in v2");
        let paths: Vec<PathBuf> = cg.paths().map(Path::to_path_buf).collect();
        assert_eq!(paths.len(), 1);
        assert!(paths[0].starts_with(&mnt), "{paths:?}");
        let mut kids: Vec<Child> = (0..3)
            .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
            .collect();
        for k in &kids {
            cg.add_process(k.id()).unwrap();
        }
        // A grandchild forked inside is tracked too.
        let mut forker = spawn_in(&cg, "sleep 60 & wait");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cg.procs().unwrap().len(), 5, "3 sleeps, sh and its sleep");
        if use_signals {
            cg.kill_all_with_signals().expect("kill with signals");
        } else {
            assert!(paths[0].join("cgroup.kill").exists());
            cg.kill_all().expect("cgroup.kill");
        }
        assert!(cg.procs().unwrap().is_empty());
        for k in kids.iter_mut().chain([&mut forker]) {
            let status = wait_timeout(k, Duration::from_secs(10));
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        cg.remove().expect("remove");
        assert!(!paths[0].exists());
    }
    // A child created straight into the cgroup (clone3 with
    // CLONE_INTO_CGROUP, as the sandbox's init is): it is in the cgroup at
    // once, and this process never was.
    let cg = Cgroup::create(&Limits::default()).expect("create in v2");
    let files = cg.open_procs().expect("open the cgroup's files");
    let (dir, procs) = files.v2().expect("a v2 directory");
    let sleep = c"/bin/sleep";
    let argv = [sleep.as_ptr(), c"60".as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // Raw system calls only: the test harness has other threads.
    let child = |_, _| {
        // SAFETY: execve with NUL-terminated arrays of C strings.
        unsafe { libc::execve(sleep.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        127
    };
    // SAFETY: the child only calls execve (and exits if that fails).
    let pid = unsafe { clone::vfork_with(child, 64 << 10, 0, clone::Cgroup::Into { dir, procs }) }
        .expect("clone3 into the cgroup");
    assert_eq!(cg.procs().unwrap(), vec![pid.as_raw_pid() as u32]);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(!own.contains(cg.name()), "{own}");
    cg.kill_all().expect("cgroup.kill");
    let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .unwrap()
        .expect("the child was waited for");
    assert_eq!(
        status.terminating_signal(),
        Some(rustix::process::Signal::KILL.as_raw()),
        "{status:?}"
    );
    cg.remove().expect("remove");
    println!("v2-only checks done");
}

#[test]
fn invalid_limits_and_support_helpers() {
    for bad in [
        Limits {
            cpus: Some(f64::NAN),
            ..Limits::default()
        },
        Limits {
            cpus: Some(-1.0),
            ..Limits::default()
        },
        Limits {
            memory: Some(0),
            ..Limits::default()
        },
        Limits {
            pids: Some(0),
            ..Limits::default()
        },
    ] {
        let err = Cgroup::create(&bad).expect_err("invalid limits");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::InvalidInput,
            "{bad:?}: {err}"
        );
    }
    let wanted = Limits {
        memory: Some(64 * MIB),
        cpus: Some(2.0),
        pids: Some(10),
    };
    let support = cgroups::probe(&wanted);
    let subset = support.enforceable(&wanted);
    for c in Controller::ALL {
        let l = support.get(c).unwrap();
        let kept = match c {
            Controller::Memory => subset.memory.is_some(),
            Controller::Cpu => subset.cpus.is_some(),
            Controller::Pids => subset.pids.is_some(),
        };
        assert_eq!(kept, l.enforceable, "{l:?}");
    }
    let warnings = support.warnings();
    assert_eq!(
        warnings.len(),
        support.limits.iter().filter(|l| !l.enforceable).count()
    );
    for w in warnings {
        assert!(w.starts_with("native backend cannot enforce the "), "{w}");
    }
}
