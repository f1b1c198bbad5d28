//! A client's socket: messages written whole under a lock (the command loop and the worker
//! thread both write to it), and reads that pick up descriptors passed with SCM_RIGHTS
//! (emu-manager sends the stream fd in the same `sendmsg` as `migrate_init`,
//! xenserver/emu-manager `lib.c` `send_buf_and_fd` at c3a0bfb).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

/// Most descriptors taken from one read; the kernel closes any beyond (`MSG_CTRUNC`).
pub const MAX_FDS_PER_READ: u32 = 4;
/// Bytes of one fd in an SCM_RIGHTS message.
const FD_BYTES: u32 = libc::c_int::BITS / 8;

/// How long a write to a client may block before the client is taken as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One connected client, numbered as libempserver numbers them in its log lines (`(0)`).
#[derive(Debug)]
pub struct Peer {
    id: u32,
    fd: RawFd,
    writer: Mutex<UnixStream>,
}

impl Peer {
    /// Wrap a connected stream as client number `id`.
    pub fn new(id: u32, stream: &UnixStream) -> io::Result<Peer> {
        let writer = stream.try_clone()?;
        writer.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Peer {
            id,
            fd: stream.as_raw_fd(),
            writer: Mutex::new(writer),
        })
    }

    /// The client's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The descriptor number (for log lines only).
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Write one message whole: the lock is held for the whole message, so a reply and an
    /// event never interleave; a message is normally one `write`.
    pub fn send(&self, message: &str) -> io::Result<()> {
        log::debug!("libempserver:debug: replying to ({}): {message}", self.id);
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(message.as_bytes())
    }

    /// [`Peer::send`], logging a failure instead of returning it: a client that has gone must
    /// not stop a save (C ignores the result of `emp_send_*` the same way).
    pub fn send_or_log(&self, message: &str) {
        if let Err(e) = self.send(message) {
            log::warn!("libempserver: cannot write to ({}): {e}", self.id);
        }
    }
}

/// One `recvmsg` into `buf`; descriptors passed along are appended to `fds` (close-on-exec).
/// Returns the bytes read (0 at end of stream).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    // u64 array: cmsg buffers must be aligned for `cmsghdr`.
    let mut control = [0u64; 16];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_BYTES * MAX_FDS_PER_READ) } as usize;
    debug_assert!(space <= size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and writable for
        // the call; the kernel writes at most their stated lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n.unsigned_abs();
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk only within
    // `msg_controllen` bytes of `control`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points at a header inside `control` (see above).
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) only computes a size.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count =
                (hdr.cmsg_len as usize).saturating_sub(header_len) / size_of::<libc::c_int>();
            // SAFETY: the data of an SCM_RIGHTS header is `count` ints inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: `i < count`, within the header's data; read_unaligned since the data
                // has no alignment promise.
                let fd = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel just installed `fd` in this process for us; nothing else
                // owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(n)
}

/// Send `bytes` with `fd` attached by SCM_RIGHTS in one `sendmsg`, as emu-manager does for
/// `migrate_init`. Returns the bytes sent (a short count is the caller's to finish).
pub fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FD_BYTES) } as usize;
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `control` holds `space` bytes, enough for one header with one int, so the first
    // header exists and its data has room for the fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(FD_BYTES) as _;
        libc::CMSG_DATA(cmsg)
            .cast::<libc::c_int>()
            .write_unaligned(fd.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `bytes`, only read) and `control`, alive here.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `send_with_fd` over a stream, for callers that hold a `UnixStream`.
pub fn send_stream_with_fd(sock: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let n = send_with_fd(sock.as_fd(), bytes, fd)?;
    let mut w: &UnixStream = sock;
    w.write_all(&bytes[n..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn scm_rights_over_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut pipe_r, pipe_w) = {
            let (r, w) = UnixStream::pair().unwrap();
            (r, w)
        };
        let msg = br#"{ "execute" : "migrate_init"}"#;
        send_stream_with_fd(&a, msg, pipe_w.as_fd()).unwrap();
        drop(pipe_w);
        let mut buf = [0u8; 1024];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], msg);
        assert_eq!(fds.len(), 1);
        // The received descriptor is the same socket: what is written to it arrives.
        let mut passed = UnixStream::from(fds.pop().unwrap());
        passed.write_all(b"stream bytes").unwrap();
        drop(passed);
        let mut got = Vec::new();
        pipe_r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"stream bytes");
        // A plain write carries no descriptor; end of stream reads 0.
        (&a).write_all(b"{}").unwrap();
        drop(a);
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"{}"[..], 0));
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
    }

    #[test]
    fn messages_are_whole_and_a_gone_peer_is_an_error() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let peer = std::sync::Arc::new(Peer::new(3, &a).unwrap());
        assert_eq!(peer.id(), 3);
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let p = peer.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        p.send(&crate::migrate::emp::progress_event(i, -1, 1))
                            .unwrap();
                    }
                })
            })
            .collect();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            b.read_to_end(&mut all).unwrap();
            all
        });
        for w in writers {
            w.join().unwrap();
        }
        drop(peer);
        drop(a);
        let all = reader.join().unwrap();
        let mut r = crate::migrate::emp::Reader::new(1024);
        assert_eq!(r.feed(&all).unwrap().len(), 800);

        let (a, b) = UnixStream::pair().unwrap();
        let peer = Peer::new(0, &a).unwrap();
        drop(b);
        let e = peer.send(crate::migrate::emp::RETURN).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        peer.send_or_log("{}");
    }
}
