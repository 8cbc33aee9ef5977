//! The parser against the problems users make, each at its line and column.

use std::path::Path;

use crate::{parse_str, Problem};
use cleanroom_env::Probe;

fn problems(text: &str) -> Vec<String> {
    parse_str(Path::new("t/x.clnrm.toml"), text)
        .err()
        .unwrap_or_default()
        .iter()
        .map(Problem::to_string)
        .collect()
}

#[test]
fn clnrm_files_stay_valid() {
    let text = r#"
[test.metadata]
name = "echo works"
description = "the clnrm format"
timeout = "120s"

[services.db]
type = "generic_container"
plugin = "alpine"
image = "alpine:latest"
env = { A = "1" }
ports = [5432]

[[steps]]
name = "say hello"
command = ["echo", "hello"]
expected_output_regex = "hello"

[[steps]]
name = "fails"
command = ["false"]
expected_exit_code = 1

[assertions]
container_should_have_executed_commands = 2
"#;
    let f = parse_str(Path::new("t/echo.clnrm.toml"), text).unwrap();
    assert_eq!(f.name, "echo works");
    assert_eq!(f.timeout, Some(std::time::Duration::from_secs(120)));
    assert_eq!(f.services[0].name(), "db");
    assert_eq!(f.services[0].model.ports[0].container, 5432);
    assert_eq!(f.steps.len(), 2);
    assert_eq!(f.steps[1].expect.exit_code, 1);
    assert_eq!(f.steps[0].at.to_string(), "t/echo.clnrm.toml:14:1");
    assert_eq!(f.assertions.executed_commands, Some(2));
}

#[test]
fn sandbox_tmpfs_size_and_userns_reach_the_spec() {
    let text =
        "[sandbox]\ntmpfs_size = \"16M\"\nuserns = \"identity\"\n\n[[steps]]\ncommand = \"true\"\n";
    let f = parse_str(Path::new("x.clnrm.toml"), text).unwrap();
    let spec = f.sandbox.apply(&cleanroom::SandboxSpec::default());
    assert_eq!(spec.tmpfs_size, Some(16 << 20));
    assert_eq!(spec.userns, cleanroom::UserNs::Identity);
    let p = problems("\n[sandbox]\nuserns = \"root\"\n\n[[steps]]\ncommand = \"true\"\n");
    assert!(
        p[0].starts_with("t/x.clnrm.toml:3:10: `userns`") && p[0].contains("identity"),
        "{p:?}"
    );
}

#[test]
fn our_additions_parse() {
    let text = r#"
[sandbox]
image = "host"
network = "none"
memory = "256M"
pids = 64
user = "1000:1000"
timeout = "5s"
strict = false
env = { X = "y" }

[services.web]
command = ["sh", "-c", "echo ready; sleep 100"]
wait_for = { log = "ready", timeout = "3s" }

[services.api]
depends_on = ["web"]
wait_for = { port = 8080 }

[[files]]
path = "in/a.txt"
content = "hi"
mode = "0755"

[determinism]
seed = 42
freeze_clock = true

[[steps]]
command = "echo $X"
stdin = "input"
env = { Z = "1" }
workdir = "/tmp"
timeout = "1s"
service = "web"
expected_output = "y"
expected_output_not_regex = "error"
expected_stderr_regex = "^$"
"#;
    let f = parse_str(Path::new("x.clnrm.toml"), text).unwrap();
    assert_eq!(f.name, "x");
    let spec = f.sandbox.apply(&cleanroom::SandboxSpec::default());
    assert_eq!(spec.memory, Some(256 << 20));
    assert_eq!(spec.pids, Some(64));
    let names: Vec<&str> = f.services.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        ["web", "api"],
        "in file order; the engine orders the start"
    );
    let wait_for = |i: usize| f.services[i].model.healthcheck.clone().unwrap();
    assert_eq!(wait_for(1).test, Probe::Port(8080));
    assert_eq!(
        wait_for(0).deadline,
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(f.files[0].mode, Some(0o755));
    assert_eq!(f.determinism.seed, Some(42));
    assert!(f.determinism.freeze_clock.is_some());
    assert_eq!(f.steps[0].command, ["sh", "-c", "echo $X"]);
    assert_eq!(f.steps[0].service.as_deref(), Some("web"));
    assert_eq!(f.steps[0].name, "step 1");
}

#[test]
fn bad_toml_names_line_and_column() {
    let p = problems("[test.metadata]\nname = \n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("t/x.clnrm.toml:2:8: invalid TOML"),
        "{p:?}"
    );
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = r#"[test.metadata]
nmae = "typo"

[services.a]
depends_on = ["b"]

[services.b]
depends_on = "a"
imgae = "x"

[[steps]]
command = ["echo"]
expected_outptu_regex = "x"
expected_output_regex = "(unclosed"
service = "nope"

[[steps]]
name = "no command"
"#;
    let p = problems(text);
    let want = [
        "t/x.clnrm.toml:2:1: unknown key `nmae` in [test.metadata]; did you mean `name`?",
        "t/x.clnrm.toml:8:14: cyclic depends_on: a -> b -> a; remove one of these dependencies",
        "t/x.clnrm.toml:9:1: unknown key `imgae` in [services.b]; did you mean `image`?",
        "t/x.clnrm.toml:13:1: unknown key `expected_outptu_regex` in [[steps]]; did you mean `expected_output_regex`?",
        "t/x.clnrm.toml:14:25: `expected_output_regex` is not a valid regex: error: unclosed group",
        "t/x.clnrm.toml:15:11: step refers to unknown service `nope`; the services are: a, b",
        "t/x.clnrm.toml:17:1: step 2 has no `command`; add e.g. command = [\"echo\", \"hi\"]",
    ];
    assert_eq!(p, want);
}

#[test]
fn unknown_dependency_and_missing_steps() {
    let p = problems("[services.a]\ndepends_on = [\"ghost\"]\n");
    assert_eq!(
        p,
        [
            "t/x.clnrm.toml:1:1: the test has no [[steps]] (or [[scenario]]); add at least one with a `command`",
            "t/x.clnrm.toml:2:15: service `a` depends on unknown service `ghost`; the services are: a",
        ]
    );
}

#[test]
fn wrong_types_and_values() {
    let text = r#"
[sandbox]
memory = "lots"
network = "internet"
workdir = "rel"

[[files]]
path = "a"

[[steps]]
command = []
expected_exit_code = "0"
timeout = "soon"
"#;
    let p = problems(text);
    assert_eq!(p.len(), 7, "{p:#?}");
    assert!(
        p[0].starts_with("t/x.clnrm.toml:3:10: `memory`: size `lots`"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("t/x.clnrm.toml:4:11: `network`: network `internet`"),
        "{p:?}"
    );
    assert!(
        p[2].contains("5:11: `workdir`: workdir `rel` must be an absolute path"),
        "{p:?}"
    );
    assert!(p[3].contains("7:1: [[files]] needs `content"), "{p:?}");
    assert!(p[4].contains("11:11: `command` is empty"), "{p:?}");
    assert!(
        p[5].contains("12:22: `expected_exit_code` must be an integer, not a string"),
        "{p:?}"
    );
    assert!(p[6].contains("13:11: `timeout`: duration `soon`"), "{p:?}");
}

#[test]
fn forty_thousand_steps_parse_and_every_one_is_located() {
    // Locating each value used to rescan the file (quadratic: 40k steps
    // took 25 s in release). This only has to finish; the time is measured
    // in the README, not asserted here.
    let mut text = String::from("[test.metadata]\nname = \"many\"\n\n");
    for i in 0..40_000 {
        text.push_str(&format!(
            "[[steps]]\nname = \"step {i}\"\ncommand = [\"echo\", \"{i}\"]\nexpected_output_regex = \"^{i}$\"\n\n"
        ));
    }
    let f = parse_str(Path::new("many.clnrm.toml"), &text).unwrap();
    assert_eq!(f.steps.len(), 40_000);
    assert_eq!(f.steps[39_999].at.line, 4 + 39_999 * 5);
    assert_eq!(f.steps[39_999].at.column, 1);
}

/// Every setting a test's `[sandbox]` may set, from the table: it reaches
/// the spec, and an out-of-range value is a problem at its line.
#[test]
fn every_sandbox_setting_of_the_table_reaches_the_spec_or_is_refused() {
    let file = |key: &str, raw: &str| {
        format!("[sandbox]\n{key} = \"{raw}\"\n\n[[steps]]\ncommand = \"true\"\n")
    };
    let base = cleanroom::SandboxSpec::default();
    for field in cleanroom::fields::FIELDS {
        let Some(key) = field.sandbox_key else {
            continue;
        };
        let s = &field.samples;
        let spec_of = |raw: &str| {
            let f = parse_str(Path::new("x.clnrm.toml"), &file(key, raw)).unwrap();
            f.sandbox.apply(&base)
        };
        let (valid, other) = (spec_of(s.valid), spec_of(s.other));
        assert_ne!(valid, other, "{key}");
        let mut want = base.clone();
        field.apply_raw(&mut want, s.valid).unwrap();
        assert_eq!(valid, want, "{key}");
        let p = problems(&file(key, s.invalid));
        let at = format!("t/x.clnrm.toml:2:{}: `{key}`", key.len() + 4);
        assert!(p.len() == 1 && p[0].starts_with(&at), "{key}: {p:?}");
    }
}

#[test]
fn a_one_shot_condition_on_a_test_files_own_service_is_refused_with_the_way_out() {
    let p = problems(
        "[services.migrate]\ncommand = [\"true\"]\n[services.app]\ncommand = [\"sleep\", \"9\"]\ndepends_on = { migrate = { condition = \"service_completed_successfully\" } }\n[[steps]]\ncommand = [\"true\"]\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("t/x.clnrm.toml:5:")
            && p[0].contains("service `app`: condition = \"service_completed_successfully\" on `migrate` is not available")
            && p[0].contains("environment = \"FILE\""),
        "{p:?}"
    );
}
