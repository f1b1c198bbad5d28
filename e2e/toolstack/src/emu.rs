//! `xg-e2e migrate`: a test emu-manager. It moves a running guest from one domain to another
//! the way XenServer does on one host: xenopsd creates the target domain, emu-manager starts
//! one `xenguest -mode listen` per domain and drives both over their control sockets, and
//! xenopsd suspends the source when emu-manager says `suspend:`. The command sequences are
//! emu-manager's `operation_save` (live and non-live) and `operation_load`
//! (xenserver/emu-manager `emum.c` at c3a0bfb); the stream runs over a socketpair between the two
//! xenguests, as it runs over the migration connection between two hosts.
//!
//! ```text
//! xg-e2e migrate --xenguest PATH --image KERNEL [--mem-mib M] [--live] [--run-s S]
//! xg-e2e migrate --hvm --xenguest PATH --image HVMLOADER --firmware FW [--ipxe ROM] ...
//! ```
//! The source guest (a PVH kernel, or with `--hvm` an HVM guest) is built and run for `--run-s` seconds first; on success one
//! `E2E MIGRATE ...` line names both domains, and the restored target is left running for the
//! caller to check (its output on Xen's console) and destroy.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "a test harness: Xen's small SHUTDOWN_* constants as the C int libxc takes"
)]

use super::{create, destroy, parse_guest, run_xenguest, write_pre_build_keys, Mode, Res, Xs};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xen_sys as sys;
use xenguest::hypervisor::xenctrl::XenCtrl;
use xenguest::migrate::emp::Reader;
use xenguest::migrate::socket::send_stream_with_fd;

/// emu-manager's reply timeout (`em-client.c`: 30 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a whole save or restore may take here (QEMU TCG is slow).
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(300);

/// One `xenguest -mode listen` and the client connection to it.
struct Listener {
    name: &'static str,
    child: Child,
    sock: UnixStream,
    framer: Reader,
    /// Events read while waiting for a reply, kept for later waits.
    events: VecDeque<Value>,
}

impl Listener {
    /// Start xenguest as emu-manager does (`-debug -domid D -controloutfd 2 -controlinfd 0
    /// -mode listen`), wait for exactly `Ready\n` on its stdout, close that pipe, connect.
    /// `engine`: `XENGUEST_STREAM_ENGINE` for it (`native`, `libxenguest`), or its default;
    /// `preload`: the populate-counting shim and its log.
    fn start(
        name: &'static str,
        xenguest: &str,
        domid: u32,
        engine: Option<&str>,
        preload: Option<&(String, String)>,
    ) -> Res<Self> {
        let d = domid.to_string();
        let mut cmd = Command::new(xenguest);
        if let Some(engine) = engine {
            cmd.env("XENGUEST_STREAM_ENGINE", engine);
        }
        if let Some((so, log)) = preload {
            cmd.env("LD_PRELOAD", so).env("XG_POPULATE_LOG", log);
        }
        let mut child = cmd
            .args([
                "-debug",
                "-domid",
                &d,
                "-controloutfd",
                "2",
                "-controlinfd",
                "0",
            ])
            .args(["-mode", "listen"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{xenguest}: {e}"))?;
        let mut ready = [0u8; 6];
        let mut out = child.stdout.take().ok_or("no stdout pipe")?;
        out.read_exact(&mut ready)
            .map_err(|e| format!("{name}: no Ready from xenguest: {e}"))?;
        if &ready != b"Ready\n" {
            return Err(format!("{name}: xenguest said {ready:?}, not Ready"));
        }
        drop(out); // emu-manager closes the pipe: xenguest must never write there again
        let path = format!("/run/xen/xenguest-control-{domid}");
        let sock = UnixStream::connect(&path).map_err(|e| format!("{path}: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        println!("E2E emu {name}: xenguest {} listens on {path}", child.id());
        Ok(Listener {
            name,
            child,
            sock,
            framer: Reader::new(64 * 1024),
            events: VecDeque::new(),
        })
    }

    /// The next message, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Res<Value> {
        let start = Instant::now();
        let mut pending = VecDeque::new();
        loop {
            let mut buf = [0u8; 4096];
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(format!("{}: xenguest closed its socket", self.name)),
                Ok(n) => {
                    let got = self.framer.feed(&buf[..n]).map_err(|e| e.to_string())?;
                    pending.extend(got);
                    if let Some(v) = pending.pop_front() {
                        // More than one in a read: keep the rest as events to look at later.
                        self.events.extend(pending);
                        return Ok(v);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("{}: reading: {e}", self.name)),
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "{}: nothing from xenguest in {timeout:?}",
                    self.name
                ));
            }
        }
    }

    /// Send `{"execute":"<cmd>"[,"arguments":..]}` (with `fd` by SCM_RIGHTS) and wait for its
    /// `return`; events that arrive first are kept.
    fn command(&mut self, json: &str, fd: Option<&UnixStream>) -> Res<()> {
        println!("E2E emu {}: -> {json}", self.name);
        match fd {
            Some(f) => send_stream_with_fd(&self.sock, json.as_bytes(), f.as_fd()),
            None => (&self.sock).write_all(json.as_bytes()),
        }
        .map_err(|e| format!("{}: sending {json}: {e}", self.name))?;
        loop {
            let v = self.next(REPLY_TIMEOUT)?;
            if v.get("return").is_some() {
                return Ok(());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{}: {json} failed: {e}", self.name));
            }
            self.events.push_back(v);
        }
    }

    /// The next MIGRATION event's data (kept events first).
    fn event(&mut self, timeout: Duration) -> Res<Value> {
        loop {
            let v = match self.events.pop_front() {
                Some(v) => v,
                None => self.next(timeout)?,
            };
            if v.get("event").and_then(Value::as_str) == Some("MIGRATION") {
                return Ok(v.get("data").cloned().unwrap_or(Value::Null));
            }
            println!("E2E emu {}: ignored {v}", self.name);
        }
    }

    /// Wait for `completed`; its `result`, if any. `sent` is raised to the pages sent that
    /// progress events report on the way.
    fn completed(&mut self, sent: &mut i64) -> Res<Option<String>> {
        let start = Instant::now();
        loop {
            let left = COMPLETION_TIMEOUT.saturating_sub(start.elapsed());
            let data = self.event(left)?;
            if data.get("status").and_then(Value::as_str) == Some("completed") {
                return Ok(data.get("result").and_then(Value::as_str).map(String::from));
            }
            *sent = (*sent).max(sent_pages(&data));
        }
    }

    /// `quit`, then the process must exit 0 (emu-manager waits up to 60 s).
    fn quit(mut self) -> Res<()> {
        self.command(r#"{"execute":"quit"}"#, None)?;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("{}: xenguest exited with {status}", self.name))
                };
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                return Err(format!("{}: xenguest did not exit after quit", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// emu-manager's "live done" (`emum.c`): after the first pass, once fewer than 50 pages remain
/// or from the fourth pass on.
fn live_done(data: &Value) -> bool {
    let iteration = data.get("iteration").and_then(Value::as_i64).unwrap_or(0);
    let remaining = data.get("remaining").and_then(Value::as_i64).unwrap_or(-1);
    iteration > 0 && ((0..50).contains(&remaining) || iteration >= 4)
}

/// Pages written so far, from the event sent after each precopy pass (the one with a known
/// `remaining`; inside a pass `sent` also counts the pfns scanned, libxc's progress unit).
fn sent_pages(data: &Value) -> i64 {
    match data.get("remaining").and_then(Value::as_i64) {
        Some(r) if r >= 0 => data.get("sent").and_then(Value::as_i64).unwrap_or(0),
        _ => 0,
    }
}

/// xenopsd's part when emu-manager says `suspend:`: ask Xen to suspend the domain (a guest
/// without PV drivers is suspended by force, as `xl save` does for HVM) and wait until it is.
fn suspend(xc: &XenCtrl, domid: u32) -> Res<()> {
    xc.call("xc_domain_shutdown", |xch| {
        // SAFETY: scalar arguments.
        unsafe { sys::xc_domain_shutdown(xch, domid, sys::SHUTDOWN_suspend as i32) }
    })
    .map_err(|e| e.to_string())?;
    match super::wait_shutdown(xc, domid, Duration::from_secs(30))? {
        "suspend" => Ok(()),
        other => Err(format!("domain {domid} did not suspend: {other}")),
    }
}

pub fn migrate(args: &[String]) -> Res<()> {
    let live = args.iter().any(|a| a == "--live");
    let mode = if args.iter().any(|a| a == "--hvm") {
        Mode::Hvm
    } else {
        Mode::Pvh
    };
    let mut run_s = 3u64;
    let mut rest = Vec::new();
    let (mut save_engine, mut restore_engine) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--live" | "--hvm" => {}
            "--save-engine" => save_engine = Some(it.next().ok_or("bad --save-engine")?.clone()),
            "--restore-engine" => {
                restore_engine = Some(it.next().ok_or("bad --restore-engine")?.clone())
            }
            "--run-s" => {
                run_s = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("bad --run-s")?
            }
            _ => rest.push(a.clone()),
        }
    }
    let o = parse_guest(mode, &rest)?;
    let xc = XenCtrl::open().map_err(|e| e.to_string())?;
    let xs = Xs::open()?;

    // The source: built and started as `xg-e2e pvh` does.
    let (src, src_store, src_console) = create(&xc, &o)?;
    let mut target = None;
    let outcome = (|| -> Res<String> {
        let base = write_pre_build_keys(&xs, src, &o)?;
        let (line, _) = run_xenguest(&o, src, src_store, src_console)?;
        let (store_frame, console_frame) = super::result_frames(&line)?;
        super::build_post(
            &xs,
            &base,
            src,
            src_store,
            src_console,
            store_frame,
            console_frame,
        )?;
        xc.call("xc_domain_unpause", |xch| {
            // SAFETY: scalar arguments.
            unsafe { sys::xc_domain_unpause(xch, src) }
        })
        .map_err(|e| e.to_string())?;
        println!("E2E migrate: source domain {src} runs for {run_s} s");
        std::thread::sleep(Duration::from_secs(run_s));

        // xenopsd creates the target as it created the source.
        let (dst, dst_store, dst_console) = create(&xc, &o)?;
        target = Some(dst);
        let dst_base = write_pre_build_keys(&xs, dst, &o)?;
        let (save_end, restore_end) = UnixStream::pair().map_err(|e| e.to_string())?;
        let mut sender = Listener::start("save", &o.xenguest, src, save_engine.as_deref(), None)?;
        // The target's populate calls are counted by the shim, whichever engine makes them.
        let mut receiver = Listener::start(
            "restore",
            &o.xenguest,
            dst,
            restore_engine.as_deref(),
            o.preload.as_ref(),
        )?;

        // operation_load: stream fd, ports, then restore (xenopsd's restore:xenguest).
        receiver.command(r#"{"execute":"migrate_init"}"#, Some(&restore_end))?;
        drop(restore_end);
        receiver.command(
            &format!(
                r#"{{"execute":"set_args","arguments":{{"store_port":"{dst_store}","console_port":"{dst_console}"}}}}"#
            ),
            None,
        )?;
        receiver.command(r#"{"execute":"restore"}"#, None)?;

        // operation_save.
        let t0 = Instant::now();
        sender.command(r#"{"execute":"migrate_init"}"#, Some(&save_end))?;
        drop(save_end);
        let mut iterations = 0;
        let mut sent = 0;
        let suspended;
        if live {
            sender.command(r#"{"execute":"track_dirty"}"#, None)?;
            sender.command(r#"{"execute":"migrate_progress"}"#, None)?;
            sender.command(r#"{"execute":"migrate_live"}"#, None)?;
            loop {
                let data = sender.event(COMPLETION_TIMEOUT)?;
                if data.get("status").and_then(Value::as_str) == Some("completed") {
                    return Err("the live save completed before it was paused".into());
                }
                iterations = data.get("iteration").and_then(Value::as_i64).unwrap_or(0);
                sent = sent.max(sent_pages(&data));
                if live_done(&data) {
                    println!("E2E emu save: live done at {data}");
                    break;
                }
            }
            // Fast pause, then xenopsd suspends, then paused.
            sender.command(r#"{"execute":"migrate_pause"}"#, None)?;
            suspended = Instant::now();
            suspend(&xc, src)?;
            sender.command(r#"{"execute":"migrate_paused"}"#, None)?;
        } else {
            suspended = Instant::now();
            suspend(&xc, src)?;
            sender.command(r#"{"execute":"migrate_pause"}"#, None)?;
            sender.command(r#"{"execute":"migrate_paused"}"#, None)?;
            sender.command(r#"{"execute":"migrate_nonlive"}"#, None)?;
        }
        sender.completed(&mut sent)?;
        let save_ms = t0.elapsed().as_millis();
        let result = receiver
            .completed(&mut 0)?
            .ok_or("the restore completed without a result")?;
        let restore_ms = t0.elapsed().as_millis();
        sender.quit()?;
        receiver.quit()?;

        // xenopsd's build_post for the restored domain, then it runs.
        let (store_frame, console_frame) = super::result_frames(&format!("result:{result}"))?;
        super::build_post(
            &xs,
            &dst_base,
            dst,
            dst_store,
            dst_console,
            store_frame,
            console_frame,
        )?;
        xc.call("xc_domain_unpause", |xch| {
            // SAFETY: scalar arguments.
            unsafe { sys::xc_domain_unpause(xch, dst) }
        })
        .map_err(|e| e.to_string())?;
        // The guest ran on neither domain from its suspend until now.
        let downtime_ms = suspended.elapsed().as_millis();
        let populated = match &o.preload {
            Some((_, log)) => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                match xg_e2e::count_populates(&log, dst).get("xenguest") {
                    Some(c) => format!(
                        "populate_calls={} populate_us={} restored_pages=\"{}\"",
                        c.calls,
                        c.us,
                        c.extents_text()
                    ),
                    None => "populate_calls=0".into(),
                }
            }
            None => String::new(),
        };
        Ok(format!(
            "kind={} source={src} target={dst} live={} iterations={iterations} sent_pages={sent} \
             save_ms={save_ms} restore_done_ms={restore_ms} downtime_ms={downtime_ms} \
             save_engine={} restore_engine={} result=\"{result}\" {populated}",
            if mode == Mode::Hvm { "hvm" } else { "pvh" },
            u8::from(live),
            save_engine.as_deref().unwrap_or("default"),
            restore_engine.as_deref().unwrap_or("default"),
        ))
    })();
    xs.release(src);
    xs.rm(&format!("/local/domain/{src}"));
    destroy(&xc, src);
    match outcome {
        Ok(summary) => {
            println!("E2E MIGRATE {summary}");
            Ok(())
        }
        Err(e) => {
            if let Some(dst) = target {
                xs.release(dst);
                xs.rm(&format!("/local/domain/{dst}"));
                destroy(&xc, dst);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_done_follows_emu_manager() {
        let ev = |iteration: i64, remaining: i64| serde_json::json!({"sent": 1, "remaining": remaining, "iteration": iteration});
        assert!(!live_done(&ev(0, 10)));
        assert!(live_done(&ev(1, 49)));
        assert!(!live_done(&ev(1, 50)));
        assert!(!live_done(&ev(3, -1)));
        assert!(live_done(&ev(4, 5000)));
    }
}
