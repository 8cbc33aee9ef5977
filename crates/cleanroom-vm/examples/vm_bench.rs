//! Side by side in one run: the vm backend's boot to first command
//! (one-shot `true`) and exec into a running VM, beside the native
//! backend's one-shot `true` and `docker run --rm` (when docker answers).
//! Medians of `CLEANROOM_BENCH_RUNS` (default 3) runs each.
//!
//! `cargo run -p cleanroom-vm --example vm_bench` (after `cleanroom vm setup`;
//! the agent is this build's).

use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, SandboxSpec};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::var("CLEANROOM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if std::env::var_os("CLEANROOM_VM_AGENT").is_none() {
        let agent = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join(cleanroom_vm::AGENT_BIN))
            .unwrap();
        std::env::set_var("CLEANROOM_VM_AGENT", agent);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = SandboxSpec::default();
    let probe = cleanroom_vm::accelerator().unwrap();
    println!("accelerator: {} ({})", probe.accel.name(), probe.why);

    let vm = cleanroom_vm::VmBackend::new();
    let mut boots = Vec::new();
    let mut oneshot = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = rt.block_on(vm.run(&spec, Cmd::new("true"))).unwrap();
        oneshot.push(t.elapsed());
        let boot = r
            .enforcement
            .notes
            .iter()
            .find_map(|n| {
                n.split("booted in ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap();
        boots.push(Duration::from_millis(boot));
    }
    println!("vm: boot to the agent        {}", ms(median(boots)));
    println!("vm: one-shot `true`          {}", ms(median(oneshot)));

    let sb = rt.block_on(vm.create(&spec, None)).unwrap();
    let mut execs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        rt.block_on(sb.exec(Cmd::new("true"))).unwrap();
        execs.push(t.elapsed());
    }
    rt.block_on(sb.remove()).unwrap();
    println!("vm: exec `true` in a running VM {}", ms(median(execs)));

    let native = cleanroom_native::NativeBackend::new();
    let mut nat = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        rt.block_on(native.run(&spec, Cmd::new("true"))).unwrap();
        nat.push(t.elapsed());
    }
    println!("native: one-shot `true`      {}", ms(median(nat)));

    let mut docker = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let ok = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "cleanroom-busybox:latest",
                "true",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            println!("docker run --rm: not measured (docker or cleanroom-busybox:latest missing)");
            return;
        }
        docker.push(t.elapsed());
    }
    println!("docker run --rm `true`       {}", ms(median(docker)));
}
