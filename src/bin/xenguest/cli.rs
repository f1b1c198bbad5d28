//! What only the binary does with its command line: the syslog ident and the `Command line:`
//! log line. Parsing is the library's ([`xenguest::request::argv`]), shared with the OCaml
//! module.

use xenguest::request::Mode;

/// The syslog ident: `xenguest-<domid><suffix>` when `domid >= 0`, else `xenguest`.
pub fn syslog_ident(domid: i32, mode: Option<Mode>) -> String {
    if domid >= 0 {
        format!("xenguest-{domid}{}", mode.map_or("", Mode::syslog_suffix))
    } else {
        "xenguest".to_string()
    }
}

/// argv[1..] joined with single spaces, as C logs it in `Command line: <args>`.
pub fn joined_command_line<S: AsRef<str>>(args: &[S]) -> String {
    let words: Vec<&str> = args.iter().skip(1).map(AsRef::as_ref).collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("xenguest")
            .chain(words.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn ident_and_suffixes() {
        assert_eq!(syslog_ident(-1, Some(Mode::HvmBuild)), "xenguest");
        assert_eq!(syslog_ident(-7, None), "xenguest");
        assert_eq!(syslog_ident(0, None), "xenguest-0");
        assert_eq!(syslog_ident(3, Some(Mode::Test)), "xenguest-3");
        let cases = [
            (Mode::Save, "-save"),
            (Mode::HvmSave, "-save"),
            (Mode::Listen, "-emp"),
            (Mode::Restore, "-restore"),
            (Mode::HvmRestore, "-restore"),
            (Mode::ResumeSlow, "-resume"),
            (Mode::LinuxBuild, "-build"),
            (Mode::HvmBuild, "-build"),
            (Mode::PvhBuild, "-build"),
        ];
        for (m, s) in cases {
            assert_eq!(m.syslog_suffix(), s);
            assert_eq!(syslog_ident(12, Some(m)), format!("xenguest-12{s}"));
        }
        assert_eq!(
            syslog_ident(i32::MAX, Some(Mode::Restore)),
            "xenguest-2147483647-restore"
        );
        assert!(syslog_ident(i32::MAX, Some(Mode::Restore)).len() < 32);
    }

    #[test]
    fn command_line_for_logging() {
        assert_eq!(
            joined_command_line(&argv(&["-mode", "listen", "-domid", "1"])),
            "-mode listen -domid 1"
        );
        assert_eq!(
            joined_command_line(&argv(&["-ramdisk", "", "-x"])),
            "-ramdisk  -x"
        );
        assert_eq!(joined_command_line::<&str>(&[]), "");
        assert_eq!(joined_command_line(&["xenguest"]), "");
    }
}
