//! One error model for every build: a [`BuildError`] is the [`Step`] that failed and the
//! [`ErrorKind`] of the failure, with typed causes. [`BuildError::wire_line`] is the one
//! function that renders the text the C xenguest puts after `error:` on the control fd; the
//! binary and the OCaml module both report failures through it.
//!
//! `Display` is that wire line, and it already carries the cause's text, so the error has no
//! `source()`: a chain printer would print the cause twice. The typed cause is in
//! [`BuildError::kind`].

use crate::hypervisor::XcError;
use crate::store::StoreError;
use std::fmt;

/// The steps of a build, as the C xenguest (and libxenguest underneath it) names them on the
/// wire: the `<step>` of `error:xenguest: <step>: [<errno>] <text>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// `xc_interface_open`.
    InterfaceOpen,
    /// `xs_open`.
    XsOpen,
    /// The request itself (`hvm_build`), before anything is touched.
    HvmBuild,
    /// The request itself (`pvh_build`).
    PvhBuild,
    /// The request itself (`linux_build`).
    LinuxBuild,
    /// `xc_domain_getinfo`.
    DomainGetinfo,
    /// `xc_dom_boot_xen_init`: the domain is not the container the mode needs.
    BootXenInit,
    /// `get_flags`: the platform keys in xenstore.
    GetFlags,
    /// `hvm_safety_check`.
    SafetyCheck,
    /// `xc_cpumap_alloc`.
    CpumapAlloc,
    /// `xc_vcpu_setaffinity`.
    VcpuSetaffinity,
    /// `xc_sched_credit_domain_set`.
    SchedCreditDomainSet,
    /// `xc_domain_set_tsc_info`.
    DomainSetTscInfo,
    /// `get_image_max_size`: `/mh/limits/pv-*-max_size`.
    ImageMaxSize,
    /// `xc_dom_kernel_file`.
    KernelFile,
    /// `xc_dom_module_file`.
    ModuleFile,
    /// `xc_dom_parse_image`.
    ParseImage,
    /// `hvm_load_firmware_module` (OVMF).
    LoadFirmwareModule,
    /// `hvm_build_setup_mem`: HVM layout and memory.
    HvmSetupMem,
    /// `pvh_setup_mem`.
    PvhSetupMem,
    /// `xc_dom_boot_mem_init`: PVH and PV memory.
    BootMemInit,
    /// `xc_domain_set_memory_map`.
    DomainSetMemoryMap,
    /// `xenguest_dom_load_acpi`.
    LoadAcpi,
    /// `xc_dom_build_image`: images, modules, special pages.
    BuildImage,
    /// `xc_dom_p2m`: a PV frame outside the p2m.
    P2m,
    /// `xc_dom_boot_image`: boot structures and the boot vCPU.
    BootImage,
    /// `xc_dom_gnttab_init`.
    GnttabInit,
    /// `hvm_build_params`.
    HvmBuildParams,
    /// `xc_domain_set_time_offset`.
    DomainSetTimeOffset,
    /// `construct_cpuid_policy`.
    ConstructCpuidPolicy,
    /// `xc_domain_get_native_protocol`.
    NativeProtocol,
    /// `main`: the binary's arguments, before any mode runs.
    Main,
    /// `sim`: the binary's simulated host (`-sim`, `-sim-key`).
    Sim,
    /// `report`: the binary's `-report` file.
    Report,
    /// A mode of the binary that is not a build (`listen`, `hvm_save`, ...), by its name.
    Mode(&'static str),
}

impl Step {
    /// The name on the wire.
    pub const fn wire_name(self) -> &'static str {
        match self {
            Step::InterfaceOpen => "xc_interface_open",
            Step::XsOpen => "xs_open",
            Step::HvmBuild => "hvm_build",
            Step::PvhBuild => "pvh_build",
            Step::LinuxBuild => "linux_build",
            Step::DomainGetinfo => "xc_domain_getinfo",
            Step::BootXenInit => "xc_dom_boot_xen_init",
            Step::GetFlags => "get_flags",
            Step::SafetyCheck => "hvm_safety_check",
            Step::CpumapAlloc => "xc_cpumap_alloc",
            Step::VcpuSetaffinity => "xc_vcpu_setaffinity",
            Step::SchedCreditDomainSet => "xc_sched_credit_domain_set",
            Step::DomainSetTscInfo => "xc_domain_set_tsc_info",
            Step::ImageMaxSize => "get_image_max_size",
            Step::KernelFile => "xc_dom_kernel_file",
            Step::ModuleFile => "xc_dom_module_file",
            Step::ParseImage => "xc_dom_parse_image",
            Step::LoadFirmwareModule => "hvm_load_firmware_module",
            Step::HvmSetupMem => "hvm_build_setup_mem",
            Step::PvhSetupMem => "pvh_setup_mem",
            Step::BootMemInit => "xc_dom_boot_mem_init",
            Step::DomainSetMemoryMap => "xc_domain_set_memory_map",
            Step::LoadAcpi => "xenguest_dom_load_acpi",
            Step::BuildImage => "xc_dom_build_image",
            Step::P2m => "xc_dom_p2m",
            Step::BootImage => "xc_dom_boot_image",
            Step::GnttabInit => "xc_dom_gnttab_init",
            Step::HvmBuildParams => "hvm_build_params",
            Step::DomainSetTimeOffset => "xc_domain_set_time_offset",
            Step::ConstructCpuidPolicy => "construct_cpuid_policy",
            Step::NativeProtocol => "xc_domain_get_native_protocol",
            Step::Main => "main",
            Step::Sim => "sim",
            Step::Report => "report",
            Step::Mode(name) => name,
        }
    }

    /// Wrap a failed hypervisor call at this step: `hv.call().map_err(Step::X.xc())`.
    pub fn xc(self) -> impl FnOnce(XcError) -> BuildError {
        move |e| BuildError::new(self, ErrorKind::Xc(e))
    }

    /// Wrap a failed store operation at this step.
    pub fn store(self) -> impl FnOnce(StoreError) -> BuildError {
        move |e| BuildError::new(self, ErrorKind::Store(e))
    }

    /// The request cannot be built at this step (EINVAL).
    pub fn invalid(self, reason: impl Into<String>) -> BuildError {
        BuildError::new(self, ErrorKind::InvalidRequest(reason.into()))
    }

    /// An image (`path`) is missing, unreadable, malformed or does not fit (`code` is the errno).
    pub fn image(
        self,
        code: i32,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> BuildError {
        BuildError::new(
            self,
            ErrorKind::Image {
                code,
                path: path.into(),
                reason: reason.into(),
            },
        )
    }
}

/// A step equals its wire name (tests and faces compare with the C texts).
impl PartialEq<&str> for Step {
    fn eq(&self, other: &&str) -> bool {
        self.wire_name() == *other
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// What went wrong, with the typed cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A libxenctrl call failed (the C `failwith_oss_xc`).
    Xc(XcError),
    /// xenstore failed (not a missing key: a broken connection, a refused write, a deadline).
    Store(StoreError),
    /// A platform value that cannot be used.
    Platform {
        /// Full xenstore path.
        path: String,
        /// The value read.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `platform/cores-per-socket` does not divide the vCPU count (C text, no prefix).
    CoresPerSocket {
        /// The requested value.
        cores_per_socket: u32,
        /// `platform/vcpu/number`.
        vcpus: u32,
    },
    /// A safety check refused the configuration (C text, no prefix); `-force` skips these.
    Safety(&'static str),
    /// The request itself is impossible (sizes, options).
    InvalidRequest(String),
    /// The memory layout cannot be built (C fatal texts such as `Error: too many E820
    /// reserved entries for domain`, no prefix).
    Layout(String),
    /// A kernel, firmware or module image is missing, unreadable, malformed or does not fit.
    Image {
        /// errno (EINVAL for a malformed image, ENOMEM when it does not fit).
        code: i32,
        /// The file, or what was being placed.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The host could not supply the guest's memory.
    OutOfMemory {
        /// Pages the guest asked for in RAM extents.
        wanted_pages: u64,
        /// Pages populated before the failure.
        populated_pages: u64,
        /// The node asked for exactly (`-mem_pnode`), if any.
        node: Option<u32>,
    },
    /// The guest cannot fit: the domain's `max_pages` or the host's free memory is smaller
    /// than the request (found before anything is allocated).
    NoRoom(String),
    /// Something this implementation does not do (yet).
    NotImplemented(String),
    /// The caller cancelled the build (see [`crate::cancel`]); `step` is where it stopped.
    Cancelled,
}

/// Why a build failed: the step and what went wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// The step that failed.
    pub step: Step,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl BuildError {
    /// An error at `step`.
    pub fn new(step: Step, kind: ErrorKind) -> Self {
        BuildError { step, kind }
    }

    /// The errno-like code of the failure (0 for the C texts that carry none).
    pub fn code(&self) -> i32 {
        match &self.kind {
            ErrorKind::Xc(e) => e.code,
            ErrorKind::Store(e) => e.code,
            ErrorKind::Platform { .. }
            | ErrorKind::InvalidRequest(_)
            | ErrorKind::CoresPerSocket { .. } => libc::EINVAL,
            ErrorKind::Safety(_) | ErrorKind::Layout(_) => 0,
            ErrorKind::Image { code, .. } => *code,
            ErrorKind::OutOfMemory { .. } | ErrorKind::NoRoom(_) => libc::ENOMEM,
            ErrorKind::NotImplemented(_) => libc::ENOSYS,
            ErrorKind::Cancelled => libc::ECANCELED,
        }
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The text after `error:` on the control fd, without the newline, as the C xenguest
    /// formats it: `xenguest: <step>: [<errno>] <text>`, or the bare C text for the few
    /// failures the C code reports without a step.
    pub fn wire_line(&self) -> String {
        let step = self.step.wire_name();
        let code = self.code();
        match &self.kind {
            ErrorKind::Xc(e) if e.function == step => {
                format!("xenguest: {step}: [{code}] {}", e.message)
            }
            ErrorKind::Xc(e) => format!("xenguest: {step}: [{code}] {}: {}", e.function, e.message),
            ErrorKind::Store(e) => format!("xenguest: {step}: [{code}] {e}"),
            ErrorKind::Platform {
                path,
                value,
                reason,
            } => format!("xenguest: {step}: [{code}] {path} = '{value}': {reason}"),
            ErrorKind::CoresPerSocket {
                cores_per_socket,
                vcpus,
            } => format!("Bad cores/socket setting: {cores_per_socket} (nr vcpus {vcpus})"),
            ErrorKind::Safety(text) => (*text).to_string(),
            ErrorKind::Layout(text) => text.clone(),
            ErrorKind::InvalidRequest(reason) | ErrorKind::NoRoom(reason) => {
                format!("xenguest: {step}: [{code}] {reason}")
            }
            ErrorKind::Image { path, reason, .. } => {
                format!("xenguest: {step}: [{code}] {path}: {reason}")
            }
            ErrorKind::OutOfMemory {
                wanted_pages,
                populated_pages,
                node,
            } => {
                let missing = wanted_pages.saturating_sub(*populated_pages);
                let node = node
                    .map(|n| format!(" on node {n} (exact)"))
                    .unwrap_or_default();
                format!(
                    "xenguest: {step}: [{code}] Could not allocate memory for guest: \
                     {wanted_pages} pages requested, {populated_pages} populated, \
                     {missing} missing{node}"
                )
            }
            ErrorKind::NotImplemented(what) => {
                format!("xenguest: {step}: [{code}] not implemented: {what}")
            }
            ErrorKind::Cancelled => format!("xenguest: {step}: [{code}] build cancelled"),
        }
    }

    /// [`wire_line`](Self::wire_line) with its newline, as written on the control fd.
    pub fn wire_text(&self) -> String {
        format!("{}\n", self.wire_line())
    }

    /// The HVM memory layout cannot be built (`hvm_build_setup_mem`, a bare C text).
    pub fn layout(text: impl Into<String>) -> Self {
        BuildError::new(Step::HvmSetupMem, ErrorKind::Layout(text.into()))
    }

    /// A platform value at `path` that cannot be used (at `get_flags`).
    pub fn platform(
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        BuildError::new(
            Step::GetFlags,
            ErrorKind::Platform {
                path: path.into(),
                value: value.into(),
                reason: reason.into(),
            },
        )
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire_line())
    }
}

impl std::error::Error for BuildError {}

/// The crate's error: every face and layer that reports a build failure uses this name.
pub use self::BuildError as Error;

/// Result of a build step.
pub type Result<T> = std::result::Result<T, BuildError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lines_match_the_c_format() {
        let e = Step::VcpuSetaffinity.xc()(XcError::errno("xc_vcpu_setaffinity", libc::EINVAL));
        assert_eq!(
            e.wire_text(),
            "xenguest: xc_vcpu_setaffinity: [22] Invalid argument\n"
        );
        // A call that is not the step itself is named.
        let e = Step::BootImage.xc()(XcError::errno("xc_mmuext_op", libc::EINVAL));
        assert_eq!(
            e.wire_line(),
            "xenguest: xc_dom_boot_image: [22] xc_mmuext_op: Invalid argument"
        );
        let e = BuildError::new(
            Step::GetFlags,
            ErrorKind::CoresPerSocket {
                cores_per_socket: 3,
                vcpus: 4,
            },
        );
        assert_eq!(e.wire_text(), "Bad cores/socket setting: 3 (nr vcpus 4)\n");
        assert_eq!(e.code(), libc::EINVAL);
    }

    #[test]
    fn out_of_memory_is_one_decimal_text_for_every_mode() {
        let oom = |step, node| {
            BuildError::new(
                step,
                ErrorKind::OutOfMemory {
                    wanted_pages: 134_217_728,
                    populated_pages: 262_144,
                    node,
                },
            )
        };
        assert_eq!(
            oom(Step::BootMemInit, None).wire_line(),
            "xenguest: xc_dom_boot_mem_init: [12] Could not allocate memory for guest: \
             134217728 pages requested, 262144 populated, 133955584 missing"
        );
        assert_eq!(
            oom(Step::HvmSetupMem, Some(1)).wire_line(),
            "xenguest: hvm_build_setup_mem: [12] Could not allocate memory for guest: \
             134217728 pages requested, 262144 populated, 133955584 missing on node 1 (exact)"
        );
        assert_eq!(oom(Step::HvmSetupMem, None).code(), libc::ENOMEM);
    }

    #[test]
    fn display_is_the_wire_line_and_there_is_no_second_source() {
        let e = Step::GetFlags.store()(StoreError {
            op: "read",
            path: "/local/domain/1/platform/acpi".into(),
            code: libc::EIO,
            message: "broken".into(),
        });
        assert_eq!(e.to_string(), e.wire_line());
        assert!(std::error::Error::source(&e).is_none());
        assert!(
            e.to_string().contains("/local/domain/1/platform/acpi"),
            "{e}"
        );
    }
}
