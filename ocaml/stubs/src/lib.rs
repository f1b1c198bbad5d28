//! OCaml stubs for the xenguest core: a face, like the binary. Each stub converts its OCaml
//! arguments to Rust values, releases the OCaml runtime lock for the work, catches any panic,
//! and returns an OCaml `result`; the OCaml wrapper (`ocaml/xenguest.ml`) raises the
//! registered exception. No process-wide mutable state: a handle owns its backend.

use ocaml_interop::*;
use std::borrow::Borrow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use xenguest::builder::{self, BuildEnv, BuildMode, HostPaths};
use xenguest::cancel::Cancel;
use xenguest::hypervisor::sim::{DomainConfig, Fault, SimHost, CALL_KINDS};
use xenguest::log_capture;
use xenguest::report::BuildReport;
use xenguest::request::{self, BuildRequest, Module, RequestError};
use xenguest::store::{domain_path, MemoryStore, Store, StoreResult};
use xenguest::types::DomId;

/// `(step, code, message)`: what the OCaml exception carries; `message` is the binary's
/// `error:` text.
type Failure = (String, i64, String);

/// [`Failure`] as OCaml sees it: `string * int * string`.
type OFailure = (String, OCamlInt, String);

fn failure(e: &xenguest::Error) -> Failure {
    (
        e.step().to_string(),
        e.code().into(),
        e.wire_text().trim_end().to_string(),
    )
}

fn invalid(step: &str, message: String) -> Failure {
    (
        step.to_string(),
        libc_einval(),
        format!("xenguest: {step}: [{}] {message}", libc_einval()),
    )
}

/// A simulated host's own operation failed (not a build step): its step, code and text.
fn sim_failure(step: &str, code: i32, what: &str) -> Failure {
    (
        step.to_string(),
        code.into(),
        format!("xenguest: {step}: [{code}] {what}"),
    )
}

const fn libc_einval() -> i64 {
    22
}

/// Run `f`, turning a panic into a failure so it never crosses into OCaml.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err((
            "panic".into(),
            0,
            format!("xenguest: internal error (Rust panic): {what}"),
        ))
    })
}

/// A simulated host with its xenstore.
struct Sim {
    host: SimHost,
    store: MemoryStore,
    paths: HostPaths,
    /// Test hook: xenstore operations (`read`, `write`, `directory`, `rm`) that panic, once
    /// each, when the next build makes them.
    panics: Mutex<Vec<&'static str>>,
}

/// The four store operations, as `'static` names (for [`MemoryStore::fail_next`]).
fn store_op(op: &str) -> Result<&'static str, Failure> {
    ["read", "write", "directory", "rm"]
        .into_iter()
        .find(|o| *o == op)
        .ok_or_else(|| {
            invalid(
                "sim",
                format!("unknown xenstore operation '{op}' (read, write, directory, rm)"),
            )
        })
}

/// The simulated host's store as a build sees it: the in-memory tree, with the panics armed
/// by `Sim.inject_panic` (a panic inside a build, with the runtime lock released, must come
/// back to OCaml as an exception).
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

enum Backend {
    Sim(Box<Sim>),
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
            Ok(None) => Err(invalid("handle", "the handle is closed".into())),
            Err(f) => Err(f.clone()),
        }
    }

    fn sim(&self) -> Result<Arc<Backend>, Failure> {
        let b = self.backend()?;
        match &*b {
            Backend::Sim(_) => Ok(b),
            #[cfg(feature = "xen")]
            Backend::Real { .. } => Err(invalid(
                "sim",
                "this handle is the real host, not a simulated one".into(),
            )),
        }
    }
}

fn open(kind: &str) -> Result<Option<Arc<Backend>>, Failure> {
    guarded(|| match kind.strip_prefix("sim:") {
        Some(spec) => {
            let host = SimHost::from_spec(spec).map_err(|e| invalid("sim", e.to_string()))?;
            Ok(Some(Arc::new(Backend::Sim(Box::new(Sim {
                host,
                store: MemoryStore::new(),
                paths: HostPaths::from_env(),
                panics: Mutex::new(Vec::new()),
            })))))
        }
        #[cfg(feature = "xen")]
        None => {
            let (hv, store) = builder::open_real_host().map_err(|e| failure(&e))?;
            Ok(Some(Arc::new(Backend::Real {
                hv,
                store,
                paths: HostPaths::from_env(),
            })))
        }
        #[cfg(not(feature = "xen"))]
        None => Err(failure(&xenguest::Error::NotImplemented {
            step: "xc_interface_open",
            what: "this OCaml module was built without the `xen` feature; use Xenguest.Sim".into(),
        })),
    })
}

/// The arguments of a build, as xenopsd passes them to the binary.
struct BuildArgs {
    domid: i64,
    mem_max_mib: i64,
    mem_start_mib: i64,
    image: String,
    cmdline: String,
    ramdisk: String,
    modules: Vec<(String, String)>,
    features: String,
    flags: i64,
    ports: (i64, i64, i64, i64),
    vgpu: bool,
    pci_passthrough: String,
    mem_pnode: i64,
    force: bool,
}

fn non_negative(name: &str, v: i64) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| invalid("stub_xc_build", format!("{name} {v} is out of range")))
}

/// `-flags` as the binary reads it: a C `int`, its bits passed on as `uint32_t`.
fn flags_of(v: i64) -> Result<u32, Failure> {
    i32::try_from(v)
        .map(i32::cast_unsigned)
        .map_err(|_| invalid("stub_xc_build", format!("flags {v} is out of range")))
}

/// A count or frame number as an OCaml `int` (63 bits); none comes near, so the saturation
/// at `i64::MAX` is never reached in practice.
fn ocaml_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl BuildArgs {
    /// The typed request, through the parsers and checks the binary's argv goes through
    /// (`xenguest::request`): the same PCI list syntax and the same refusals and texts.
    fn request(&self, mode: BuildMode) -> Result<BuildRequest, Failure> {
        let req = BuildRequest {
            domid: DomId(non_negative("domid", self.domid)?),
            mem_max_mib: non_negative("mem_max_mib", self.mem_max_mib)?.into(),
            mem_start_mib: non_negative("mem_start_mib", self.mem_start_mib)?.into(),
            image: PathBuf::from(&self.image),
            cmdline: self.cmdline.clone(),
            ramdisk: (!self.ramdisk.is_empty()).then(|| PathBuf::from(&self.ramdisk)),
            modules: self
                .modules
                .iter()
                .map(|(p, c)| Module {
                    path: p.into(),
                    cmdline: c.clone(),
                })
                .collect(),
            features: self.features.clone(),
            flags: flags_of(self.flags)?,
            store_port: non_negative("store_port", self.ports.0)?,
            store_domid: DomId(non_negative("store_domid", self.ports.1)?),
            console_port: non_negative("console_port", self.ports.2)?,
            console_domid: DomId(non_negative("console_domid", self.ports.3)?),
            vgpu: self.vgpu,
            pci_passthrough: request::parse_pci_passthrough(&self.pci_passthrough)
                .map_err(|e| failure(&e.into()))?,
            mem_pnode: (self.mem_pnode >= 0)
                .then(|| non_negative("mem_pnode", self.mem_pnode))
                .transpose()?,
            force: self.force,
        };
        request::validate(&req).map_err(|e| failure(&e.at(mode.step())))?;
        Ok(req)
    }
}

fn request_failure(e: &RequestError) -> Failure {
    (
        e.step().to_string(),
        e.code().into(),
        e.wire_text().trim_end().to_string(),
    )
}

/// xenopsd's argv for a build (without the program name), parsed as the binary parses it.
/// Options that only steer the binary's process (control fds, logging, `-report`,
/// `-summary`) are accepted and have no effect here; `-sim` and `-sim-key` are refused, as
/// the handle is the host.
fn command_of_argv(args: &[String]) -> Result<request::BuildCommand, Failure> {
    let argv: Vec<&str> = std::iter::once("xenguest")
        .chain(args.iter().map(String::as_str))
        .collect();
    let (opts, command) = request::command_of_argv(&argv).map_err(|e| request_failure(&e))?;
    if opts.sim.is_some() || !opts.sim_keys.is_empty() {
        return Err(invalid(
            "parse_options",
            "-sim and -sim-key are the binary's: here the handle is the host".into(),
        ));
    }
    Ok(command)
}

/// `((store_mfn, console_mfn, protocol), (pages by order, pages by node, calls, xenstore
/// writes, elapsed_us, populate calls))`.
type Outcome = ((i64, i64, Option<String>), ReportTuple);
type ReportTuple = (
    Vec<(i64, i64)>,
    Option<Vec<i64>>,
    Vec<(String, i64)>,
    Vec<(String, String)>,
    i64,
    i64,
);

fn report_tuple(r: &BuildReport) -> ReportTuple {
    (
        r.memory
            .ram
            .pages_by_order
            .iter()
            .map(|(o, p)| (i64::from(*o), ocaml_int(*p)))
            .collect(),
        r.memory
            .pages_by_node
            .as_ref()
            .map(|v| v.iter().map(|p| ocaml_int(*p)).collect()),
        r.hypercalls
            .iter()
            .map(|(k, n)| (k.to_string(), ocaml_int(*n)))
            .collect(),
        r.xenstore_writes.clone(),
        ocaml_int(r.elapsed_us),
        ocaml_int(
            r.hypercalls
                .get("domain_populate_physmap")
                .copied()
                .unwrap_or(0),
        ),
    )
}

/// A build's outcome and its log lines (`(level, text)`, level 0 error, 1 warning, 2 info).
type Logged = (Result<Outcome, Failure>, Vec<(i64, String)>);

/// Run a build, its panics caught and its log lines collected (`log_capture`).
fn logged(f: impl FnOnce() -> Result<Outcome, Failure>) -> Logged {
    log_capture::install();
    let (outcome, lines) = log_capture::capture(|| guarded(f));
    let lines = lines
        .into_lines()
        .into_iter()
        .map(|(level, text)| {
            let level = match level {
                log::Level::Error => 0,
                log::Level::Warn => 1,
                _ => 2,
            };
            (level, text)
        })
        .collect();
    (outcome, lines)
}

fn run_build(backend: &Backend, mode: BuildMode, args: &BuildArgs, cancel: &Cancel) -> Logged {
    logged(|| build_request(backend, mode, &args.request(mode)?, cancel))
}

fn run_argv(backend: &Backend, args: &[String], cancel: &Cancel) -> Logged {
    logged(|| {
        let command = command_of_argv(args)?;
        build_request(backend, command.mode, &command.request, cancel)
    })
}

fn build_request(
    backend: &Backend,
    mode: BuildMode,
    req: &BuildRequest,
    cancel: &Cancel,
) -> Result<Outcome, Failure> {
    {
        let out = match backend {
            Backend::Sim(sim) => {
                let store = BuildStore { sim };
                let env = BuildEnv {
                    hv: &sim.host,
                    store: &store,
                    paths: &sim.paths,
                };
                builder::build_cancellable(env, mode, req, cancel)
            }
            #[cfg(feature = "xen")]
            Backend::Real { hv, store, paths } => {
                builder::build_cancellable(BuildEnv { hv, store, paths }, mode, req, cancel)
            }
        }
        .map_err(|e| failure(&e))?;
        let r = &out.result;
        Ok((
            (
                ocaml_int(r.store_mfn),
                ocaml_int(r.console_mfn),
                r.protocol.clone(),
            ),
            report_tuple(&out.report),
        ))
    }
}

/// The OCaml type of a build's outcome and log lines.
type OcamlLogged = (OcamlOutcome, OCamlList<(OCamlInt, String)>);

/// The OCaml type of a build's outcome.
type OcamlOutcome = Result<
    (
        (OCamlInt, OCamlInt, Option<String>),
        (
            OCamlList<(OCamlInt, OCamlInt)>,
            Option<OCamlList<OCamlInt>>,
            OCamlList<(String, OCamlInt)>,
            OCamlList<(String, String)>,
            OCamlInt,
            OCamlInt,
        ),
    ),
    OFailure,
>;

macro_rules! build_stub {
    ($native:ident, $bytecode:ident, $mode:expr) => {
        ocaml_export! {
            fn $native|$bytecode(
                cr,
                handle: OCamlRef<DynBox<Handle>>,
                domid: OCamlRef<OCamlInt>,
                mem_max_mib: OCamlRef<OCamlInt>,
                mem_start_mib: OCamlRef<OCamlInt>,
                image: OCamlRef<String>,
                cmdline: OCamlRef<String>,
                ramdisk: OCamlRef<String>,
                modules: OCamlRef<OCamlList<(String, String)>>,
                features: OCamlRef<String>,
                flags: OCamlRef<OCamlInt>,
                ports: OCamlRef<(OCamlInt, OCamlInt, OCamlInt, OCamlInt)>,
                vgpu: OCamlRef<bool>,
                pci_passthrough: OCamlRef<String>,
                mem_pnode: OCamlRef<OCamlInt>,
                force: OCamlRef<bool>,
                cancel: OCamlRef<DynBox<Cancel>>,
            ) -> OCaml<OcamlLogged> {
                let backend = {
                    let h = cr.get(handle);
                    let h: &Handle = h.borrow();
                    h.backend()
                };
                let cancel = cancel_of(cr, cancel);
                let args = BuildArgs {
                    domid: domid.to_rust(cr),
                    mem_max_mib: mem_max_mib.to_rust(cr),
                    mem_start_mib: mem_start_mib.to_rust(cr),
                    image: image.to_rust(cr),
                    cmdline: cmdline.to_rust(cr),
                    ramdisk: ramdisk.to_rust(cr),
                    modules: modules.to_rust(cr),
                    features: features.to_rust(cr),
                    flags: flags.to_rust(cr),
                    ports: ports.to_rust(cr),
                    vgpu: vgpu.to_rust(cr),
                    pci_passthrough: pci_passthrough.to_rust(cr),
                    mem_pnode: mem_pnode.to_rust(cr),
                    force: force.to_rust(cr),
                };
                let outcome = match backend {
                    Ok(b) => cr.releasing_runtime(|| run_build(&b, $mode, &args, &cancel)),
                    Err(f) => (Err(f), Vec::new()),
                };
                outcome.to_ocaml(cr)
            }
        }
    };
}

/// The three build entry points. `ocaml_export!` generates each `_bytecode` twin as a safe
/// `extern "C" fn(argv, argn)` reading OCaml's argument array, which clippy flags. The macro
/// takes no attributes, so its functions cannot carry doc comments: each is documented at its
/// `external` in `ocaml/xenguest.mli`.
#[allow(clippy::not_unsafe_ptr_arg_deref, missing_docs)]
mod build_stubs {
    use super::*;

    build_stub!(
        stub_xc_hvm_build,
        stub_xc_hvm_build_bytecode,
        BuildMode::Hvm
    );
    build_stub!(
        stub_xc_pvh_build,
        stub_xc_pvh_build_bytecode,
        BuildMode::Pvh
    );
    build_stub!(stub_xc_pv_build, stub_xc_pv_build_bytecode, BuildMode::Pv);
}

/// A simulated host's view of one domain: `(tot_pages, max_pages, pages by order, pages by
/// node, pod entries, repopulated pages)`.
type DomainTuple = (i64, i64, Vec<(i64, i64)>, Vec<i64>, i64, i64);

/// [`DomainTuple`] as OCaml sees it.
type ODomainTuple = (
    OCamlInt,
    OCamlInt,
    OCamlList<(OCamlInt, OCamlInt)>,
    OCamlList<OCamlInt>,
    OCamlInt,
    OCamlInt,
);

/// `(free pages, outstanding claims, accounting error)` as OCaml sees it.
type OHostTuple = (OCamlInt, OCamlInt, Option<String>);

/// The token behind an OCaml `Xenguest.cancel` (a clone: the flag is shared).
fn cancel_of(cr: &mut OCamlRuntime, cancel: OCamlRef<DynBox<Cancel>>) -> Cancel {
    let c = cr.get(cancel);
    let c: &Cancel = c.borrow();
    c.clone()
}

/// Run `f` on the simulated host behind `handle` (a failure if it is a real one), panics caught.
fn with_sim<T>(
    cr: &OCamlRuntime,
    handle: OCamlRef<DynBox<Handle>>,
    f: impl FnOnce(&Sim) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let h = cr.get(handle);
    let h: &Handle = h.borrow();
    let b = h.sim()?;
    match &*b {
        Backend::Sim(sim) => guarded(|| f(sim)),
        #[cfg(feature = "xen")]
        Backend::Real { .. } => Err(invalid("sim", "not a simulated host".into())),
    }
}

/// The handle, argv and simulator stubs (documented at their `external`s in
/// `ocaml/xenguest.mli`; `ocaml_export!` takes no doc attributes).
#[allow(missing_docs)]
mod handle_stubs {
    use super::*;

    ocaml_export! {
        fn stub_xenguest_build_of_argv(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            args: OCamlRef<OCamlList<String>>,
            cancel: OCamlRef<DynBox<Cancel>>,
        ) -> OCaml<OcamlLogged> {
            let backend = {
                let h = cr.get(handle);
                let h: &Handle = h.borrow();
                h.backend()
            };
            let args: Vec<String> = args.to_rust(cr);
            let cancel = cancel_of(cr, cancel);
            let outcome = match backend {
                Ok(b) => cr.releasing_runtime(|| run_argv(&b, &args, &cancel)),
                Err(f) => (Err(f), Vec::new()),
            };
            outcome.to_ocaml(cr)
        }

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

        fn stub_xenguest_open(cr, kind: OCamlRef<String>) -> OCaml<DynBox<Handle>> {
            let kind: String = kind.to_rust(cr);
            let state = cr.releasing_runtime(|| open(&kind));
            OCaml::box_value(cr, Handle { state: Mutex::new(state) })
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

        fn stub_xenguest_sim_create_domain(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            hvm: OCamlRef<bool>,
            max_mem_kib: OCamlRef<OCamlInt>,
            vcpus: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<OCamlInt, OFailure>> {
            let (hvm, max_mem_kib, vcpus): (bool, i64, i64) = (hvm.to_rust(cr), max_mem_kib.to_rust(cr), vcpus.to_rust(cr));
            let r = with_sim(cr, handle, |sim| {
                let kib = u64::try_from(max_mem_kib).map_err(|_| invalid("create_domain", format!("max_mem_kib {max_mem_kib}")))?;
                let vcpus = u32::try_from(vcpus).map_err(|_| invalid("create_domain", format!("vcpus {vcpus}")))?;
                let cfg = if hvm { DomainConfig::hvm(kib, vcpus) } else { DomainConfig::pv(kib, vcpus) };
                let domid = sim.host.create_domain(&cfg).map_err(|e| sim_failure("create_domain", e.code, &e.to_string()))?;
                Ok(i64::from(domid.0))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_destroy_domain(cr, handle: OCamlRef<DynBox<Handle>>, domid: OCamlRef<OCamlInt>) -> OCaml<Result<(), OFailure>> {
            let domid: i64 = domid.to_rust(cr);
            let r = with_sim(cr, handle, |sim| {
                let d = DomId(non_negative("domid", domid)?);
                sim.host.destroy_domain(d).map_err(|e| sim_failure("destroy_domain", e.code, &e.to_string()))?;
                sim.store.rm(&domain_path(d)).map_err(|e| sim_failure("destroy_domain", e.code, &e.to_string()))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_write(cr, handle: OCamlRef<DynBox<Handle>>, path: OCamlRef<String>, value: OCamlRef<String>) -> OCaml<Result<(), OFailure>> {
            let (path, value): (String, String) = (path.to_rust(cr), value.to_rust(cr));
            let r = with_sim(cr, handle, |sim| sim.store.write(&path, &value).map_err(|e| sim_failure("write", e.code, &e.to_string())));
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_read(cr, handle: OCamlRef<DynBox<Handle>>, path: OCamlRef<String>) -> OCaml<Result<Option<String>, OFailure>> {
            let path: String = path.to_rust(cr);
            let r = with_sim(cr, handle, |sim| sim.store.read(&path).map_err(|e| sim_failure("read", e.code, &e.to_string())));
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_domain(cr, handle: OCamlRef<DynBox<Handle>>, domid: OCamlRef<OCamlInt>) -> OCaml<Result<ODomainTuple, OFailure>> {
            let domid: i64 = domid.to_rust(cr);
            let r: Result<DomainTuple, Failure> = with_sim(cr, handle, |sim| {
                let d = DomId(non_negative("domid", domid)?);
                let s = sim.host.domain_snapshot(d).ok_or_else(|| invalid("domain", format!("no domain {domid}")))?;
                Ok((
                    ocaml_int(s.tot_pages),
                    ocaml_int(s.max_pages),
                    s.ram_pages_by_order.iter().map(|(o, p)| (i64::from(*o), ocaml_int(*p))).collect(),
                    s.pages_by_node.iter().map(|p| ocaml_int(*p)).collect(),
                    ocaml_int(s.pod_entries),
                    ocaml_int(s.repopulated_pages),
                ))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_host(cr, handle: OCamlRef<DynBox<Handle>>) -> OCaml<Result<OHostTuple, OFailure>> {
            let r = with_sim(cr, handle, |sim| {
                let check = sim.host.check_accounting().err();
                Ok((ocaml_int(sim.host.free_pages()), ocaml_int(sim.host.outstanding_claims()), check))
            });
            r.to_ocaml(cr)
        }

        fn stub_xenguest_sim_inject_fault(
            cr,
            handle: OCamlRef<DynBox<Handle>>,
            call: OCamlRef<String>,
            nth: OCamlRef<OCamlInt>,
            domid: OCamlRef<OCamlInt>,
            errno: OCamlRef<OCamlInt>,
        ) -> OCaml<Result<(), OFailure>> {
            let call: String = call.to_rust(cr);
            let (nth, domid, errno): (i64, i64, i64) = (nth.to_rust(cr), domid.to_rust(cr), errno.to_rust(cr));
            let r = with_sim(cr, handle, |sim| {
                let kind = CALL_KINDS
                    .iter()
                    .map(|(k, _)| *k)
                    .find(|k| *k == call)
                    .ok_or_else(|| invalid("sim", format!("unknown call kind '{call}'")))?;
                let errno = i32::try_from(errno).map_err(|_| invalid("sim", format!("errno {errno}")))?;
                let mut fault = Fault::errno(kind, u64::try_from(nth).unwrap_or(1), errno);
                if domid >= 0 {
                    fault = fault.for_domain(DomId(non_negative("domid", domid)?));
                }
                sim.host.inject(fault).map_err(|e| invalid("sim", e))
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
                let op = store_op(&op)?;
                let errno = i32::try_from(errno).map_err(|_| invalid("sim", format!("errno {errno}")))?;
                sim.store.fail_next(op, errno);
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
                let us = u64::try_from(us).map_err(|_| {
                    invalid("sim", format!("call latency {us} us is negative"))
                })?;
                sim.host.set_call_latency(std::time::Duration::from_micros(us));
                Ok(())
            });
            r.to_ocaml(cr)
        }
    }
}
