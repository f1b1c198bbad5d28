//! The listen-mode server (`emp_do_listen` and the command handlers of `xg_emu.c` in
//! xenserver/xen.pg `patches/xenguest.patch` at 4f8cbaa4).
//!
//! One thread runs the command loop over every client; the long commands (`migrate_live`,
//! `migrate_nonlive`, `restore`) run on a worker thread while `migrate_pause`,
//! `migrate_paused` and `migrate_abort` keep arriving. The worker writes its events on the
//! same sockets as the loop's replies; each message is written whole ([`Peer::send`]).
//!
//! Differences from C, each deliberate:
//! * a command that needs the stream engine is refused with an `error` reply when the engine
//!   cannot run ([`Engine::check`]), instead of `return` followed by an exit;
//! * a second long command while one runs, or one without a stream fd, is an `error` reply;
//! * a failed save or restore ends the loop with the error (C calls `exit(1)` from the
//!   worker); the caller reports it and exits 1;
//! * a set-up failure (the socket cannot be made) is an error, not a silent exit 0.

use super::emp::{self, Args, Command, Reader};
use super::engine::{Engine, Operation, RestoreRequest, SaveRequest, XCFLAGS_LIVE};
use super::io_error;
use super::session::{RestoreCallbacks, SaveCallbacks, Session};
use super::socket::{recv_with_fds, Peer, MAX_FDS_PER_READ};
use crate::hypervisor::XcError;
use crate::types::DomId;
use crate::Error;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// With no client connected and nothing happening for this long, the server aborts and
/// leaves (`COMMAND_TIMEOUT`, 120 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The command loop's wake-up period while clients are connected (C's `select` tick).
const TICK: Duration = Duration::from_secs(30);

/// Bytes taken from a client per read.
const READ_BYTES: usize = 4096;

/// `emp_get_default_path(buf, len, "xenguest", domid)`: `/run/xen/xenguest-control-<domid>`
/// (xcp-ng/xcp-emu-manager `src/emu.c` at dbd2c94 spells it out; b34ef5d replaces it with
/// the libempserver call).
pub fn default_socket_path(domid: i32) -> PathBuf {
    PathBuf::from(format!("/run/xen/xenguest-control-{domid}"))
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// `-domid`; `None` when not given (then `restore` answers `Missing options`).
    pub domid: Option<DomId>,
    /// The control socket.
    pub socket_path: PathBuf,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`emp::MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
}

impl ListenConfig {
    /// The C defaults for `-domid domid` (negative: not given).
    pub fn new(domid: i32) -> Self {
        ListenConfig {
            domid: u32::try_from(domid).ok().map(DomId),
            socket_path: default_socket_path(domid),
            idle_timeout: IDLE_TIMEOUT,
            max_message_bytes: emp::MAX_MESSAGE_BYTES,
        }
    }
}

/// Why the command loop ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `quit` was received.
    Quit,
    /// [`IDLE_TIMEOUT`] passed with no client (`Control timeout`).
    IdleTimeout,
}

/// A bound control socket, ready to serve. Dropping it removes the socket file.
pub struct Server {
    config: ListenConfig,
    engine: Arc<dyn Engine>,
    listener: UnixListener,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const SETUP: &str = "emp_sock_init";

fn setup_error(code: i32, what: String) -> Error {
    crate::Step::Mode(SETUP).xc()(XcError::errno_with(SETUP, code, what))
}

/// Make room for the socket: a stale socket (nobody accepts on it) is removed; a live one, or
/// a file that is not a socket, is left alone and refused.
fn clear_stale(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => Err(setup_error(
                libc::EADDRINUSE,
                format!("{}: another server accepts on it", path.display()),
            )),
            Err(_) => {
                log::info!("Removing stale control socket {}", path.display());
                std::fs::remove_file(path)
                    .map_err(|e| io_error(SETUP, &e, format!("removing {}", path.display())))
            }
        },
        Ok(_) => Err(setup_error(
            libc::EEXIST,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(SETUP, &e, path.display())),
    }
}

impl Server {
    /// Listen on `config.socket_path` (its directory made if missing, a stale socket replaced).
    /// Nothing here needs Xen.
    pub fn bind(config: ListenConfig, engine: Arc<dyn Engine>) -> Result<Server, Error> {
        let path = config.socket_path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| io_error(SETUP, &e, format!("creating {}", dir.display())))?;
        }
        clear_stale(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| io_error(SETUP, &e, format!("binding {}", path.display())))?;
        Ok(Server {
            config,
            engine,
            listener,
        })
    }

    /// The control socket.
    pub fn socket_path(&self) -> &Path {
        &self.config.socket_path
    }

    /// Write `Ready\n` to `ready` (emu-manager waits for exactly these 6 bytes on xenguest's
    /// stdout, then closes the pipe, so nothing is written there again), then serve until
    /// `quit`, the idle timeout, or a failed save or restore.
    pub fn serve(self, ready: &mut dyn Write) -> Result<Outcome, Error> {
        if let Err(e) = ready.write_all(b"Ready\n").and_then(|()| ready.flush()) {
            log::warn!("Cannot write Ready: {e}");
        }
        let (wake_rx, wake_tx) =
            UnixStream::pair().map_err(|e| io_error(SETUP, &e, "the worker's wake-up pair"))?;
        let mut l = Loop {
            server: &self,
            session: Arc::new(Session::default()),
            clients: Vec::new(),
            next_id: 0,
            args: Args::default(),
            stream_fd: None,
            worker: None,
            wake_rx,
            wake_tx,
        };
        let result = l.run();
        // Whatever ended the loop, a worker still running is waited for (C's `emp_sock_close`
        // waits for its threads); on a failure it is aborted first so it cannot wait forever.
        if result.is_err() {
            l.session.abort();
        }
        let worker = l.join_worker();
        match (result, worker) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(outcome), Ok(())) => Ok(outcome),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config.socket_path);
    }
}

/// One connected client.
struct Client {
    peer: Arc<Peer>,
    stream: UnixStream,
    reader: Reader,
    fds: Vec<OwnedFd>,
}

enum Flow {
    Continue,
    Quit,
}

struct Loop<'a> {
    server: &'a Server,
    session: Arc<Session>,
    clients: Vec<Client>,
    next_id: u32,
    args: Args,
    stream_fd: Option<Arc<OwnedFd>>,
    worker: Option<JoinHandle<Result<(), Error>>>,
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

/// `poll` on `fds` for input, `timeout` at most. EINTR counts as nothing ready.
fn poll_in(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fds` is a valid, writable slice of pollfd for the length given.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc >= 0 {
        return Ok(usize::try_from(rc).unwrap_or_default());
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(e)
    }
}

impl Loop<'_> {
    fn run(&mut self) -> Result<Outcome, Error> {
        let idle_timeout = self.server.config.idle_timeout;
        let mut last_activity = Instant::now();
        loop {
            let mut fds: Vec<libc::pollfd> =
                [self.server.listener.as_raw_fd(), self.wake_rx.as_raw_fd()]
                    .into_iter()
                    .chain(self.clients.iter().map(|c| c.stream.as_raw_fd()))
                    .map(|fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
            let timeout = if self.clients.is_empty() {
                idle_timeout.saturating_sub(last_activity.elapsed())
            } else {
                TICK
            };
            let ready = poll_in(&mut fds, timeout)
                .map_err(|e| io_error("emp_select", &e, "polling the control socket"))?;
            if ready == 0 && self.clients.is_empty() {
                if last_activity.elapsed() >= idle_timeout {
                    log::error!("Control timeout");
                    self.session.abort();
                    return Ok(Outcome::IdleTimeout);
                }
                continue;
            }
            last_activity = Instant::now();
            if fds[1].revents != 0 {
                self.worker_woke()?;
            }
            // The clients polled are those before this accept; in reverse, so a removal keeps
            // the other indices.
            let polled = self.clients.len();
            if fds[0].revents != 0 {
                self.accept();
            }
            for i in (0..polled).rev() {
                if fds[2 + i].revents == 0 {
                    continue;
                }
                if let Flow::Quit = self.read_client(i) {
                    return Ok(Outcome::Quit);
                }
            }
        }
    }

    fn accept(&mut self) {
        match self.server.listener.accept() {
            Ok((stream, _)) => {
                let id = self.next_id;
                match Peer::new(id, &stream) {
                    Ok(peer) => {
                        self.next_id += 1;
                        log::info!(
                            "libempserver: Adding client on fd {} as ({id})",
                            stream.as_raw_fd()
                        );
                        self.clients.push(Client {
                            peer: Arc::new(peer),
                            stream,
                            reader: Reader::new(self.server.config.max_message_bytes),
                            fds: Vec::new(),
                        });
                    }
                    Err(e) => log::error!("libempserver: cannot set up a client: {e}"),
                }
            }
            Err(e) => log::warn!("libempserver: accept failed: {e}"),
        }
    }

    fn drop_client(&mut self, i: usize) {
        let c = self.clients.remove(i);
        log::info!(
            "libempserver: Host disconnected fd {} ({})",
            c.peer.raw_fd(),
            c.peer.id()
        );
        self.session.forget_client(c.peer.id());
        // The worker may still hold this client's writer: shut the socket down so the peer
        // sees the end now, not when the worker lets go.
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }

    fn read_client(&mut self, i: usize) -> Flow {
        let mut buf = [0u8; READ_BYTES];
        let c = &mut self.clients[i];
        let mut fds = Vec::new();
        let n = match recv_with_fds(c.stream.as_fd(), &mut buf, &mut fds) {
            Ok(0) => {
                self.drop_client(i);
                return Flow::Continue;
            }
            Ok(n) => n,
            Err(e) => {
                log::warn!("libempserver: read from ({}) failed: {e}", c.peer.id());
                self.drop_client(i);
                return Flow::Continue;
            }
        };
        // Descriptors wait for the `migrate_init` they came with; a bounded few only.
        for fd in fds {
            if c.fds.len() < MAX_FDS_PER_READ as usize {
                c.fds.push(fd);
            }
        }
        let messages = match c.reader.feed(&buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                log::error!("libempserver: message from ({}): {e}", c.peer.id());
                c.peer.send_or_log(&emp::error_reply(&e.to_string()));
                self.drop_client(i);
                return Flow::Continue;
            }
        };
        for message in messages {
            if let Flow::Quit = self.dispatch(i, &message) {
                return Flow::Quit;
            }
        }
        Flow::Continue
    }

    fn dispatch(&mut self, i: usize, message: &Value) -> Flow {
        let peer = self.clients[i].peer.clone();
        log::info!("libempserver: On ({}) got message '{message}'", peer.id());
        let command = match Command::parse(message) {
            Ok(c) => c,
            Err(text) => {
                log::error!("libempserver: {text}");
                peer.send_or_log(&emp::error_reply(&text));
                return Flow::Continue;
            }
        };
        let reply = match command {
            Command::TrackDirty => Ok(()),
            Command::MigrateInit => self.migrate_init(i),
            Command::SetArgs(arguments) => self.set_args(arguments),
            Command::MigrateProgress => {
                self.session.set_progress_client(peer.clone());
                Ok(())
            }
            Command::MigratePause => {
                log::info!("Received pause message");
                self.session.pause();
                Ok(())
            }
            Command::MigratePaused => {
                log::info!("Received paused message");
                // Reply first, as C does, then let the suspend callback return.
                peer.send_or_log(emp::RETURN);
                self.session.paused();
                return Flow::Continue;
            }
            Command::MigrateAbort => {
                log::error!("Received abort command!");
                self.session.abort();
                Ok(())
            }
            Command::MigrateLive | Command::MigrateNonlive | Command::Restore => {
                return self.long_command(&command, peer);
            }
            Command::Quit => {
                peer.send_or_log(emp::RETURN);
                return Flow::Quit;
            }
        };
        match reply {
            Ok(()) => peer.send_or_log(emp::RETURN),
            Err(text) => peer.send_or_log(&emp::error_reply(&text)),
        }
        Flow::Continue
    }

    fn migrate_init(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.clients[i];
        if c.fds.is_empty() {
            log::error!("migrate_init without a file descriptor");
            return Err("migrate_init needs the stream fd (SCM_RIGHTS)".into());
        }
        let fd = c.fds.remove(0);
        log::info!("Stream fd {} received", fd.as_raw_fd());
        self.stream_fd = Some(Arc::new(fd));
        self.session.reset_suspend();
        Ok(())
    }

    fn set_args(
        &mut self,
        arguments: Option<serde_json::Map<String, Value>>,
    ) -> Result<(), String> {
        let Some(arguments) = arguments else {
            log::error!("set_args called without any args");
            return Err(emp::NO_ARGS.into());
        };
        let problems = self.args.apply(&arguments);
        for p in &problems {
            log::error!("{p}");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(emp::BAD_ARGS.into())
        }
    }

    /// `migrate_live`, `migrate_nonlive`, `restore`: checked, acknowledged, then run on the
    /// worker.
    fn long_command(&mut self, command: &Command, peer: Arc<Peer>) -> Flow {
        match self.start_long(command, &peer) {
            Ok(()) => {}
            Err(text) => {
                log::error!("{}: {text}", command.name());
                peer.send_or_log(&emp::error_reply(&text));
            }
        }
        Flow::Continue
    }

    fn start_long(&mut self, command: &Command, peer: &Arc<Peer>) -> Result<(), String> {
        if self.worker.is_some() {
            return Err("a save or restore is already running".into());
        }
        let op = match command {
            Command::Restore => Operation::Restore,
            _ => Operation::Save,
        };
        let (domid, stream) = match (self.server.config.domid, &self.stream_fd) {
            (Some(d), Some(s)) => (d, s.clone()),
            _ => {
                log::error!("xenguest: missing command line options");
                return Err("Missing options".into());
            }
        };
        let args = self.args;
        if op == Operation::Restore && (args.store_port.is_none() || args.console_port.is_none()) {
            log::error!("xenguest: missing command line options");
            return Err("Missing options".into());
        }
        self.server.engine.check(op).map_err(|e| e.to_string())?;
        peer.send_or_log(emp::RETURN);
        let engine = self.server.engine.clone();
        let session = self.session.clone();
        let requester = peer.clone();
        let live = matches!(command, Command::MigrateLive);
        let mut wake = self
            .wake_tx
            .try_clone()
            .map_err(|e| format!("cannot start the worker: {e}"))?;
        let spawned = std::thread::Builder::new()
            .name("emp-worker".into())
            .spawn(move || {
                let result = match op {
                    Operation::Restore => {
                        restore(&*engine, &session, &requester, domid, &stream, args)
                    }
                    _ => save(&*engine, &session, &requester, domid, &stream, live),
                };
                let _ = wake.write_all(b"w");
                result
            })
            .map_err(|e| format!("cannot start the worker: {e}"))?;
        self.worker = Some(spawned);
        Ok(())
    }

    /// The worker has finished: a failure ends the loop. Its wake-up byte is the last thing
    /// it does, so it may not have returned yet (`is_finished` can still be false): join it,
    /// which waits at most for that return, rather than miss the only wake-up.
    fn worker_woke(&mut self) -> Result<(), Error> {
        let mut sink = [0u8; 16];
        let _ = (&self.wake_rx).read(&mut sink);
        self.join_worker()
    }

    fn join_worker(&mut self) -> Result<(), Error> {
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        if !worker.is_finished() {
            log::info!("Waiting for the save or restore to finish");
        }
        worker.join().unwrap_or_else(|_| {
            Err(crate::Step::Mode("emp_worker").xc()(XcError::errno_with(
                "emp_worker",
                libc::EIO,
                "the worker thread panicked",
            )))
        })
    }
}

/// `emu_stub_xc_domain_save` and what `do_migrate_live`/`do_migrate_nonlive` do after it.
fn save(
    engine: &dyn Engine,
    session: &Arc<Session>,
    requester: &Arc<Peer>,
    domid: DomId,
    stream: &OwnedFd,
    live: bool,
) -> Result<(), Error> {
    let hooks = SaveCallbacks::new(session.clone(), requester.clone());
    let req = SaveRequest {
        domid,
        stream: stream.as_fd(),
        flags: if live { XCFLAGS_LIVE } else { 0 },
    };
    engine.save(&req, &hooks)?;
    log::info!("Finished, send complete");
    let completed = emp::completed_event(None);
    let watcher = session.progress_client();
    // A live save tells the progress client only; a non-live one the requester too (once).
    if !live {
        requester.send_or_log(&completed);
    }
    match watcher {
        Some(w) if live || w.id() != requester.id() => w.send_or_log(&completed),
        Some(_) => {}
        None => log::info!("No cli watching"),
    }
    Ok(())
}

/// `stub_xc_domain_restore` and what `do_cmd_restore` does after it.
fn restore(
    engine: &dyn Engine,
    session: &Arc<Session>,
    requester: &Arc<Peer>,
    domid: DomId,
    stream: &OwnedFd,
    args: Args,
) -> Result<(), Error> {
    let hooks = RestoreCallbacks::new(session.clone());
    let req = RestoreRequest {
        domid,
        stream: stream.as_fd(),
        store_port: args.store_port.unwrap_or_default(),
        store_domid: DomId(0),
        console_port: args.console_port.unwrap_or_default(),
        console_domid: DomId(0),
        hvm: !args.pv,
        vgpu: args.vgpu,
    };
    let r = engine.restore(&req, &hooks)?;
    log::info!("Restore complete, send result");
    let completed = emp::completed_event(Some(&format!("{} {}", r.store_frame, r.console_frame)));
    let watcher = session.progress_client();
    if let Some(w) = &watcher {
        w.send_or_log(&completed);
    }
    if watcher.is_none_or(|w| w.id() != requester.id()) {
        requester.send_or_log(&completed);
    }
    log::info!("All done");
    Ok(())
}
