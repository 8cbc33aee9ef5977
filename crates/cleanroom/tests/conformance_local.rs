//! The conformance suite on the local backend.

cleanroom::conformance_tests!(cleanroom::conformance::Harness::new(
    cleanroom::LocalBackend::new(),
    cleanroom::SandboxSpec::default(),
));
