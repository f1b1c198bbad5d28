//! What the save callbacks share with the command loop (the globals of `xg_emu.c` in
//! xenserver/xen.pg `patches/xenguest.patch` at 4f8cbaa4): the stage the precopy policy passes
//! down (`migrate_pause`, `migrate_abort`), the "stopped" semaphore the suspend callback waits
//! on (`migrate_paused`), and the client that wants progress events (`migrate_progress`).

use super::emp;
use super::engine::{PrecopyDecision, PrecopyStats, RestoreHooks, SaveHooks};
use super::socket::Peer;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Least time between two mid-pass progress events (`send_emu_progress`: 500 ms).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// The stage set by the commands and read by the policy (`live_stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing asked: the policy decides from the dirty count.
    Running,
    /// `migrate_pause`: stop precopy at the next check.
    Pause,
    /// `migrate_abort` (or the idle timeout): fail the save.
    Abort,
}

#[derive(Debug)]
struct State {
    stage: Stage,
    /// Posts of the "stopped" semaphore not yet taken.
    posts: u32,
    progress_client: Option<Arc<Peer>>,
    last_sent_pages: u64,
    last_iteration: u32,
    last_progress: Option<Instant>,
}

/// The state shared by the command loop and the worker.
#[derive(Debug)]
pub struct Session {
    state: Mutex<State>,
    posted: Condvar,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            state: Mutex::new(State {
                stage: Stage::Running,
                posts: 0,
                progress_client: None,
                last_sent_pages: 0,
                last_iteration: 0,
                last_progress: None,
            }),
            posted: Condvar::new(),
        }
    }
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `migrate_init`: the semaphore starts again at 0 (`sem_init(&sem_stopped, 0, 0)`).
    pub fn reset_suspend(&self) {
        self.lock().posts = 0;
    }

    /// `migrate_pause`. Unlike C, a pause after an abort leaves the abort in force (C would
    /// overwrite it and let the save finish).
    pub fn pause(&self) {
        let mut s = self.lock();
        if s.stage != Stage::Abort {
            s.stage = Stage::Pause;
        }
    }

    /// `migrate_paused`: the domain is suspended; one suspend wait may return.
    pub fn paused(&self) {
        self.lock().posts += 1;
        self.posted.notify_all();
    }

    /// `migrate_abort` and the idle timeout (`abort_all`): the policy answers abort and a
    /// suspend wait returns `false`.
    pub fn abort(&self) {
        let mut s = self.lock();
        s.stage = Stage::Abort;
        s.posts += 1;
        self.posted.notify_all();
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.lock().stage
    }

    /// `migrate_progress`: `peer` gets the mid-pass progress and the `completed` events.
    pub fn set_progress_client(&self, peer: Arc<Peer>) {
        log::info!("setting progress_cli to {}", peer.id());
        self.lock().progress_client = Some(peer);
    }

    /// The progress client, if any.
    pub fn progress_client(&self) -> Option<Arc<Peer>> {
        self.lock().progress_client.clone()
    }

    /// Forget `peer` as the progress client once it has gone.
    pub fn forget_client(&self, id: u32) {
        let mut s = self.lock();
        if s.progress_client.as_ref().is_some_and(|p| p.id() == id) {
            s.progress_client = None;
        }
    }

    /// `send_emu_progress`: at most one event per [`PROGRESS_INTERVAL`] inside a pass, none at
    /// its start or end, with the pages sent before this pass added.
    fn progress(&self, done_pages: u64, total_pages: u64) {
        let now = Instant::now();
        let mut s = self.lock();
        let Some(client) = s.progress_client.clone() else {
            return;
        };
        if done_pages == 0 || done_pages == total_pages {
            s.last_progress = Some(now);
            return;
        }
        if s.last_progress
            .is_some_and(|t| now.duration_since(t) <= PROGRESS_INTERVAL)
        {
            return;
        }
        s.last_progress = Some(now);
        let event = emp::progress_event(s.last_sent_pages + done_pages, -1, s.last_iteration);
        drop(s);
        client.send_or_log(&event);
    }
}

/// The save callbacks of a listen-mode save: progress to the client that asked for the save
/// (C passes `&args->cli` as the callbacks' data), suspend by waiting for `migrate_paused`.
#[derive(Debug)]
pub struct SaveCallbacks {
    session: Arc<Session>,
    requester: Arc<Peer>,
}

impl SaveCallbacks {
    /// Callbacks for a save asked by `requester`.
    pub fn new(session: Arc<Session>, requester: Arc<Peer>) -> Self {
        SaveCallbacks { session, requester }
    }
}

impl SaveHooks for SaveCallbacks {
    /// `xenguest_precopy_policy`: no iteration cap; emu-manager decides when to pause.
    fn precopy_policy(&self, stats: PrecopyStats) -> PrecopyDecision {
        let stage = {
            let mut s = self.session.lock();
            if stats.dirty_pages >= 0 {
                s.last_sent_pages = stats.total_written_pages;
                s.last_iteration = stats.iteration;
            }
            s.stage
        };
        if stats.dirty_pages >= 0 {
            log::info!(
                "Checking live policy.  {} / {} for {}",
                stats.dirty_pages,
                stats.total_written_pages,
                stats.iteration
            );
            self.requester.send_or_log(&emp::progress_event(
                stats.total_written_pages,
                stats.dirty_pages,
                stats.iteration,
            ));
        }
        match stage {
            Stage::Pause | Stage::Abort => {
                log::info!("passing down stop message");
                if stage == Stage::Abort {
                    PrecopyDecision::Abort
                } else {
                    PrecopyDecision::StopAndCopy
                }
            }
            Stage::Running if stats.dirty_pages == 0 => {
                log::info!("No dirty pages, finishing migration");
                PrecopyDecision::StopAndCopy
            }
            Stage::Running => PrecopyDecision::Continue,
        }
    }

    /// `emu_suspend_callback`: wait for `migrate_paused` (or an abort).
    fn suspend(&self) -> bool {
        log::info!("waiting for suspend");
        let mut s = self.session.lock();
        while s.posts == 0 && s.stage != Stage::Abort {
            s = self
                .session
                .posted
                .wait(s)
                .unwrap_or_else(|p| p.into_inner());
        }
        s.posts = s.posts.saturating_sub(1);
        if s.stage == Stage::Abort {
            log::info!("Ignoring libxc suspend request due to abort");
            return false;
        }
        log::info!("suspend was received");
        true
    }

    fn progress(&self, done_pages: u64, total_pages: u64) {
        self.session.progress(done_pages, total_pages);
    }
}

/// The restore callbacks of a listen-mode restore: progress only.
#[derive(Debug)]
pub struct RestoreCallbacks {
    session: Arc<Session>,
}

impl RestoreCallbacks {
    /// Callbacks sharing `session`.
    pub fn new(session: Arc<Session>) -> Self {
        RestoreCallbacks { session }
    }
}

impl RestoreHooks for RestoreCallbacks {
    fn progress(&self, done_pages: u64, total_pages: u64) {
        self.session.progress(done_pages, total_pages);
    }
}
