//! Which stream engine runs an operation: the native one for HVM and PVH domains, libxenguest's
//! for PV (the native engine has no PV stream) and whenever `XENGUEST_STREAM_ENGINE=libxenguest`
//! asks for it; `XENGUEST_STREAM_ENGINE=native` makes the native engine the choice for HVM and
//! PVH whatever the default.

use super::engine::{
    Engine, Operation, RestoreHooks, RestoreRequest, RestoreResult, SaveHooks, SaveRequest,
};
use super::native::Native;
use crate::hypervisor::Hypervisor;
use crate::types::DomId;
use crate::{Error, Step};
use std::sync::Arc;

/// The environment variable that picks the engine for HVM and PVH domains.
pub const ENGINE_ENV: &str = "XENGUEST_STREAM_ENGINE";

/// An engine for HVM and PVH domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// [`Native`].
    Native,
    /// libxenguest's `xc_domain_save` and `xc_domain_restore`.
    Libxenguest,
}

/// What HVM and PVH domains get when [`ENGINE_ENV`] is not set.
pub const DEFAULT: Choice = Choice::Native;

impl Choice {
    /// [`ENGINE_ENV`]'s value: unset or empty is [`DEFAULT`]; anything else but `native` and
    /// `libxenguest` is refused.
    pub fn from_env_value(value: Option<&str>) -> Result<Choice, Error> {
        match value {
            None | Some("") => Ok(DEFAULT),
            Some("native") => Ok(Choice::Native),
            Some("libxenguest") => Ok(Choice::Libxenguest),
            Some(other) => Err(Step::Main.invalid(format!(
                "{ENGINE_ENV}={other}: expected native or libxenguest"
            ))),
        }
    }

    /// From the environment.
    pub fn from_env() -> Result<Choice, Error> {
        Self::from_env_value(std::env::var(ENGINE_ENV).ok().as_deref())
    }
}

/// Dispatches each operation by the domain's kind.
pub struct Chooser {
    hv: Arc<dyn Hypervisor>,
    native: Native,
    libxenguest: Option<Arc<dyn Engine>>,
    choice: Choice,
}

impl Chooser {
    /// Over `hv`, with libxenguest's engine when the binary has one.
    pub fn new(
        hv: Arc<dyn Hypervisor>,
        native: Native,
        libxenguest: Option<Arc<dyn Engine>>,
        choice: Choice,
    ) -> Self {
        Chooser {
            hv,
            native,
            libxenguest,
            choice,
        }
    }

    /// The engine for `domid`.
    fn pick(&self, op: Operation, domid: DomId) -> Result<&dyn Engine, Error> {
        let info = self
            .hv
            .domain_getinfo(domid)
            .map_err(Step::Mode(op.step()).xc())?;
        let native = info.hvm && self.choice == Choice::Native;
        match (&self.libxenguest, native) {
            (_, true) => Ok(&self.native),
            (Some(lib), false) => Ok(lib.as_ref()),
            (None, false) => Err(Error::new(
                Step::Mode(op.step()),
                crate::ErrorKind::NotImplemented(format!(
                    "d{domid} is {}: its stream needs libxenguest's engine, which this \
                     xenguest does not have",
                    if info.hvm {
                        "HVM and libxenguest's engine was asked for"
                    } else {
                        "PV"
                    }
                )),
            )),
        }
    }
}

impl Engine for Chooser {
    fn check(&self, op: Operation) -> Result<(), Error> {
        self.native.check(op)
    }

    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error> {
        let engine = self.pick(Operation::Save, req.domid)?;
        engine.check(Operation::Save)?;
        engine.save(req, hooks)
    }

    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        let engine = self.pick(Operation::Restore, req.domid)?;
        engine.check(Operation::Restore)?;
        engine.restore(req, hooks)
    }

    fn resume(&self, domid: DomId) -> Result<(), Error> {
        match &self.libxenguest {
            Some(lib) => lib.resume(domid),
            None => self.native.resume(domid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::sim::{DomainConfig, SimHost};
    use crate::store::MemoryStore;

    #[test]
    fn the_environment_picks_an_engine_and_a_typo_is_refused() {
        assert_eq!(Choice::from_env_value(None).unwrap(), DEFAULT);
        assert_eq!(Choice::from_env_value(Some("")).unwrap(), DEFAULT);
        assert_eq!(
            Choice::from_env_value(Some("libxenguest")).unwrap(),
            Choice::Libxenguest
        );
        assert_eq!(
            Choice::from_env_value(Some("native")).unwrap(),
            Choice::Native
        );
        assert_eq!(
            Choice::from_env_value(Some("libxc"))
                .unwrap_err()
                .wire_text(),
            "xenguest: main: [22] XENGUEST_STREAM_ENGINE=libxc: expected native or libxenguest\n"
        );
    }

    #[test]
    fn pv_goes_to_libxenguest_and_hvm_to_the_choice() {
        let host = Arc::new(SimHost::from_spec("nodes=1,node_mib=256").unwrap());
        let pv = host.create_domain(&DomainConfig::pv(65536, 1)).unwrap();
        let hvm = host.create_domain(&DomainConfig::hvm(65536, 1)).unwrap();
        let native = || Native::new(host.clone(), Arc::new(MemoryStore::new()));
        let lib: Arc<dyn Engine> = Arc::new(crate::migrate::engine::Unavailable);
        let c = Chooser::new(host.clone(), native(), Some(lib.clone()), Choice::Native);
        assert!(std::ptr::addr_eq(
            c.pick(Operation::Save, pv).unwrap(),
            lib.as_ref()
        ));
        assert!(std::ptr::addr_eq(
            c.pick(Operation::Save, hvm).unwrap(),
            &c.native as &dyn Engine
        ));
        let c = Chooser::new(
            host.clone(),
            native(),
            Some(lib.clone()),
            Choice::Libxenguest,
        );
        assert!(std::ptr::addr_eq(
            c.pick(Operation::Restore, hvm).unwrap(),
            lib.as_ref()
        ));
        let c = Chooser::new(host.clone(), native(), None, Choice::Native);
        let e = c.pick(Operation::Save, pv).err().unwrap();
        assert!(
            e.wire_text()
                .contains("is PV: its stream needs libxenguest"),
            "{e}"
        );
    }
}
