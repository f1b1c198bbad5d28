//! The direct modes: `save`/`hvm_save`, `restore`/`hvm_restore` and `resume_slow`, which run
//! one operation on the stream fd given with `-fd` (`do_save`, `do_restore`, `do_resume` and
//! `suspend_callback` in xenserver/xen.pg `patches/xenguest.patch` at 4f8cbaa4). xenopsd
//! itself reaches the stream only through emu-manager and listen mode; these are here so the
//! binary is a complete drop-in. The control-fd handshake is the caller's (the binary's).

use super::engine::{
    Engine, Operation, PrecopyDecision, PrecopyStats, RestoreHooks, RestoreRequest, RestoreResult,
    SaveHooks, SaveRequest,
};
use crate::platform::parse_c_value;
use crate::store::{domain_path, Store};
use crate::types::DomId;
use crate::{Result, Step};

/// libxc's own policy when the caller gives none (`simple_precopy_policy` in xen-project/xen
/// `tools/libs/guest/xg_sr_save.c` at RELEASE-4.17.3): stop and copy once fewer than this many
/// pages were dirtied in a pass...
pub const SPP_TARGET_DIRTY_PAGES: i64 = 50;
/// ...or after this many passes.
pub const SPP_MAX_ITERATIONS: u32 = 5;

/// The C direct save passes no precopy policy, so libxc applies its default; this is it.
pub fn simple_precopy_policy(stats: PrecopyStats) -> PrecopyDecision {
    let few_dirty = (0..SPP_TARGET_DIRTY_PAGES).contains(&stats.dirty_pages);
    if few_dirty || stats.iteration >= SPP_MAX_ITERATIONS {
        PrecopyDecision::StopAndCopy
    } else {
        PrecopyDecision::Continue
    }
}

/// `migration_safety_checks`: a VM with `platform/nomigrate` set is not saved unless `-force`.
pub fn check_migratable(store: &dyn Store, domid: DomId) -> Result<()> {
    let step = Step::Mode("migration_safety_checks");
    let path = format!("{}/platform/nomigrate", domain_path(domid));
    let set = store
        .read(&path)
        .map_err(step.store())?
        .and_then(|v| parse_c_value(&v))
        .is_some_and(|(v, _)| v != 0);
    if set {
        return Err(step.invalid(format!(
            "{path} is set: the VM must not be saved or migrated (-force overrides it)"
        )));
    }
    Ok(())
}

/// The hooks of a direct save: libxc's default policy, and a suspend that asks the caller
/// (`suspend:` on the control fd, answered with a line on the other).
struct DirectSave<'a> {
    suspend: &'a (dyn Fn() -> bool + Sync),
}

impl SaveHooks for DirectSave<'_> {
    fn precopy_policy(&self, stats: PrecopyStats) -> PrecopyDecision {
        simple_precopy_policy(stats)
    }
    fn suspend(&self) -> bool {
        (self.suspend)()
    }
    fn progress(&self, done_pages: u64, total_pages: u64) {
        log::debug!("progress: {done_pages} of {total_pages} pages");
    }
}

/// A direct save: the nomigrate check (unless `force`), then the engine's save with the
/// `suspend` handshake.
pub fn save(
    engine: &dyn Engine,
    store: &dyn Store,
    req: &SaveRequest<'_>,
    force: bool,
    suspend: &(dyn Fn() -> bool + Sync),
) -> Result<()> {
    if !force {
        check_migratable(store, req.domid)?;
    }
    engine.check(Operation::Save)?;
    engine.save(req, &DirectSave { suspend })
}

struct LogProgress;

impl RestoreHooks for LogProgress {
    fn progress(&self, done_pages: u64, total_pages: u64) {
        log::debug!("progress: {done_pages} of {total_pages} pages");
    }
}

/// A direct restore; the caller writes `result:<store> <console>`.
pub fn restore(engine: &dyn Engine, req: &RestoreRequest<'_>) -> Result<RestoreResult> {
    engine.check(Operation::Restore)?;
    engine.restore(req, &LogProgress)
}

/// `resume_slow`: `xc_domain_resume(xch, domid, fast=0)`.
pub fn resume_slow(engine: &dyn Engine, domid: DomId) -> Result<()> {
    engine.check(Operation::Resume)?;
    engine.resume(domid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::engine::{Unavailable, XCFLAGS_LIVE};
    use crate::migrate::fake::FakeEngine;
    use crate::store::MemoryStore;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn stats(iteration: u32, dirty_pages: i64) -> PrecopyStats {
        PrecopyStats {
            iteration,
            total_written_pages: 0,
            dirty_pages,
        }
    }

    #[test]
    fn the_default_policy_is_libxcs() {
        use PrecopyDecision::*;
        assert_eq!(simple_precopy_policy(stats(1, 1000)), Continue);
        assert_eq!(simple_precopy_policy(stats(1, 49)), StopAndCopy);
        assert_eq!(simple_precopy_policy(stats(1, 50)), Continue);
        assert_eq!(simple_precopy_policy(stats(4, -1)), Continue);
        assert_eq!(simple_precopy_policy(stats(5, 1000)), StopAndCopy);
    }

    #[test]
    fn nomigrate_refuses_a_save_unless_forced() {
        let store = MemoryStore::new();
        let domid = DomId(4);
        let key = format!("{}/platform/nomigrate", domain_path(domid));
        for (value, refused) in [("0", false), ("false", false), ("1", true), ("true", true)] {
            store.write(&key, value).unwrap();
            assert_eq!(check_migratable(&store, domid).is_err(), refused, "{value}");
        }
        let (a, _b) = UnixStream::pair().unwrap();
        let req = SaveRequest {
            domid,
            stream: a.as_fd(),
            flags: XCFLAGS_LIVE,
        };
        let never = || -> bool { panic!("the save must not start") };
        let e = save(&Unavailable, &store, &req, false, &never).unwrap_err();
        assert_eq!(
            e.wire_text(),
            "xenguest: migration_safety_checks: [22] /local/domain/4/platform/nomigrate is \
             set: the VM must not be saved or migrated (-force overrides it)\n"
        );
        // Forced, the check is skipped and the engine is asked.
        let e = save(&Unavailable, &store, &req, true, &never).unwrap_err();
        assert_eq!(e.step(), "xc_domain_save");
    }

    /// A direct save of domain 5 on the fake engine, the suspend answered by `suspend`.
    fn fake_save(flags: u32, suspend: &(dyn Fn() -> bool + Sync)) -> (FakeEngine, Result<()>) {
        let engine = FakeEngine::new();
        let (a, _b) = UnixStream::pair().unwrap();
        let req = SaveRequest {
            domid: DomId(5),
            stream: a.as_fd(),
            flags,
        };
        let r = save(&engine, &MemoryStore::new(), &req, false, suspend);
        (engine, r)
    }

    #[test]
    fn a_live_direct_save_suspends_once_through_the_handshake() {
        let asked = AtomicU32::new(0);
        let suspend = || {
            asked.fetch_add(1, Ordering::SeqCst);
            true
        };
        let (engine, r) = fake_save(XCFLAGS_LIVE, &suspend);
        r.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // The fake dirties 100 pages a pass: libxc's policy stops after pass 5.
        let trace = engine.trace();
        assert!(trace.iter().any(|l| l.starts_with("policy 5")), "{trace:?}");
        assert!(
            !trace.iter().any(|l| l.starts_with("policy 6")),
            "{trace:?}"
        );
    }

    #[test]
    fn a_refused_suspend_fails_the_save() {
        let (_, r) = fake_save(0, &|| false);
        assert_eq!(r.unwrap_err().step(), "xc_domain_save");
    }
}
