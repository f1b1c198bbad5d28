//! Logging for the binary, as the C xenguest does it (xenserver/xen.pg
//! `patches/xenguest.patch` at 4f8cbaa4): a `log::Log` that sends
//! every message to syslog (`openlog(ident, LOG_NDELAY|LOG_PID, LOG_DAEMON)`, one
//! `syslog(prio, "%s", msg)` per message) or, with `-stderr`, to stderr as `<ident>[<pid>]: msg`
//! lines; with `-debuglog <path>` every message is also appended to that file.
//!
//! Levels: `error` is C's `xg_err` (LOG_ERR; also copied raw to stderr and, when a control
//! channel is configured, written to it as `error:<msg>`); everything else is C's `xg_info`
//! (LOG_INFO; `warn` uses LOG_WARNING). `debug`/`trace` are dropped unless debug is on (`-debug`,
//! i.e. `XCFLAGS_DEBUG`); when on they are logged at LOG_INFO like C's libxc debug lines, so the
//! usual `daemon.info` syslog rule shows them.
//!
//! Every message is made to end with exactly the newline the C messages carry (one is added
//! when missing), so `error:` lines on the control fd are never glued together.

use crate::control::ControlFd;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::raw::c_int;
use std::sync::{Arc, Mutex, MutexGuard};

/// How the binary logs, from its command line.
#[derive(Debug, Default)]
pub struct LogConfig {
    /// Syslog ident (`cli::syslog_ident`).
    pub ident: String,
    /// Log `debug`/`trace` records too (`-debug`).
    pub debug: bool,
    /// `-stderr`: write `<ident>[<pid>]: <msg>` lines to stderr instead of syslog.
    pub to_stderr: bool,
    /// `-debuglog <path>`: append every message to this file as well.
    pub debuglog: Option<String>,
    /// Where `error` records are also written as `error:<msg>` (as C's `xg_err`). Leave `None` if
    /// the caller writes `error:` lines itself.
    pub control: Option<Arc<ControlFd>>,
}

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The `-debuglog` file cannot be opened (C text, reported without a `xenguest: ` prefix).
    #[error("Unable to open debug file '{path}': {errno} {text}")]
    DebugFile {
        /// The path given.
        path: String,
        /// `errno`.
        errno: i32,
        /// `strerror(errno)`.
        text: String,
    },
    /// `log` already has a logger.
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// `strerror(errno)`: the OS text without Rust's ` (os error N)` suffix.
pub fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    match text.strip_suffix(&suffix) {
        Some(t) => t.to_string(),
        None => text,
    }
}

/// The syslog priority (facility included, as C passes `LOG_x|LOG_DAEMON`) for a level.
pub fn syslog_priority(level: Level) -> c_int {
    let severity = match level {
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info | Level::Debug | Level::Trace => libc::LOG_INFO,
    };
    severity | libc::LOG_DAEMON
}

/// `msg` ending in `\n` (one is added when missing).
pub fn with_newline(mut msg: String) -> String {
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    msg
}

/// A `-stderr` line: `<ident>[<pid>]: <msg>` (`msg` already newline-terminated).
pub fn stderr_line(ident: &str, pid: u32, msg: &str) -> String {
    format!("{ident}[{pid}]: {msg}")
}

/// The level filter for a debug setting.
pub fn max_level(debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::Trace
    } else {
        LevelFilter::Info
    }
}

/// Open `path` for appending (created if absent), as C's `fopen(path, "a")`.
pub fn open_debuglog(path: &str) -> Result<File, LogError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            LogError::DebugFile {
                path: path.to_string(),
                errno,
                text: strerror(errno),
            }
        })
}

fn open_syslog(ident: &str) {
    let ident = CString::new(ident.replace('\0', "")).unwrap_or_default();
    // Deliberate leak: openlog keeps the pointer and uses it for every later syslog call, so the
    // ident must live for the rest of the process.
    let ident: &'static std::ffi::CStr = Box::leak(ident.into_boxed_c_str());
    // SAFETY: `ident` is a NUL-terminated string that is never freed (leaked above); the other
    // arguments are plain flags.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_NDELAY | libc::LOG_PID,
            libc::LOG_DAEMON,
        )
    };
}

fn syslog(priority: c_int, msg: &str) {
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: the format is the static NUL-terminated "%s" and its one argument is a valid
    // NUL-terminated string that outlives the call.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Syslog,
    Stderr,
}

/// The binary's logger. Install it with [`init`] (or [`Logger::install`]).
pub struct Logger {
    ident: String,
    pid: u32,
    debug: bool,
    sink: Sink,
    debugfile: Option<Mutex<File>>,
    control: Option<Arc<ControlFd>>,
    stderr: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("ident", &self.ident)
            .field("debug", &self.debug)
            .field("sink", &self.sink)
            .field("debugfile", &self.debugfile.is_some())
            .field("control", &self.control)
            .finish()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Logger {
    /// Build the logger: opens the debug file and, unless `to_stderr`, calls `openlog`.
    pub fn new(cfg: LogConfig) -> Result<Self, LogError> {
        Self::with_stderr(cfg, Box::new(io::stderr()))
    }

    fn with_stderr(cfg: LogConfig, stderr: Box<dyn Write + Send>) -> Result<Self, LogError> {
        let debugfile = cfg
            .debuglog
            .as_deref()
            .map(open_debuglog)
            .transpose()?
            .map(Mutex::new);
        let sink = if cfg.to_stderr {
            Sink::Stderr
        } else {
            Sink::Syslog
        };
        if sink == Sink::Syslog {
            open_syslog(&cfg.ident);
        }
        Ok(Logger {
            ident: cfg.ident,
            pid: std::process::id(),
            debug: cfg.debug,
            sink,
            debugfile,
            control: cfg.control,
            stderr: Mutex::new(stderr),
        })
    }

    /// Make this the `log` crate's logger and set the maximum level.
    pub fn install(self) -> Result<(), LogError> {
        let level = max_level(self.debug);
        log::set_boxed_logger(Box::new(self)).map_err(|_| LogError::AlreadyInstalled)?;
        log::set_max_level(level);
        Ok(())
    }

    fn write_stderr(&self, text: &str) {
        let mut w = lock(&self.stderr);
        let _ = w.write_all(text.as_bytes());
        let _ = w.flush();
    }
}

/// Build and install the logger.
pub fn init(cfg: LogConfig) -> Result<(), LogError> {
    Logger::new(cfg)?.install()
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= max_level(self.debug)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let msg = with_newline(record.args().to_string());
        if let Some(file) = &self.debugfile {
            let mut f = lock(file);
            let _ = f.write_all(msg.as_bytes());
            let _ = f.flush();
        }
        match self.sink {
            Sink::Syslog => {
                if level == Level::Error {
                    self.write_stderr(&msg);
                }
                syslog(syslog_priority(level), &msg);
            }
            Sink::Stderr => self.write_stderr(&stderr_line(&self.ident, self.pid, &msg)),
        }
        if level == Level::Error {
            if let Some(control) = &self.control {
                let _ = control.write_error(&msg);
            }
        }
    }

    fn flush(&self) {
        if let Some(file) = &self.debugfile {
            let _ = lock(file).flush();
        }
        let _ = lock(&self.stderr).flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn emit(logger: &Logger, level: Level, msg: &str) {
        logger.log(
            &Record::builder()
                .level(level)
                .args(format_args!("{msg}"))
                .build(),
        );
    }

    fn tmp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xenguest-syslog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn formatting_pieces() {
        assert_eq!(with_newline("a".into()), "a\n");
        assert_eq!(with_newline("a\n".into()), "a\n");
        assert_eq!(with_newline(String::new()), "\n");
        assert_eq!(
            stderr_line("xenguest-5-build", 42, "All done\n"),
            "xenguest-5-build[42]: All done\n"
        );
        assert_eq!(
            syslog_priority(Level::Error),
            libc::LOG_ERR | libc::LOG_DAEMON
        );
        assert_eq!(
            syslog_priority(Level::Warn),
            libc::LOG_WARNING | libc::LOG_DAEMON
        );
        assert_eq!(
            syslog_priority(Level::Info),
            libc::LOG_INFO | libc::LOG_DAEMON
        );
        assert_eq!(
            syslog_priority(Level::Debug),
            libc::LOG_INFO | libc::LOG_DAEMON
        );
        assert_eq!(max_level(false), LevelFilter::Info);
        assert_eq!(max_level(true), LevelFilter::Trace);
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(libc::EACCES), "Permission denied");
    }

    #[test]
    fn debuglog_open_error_text() {
        let e = open_debuglog("/nonexistent-dir-for-xenguest/x.log").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unable to open debug file '/nonexistent-dir-for-xenguest/x.log': 2 No such file or directory"
        );
        let cfg = LogConfig {
            debuglog: Some("/nonexistent-dir-for-xenguest/x.log".into()),
            to_stderr: true,
            ..Default::default()
        };
        assert!(matches!(
            Logger::new(cfg),
            Err(LogError::DebugFile { errno: 2, .. })
        ));
    }

    #[test]
    fn stderr_sink_debug_filter_and_debuglog() {
        let path = tmp_path("stderr_sink.log");
        std::fs::write(&path, "old\n").unwrap();
        let out = Shared::default();
        let cfg = LogConfig {
            ident: "xenguest-7-build".into(),
            debug: false,
            to_stderr: true,
            debuglog: Some(path.to_string_lossy().into_owned()),
            control: None,
        };
        let logger = Logger::with_stderr(cfg, Box::new(out.clone())).unwrap();
        emit(&logger, Level::Info, "Command line: -mode hvm_build");
        emit(&logger, Level::Debug, "hidden");
        emit(&logger, Level::Error, "xenguest: boom\n");
        logger.flush();
        let pid = std::process::id();
        assert_eq!(
            out.text(),
            format!("xenguest-7-build[{pid}]: Command line: -mode hvm_build\nxenguest-7-build[{pid}]: xenguest: boom\n")
        );
        // Appended after the old content; raw messages, no ident.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old\nCommand line: -mode hvm_build\nxenguest: boom\n"
        );
        assert!(!logger.enabled(&Metadata::builder().level(Level::Debug).build()));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn debug_enabled_shows_debug_and_trace() {
        let out = Shared::default();
        let cfg = LogConfig {
            ident: "xenguest".into(),
            debug: true,
            to_stderr: true,
            ..Default::default()
        };
        let logger = Logger::with_stderr(cfg, Box::new(out.clone())).unwrap();
        emit(&logger, Level::Debug, "d");
        emit(&logger, Level::Trace, "t");
        let pid = std::process::id();
        assert_eq!(
            out.text(),
            format!("xenguest[{pid}]: d\nxenguest[{pid}]: t\n")
        );
    }

    #[test]
    fn errors_reach_the_control_fd() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both ends were just created by pipe2(2) and are owned only here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let control = Arc::new(ControlFd::from_raw(w.into_raw_fd()).unwrap());
        let out = Shared::default();
        let cfg = LogConfig {
            ident: "x".into(),
            to_stderr: true,
            control: Some(control.clone()),
            ..Default::default()
        };
        let logger = Logger::with_stderr(cfg, Box::new(out.clone())).unwrap();
        emit(&logger, Level::Info, "not on control");
        emit(&logger, Level::Error, "xenguest: first");
        emit(&logger, Level::Error, "second\n");
        let wfd = control.raw_fd().unwrap();
        drop(logger);
        drop(control);
        // SAFETY: the write end came from into_raw_fd above; ControlFd never closes it.
        drop(unsafe { OwnedFd::from_raw_fd(wfd) });
        let mut got = String::new();
        File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "error:xenguest: first\nerror:second\n");
    }

    #[test]
    fn syslog_sink_smoke() {
        // Goes to the host's syslog if there is one; must neither fail nor panic without one.
        let out = Shared::default();
        let cfg = LogConfig {
            ident: "xenguest-test".into(),
            ..Default::default()
        };
        let logger = Logger::with_stderr(cfg, Box::new(out.clone())).unwrap();
        emit(
            &logger,
            Level::Info,
            "xenguest unit test: info with a \0 NUL",
        );
        emit(&logger, Level::Error, "xenguest unit test: error");
        // Only the error is copied (raw) to stderr.
        assert_eq!(out.text(), "xenguest unit test: error\n");
    }
}
