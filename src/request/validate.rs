//! Checks on a request that hold whatever the mode: what the C xenguest would overflow or
//! libxenguest assert on. Both faces and the PVH build call [`validate`].

use super::{BuildRequest, PVH_MODULE_MAX};
use crate::boot::MODULE_CMDLINE_BYTES;

/// Why a request was refused before anything was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// More modules than the C xenguest's `PVH_MODULE_MAX`-entry array holds (C writes past
    /// it, and libxenguest past its own smaller one).
    #[error("{count} modules given: a PVH guest takes at most {PVH_MODULE_MAX}")]
    TooManyModules {
        /// Modules given.
        count: usize,
    },
    /// A module command line that does not fit libxenguest's 1 KiB slot with its NUL
    /// (libxenguest asserts).
    #[error(
        "the command line of module {path} is {bytes} bytes: at most {} fit",
        MODULE_CMDLINE_BYTES - 1
    )]
    ModuleCmdlineTooLong {
        /// The module's path, as given.
        path: String,
        /// Its command line's length.
        bytes: usize,
    },
    /// A kernel or module command line with a NUL byte (a C string would end there; only the
    /// OCaml face can pass one).
    #[error("command lines cannot contain NUL")]
    NulInCmdline,
}

impl ValidationError {
    /// The build error, reported at `step` (the mode's name, e.g. `pvh_build`).
    pub fn at(self, step: crate::Step) -> crate::Error {
        step.invalid(self.to_string())
    }
}

/// Refuse what no mode can build: too many modules, a module command line too long for its
/// slot, a NUL in any command line.
pub fn validate(req: &BuildRequest) -> Result<(), ValidationError> {
    if req.modules.len() > PVH_MODULE_MAX {
        return Err(ValidationError::TooManyModules {
            count: req.modules.len(),
        });
    }
    if let Some(m) = req
        .modules
        .iter()
        .find(|m| m.cmdline.len() >= MODULE_CMDLINE_BYTES)
    {
        return Err(ValidationError::ModuleCmdlineTooLong {
            path: m.path.display().to_string(),
            bytes: m.cmdline.len(),
        });
    }
    if req.cmdline.contains('\0') || req.modules.iter().any(|m| m.cmdline.contains('\0')) {
        return Err(ValidationError::NulInCmdline);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Module;
    use crate::types::DomId;

    fn with_modules(n: usize, cmdline: &str) -> BuildRequest {
        let mut req = BuildRequest::new(DomId(1), 64, 64, "/k");
        req.modules = (0..n)
            .map(|i| Module {
                path: format!("/m{i}").into(),
                cmdline: cmdline.into(),
            })
            .collect();
        req
    }

    #[test]
    fn module_count() {
        assert_eq!(validate(&with_modules(PVH_MODULE_MAX, "")), Ok(()));
        let e = validate(&with_modules(PVH_MODULE_MAX + 1, "")).unwrap_err();
        assert_eq!(e, ValidationError::TooManyModules { count: 11 });
        assert_eq!(
            e.at(crate::Step::PvhBuild).wire_text(),
            "xenguest: pvh_build: [22] 11 modules given: a PVH guest takes at most 10\n"
        );
    }

    #[test]
    fn module_cmdline_length() {
        let fits = "x".repeat(MODULE_CMDLINE_BYTES - 1);
        assert_eq!(validate(&with_modules(1, &fits)), Ok(()));
        let long = "x".repeat(MODULE_CMDLINE_BYTES);
        assert_eq!(
            validate(&with_modules(2, &long)).unwrap_err().to_string(),
            "the command line of module /m0 is 1024 bytes: at most 1023 fit"
        );
    }

    #[test]
    fn nul_bytes() {
        assert_eq!(
            validate(&with_modules(1, "a\0b")),
            Err(ValidationError::NulInCmdline)
        );
        let mut req = with_modules(0, "");
        req.cmdline = "console=hvc0\0".into();
        assert_eq!(validate(&req), Err(ValidationError::NulInCmdline));
    }
}
