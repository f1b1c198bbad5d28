//! The server against a scripted engine: emu-manager's exact byte strings and sequences,
//! races of pause, paused and abort against a save and a suspend wait, timeouts.

use super::emp::Reader;
use super::engine::{Engine, Unavailable};
use super::fake::FakeEngine;
use super::server::{ListenConfig, Outcome, Server};
use super::socket::send_stream_with_fd;
use crate::types::DomId;
use crate::Error;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

struct Running {
    path: PathBuf,
    handle: JoinHandle<(Result<Outcome, Error>, Vec<u8>)>,
    _dir: tempfile::TempDir,
}

fn start(engine: Arc<dyn Engine>, idle: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xenguest-control-7");
    let config = ListenConfig {
        socket_path: path.clone(),
        idle_timeout: idle,
        ..ListenConfig::new(7)
    };
    let server = Server::bind(config, engine).unwrap();
    let handle = std::thread::spawn(move || {
        let mut ready = Vec::new();
        let r = server.serve(&mut ready);
        (r, ready)
    });
    Running {
        path,
        handle,
        _dir: dir,
    }
}

impl Running {
    fn finish(self) -> Result<Outcome, Error> {
        let (r, ready) = self.handle.join().unwrap();
        assert_eq!(ready, b"Ready\n");
        assert!(!self.path.exists(), "the socket is removed on exit");
        r
    }
}

struct Emu {
    sock: UnixStream,
    reader: Reader,
    queue: Vec<Value>,
}

impl Emu {
    fn connect(r: &Running) -> Emu {
        let sock = UnixStream::connect(&r.path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Emu {
            sock,
            reader: Reader::new(1024),
            queue: Vec::new(),
        }
    }

    fn send(&mut self, raw: &str) {
        self.sock.write_all(raw.as_bytes()).unwrap();
    }

    /// The next message; `None` at end of stream.
    fn next(&mut self) -> Option<Value> {
        while self.queue.is_empty() {
            let mut buf = [0u8; 1024];
            let n = self.sock.read(&mut buf).unwrap();
            if n == 0 {
                return None;
            }
            self.queue = self.reader.feed(&buf[..n]).unwrap();
        }
        Some(self.queue.remove(0))
    }

    /// Send and wait for the reply, skipping events (as `em_client_send_cmd_fd_args` does).
    fn call(&mut self, raw: &str) -> Value {
        self.send(raw);
        self.reply()
    }

    fn reply(&mut self) -> Value {
        loop {
            let m = self.next().expect("a reply");
            if m.get("event").is_none() {
                return m;
            }
        }
    }

    /// The next `completed` event, with the progress events seen before it.
    fn completed(&mut self) -> (Value, Vec<Value>) {
        let mut progress = Vec::new();
        loop {
            let m = self.next().expect("an event");
            if m["data"].get("status").is_some() {
                return (m, progress);
            }
            progress.push(m);
        }
    }

    /// `migrate_init` with the stream fd; returns the stream's reading end.
    fn init(&mut self) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        send_stream_with_fd(
            &self.sock,
            br#"{ "execute" : "migrate_init"}"#,
            theirs.as_fd(),
        )
        .unwrap();
        drop(theirs);
        assert_eq!(self.reply(), ok());
        ours
    }
}

fn ok() -> Value {
    serde_json::json!({"return": {}})
}

fn err(text: &str) -> Value {
    serde_json::json!({ "error": text })
}

fn read_all(mut s: UnixStream) -> String {
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

const IDLE: Duration = Duration::from_secs(60);

#[test]
fn live_save_as_emu_manager_runs_it() {
    let engine = Arc::new(FakeEngine {
        dirty_pages: vec![400, 120, 60, 30],
        ..FakeEngine::new()
    });
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    let stream = emu.init();
    assert_eq!(
        emu.call(r#"{ "execute" : "set_args", "arguments" : { "pv":"true" } }"#),
        ok()
    );
    assert_eq!(emu.call(r#"{ "execute" : "track_dirty"}"#), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_progress"}"#), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    // emum.c's "live done": iter > 0 && (rem < 50 || iter >= 4); then the fast pause.
    loop {
        let m = emu.next().unwrap();
        let d = &m["data"];
        if d["remaining"] == -1 {
            continue;
        }
        let (rem, iter) = (
            d["remaining"].as_i64().unwrap(),
            d["iteration"].as_i64().unwrap(),
        );
        assert!(d["sent"].as_u64().unwrap() >= 1000);
        if iter > 0 && (rem < 50 || iter >= 4) {
            break;
        }
    }
    emu.send(r#"{ "execute" : "migrate_pause"}"#);
    engine.wait_for("suspend");
    assert_eq!(emu.reply(), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_paused"}"#), ok());
    let (done, _) = emu.completed();
    assert_eq!(
        done,
        serde_json::json!({"event":"MIGRATION","data":{"status":"completed"}})
    );
    assert_eq!(emu.call(r#"{ "execute" : "quit"}"#), ok());
    assert_eq!(r.finish().unwrap(), Outcome::Quit);
    let s = read_all(stream);
    assert!(s.starts_with("pass 1\n") && s.ends_with("final\n"), "{s}");
    let t = engine.trace();
    assert!(t.contains(&"suspend -> true".to_string()), "{t:?}");
    assert!(t.iter().any(|l| l.ends_with("-> StopAndCopy")), "{t:?}");
}

#[test]
fn pause_before_the_first_policy_check_and_compact_json() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    // Two objects in one write, compact form (xcp-ng's emu-manager).
    emu.send(r#"{"execute":"migrate_live"}{"execute":"migrate_pause"}"#);
    assert_eq!(emu.reply(), ok());
    assert_eq!(emu.reply(), ok());
    engine.wait_for("suspend");
    assert_eq!(engine.trace()[1], "policy 1 dirty 100 -> StopAndCopy");
    // No progress client: no completed event for a live save, only the paused reply.
    assert_eq!(emu.call(r#"{"execute":"migrate_paused"}"#), ok());
    engine.wait_for("done");
    assert_eq!(emu.call(r#"{"execute":"quit"}"#), ok());
    assert_eq!(r.finish().unwrap(), Outcome::Quit);
}

#[test]
fn nonlive_save_after_paused_completes_once_to_the_requester() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    let stream = emu.init();
    assert_eq!(emu.call(r#"{ "execute" : "migrate_pause"}"#), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_paused"}"#), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_progress"}"#), ok());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_nonlive"}"#), ok());
    let (done, progress) = emu.completed();
    assert!(progress.is_empty());
    assert_eq!(done["data"]["status"], "completed");
    assert_eq!(
        emu.call(r#"{ "execute" : "quit"}"#),
        ok(),
        "no second completed"
    );
    assert_eq!(r.finish().unwrap(), Outcome::Quit);
    assert_eq!(read_all(stream), "all pages\n");
}

#[test]
fn abort_during_precopy_fails_the_save() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    engine.wait_for("policy 2");
    emu.send(r#"{ "execute" : "migrate_abort"}"#);
    let e = r.finish().unwrap_err();
    assert_eq!(
        e.to_string(),
        "xenguest: xc_domain_save: [125] Operation canceled: Abort precopy loop"
    );
    assert!(engine.trace().last().unwrap().ends_with("-> Abort"));
}

#[test]
fn abort_during_the_suspend_wait_and_a_late_pause_keeps_it() {
    let engine = Arc::new(FakeEngine {
        dirty_pages: vec![0],
        ..FakeEngine::new()
    });
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    engine.wait_for("suspend");
    assert_eq!(emu.call(r#"{ "execute" : "migrate_abort"}"#), ok());
    engine.wait_for("suspend -> false");
    let e = r.finish().unwrap_err();
    assert!(e.to_string().contains("Suspend request failed"), "{e}");
}

#[test]
fn pause_after_abort_does_not_undo_it() {
    let s = super::session::Session::default();
    s.abort();
    s.pause();
    assert_eq!(s.stage(), super::session::Stage::Abort);
}

#[test]
fn restore_sends_the_result_to_the_right_clients() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut watcher = Emu::connect(&r);
    assert_eq!(watcher.call(r#"{ "execute" : "migrate_progress"}"#), ok());
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    assert_eq!(
        emu.call(r#"{ "execute" : "restore"}"#),
        err("Missing options")
    );
    assert_eq!(
        emu.call(
            r#"{ "execute" : "set_args", "arguments" : { "store_port":"5", "console_port":"6" } }"#
        ),
        ok()
    );
    assert_eq!(emu.call(r#"{ "execute" : "restore"}"#), ok());
    let want = serde_json::json!({"event":"MIGRATION","data":{"status":"completed","result":"1044476 1044479"}});
    assert_eq!(emu.completed().0, want);
    assert_eq!(watcher.completed().0, want);
    assert_eq!(emu.call(r#"{ "execute" : "quit"}"#), ok());
    assert_eq!(r.finish().unwrap(), Outcome::Quit);
    assert_eq!(
        engine.trace(),
        ["restore d7 store 5 console 6 hvm true vgpu false"]
    );
}

#[test]
fn bad_requests_get_error_replies() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    assert_eq!(
        emu.call(r#"{ "execute" : "migrate_live"}"#),
        err("Missing options")
    );
    assert_eq!(
        emu.call(r#"{ "execute" : "migrate_init"}"#),
        err("migrate_init needs the stream fd (SCM_RIGHTS)")
    );
    assert_eq!(emu.call(r#"{ "execute" : "set_args"}"#), err("No Args"));
    assert_eq!(
        emu.call(r#"{ "execute" : "set_args", "arguments" : { "store_port":5 } }"#),
        err("Bad Args")
    );
    assert_eq!(
        emu.call(r#"{ "execute" : "fly"}"#),
        err("unknown command 'fly'")
    );
    let _stream = emu.init();
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    assert_eq!(
        emu.call(r#"{ "execute" : "migrate_nonlive"}"#),
        err("a save or restore is already running")
    );
    // Malformed JSON: an error reply, then the stream is out of step and the client dropped.
    emu.send(r#"{ "execute" : }"#);
    assert!(emu.reply()["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON"));
    while emu.next().is_some() {}
    let mut emu = Emu::connect(&r);
    assert_eq!(emu.call(r#"{ "execute" : "migrate_abort"}"#), ok());
    assert!(r.finish().is_err());
}

#[test]
fn a_closed_stream_is_epipe_with_a_clear_message() {
    let engine = Arc::new(FakeEngine::new());
    let r = start(engine.clone(), IDLE);
    let mut emu = Emu::connect(&r);
    drop(emu.init());
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    assert_eq!(
        r.finish().unwrap_err().to_string(),
        "xenguest: xc_domain_save: [32] Broken pipe: writing the migration stream (the peer closed it)"
    );
}

#[test]
fn without_an_engine_the_save_is_refused_not_faked() {
    let r = start(Arc::new(Unavailable), IDLE);
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    let reply = emu.call(r#"{ "execute" : "migrate_live"}"#);
    let text = reply["error"].as_str().unwrap();
    assert!(
        text.starts_with("xenguest: xc_domain_save: [38] not implemented:"),
        "{text}"
    );
    assert_eq!(emu.call(r#"{ "execute" : "quit"}"#), ok());
    assert_eq!(r.finish().unwrap(), Outcome::Quit);
}

#[test]
fn idle_timeout_without_clients_and_during_a_suspend_wait() {
    let r = start(Arc::new(FakeEngine::new()), Duration::from_millis(100));
    assert_eq!(r.finish().unwrap(), Outcome::IdleTimeout);

    let engine = Arc::new(FakeEngine {
        dirty_pages: vec![0],
        ..FakeEngine::new()
    });
    let r = start(engine.clone(), Duration::from_millis(200));
    let mut emu = Emu::connect(&r);
    let _stream = emu.init();
    assert_eq!(emu.call(r#"{ "execute" : "migrate_live"}"#), ok());
    engine.wait_for("suspend");
    drop(emu);
    // The timeout aborts the waiting save, and its failure is the result.
    assert!(r
        .finish()
        .unwrap_err()
        .to_string()
        .contains("Suspend request failed"));
}

#[test]
fn stale_sockets_are_replaced_live_ones_and_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/xenguest-control-3");
    let config = ListenConfig {
        socket_path: path.clone(),
        ..ListenConfig::new(3)
    };
    let live = Server::bind(config.clone(), Arc::new(Unavailable)).unwrap();
    let e = Server::bind(config.clone(), Arc::new(Unavailable)).unwrap_err();
    assert!(
        e.to_string().starts_with("xenguest: emp_sock_init: [98]"),
        "{e}"
    );
    // A socket left by a dead process (bound, never accepted on, listener gone).
    std::mem::forget(live);
    let stale = std::os::unix::net::UnixListener::bind(dir.path().join("x")).unwrap();
    drop(stale);
    std::fs::rename(dir.path().join("x"), &path).unwrap();
    let s = Server::bind(config.clone(), Arc::new(Unavailable)).unwrap();
    drop(s);
    assert!(!path.exists());
    std::fs::write(&path, "not a socket").unwrap();
    let e = Server::bind(config, Arc::new(Unavailable)).unwrap_err();
    assert!(e.to_string().contains("exists and is not a socket"), "{e}");
    assert_eq!(
        ListenConfig::new(12).socket_path,
        PathBuf::from("/run/xen/xenguest-control-12")
    );
    assert_eq!(ListenConfig::new(-1).domid, None);
    assert_eq!(ListenConfig::new(4).domid, Some(DomId(4)));
}

#[test]
fn mid_pass_progress_is_throttled() {
    use super::engine::SaveHooks;
    use super::session::{SaveCallbacks, Session};
    let (a, b) = UnixStream::pair().unwrap();
    let peer = Arc::new(super::socket::Peer::new(0, &a).unwrap());
    let session = Arc::new(Session::default());
    session.set_progress_client(peer.clone());
    let hooks = SaveCallbacks::new(session, peer);
    for done in 1..100 {
        hooks.progress(done, 1000);
    }
    drop(hooks);
    drop(a);
    let got = read_all(b);
    assert_eq!(
        got,
        r#"{ "event" : "MIGRATION", "data": {"sent": 1,"remaining": -1,"iteration": 0}}"#
    );
}
