//! Starts Debian's C xenstored on a private socket with the fakexen shim (test support).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's xenstored binary (package xen-utils-4.17).
pub const XENSTORED: &str = "/usr/lib/xen-4.17/bin/xenstored";

/// A running xenstored; killed on drop.
pub struct Xenstored {
    child: Child,
    dir: tempfile::TempDir,
}

impl Xenstored {
    /// Build the shim and start the daemon; `domains` are the extra domids that exist.
    pub fn start(domains: &str) -> Self {
        assert!(
            Path::new(XENSTORED).exists(),
            "{XENSTORED} missing: run `make deps` (xen-utils-4.17)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let shim = dir.path().join("fakexen.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fakexen.c");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&shim)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("run cc");
        assert!(status.success(), "building the fakexen shim failed");
        let child = Command::new(XENSTORED)
            .args(["--no-fork", "-T"])
            .arg(dir.path().join("trace.log"))
            .env("XENSTORED_RUNDIR", dir.path())
            .env("FAKEXEN_DOMAINS", domains)
            .env("LD_PRELOAD", &shim)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xenstored");
        let me = Xenstored { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The daemon binds the socket before it listens: wait for a connection to succeed.
        while std::os::unix::net::UnixStream::connect(me.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "xenstored did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// The socket to point `XENSTORED_PATH` at.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Freeze the daemon (SIGSTOP): alive, its socket accepting, but answering nothing.
    #[allow(dead_code)]
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Let a paused daemon run again (SIGCONT).
    #[allow(dead_code)]
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; it takes no pointers.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Stop the daemon now (as if it died).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.kill();
    }
}
