//! Checks for the command-line parsers both faces share (`src/request/`).

use xenguest::request::argv::{self as cli, Action};
use xenguest::request::{build_command, parse_pci_passthrough, PciError};

/// argv words from fuzz bytes: NUL-separated, lossy UTF-8 (argv can hold no NUL).
pub fn argv(data: &[u8]) -> Vec<String> {
    std::iter::once("xenguest".to_string())
        .chain(
            data.split(|&b| b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        )
        .collect()
}

/// The whole command line: no panic; deterministic; words after `--` never change a
/// successful parse; an accepted command line can be checked and its lists read; an error
/// prints as one line.
pub fn command_line(data: &[u8]) {
    let args = argv(data);
    let parsed = cli::parse(&args);
    assert_eq!(parsed, cli::parse(&args), "parse is deterministic");
    match &parsed {
        Ok(Action::Run(opts)) => {
            let mut longer = args.clone();
            longer.extend(["--".to_string(), "-mode".into(), "bogus".into()]);
            assert_eq!(cli::parse(&longer), parsed, "`--` ends the options");
            if let Err(e) = opts.check_required() {
                assert!(!e.to_string().is_empty() && !e.to_string().contains('\n'));
            }
            assert_eq!(opts.modules().len(), opts.module_paths.len());
            if opts.check_required().is_ok() {
                if let Err(e) = build_command(opts) {
                    let text = e.wire_text();
                    assert!(text.starts_with("xenguest: ") && text.ends_with('\n'), "{text}");
                }
            }
            let _ = opts.debug_enabled();
        }
        Ok(Action::Supports(feature)) => {
            let _ = cli::supports_feature(feature);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty());
            if let Some(d) = e.getopt_diagnostic() {
                assert!(!d.to_string().is_empty());
            }
        }
    }
    let (seen, partial) = cli::parse_partial(&args);
    assert_eq!(partial, parsed, "parse_partial agrees with parse");
    if let Ok(Action::Run(opts)) = &parsed {
        assert_eq!(**opts, seen);
    }
}

/// `-pci_passthrough`: a list parses to one device per non-empty token, in order, each of
/// which prints back as a token that parses to the same device; or it is refused naming a
/// token of the list.
pub fn pci_list(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match parse_pci_passthrough(&s) {
        Ok(devices) => {
            let tokens = s.split(',').filter(|t| !t.is_empty()).count();
            assert_eq!(devices.len(), tokens);
            for d in &devices {
                let again = parse_pci_passthrough(&d.to_string());
                assert_eq!(again, Ok(vec![*d]), "{d}");
                assert!(d.dev <= 0x1f && d.func <= 7);
            }
        }
        Err(PciError::BadToken(t)) => {
            assert!(!t.is_empty() && s.split(',').any(|x| x == t), "{t:?}");
        }
    }
}

/// C's `parse_int` for integer options: accepted values are the decimal `i32` the string
/// spells (after C white space and a sign).
pub fn int_option(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(v) = cli::parse_int(&s) {
        let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        assert_eq!(t.parse::<i32>(), Ok(v), "{s:?}");
    }
}
