//! What `cleanroom up -d` + `cleanroom down` cost on top of the services'
//! own start time, for the three-service environment (redis healthy → a
//! one-shot `migrate` → an HTTP `app`), on the native backend with host tools.
//!
//! Paired rounds of whole processes, A B A B: A starts the same three
//! commands directly on the host, each waited for as `up` waits for it
//! (redis answers `ping`, migrate exits 0, the app answers HTTP), then stops
//! them; B is `cleanroom up -d` then `cleanroom down` of the same services.
//! Prints the medians, their ratio and the overhead (B − A).
//!
//! ```text
//! cargo build --release -p cleanroom-cli
//! cargo run --release -p cleanroom-env --example updown -- target/release/cleanroom 10
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports of the host run; in the environment they are the pod's own.
const REDIS_PORT: u16 = 16390;
const APP_PORT: u16 = 18091;
/// How often the host run checks that a service is ready.
const POLL: Duration = Duration::from_millis(10);
/// How long one start may take before the benchmark gives up.
const GIVE_UP: Duration = Duration::from_secs(30);

fn environment_toml() -> String {
    format!(
        r#"[services.redis]
image = "host"
command = ["redis-server", "--port", "{REDIS_PORT}", "--save", "", "--appendonly", "no"]
ports = [{REDIS_PORT}]
healthcheck = {{ test = ["CMD", "redis-cli", "-p", "{REDIS_PORT}", "ping"], interval = "100ms", timeout = "2s", retries = 50 }}

[services.migrate]
image = "host"
command = ["sh", "-c", "redis-cli -h $REDIS_HOST -p $REDIS_PORT set greeting hi && echo migrated"]
depends_on = {{ redis = "service_healthy" }}

[services.app]
image = "host"
command = ["sh", "-c", "{APP}"]
ports = [{APP_PORT}]
depends_on = {{ redis = "service_healthy", migrate = "service_completed_successfully" }}
healthcheck = {{ test = ["CMD", "busybox", "wget", "-qO-", "http://127.0.0.1:{APP_PORT}/"], interval = "100ms", retries = 50 }}
"#,
        APP = app_script("/tmp/www", "redis")
    )
}

/// The app: serves what migrate stored in redis.
fn app_script(www: &str, redis: &str) -> String {
    format!(
        "mkdir -p {www} && redis-cli -h {redis} -p {REDIS_PORT} get greeting > {www}/index.html && exec busybox httpd -f -p {APP_PORT} -h {www}"
    )
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs `cmd` again every [`POLL`] until it exits 0.
fn until_ok(what: &str, mut cmd: impl FnMut() -> Command) {
    let t0 = Instant::now();
    loop {
        if quiet(&mut cmd()).status().is_ok_and(|s| s.success()) {
            return;
        }
        assert!(t0.elapsed() < GIVE_UP, "{what} never got ready");
        std::thread::sleep(POLL);
    }
}

fn command(argv: &[&str]) -> Command {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]);
    c
}

fn stop(mut child: Child) {
    // SIGTERM, as `down` sends it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A: the services' own start (each waited for in turn) and stop.
fn host_round(dir: &Path) -> Duration {
    let www = dir.join("www");
    let port = REDIS_PORT.to_string();
    let t0 = Instant::now();
    let redis = quiet(&mut command(&[
        "redis-server",
        "--port",
        &port,
        "--save",
        "",
        "--appendonly",
        "no",
    ]))
    .spawn()
    .expect("redis-server");
    until_ok("redis", || command(&["redis-cli", "-p", &port, "ping"]));
    let script = format!("redis-cli -h 127.0.0.1 -p {port} set greeting hi && echo migrated");
    let migrated = quiet(&mut command(&["sh", "-c", &script]))
        .status()
        .expect("migrate");
    assert!(migrated.success(), "migrate failed");
    let app = quiet(&mut command(&[
        "sh",
        "-c",
        &app_script(&www.display().to_string(), "127.0.0.1"),
    ]))
    .spawn()
    .expect("app");
    let url = format!("http://127.0.0.1:{APP_PORT}/");
    until_ok("app", || command(&["busybox", "wget", "-qO-", &url]));
    stop(app);
    stop(redis);
    t0.elapsed()
}

/// B: `up -d` then `down`, each a whole process; (up, down).
fn cleanroom_round(bin: &Path, dir: &Path) -> (Duration, Duration) {
    let run = |args: &[&str]| {
        let t0 = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("running cleanroom");
        assert!(
            out.status.success(),
            "cleanroom {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        t0.elapsed()
    };
    let up = run(&[
        "up",
        "-d",
        "-f",
        "env.toml",
        "-p",
        "updown-bench",
        "--backend",
        "native",
    ]);
    let down = run(&["down", "-p", "updown-bench", "--backend", "native"]);
    (up, down)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bin = PathBuf::from(args.next().unwrap_or_else(|| "cleanroom".to_string()));
    let rounds: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .max(1);
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let dir = std::env::temp_dir().join(format!("cleanroom-updown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the work directory");
    std::fs::write(dir.join("env.toml"), environment_toml()).expect("writing env.toml");

    // One of each first: caches warm, a broken setup fails early.
    host_round(&dir);
    cleanroom_round(&bin, &dir);
    let (mut host, mut up, mut down, mut both, mut overhead) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!("round  host(A) ms  up -d ms  down ms  up+down(B) ms");
    for i in 0..rounds {
        let a = host_round(&dir);
        let (u, d) = cleanroom_round(&bin, &dir);
        println!(
            "{:>5}  {:>10.1}  {:>8.1}  {:>7.1}  {:>13.1}",
            i + 1,
            ms(a),
            ms(u),
            ms(d),
            ms(u + d)
        );
        host.push(a);
        up.push(u);
        down.push(d);
        both.push(u + d);
        overhead.push((u + d).saturating_sub(a));
    }
    let (a, b) = (median(host), median(both));
    println!(
        "medians over {rounds} paired rounds: services on the host {:.1} ms; cleanroom up -d {:.1} ms + down {:.1} ms = {:.1} ms",
        ms(a),
        ms(median(up)),
        ms(median(down)),
        ms(b)
    );
    println!(
        "ratio B/A {:.2}; overhead B - A {:.1} ms (median of paired differences {:.1} ms)",
        b.as_secs_f64() / a.as_secs_f64(),
        ms(b.saturating_sub(a)),
        ms(median(overhead))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
