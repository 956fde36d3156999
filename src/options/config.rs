//! Reading nsqd's `--config` TOML file into [`Options`].
//!
//! nsqd decodes the file into a map and lets go-options pick, for each options field, the
//! key named by the field's `cfg:` tag or its flag name with `_` for `-` (so `mem_queue_size`,
//! but `id` for `--node-id` and `nsqlookupd_tcp_addresses` for `--lookupd-tcp-address`).
//! Keys that name no field are ignored by nsqd; ringsq ignores them too (so an nsqd config
//! file keeps working) but lists them in [`Options::ignored_config_keys`] so they can be
//! logged. A bad value for a known key is an error naming the key, the flag and the file.

use std::path::Path;

use super::error::OptionsError;
use super::flags::{self, Setter};
use super::value::{self, Raw};
use super::Options;

/// Reads and parses the TOML file at `path` (nsqd: "failed to load config file …").
pub(super) fn load(path: &Path) -> Result<toml::Table, OptionsError> {
    let fail = |reason: String| {
        OptionsError::config_file(
            Some("config"),
            format!("failed to load config file {} - {reason}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    text.parse::<toml::Table>()
        .map_err(|e| fail(e.message().to_owned()))
}

/// Applies every known key of `table` to `opts`; unknown keys are recorded, not applied.
pub(super) fn apply(
    opts: &mut Options,
    table: &toml::Table,
    path: &Path,
) -> Result<(), OptionsError> {
    for (key, raw) in table {
        let Some(spec) = flags::lookup_config_key(key) else {
            opts.ignored_config_keys.push(key.clone());
            continue;
        };
        match spec.setter {
            Setter::StrList(field) => field(opts).clear(),
            Setter::FloatList(field) => field(opts).clear(),
            _ => {}
        }
        value::apply(spec, opts, Raw::Toml(raw)).map_err(|reason| {
            OptionsError::config_file(
                Some(spec.name),
                format!(
                    "config file {}: invalid value {} for key {key:?} (flag -{}): {reason}",
                    path.display(),
                    value::show(Raw::Toml(raw)),
                    spec.name
                ),
            )
        })?;
    }
    Ok(())
}
