//! The migration modes of the binary: `listen` (the EMP server emu-manager drives) and the
//! direct `save`/`hvm_save`, `restore`/`hvm_restore` and `resume_slow`. The protocol and the
//! steps are the library's ([`xenguest::migrate`]); this face picks the engine, wires the
//! control fds and prints the result.

use crate::control::ControlFd;
use crate::sim_host::SimSession;
use std::fs::File;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::sync::Arc;
use xenguest::migrate::direct;
use xenguest::migrate::engine::{Engine, RestoreRequest, SaveRequest};
use xenguest::migrate::server::{ListenConfig, Outcome, Server};
use xenguest::request::{Mode, Options};
use xenguest::store::Store;
use xenguest::types::DomId;
use xenguest::{Error, Step};

/// What a migration mode reports on success: `result:<a> <b>`, or nothing (listen).
pub type Frames = Option<(u64, u64)>;

type Engines = Arc<dyn Engine>;

/// Run a migration mode. `None` when `mode` is not one.
pub fn run(opts: &Options, mode: Mode, control: &ControlFd) -> Option<Result<Frames, Error>> {
    let run = match mode {
        Mode::Listen => listen,
        Mode::Save | Mode::HvmSave => save,
        Mode::Restore | Mode::HvmRestore => restore,
        Mode::ResumeSlow => resume,
        _ => return None,
    };
    if let Some(node) = opts.mem_pnode {
        // The toolstack has set the domain's NUMA node affinity, which Xen's allocator follows
        // when the stream populates memory; the option only says where that is.
        log::info!("-mem_pnode {node}: memory follows the domain's node affinity");
    }
    Some(match SimSession::open(opts) {
        Err(e) => Err(e),
        Ok(Some(sim)) => {
            let done = run(opts, &sim.engine(), Some(&*sim.store), control);
            // Written back whatever happened, as a real host keeps what a failed run left.
            let written = sim.finish();
            done.and_then(|frames| written.map(|()| frames))
        }
        Ok(None) => {
            engine().and_then(|(engine, store)| run(opts, &engine, store.as_deref(), control))
        }
    })
}

/// The engines on the real host: the native one for HVM and PVH (unless
/// `XENGUEST_STREAM_ENGINE=libxenguest`), libxenguest's for PV, and the xenstored connection
/// the native one uses (the save's nomigrate check reads through it too). Without Xen,
/// libxenguest's alone, whose check then refuses each command with the C text.
#[cfg(feature = "xen")]
fn engine() -> Result<(Engines, Option<Arc<dyn Store>>), Error> {
    use xenguest::migrate::libxenguest::Libxenguest;
    use xenguest::migrate::native::Native;
    use xenguest::migrate::select::{Choice, Chooser};
    let choice = Choice::from_env()?;
    let lib: Engines = Arc::new(Libxenguest);
    match xenguest::builder::open_real_host() {
        Ok((hv, store)) => {
            let hv: Arc<dyn xenguest::hypervisor::Hypervisor> = Arc::new(hv);
            let store: Arc<dyn Store> = Arc::new(store);
            let native = Native::new(hv.clone(), store.clone());
            log::info!("Stream engine for HVM and PVH: {choice:?}; PV: libxenguest");
            Ok((
                Arc::new(Chooser::new(hv, native, Some(lib), choice)),
                Some(store),
            ))
        }
        Err(e) => {
            log::debug!("no real host for the native engine: {e}");
            Ok((lib, None))
        }
    }
}

/// Without the `xen` feature there is no engine on a real host; listen still serves and
/// refuses each command.
#[cfg(not(feature = "xen"))]
fn engine() -> Result<(Engines, Option<Arc<dyn Store>>), Error> {
    Ok((Arc::new(xenguest::migrate::engine::Unavailable), None))
}

/// xenstored, for the nomigrate check (opened with the C texts).
#[cfg(feature = "xen")]
fn real_store() -> Result<impl xenguest::store::Store, Error> {
    Ok(xenguest::builder::open_real_host()?.1)
}

#[cfg(not(feature = "xen"))]
fn real_store() -> Result<xenguest::store::MemoryStore, Error> {
    Err(Error::new(
        Step::XsOpen,
        xenguest::ErrorKind::NotImplemented("built without the `xen` feature".into()),
    ))
}

fn domid(opts: &Options) -> Result<DomId, Error> {
    u32::try_from(opts.domid)
        .map(DomId)
        .map_err(|_| Step::Main.invalid(format!("-domid {} is negative", opts.domid)))
}

/// A port or domid option: C passes them to libxc as unsigned ints.
fn non_negative(name: &str, v: i32) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Step::Main.invalid(format!("-{name} {v} is negative")))
}

/// `-fd`, borrowed for the whole run (inherited at exec, never closed by us).
fn stream_fd(opts: &Options) -> Result<BorrowedFd<'static>, Error> {
    let fd: RawFd = opts.fd;
    // SAFETY: F_GETFD takes no pointer argument; a closed fd just yields -1.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(Step::Main.invalid(format!("-fd {fd} is not an open file descriptor")));
    }
    // SAFETY: `fd` is open (checked above), inherited from the caller, and nothing in this
    // process closes it before exit, so the borrow is valid for 'static.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `-mode listen`: serve emu-manager on `/run/xen/xenguest-control-<domid>` until `quit` or the
/// idle timeout (C leaves its loop and exits 0 in both cases). `Ready` goes to stdout once the
/// socket listens, and nothing else does.
fn listen(
    opts: &Options,
    engine: &Engines,
    _: Option<&dyn Store>,
    _: &ControlFd,
) -> Result<Frames, Error> {
    let server = Server::bind(ListenConfig::new(opts.domid), Arc::clone(engine))?;
    log::info!("Listening on {}", server.socket_path().display());
    let outcome = server.serve(&mut std::io::stdout())?;
    log::info!(
        "Leaving listen mode: {}",
        match outcome {
            Outcome::Quit => "quit",
            Outcome::IdleTimeout => "no client (Control timeout)",
        }
    );
    Ok(None)
}

/// `save`/`hvm_save`: `-live` and `-debug` set the flags, `-force` skips the nomigrate check
/// (through `store`, else a xenstored connection of its own); the suspend is asked of the toolstack with `suspend:` and its answer line on `-controlinfd`.
fn save(
    opts: &Options,
    engine: &Engines,
    store: Option<&dyn Store>,
    control: &ControlFd,
) -> Result<Frames, Error> {
    let domid = domid(opts)?;
    let real;
    let store = match store {
        Some(store) => store,
        None => {
            real = real_store()?;
            &real
        }
    };
    let req = SaveRequest {
        domid,
        stream: stream_fd(opts)?,
        flags: opts.flags.cast_unsigned(),
    };
    let infd = opts.controlinfd;
    let suspend = || ask_suspend(control, infd);
    direct::save(engine.as_ref(), store, &req, opts.force, &suspend)?;
    Ok(Some((0, 0)))
}

/// C's `suspend_callback`: `suspend:` on the control fd, then 8-byte reads of `-controlinfd`
/// until a newline; end of file or an error fails the save.
fn ask_suspend(control: &ControlFd, infd: RawFd) -> bool {
    log::info!("Asking the toolstack to suspend the domain");
    if let Err(e) = control.write_raw(b"suspend:\n") {
        log::error!("writing suspend: to the control fd: {e}");
        return false;
    }
    if infd < 0 {
        log::error!("No -controlinfd to read the suspend answer from");
        return false;
    }
    // SAFETY: `infd` was given by the toolstack and stays open for the process's life; the
    // File is never dropped (ManuallyDrop), so it is not closed here.
    let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(infd) });
    let mut buf = [0u8; 8];
    loop {
        match input.read(&mut buf) {
            Ok(0) => {
                log::error!("The toolstack closed -controlinfd before answering suspend");
                return false;
            }
            Ok(n) if buf[..n].contains(&b'\n') => {
                log::info!("suspend was received");
                return true;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::error!("reading the suspend answer: {e}");
                return false;
            }
        }
    }
}

/// `restore`/`hvm_restore`: the result is `<store frame> <console frame>`.
fn restore(
    opts: &Options,
    engine: &Engines,
    _: Option<&dyn Store>,
    _: &ControlFd,
) -> Result<Frames, Error> {
    let req = RestoreRequest {
        domid: domid(opts)?,
        stream: stream_fd(opts)?,
        store_port: non_negative("store_port", opts.store_port)?,
        store_domid: DomId(non_negative("store_domid", opts.store_domid)?),
        console_port: non_negative("console_port", opts.console_port)?,
        console_domid: DomId(non_negative("console_domid", opts.console_domid)?),
        hvm: opts.mode == Some(Mode::HvmRestore),
        vgpu: opts.vgpu,
    };
    let r = direct::restore(engine.as_ref(), &req)?;
    if let Some(path) = &opts.report {
        write_restore_report(path, opts, &r)?;
    }
    Ok(Some((r.store_frame, r.console_frame)))
}

/// `-report FILE` after a restore: the result and, from the native engine, what it did (records,
/// pages written, populate calls and pages by order, pages given back); `stats` is null from
/// libxenguest's engine, which does not say.
fn write_restore_report(
    path: &str,
    opts: &Options,
    r: &xenguest::migrate::engine::RestoreResult,
) -> Result<(), Error> {
    let report = serde_json::json!({
        "mode": opts.mode.map(Mode::name),
        "domid": opts.domid,
        "store_frame": r.store_frame,
        "console_frame": r.console_frame,
        "stats": r.stats,
    });
    crate::write_report(path, &report)
}

/// `resume_slow`: `xc_domain_resume(.., fast=0)`.
fn resume(
    opts: &Options,
    engine: &Engines,
    _: Option<&dyn Store>,
    _: &ControlFd,
) -> Result<Frames, Error> {
    direct::resume_slow(engine.as_ref(), domid(opts)?)?;
    Ok(Some((0, 0)))
}
