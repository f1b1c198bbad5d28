//! The native stream engine: save and restore of HVM and PVH domains written in Rust over the
//! [`Hypervisor`] and [`Store`] seams, so that it runs on the simulated host as on Xen.
//!
//! * [`save`]: the log-dirty loop and the records, as libxenguest's `xc_domain_save`;
//! * [`restore`]: the records into a domain, guest RAM in superpages, for untrusted input;
//! * [`pfns`]: the pure part of the restore: what is populated, where a superpage goes.
//!
//! PV domains are not handled here (their stream carries page tables to rewrite); the engine
//! refuses them with a clear error and libxenguest's engine saves and restores them.

pub mod pfns;
pub mod restore;
pub mod save;

use super::engine::{
    Engine, Operation, RestoreHooks, RestoreRequest, RestoreResult, SaveHooks, SaveRequest,
};
use crate::hypervisor::{Hypervisor, XcError};
use crate::store::Store;
use crate::types::DomId;
use crate::{Error, ErrorKind, Step};
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

/// The native engine over one host.
pub struct Native {
    hv: Arc<dyn Hypervisor>,
    store: Arc<dyn Store>,
}

impl Native {
    /// The engine over `hv` and `store`.
    pub fn new(hv: Arc<dyn Hypervisor>, store: Arc<dyn Store>) -> Self {
        Native { hv, store }
    }
}

/// The runs of consecutive pfns in `pfns`, in their order, as `(first pfn, its index in
/// `pfns`, length)`: one foreign access each, on save (reading) and restore (writing).
fn runs(pfns: &[u64]) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *pfns.get(i)?;
        let start = i;
        i += 1;
        while pfns.get(i) == Some(&(first + (i - start) as u64)) {
            i += 1;
        }
        Some((first, start, i - start))
    })
}

fn fd_error(op: Operation, e: &std::io::Error) -> Error {
    super::io_error(op.step(), e, "duplicating the stream fd")
}

impl Engine for Native {
    fn check(&self, _op: Operation) -> Result<(), Error> {
        Ok(())
    }

    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error> {
        let fd = req
            .stream
            .try_clone_to_owned()
            .map_err(|e| fd_error(Operation::Save, &e))?;
        let out = BufWriter::with_capacity(1 << 20, File::from(fd));
        let stats = save::save(&*self.hv, req.domid, out, req.flags, hooks)?;
        log::info!(
            "Saved d{}: {} bytes, pages per pass {:?}; page types {} ms, reading {} ms, \
             writing {} ms, progress {} ms",
            req.domid,
            stats.bytes,
            stats.pages_per_pass,
            stats.types_us / 1000,
            stats.read_us / 1000,
            stats.write_us / 1000,
            stats.hooks_us / 1000
        );
        Ok(())
    }

    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        let prepared = super::restore::before_stream(&*self.hv, &*self.store, req.domid, req.vgpu)?;
        // Unbuffered: the stream is read exactly up to its END record, as libxenguest reads it,
        // so whatever follows on the fd is left for its next reader.
        let fd = req
            .stream
            .try_clone_to_owned()
            .map_err(|e| fd_error(Operation::Restore, &e))?;
        let hv = &*self.hv;
        let fallback = || super::restore::cpuid_fallback(hv, req.domid, &prepared);
        let params = restore::Params {
            domid: req.domid,
            store: (req.store_port, req.store_domid),
            console: (req.console_port, req.console_domid),
            cpuid_fallback: &fallback,
        };
        let (result, stats) = restore::restore(hv, File::from(fd), &params, hooks)?;
        super::restore::after_stream(hv, &*self.store, req.domid, &prepared)?;
        Ok(RestoreResult {
            stats: Some(stats),
            ..result
        })
    }

    /// `xc_domain_resume(fast=0)`: libxenguest's slow resume refuses HVM guests
    /// (`xc_domain_resume_any`), and PV is not this engine's.
    fn resume(&self, domid: DomId) -> Result<(), Error> {
        let step = Step::Mode(Operation::Resume.step());
        let info = self.hv.domain_getinfo(domid).map_err(step.xc())?;
        if info.hvm {
            return Err(step.xc()(XcError::errno_with(
                Operation::Resume.step(),
                libc::EINVAL,
                "Cannot resume uncooperative HVM guests",
            )));
        }
        Err(Error::new(
            step,
            ErrorKind::NotImplemented(
                "the native stream engine does not resume PV domains; libxenguest's engine does"
                    .into(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_split_where_pfns_stop_being_consecutive() {
        let pfns = [4, 5, 6, 9, 3, 4, 10];
        let got: Vec<_> = super::runs(&pfns).collect();
        assert_eq!(got, vec![(4, 0, 3), (9, 3, 1), (3, 4, 2), (10, 6, 1)]);
        assert_eq!(super::runs(&[]).count(), 0);
    }
}
