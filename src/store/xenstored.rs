//! The real store: a xenstored reached through its Unix socket (`XENSTORED_PATH`, default
//! `/run/xenstored/socket`, as the C tools do), else the xenbus device through `xenstore-rs`.
//!
//! Every operation has a deadline: a xenstored that is alive but not answering (stopped, or
//! stuck) must fail a build, not hang it (nor, in-process, a xenopsd thread). The default is
//! [`DEFAULT_TIMEOUT`] (10 s), overridden by the environment variable
//! `XENGUEST_XENSTORE_TIMEOUT_MS` (read by [`XenstoredStore::open`]) or by the argument of
//! [`XenstoredStore::open_with_timeout`]. A missed deadline is a [`StoreError`] with
//! `ETIMEDOUT` naming the operation, the path and the deadline. Connecting is bounded by the
//! same deadline (a stalled daemon's full listen backlog would block `connect(2)` forever).
//!
//! `xenstore-rs` has no timeout and hides its socket, so on the socket this module speaks the
//! wire protocol itself (xen-project/xen RELEASE-4.17.0 `docs/misc/xenstore.txt` and
//! `xen/include/public/io/xs_wire.h`: a `{type, req_id, tx_id, len}` header of native-endian
//! u32s, then at most 4096 payload bytes), with `SO_RCVTIMEO`/`SO_SNDTIMEO` set to what is
//! left of the deadline before each system call. When there is no socket, `xenstore-rs`'s
//! `XsUnix` talks to the xenbus device on a worker thread that the caller waits for with the
//! same deadline. After a timeout or a garbled reply the connection is dropped and the next
//! operation reconnects, so a late reply is never taken for the next request's.

use super::{Store, StoreError, StoreResult};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};
use xenstore_rs::unix::XsUnix;
use xenstore_rs::Xs;

/// Deadline of one store operation unless `XENGUEST_XENSTORE_TIMEOUT_MS` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides [`DEFAULT_TIMEOUT`], in milliseconds.
pub const TIMEOUT_ENV: &str = "XENGUEST_XENSTORE_TIMEOUT_MS";

/// `XENSTORE_PAYLOAD_MAX` in `xs_wire.h`.
const PAYLOAD_MAX_BYTES: usize = 4096;

// Message types from `enum xsd_sockmsg_type` in `xs_wire.h`.
const XS_DIRECTORY: u32 = 1;
const XS_READ: u32 = 2;
const XS_WRITE: u32 = 11;
const XS_RM: u32 = 13;
const XS_ERROR: u32 = 16;

/// A connection to xenstored. Requests are serialised; each build normally opens its own.
pub struct XenstoredStore {
    conn: Mutex<Option<Conn>>,
    timeout: Duration,
}

enum Conn {
    Socket {
        stream: UnixStream,
        next_req_id: u32,
    },
    Device(DeviceWorker),
}

impl std::fmt::Debug for XenstoredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XenstoredStore(timeout {:?})", self.timeout)
    }
}

impl XenstoredStore {
    /// Connect (the C xenguest's `xs_open(0)`) with the deadline from `XENGUEST_XENSTORE_TIMEOUT_MS`
    /// or [`DEFAULT_TIMEOUT`]; a value that is not a positive number of milliseconds is an
    /// `InvalidInput` error naming the variable.
    pub fn open() -> io::Result<Self> {
        Self::open_with_timeout(timeout_from_env(
            std::env::var(TIMEOUT_ENV).ok().as_deref(),
        )?)
    }

    /// Connect with `timeout` as the deadline of every operation (at least 1 ms).
    pub fn open_with_timeout(timeout: Duration) -> io::Result<Self> {
        let timeout = timeout.max(Duration::from_millis(1));
        Ok(XenstoredStore {
            conn: Mutex::new(Some(connect(timeout)?)),
            timeout,
        })
    }

    /// The deadline of each operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One request: the outer error is a broken or stalled connection, the inner one
    /// xenstored's answer.
    fn transact(&self, op: &'static str, msg_type: u32, path: &str, value: Option<&str>) -> Reply {
        let deadline = Instant::now() + self.timeout;
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match slot.take() {
            Some(conn) => conn,
            // The whole operation, reconnecting included, keeps to one deadline.
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                connect(left.max(Duration::from_millis(1)))
                    .map_err(|e| to_store_error(op, path, &e))?
            }
        };
        let (result, keep) = conn.transact(deadline, msg_type, path, value);
        // Kept only if the exchange ended cleanly: after a timeout or a garbled reply the
        // stream's place in the reply sequence is unknown.
        *slot = keep;
        result.map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                StoreError {
                    op,
                    path: path.to_string(),
                    code: libc::ETIMEDOUT,
                    message: format!(
                        "xenstored did not answer within {} ms",
                        self.timeout.as_millis()
                    ),
                }
            } else {
                to_store_error(op, path, &e)
            }
        })
    }
}

type Reply = StoreResult<io::Result<Vec<u8>>>;

fn timeout_from_env(value: Option<&str>) -> io::Result<Duration> {
    let Some(text) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match text.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{TIMEOUT_ENV}={text:?}: expected a positive number of milliseconds"),
        )),
    }
}

fn connect(timeout: Duration) -> io::Result<Conn> {
    let path =
        std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".to_string());
    match connect_by(&path, timeout) {
        Ok(stream) => Ok(Conn::Socket {
            stream,
            next_req_id: 1,
        }),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "xenstored did not accept a connection on {path} within {} ms",
                timeout.as_millis()
            ),
        )),
        // No daemon socket: xenstore-rs tries it again, then the xenbus device.
        Err(_) => DeviceWorker::spawn(XsUnix::new()?).map(Conn::Device),
    }
}

/// `connect(2)` to a Unix socket, bounded: a stalled daemon whose listen backlog is full
/// leaves a blocking connect waiting forever, and `UnixStream` has no connect timeout. Linux
/// bounds that wait by the socket's `SO_SNDTIMEO` (`unix_stream_connect` in
/// torvalds/linux v6.1 `net/unix/af_unix.c`), failing with EAGAIN.
fn connect_by(path: &str, timeout: Duration) -> io::Result<UnixStream> {
    // SAFETY: socket(2) takes no pointers; the new descriptor is owned just below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns or closes.
    let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    stream.set_write_timeout(Some(timeout))?;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    #[expect(
        clippy::cast_possible_truncation,
        reason = "AF_UNIX is 1; sockaddr_un is 110 bytes"
    )]
    let (family, addr_len) = (
        libc::AF_UNIX as libc::sa_family_t,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    );
    addr.sun_family = family;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{path}: not a usable Unix socket path"),
        ));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src.cast_signed();
    }
    // SAFETY: `addr` is an initialised sockaddr_un that outlives the call, and the length
    // passed is its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            addr_len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EAGAIN) {
            io::ErrorKind::TimedOut.into()
        } else {
            e
        });
    }
    Ok(stream)
}

impl Conn {
    /// One request and its reply; returns the connection back when it is still in step.
    fn transact(
        self,
        deadline: Instant,
        msg_type: u32,
        path: &str,
        value: Option<&str>,
    ) -> (io::Result<io::Result<Vec<u8>>>, Option<Conn>) {
        match self {
            Conn::Socket {
                mut stream,
                next_req_id,
            } => {
                let req_id = next_req_id;
                let mut payload = path.as_bytes().to_vec();
                payload.push(0);
                if let Some(value) = value {
                    // XS_WRITE: "path\0value", the value without a terminating NUL.
                    payload.extend_from_slice(value.as_bytes());
                }
                if payload.len() > PAYLOAD_MAX_BYTES {
                    let e = io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "request of {} bytes exceeds xenstore's {PAYLOAD_MAX_BYTES}",
                            payload.len()
                        ),
                    );
                    let conn = Conn::Socket {
                        stream,
                        next_req_id,
                    };
                    return (Ok(Err(e)), Some(conn));
                }
                match exchange(&mut stream, deadline, msg_type, req_id, &payload) {
                    Ok(reply) => {
                        let conn = Conn::Socket {
                            stream,
                            next_req_id: req_id.wrapping_add(1),
                        };
                        (Ok(reply), Some(conn))
                    }
                    Err(e) => (Err(e), None),
                }
            }
            Conn::Device(worker) => {
                let (path, value) = (path.to_string(), value.map(str::to_string));
                match worker.run(deadline, move |xs| device_op(xs, msg_type, &path, value)) {
                    // xenstore-rs folds both kinds of failure into one io::Error: an OS
                    // error, EOF or an unparsable reply means the device stream is lost.
                    Ok(Err(e))
                        if e.raw_os_error().is_some()
                            || matches!(
                                e.kind(),
                                io::ErrorKind::UnexpectedEof
                                    | io::ErrorKind::InvalidData
                                    | io::ErrorKind::Unsupported
                            ) =>
                    {
                        (Err(e), None)
                    }
                    Ok(reply) => (Ok(reply), Some(Conn::Device(worker))),
                    Err(e) => (Err(e), None),
                }
            }
        }
    }
}

/// Send one request and read its reply. The outer error means the stream is out of step
/// (I/O failure, timeout, a reply that is not ours); the inner one is xenstored's answer.
fn exchange(
    stream: &mut UnixStream,
    deadline: Instant,
    msg_type: u32,
    req_id: u32,
    payload: &[u8],
) -> io::Result<io::Result<Vec<u8>>> {
    let mut request = Vec::with_capacity(16 + payload.len());
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xenstore request over 4 GiB"))?;
    for word in [msg_type, req_id, 0, len] {
        request.extend_from_slice(&word.to_ne_bytes());
    }
    request.extend_from_slice(payload);
    write_all_by(stream, deadline, &request)?;

    let mut header = [0u8; 16];
    read_exact_by(stream, deadline, &mut header)?;
    let word =
        |i: usize| u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (reply_type, reply_id, len) = (word(0), word(4), word(12) as usize);
    let garbled = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    if len > PAYLOAD_MAX_BYTES {
        return Err(garbled(format!(
            "reply claims {len} payload bytes, more than xenstore's {PAYLOAD_MAX_BYTES}"
        )));
    }
    let mut body = vec![0u8; len];
    read_exact_by(stream, deadline, &mut body)?;
    if reply_id != req_id {
        return Err(garbled(format!(
            "reply to request {reply_id} while waiting for request {req_id}"
        )));
    }
    match reply_type {
        t if t == msg_type => Ok(Ok(body)),
        XS_ERROR => Ok(Err(xs_error(&body))),
        t => Err(garbled(format!(
            "reply of type {t} to a request of type {msg_type}"
        ))),
    }
}

/// xenstored's error reply: an errno name (`xsd_errors` in `xs_wire.h`).
fn xs_error(body: &[u8]) -> io::Error {
    let name = body.strip_suffix(&[0]).unwrap_or(body);
    let errno = match name {
        b"EINVAL" => libc::EINVAL,
        b"EACCES" => libc::EACCES,
        b"EEXIST" => libc::EEXIST,
        b"EISDIR" => libc::EISDIR,
        b"ENOENT" => libc::ENOENT,
        b"ENOMEM" => libc::ENOMEM,
        b"ENOSPC" => libc::ENOSPC,
        b"EIO" => libc::EIO,
        b"ENOTEMPTY" => libc::ENOTEMPTY,
        b"ENOSYS" => libc::ENOSYS,
        b"EROFS" => libc::EROFS,
        b"EBUSY" => libc::EBUSY,
        b"EAGAIN" => libc::EAGAIN,
        b"EISCONN" => libc::EISCONN,
        b"E2BIG" => libc::E2BIG,
        b"EPERM" => libc::EPERM,
        b"EQUOTA" => libc::EDQUOT,
        _ => {
            return io::Error::other(format!(
                "xenstored error {:?}",
                String::from_utf8_lossy(name)
            ))
        }
    };
    io::Error::from_raw_os_error(errno)
}

/// What is left before `deadline`, or a `TimedOut` error.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// `SO_RCVTIMEO` expiry reads as EAGAIN (`WouldBlock`) on Linux.
fn timed_out(e: io::Error) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        io::ErrorKind::TimedOut.into()
    } else {
        e
    }
}

fn write_all_by(stream: &mut UnixStream, deadline: Instant, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    Ok(())
}

fn read_exact_by(stream: &mut UnixStream, deadline: Instant, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    Ok(())
}

/// The same request through `xenstore-rs`, its reply re-encoded as the wire payload.
fn device_op(xs: &XsUnix, msg_type: u32, path: &str, value: Option<String>) -> io::Result<Vec<u8>> {
    match msg_type {
        XS_READ => xs.read(path).map(|v| v.as_bytes().to_vec()),
        XS_WRITE => xs
            .write(path, value.as_deref().unwrap_or(""))
            .map(|()| Vec::new()),
        XS_RM => xs.rm(path).map(|()| Vec::new()),
        _ => xs.directory(path).map(|names| {
            names
                .iter()
                .flat_map(|n| n.bytes().chain([0]))
                .collect::<Vec<u8>>()
        }),
    }
}

type Job = Box<dyn FnOnce(&XsUnix) + Send>;

/// `XsUnix` on its own thread, so that a caller can stop waiting for it. A worker given up on
/// is dropped; its thread ends once the blocked request returns.
struct DeviceWorker {
    jobs: mpsc::Sender<Job>,
}

impl DeviceWorker {
    fn spawn(xs: XsUnix) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("xenstore-device".into())
            .spawn(move || {
                for job in queue {
                    job(&xs);
                }
            })?;
        Ok(DeviceWorker { jobs })
    }

    fn run(
        &self,
        deadline: Instant,
        f: impl FnOnce(&XsUnix) -> io::Result<Vec<u8>> + Send + 'static,
    ) -> io::Result<io::Result<Vec<u8>>> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |xs| {
            let _ = reply.send(f(xs));
        });
        self.jobs
            .send(job)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        match answer.recv_timeout(remaining(deadline)?) {
            Ok(result) => Ok(result),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
    }
}

fn to_store_error(op: &'static str, path: &str, e: &io::Error) -> StoreError {
    let code = e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::UnexpectedEof => libc::ECONNRESET,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        _ => libc::EIO,
    });
    let text = match e.raw_os_error() {
        Some(errno) => crate::hypervisor::strerror(errno),
        None => e.to_string(),
    };
    // A dead or restarted daemon shows up as EOF, EPIPE or a reset: say so plainly.
    let lost = matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    );
    StoreError {
        op,
        path: path.to_string(),
        code,
        message: if lost {
            format!("xenstored closed the connection ({text})")
        } else {
            text
        },
    }
}

fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `Ok(None)` for xenstored's ENOENT.
fn absent_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store for XenstoredStore {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        let reply = self.transact("read", XS_READ, path, None)?;
        absent_is_none(reply.and_then(|mut v| {
            // xenstore-rs drops one trailing NUL: keep reading values the same way.
            if v.last() == Some(&0) {
                v.pop();
            }
            utf8(v)
        }))
        .map_err(|e| to_store_error("read", path, &e))
    }

    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        let reply = self.transact("write", XS_WRITE, path, Some(value))?;
        reply
            .map(drop)
            .map_err(|e| to_store_error("write", path, &e))
    }

    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        let reply = self.transact("directory", XS_DIRECTORY, path, None)?;
        absent_is_none(reply.and_then(|v| {
            v.split(|&b| b == 0)
                .filter(|name| !name.is_empty())
                .map(|name| utf8(name.to_vec()))
                .collect::<io::Result<Vec<String>>>()
        }))
        .map(Option::unwrap_or_default)
        .map_err(|e| to_store_error("directory", path, &e))
    }

    fn rm(&self, path: &str) -> StoreResult<()> {
        let reply = self.transact("rm", XS_RM, path, None)?;
        match absent_is_none(reply) {
            Ok(_) => Ok(()),
            Err(e) => Err(to_store_error("rm", path, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_says_so() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        let e = to_store_error("read", "/local/domain/1/platform/acpi", &eof);
        assert_eq!(e.code, libc::ECONNRESET);
        assert_eq!(
            e.to_string(),
            "xenstore read /local/domain/1/platform/acpi: [104] \
             xenstored closed the connection (failed to fill whole buffer)"
        );
        let epipe = io::Error::from_raw_os_error(libc::EPIPE);
        let e = to_store_error("write", "/a", &epipe);
        assert_eq!(
            (e.code, e.message.as_str()),
            (libc::EPIPE, "xenstored closed the connection (Broken pipe)")
        );
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let e = to_store_error("write", "/a", &eacces);
        assert_eq!(
            e.message, "Permission denied",
            "no Rust '(os error N)' suffix"
        );
    }

    #[test]
    fn the_timeout_comes_from_the_environment_value() {
        assert_eq!(timeout_from_env(None).unwrap(), DEFAULT_TIMEOUT);
        assert_eq!(
            timeout_from_env(Some("250")).unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["0", "-1", "ten", ""] {
            let e = timeout_from_env(Some(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(TIMEOUT_ENV), "{e}");
        }
    }

    #[test]
    fn error_replies_become_errnos() {
        assert_eq!(xs_error(b"ENOENT\0").kind(), io::ErrorKind::NotFound);
        assert_eq!(xs_error(b"EACCES\0").raw_os_error(), Some(libc::EACCES));
        assert!(xs_error(b"EWHAT\0").to_string().contains("EWHAT"));
    }

    /// A peer that answers nothing: the read fails with ETIMEDOUT near the deadline, and
    /// the connection is dropped rather than reused.
    #[test]
    fn a_silent_peer_times_out_and_the_connection_is_dropped() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let store = XenstoredStore {
            conn: Mutex::new(Some(Conn::Socket {
                stream: ours,
                next_req_id: 1,
            })),
            timeout: Duration::from_millis(100),
        };
        let started = Instant::now();
        let e = store.read("/local/domain/1/x").unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.code, libc::ETIMEDOUT);
        assert_eq!(
            e.to_string(),
            "xenstore read /local/domain/1/x: [110] xenstored did not answer within 100 ms"
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(store.conn.lock().unwrap().is_none(), "poisoned");
        drop(theirs);
    }

    /// A reply to another request id is refused and the connection dropped.
    #[test]
    fn a_reply_out_of_step_is_refused() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let store = XenstoredStore {
            conn: Mutex::new(Some(Conn::Socket {
                stream: ours,
                next_req_id: 7,
            })),
            timeout: Duration::from_secs(5),
        };
        let mut reply = Vec::new();
        for word in [XS_READ, 6, 0, 1] {
            reply.extend_from_slice(&u32::to_ne_bytes(word));
        }
        reply.push(b'1');
        theirs.write_all(&reply).unwrap();
        let e = store.read("/a").unwrap_err();
        assert!(
            e.message
                .contains("reply to request 6 while waiting for request 7"),
            "{e}"
        );
        assert!(store.conn.lock().unwrap().is_none());
    }
}
