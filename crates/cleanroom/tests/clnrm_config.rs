//! `AutoBackend::detect()` under a clnrm project's own `cleanroom.toml`:
//! it reads what means something here (the image) instead of failing on
//! `[project]`.

#[tokio::test]
async fn detect_accepts_clnrm_s_project_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cleanroom.toml");
    std::fs::write(
        &path,
        "[project]\nname = \"demo\"\n\n[containers]\ndefault_image = \"host\"\n\n[security]\nsecurity_level = \"medium\"\n",
    )
    .unwrap();
    // The only test in this binary: the variables are its own.
    std::env::set_var("CLEANROOM_CONFIG", &path);
    std::env::remove_var("CLEANROOM_IMAGE");
    std::env::set_var("CLEANROOM_BACKEND", "local");
    let config = cleanroom::Config::load_default().unwrap();
    assert_eq!(config.image.value.as_deref(), Some("host"));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let backend = cleanroom::AutoBackend::detect().await.unwrap();
    assert_eq!(backend.inner().name(), "local");
}
