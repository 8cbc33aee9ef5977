//! `cleanroom plan`, `convert`, `up`, `env ...` and `down` end to end: the
//! same plan from a TOML file and from a compose file, errors at
//! file:line, and a real three-service environment on native.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{command, text};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cleanroom-env/tests/data")
        .join(name)
}

/// A temporary directory named `three` (the environment's name) with the
/// three-service files in it.
fn three() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("three");
    std::fs::create_dir(&dir).unwrap();
    for f in ["cleanroom.toml", "compose.yaml"] {
        std::fs::copy(data("three").join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

/// The binary in `dir` with its own state directory.
fn run(dir: &Path, state: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .env("CLEANROOM_STATE_DIR", state)
        .output()
        .expect("running cleanroom")
}

#[test]
fn plan_is_the_same_from_toml_and_from_compose() {
    let (tmp, dir) = three();
    let toml = run(&dir, tmp.path(), &["plan", "--backend", "local"]);
    assert!(toml.status.success(), "{}", text(&toml.stderr));
    let out = text(&toml.stdout);
    assert!(out.contains("environment three on local"), "{out}");
    assert!(
        out.contains("level 0: redis, migrate\nlevel 1: app\n"),
        "{out}"
    );
    assert!(out.contains("wiring: REDIS_PORT=6379"), "{out}");
    assert!(
        out.contains("NOT enforced"),
        "local says what it cannot enforce: {out}"
    );
    let compose = run(
        &dir,
        tmp.path(),
        &["plan", "-f", "compose.yaml", "--backend", "local"],
    );
    assert!(compose.status.success(), "{}", text(&compose.stderr));
    assert_eq!(text(&compose.stdout), out);

    // convert's TOML plans the same again.
    let converted = run(&dir, tmp.path(), &["convert", "compose.yaml"]);
    assert!(converted.status.success(), "{}", text(&converted.stderr));
    std::fs::write(dir.join("converted.toml"), &converted.stdout).unwrap();
    let again = run(
        &dir,
        tmp.path(),
        &["plan", "-f", "converted.toml", "--backend", "local"],
    );
    assert_eq!(text(&again.stdout), out, "{}", text(&again.stderr));
}

#[test]
fn file_mistakes_are_errors_at_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "cycle.yaml",
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            &[],
            "cycle.yaml:7: error: cyclic depends_on: a -> b -> a",
        ),
        (
            "unknown.yaml",
            "services:\n  a:\n    image: x\n    depends_on: [bb]\n  b:\n    image: x\n",
            &[],
            "unknown.yaml:4: error: service `a` depends on unknown service `bb`; did you mean `b`?",
        ),
        (
            "key.yaml",
            "services:\n  a:\n    image: x\n    comand: [echo]\n",
            &["--strict"],
            "key.yaml:4: error: unknown key `comand` in service `a`; it is not used; did you mean `command`?",
        ),
        (
            "var.yaml",
            "services:\n  a:\n    image: ${CLEANROOM_TEST_NO_SUCH_VAR:?name the image}\n",
            &[],
            "var.yaml:3: error: required variable `CLEANROOM_TEST_NO_SUCH_VAR` is not set: name the image",
        ),
        (
            "port.yaml",
            "services:\n  a:\n    image: x\n    ports: [\"80\"]\n  b:\n    image: x\n    ports: [\"8080:80\"]\n",
            &[],
            "port.yaml:5: error: services `a` and `b` both listen on port 80",
        ),
    ];
    for (file, body, extra, expected) in cases {
        std::fs::write(dir.join(file), body).unwrap();
        let mut args = vec!["plan", "-f", file, "--backend", "local"];
        args.extend_from_slice(extra);
        let out = run(dir, dir, &args);
        assert_eq!(out.status.code(), Some(1), "{file}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(expected),
            "{file}: {}",
            text(&out.stderr)
        );
    }
    // Without --strict an unknown key is a warning and the plan goes on.
    let out = run(dir, dir, &["plan", "-f", "key.yaml", "--backend", "local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("key.yaml:4: warning: unknown key `comand`"),
        "{}",
        text(&out.stderr)
    );
}

/// `down` of one environment when dropped, so that a failed assertion
/// leaves no sandbox running behind the test.
struct Down<'a> {
    dir: &'a Path,
    state: &'a Path,
    backend: &'a str,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        run(
            self.dir,
            self.state,
            &["down", "--volumes", "--backend", self.backend],
        );
    }
}

/// The acceptance environment on native, with host tools: redis; a one-shot
/// `migrate` that seeds it; an HTTP app serving what migrate wrote, once
/// redis is healthy and migrate completed. Three levels.
const NATIVE_TOML: &str = r#"[services.redis]
image = "host"
command = ["redis-server", "--port", "6390", "--save", "", "--appendonly", "no"]
ports = [6390]
healthcheck = { test = ["CMD", "redis-cli", "-p", "6390", "ping"], interval = "100ms", timeout = "2s", retries = 50 }

[services.migrate]
image = "host"
command = ["sh", "-c", "redis-cli -h $REDIS_HOST -p $REDIS_PORT set greeting hi && echo migrated"]
depends_on = { redis = "service_healthy" }

[services.app]
image = "host"
command = ["sh", "-c", "mkdir -p /tmp/www && redis-cli -h redis -p 6390 get greeting > /tmp/www/index.html && exec busybox httpd -f -p 8091 -h /tmp/www"]
ports = [8091]
depends_on = { redis = "service_healthy", migrate = "service_completed_successfully" }
healthcheck = { test = ["CMD", "busybox", "wget", "-qO-", "http://127.0.0.1:8091/"], interval = "100ms", retries = 50 }
"#;

/// [`NATIVE_TOML`] as a compose file.
const NATIVE_COMPOSE: &str = r#"services:
  redis:
    image: host
    command: ["redis-server", "--port", "6390", "--save", "", "--appendonly", "no"]
    ports: ["6390"]
    healthcheck:
      test: ["CMD", "redis-cli", "-p", "6390", "ping"]
      interval: 100ms
      timeout: 2s
      retries: 50
  migrate:
    image: host
    command: ["sh", "-c", "redis-cli -h $$REDIS_HOST -p $$REDIS_PORT set greeting hi && echo migrated"]
    depends_on:
      redis:
        condition: service_healthy
  app:
    image: host
    command: ["sh", "-c", "mkdir -p /tmp/www && redis-cli -h redis -p 6390 get greeting > /tmp/www/index.html && exec busybox httpd -f -p 8091 -h /tmp/www"]
    ports: ["8091"]
    depends_on:
      redis:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    healthcheck:
      test: ["CMD", "busybox", "wget", "-qO-", "http://127.0.0.1:8091/"]
      interval: 100ms
      retries: 50
"#;

/// A directory `trio` holding both forms, and a state directory beside it.
fn native_trio() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trio");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cleanroom.toml"), NATIVE_TOML).unwrap();
    std::fs::write(dir.join("compose.yaml"), NATIVE_COMPOSE).unwrap();
    (tmp, dir, state)
}

#[test]
fn three_services_on_native_plan_the_same_from_toml_compose_and_convert() {
    let (_tmp, dir, state) = native_trio();
    if !common::native_available(&dir) {
        return;
    }
    let plan = |args: &[&str]| {
        let mut a = vec!["plan", "--backend", "native"];
        a.extend_from_slice(args);
        let out = run(&dir, &state, &a);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let toml = plan(&[]);
    assert!(
        toml.contains("environment trio on native (3 services, one pod)\nlevel 0: redis\nlevel 1: migrate\nlevel 2: app\n"),
        "{toml}"
    );
    assert!(toml.contains("wiring: REDIS_PORT=6390"), "{toml}");
    assert_eq!(plan(&["-f", "compose.yaml"]), toml);
    let converted = run(&dir, &state, &["convert", "compose.yaml"]);
    assert!(converted.status.success(), "{}", text(&converted.stderr));
    let converted = text(&converted.stdout);
    // Round trip: the compose file converts back to the hand-written TOML.
    let body = converted
        .split_once("\n\n")
        .map(|(_, b)| b)
        .unwrap_or(&converted);
    assert_eq!(body, NATIVE_TOML, "{converted}");
    std::fs::write(dir.join("converted.toml"), &converted).unwrap();
    assert_eq!(plan(&["-f", "converted.toml"]), toml);
}

/// The running sandboxes' init processes and cgroups, from their records.
fn native_traces(state: &Path) -> Vec<(u32, u64, Vec<PathBuf>)> {
    std::fs::read_dir(state)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("record.json")).ok())
        .map(|b| {
            let r: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let cgroups = r["cgroup"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| PathBuf::from(p.as_str().unwrap()))
                .collect();
            (
                r["init_pid"].as_u64().unwrap() as u32,
                r["init_start"].as_u64().unwrap(),
                cgroups,
            )
        })
        .collect()
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// up -d, the wiring and the names, ps, logs, exec, restart, and a `down`
/// that leaves no process, cgroup, mount or state behind.
fn three_services_on_native(file: &[&str]) {
    let (_tmp, dir, state) = native_trio();
    if !common::native_available(&dir) {
        return;
    }
    // `env ps` lists every environment: it takes no file.
    let ps = || run(&dir, &state, &["env", "ps", "-a", "--backend", "native"]);
    let with = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(file);
        a.extend_from_slice(&["--backend", "native"]);
        run(&dir, &state, &a)
    };
    let up = with(&["up", "-d"]);
    let _down = Down {
        dir: &dir,
        state: &state,
        backend: "native",
    };
    assert!(up.status.success(), "{}", text(&up.stderr));
    let up_err = text(&up.stderr);
    assert!(
        up_err.contains("redis: healthy") && up_err.contains("app: healthy"),
        "up -d returns once all are healthy: {up_err}"
    );
    let traces = native_traces(&state);
    assert_eq!(traces.len(), 4, "three services and the pod");

    let ex = |args: &[&str]| {
        let mut a = vec!["env", "exec"];
        a.extend_from_slice(file);
        a.extend_from_slice(&["--backend", "native"]);
        a.extend_from_slice(args);
        run(&dir, &state, &a)
    };
    // Through the wiring, and through the name `redis`.
    let got = ex(&[
        "app",
        "--",
        "sh",
        "-c",
        "redis-cli -h $REDIS_HOST -p $REDIS_PORT get greeting",
    ]);
    assert_eq!(text(&got.stdout).trim(), "hi", "{}", text(&got.stderr));
    let got = ex(&[
        "app",
        "--",
        "redis-cli",
        "-h",
        "redis",
        "-p",
        "6390",
        "ping",
    ]);
    assert_eq!(text(&got.stdout).trim(), "PONG", "{}", text(&got.stderr));
    let got = ex(&["redis", "--", "busybox", "wget", "-qO-", "http://app:8091/"]);
    assert_eq!(text(&got.stdout).trim(), "hi", "{}", text(&got.stderr));

    let ps_out = text(&ps().stdout);
    for s in ["trio-redis", "trio-migrate", "trio-app", "trio-pod"] {
        assert!(ps_out.contains(s), "{ps_out}");
    }
    let logs = with(&["env", "logs", "migrate"]);
    assert!(
        text(&logs.stdout).contains("migrate | migrated"),
        "{}{}",
        text(&logs.stdout),
        text(&logs.stderr)
    );

    let restarted = with(&["env", "restart", "redis"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let got = ex(&[
        "app",
        "--",
        "redis-cli",
        "-h",
        "redis",
        "-p",
        "6390",
        "get",
        "greeting",
    ]);
    assert_eq!(
        text(&got.stdout).trim(),
        "",
        "a fresh redis has no keys: {}",
        text(&got.stderr)
    );
    let traces: Vec<_> = traces.into_iter().chain(native_traces(&state)).collect();

    let down = with(&["down", "--volumes"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let ps_out = text(&ps().stdout);
    assert!(!ps_out.contains("trio"), "{ps_out}");
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "env")
        .collect();
    assert!(left.is_empty(), "down leaves no sandbox state: {left:?}");
    assert!(
        !state.join("env/trio").exists(),
        "down leaves no environment state"
    );
    for (pid, start, cgroups) in traces {
        assert_ne!(
            start_time(pid),
            Some(start),
            "down leaves no process: init {pid} still runs"
        );
        for cg in cgroups {
            assert!(!cg.exists(), "down leaves no cgroup: {}", cg.display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state_text = state.display().to_string();
    assert!(
        !mounts.contains(&state_text),
        "down leaves no mount under the state directory: {mounts}"
    );
}

#[test]
fn three_services_on_native_up_exec_restart_down() {
    three_services_on_native(&[]);
}

#[test]
fn three_services_on_native_from_the_compose_file() {
    three_services_on_native(&["--file", "compose.yaml"]);
}

#[test]
fn a_healthcheck_that_never_passes_names_the_service_and_stops_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sick");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    if !common::native_available(&dir) {
        return;
    }
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  db:\n    image: host\n    command: [\"sh\", \"-c\", \"echo db-booting; exec sleep 100\"]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"echo probe-said-no; exit 1\"]\n      interval: 100ms\n      retries: 3\n  app:\n    image: host\n    command: [\"sleep\", \"100\"]\n    depends_on:\n      db:\n        condition: service_healthy\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let up = run(&dir, &state, &["up", "-d", "--backend", "native"]);
    let err = text(&up.stderr);
    assert_eq!(up.status.code(), Some(1), "{err}");
    assert!(started.elapsed().as_secs() < 20, "fails within its retries");
    assert!(err.contains("service `app` is blocked: dependency `db` did not reach service_healthy: failed 3 health probes"), "{err}");
    assert!(
        err.contains("last health probe output: probe-said-no"),
        "{err}"
    );
    assert!(err.contains("db-booting"), "log tail: {err}");
    let ps = run(&dir, &state, &["env", "ps", "-a", "--backend", "native"]);
    assert!(
        !text(&ps.stdout).contains("sick"),
        "everything started was removed: {}",
        text(&ps.stdout)
    );
}

#[test]
fn every_environment_command_parses_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    for c in [
        &["up"][..],
        &["plan"],
        &["down"],
        &["convert"],
        &["env"],
        &["env", "ps"],
        &["env", "logs"],
        &["env", "exec"],
        &["env", "stop"],
        &["env", "restart"],
    ] {
        let mut args = c.to_vec();
        args.push("--help");
        let out = run(tmp.path(), tmp.path(), &args);
        assert!(out.status.success(), "{c:?}: {}", text(&out.stderr));
    }
}

/// The busybox environment of the benchmark on an engine: up, wiring, the
/// names, logs, restart, a failing probe, down.
fn three_services_on(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("trio-{engine}"));
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cleanroom-env/bench/compose.yaml");
    std::fs::copy(bench, dir.join("compose.yaml")).unwrap();
    if !common::backend_available(&dir, engine) {
        return;
    }
    let up = run(&dir, &state, &["up", "-d", "--backend", engine]);
    let _down = Down {
        dir: &dir,
        state: &state,
        backend: engine,
    };
    assert!(up.status.success(), "{}", text(&up.stderr));
    let ex = |args: &[&str]| {
        let mut a = vec!["env", "exec", "--backend", engine];
        a.extend_from_slice(args);
        run(&dir, &state, &a)
    };
    let got = ex(&[
        "app",
        "--",
        "sh",
        "-c",
        "wget -qO- http://$KV_HOST:$KV_PORT/k && wget -qO- http://kv:7000/k",
    ]);
    assert_eq!(text(&got.stdout), "v1\nv1\n", "{}", text(&got.stderr));
    let logs = run(&dir, &state, &["env", "logs", "--backend", engine]);
    let l = text(&logs.stdout);
    assert!(
        l.contains("migrate | migrated") && l.contains("kv      | kv-up"),
        "{l}"
    );
    let restarted = run(&dir, &state, &["env", "restart", "kv", "--backend", engine]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let down = run(&dir, &state, &["down", "--backend", engine, "--grace", "1"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let ps = run(&dir, &state, &["env", "ps", "-a", "--backend", engine]);
    assert!(!text(&ps.stdout).contains("trio"), "{}", text(&ps.stdout));
}

#[test]
fn three_services_on_docker() {
    three_services_on("docker");
}

#[test]
fn three_services_on_podman() {
    three_services_on("podman");
}

#[test]
fn test_file_services_resolve_by_name_on_native() {
    let tmp = tempfile::tempdir().unwrap();
    if !common::native_available(tmp.path()) {
        return;
    }
    std::fs::write(
        tmp.path().join("named.clnrm.toml"),
        r#"
[services.web]
command = ["sh", "-c", "mkdir -p /tmp/w && echo served > /tmp/w/i && exec busybox httpd -f -p 8095 -h /tmp/w"]
ports = [8095]
wait_for = { port = 8095, timeout = "10s" }

[[steps]]
name = "by name and by wiring"
command = ["sh", "-c", "busybox wget -qO- http://web:8095/i && busybox wget -qO- http://$WEB_HOST:$WEB_PORT/i"]
expected_output = "served\nserved"
"#,
    )
    .unwrap();
    let out = run(
        tmp.path(),
        tmp.path(),
        &["test", "--backend", "native", "named.clnrm.toml"],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A test file that names an environment: it is up (healthy) before the
/// steps, the steps reach it by name and wiring, and it is gone after.
fn a_test_file_brings_up_its_environment(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cleanroom-env/bench/compose.yaml");
    std::fs::copy(bench, tmp.path().join("compose.yaml")).unwrap();
    std::fs::write(
        tmp.path().join("uses-env.clnrm.toml"),
        "environment = \"compose.yaml\"\n\n[[steps]]\nname = \"reaches kv\"\ncommand = [\"sh\", \"-c\", \"wget -qO- http://kv:7000/k && echo $KV_HOST:$KV_PORT\"]\nexpected_output = \"v1\\nkv:7000\"\n",
    )
    .unwrap();
    let state = tmp.path().join("state");
    if !common::backend_available(tmp.path(), engine) {
        return;
    }
    let out = run(
        tmp.path(),
        &state,
        &["test", "--backend", engine, "uses-env.clnrm.toml"],
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    let ps = run(
        tmp.path(),
        &state,
        &["env", "ps", "-a", "--backend", engine],
    );
    assert!(
        !text(&ps.stdout).contains("clnrm-"),
        "removed after the test: {}",
        text(&ps.stdout)
    );
}

#[test]
fn a_test_file_brings_up_its_environment_on_docker() {
    a_test_file_brings_up_its_environment("docker");
}

#[test]
fn a_test_file_brings_up_its_environment_on_podman() {
    a_test_file_brings_up_its_environment("podman");
}
