//! Unit tests of the options module: flags, config file, precedence, defaults.

use super::*;

#[test]
fn no_arguments_give_nsqd_defaults() {
    assert_eq!(parse(["ringsq"]), Ok(Parsed::Run(Options::default())));
}
