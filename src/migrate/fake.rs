//! A scripted stream engine for the server's tests: it drives the hooks the way
//! `xc_domain_save` does (progress inside each pass, the policy after it, then the suspend
//! callback) and records what it was told.

use super::engine::{
    Engine, Operation, PrecopyDecision, PrecopyStats, RestoreHooks, RestoreRequest, RestoreResult,
    SaveHooks, SaveRequest, XCFLAGS_LIVE,
};
use super::io_error;
use crate::hypervisor::XcError;
use crate::types::DomId;
use crate::Error;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The script and the record.
#[derive(Debug)]
pub struct FakeEngine {
    /// Dirty pages reported after pass 1, 2, ...; the last repeats.
    pub dirty_pages: Vec<i64>,
    /// Pages in a full pass.
    pub pages: u64,
    /// Time a pass takes.
    pub pass_time: Duration,
    /// Passes before the fake gives up (a test bug, not a behaviour).
    pub max_passes: u32,
    /// What a restore returns.
    pub restore_result: RestoreResult,
    pub(super) trace: Mutex<Vec<String>>,
    pub(super) changed: Condvar,
}

impl FakeEngine {
    /// A guest of 1000 pages that never stops dirtying 100 pages a pass.
    pub fn new() -> Self {
        FakeEngine {
            dirty_pages: vec![100],
            pages: 1000,
            pass_time: Duration::from_millis(2),
            max_passes: 100_000,
            restore_result: RestoreResult {
                store_frame: 1044476,
                console_frame: 1044479,
                stats: None,
            },
            trace: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }
    }

    fn note(&self, line: String) {
        self.trace.lock().unwrap().push(line);
        self.changed.notify_all();
    }

    /// What happened so far.
    pub fn trace(&self) -> Vec<String> {
        self.trace.lock().unwrap().clone()
    }

    /// Wait until a trace line starts with `prefix` (10 s at most).
    pub fn wait_for(&self, prefix: &str) {
        let t = self.trace.lock().unwrap();
        let (t, timeout) = self
            .changed
            .wait_timeout_while(t, Duration::from_secs(10), |t| {
                !t.iter().any(|l| l.starts_with(prefix))
            })
            .unwrap();
        assert!(!timeout.timed_out(), "no '{prefix}' in {t:?}");
    }

    fn write(&self, stream: &mut UnixStream, what: &str) -> Result<(), Error> {
        stream
            .write_all(what.as_bytes())
            .map_err(|e| io_error("xc_domain_save", &e, "writing the migration stream"))
    }

    fn fail(code: i32, what: &str) -> Error {
        crate::Step::Mode("xc_domain_save").xc()(XcError::errno_with("xc_domain_save", code, what))
    }

    fn suspend(&self, hooks: &dyn SaveHooks) -> Result<(), Error> {
        self.note("suspend".into());
        let suspended = hooks.suspend();
        self.note(format!("suspend -> {suspended}"));
        if suspended {
            Ok(())
        } else {
            Err(Self::fail(libc::EINVAL, "Suspend request failed"))
        }
    }
}

impl Engine for FakeEngine {
    fn check(&self, _: Operation) -> Result<(), Error> {
        Ok(())
    }

    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error> {
        let mut stream = UnixStream::from(req.stream.try_clone_to_owned().unwrap());
        self.note(format!("save d{} flags {}", req.domid, req.flags));
        if req.flags & XCFLAGS_LIVE == 0 {
            self.suspend(hooks)?;
            self.write(&mut stream, "all pages\n")?;
            self.note("done".into());
            return Ok(());
        }
        let mut written = 0u64;
        let mut to_send = self.pages;
        for pass in 1..=self.max_passes {
            hooks.progress(0, to_send);
            hooks.progress(to_send / 2, to_send);
            self.write(&mut stream, &format!("pass {pass}\n"))?;
            std::thread::sleep(self.pass_time);
            hooks.progress(to_send, to_send);
            written += to_send;
            let i = (pass as usize - 1).min(self.dirty_pages.len() - 1);
            let dirty = self.dirty_pages[i];
            let decision = hooks.precopy_policy(PrecopyStats {
                iteration: pass,
                total_written_pages: written,
                dirty_pages: dirty,
            });
            self.note(format!("policy {pass} dirty {dirty} -> {decision:?}"));
            match decision {
                PrecopyDecision::Continue => to_send = dirty.max(0).unsigned_abs(),
                PrecopyDecision::StopAndCopy => {
                    self.suspend(hooks)?;
                    self.write(&mut stream, "final\n")?;
                    self.note("done".into());
                    return Ok(());
                }
                PrecopyDecision::Abort => {
                    return Err(Self::fail(libc::ECANCELED, "Abort precopy loop"));
                }
            }
        }
        Err(Self::fail(libc::E2BIG, "the fake ran out of passes"))
    }

    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        self.note(format!(
            "restore d{} store {} console {} hvm {} vgpu {}",
            req.domid, req.store_port, req.console_port, req.hvm, req.vgpu
        ));
        hooks.progress(0, self.pages);
        hooks.progress(self.pages, self.pages);
        Ok(self.restore_result.clone())
    }

    fn resume(&self, domid: DomId) -> Result<(), Error> {
        self.note(format!("resume d{domid}"));
        Ok(())
    }
}
