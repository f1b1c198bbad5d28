//! The build stubs: `Xenguest.hvm_build`, `pvh_build`, `pv_build` (a `build_args` record in)
//! and `build_of_argv` (xenopsd's argv in), each returning the outcome and the build's log
//! lines. A build runs with the OCaml runtime lock released, so builds on other OCaml
//! threads proceed.

use crate::{backend_of, cancel_of, guarded, ocaml_int, u32_of, Backend, Failure, OFailure};
use ocaml_interop::*;
use std::path::PathBuf;
use xenguest::builder::{self, BuildMode};
use xenguest::cancel::Cancel;
use xenguest::log_capture;
use xenguest::report::BuildReport;
use xenguest::request::{self, BuildRequest, Module, RequestError};
use xenguest::types::DomId;

/// OCaml's `Xenguest.build_args`, field for field.
struct BuildArgs {
    domid: i64,
    mem_max_mib: i64,
    mem_start_mib: i64,
    image: String,
    cmdline: String,
    ramdisk: Option<String>,
    modules: Vec<(String, String)>,
    features: String,
    flags: i64,
    store_port: i64,
    store_domid: i64,
    console_port: i64,
    console_domid: i64,
    vgpu: bool,
    pci_passthrough: Vec<String>,
    mem_pnode: Option<i64>,
    force: bool,
}

/// Type marker for OCaml's `Xenguest.build_args`.
enum OBuildArgs {}

impl_from_ocaml_record! {
    OBuildArgs => BuildArgs {
        domid: OCamlInt,
        mem_max_mib: OCamlInt,
        mem_start_mib: OCamlInt,
        image: String,
        cmdline: String,
        ramdisk: Option<String>,
        modules: OCamlList<(String, String)>,
        features: String,
        flags: OCamlInt,
        store_port: OCamlInt,
        store_domid: OCamlInt,
        console_port: OCamlInt,
        console_domid: OCamlInt,
        vgpu: bool,
        pci_passthrough: OCamlList<String>,
        mem_pnode: Option<OCamlInt>,
        force: bool,
    }
}

/// `-flags` as the binary reads it: a C `int`, its bits passed on as `uint32_t`.
fn flags_of(v: i64) -> Result<u32, Failure> {
    i32::try_from(v)
        .map(i32::cast_unsigned)
        .map_err(|_| Failure::invalid(STEP, format!("flags {v} is out of range")))
}

/// The step named when a `build_args` field is out of range.
const STEP: &str = "stub_xc_build";

impl BuildArgs {
    /// The typed request, through the parsers and checks the binary's argv goes through
    /// (`xenguest::request`): the same PCI address syntax and the same refusals and texts.
    fn request(&self, mode: BuildMode) -> Result<BuildRequest, Failure> {
        let u32_of = |name, v| u32_of(STEP, name, v);
        let req = BuildRequest {
            domid: DomId(u32_of("domid", self.domid)?),
            mem_max_mib: u32_of("mem_max_mib", self.mem_max_mib)?.into(),
            mem_start_mib: u32_of("mem_start_mib", self.mem_start_mib)?.into(),
            image: PathBuf::from(&self.image),
            cmdline: self.cmdline.clone(),
            ramdisk: self.ramdisk.as_ref().map(PathBuf::from),
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
            store_port: u32_of("store_port", self.store_port)?,
            store_domid: DomId(u32_of("store_domid", self.store_domid)?),
            console_port: u32_of("console_port", self.console_port)?,
            console_domid: DomId(u32_of("console_domid", self.console_domid)?),
            vgpu: self.vgpu,
            pci_passthrough: self
                .pci_passthrough
                .iter()
                .map(|a| request::parse_pci_address(a))
                .collect::<Result<_, _>>()
                .map_err(|e| Failure::of_error(&e.into()))?,
            mem_pnode: self.mem_pnode.map(|n| u32_of("mem_pnode", n)).transpose()?,
            force: self.force,
        };
        request::validate(&req).map_err(|e| Failure::of_error(&e.at(mode.step())))?;
        Ok(req)
    }
}

/// What a build returns, before the OCaml side makes its frames `nativeint`s
/// (ocaml-interop has no `nativeint`): OCaml's private `Xenguest.raw_built`.
struct Built {
    store_frame: i64,
    console_frame: i64,
    protocol: Option<String>,
}

enum OBuilt {}

impl_to_ocaml_record! {
    Built => OBuilt {
        store_frame: OCamlInt,
        console_frame: OCamlInt,
        protocol: Option<String>,
    }
}

/// OCaml's `Xenguest.report`, field for field.
struct Report {
    pages_by_order: Vec<(i64, i64)>,
    pages_by_node: Option<Vec<i64>>,
    hypercalls: Vec<(String, i64)>,
    populate_calls: i64,
    xenstore_writes: Vec<(String, String)>,
    elapsed_us: i64,
    hypervisor_us: i64,
    xenstore_us: i64,
    images_us: i64,
    own_us: i64,
}

enum OReport {}

impl_to_ocaml_record! {
    Report => OReport {
        pages_by_order: OCamlList<(OCamlInt, OCamlInt)>,
        pages_by_node: Option<OCamlList<OCamlInt>>,
        hypercalls: OCamlList<(String, OCamlInt)>,
        populate_calls: OCamlInt,
        xenstore_writes: OCamlList<(String, String)>,
        elapsed_us: OCamlInt,
        hypervisor_us: OCamlInt,
        xenstore_us: OCamlInt,
        images_us: OCamlInt,
        own_us: OCamlInt,
    }
}

impl Report {
    fn of(r: &BuildReport) -> Self {
        let count = |n: &u64| ocaml_int(*n);
        Report {
            pages_by_order: r
                .memory
                .ram
                .pages_by_order
                .iter()
                .map(|(o, p)| (i64::from(*o), count(p)))
                .collect(),
            pages_by_node: r
                .memory
                .pages_by_node
                .as_ref()
                .map(|v| v.iter().map(count).collect()),
            hypercalls: r
                .hypercalls
                .iter()
                .map(|(k, n)| (k.to_string(), count(n)))
                .collect(),
            populate_calls: r.hypercalls.get("domain_populate_physmap").map_or(0, count),
            xenstore_writes: r.xenstore_writes.clone(),
            elapsed_us: ocaml_int(r.time.elapsed_us),
            hypervisor_us: ocaml_int(r.time.hypervisor_us),
            xenstore_us: ocaml_int(r.time.xenstore_us),
            images_us: ocaml_int(r.time.images_us),
            own_us: ocaml_int(r.time.own_us),
        }
    }
}

/// OCaml's `Xenguest.level`.
enum Level {
    Error,
    Warning,
    Info,
}

enum OLevel {}

impl_to_ocaml_polymorphic_variant! {
    Level => OLevel {
        Level::Error,
        Level::Warning,
        Level::Info,
    }
}

impl Level {
    /// Debug and trace records are not collected (`log_capture`); anything below a
    /// warning is info.
    fn of(level: log::Level) -> Self {
        match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            _ => Level::Info,
        }
    }
}

/// A build's outcome and its log lines: OCaml's private `Xenguest.logged`.
struct Logged {
    outcome: Result<(Built, Report), Failure>,
    lines: Vec<(Level, String)>,
}

enum OLogged {}

impl_to_ocaml_record! {
    Logged => OLogged {
        outcome: Result<(OBuilt, OReport), OFailure>,
        lines: OCamlList<(OLevel, String)>,
    }
}

/// Run a build, its panics caught and its log lines collected (`log_capture`).
fn logged(f: impl FnOnce() -> Result<(Built, Report), Failure>) -> Logged {
    log_capture::install();
    let (outcome, lines) = log_capture::capture(|| guarded(f));
    let lines = lines
        .into_lines()
        .into_iter()
        .map(|(level, text)| (Level::of(level), text))
        .collect();
    Logged { outcome, lines }
}

fn request_failure(e: &RequestError) -> Failure {
    Failure {
        step: e.step().to_string(),
        code: e.code().into(),
        message: e.wire_text().trim_end().to_string(),
    }
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
        return Err(Failure::invalid(
            "parse_options",
            "-sim and -sim-key are the binary's: here the handle is the host".into(),
        ));
    }
    Ok(command)
}

fn build_request(
    backend: &Backend,
    mode: BuildMode,
    req: &BuildRequest,
    cancel: &Cancel,
) -> Result<(Built, Report), Failure> {
    let out = match backend {
        Backend::Sim(sim) => sim.with_env(|env| builder::build_cancellable(env, mode, req, cancel)),
        #[cfg(feature = "xen")]
        Backend::Real { hv, store, paths } => {
            builder::build_cancellable(builder::BuildEnv { hv, store, paths }, mode, req, cancel)
        }
    }
    .map_err(|e| Failure::of_error(&e))?;
    let r = &out.result;
    Ok((
        Built {
            store_frame: ocaml_int(r.store_mfn),
            console_frame: ocaml_int(r.console_mfn),
            protocol: r.protocol.clone(),
        },
        Report::of(&out.report),
    ))
}

/// Run `f` on the handle's backend with the runtime lock released; a closed or failed
/// handle gives its failure and no lines.
fn on_backend(
    cr: &mut OCamlRuntime,
    handle: OCamlRef<DynBox<crate::Handle>>,
    f: impl FnOnce(&Backend) -> Logged,
) -> Logged {
    match backend_of(cr, handle) {
        Ok(b) => cr.releasing_runtime(|| f(&b)),
        Err(failure) => Logged {
            outcome: Err(failure),
            lines: Vec::new(),
        },
    }
}

macro_rules! build_stub {
    ($name:ident, $mode:expr) => {
        ocaml_export! {
            fn $name(
                cr,
                handle: OCamlRef<DynBox<crate::Handle>>,
                args: OCamlRef<OBuildArgs>,
                cancel: OCamlRef<DynBox<Cancel>>,
            ) -> OCaml<OLogged> {
                let args: BuildArgs = args.to_rust(cr);
                let cancel = cancel_of(cr, cancel);
                let logged = on_backend(cr, handle, |b| {
                    logged(|| build_request(b, $mode, &args.request($mode)?, &cancel))
                });
                logged.to_ocaml(cr)
            }
        }
    };
}

/// The build entry points (documented at their `external`s in `ocaml/xenguest.ml`;
/// `ocaml_export!` takes no doc attributes).
#[allow(missing_docs)]
mod stubs {
    use super::*;

    build_stub!(stub_xc_hvm_build, BuildMode::Hvm);
    build_stub!(stub_xc_pvh_build, BuildMode::Pvh);
    build_stub!(stub_xc_pv_build, BuildMode::Pv);

    ocaml_export! {
        fn stub_xenguest_build_of_argv(
            cr,
            handle: OCamlRef<DynBox<crate::Handle>>,
            args: OCamlRef<OCamlList<String>>,
            cancel: OCamlRef<DynBox<Cancel>>,
        ) -> OCaml<OLogged> {
            let args: Vec<String> = args.to_rust(cr);
            let cancel = cancel_of(cr, cancel);
            let logged = on_backend(cr, handle, |b| {
                logged(|| {
                    let command = command_of_argv(&args)?;
                    build_request(b, command.mode, &command.request, &cancel)
                })
            });
            logged.to_ocaml(cr)
        }
    }
}
