//! One error type for a build. Each variant names the failing step and carries its data.
//! [`Error::wire_text`] gives the exact text the C xenguest puts after `error:` on the
//! control fd, so the binary and the OCaml module report failures the same way.

use crate::hypervisor::XcError;
use crate::store::StoreError;

/// Why a build failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A libxenctrl call failed during `step` (the C `failwith_oss_xc` argument).
    #[error("xenguest: {step}: [{}] {}", source.code, xc_text(step, source))]
    Xc {
        /// The C xenguest's name for the failing step.
        step: &'static str,
        /// The failed call.
        source: XcError,
    },
    /// xenstore failed (not a missing key: a broken connection or a refused write).
    #[error("xenguest: {step}: [{}] {source}", source.code)]
    Store {
        /// Step that needed the store.
        step: &'static str,
        /// The failed operation.
        source: StoreError,
    },
    /// A platform value that cannot be used.
    #[error("xenguest: get_flags: [{}] {path} = '{value}': {reason}", libc::EINVAL)]
    Platform {
        /// Full xenstore path.
        path: String,
        /// The value read.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `platform/cores-per-socket` does not divide the vCPU count (C text).
    #[error("Bad cores/socket setting: {cores_per_socket} (nr vcpus {vcpus})")]
    CoresPerSocket {
        /// The requested value.
        cores_per_socket: u32,
        /// `platform/vcpu/number`.
        vcpus: u32,
    },
    /// A safety check refused the configuration (C text); `-force` skips these.
    #[error("{0}")]
    Safety(&'static str),
    /// The request itself is impossible (sizes, options).
    #[error("xenguest: {step}: [{}] {reason}", libc::EINVAL)]
    InvalidRequest {
        /// Step that refused it.
        step: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The memory layout cannot be built (C fatal texts such as `Error: too many E820
    /// reserved entries for domain`).
    #[error("{0}")]
    Layout(String),
    /// A kernel, firmware or module image is missing, unreadable or malformed.
    #[error("xenguest: {step}: [{code}] {path}: {reason}")]
    Image {
        /// `xc_dom_kernel_file`, `xc_dom_module_file` or `xc_dom_parse_image`.
        step: &'static str,
        /// errno (EINVAL for a malformed image).
        code: i32,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The host could not supply the guest's memory.
    #[error(
        "xenguest: hvm_build_setup_mem: [{}] Could not allocate memory for guest: {populated_pages} of {wanted_pages} pages populated{}",
        libc::ENOMEM,
        match node { Some(n) => format!(", node {n} (exact) is short by {} pages", wanted_pages - populated_pages), None => format!(", short by {} pages", wanted_pages - populated_pages) }
    )]
    OutOfMemory {
        /// Pages the guest needs in RAM extents.
        wanted_pages: u64,
        /// Pages populated before the failure.
        populated_pages: u64,
        /// The node asked for exactly (`-mem_pnode`), if any.
        node: Option<u32>,
    },
    /// Something this implementation does not do (yet).
    #[error("xenguest: {step}: [{}] not implemented: {what}", libc::ENOSYS)]
    NotImplemented {
        /// Step.
        step: &'static str,
        /// What is missing.
        what: String,
    },
}

impl Error {
    /// Wrap a failed hypervisor call at `step`.
    pub fn xc(step: &'static str) -> impl FnOnce(XcError) -> Error {
        move |source| Error::Xc { step, source }
    }

    /// Wrap a failed store operation at `step`.
    pub fn store(step: &'static str) -> impl FnOnce(StoreError) -> Error {
        move |source| Error::Store { step, source }
    }

    /// The text after `error:` on the control fd (newline included), as the C xenguest
    /// formats it.
    pub fn wire_text(&self) -> String {
        format!("{self}\n")
    }

    /// The errno-like code of the failure (0 for the C texts that carry none).
    pub fn code(&self) -> i32 {
        match self {
            Error::Xc { source, .. } => source.code,
            Error::Store { source, .. } => source.code,
            Error::Platform { .. }
            | Error::InvalidRequest { .. }
            | Error::CoresPerSocket { .. } => libc::EINVAL,
            Error::Safety(_) | Error::Layout(_) => 0,
            Error::Image { code, .. } => *code,
            Error::OutOfMemory { .. } => libc::ENOMEM,
            Error::NotImplemented { .. } => libc::ENOSYS,
        }
    }

    /// The step that failed, as the C xenguest names it.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Xc { step, .. }
            | Error::Store { step, .. }
            | Error::InvalidRequest { step, .. } => step,
            Error::Image { step, .. } | Error::NotImplemented { step, .. } => step,
            Error::Platform { .. } | Error::CoresPerSocket { .. } => "get_flags",
            Error::Safety(_) => "hvm_safety_check",
            Error::Layout(_) | Error::OutOfMemory { .. } => "hvm_build_setup_mem",
        }
    }
}

/// The C text is just the message; when the failing call is not the step itself, name it.
fn xc_text(step: &str, e: &XcError) -> String {
    if step == e.function {
        e.message.clone()
    } else {
        format!("{}: {}", e.function, e.message)
    }
}

/// Result of a build step.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_matches_the_c_format() {
        let e = Error::Xc {
            step: "xc_vcpu_setaffinity",
            source: XcError::errno("xc_vcpu_setaffinity", libc::EINVAL),
        };
        assert_eq!(
            e.wire_text(),
            "xenguest: xc_vcpu_setaffinity: [22] Invalid argument\n"
        );
        assert_eq!(
            Error::CoresPerSocket {
                cores_per_socket: 3,
                vcpus: 4
            }
            .wire_text(),
            "Bad cores/socket setting: 3 (nr vcpus 4)\n"
        );
        let oom = Error::OutOfMemory {
            wanted_pages: 100,
            populated_pages: 60,
            node: Some(1),
        };
        assert!(oom
            .to_string()
            .ends_with("60 of 100 pages populated, node 1 (exact) is short by 40 pages"));
        assert_eq!(oom.code(), libc::ENOMEM);
    }
}
