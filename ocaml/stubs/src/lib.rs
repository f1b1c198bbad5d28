//! OCaml stubs for the xenguest core: a face, like the binary. Each stub converts its OCaml
//! arguments to Rust values, releases the OCaml runtime lock for the work, catches any panic,
//! and returns an OCaml `result`; the OCaml wrappers raise the registered exception.
//! Arguments and results cross as OCaml records (ocaml-interop's record macros), each
//! declared once on the OCaml side and once here, in the same field order. No process-wide
//! mutable state: a handle owns its backend.
//!
//! - [`build`]: the three builds and `build_of_argv` (`ocaml/xenguest.ml`);
//! - [`sim`]: the simulated host and its fault injection, for the test-only library
//!   `ocaml/sim/xenguest_sim.ml` (not in the production interface).

use ocaml_interop::*;
use std::borrow::Borrow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use xenguest::builder::HostPaths;
use xenguest::cancel::Cancel;

mod build;
mod sim;

/// Why a call failed: the OCaml `failure` record (`ocaml/xenguest.ml`), raised there as
/// `Xenguest.Error` (or `Cancelled`). `message` is the binary's `error:` text.
#[derive(Debug, Clone)]
struct Failure {
    step: String,
    code: i64,
    message: String,
}

/// Type marker for the OCaml `failure` record.
enum OFailure {}

impl_to_ocaml_record! {
    Failure => OFailure {
        step: String,
        code: OCamlInt,
        message: String,
    }
}

impl Failure {
    fn of_error(e: &xenguest::Error) -> Self {
        Failure {
            step: e.step().to_string(),
            code: e.code().into(),
            message: e.wire_text().trim_end().to_string(),
        }
    }

    /// EINVAL at `step`, in the binary's format.
    fn invalid(step: &str, what: String) -> Self {
        Self::at(step, EINVAL, &what)
    }

    /// `code` at `step`, in the binary's format (`xenguest: STEP: [CODE] WHAT`).
    fn at(step: &str, code: i32, what: &str) -> Self {
        Failure {
            step: step.to_string(),
            code: code.into(),
            message: format!("xenguest: {step}: [{code}] {what}"),
        }
    }
}

const EINVAL: i32 = 22;

/// Run `f`, turning a panic into a failure so it never crosses into OCaml.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(Failure {
            step: "panic".into(),
            code: 0,
            message: format!("xenguest: internal error (Rust panic): {what}"),
        })
    })
}

/// A count or frame number as an OCaml `int` (63 bits); none comes near, so the saturation
/// at `i64::MAX` is never reached in practice.
fn ocaml_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A non-negative OCaml `int` that must fit a `u32` (domids, ports, sizes in MiB).
fn u32_of(step: &str, name: &str, v: i64) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| Failure::invalid(step, format!("{name} {v} is out of range")))
}

enum Backend {
    Sim(Box<sim::Sim>),
    /// The real host: one libxenctrl handle and one xenstored connection, shared by the
    /// handle's builds (both are safe to use from several threads).
    #[cfg(feature = "xen")]
    Real {
        hv: xenguest::hypervisor::xenctrl::XenCtrl,
        store: xenguest::store::XenstoredStore,
        paths: HostPaths,
    },
}

/// What an OCaml handle holds: the backend until `close`, or why opening failed.
pub struct Handle {
    state: Mutex<Result<Option<Arc<Backend>>, Failure>>,
}

impl Handle {
    fn backend(&self) -> Result<Arc<Backend>, Failure> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            Ok(Some(b)) => Ok(b.clone()),
            Ok(None) => Err(Failure::invalid("handle", "the handle is closed".into())),
            Err(f) => Err(f.clone()),
        }
    }
}

/// The backend behind an OCaml handle (a failure if it is closed or failed to open).
fn backend_of(
    cr: &OCamlRuntime,
    handle: OCamlRef<DynBox<Handle>>,
) -> Result<Arc<Backend>, Failure> {
    let h = cr.get(handle);
    let h: &Handle = h.borrow();
    h.backend()
}

/// A handle for a backend that may have failed to open; the failure is kept for
/// `stub_xenguest_open_error`, so that the OCaml side raises it.
fn boxed_handle(
    cr: &mut OCamlRuntime,
    state: Result<Option<Arc<Backend>>, Failure>,
) -> OCaml<'_, DynBox<Handle>> {
    OCaml::box_value(
        cr,
        Handle {
            state: Mutex::new(state),
        },
    )
}

fn open_real() -> Result<Option<Arc<Backend>>, Failure> {
    guarded(|| {
        #[cfg(feature = "xen")]
        {
            let (hv, store) =
                xenguest::builder::open_real_host().map_err(|e| Failure::of_error(&e))?;
            Ok(Some(Arc::new(Backend::Real {
                hv,
                store,
                paths: HostPaths::from_env(),
            })))
        }
        #[cfg(not(feature = "xen"))]
        Err(Failure::of_error(&xenguest::Error::NotImplemented {
            step: "xc_interface_open",
            what: "this OCaml module was built without the `xen` feature; use Xenguest_sim".into(),
        }))
    })
}

/// The token behind an OCaml `Xenguest.cancel` (a clone: the flag is shared).
fn cancel_of(cr: &OCamlRuntime, cancel: OCamlRef<DynBox<Cancel>>) -> Cancel {
    let c = cr.get(cancel);
    let c: &Cancel = c.borrow();
    c.clone()
}

/// The handle and cancellation stubs (documented at their `external`s in
/// `ocaml/xenguest.ml`; `ocaml_export!` takes no doc attributes).
#[allow(missing_docs)]
mod handle_stubs {
    use super::*;

    ocaml_export! {
        fn stub_xenguest_cancel_create(cr, _unit: OCamlRef<()>) -> OCaml<DynBox<Cancel>> {
            OCaml::box_value(cr, Cancel::new())
        }

        fn stub_xenguest_cancel(cr, cancel: OCamlRef<DynBox<Cancel>>) {
            cancel_of(cr, cancel).cancel();
            OCaml::unit()
        }

        fn stub_xenguest_is_cancelled(cr, cancel: OCamlRef<DynBox<Cancel>>) -> OCaml<bool> {
            OCaml::of_bool(cancel_of(cr, cancel).is_cancelled())
        }

        fn stub_xenguest_open(cr, _unit: OCamlRef<()>) -> OCaml<DynBox<Handle>> {
            let state = cr.releasing_runtime(open_real);
            boxed_handle(cr, state)
        }

        fn stub_xenguest_open_error(cr, handle: OCamlRef<DynBox<Handle>>) -> OCaml<Option<OFailure>> {
            let h = cr.get(handle);
            let h: &Handle = h.borrow();
            let err = match &*h.state.lock().unwrap_or_else(|e| e.into_inner()) {
                Err(f) => Some(f.clone()),
                Ok(_) => None,
            };
            err.to_ocaml(cr)
        }

        fn stub_xenguest_close(cr, handle: OCamlRef<DynBox<Handle>>) {
            let h = cr.get(handle);
            let h: &Handle = h.borrow();
            let mut state = h.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(backend) = &mut *state {
                *backend = None;
            }
            OCaml::unit()
        }
    }
}
