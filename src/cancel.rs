//! Cancelling a build from another thread.
//!
//! xenopsd cancels a build task by killing the xenguest process; an in-process build needs a
//! way to stop that leaves the domain as a failed build leaves it (claim released, nothing
//! half-written that destroying the domain does not undo). A [`Cancel`] is a shared flag: the
//! caller keeps a clone and sets it from any thread; the build polls it at its check points
//! and stops with [`ErrorKind::Cancelled`](crate::error::ErrorKind::Cancelled) at the step it
//! was in.
//!
//! The check points are every hypervisor call a build makes (the counting wrapper in
//! `report.rs` refuses calls once the flag is set, so a long populate or image write stops
//! at its next call) and every 64 KiB of decompressed output. They reach the flag through a
//! thread-local that [`Cancel::scope`] sets for the duration of a build: a build runs on one
//! thread, and the decompressors are shared with callers that have no build (fuzzing, the
//! kernel cache), so passing the token down explicitly would widen APIs that do not need it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cancellation flag shared between a build and whoever may cancel it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the build(s) using this flag to stop at their next check point.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Run `f` with this flag as the current thread's, seen by [`requested`]; the previous
    /// one (scopes nest) is restored afterwards, also if `f` panics.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Cancel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// Whether the build running on this thread has been cancelled (false outside any
/// [`Cancel::scope`]).
pub fn requested() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_seen_inside_its_scope_only_and_scopes_nest() {
        let outer = Cancel::new();
        let inner = Cancel::new();
        outer.cancel();
        assert!(!requested(), "no scope: never cancelled");
        outer.scope(|| {
            assert!(requested());
            inner.scope(|| assert!(!requested(), "the inner flag is not set"));
            assert!(requested(), "the outer flag is back");
        });
        assert!(!requested());
    }

    #[test]
    fn another_thread_cancels() {
        let flag = Cancel::new();
        let remote = flag.clone();
        std::thread::spawn(move || remote.cancel()).join().unwrap();
        assert!(flag.is_cancelled());
        flag.scope(|| assert!(requested()));
    }

    #[test]
    fn a_panic_inside_the_scope_restores_the_previous_flag() {
        let flag = Cancel::new();
        flag.cancel();
        let caught = std::panic::catch_unwind(|| flag.scope(|| panic!("boom")));
        assert!(caught.is_err());
        assert!(!requested());
    }
}
