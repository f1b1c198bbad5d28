//! A build's log lines, for a caller that links the library.
//!
//! The binary sends the builder's `log` records to syslog, as the C xenguest does
//! (`src/bin/xenguest/syslog.rs`). An in-process caller (the OCaml module inside xenopsd) has
//! many builds running at once on its threads and its own log, so the lines are collected per
//! build instead and handed back with the outcome, failed or not: [`capture`] runs a build with
//! a collector for the current thread, and [`install`] makes the process's `log` logger one
//! that files each record with the collector of the thread it was made on.
//!
//! A build makes its records on the thread it runs on; the only threads it starts (the parallel
//! decompression and kernel unpacking) log nothing. Records made outside any [`capture`] are
//! dropped. At most [`MAX_LINES`] are kept per build, so that a caller's memory does not grow
//! with what a guest's platform data asks for (a PV guest logs one affinity line per vCPU); the
//! rest are counted.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::cell::RefCell;

/// Lines kept per build; more are counted in [`Lines::dropped`].
pub const MAX_LINES: usize = 10_000;

/// What a build logged, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    /// Each record's level and text (without a trailing newline).
    pub lines: Vec<(Level, String)>,
    /// Records past [`MAX_LINES`], not kept.
    pub dropped: u64,
}

impl Lines {
    /// The lines, with a last `warn` line saying how many were dropped, if any were.
    pub fn into_lines(mut self) -> Vec<(Level, String)> {
        if self.dropped > 0 {
            self.lines.push((
                Level::Warn,
                format!(
                    "{} more log lines of this build were dropped (at most {MAX_LINES} are kept)",
                    self.dropped
                ),
            ));
        }
        self.lines
    }

    fn push(&mut self, level: Level, text: String) {
        if self.lines.len() < MAX_LINES {
            self.lines.push((level, text));
        } else {
            self.dropped += 1;
        }
    }
}

thread_local! {
    static SINK: RefCell<Option<Lines>> = const { RefCell::new(None) };
}

/// Run `f` collecting the records this thread makes; the collector of an enclosing
/// [`capture`] (they nest) is restored afterwards, also if `f` panics.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Lines) {
    struct Restore(Option<Lines>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SINK.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SINK.with(|s| s.borrow_mut().replace(Lines::default()));
    let restore = Restore(previous);
    let out = f();
    let lines = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (out, lines)
}

struct PerThread;

impl Log for PerThread {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Info && SINK.with(|s| s.borrow().is_some())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
        SINK.with(|s| {
            if let Some(lines) = s.borrow_mut().as_mut() {
                lines.push(record.level(), text);
            }
        });
    }

    fn flush(&self) {}
}

static LOGGER: PerThread = PerThread;

/// Make the per-thread collector the process's `log` logger, at level `info` (the C
/// xenguest's `xg_info`; debug lines cost formatting in the populate loops). Idempotent;
/// false if another logger was installed first, in which case records go to it and
/// [`capture`] collects nothing.
pub fn install() -> bool {
    static INSTALLED: once_cell::sync::OnceCell<bool> = once_cell::sync::OnceCell::new();
    *INSTALLED.get_or_init(|| {
        let ours = log::set_logger(&LOGGER).is_ok();
        if ours {
            log::set_max_level(LevelFilter::Info);
        }
        ours
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_keeps_its_own_lines_and_captures_nest() {
        assert!(install(), "the library's tests install no other logger");
        log::info!("outside any capture: dropped");
        let ((), outer) = capture(|| {
            log::info!("outer 1\n");
            let ((), inner) = capture(|| log::warn!("inner"));
            assert_eq!(inner.lines, vec![(Level::Warn, "inner".to_string())]);
            std::thread::spawn(|| {
                let ((), other) = capture(|| log::error!("other thread"));
                assert_eq!(other.lines.len(), 1);
            })
            .join()
            .unwrap();
            log::debug!("below info: not kept");
            log::info!("outer 2");
        });
        assert_eq!(
            outer.into_lines(),
            vec![
                (Level::Info, "outer 1".to_string()),
                (Level::Info, "outer 2".to_string())
            ]
        );
    }

    #[test]
    fn lines_past_the_bound_are_counted_not_kept() {
        assert!(install());
        let ((), lines) = capture(|| {
            for i in 0..MAX_LINES + 5 {
                log::info!("line {i}");
            }
        });
        assert_eq!((lines.lines.len(), lines.dropped), (MAX_LINES, 5));
        let all = lines.into_lines();
        assert_eq!(all.len(), MAX_LINES + 1);
        assert!(all[MAX_LINES].1.starts_with("5 more log lines"));
    }

    #[test]
    fn a_panic_inside_restores_the_enclosing_collector() {
        assert!(install());
        let ((), outer) = capture(|| {
            let caught = std::panic::catch_unwind(|| capture(|| panic!("boom")));
            assert!(caught.is_err());
            log::info!("after");
        });
        assert_eq!(outer.lines, vec![(Level::Info, "after".to_string())]);
    }
}
