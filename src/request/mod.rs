//! What a build is asked to do, parsed once for both faces: the binary's argv (xenopsd's
//! command line, [`argv`]) and the OCaml module's typed arguments both become a
//! [`BuildRequest`] through the parsers here, so they accept and refuse the same requests
//! with the same texts. Pure: no process, fd or logging set-up.
//!
//! One parser per input: [`argv`] (getopt_long_only), [`pci`] (`-pci_passthrough`),
//! [`modules`] (`-module`/`-cmdline` pairing), [`limits`] (`/mh/limits/*`) and
//! [`validate`] (what no mode can build).

pub mod argv;
pub mod limits;
pub mod modules;
pub mod pci;
pub mod validate;

pub use argv::{Action, ArgvError, Mode, Options};
pub use limits::{ImageLimits, LimitsError, KERNEL_MAX_SIZE_KEY, RAMDISK_MAX_SIZE_KEY};
pub use pci::{parse_pci_address, parse_pci_passthrough, PciError};
pub use validate::{validate, ValidationError};

use crate::builder::BuildMode;
use crate::hypervisor::PciSbdf;
use crate::types::DomId;
use crate::{Error, ErrorKind, Step};
use std::path::PathBuf;

/// `PVH_MODULE_MAX` in the C xenguest: the size of its module array (xenserver/xen.pg
/// `patches/xenguest.patch`).
pub const PVH_MODULE_MAX: usize = 10;

/// A module (PVH) with its command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Module {
    /// File.
    pub path: PathBuf,
    /// Its command line ("" when none was given).
    pub cmdline: String,
}

/// What xenopsd asks for: the binary's command line, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// Domain to build (created empty by the toolstack).
    pub domid: DomId,
    /// Maximum memory, MiB.
    pub mem_max_mib: u64,
    /// Memory at boot, MiB (PoD target for HVM/PVH when below max).
    pub mem_start_mib: u64,
    /// hvmloader (HVM), kernel or shim (PVH), kernel (PV).
    pub image: PathBuf,
    /// Kernel command line (PVH/PV).
    pub cmdline: String,
    /// PV ramdisk.
    pub ramdisk: Option<PathBuf>,
    /// PVH modules.
    pub modules: Vec<Module>,
    /// PV ELF feature string.
    pub features: String,
    /// PV start_info flags (`-flags`).
    pub flags: u32,
    /// Xenstore event channel.
    pub store_port: u32,
    /// Xenstore backend domain.
    pub store_domid: DomId,
    /// Console event channel.
    pub console_port: u32,
    /// Console backend domain.
    pub console_domid: DomId,
    /// An NVIDIA vGPU is attached (`-vgpu`).
    pub vgpu: bool,
    /// Passthrough devices (`-pci_passthrough`).
    pub pci_passthrough: Vec<PciSbdf>,
    /// Populate guest RAM from this NUMA node only (`-mem_pnode`).
    pub mem_pnode: Option<u32>,
    /// Skip the safety checks (`-force`).
    pub force: bool,
}

impl BuildRequest {
    /// A request with xenopsd's usual values for everything but the essentials.
    pub fn new(
        domid: DomId,
        mem_max_mib: u64,
        mem_start_mib: u64,
        image: impl Into<PathBuf>,
    ) -> Self {
        BuildRequest {
            domid,
            mem_max_mib,
            mem_start_mib,
            image: image.into(),
            cmdline: String::new(),
            ramdisk: None,
            modules: Vec::new(),
            features: String::new(),
            flags: 0,
            store_port: 1,
            store_domid: DomId(0),
            console_port: 2,
            console_domid: DomId(0),
            vgpu: false,
            pci_passthrough: Vec::new(),
            mem_pnode: None,
            force: false,
        }
    }
}

/// A build an argv asks for: the mode and the typed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildCommand {
    /// Which build.
    pub mode: BuildMode,
    /// Its arguments.
    pub request: BuildRequest,
}

/// The build that checked options ([`Options::check_required`]) ask for, refused as the
/// binary reports it: a mode that is not a build is `not implemented`, a negative number, a
/// bad `-pci_passthrough` token or a [`validate`] failure is an invalid request.
pub fn build_command(opts: &Options) -> Result<BuildCommand, Error> {
    let mode = match opts.mode {
        Some(Mode::HvmBuild) => BuildMode::Hvm,
        Some(Mode::PvhBuild) => BuildMode::Pvh,
        Some(Mode::LinuxBuild) => BuildMode::Pv,
        Some(Mode::Test) => {
            return Err(Error::new(
                Step::Mode("test"),
                ErrorKind::NotImplemented("test mode not supported".into()),
            ))
        }
        Some(other) => {
            return Err(Error::new(
                Step::Mode(other.name()),
                ErrorKind::NotImplemented(format!(
                    "{other} is a migration mode, which only the xenguest binary runs"
                )),
            ))
        }
        None => return Err(invalid(ArgvError::NoMode.to_string())),
    };
    let non_negative = |name: &str, v: i32| {
        u32::try_from(v).map_err(|_| invalid(format!("-{name} {v} is negative")))
    };
    let pci = parse_pci_passthrough(opts.pci_passthrough.as_deref().unwrap_or(""))?;
    let request = BuildRequest {
        domid: DomId(non_negative("domid", opts.domid)?),
        mem_max_mib: non_negative("mem_max_mib", opts.mem_max_mib)?.into(),
        mem_start_mib: non_negative("mem_start_mib", opts.mem_start_mib)?.into(),
        image: PathBuf::from(opts.image.clone().unwrap_or_default()),
        cmdline: opts.cmdline.clone().unwrap_or_default(),
        ramdisk: opts
            .ramdisk
            .clone()
            .filter(|r| !r.is_empty())
            .map(PathBuf::from),
        modules: modules::pair_modules(&opts.module_paths, &opts.module_cmdlines),
        features: opts.features.clone().unwrap_or_default(),
        flags: opts.flags.cast_unsigned(),
        store_port: non_negative("store_port", opts.store_port)?,
        store_domid: DomId(non_negative("store_domid", opts.store_domid)?),
        console_port: non_negative("console_port", opts.console_port)?,
        console_domid: DomId(non_negative("console_domid", opts.console_domid)?),
        vgpu: opts.vgpu,
        pci_passthrough: pci,
        mem_pnode: opts.mem_pnode,
        force: opts.force,
    };
    validate(&request).map_err(|e| e.at(mode.step()))?;
    Ok(BuildCommand { mode, request })
}

/// The request conversion's errors: step `main`, as the binary has always named them.
fn invalid(reason: String) -> Error {
    Step::Main.invalid(reason)
}

/// Why an argv does not make a build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The command line itself (C `parse_options` and the `do_*` checks): the C text.
    #[error("xenguest: {0}")]
    Argv(#[from] ArgvError),
    /// `-supports <feature>`: a question, answered on stdout by the binary, not a build.
    #[error("xenguest: -supports {0} asks a question, not for a build")]
    Supports(String),
    /// Options that parse but do not make a build ([`build_command`]).
    #[error(transparent)]
    Build(#[from] Error),
}

impl RequestError {
    /// The text after `error:` on the control fd (newline included).
    pub fn wire_text(&self) -> String {
        format!("{self}\n")
    }

    /// The step, as [`Error::step`]; `parse_options` for the command line.
    pub fn step(&self) -> &'static str {
        match self {
            RequestError::Argv(_) | RequestError::Supports(_) => "parse_options",
            RequestError::Build(e) => e.step().wire_name(),
        }
    }

    /// The errno-like code, as [`Error::code`]; 0 for the command line's C texts.
    pub fn code(&self) -> i32 {
        match self {
            RequestError::Argv(_) | RequestError::Supports(_) => 0,
            RequestError::Build(e) => e.code(),
        }
    }
}

/// An argv (`args[0]` is the program name) to the options and the build it asks for: the
/// binary's parse, mandatory-option check and [`build_command`], in that order.
pub fn command_of_argv<S: AsRef<str>>(args: &[S]) -> Result<(Options, BuildCommand), RequestError> {
    let opts = match argv::parse(args)? {
        Action::Supports(feature) => return Err(RequestError::Supports(feature)),
        Action::Run(opts) => *opts,
    };
    opts.check_required()?;
    let command = build_command(&opts)?;
    Ok((opts, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hvm(extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "xenguest",
            "-mode",
            "hvm_build",
            "-image",
            "/h",
            "-domid",
            "4",
            "-store_port",
            "1",
            "-console_port",
            "2",
            "-mem_max_mib",
            "64",
            "-mem_start_mib",
            "32",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    #[test]
    fn an_argv_becomes_a_typed_request() {
        let (_, c) = command_of_argv(&hvm(&[
            "-vgpu",
            "--force",
            "-mem_pnode",
            "1",
            "-pci_passthrough",
            "0000:03:00.0,04:00.1",
        ]))
        .unwrap();
        assert_eq!(c.mode, BuildMode::Hvm);
        let mut want = BuildRequest::new(DomId(4), 64, 32, "/h");
        want.vgpu = true;
        want.force = true;
        want.mem_pnode = Some(1);
        want.pci_passthrough = vec![
            PciSbdf {
                seg: 0,
                bus: 3,
                dev: 0,
                func: 0,
            },
            PciSbdf {
                seg: 0,
                bus: 4,
                dev: 0,
                func: 1,
            },
        ];
        assert_eq!(c.request, want);
    }

    #[test]
    fn refusals_and_their_texts() {
        let text = |extra: &[&str]| command_of_argv(&hvm(extra)).unwrap_err().wire_text();
        assert_eq!(
            text(&["-mem_max_mib", "-5"]),
            "xenguest: main: [22] -mem_max_mib -5 is negative\n"
        );
        assert_eq!(
            text(&["-pci_passthrough", "0000:03:00.0,3:0"]),
            "xenguest: main: [22] bad PCI address '3:0' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)\n"
        );
        assert_eq!(
            text(&["-bogus"]),
            "xenguest: invalid command line '-bogus'\n"
        );
        assert_eq!(
            text(&["-mode", "restore", "-fd", "3"]),
            "xenguest: restore: [38] not implemented: restore is a migration mode, which only \
             the xenguest binary runs\n"
        );
        assert_eq!(
            text(&["-mode", "test"]),
            "xenguest: test: [38] not implemented: test mode not supported\n"
        );
        let e = command_of_argv(&hvm(&["-supports", "sim"])).unwrap_err();
        assert_eq!((e.step(), e.code()), ("parse_options", 0));
        let e = command_of_argv(&hvm(&["-domid", "x"])).unwrap_err();
        assert_eq!((e.step(), e.code()), ("parse_options", 0));
        let e = command_of_argv(&hvm(&["-console_domid", "-2"])).unwrap_err();
        assert_eq!((e.step(), e.code()), ("main", libc::EINVAL));
    }
}
