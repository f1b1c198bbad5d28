//! `xenguest`: the drop-in for XenServer's C domain builder. This face parses the command
//! line, sets up logging and the control fd, picks the backends (the simulated host with
//! `-sim`) and calls the core. Everything else lives in the library.

mod cli;
mod control;
mod migrate;
mod shadow_retry;
mod sim_host;
mod syslog;

use control::ControlFd;
use sim_host::SimSession;
use std::process::ExitCode;
use xenguest::builder::{self, BuildEnv, BuildMode, BuildOutput, HostPaths};
use xenguest::request::{self, argv, Action, ArgvError, BuildRequest, Options};
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

/// Run the mode: build on the simulated host (`-sim`, `-sim-host`) or on the real one.
fn run(opts: &Options) -> Result<BuildOutput, Error> {
    let request::BuildCommand { mode, request: req } = request::build_command(opts)?;
    let paths = HostPaths::from_env();
    let output = match SimSession::open(opts)? {
        Some(sim) => {
            let built = build_on_sim(&sim, mode, &req, &paths);
            // Written back whatever happened: a failed build leaves its domain, as on Xen.
            let written = sim.finish();
            let built = built?;
            written?;
            built
        }
        None => build_on_xen(mode, &req, &paths)?,
    };
    if let Some(path) = &opts.report {
        write_report(path, &output.report)?;
    }
    if opts.summary {
        print!("{}", output.report.summary());
    }
    Ok(output)
}

/// `-report FILE`: `report` as pretty JSON, for a build and for a restore alike.
pub(crate) fn write_report(path: &str, report: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    std::fs::write(path, json + "\n")
        .map_err(|e| Step::Report.invalid(format!("cannot write {path}: {e}")))
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
        Step::InterfaceOpen,
        xenguest::ErrorKind::NotImplemented(
            "built without the `xen` feature; use -sim <host spec> to build on a simulated host"
                .into(),
        ),
    ))
}

/// Do the toolstack's part on the simulated host (create the domain; the platform keys are
/// written already), then build.
fn build_on_sim(
    sim: &SimSession,
    mode: BuildMode,
    req: &BuildRequest,
    paths: &HostPaths,
) -> Result<BuildOutput, Error> {
    // xenopsd's build_pre sets max_pages to the build's maximum plus slack for special pages.
    let max_mem_kib = (req.mem_max_mib << 10) + sim_host::MAXMEM_SLACK_KIB;
    sim.create_domain(mode != BuildMode::Pv, req.domid, max_mem_kib)?;
    builder::build(
        BuildEnv {
            hv: &*sim.host,
            store: &*sim.store,
            paths,
        },
        mode,
        req,
    )
}
