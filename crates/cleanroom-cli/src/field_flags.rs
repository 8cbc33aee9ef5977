//! The settings' flags, built from [`cleanroom::fields::FIELDS`] with clap's
//! builder API and read back generically: a field added to the table is a
//! flag of every command that makes sandboxes, with nothing written here.

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use cleanroom::fields::{Field, FlagScope, FIELDS};

/// The flags given, each with its field and its text as typed.
pub type Given = Vec<(&'static Field, String)>;

fn fields(scope: FlagScope) -> impl Iterator<Item = &'static Field> {
    FIELDS.iter().filter(move |f| f.flag.scope == scope)
}

fn augment(cmd: Command, scope: FlagScope) -> Command {
    cmd.args(fields(scope).map(|f| {
        let arg = Arg::new(f.key)
            .long(f.flag.long)
            .help(f.flag_help())
            .required(false);
        let arg = match f.flag.short {
            Some(c) => arg.short(c),
            None => arg,
        };
        if f.flag.switch {
            arg.action(ArgAction::SetTrue)
        } else {
            arg.value_name(f.flag.value_name)
                .action(ArgAction::Set)
                .allow_negative_numbers(true)
        }
    }))
}

fn given(m: &ArgMatches, scope: FlagScope) -> Given {
    fields(scope)
        .filter_map(|f| {
            let raw = if f.flag.switch {
                m.get_flag(f.key).then(|| "true".to_string())
            } else {
                m.get_one::<String>(f.key).cloned()
            };
            raw.map(|r| (f, r))
        })
        .collect()
}

macro_rules! field_args {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            pub given: Given,
        }

        impl FromArgMatches for $name {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                Ok($name {
                    given: given(m, $scope),
                })
            }

            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl Args for $name {
            fn augment_args(cmd: Command) -> Command {
                augment(cmd, $scope)
            }

            fn augment_args_for_update(cmd: Command) -> Command {
                augment(cmd, $scope)
            }
        }
    };
}

field_args!(
    /// The sandbox settings shared by every command that makes sandboxes.
    SandboxArgs,
    FlagScope::Sandbox
);
field_args!(
    /// The settings only `cleanroom test` takes (`--jobs`, `--test-timeout`).
    TestSettingArgs,
    FlagScope::Test
);
