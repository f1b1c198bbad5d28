//! Fuzz checks for the xenguest library and the binary's command line. `checks` is shared
//! with `tests/robustness.rs`, which replays `fuzz/regressions/` and runs a randomized pass
//! on stable; `cli` is the binary's own parser, compiled in from its source file.

pub mod checks;
#[path = "../../src/bin/xenguest/cli.rs"]
#[allow(dead_code)]
pub mod cli;
pub mod cli_checks;
