//! The simulated host behind the test-only OCaml library `Xenguest_sim`
//! (`ocaml/sim/xenguest_sim.ml`): creating one, the toolstack's part (domains, xenstore
//! keys), what it holds, and its fault injection. The production interface (`Xenguest`)
//! declares none of these stubs.

use crate::{boxed_handle, guarded, ocaml_int, u32_of, Backend, Failure, Handle, OFailure};
use ocaml_interop::*;
use std::sync::{Arc, Mutex};
use xenguest::builder::{BuildEnv, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, Fault, SimHost, CALL_KINDS};
use xenguest::store::{domain_path, MemoryStore, Store, StoreResult};
use xenguest::types::DomId;

/// A simulated host with its xenstore.
pub(crate) struct Sim {
    host: SimHost,
    store: MemoryStore,
    paths: HostPaths,
    /// Test hook: xenstore operations (`read`, `write`, `directory`, `rm`) that panic, once
    /// each, when the next build makes them.
    panics: Mutex<Vec<&'static str>>,
}

impl Sim {
    /// Run `f` with the build environment of this host: its hypervisor, its store as a
    /// build sees it (with the armed panics), and the host's paths.
    pub(crate) fn with_env<T>(&self, f: impl FnOnce(BuildEnv<'_>) -> T) -> T {
        let store = BuildStore { sim: self };
        f(BuildEnv {
            hv: &self.host,
            store: &store,
            paths: &self.paths,
        })
    }
}

/// The four store operations, as `'static` names (for [`MemoryStore::fail_next`]).
fn store_op(op: &str) -> Result<&'static str, Failure> {
    ["read", "write", "directory", "rm"]
        .into_iter()
        .find(|o| *o == op)
        .ok_or_else(|| {
            Failure::invalid(
                "sim",
                format!("unknown xenstore operation '{op}' (read, write, directory, rm)"),
            )
        })
}

/// The simulated host's store as a build sees it: the in-memory tree, with the panics armed
/// by `Xenguest_sim.inject_panic` (a panic inside a build, with the runtime lock released,
/// must come back to OCaml as an exception).
struct BuildStore<'a> {
    sim: &'a Sim,
}

impl BuildStore<'_> {
    fn hook(&self, op: &str, path: &str) {
        let armed = {
            let mut panics = self.sim.panics.lock().unwrap_or_else(|e| e.into_inner());
            match panics.iter().position(|o| *o == op) {
                Some(i) => {
                    panics.remove(i);
                    true
                }
                None => false,
            }
        };
        if armed {
            panic!("injected panic in xenstore {op} {path}");
        }
    }
}

impl Store for BuildStore<'_> {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        self.hook("read", path);
        self.sim.store.read(path)
    }
    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        self.hook("write", path);
        self.sim.store.write(path, value)
    }
    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        self.hook("directory", path);
        self.sim.store.directory(path)
    }
    fn rm(&self, path: &str) -> StoreResult<()> {
        self.hook("rm", path);
        self.sim.store.rm(path)
    }
}

fn open_sim(spec: &str) -> Result<Option<Arc<Backend>>, Failure> {
    guarded(|| {
        let host = SimHost::from_spec(spec).map_err(|e| Failure::invalid("sim", e.to_string()))?;
        Ok(Some(Arc::new(Backend::Sim(Box::new(Sim {
            host,
            store: MemoryStore::new(),
            paths: HostPaths::from_env(),
            panics: Mutex::new(Vec::new()),
        })))))
    })
}

/// Run `f` on the simulated host behind `handle` (a failure if it is a real one), panics caught.
fn with_sim<T>(
    cr: &OCamlRuntime,
    handle: OCamlRef<DynBox<Handle>>,
    f: impl FnOnce(&Sim) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let b = crate::backend_of(cr, handle)?;
    match &*b {
        Backend::Sim(sim) => guarded(|| f(sim)),
        #[cfg(feature = "xen")]
        Backend::Real { .. } => Err(Failure::invalid(
            "sim",
            "this handle is the real host, not a simulated one".into(),
        )),
    }
}

/// A simulated host's own operation failed (not a build step).
fn sim_failure(step: &str, e: &impl std::fmt::Display, code: i32) -> Failure {
    Failure::at(step, code, &e.to_string())
}

fn domid_of(v: i64) -> Result<DomId, Failure> {
    u32_of("sim", "domid", v).map(DomId)
}

fn errno_of(v: i64) -> Result<i32, Failure> {
    i32::try_from(v).map_err(|_| Failure::invalid("sim", format!("errno {v} is out of range")))
}

/// OCaml's `Xenguest_sim.domain`, field for field.
struct DomainView {
    tot_pages: i64,
    max_pages: i64,
    pages_by_order: Vec<(i64, i64)>,
    pages_by_node: Vec<i64>,
    pod_entries: i64,
    repopulated_pages: i64,
}

enum ODomainView {}

impl_to_ocaml_record! {
    DomainView => ODomainView {
        tot_pages: OCamlInt,
        max_pages: OCamlInt,
        pages_by_order: OCamlList<(OCamlInt, OCamlInt)>,
        pages_by_node: OCamlList<OCamlInt>,
        pod_entries: OCamlInt,
        repopulated_pages: OCamlInt,
    }
}

/// OCaml's private `Xenguest_sim.host`.
struct HostView {
    free_pages: i64,
    outstanding_claims: i64,
    accounting_error: Option<String>,
}

enum OHostView {}

impl_to_ocaml_record! {
    HostView => OHostView {
        free_pages: OCamlInt,
        outstanding_claims: OCamlInt,
        accounting_error: Option<String>,
    }
}

/// OCaml's private `Xenguest_sim.fault`: the `nth` coming call of kind `call` (for
/// `domid` only, if given) fails with `errno`.
struct FaultArgs {
    call: String,
    nth: i64,
    domid: Option<i64>,
    errno: i64,
}

enum OFaultArgs {}

impl_from_ocaml_record! {
    OFaultArgs => FaultArgs {
        call: String,
        nth: OCamlInt,
        domid: Option<OCamlInt>,
        errno: OCamlInt,
    }
}

impl FaultArgs {
    fn fault(&self) -> Result<Fault, Failure> {
        let kind = CALL_KINDS
            .iter()
            .map(|(k, _)| *k)
            .find(|k| *k == self.call)
            .ok_or_else(|| Failure::invalid("sim", format!("unknown call kind '{}'", self.call)))?;
        let nth = u64::try_from(self.nth)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Failure::invalid("sim", format!("nth {} is not 1 or more", self.nth)))?;
        let fault = Fault::errno(kind, nth, errno_of(self.errno)?);
        Ok(match self.domid {
            Some(d) => fault.for_domain(domid_of(d)?),
            None => fault,
        })
    }
}

/// The simulator stubs (documented at their `external`s in `ocaml/sim/xenguest_sim.mli`;
/// `ocaml_export!` takes no doc attributes).
#[allow(missing_docs)]
mod stubs {
    use super::*;

    ocaml_export! {
        fn stub_xenguest_sim_open(cr, spec: OCamlRef<String>) -> OCaml<DynBox<Handle>> {
            let spec: String = spec.to_rust(cr);
            let state = cr.releasing_runtime(|| open_sim(&spec));
            boxed_handle(cr, state)
        }

        fn stub_xenguest_sim_create_domain(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            hvm: OCamlRef<bool>,
            max_mem_kib: OCamlRef<OCamlInt>,
            vcpus: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<OCamlInt, OFailure>> {
            let (hvm, max_mem_kib, vcpus): (bool, i64, i64) =
                (hvm.to_rust(cr), max_mem_kib.to_rust(cr), vcpus.to_rust(cr));
            let r = with_sim(cr, handle, |sim| {
                let kib = u64::try_from(max_mem_kib).map_err(|_| {
                    Failure::invalid("create_domain", format!("max_mem_kib {max_mem_kib}"))
                })?;
                let vcpus = u32_of("create_domain", "vcpus", vcpus)?;
                let cfg = if hvm {
                    DomainConfig::hvm(kib, vcpus)
                } else {
                    DomainConfig::pv(kib, vcpus)
                };
                let domid = sim
                    .host
                    .create_domain(&cfg)
                    .map_err(|e| sim_failure("create_domain", &e, e.code))?;
                Ok(i64::from(domid.0))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_destroy_domain(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            domid: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<(), OFailure>> {
            let domid: i64 = domid.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                let d = domid_of(domid)?;
                sim.host
                    .destroy_domain(d)
                    .map_err(|e| sim_failure("destroy_domain", &e, e.code))?;
                sim.store
                    .rm(&domain_path(d))
                    .map_err(|e| sim_failure("destroy_domain", &e, e.code))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_write(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            path: OCamlRef<String>,
            value: OCamlRef<String>,
        ) -> OCaml<Result<(), OFailure>> {
            let (path, value): (String, String) = (path.to_rust(cr), value.to_rust(cr));
            let r = with_sim(cr, handle, |sim| {
                sim.store
                    .write(&path, &value)
                    .map_err(|e| sim_failure("write", &e, e.code))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_read(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            path: OCamlRef<String>,
        ) -> OCaml<Result<Option<String>, OFailure>> {
            let path: String = path.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                sim.store.read(&path).map_err(|e| sim_failure("read", &e, e.code))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_domain(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            domid: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<ODomainView, OFailure>> {
            let domid: i64 = domid.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                let s = sim
                    .host
                    .domain_snapshot(domid_of(domid)?)
                    .ok_or_else(|| Failure::invalid("domain", format!("no domain {domid}")))?;
                Ok(DomainView {
                    tot_pages: ocaml_int(s.tot_pages),
                    max_pages: ocaml_int(s.max_pages),
                    pages_by_order: s
                        .ram_pages_by_order
                        .iter()
                        .map(|(o, p)| (i64::from(*o), ocaml_int(*p)))
                        .collect(),
                    pages_by_node: s.pages_by_node.iter().map(|p| ocaml_int(*p)).collect(),
                    pod_entries: ocaml_int(s.pod_entries),
                    repopulated_pages: ocaml_int(s.repopulated_pages),
                })
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_host(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
        ) -> OCaml<Result<OHostView, OFailure>> {
            let r = with_sim(cr, handle, |sim| {
                Ok(HostView {
                    free_pages: ocaml_int(sim.host.free_pages()),
                    outstanding_claims: ocaml_int(sim.host.outstanding_claims()),
                    accounting_error: sim.host.check_accounting().err(),
                })
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_inject_fault(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            fault: OCamlRef<OFaultArgs>,
        ) -> OCaml<Result<(), OFailure>> {
            let fault: FaultArgs = fault.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                sim.host
                    .inject(fault.fault()?)
                    .map_err(|e| Failure::invalid("sim", e))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_fail_next_store(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            op: OCamlRef<String>,
            errno: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<(), OFailure>> {
            let op: String = op.to_rust(cr);
            let errno: i64 = errno.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                sim.store.fail_next(store_op(&op)?, errno_of(errno)?);
                Ok(())
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_inject_panic(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            op: OCamlRef<String>,
        ) -> OCaml<Result<(), OFailure>> {
            let op: String = op.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                let op = store_op(&op)?;
                sim.panics.lock().unwrap_or_else(|e| e.into_inner()).push(op);
                Ok(())
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_set_call_latency(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            us: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<(), OFailure>> {
            let us: i64 = us.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                let us = u64::try_from(us)
                    .map_err(|_| Failure::invalid("sim", format!("call latency {us} us is negative")))?;
                sim.host.set_call_latency(std::time::Duration::from_micros(us));
                Ok(())
            });
            r.to_ocaml(cr)
        }
    }
}
