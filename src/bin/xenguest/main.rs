//! `xenguest`: the drop-in for XenServer's C domain builder. This face parses the command
//! line, sets up logging and the control fd, picks the backends (the simulated host with
//! `-sim`) and calls the core. Everything else lives in the library.

mod cli;
mod control;
mod migrate;
mod shadow_retry;
mod syslog;

use control::ControlFd;
use std::process::ExitCode;
use xenguest::builder::{self, BuildEnv, BuildMode, BuildOutput, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::request::{self, argv, Action, ArgvError, BuildRequest, Options};
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::{Error, Step};

fn main() -> ExitCode {
    control::ignore_sigpipe();
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("xenguest");
    let (seen, parsed) = argv::parse_partial(&args);
    let opts = match parsed.and_then(|action| {
        if let Action::Run(opts) = &action {
            opts.check_required()?;
        }
        Ok(action)
    }) {
        Ok(Action::Supports(feature)) => {
            println!("{}", argv::supports_feature(&feature));
            return ExitCode::SUCCESS;
        }
        Ok(Action::Run(opts)) => *opts,
        Err(e) => {
            command_line_error(argv0, &e, seen.controloutfd);
            return ExitCode::FAILURE;
        }
    };
    let control = match ControlFd::from_raw(opts.controloutfd) {
        Ok(control) => control,
        Err(e) => {
            eprintln!(
                "xenguest: Failed fcntl(F_GETFD) on fd {}: {e}",
                opts.controloutfd
            );
            return ExitCode::FAILURE;
        }
    };
    let log = syslog::LogConfig {
        ident: cli::syslog_ident(opts.domid, opts.mode),
        debug: opts.debug_enabled(),
        to_stderr: opts.stderr,
        debuglog: opts.debuglog.clone(),
        control: None,
    };
    if let Err(e) = syslog::init(log) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    log::info!("Command line: {}", cli::joined_command_line(&args));

    let outcome = match opts
        .mode
        .and_then(|mode| migrate::run(&opts, mode, &control))
    {
        Some(migration) => migration.map(|frames| frames.map(|(a, b)| (a, b, None))),
        None => run(&opts).map(|output| {
            let r = output.result;
            Some((r.store_mfn, r.console_mfn, r.protocol))
        }),
    };
    report(&control, outcome)
}

/// Tell the toolstack: `result:<a> <b>[ <proto>]` (nothing for listen, which answers on its
/// socket), or the one `error:` line; exit 1 on failure.
fn report(
    control: &ControlFd,
    outcome: Result<Option<(u64, u64, Option<String>)>, Error>,
) -> ExitCode {
    match outcome {
        Ok(result) => {
            if let Some((a, b, protocol)) = result {
                match control.write_result(a, b, protocol.as_deref()) {
                    Ok(line) => log::info!("Writing to control: '{}'", line.trim_end()),
                    Err(e) => log::error!("{e}"),
                }
            }
            log::info!("All done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = e.wire_text();
            log::error!("{}", text.trim_end());
            if let Err(io) = control.write_error(&text) {
                log::error!("writing the error to the control fd: {io}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A command-line error, as C's `xg_err` reports it: on stderr (after getopt's own diagnostic)
/// and, when `-controloutfd` came before the error, as an `error:` line on that fd: xenopsd
/// sends stderr to /dev/null and reads only the control fd.
fn command_line_error(argv0: &str, e: &ArgvError, controloutfd: i32) {
    if let Some(diagnostic) = e.getopt_diagnostic() {
        eprintln!("{argv0}: {diagnostic}");
    }
    let text = request::RequestError::from(e.clone()).wire_text();
    eprint!("{text}");
    // An fd that is not open cannot carry it; stderr already has it.
    if let Ok(control) = ControlFd::from_raw(controloutfd) {
        let _ = control.write_error(&text);
    }
}

/// Run the mode: build on the simulated host (`-sim`) or on the real one.
fn run(opts: &Options) -> Result<BuildOutput, Error> {
    let request::BuildCommand { mode, request: req } = request::build_command(opts)?;
    let paths = HostPaths::from_env();
    let output = match &opts.sim {
        Some(spec) => build_on_sim(spec, opts, mode, &req, &paths)?,
        None => build_on_xen(mode, &req, &paths)?,
    };
    if let Some(path) = &opts.report {
        let json = serde_json::to_string_pretty(&output.report).unwrap_or_default();
        std::fs::write(path, json + "\n")
            .map_err(|e| Step::Report.invalid(format!("cannot write {path}: {e}")))?;
    }
    if opts.summary {
        print!("{}", output.report.summary());
    }
    Ok(output)
}

/// Build on the real host: a libxenctrl handle and a xenstored connection opened for this build
/// (C: `xc_interface_open` then `xs_open`, each failure with the C text).
#[cfg(feature = "xen")]
fn build_on_xen(
    mode: BuildMode,
    req: &BuildRequest,
    paths: &HostPaths,
) -> Result<BuildOutput, Error> {
    let (hv, store) = builder::open_real_host()?;
    builder::build(
        BuildEnv {
            hv: &hv,
            store: &store,
            paths,
        },
        mode,
        req,
    )
}

/// Without the `xen` feature the binary has only the simulated host.
#[cfg(not(feature = "xen"))]
fn build_on_xen(_: BuildMode, _: &BuildRequest, _: &HostPaths) -> Result<BuildOutput, Error> {
    Err(Error::new(
        "xc_interface_open",
        ErrorKind::NotImplemented(
            "built without the `xen` feature; use -sim <host spec> to build on a simulated host"
                .into(),
        ),
    ))
}

/// Do the toolstack's part on a fresh simulated host (create the domain, write the platform
/// keys as xenopsd does), then build.
fn build_on_sim(
    spec: &str,
    opts: &Options,
    mode: BuildMode,
    req: &BuildRequest,
    paths: &HostPaths,
) -> Result<BuildOutput, Error> {
    let sim_error = |reason: String| Step::Sim.invalid(reason);
    let host = SimHost::from_spec(spec).map_err(|e| sim_error(e.to_string()))?;
    let store = MemoryStore::new();
    let base = domain_path(req.domid);
    let defaults = SIM_PLATFORM_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()));
    for (key, value) in defaults.chain(opts.sim_keys.iter().cloned()) {
        // A key starting with `/` is absolute (e.g. `/mh/limits/pv-kernel-max_size`).
        let path = if key.starts_with('/') {
            key
        } else {
            format!("{base}/{key}")
        };
        store.write(&path, &value).map_err(Step::Sim.store())?;
    }
    let vcpus = store
        .read(&format!("{base}/platform/vcpu/number"))
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u32)
        .max(1);
    // xenopsd's build_pre sets max_pages to the build's maximum plus slack for special pages.
    let max_mem_kib = (req.mem_max_mib << 10) + SIM_MAXMEM_SLACK_KIB;
    let config = DomainConfig::of_kind(mode != BuildMode::Pv, req.domid, max_mem_kib, vcpus);
    host.create_domain(&config).map_err(Step::Sim.xc())?;
    log::info!(
        "domid = {}; created on a simulated host ({})",
        req.domid,
        host.spec()
    );
    builder::build(
        BuildEnv {
            hv: &host,
            store: &store,
            paths,
        },
        mode,
        req,
    )
}

/// Keys xenopsd always writes in the platform map (`generate_create_info`): one vCPU, ACPI
/// S3/S4 off. `-sim-key` overrides them.
const SIM_PLATFORM_DEFAULTS: [(&str, &str); 4] = [
    ("platform/vcpu/number", "1"),
    ("platform/vcpu/current", "1"),
    ("platform/acpi_s3", "0"),
    ("platform/acpi_s4", "0"),
];

/// Headroom above guest RAM for special, ioreq and ACPI pages (libxl's `LIBXL_MAXMEM_CONSTANT`).
const SIM_MAXMEM_SLACK_KIB: u64 = 1024;
