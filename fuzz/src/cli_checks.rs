//! Checks for the binary's command-line parser (`src/bin/xenguest/cli.rs`).

use crate::cli::{self, Action};

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
            let pci = opts.pci_devices();
            if let Some(list) = &opts.pci_passthrough {
                assert_eq!(pci, cli::parse_pci_passthrough(list));
            }
            let _ = (
                opts.debug_enabled(),
                cli::syslog_ident(opts.domid, opts.mode),
            );
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
    let _ = cli::joined_command_line(&args);
}

/// `-pci_passthrough`: every non-empty token is either a device or skipped, in order, and a
/// device prints back as a token that parses to the same device.
pub fn pci_list(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let list = cli::parse_pci_passthrough(&s);
    let tokens = s.split(',').filter(|t| !t.is_empty()).count();
    assert_eq!(list.devices.len() + list.skipped.len(), tokens);
    for d in &list.devices {
        let again = cli::parse_pci_passthrough(&d.to_string());
        assert_eq!(again.devices, vec![*d], "{d}");
        assert!(d.dev <= 0x1f && d.func <= 7);
    }
    for t in &list.skipped {
        assert!(s.contains(t.as_str()));
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
