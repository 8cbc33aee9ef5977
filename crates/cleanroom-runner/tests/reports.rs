//! A real suite (on the local backend) with a pass, a failure, a broken
//! file and a fail-fast skip, written as JUnit XML and checked by an XML
//! parser against what the JUnit schema requires; TAP and JSON likewise.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cleanroom_runner::report::{human, junit, tap};
use cleanroom_runner::{run_suite_blocking, RunOptions, Status, SuiteReport};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn suite(dir: &Path, fail_fast: bool) -> SuiteReport {
    write(
        dir,
        "a_pass.clnrm.toml",
        "[test.metadata]\nname = \"passes & <works>\"\n[[steps]]\ncommand = [\"echo\", \"hi\"]\nexpected_output = \"hi\"\n",
    );
    write(
        dir,
        "b_fail.clnrm.toml",
        "[test.metadata]\nname = \"fails\"\n[[steps]]\nname = \"compare\"\ncommand = [\"printf\", \"one\\\\nTWO\\\\nthree\\\\n\"]\nexpected_output = \"one\\ntwo\\nthree\\n\"\n",
    );
    write(dir, "c_broken.clnrm.toml", "[[steps]]\ncomand = [\"x\"]\n");
    write(
        dir,
        "d_later.clnrm.toml",
        "[[steps]]\ncommand = [\"true\"]\n",
    );
    let options = RunOptions {
        backend: Some(Arc::new(cleanroom::LocalBackend::new())),
        base_spec: Some(cleanroom::SandboxSpec::default()),
        jobs: 1,
        fail_fast,
        ..RunOptions::default()
    };
    run_suite_blocking(&[dir.to_path_buf()], &options).unwrap()
}

#[test]
fn failures_show_step_command_and_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let r = suite(dir.path(), false);
    assert_eq!(r.summary_line(), "2 passed, 2 failed, 0 skipped");
    let text = human::render(&r);
    assert!(
        text.ends_with("\n2 passed, 2 failed, 0 skipped\n"),
        "{text}"
    );
    assert!(text.contains("step:     compare"), "{text}");
    assert!(text.contains("command:  printf"), "{text}");
    assert!(text.contains("-two\n+TWO\n"), "a line diff: {text}");
    assert!(
        text.contains(
            "c_broken.clnrm.toml:2:1: unknown key `comand` in [[steps]]; did you mean `command`?"
        ),
        "{text}"
    );
}

#[test]
fn fail_fast_skips_the_tests_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let r = suite(dir.path(), true);
    // a passes, b fails, then c (broken, needs no sandbox) and d are not run.
    let status: Vec<Status> = r.tests.iter().map(|t| t.status).collect();
    assert_eq!(status[..2], [Status::Passed, Status::Failed], "{status:?}");
    assert_eq!(r.tests[3].status, Status::Skipped, "{status:?}");
    assert!(r.skipped >= 1);
}

#[test]
fn junit_xml_has_what_the_schema_requires() {
    let dir = tempfile::tempdir().unwrap();
    let r = suite(dir.path(), false);
    let xml = junit::render(&r);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let num = |n: roxmltree::Node, a: &str| -> f64 {
        n.attribute(a)
            .unwrap_or_else(|| panic!("<{}> lacks required attribute {a}", n.tag_name().name()))
            .parse()
            .unwrap_or_else(|_| panic!("{a} is not a number"))
    };
    assert_eq!(num(root, "tests"), 4.0);
    assert_eq!(num(root, "failures"), 2.0);
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert!(!suites.is_empty());
    let mut cases = 0;
    let mut failures = 0;
    for s in &suites {
        assert_eq!(s.tag_name().name(), "testsuite");
        assert!(!s.attribute("name").unwrap_or("").is_empty());
        let (tests, failed) = (num(*s, "tests"), num(*s, "failures"));
        num(*s, "errors");
        num(*s, "time");
        let mine: Vec<_> = s
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(tests as usize, mine.len());
        let mut failed_here = 0;
        for c in mine {
            assert!(!c.attribute("name").unwrap_or("").is_empty());
            assert!(c.attribute("classname").is_some());
            num(c, "time");
            if let Some(f) = c.children().find(|n| n.has_tag_name("failure")) {
                assert!(!f.attribute("message").unwrap_or("").is_empty());
                failed_here += 1;
            }
        }
        assert_eq!(failed as usize, failed_here);
        cases += tests as usize;
        failures += failed_here;
    }
    assert_eq!((cases, failures), (4, 2));
    // Escaping survived the round trip.
    let names: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert!(names.contains(&"passes & <works>"), "{names:?}");
}

#[test]
fn tap_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let r = suite(dir.path(), false);
    let t = tap::render(&r);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "TAP version 13");
    assert_eq!(lines[1], "1..4");
    assert_eq!(lines.iter().filter(|l| l.starts_with("ok ")).count(), 2);
    assert_eq!(lines.iter().filter(|l| l.starts_with("not ok ")).count(), 2);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["passed"], 2);
    assert_eq!(v["tests"][1]["failure"]["step"], "compare");
    let paths: Vec<PathBuf> = r.tests.iter().map(|t| t.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "reports are in path order");
}
