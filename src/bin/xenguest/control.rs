//! The control channel to xenopsd: the fd given by `-controloutfd` (the C xenguest's `xg_err`/`xg_info` in xenserver/xen.pg `patches/xenguest.patch` at 4f8cbaa4).
//!
//! xenopsd reads lines from it and decides the outcome from the first that is not informational:
//! `result:<a> <b>[ <proto>]\n` on success, `error:<message>` on failure (the message normally
//! ends in `\n`).
//!
//! Ownership: the fd is inherited at exec and stays open for the life of the process. A
//! [`ControlFd`] wraps it in a `ManuallyDrop<File>`, so it is never closed by us; the kernel
//! closes it at exit. This keeps us safe when the same number is also given to `-controlinfd`
//! (or to `-fd`) and wrapped elsewhere: no double close, no close of a descriptor still in use.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

/// Ignore SIGPIPE, so that writing to a pipe whose reader has gone fails with `EPIPE` instead of
/// killing the process. (Rust's runtime already does this for `main`; calling it again is
/// harmless and makes the intent explicit.)
pub fn ignore_sigpipe() {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code; it only changes the process's
    // disposition for SIGPIPE, which nothing else in this program relies on.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// `Ok` when `fd` is an open descriptor of this process (`fcntl(fd, F_GETFD)` succeeds).
fn check_fd(fd: RawFd) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD takes no pointer argument and only reads the descriptor table entry; an
    // fd that is not open simply yields -1/EBADF.
    let rc = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Errors of [`ControlFd::write_result`].
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No `-controloutfd` was given (C's `xg_err` text in `write_status`).
    #[error("No control fd to write success to")]
    NoControlFd,
    /// The write failed (e.g. `EPIPE`: xenopsd has gone).
    #[error("write to control fd {fd} failed: {source}")]
    Write {
        /// The descriptor.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The `result:` line for a success (`%lu` decimal numbers; the PV protocol, if any, after a
/// space). Unlike C there is no 64-byte buffer to truncate it.
pub fn result_line(a: u64, b: u64, proto: Option<&str>) -> String {
    match proto {
        Some(p) => format!("result:{a} {b} {p}\n"),
        None => format!("result:{a} {b}\n"),
    }
}

/// The write side of the control channel; possibly absent (`-controloutfd` not given).
#[derive(Debug)]
pub struct ControlFd {
    file: Option<ManuallyDrop<File>>,
}

impl ControlFd {
    /// No control channel: results cannot be reported, errors go nowhere.
    pub fn none() -> Self {
        ControlFd { file: None }
    }

    /// Use the `-controloutfd` value: -1 means none; any other value must be an open
    /// descriptor (else `EBADF`; C's XG failed the same way in `set_cloexec`, XGN writes into
    /// the void). The descriptor is never closed by us (see the module doc).
    pub fn from_raw(fd: RawFd) -> io::Result<Self> {
        if fd == -1 {
            return Ok(Self::none());
        }
        check_fd(fd)?;
        // SAFETY: `fd` is open (checked just above) and was handed to this process at exec for
        // this purpose; nothing in the process closes it, and ManuallyDrop means this `File`
        // never closes it either, so the `File` never refers to a closed or reused descriptor
        // through any action of ours.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(ControlFd {
            file: Some(ManuallyDrop::new(file)),
        })
    }

    /// The descriptor, if any.
    pub fn raw_fd(&self) -> Option<RawFd> {
        use std::os::fd::AsRawFd;
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// Write `bytes` completely (retrying on `EINTR` and short writes).
    pub fn write_raw(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.file {
            Some(f) => {
                let mut w: &File = f;
                w.write_all(bytes)
            }
            None => Ok(()),
        }
    }

    /// Report success: writes [`result_line`] and returns it (C then logs
    /// `Writing to control: '<line>'`). Without a channel, [`ControlError::NoControlFd`].
    pub fn write_result(
        &self,
        a: u64,
        b: u64,
        proto: Option<&str>,
    ) -> Result<String, ControlError> {
        let fd = self.raw_fd().ok_or(ControlError::NoControlFd)?;
        let line = result_line(a, b, proto);
        self.write_raw(line.as_bytes())
            .map_err(|source| ControlError::Write { fd, source })?;
        Ok(line)
    }

    /// Write `error:<msg>` exactly (no newline is added; C's messages carry their own). A
    /// no-op without a channel. Written in one `write` so a line is not split by another.
    pub fn write_error(&self, msg: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(6 + msg.len());
        buf.extend_from_slice(b"error:");
        buf.extend_from_slice(msg.as_bytes());
        self.write_raw(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::OwnedFd;

    /// A pipe: (read end owned, write end as a raw fd the test must close).
    fn pipe() -> (File, RawFd) {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill. O_CLOEXEC keeps the
        // write end out of any child another test may spawn (it would delay EOF).
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe: {}", io::Error::last_os_error());
        // SAFETY: fds[0] was just created by pipe2(2) and is owned by nothing else.
        let r = unsafe { File::from_raw_fd(fds[0]) };
        (r, fds[1])
    }

    fn close(fd: RawFd) {
        // SAFETY: the test created `fd` and owns it; ControlFd never closes it (ManuallyDrop),
        // so this is the only close.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }

    #[test]
    fn lines_arrive_exactly() {
        let (mut r, w) = pipe();
        let c = ControlFd::from_raw(w).unwrap();
        assert_eq!(c.raw_fd(), Some(w));
        assert_eq!(
            c.write_result(1044476, 1044477, None).unwrap(),
            "result:1044476 1044477\n"
        );
        c.write_result(u64::MAX, 0, Some("x86_64-abi")).unwrap();
        c.write_error("xenguest: xc_dom_boot_mem_init: [12] Cannot allocate memory\n")
            .unwrap();
        c.write_error("getdomaininfo failed (rc=-1)").unwrap();
        close(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(
            got,
            "result:1044476 1044477\n\
             result:18446744073709551615 0 x86_64-abi\n\
             error:xenguest: xc_dom_boot_mem_init: [12] Cannot allocate memory\n\
             error:getdomaininfo failed (rc=-1)"
        );
    }

    #[test]
    fn closed_reader_is_an_error_not_a_signal() {
        ignore_sigpipe();
        let (r, w) = pipe();
        drop(r);
        let c = ControlFd::from_raw(w).unwrap();
        match c.write_result(1, 2, None) {
            Err(ControlError::Write { fd, source }) => {
                assert_eq!(fd, w);
                assert_eq!(source.raw_os_error(), Some(libc::EPIPE));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.write_error("x\n").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        close(w);
    }

    #[test]
    fn large_writes_are_complete() {
        let (mut r, w) = pipe();
        let msg = "y".repeat(200_000) + "\n";
        let reader = std::thread::spawn(move || {
            let mut got = String::new();
            r.read_to_string(&mut got).unwrap();
            got
        });
        let c = ControlFd::from_raw(w).unwrap();
        c.write_error(&msg).unwrap();
        close(w);
        assert_eq!(reader.join().unwrap(), format!("error:{msg}"));
    }

    #[test]
    fn absent_channel() {
        let c = ControlFd::from_raw(-1).unwrap();
        assert!(c.raw_fd().is_none());
        assert_eq!(c.raw_fd(), None);
        assert!(matches!(
            c.write_result(1, 2, None),
            Err(ControlError::NoControlFd)
        ));
        assert_eq!(
            ControlError::NoControlFd.to_string(),
            "No control fd to write success to"
        );
        c.write_error("ignored\n").unwrap();
        assert!(ControlFd::none().raw_fd().is_none());
    }

    #[test]
    fn invalid_descriptors() {
        assert!(check_fd(-1).is_err());
        assert!(check_fd(-42).is_err());
        assert!(check_fd(i32::MAX).is_err());
        assert_eq!(
            ControlFd::from_raw(-2).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(
            ControlFd::from_raw(i32::MAX).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        let (r, w) = pipe();
        assert!(check_fd(w).is_ok());
        close(w);
        drop(r);
    }

    #[test]
    fn result_lines() {
        assert_eq!(result_line(0, 0, None), "result:0 0\n");
        assert_eq!(
            result_line(5, 6, Some("x86_32p-abi")),
            "result:5 6 x86_32p-abi\n"
        );
    }
}
