//! Reading environments: the same services from TOML and from compose,
//! `convert` round-trips, and every kind of mistake reported at file:line.

use std::path::{Path, PathBuf};

use cleanroom_env::{
    convert, load, plan::plan_in, Condition, EnvError, Environment, LoadOptions, Probe, Restart,
    Severity,
};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn load_file(dir: &Path, file: &str) -> Result<Environment, EnvError> {
    load(&LoadOptions {
        dir: dir.to_path_buf(),
        files: vec![PathBuf::from(file)],
        ..LoadOptions::default()
    })
}

/// The services with their file locations cleared, to compare two files.
fn services(env: &Environment) -> Vec<cleanroom_env::Service> {
    env.services
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.at = Default::default();
            for d in &mut s.depends_on {
                d.at = Default::default();
            }
            s
        })
        .collect()
}

fn problems(e: EnvError) -> Vec<String> {
    match e {
        EnvError::Problems(list) => list.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected problems, got {other}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn toml_and_compose_give_the_same_services() {
    let dir = data("three");
    let toml = load_file(&dir, "cleanroom.toml").unwrap();
    let compose = load_file(&dir, "compose.yaml").unwrap();
    assert_eq!(toml.name, "three");
    assert!(toml.warnings.is_empty(), "{:?}", toml.warnings);
    assert!(compose.warnings.is_empty(), "{:?}", compose.warnings);
    assert_eq!(services(&toml), services(&compose));

    let app = toml.service("app").unwrap();
    assert_eq!(app.env["GREETING"], "hello");
    assert_eq!(app.restart, Restart::OnFailure(Some(3)));
    assert_eq!(app.depends_on[0].service, "redis");
    assert_eq!(app.depends_on[0].condition, Condition::Healthy);
    assert_eq!(
        app.depends_on[1].condition,
        Condition::CompletedSuccessfully
    );
    let redis = compose.service("redis").unwrap();
    assert_eq!(
        redis.image.as_deref(),
        Some("host"),
        "merge key from the x- anchor"
    );
    assert_eq!(
        redis.command.as_ref().unwrap()[4],
        "",
        "\"\" is an empty word"
    );
    let h = redis.healthcheck.as_ref().unwrap();
    assert_eq!(
        h.test,
        Probe::Cmd(vec![
            "redis-cli".into(),
            "-p".into(),
            "6379".into(),
            "ping".into()
        ])
    );
    assert_eq!(h.retries, 25);
    assert_eq!(redis.at.line, 6);
}

#[test]
fn convert_round_trips_to_the_same_services() {
    let dir = data("three");
    let compose = load_file(&dir, "compose.yaml").unwrap();
    let text = convert::to_toml(&compose);
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "converted.toml", &text);
    let back = load_file(tmp.path(), "converted.toml").unwrap();
    assert_eq!(services(&back), services(&compose), "{text}");
    // Converting the converted file gives the same text but for its header.
    let again = convert::to_toml(&back);
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&text));
}

#[test]
fn plan_levels_are_the_same_for_both_files() {
    let dir = data("three");
    let backend = cleanroom::LocalBackend::new();
    let tmp = tempfile::tempdir().unwrap();
    for file in ["cleanroom.toml", "compose.yaml"] {
        let env = load_file(&dir, file).unwrap();
        let p = plan_in(
            &env,
            &[],
            &backend,
            &cleanroom::SandboxSpec::default(),
            tmp.path(),
        )
        .unwrap();
        assert_eq!(
            p.levels,
            vec![
                vec!["redis".to_string(), "migrate".to_string()],
                vec!["app".to_string()]
            ]
        );
        let app = p.service("app").unwrap();
        assert_eq!(app.wiring["REDIS_HOST"], "redis");
        assert_eq!(app.wiring["REDIS_PORT"], "6379");
        assert_eq!(app.wiring["MIGRATE_HOST"], "migrate");
        assert!(!app.wiring.contains_key("MIGRATE_PORT"));
        assert_eq!(app.sandbox.spec.env["REDIS_PORT"], "6379");
        assert_eq!(app.sandbox.sandbox, "three-app");
        assert!(
            p.hosts.contains("127.0.0.1\tlocalhost redis migrate app"),
            "{}",
            p.hosts
        );
        let rendered = p.render();
        assert!(rendered.contains("level 0: redis, migrate"), "{rendered}");
        assert!(rendered.contains("level 1: app"), "{rendered}");
        assert!(
            rendered.contains("waits for: redis (service_healthy)"),
            "{rendered}"
        );
        assert!(
            rendered.contains("NOT enforced"),
            "local enforces little: {rendered}"
        );
        // Only app and what it needs.
        let only = plan_in(
            &env,
            &["migrate".to_string()],
            &backend,
            &cleanroom::SandboxSpec::default(),
            tmp.path(),
        )
        .unwrap();
        assert_eq!(only.levels, vec![vec!["migrate".to_string()]]);
    }
}

#[test]
fn a_cycle_is_named_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n");
    let p = problems(load_file(tmp.path(), "compose.yaml").unwrap_err());
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("compose.yaml:10: error: cyclic depends_on: a -> b -> c -> a"),
        "{p:?}"
    );
}

#[test]
fn an_unknown_dependency_gets_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "cleanroom.toml", "[services.redis]\nimage = \"x\"\n\n[services.app]\nimage = \"x\"\ndepends_on = [\"rdis\"]\n");
    let p = problems(load_file(tmp.path(), "cleanroom.toml").unwrap_err());
    assert!(p[0].contains("cleanroom.toml:6: error: service `app` depends on unknown service `rdis`; did you mean `redis`?"), "{p:?}");
}

#[test]
fn unknown_keys_warn_with_file_and_line_and_strict_makes_them_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  web:\n    image: x\n    imgae: y\n    x-note: fine\n    build: .\nx-top: fine\nnetworks: {}\n");
    let env = load_file(tmp.path(), "compose.yaml").unwrap();
    let w: Vec<String> = env.warnings.iter().map(|p| p.to_string()).collect();
    assert!(w.iter().any(|m| m.contains("compose.yaml:4: warning: unknown key `imgae` in service `web`; it is not used; did you mean `image`?")), "{w:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("compose.yaml:6: warning: unknown key `build`")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m
                .contains("compose.yaml:8: warning: unknown key `networks` in the compose file")),
        "{w:?}"
    );
    assert_eq!(w.len(), 3, "x- keys are not warned about: {w:?}");
    let strict = load(&LoadOptions {
        dir: tmp.path().to_path_buf(),
        strict: true,
        ..LoadOptions::default()
    });
    let p = problems(strict.unwrap_err());
    assert!(p.iter().all(|m| m.contains(": error: ")), "{p:?}");
    assert_eq!(p.len(), 3);
}

#[test]
fn a_missing_required_variable_is_an_error_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  db:\n    image: postgres\n    environment:\n      PASSWORD: ${CLEANROOM_TEST_UNSET_PW:?set the database password}\n");
    let p = problems(load_file(tmp.path(), "compose.yaml").unwrap_err());
    assert!(p[0].contains("compose.yaml:5: error: required variable `CLEANROOM_TEST_UNSET_PW` is not set: set the database password"), "{p:?}");
}

#[test]
fn dotenv_defaults_and_the_process_environment() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), ".env", "TAG=1.2\nPORT=5000\n");
    write(tmp.path(), "compose.yaml", "services:\n  web:\n    image: \"app:${TAG}\"\n    ports: [\"${PORT}:80\"]\n    environment:\n      - MODE=${MODE_UNSET_IN_TEST:-dev}\n      - COST=5$$\n");
    let env = load_file(tmp.path(), "compose.yaml").unwrap();
    let web = env.service("web").unwrap();
    assert_eq!(web.image.as_deref(), Some("app:1.2"));
    assert_eq!(web.ports[0].host, Some(5000));
    assert_eq!(web.env["MODE"], "dev");
    assert_eq!(web.env["COST"], "5$");
}

#[test]
fn several_files_merge_in_compose_order_and_profiles_select() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  web:\n    image: app:1\n    command: serve\n    ports: [\"80\"]\n    environment: [A=1, B=2]\n    volumes: [\"./a:/data\"]\n  debug:\n    image: tools\n    profiles: [debug]\n");
    write(tmp.path(), "compose.override.yaml", "services:\n  web:\n    image: app:2\n    ports: [\"81\"]\n    environment:\n      B: three\n    volumes: [\"./b:/data:ro\"]\n");
    let opts = LoadOptions {
        dir: tmp.path().to_path_buf(),
        files: vec!["compose.yaml".into(), "compose.override.yaml".into()],
        project_name: Some("merged".into()),
        ..LoadOptions::default()
    };
    let env = load(&opts).unwrap();
    assert_eq!(env.name, "merged");
    assert_eq!(env.services.len(), 1, "debug's profile is off");
    let web = env.service("web").unwrap();
    assert_eq!(web.image.as_deref(), Some("app:2"));
    assert_eq!(web.command.as_deref(), Some(&["serve".to_string()][..]));
    let ports: Vec<u16> = web.ports.iter().map(|p| p.container).collect();
    assert_eq!(ports, [80, 81]);
    assert_eq!(web.env["A"], "1");
    assert_eq!(web.env["B"], "three");
    assert_eq!(web.volumes.len(), 1);
    assert!(web.volumes[0].read_only);
    assert!(
        web.volumes[0].to_string().ends_with("/b:/data:ro"),
        "{}",
        web.volumes[0]
    );
    let with_debug = load(&LoadOptions {
        profiles: vec!["debug".into()],
        ..opts
    })
    .unwrap();
    assert_eq!(with_debug.services.len(), 2);
}

#[test]
fn two_services_on_one_port_fail_at_plan_time() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  a:\n    image: x\n    ports: [\"8080:80\"]\n  b:\n    image: x\n    expose: [80]\n");
    let env = load_file(tmp.path(), "compose.yaml").unwrap();
    let err = plan_in(
        &env,
        &[],
        &cleanroom::LocalBackend::new(),
        &cleanroom::SandboxSpec::default(),
        tmp.path(),
    )
    .unwrap_err();
    let p = problems(err);
    assert!(
        p[0].contains("compose.yaml:5: error: services `a` and `b` both listen on port 80"),
        "{p:?}"
    );
    assert!(p[0].contains("one network namespace"), "{p:?}");
}

#[test]
fn healthy_condition_needs_a_healthcheck() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "compose.yaml", "services:\n  db:\n    image: x\n  app:\n    image: x\n    depends_on:\n      db:\n        condition: service_healthy\n");
    let env = load_file(tmp.path(), "compose.yaml").unwrap();
    let err = plan_in(
        &env,
        &[],
        &cleanroom::LocalBackend::new(),
        &cleanroom::SandboxSpec::default(),
        tmp.path(),
    )
    .unwrap_err();
    let p = problems(err);
    assert!(p[0].contains("compose.yaml:7: error: service `app` waits for `db` to be healthy, but `db` has no healthcheck"), "{p:?}");
}

#[test]
fn the_environment_file_is_found_in_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("My_Project");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "cleanroom.toml", "backend = \"native\"\n");
    write(
        &dir,
        "docker-compose.yml",
        "services:\n  a:\n    image: x\n",
    );
    let env = load(&LoadOptions {
        dir: dir.clone(),
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(
        env.files[0].ends_with("docker-compose.yml"),
        "cleanroom.toml has no [services]"
    );
    assert_eq!(env.name, "my_project");
    write(
        &dir,
        "cleanroom.toml",
        "backend = \"native\"\n[services.b]\nimage = \"x\"\n",
    );
    let env = load(&LoadOptions {
        dir: dir.clone(),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(env.services[0].name, "b");
    let empty = tempfile::tempdir().unwrap();
    let e = load(&LoadOptions {
        dir: empty.path().to_path_buf(),
        ..LoadOptions::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("give -f FILE"), "{e}");
}

#[test]
fn real_compose_files_from_awesome_compose() {
    let dir = data("awesome-compose");
    let env = load_file(&dir, "nginx-golang-postgres.yaml").unwrap();
    let db = env.service("db").unwrap();
    assert_eq!(db.restart, Restart::Always);
    assert_eq!(db.user.as_deref(), Some("postgres"));
    assert_eq!(db.ports[0].container, 5432);
    let h = db.healthcheck.as_ref().unwrap();
    assert_eq!(
        (h.interval.as_secs(), h.timeout.as_secs(), h.retries),
        (10, 5, 5)
    );
    assert_eq!(
        env.service("backend").unwrap().depends_on[0].condition,
        Condition::Healthy
    );
    assert!(env.volumes.contains(&"db-data".to_string()));
    let proxy = env.service("proxy").unwrap();
    assert!(proxy.volumes[0].read_only);
    let w: Vec<String> = env.warnings.iter().map(|p| p.to_string()).collect();
    for key in ["`build`", "`secrets`"] {
        assert!(w.iter().any(|m| m.contains(key)), "{key}: {w:?}");
    }
    assert!(env.warnings.iter().all(|p| p.severity == Severity::Warning));

    let env = load_file(&dir, "wordpress-mysql.yaml").unwrap();
    assert_eq!(
        env.service("db").unwrap().command.as_deref(),
        Some(&["--default-authentication-plugin=mysql_native_password".to_string()][..])
    );
    let ports: Vec<u16> = env
        .service("db")
        .unwrap()
        .ports
        .iter()
        .map(|p| p.container)
        .collect();
    assert_eq!(ports, [3306, 33060]);

    let env = load_file(&dir, "gitea-postgres.yaml").unwrap();
    assert_eq!(env.services.len(), 2);
    assert!(env.warnings.is_empty(), "{:?}", env.warnings);

    // Unset variables become empty strings, each with a warning at its line.
    let env = load_file(&dir, "postgresql-pgadmin.yaml").unwrap();
    let w: Vec<String> = env.warnings.iter().map(|p| p.to_string()).collect();
    assert!(
        w.iter().any(|m| m
            .contains("postgresql-pgadmin.yaml:6: warning: variable `POSTGRES_USER` is not set")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("unknown key `container_name`")),
        "{w:?}"
    );

    let env = load_file(&dir, "flask-redis.yaml").unwrap();
    let web = env.service("web").unwrap();
    assert_eq!(web.depends_on[0].service, "redis");
    assert!(
        web.volumes[0].to_string().contains("awesome-compose:/code"),
        "{}",
        web.volumes[0]
    );
    // Every one converts to TOML that reads back to the same services.
    for f in [
        "nginx-golang-postgres.yaml",
        "wordpress-mysql.yaml",
        "gitea-postgres.yaml",
        "flask-redis.yaml",
    ] {
        let env = load_file(&dir, f).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "c.toml", &convert::to_toml(&env));
        let back = load_file(tmp.path(), "c.toml").unwrap();
        assert_eq!(services(&back), services(&env), "{f}");
    }
}
