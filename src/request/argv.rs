//! xenopsd's command line, as the drop-in binary and `Xenguest.build_of_argv` read it.
//!
//! The C xenguest parses its arguments with glibc `getopt_long_only(argc, argv, "", opts)`
//! (xenserver/xen.pg `patches/xenguest.patch`, `parse_options`); this module reproduces that
//! by hand:
//!
//! * options are written `-opt` or `--opt`; options with an argument take it as `-opt value` or
//!   `-opt=value` (the next word is taken whatever it looks like, even `--` or `-x`);
//! * `=value` on an option without argument is an error;
//! * unambiguous prefixes of option names are accepted, an exact name wins over longer names
//!   sharing it (`-debug` is `debug`, not `debuglog`), two or more prefix matches are ambiguous;
//! * words that are not options (`x`, `-`, the empty string) are permuted to the end by getopt and
//!   never looked at by xenguest, so they are skipped here; `--` ends the options;
//! * options are handled left to right as they are seen, so the first bad option, bad integer or
//!   bad mode is the one reported, and `-supports` ends parsing at once;
//! * the last occurrence of an option wins, except `-cmdline` and `-module`, which accumulate
//!   (see [`Options::modules`]), and `-live`/`-debug`, which set bits in the `-flags` word.
//!
//! `POSIXLY_CORRECT` (which would make getopt stop at the first non-option) is not honoured;
//! xenopsd never sets it. Pure: the caller opens files and fds and logs.
//!
//! Error values carry the C message text without the `xenguest: ` prefix: the caller reports
//! `xenguest: <error>\n` like C's `xg_err`.

use super::Module;
use std::fmt;

/// `XCFLAGS_LIVE`: bit 0 of the flags word, set by `-live`.
pub const XCFLAGS_LIVE: i32 = 1 << 0;
/// `XCFLAGS_DEBUG`: bit 1 of the flags word, set by `-debug`.
pub const XCFLAGS_DEBUG: i32 = 1 << 1;

/// Features for which `-supports <feature>` answers `true`: only what this binary does.
/// `migration-v2` (the C xenguest's only `true`) needs the libxenguest stream engine, which
/// the `xen` feature builds.
pub const SUPPORTED_FEATURES: &[&str] = if cfg!(feature = "xen") {
    &["mem_pnode", "migration-v2", "report", "sim"]
} else {
    &["mem_pnode", "report", "sim"]
};

/// Whether `-supports <feature>` answers `true` (printed as `true\n`, else `false\n`).
pub fn supports_feature(feature: &str) -> bool {
    SUPPORTED_FEATURES.contains(&feature)
}

/// The operation selected by `-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `hvm_build`.
    HvmBuild,
    /// `pvh_build`.
    PvhBuild,
    /// `linux_build` (PV); `pv_build` is accepted as an alias.
    LinuxBuild,
    /// `save`.
    Save,
    /// `hvm_save`.
    HvmSave,
    /// `restore`.
    Restore,
    /// `hvm_restore`.
    HvmRestore,
    /// `resume_slow`.
    ResumeSlow,
    /// `listen` (the EMP server driven by emu-manager).
    Listen,
    /// `test` (always fails in C: `test mode not supported`).
    Test,
}

impl Mode {
    /// Every mode, in the order of the C mode table (plus PVH).
    pub const ALL: [Mode; 10] = [
        Mode::Save,
        Mode::HvmSave,
        Mode::Restore,
        Mode::HvmRestore,
        Mode::ResumeSlow,
        Mode::LinuxBuild,
        Mode::HvmBuild,
        Mode::Test,
        Mode::Listen,
        Mode::PvhBuild,
    ];

    /// The mode a `-mode` argument names (exact, case-sensitive match as C's `strcmp`).
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "pv_build" => Some(Mode::LinuxBuild),
            _ => Mode::ALL.into_iter().find(|m| m.name() == name),
        }
    }

    /// The canonical command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::HvmBuild => "hvm_build",
            Mode::PvhBuild => "pvh_build",
            Mode::LinuxBuild => "linux_build",
            Mode::Save => "save",
            Mode::HvmSave => "hvm_save",
            Mode::Restore => "restore",
            Mode::HvmRestore => "hvm_restore",
            Mode::ResumeSlow => "resume_slow",
            Mode::Listen => "listen",
            Mode::Test => "test",
        }
    }

    /// Suffix of the syslog ident after `xenguest-<domid>` (C `main`: `xenguest-<domid>-<suffix>`).
    pub fn syslog_suffix(self) -> &'static str {
        match self {
            Mode::Save | Mode::HvmSave => "-save",
            Mode::Listen => "-emp",
            Mode::Restore | Mode::HvmRestore => "-restore",
            Mode::ResumeSlow => "-resume",
            Mode::LinuxBuild | Mode::HvmBuild | Mode::PvhBuild => "-build",
            Mode::Test => "",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// getopt's own diagnostic for a command-line error (printed by glibc on stderr as
/// `<argv0>: <diagnostic>` before xenguest's `invalid command line` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    /// No option has this name or prefix; `option` is the word's dashes and text (with `=...`).
    Unrecognized {
        /// As written, e.g. `-foo=3`.
        option: String,
    },
    /// Several options share this prefix.
    Ambiguous {
        /// As written, e.g. `-mem`.
        option: String,
        /// The candidates with the word's dashes, in option-table order.
        possibilities: Vec<String>,
    },
    /// An option that needs an argument ended argv.
    RequiresArgument {
        /// The word's dashes and the option's full name, e.g. `-domid`.
        option: String,
    },
    /// `=value` given to an option without argument.
    NoArgumentAllowed {
        /// The word's dashes and the option's full name, e.g. `-live`.
        option: String,
    },
}

impl fmt::Display for GetoptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetoptError::Unrecognized { option } => write!(f, "unrecognized option '{option}'"),
            GetoptError::Ambiguous {
                option,
                possibilities,
            } => {
                write!(f, "option '{option}' is ambiguous; possibilities:")?;
                for p in possibilities {
                    write!(f, " '{p}'")?;
                }
                Ok(())
            }
            GetoptError::RequiresArgument { option } => {
                write!(f, "option '{option}' requires an argument")
            }
            GetoptError::NoArgumentAllowed { option } => {
                write!(f, "option '{option}' doesn't allow an argument")
            }
        }
    }
}

/// A command-line error. `Display` gives the C message without the `xenguest: ` prefix and
/// without the trailing newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgvError {
    /// Unknown or ambiguous option, missing argument, or `=value` on a flag.
    #[error("invalid command line '{word}'")]
    InvalidCommandLine {
        /// The offending argv word (C's `argv[optind - 1]`).
        word: String,
        /// What getopt said about it.
        getopt: GetoptError,
    },
    /// An integer option whose argument is not a whole base-10 `int` (C `parse_int`).
    #[error("'{0}' is not a valid int")]
    InvalidInt(String),
    /// A `-mem_pnode` that is an int but negative.
    #[error("'{0}' is not a valid NUMA node")]
    InvalidNode(String),
    /// A `-sim-key` that is not `<path>=<value>`.
    #[error("invalid -sim-key '{0}': expected <path>=<value>")]
    InvalidSimKey(String),
    /// `-mode` names no known mode.
    #[error("unrecognized mode '{0}'")]
    UnrecognizedMode(String),
    /// A mode's mandatory option is absent (C `do_*` functions).
    #[error("missing command line options")]
    MissingOptions,
    /// No `-mode` at all.
    #[error("no `-mode' option specified")]
    NoMode,
}

impl ArgvError {
    /// getopt's diagnostic, for command-line syntax errors.
    pub fn getopt_diagnostic(&self) -> Option<&GetoptError> {
        match self {
            ArgvError::InvalidCommandLine { getopt, .. } => Some(getopt),
            _ => None,
        }
    }
}

/// Every option, with the C defaults (C `opt_*` globals). Integers keep C's `int` type and its
/// `-1` = unset convention so the mandatory-option checks read like C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-mode`; `None` until given.
    pub mode: Option<Mode>,
    /// `-controlinfd`, -1 when unset.
    pub controlinfd: i32,
    /// `-controloutfd`, -1 when unset.
    pub controloutfd: i32,
    /// `-debuglog` path (last one wins; the C opens every one it sees).
    pub debuglog: Option<String>,
    /// `-fd`, the migration stream, -1 when unset.
    pub fd: i32,
    /// `-image`.
    pub image: Option<String>,
    /// First `-cmdline`: the kernel command line.
    pub cmdline: Option<String>,
    /// `-ramdisk` (empty string = none, for PV).
    pub ramdisk: Option<String>,
    /// `-module` paths in order.
    pub module_paths: Vec<String>,
    /// Second and later `-cmdline`s in order: the n-th belongs to the n-th module.
    pub module_cmdlines: Vec<String>,
    /// `-domid`, -1 when unset.
    pub domid: i32,
    /// `-store_port`, -1 when unset.
    pub store_port: i32,
    /// `-store_domid`, default 0.
    pub store_domid: i32,
    /// `-console_port`, -1 when unset.
    pub console_port: i32,
    /// `-console_domid`, default 0.
    pub console_domid: i32,
    /// `-features`.
    pub features: Option<String>,
    /// The flags word: `-flags` overwrites it, `-live` sets bit 0, `-debug` sets bit 1.
    pub flags: i32,
    /// `-mem_max_mib`, -1 when unset.
    pub mem_max_mib: i32,
    /// `-mem_start_mib`, -1 when unset.
    pub mem_start_mib: i32,
    /// `-pci_passthrough`, as given (see [`super::parse_pci_passthrough`]).
    pub pci_passthrough: Option<String>,
    /// `-force`.
    pub force: bool,
    /// `-vgpu`.
    pub vgpu: bool,
    /// `-mem_pnode`: the NUMA node the memory was claimed on.
    pub mem_pnode: Option<u32>,
    /// `-sim <spec>`: run against a simulated host described by `spec`.
    pub sim: Option<String>,
    /// `-sim-key <path>=<value>` (repeatable): xenstore entries for the simulated host.
    pub sim_keys: Vec<(String, String)>,
    /// `-sim-host <file>`: the simulated host lives in this file between runs (loaded when it
    /// exists, else created from `-sim`, written back at exit).
    pub sim_host: Option<String>,
    /// `-report <path>`: where to write the build report.
    pub report: Option<String>,
    /// `-stderr`: log to stderr instead of syslog.
    pub stderr: bool,
    /// `-summary`: print a readable build report on stdout.
    pub summary: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: None,
            controlinfd: -1,
            controloutfd: -1,
            debuglog: None,
            fd: -1,
            image: None,
            cmdline: None,
            ramdisk: None,
            module_paths: Vec::new(),
            module_cmdlines: Vec::new(),
            domid: -1,
            store_port: -1,
            store_domid: 0,
            console_port: -1,
            console_domid: 0,
            features: None,
            flags: 0,
            mem_max_mib: -1,
            mem_start_mib: -1,
            pci_passthrough: None,
            force: false,
            vgpu: false,
            mem_pnode: None,
            sim: None,
            sim_keys: Vec::new(),
            sim_host: None,
            report: None,
            stderr: false,
            summary: false,
        }
    }
}

impl Options {
    /// The PVH modules with their command lines ([`super::modules::pair_modules`]).
    pub fn modules(&self) -> Vec<Module> {
        super::modules::pair_modules(&self.module_paths, &self.module_cmdlines)
    }

    /// `XCFLAGS_DEBUG` in the flags word: debug logging.
    pub fn debug_enabled(&self) -> bool {
        self.flags & XCFLAGS_DEBUG != 0
    }

    /// The mandatory options of the selected mode (C `do_*` functions).
    pub fn check_required(&self) -> Result<(), ArgvError> {
        let mode = self.mode.ok_or(ArgvError::NoMode)?;
        let unset = |v: i32| v == -1;
        let build_common = || {
            unset(self.domid)
                || unset(self.mem_max_mib)
                || unset(self.mem_start_mib)
                || self.image.is_none()
                || unset(self.store_port)
                || unset(self.store_domid)
                || unset(self.console_port)
                || unset(self.console_domid)
        };
        let missing = match mode {
            Mode::HvmBuild => build_common(),
            Mode::PvhBuild => {
                build_common()
                    || self.cmdline.is_none()
                    || self.features.is_none()
                    || unset(self.flags)
            }
            Mode::LinuxBuild => {
                build_common()
                    || self.ramdisk.is_none()
                    || self.cmdline.is_none()
                    || self.features.is_none()
                    || unset(self.flags)
            }
            Mode::Save | Mode::HvmSave => unset(self.domid) || unset(self.fd),
            Mode::Restore | Mode::HvmRestore => {
                unset(self.domid)
                    || unset(self.fd)
                    || unset(self.store_port)
                    || unset(self.console_port)
            }
            Mode::ResumeSlow => unset(self.domid),
            Mode::Listen | Mode::Test => false,
        };
        if missing {
            return Err(ArgvError::MissingOptions);
        }
        Ok(())
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-supports <feature>`: print `true\n`/`false\n` ([`supports_feature`]) and exit 0.
    Supports(String),
    /// Run with these options (not yet checked: see [`Options::check_required`]).
    Run(Box<Options>),
}

/// The result of [`parse`].
pub type Parsed = Action;

/// C's `parse_int` as tightened in XenServer 8's newest xenguest (xcp-ng-rpms/xen
/// `SOURCES/xenguest.patch`): `strtol(s, &end, 10)` must consume the whole string
/// (leading C whitespace and a sign allowed), at least one digit, and fit an `int`.
pub fn parse_int(s: &str) -> Result<i32, ArgvError> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ArgvError::InvalidInt(s.to_string()));
    }
    t.parse::<i32>()
        .map_err(|_| ArgvError::InvalidInt(s.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Mode,
    ControlInFd,
    ControlOutFd,
    DebugLog,
    Fake,
    Fd,
    Image,
    Cmdline,
    Ramdisk,
    Domid,
    Live,
    Debug,
    StorePort,
    StoreDomid,
    ConsolePort,
    ConsoleDomid,
    Features,
    Flags,
    MemMaxMib,
    MemStartMib,
    Fork,
    NoIncrGenerationId,
    Supports,
    PciPassthrough,
    Force,
    Vgpu,
    Module,
    MemPnode,
    Sim,
    SimKey,
    SimHost,
    Report,
    Stderr,
    Summary,
}

struct OptSpec {
    name: &'static str,
    has_arg: bool,
    opt: Opt,
}

const fn spec(name: &'static str, has_arg: bool, opt: Opt) -> OptSpec {
    OptSpec { name, has_arg, opt }
}

/// The option table, in the C order (which fixes the order of "possibilities"), then XenServer's
/// `mem_pnode` (xapi-project/xen-api `ocaml/xenopsd/xc/domain.ml` passes it), then our additions.
const OPTIONS: &[OptSpec] = &[
    spec("mode", true, Opt::Mode),
    spec("controlinfd", true, Opt::ControlInFd),
    spec("controloutfd", true, Opt::ControlOutFd),
    spec("debuglog", true, Opt::DebugLog),
    spec("fake", false, Opt::Fake),
    spec("fd", true, Opt::Fd),
    spec("image", true, Opt::Image),
    spec("cmdline", true, Opt::Cmdline),
    spec("ramdisk", true, Opt::Ramdisk),
    spec("domid", true, Opt::Domid),
    spec("live", false, Opt::Live),
    spec("debug", false, Opt::Debug),
    spec("store_port", true, Opt::StorePort),
    spec("store_domid", true, Opt::StoreDomid),
    spec("console_port", true, Opt::ConsolePort),
    spec("console_domid", true, Opt::ConsoleDomid),
    spec("features", true, Opt::Features),
    spec("flags", true, Opt::Flags),
    spec("mem_max_mib", true, Opt::MemMaxMib),
    spec("mem_start_mib", true, Opt::MemStartMib),
    spec("fork", false, Opt::Fork),
    spec("no_incr_generationid", false, Opt::NoIncrGenerationId),
    spec("supports", true, Opt::Supports),
    spec("pci_passthrough", true, Opt::PciPassthrough),
    spec("force", false, Opt::Force),
    spec("vgpu", false, Opt::Vgpu),
    spec("module", true, Opt::Module),
    spec("mem_pnode", true, Opt::MemPnode),
    spec("sim", true, Opt::Sim),
    spec("sim-key", true, Opt::SimKey),
    spec("sim-host", true, Opt::SimHost),
    spec("report", true, Opt::Report),
    spec("stderr", false, Opt::Stderr),
    spec("summary", false, Opt::Summary),
];

enum Lookup {
    Found(&'static OptSpec),
    Unknown,
    Ambiguous(Vec<&'static str>),
}

/// glibc `process_long_option` name resolution with `long_only` set: exact match first, else
/// the unique option the text is a prefix of; any second prefix match is ambiguous.
fn lookup(name: &str) -> Lookup {
    if let Some(s) = OPTIONS.iter().find(|s| s.name == name) {
        return Lookup::Found(s);
    }
    let matches: Vec<&'static OptSpec> = OPTIONS
        .iter()
        .filter(|s| s.name.starts_with(name))
        .collect();
    match matches.as_slice() {
        [] => Lookup::Unknown,
        [one] => Lookup::Found(one),
        many => Lookup::Ambiguous(many.iter().map(|s| s.name).collect()),
    }
}

/// Parse a whole argv (`args[0]` is the program name and is skipped, as getopt does).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Parsed, ArgvError> {
    parse_partial(args).1
}

/// [`parse`], with the options as they stood when parsing stopped: on an error, those seen
/// before it (so the caller knows whether `-controloutfd` came first, as C's `xg_err` does).
pub fn parse_partial<S: AsRef<str>>(args: &[S]) -> (Options, Result<Parsed, ArgvError>) {
    let mut opts = Options::default();
    let outcome = match parse_into(&mut opts, args) {
        Ok(Some(feature)) => Ok(Action::Supports(feature)),
        Ok(None) => Ok(Action::Run(Box::new(opts.clone()))),
        Err(e) => Err(e),
    };
    (opts, outcome)
}

/// Apply every option of `args` to `opts`; `Some(feature)` for `-supports`, which stops.
fn parse_into<S: AsRef<str>>(opts: &mut Options, args: &[S]) -> Result<Option<String>, ArgvError> {
    let mut i = 1;
    while i < args.len() {
        let word = args[i].as_ref();
        i += 1;
        if word == "--" {
            break;
        }
        let (prefix, body) = if let Some(b) = word.strip_prefix("--") {
            ("--", b)
        } else if let Some(b) = word.strip_prefix('-').filter(|b| !b.is_empty()) {
            ("-", b)
        } else {
            continue; // A non-option word: permuted to the end by getopt, never used.
        };
        let invalid = |getopt| ArgvError::InvalidCommandLine {
            word: word.to_string(),
            getopt,
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let spec = match lookup(name) {
            Lookup::Found(s) => s,
            Lookup::Unknown => {
                return Err(invalid(GetoptError::Unrecognized {
                    option: format!("{prefix}{body}"),
                }))
            }
            Lookup::Ambiguous(names) => {
                return Err(invalid(GetoptError::Ambiguous {
                    option: format!("{prefix}{body}"),
                    possibilities: names.iter().map(|n| format!("{prefix}{n}")).collect(),
                }))
            }
        };
        let arg = match (spec.has_arg, inline) {
            (true, Some(v)) => v,
            (true, None) => match args.get(i) {
                Some(next) => {
                    i += 1;
                    next.as_ref()
                }
                None => {
                    return Err(invalid(GetoptError::RequiresArgument {
                        option: format!("{prefix}{}", spec.name),
                    }))
                }
            },
            (false, Some(_)) => {
                return Err(invalid(GetoptError::NoArgumentAllowed {
                    option: format!("{prefix}{}", spec.name),
                }))
            }
            (false, None) => "",
        };
        if let Some(feature) = apply(opts, spec.opt, arg)? {
            return Ok(Some(feature));
        }
    }
    Ok(None)
}

/// Apply one option; `Some(feature)` ends parsing (only `-supports`).
fn apply(o: &mut Options, opt: Opt, arg: &str) -> Result<Option<String>, ArgvError> {
    let s = || Some(arg.to_string());
    match opt {
        Opt::Mode => {
            o.mode = Some(
                Mode::from_name(arg).ok_or_else(|| ArgvError::UnrecognizedMode(arg.to_string()))?,
            )
        }
        Opt::ControlInFd => o.controlinfd = parse_int(arg)?,
        Opt::ControlOutFd => o.controloutfd = parse_int(arg)?,
        Opt::DebugLog => o.debuglog = s(),
        Opt::Fake | Opt::Fork | Opt::NoIncrGenerationId => {}
        Opt::Fd => o.fd = parse_int(arg)?,
        Opt::Image => o.image = s(),
        Opt::Cmdline => {
            if o.cmdline.is_none() {
                o.cmdline = s();
            } else {
                o.module_cmdlines.push(arg.to_string());
            }
        }
        Opt::Ramdisk => o.ramdisk = s(),
        Opt::Domid => o.domid = parse_int(arg)?,
        Opt::Live => o.flags |= XCFLAGS_LIVE,
        Opt::Debug => o.flags |= XCFLAGS_DEBUG,
        Opt::StorePort => o.store_port = parse_int(arg)?,
        Opt::StoreDomid => o.store_domid = parse_int(arg)?,
        Opt::ConsolePort => o.console_port = parse_int(arg)?,
        Opt::ConsoleDomid => o.console_domid = parse_int(arg)?,
        Opt::Features => o.features = s(),
        Opt::Flags => o.flags = parse_int(arg)?,
        Opt::MemMaxMib => o.mem_max_mib = parse_int(arg)?,
        Opt::MemStartMib => o.mem_start_mib = parse_int(arg)?,
        Opt::Supports => return Ok(Some(arg.to_string())),
        Opt::PciPassthrough => o.pci_passthrough = s(),
        Opt::Force => o.force = true,
        Opt::Vgpu => o.vgpu = true,
        Opt::Module => o.module_paths.push(arg.to_string()),
        Opt::MemPnode => {
            let node = parse_int(arg)?;
            o.mem_pnode =
                Some(u32::try_from(node).map_err(|_| ArgvError::InvalidNode(arg.to_string()))?);
        }
        Opt::Sim => o.sim = s(),
        Opt::SimKey => match arg.split_once('=') {
            Some((path, value)) if !path.is_empty() => {
                o.sim_keys.push((path.to_string(), value.to_string()))
            }
            _ => return Err(ArgvError::InvalidSimKey(arg.to_string())),
        },
        Opt::SimHost => o.sim_host = s(),
        Opt::Report => o.report = s(),
        Opt::Stderr => o.stderr = true,
        Opt::Summary => o.summary = true,
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::PciSbdf;
    use crate::request::PVH_MODULE_MAX;

    fn argv(words: &[&str]) -> Vec<String> {
        std::iter::once("xenguest")
            .chain(words.iter().copied())
            .map(String::from)
            .collect()
    }

    fn run(words: &[&str]) -> Options {
        match parse(&argv(words)) {
            Ok(Action::Run(o)) => *o,
            other => panic!("{words:?}: expected Run, got {other:?}"),
        }
    }

    fn err(words: &[&str]) -> ArgvError {
        match parse(&argv(words)) {
            Err(e) => e,
            other => panic!("{words:?}: expected error, got {other:?}"),
        }
    }

    fn tail(domid: &str) -> Vec<&str> {
        vec![
            "-domid",
            domid,
            "-store_port",
            "3",
            "-store_domid",
            "0",
            "-console_port",
            "4",
            "-console_domid",
            "0",
            "-mem_max_mib",
            "4096",
            "-mem_start_mib",
            "2048",
        ]
    }

    #[test]
    fn xenopsd_hvm_build_with_vgpu_pnode_force_and_passthrough() {
        let mut w = vec![
            "-controloutfd",
            "7",
            "-controlinfd",
            "8",
            "-mode",
            "hvm_build",
        ];
        w.extend(["-image", "/usr/libexec/xen/boot/hvmloader", "-vgpu"]);
        w.extend(tail("12"));
        w.extend([
            "-mem_pnode",
            "1",
            "--force",
            "-pci_passthrough",
            "0000:03:00.0,0000:04:00.1",
        ]);
        let o = run(&w);
        assert_eq!(o.mode, Some(Mode::HvmBuild));
        assert_eq!((o.controloutfd, o.controlinfd), (7, 8));
        assert_eq!(o.image.as_deref(), Some("/usr/libexec/xen/boot/hvmloader"));
        assert!(o.vgpu && o.force);
        assert_eq!(
            (
                o.domid,
                o.store_port,
                o.store_domid,
                o.console_port,
                o.console_domid
            ),
            (12, 3, 0, 4, 0)
        );
        assert_eq!((o.mem_max_mib, o.mem_start_mib), (4096, 2048));
        assert_eq!(o.mem_pnode, Some(1));
        assert_eq!(
            o.pci_passthrough.as_deref(),
            Some("0000:03:00.0,0000:04:00.1")
        );
        assert_eq!(
            crate::request::parse_pci_passthrough(o.pci_passthrough.as_deref().unwrap_or(""))
                .unwrap(),
            vec![
                PciSbdf {
                    seg: 0,
                    bus: 3,
                    dev: 0,
                    func: 0
                },
                PciSbdf {
                    seg: 0,
                    bus: 4,
                    dev: 0,
                    func: 1
                }
            ]
        );
        assert_eq!(o.check_required(), Ok(()));
        assert_eq!(o.mode.map(Mode::syslog_suffix), Some("-build"));
    }

    #[test]
    fn xenopsd_pv_build_with_empty_ramdisk() {
        let mut w = vec![
            "-mode",
            "linux_build",
            "-image",
            "/var/run/kernel",
            "-cmdline",
            "root=/dev/xvda1 ro",
        ];
        w.extend(["-ramdisk", "", "-features", "", "-flags", "0"]);
        w.extend(tail("3"));
        let o = run(&w);
        assert_eq!(o.mode, Some(Mode::LinuxBuild));
        assert_eq!(o.ramdisk.as_deref(), Some(""));
        assert_eq!(o.features.as_deref(), Some(""));
        assert_eq!(o.cmdline.as_deref(), Some("root=/dev/xvda1 ro"));
        assert_eq!(o.flags, 0);
        assert!(o.modules().is_empty());
        assert_eq!(o.check_required(), Ok(()));
        // Without -ramdisk the PV build is incomplete.
        let w2: Vec<&str> = w.iter().copied().filter(|x| *x != "-ramdisk").collect();
        // Removing "-ramdisk" leaves its "" as a stray word, which is ignored.
        assert_eq!(run(&w2).check_required(), Err(ArgvError::MissingOptions));
    }

    #[test]
    fn pv_build_is_an_alias() {
        assert_eq!(run(&["-mode", "pv_build"]).mode, Some(Mode::LinuxBuild));
    }

    #[test]
    fn xenopsd_pvh_build_with_modules_and_cmdlines() {
        let mut w = vec![
            "-mode",
            "pvh_build",
            "-image",
            "/usr/lib/xen/boot/xen-shim",
            "-cmdline",
            "pv-shim console=xen",
        ];
        w.extend(["-features", "", "-flags", "0"]);
        w.extend([
            "-module",
            "/boot/vmlinuz",
            "-cmdline",
            "root=/dev/xvda1",
            "-module",
            "/boot/initrd.img",
        ]);
        w.extend(tail("9"));
        let o = run(&w);
        assert_eq!(o.mode, Some(Mode::PvhBuild));
        assert_eq!(o.cmdline.as_deref(), Some("pv-shim console=xen"));
        assert_eq!(
            o.modules(),
            vec![
                Module {
                    path: "/boot/vmlinuz".into(),
                    cmdline: "root=/dev/xvda1".into()
                },
                Module {
                    path: "/boot/initrd.img".into(),
                    cmdline: String::new()
                },
            ]
        );
        assert_eq!(o.check_required(), Ok(()));
    }

    #[test]
    fn cmdline_pairing_is_by_count_not_position() {
        // Two extra cmdlines before any module still go to modules 0 and 1.
        let o = run(&[
            "-cmdline", "k", "-cmdline", "a", "-cmdline", "b", "-module", "m0", "-module", "m1",
            "-module", "m2",
        ]);
        assert_eq!(o.cmdline.as_deref(), Some("k"));
        let m = o.modules();
        assert_eq!(m.len(), 3);
        assert_eq!(
            (
                m[0].cmdline.as_str(),
                m[1].cmdline.as_str(),
                m[2].cmdline.as_str()
            ),
            ("a", "b", "")
        );
        // Surplus cmdlines are ignored; a module before the kernel cmdline pairs with the 2nd one.
        let o = run(&[
            "-module", "m0", "-cmdline", "k", "-cmdline", "a", "-cmdline", "extra",
        ]);
        assert_eq!(
            o.modules(),
            vec![Module {
                path: "m0".into(),
                cmdline: "a".into()
            }]
        );
    }

    #[test]
    fn eleven_modules_parse_and_are_refused_by_the_request() {
        let mut w = vec![
            "-mode",
            "pvh_build",
            "-image",
            "i",
            "-cmdline",
            "c",
            "-features",
            "",
            "-flags",
            "0",
        ];
        w.extend(tail("1"));
        for _ in 0..PVH_MODULE_MAX {
            w.extend(["-module", "m"]);
        }
        assert_eq!(run(&w).check_required(), Ok(()));
        // The eleventh parses: the count is the request's check (`validate`), for both faces.
        w.extend(["-module", "m"]);
        let o = run(&w);
        assert_eq!(o.check_required(), Ok(()));
        assert_eq!(o.modules().len(), PVH_MODULE_MAX + 1);
        assert_eq!(
            crate::request::build_command(&o).unwrap_err().wire_text(),
            "xenguest: pvh_build: [22] 11 modules given: a PVH guest takes at most 10\n"
        );
    }

    #[test]
    fn listen_mode_from_emu_manager() {
        let o = run(&[
            "-debug",
            "-domid",
            "5",
            "-controlinfd",
            "9",
            "-controloutfd",
            "10",
            "-mode",
            "listen",
            "-mem_pnode",
            "0",
        ]);
        assert_eq!(o.mode, Some(Mode::Listen));
        assert!(o.debug_enabled());
        assert_eq!(o.mem_pnode, Some(0));
        assert_eq!(o.check_required(), Ok(()));
        assert_eq!(o.mode.map(Mode::syslog_suffix), Some("-emp"));
    }

    #[test]
    fn double_dash_and_equals_forms() {
        let o = run(&[
            "--mode=hvm_build",
            "--domid",
            "4",
            "-image=/x=y",
            "--store_port=07",
        ]);
        assert_eq!(o.mode, Some(Mode::HvmBuild));
        assert_eq!(o.domid, 4);
        assert_eq!(o.image.as_deref(), Some("/x=y"));
        assert_eq!(o.store_port, 7);
        // "--store_port=" has an empty argument: not a valid int.
        assert_eq!(
            err(&["--store_port=", "7"]),
            ArgvError::InvalidInt(String::new())
        );
        assert_eq!(run(&["-cmdline="]).cmdline.as_deref(), Some(""));
    }

    #[test]
    fn argument_is_next_word_whatever_it_is() {
        let o = run(&["-cmdline", "--", "-image", "-domid", "-features", "--force"]);
        assert_eq!(o.cmdline.as_deref(), Some("--"));
        assert_eq!(o.image.as_deref(), Some("-domid"));
        assert_eq!(o.features.as_deref(), Some("--force"));
        assert!(!o.force);
    }

    #[test]
    fn prefixes() {
        let o = run(&[
            "-mem_max",
            "10",
            "-mem_s",
            "5",
            "-dom",
            "3",
            "-controli",
            "1",
            "-controlo",
            "2",
            "-pci",
            "0:1.2",
        ]);
        assert_eq!(
            (
                o.mem_max_mib,
                o.mem_start_mib,
                o.domid,
                o.controlinfd,
                o.controloutfd
            ),
            (10, 5, 3, 1, 2)
        );
        assert_eq!(o.pci_passthrough.as_deref(), Some("0:1.2"));
        assert!(run(&["-v"]).vgpu);
        assert_eq!(run(&["--ima=/k"]).image.as_deref(), Some("/k"));
        // "mod" is a prefix of both "mode" and "module".
        assert!(matches!(
            err(&["--mod=listen"]),
            ArgvError::InvalidCommandLine { .. }
        ));
        assert!(run(&["-stde"]).stderr);
        assert_eq!(run(&["-no"]).flags, 0);
    }

    #[test]
    fn exact_match_beats_longer_names() {
        let o = run(&["-debug"]);
        assert_eq!(o.flags, XCFLAGS_DEBUG);
        assert_eq!(o.debuglog, None);
        assert_eq!(run(&["-fd", "3"]).fd, 3);
        assert_eq!(run(&["-sim", "host"]).sim.as_deref(), Some("host"));
        assert_eq!(
            run(&["-debugl", "/tmp/x"]).debuglog.as_deref(),
            Some("/tmp/x")
        );
    }

    #[test]
    fn ambiguous_prefix() {
        let e = err(&["-mem", "1"]);
        assert_eq!(e.to_string(), "invalid command line '-mem'");
        assert_eq!(
            e.getopt_diagnostic().map(ToString::to_string).as_deref(),
            Some("option '-mem' is ambiguous; possibilities: '-mem_max_mib' '-mem_start_mib' '-mem_pnode'")
        );
        let e = err(&["--co=1"]);
        assert_eq!(e.to_string(), "invalid command line '--co=1'");
        assert_eq!(
            e.getopt_diagnostic().map(ToString::to_string).as_deref(),
            Some(
                "option '--co=1' is ambiguous; possibilities: '--controlinfd' '--controloutfd' \
                 '--console_port' '--console_domid'"
            )
        );
        assert!(matches!(err(&["-f"]), ArgvError::InvalidCommandLine { .. }));
        assert!(matches!(
            err(&["-control"]),
            ArgvError::InvalidCommandLine { .. }
        ));
        // An empty name is a prefix of everything.
        let e = err(&["-=3"]);
        match e.getopt_diagnostic() {
            Some(GetoptError::Ambiguous { possibilities, .. }) => {
                assert_eq!(possibilities.len(), OPTIONS.len())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_options() {
        let e = err(&["-mode", "hvm_build", "-foo"]);
        assert_eq!(e.to_string(), "invalid command line '-foo'");
        assert_eq!(
            e.getopt_diagnostic(),
            Some(&GetoptError::Unrecognized {
                option: "-foo".into()
            })
        );
        let e = err(&["--foo=bar"]);
        assert_eq!(e.to_string(), "invalid command line '--foo=bar'");
        assert_eq!(
            e.getopt_diagnostic().unwrap().to_string(),
            "unrecognized option '--foo=bar'"
        );
        assert_eq!(
            err(&["---mode", "x"]).to_string(),
            "invalid command line '---mode'"
        );
        // Case matters, as in getopt.
        assert_eq!(
            err(&["-MODE", "listen"]).to_string(),
            "invalid command line '-MODE'"
        );
        // -mem_pnodes is longer than any option.
        assert_eq!(
            err(&["-mem_pnodes", "1"]).to_string(),
            "invalid command line '-mem_pnodes'"
        );
    }

    #[test]
    fn missing_argument_at_end() {
        let e = err(&["-mode", "hvm_build", "-dom"]);
        assert_eq!(e.to_string(), "invalid command line '-dom'");
        assert_eq!(
            e.getopt_diagnostic().unwrap().to_string(),
            "option '-domid' requires an argument"
        );
        let e = err(&["--image"]);
        assert_eq!(
            e.getopt_diagnostic().unwrap().to_string(),
            "option '--image' requires an argument"
        );
    }

    #[test]
    fn equals_on_flag_is_an_error() {
        let e = err(&["-force=1"]);
        assert_eq!(e.to_string(), "invalid command line '-force=1'");
        assert_eq!(
            e.getopt_diagnostic().unwrap().to_string(),
            "option '-force' doesn't allow an argument"
        );
        let e = err(&["--li=yes"]);
        assert_eq!(
            e.getopt_diagnostic().unwrap().to_string(),
            "option '--live' doesn't allow an argument"
        );
        assert!(matches!(
            err(&["-stderr="]),
            ArgvError::InvalidCommandLine { .. }
        ));
    }

    #[test]
    fn stray_words_are_ignored() {
        let o = run(&[
            "-fork",
            "true",
            "xyz",
            "-",
            "",
            "-fake",
            "-no_incr_generationid",
            "-domid",
            "2",
            "junk",
        ]);
        assert_eq!(o.domid, 2);
        assert_eq!(
            o,
            Options {
                domid: 2,
                ..Options::default()
            }
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let o = run(&["-domid", "2", "--", "-domid", "3", "-foo"]);
        assert_eq!(o.domid, 2);
        assert_eq!(run(&["--"]), Options::default());
    }

    #[test]
    fn bad_integers() {
        for bad in [
            "12x",
            "",
            " ",
            "99999999999",
            "2147483648",
            "-2147483649",
            "0x10",
            "1 ",
            "+",
            "-",
            "1.5",
            "１",
        ] {
            assert_eq!(
                err(&["-domid", bad]),
                ArgvError::InvalidInt(bad.to_string()),
                "{bad:?}"
            );
        }
        assert_eq!(
            err(&["-domid", "12x"]).to_string(),
            "'12x' is not a valid int"
        );
        assert_eq!(
            err(&["-mem_max_mib", ""]).to_string(),
            "'' is not a valid int"
        );
        for (good, v) in [
            ("2147483647", i32::MAX),
            ("-2147483648", i32::MIN),
            ("+7", 7),
            (" \t12", 12),
            ("007", 7),
            ("-0", 0),
        ] {
            assert_eq!(parse_int(good), Ok(v), "{good:?}");
        }
    }

    #[test]
    fn first_error_wins() {
        assert_eq!(
            err(&["-domid", "x", "-foo"]),
            ArgvError::InvalidInt("x".into())
        );
        assert_eq!(
            err(&["-mode", "nope", "-domid", "x"]),
            ArgvError::UnrecognizedMode("nope".into())
        );
        assert!(matches!(
            err(&["-foo", "-mode", "nope"]),
            ArgvError::InvalidCommandLine { .. }
        ));
    }

    #[test]
    fn last_occurrence_wins() {
        let o = run(&[
            "-domid", "1", "-domid", "2", "-image", "a", "-image", "b", "-mode", "save", "-mode",
            "restore",
        ]);
        assert_eq!(
            (o.domid, o.image.as_deref(), o.mode),
            (2, Some("b"), Some(Mode::Restore))
        );
        let o = run(&[
            "-debuglog",
            "/a",
            "-debuglog",
            "/b",
            "-pci_passthrough",
            "1:2.3",
            "-pci_passthrough",
            "4:5.6",
        ]);
        assert_eq!(o.debuglog.as_deref(), Some("/b"));
        assert_eq!(o.pci_passthrough.as_deref(), Some("4:5.6"));
    }

    #[test]
    fn flags_live_and_debug_order() {
        assert_eq!(run(&["-live", "-debug"]).flags, 3);
        assert_eq!(run(&["-live", "-debug", "-flags", "0"]).flags, 0);
        assert_eq!(run(&["-flags", "8", "-debug"]).flags, 10);
        assert_eq!(run(&["-flags", "4", "-live"]).flags, 5);
        let o = run(&["-flags", "-1"]);
        assert!(o.flags & XCFLAGS_LIVE != 0 && o.debug_enabled());
        // -flags -1 makes PVH/PV builds incomplete, as in C.
        let mut w = vec![
            "-mode",
            "pvh_build",
            "-image",
            "i",
            "-cmdline",
            "c",
            "-features",
            "",
            "-flags",
            "-1",
        ];
        w.extend(tail("1"));
        assert_eq!(run(&w).check_required(), Err(ArgvError::MissingOptions));
    }

    #[test]
    fn unknown_mode() {
        let e = err(&["-mode", "hvm"]);
        assert_eq!(e.to_string(), "unrecognized mode 'hvm'");
        assert_eq!(err(&["-mode="]).to_string(), "unrecognized mode ''");
        assert_eq!(
            err(&["-mode", "HVM_BUILD"]),
            ArgvError::UnrecognizedMode("HVM_BUILD".into())
        );
        for m in Mode::ALL {
            assert_eq!(Mode::from_name(m.name()), Some(m));
            assert_eq!(run(&["-mode", m.name()]).mode, Some(m));
        }
    }

    #[test]
    fn supports() {
        assert_eq!(
            parse(&argv(&["-supports", "migration-v2"])),
            Ok(Action::Supports("migration-v2".into()))
        );
        // Acts immediately: later garbage is never seen, earlier garbage is.
        assert_eq!(
            parse(&argv(&["-supports", "x", "-foo"])),
            Ok(Action::Supports("x".into()))
        );
        assert!(matches!(
            err(&["-foo", "-supports", "x"]),
            ArgvError::InvalidCommandLine { .. }
        ));
        assert_eq!(
            parse(&argv(&["-sup=report"])),
            Ok(Action::Supports("report".into()))
        );
        // The libxenguest engine writes and reads v2 and later streams; nothing else does.
        assert_eq!(supports_feature("migration-v2"), cfg!(feature = "xen"));
        assert!(supports_feature("mem_pnode"));
        assert!(supports_feature("report"));
        assert!(!supports_feature("migration-v3"));
        assert!(!supports_feature(""));
        assert!(matches!(
            err(&["-supports"]),
            ArgvError::InvalidCommandLine { .. }
        ));
    }

    #[test]
    fn mem_pnode_must_be_non_negative() {
        assert_eq!(
            err(&["-mem_pnode", "-1"]).to_string(),
            "'-1' is not a valid NUMA node"
        );
        assert_eq!(err(&["-mem_pnode", "a"]), ArgvError::InvalidInt("a".into()));
        assert_eq!(run(&["-mem_pnode", "7"]).mem_pnode, Some(7));
    }

    #[test]
    fn our_additions() {
        let o = run(&[
            "-sim",
            "numa2x8g",
            "-sim-key",
            "platform/acpi=1",
            "-sim-key",
            "a/b==c",
            "-report",
            "/tmp/r.json",
            "-stderr",
        ]);
        assert_eq!(o.sim.as_deref(), Some("numa2x8g"));
        assert_eq!(
            o.sim_keys,
            vec![
                ("platform/acpi".into(), "1".into()),
                ("a/b".into(), "=c".into())
            ]
        );
        assert_eq!(o.report.as_deref(), Some("/tmp/r.json"));
        assert!(o.stderr);
        assert_eq!(
            err(&["-sim-key", "novalue"]).to_string(),
            "invalid -sim-key 'novalue': expected <path>=<value>"
        );
        assert_eq!(
            err(&["-sim-key", "=v"]),
            ArgvError::InvalidSimKey("=v".into())
        );
        assert_eq!(
            run(&["-sim-key", "k="]).sim_keys,
            vec![("k".into(), String::new())]
        );
        // "-si" is now ambiguous (sim, sim-key).
        assert!(matches!(
            err(&["-si", "x"]),
            ArgvError::InvalidCommandLine { .. }
        ));
    }

    #[test]
    fn defaults() {
        let o = Options::default();
        assert_eq!(
            (o.controlinfd, o.controloutfd, o.fd, o.domid),
            (-1, -1, -1, -1)
        );
        assert_eq!(
            (o.store_port, o.store_domid, o.console_port, o.console_domid),
            (-1, 0, -1, 0)
        );
        assert_eq!((o.flags, o.mem_max_mib, o.mem_start_mib), (0, -1, -1));
        assert_eq!(run(&[]), o);
        assert_eq!(parse::<String>(&[]), Ok(Action::Run(Box::default())));
    }

    #[test]
    fn required_options_per_mode() {
        assert_eq!(Options::default().check_required(), Err(ArgvError::NoMode));
        assert_eq!(ArgvError::NoMode.to_string(), "no `-mode' option specified");
        let with = |w: &[&str]| run(w).check_required();
        assert_eq!(
            with(&["-mode", "hvm_build"]),
            Err(ArgvError::MissingOptions)
        );
        assert_eq!(
            ArgvError::MissingOptions.to_string(),
            "missing command line options"
        );
        let mut hvm = vec!["-mode", "hvm_build", "-image", "i"];
        hvm.extend(tail("1"));
        assert_eq!(with(&hvm), Ok(()));
        for drop in [
            "-domid",
            "-store_port",
            "-console_port",
            "-mem_max_mib",
            "-mem_start_mib",
            "-image",
        ] {
            let w: Vec<&str> = hvm
                .iter()
                .enumerate()
                .filter(|(i, x)| **x != drop && (*i == 0 || hvm[i - 1] != drop))
                .map(|(_, x)| *x)
                .collect();
            assert_eq!(with(&w), Err(ArgvError::MissingOptions), "without {drop}");
        }
        let mut w = hvm.clone();
        w.extend(["-store_domid", "-1"]);
        assert_eq!(with(&w), Err(ArgvError::MissingOptions));
        // PVH needs cmdline and features on top of HVM's.
        let mut pvh = hvm.clone();
        pvh[1] = "pvh_build";
        assert_eq!(with(&pvh), Err(ArgvError::MissingOptions));
        pvh.extend(["-cmdline", "c"]);
        assert_eq!(with(&pvh), Err(ArgvError::MissingOptions));
        pvh.extend(["-features", ""]);
        assert_eq!(with(&pvh), Ok(()));
        assert_eq!(
            with(&["-mode", "save", "-domid", "1"]),
            Err(ArgvError::MissingOptions)
        );
        assert_eq!(
            with(&["-mode", "hvm_save", "-domid", "1", "-fd", "3"]),
            Ok(())
        );
        assert_eq!(
            with(&[
                "-mode",
                "restore",
                "-domid",
                "1",
                "-fd",
                "3",
                "-store_port",
                "1"
            ]),
            Err(ArgvError::MissingOptions)
        );
        assert_eq!(
            with(&[
                "-mode",
                "hvm_restore",
                "-domid",
                "1",
                "-fd",
                "3",
                "-store_port",
                "1",
                "-console_port",
                "2"
            ]),
            Ok(())
        );
        assert_eq!(
            with(&["-mode", "resume_slow"]),
            Err(ArgvError::MissingOptions)
        );
        assert_eq!(with(&["-mode", "resume_slow", "-domid", "0"]), Ok(()));
        assert_eq!(with(&["-mode", "listen"]), Ok(()));
        assert_eq!(with(&["-mode", "test"]), Ok(()));
    }

    #[test]
    fn never_panics_on_odd_input() {
        // A small deterministic fuzz over odd words; the real fuzzer does more.
        let words = [
            "-",
            "--",
            "---",
            "-=",
            "--=",
            "=",
            "-mode",
            "listen",
            "-domid",
            "-1",
            "é",
            "-é",
            "--é=é",
            "-cmdline",
            "-module",
            "-sim-key",
            "a=b",
            "-mem_pnode",
            "-supports",
            "-x=",
            "",
            "\0",
            "-\0",
            "-fo",
            "-mem",
            "-debug",
            "-d",
        ];
        let mut state = 0x2545_f491_u32;
        for _ in 0..5000 {
            let mut w = Vec::new();
            for _ in 0..(state % 7) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                w.push(words[state as usize % words.len()]);
            }
            if let Ok(Action::Run(o)) = parse(&argv(&w)) {
                let _ = o.check_required();
                let _ = o.modules();
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_is_total(words in proptest::collection::vec("-{0,3}[a-z_=-]{0,14}|\\PC{0,6}", 0..10)) {
            let mut args = vec!["xenguest".to_string()];
            args.extend(words);
            if let Ok(Action::Run(o)) = parse(&args) {
                let _ = o.check_required();
            }
        }

        #[test]
        fn single_and_double_dash_agree(words in proptest::collection::vec("[a-z_=0-9][a-z_=0-9-]{0,13}", 0..8)) {
            let one: Vec<String> = std::iter::once("x".to_string()).chain(words.iter().map(|w| format!("-{w}"))).collect();
            let two: Vec<String> = std::iter::once("x".to_string()).chain(words.iter().map(|w| format!("--{w}"))).collect();
            // Arguments are taken verbatim (`-p -0` gives "-0", `--p --0` gives "--0"), so
            // compare what was recognised, not the argument text.
            let strip = |r: Result<Parsed, ArgvError>| r.map(|_| ()).map_err(|e| std::mem::discriminant(&e));
            proptest::prop_assert_eq!(strip(parse(&one)), strip(parse(&two)));
        }

    }
}
