//! `--help`: the subcommands, then every flag with its type, nsqd's usage string and its default.
//!
//! The layout is Go's `flag.PrintDefaults` (flags sorted by name, the type word after the
//! name, the usage on the next line, `(default …)` unless the default is the zero value),
//! with two dashes so the text reads the way unit files are usually written.

use std::fmt::Write as _;

use super::flags::{FlagSpec, Shown, FLAGS};
use super::Options;

/// The full usage text.
pub(super) fn usage() -> String {
    let defaults = Options::default();
    let mut specs: Vec<&FlagSpec> = FLAGS.iter().collect();
    specs.sort_by_key(|spec| spec.name);
    let mut out = String::from(
        "Usage of ringsq (nsqd 1.3.0 compatible):\n  ringsq [flags]\n\n\
         Subcommands (offline, on a stopped broker's data directory; each has its own --help):\n  \
         ringsq check --data-path DIR [--json]\n    \
         \tverify every topic's log, channel state and park log\n  \
         ringsq dump --data-path DIR --topic T [--since TIME] [--limit N]\n    \
         \tprint a topic's retained messages as JSON lines\n\n\
         Flags take one or two dashes; values as --flag=value or --flag value \
         (bool flags only as --flag or --flag=false).\n\n",
    );
    for spec in specs {
        let type_word = spec.setter.type_word();
        let _ = write!(out, "  --{}", spec.name);
        if !type_word.is_empty() {
            let _ = write!(out, " {type_word}");
        }
        let _ = write!(out, "\n    \t{}", spec.help);
        match default_text(spec, &defaults) {
            Some(text) if type_word == "string" => {
                let _ = write!(out, " (default {text:?})");
            }
            Some(text) => {
                let _ = write!(out, " (default {text})");
            }
            None => {}
        }
        out.push('\n');
    }
    out
}

fn default_text(spec: &FlagSpec, defaults: &Options) -> Option<String> {
    match spec.shown {
        Shown::Zero => None,
        Shown::Value(text) => Some(text.to_owned()),
        Shown::Hostname => Some(defaults.broadcast_address.clone()),
        Shown::NodeId => Some(defaults.node_id.to_string()),
    }
}
