//! Fuzz checks for the xenguest library and the binary's command line. `checks` is shared
//! with `tests/robustness.rs`, which replays `fuzz/regressions/` and runs a randomized pass
//! on stable; `cli_checks` covers the request parsers both faces share (`xenguest::request`).

pub mod checks;
pub mod cli_checks;
