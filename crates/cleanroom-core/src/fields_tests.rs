//! The table's own test: every field, set by flag, environment and file,
//! with precedence and the out-of-range error, generated from [`FIELDS`].

use std::path::Path;

use super::*;
use crate::config::{Layer, Sources};

fn flag(field: &Field, raw: &str) -> Layer {
    let mut layer = Layer::default();
    layer.field_flag(field, raw).unwrap();
    layer
}

fn env(field: &Field, raw: &str) -> Layer {
    Layer::from_env_vars([(field.env.to_string(), raw.to_string())])
}

fn file(field: &Field, raw: &str) -> Option<Layer> {
    let text = format!("{} = \"{raw}\"\n", field.key);
    Some(Layer::from_config_file(Path::new("cleanroom.toml"), &text).unwrap())
}

/// The shown value and origin of `field` after resolving `sources`.
fn shown(field: &Field, sources: Sources) -> (String, String) {
    let config = sources.resolve().unwrap();
    let (value, origin) = (field.show)(&config);
    (value, origin.to_string())
}

fn alone(field: &Field, raw: &str) -> String {
    shown(
        field,
        Sources {
            file: file(field, raw),
            ..Sources::default()
        },
    )
    .0
}

#[test]
fn every_field_by_flag_env_and_file_with_precedence_and_range() {
    for field in FIELDS {
        let s = &field.samples;
        let (valid, other) = (alone(field, s.valid), alone(field, s.other));
        assert_ne!(
            valid, other,
            "{}: the two samples must show differently",
            field.key
        );
        let flag_origin = format!("flag --{}", field.flag.long);
        let env_origin = format!("environment {}", field.env);

        // flag > env > file.
        let all = Sources {
            flags: flag(field, s.valid),
            env: env(field, s.other),
            file: file(field, s.other),
            ..Sources::default()
        };
        assert_eq!(
            shown(field, all),
            (valid.clone(), flag_origin.clone()),
            "{}",
            field.key
        );
        let env_file = Sources {
            env: env(field, s.valid),
            file: file(field, s.other),
            ..Sources::default()
        };
        assert_eq!(
            shown(field, env_file),
            (valid.clone(), env_origin.clone()),
            "{}",
            field.key
        );
        let only_file = Sources {
            file: file(field, s.other),
            ..Sources::default()
        };
        assert_eq!(
            shown(field, only_file),
            (other.clone(), "cleanroom.toml:1".to_string()),
            "{}",
            field.key
        );
        // Nothing set: the default.
        let (_, origin) = shown(field, Sources::default());
        assert_eq!(origin, "default", "{}", field.key);

        // The value reaches the spec.
        if field.in_spec {
            let spec_of = |raw: &str| {
                let c = Sources {
                    flags: flag(field, raw),
                    ..Sources::default()
                }
                .resolve()
                .unwrap();
                c.spec().unwrap()
            };
            assert_ne!(spec_of(s.valid), spec_of(s.other), "{}", field.key);
        }

        // Out of range: an error naming the source, the key and the value.
        let bad = [
            (
                Sources {
                    flags: flag(field, s.invalid),
                    ..Sources::default()
                },
                flag_origin,
            ),
            (
                Sources {
                    env: env(field, s.invalid),
                    ..Sources::default()
                },
                env_origin,
            ),
            (
                Sources {
                    file: file(field, s.invalid),
                    ..Sources::default()
                },
                "cleanroom.toml:1".to_string(),
            ),
        ];
        for (sources, origin) in bad {
            let e = sources.resolve().unwrap_err().to_string();
            let want = format!("{origin}: {} = `{}`: ", field.key, s.invalid);
            assert!(e.starts_with(&want), "{}: {e}", field.key);
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}

#[test]
fn keys_flags_and_variables_are_unique() {
    for (i, a) in FIELDS.iter().enumerate() {
        for b in &FIELDS[i + 1..] {
            assert_ne!(a.key, b.key);
            assert_ne!(a.env, b.env);
            assert_ne!(a.flag.long, b.flag.long);
            assert!(a.sandbox_key.is_none() || a.sandbox_key != b.sandbox_key);
        }
        assert_eq!(Field::by_key(a.key).map(|f| f.key), Some(a.key));
    }
}
