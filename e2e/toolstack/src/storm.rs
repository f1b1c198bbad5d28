//! `xg-e2e storm`: the same builds by fork/exec of the binary (as xenopsd does today) and by one
//! long-lived in-process server (`xenguest-ocaml -serve`: the OCaml module, as xenopsd would
//! use it), on the same host and under the same load.
//!
//! `--seq N`: N builds of each, interleaved (exec, in-process, exec, ...), one at a time: the
//! cost per build, and for a kernel the first in-process build (cold kernel cache) against the
//! repeats. `--burst 8,16`: that many builds at once, all domains created first, then threads
//! each forking a binary, against one server building them on its threads; the host's free
//! pages after (every domain destroyed, scrubbing finished) must be those before, short by
//! less than half a guest (the host's own allocations move the count by a few hundred
//! pages); the shortfall is reported.
//!
//! Output: `STORM seq ...` and `STORM burst ...` lines of `key=value` fields.

use super::{
    create, destroy, parse_guest, result_frames, run_xenguest, wait_scrubbed, write_pre_build_keys,
    xc_err, xenopsd_argv, GuestOpts, Res, Xs,
};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use xenguest::hypervisor::xenctrl::XenCtrl;
use xenguest::hypervisor::Hypervisor;
use xenguest::types::DomId;

/// A domain made ready for its build, as xenopsd leaves it before calling xenguest.
struct Prepared {
    domid: u32,
    store: u32,
    console: u32,
}

/// `n` domains created and given their keys; on a failure, those made so far destroyed.
fn prepare(xc: &XenCtrl, xs: &Xs, o: &GuestOpts, n: usize) -> Res<Vec<Prepared>> {
    let mut doms = Vec::with_capacity(n);
    for _ in 0..n {
        let made = create(xc, o).and_then(|(domid, store, console)| {
            let p = Prepared {
                domid,
                store,
                console,
            };
            match write_pre_build_keys(xs, domid, o) {
                Ok(_) => Ok(p),
                Err(e) => {
                    teardown(xc, xs, &[p]);
                    Err(e)
                }
            }
        });
        match made {
            Ok(p) => doms.push(p),
            Err(e) => {
                teardown(xc, xs, &doms);
                return Err(e);
            }
        }
    }
    Ok(doms)
}

/// Destroy the domains and wait (at most 30 s) until Xen no longer lists them: a destroyed
/// domain's last pages are freed when its final reference goes, after the destroy returns.
fn teardown(xc: &XenCtrl, xs: &Xs, doms: &[Prepared]) {
    for p in doms {
        xs.rm(&format!("/local/domain/{}", p.domid));
        destroy(xc, p.domid);
    }
    let start = Instant::now();
    while doms
        .iter()
        .any(|p| xc.domain_getinfo(DomId(p.domid)).is_ok())
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One build by fork/exec of the binary: its wall time, fork to exit.
fn exec_build(o: &GuestOpts, p: &Prepared) -> Res<Duration> {
    let (line, took) = run_xenguest(o, p.domid, p.store, p.console)?;
    result_frames(&line)?;
    Ok(took)
}

/// `xenguest-ocaml -serve`: argv lines in, answers out (see `ocaml/e2e/xenguest_ocaml.ml`).
struct Server {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Server {
    /// The server, with the firmware environment the binary gets for `o` (`run_xenguest`).
    fn start(path: &str, o: &GuestOpts) -> Res<Self> {
        let mut cmd = Command::new(path);
        if let Some(fw) = &o.firmware {
            cmd.env("XENGUEST_OVMF", fw);
        }
        if let Some(rom) = &o.ipxe {
            cmd.env("XENGUEST_IPXE", rom);
        }
        let mut child = cmd
            .arg("-serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{path}: {e}"))?;
        let requests = child.stdin.take().ok_or("server stdin")?;
        let answers = BufReader::new(child.stdout.take().ok_or("server stdout")?);
        Ok(Self {
            child,
            requests,
            answers,
        })
    }

    fn send(&mut self, o: &GuestOpts, p: &Prepared) -> Res<()> {
        let argv = xenopsd_argv(o, p.domid, p.store, p.console);
        writeln!(self.requests, "{}\t{}", p.domid, argv.join("\t"))
            .and_then(|()| self.requests.flush())
            .map_err(|e| format!("server: {e}"))
    }

    /// The next answer: the domid and where the build's time went (`core_us`, the build's
    /// whole time, then its parts: `hypervisor_us`, `xenstore_us`, `images_us`, `own_us`),
    /// or its error.
    fn recv(&mut self) -> Res<(u32, Vec<(String, u64)>)> {
        let mut line = String::new();
        match self.answers.read_line(&mut line) {
            Ok(0) => return Err("server: exited".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("server: {e}")),
        }
        let bad = || format!("server: {}", line.trim_end());
        let mut words = line.trim_end().split('\t');
        let domid = words.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
        let answer = words.next().unwrap_or("");
        if !answer.starts_with("result:") {
            return Err(bad());
        }
        result_frames(answer)?;
        let times: Option<Vec<(String, u64)>> = words
            .map(|w| {
                let (k, v) = w.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        match times {
            Some(t) if t.iter().any(|(k, _)| k == "core_us") => Ok((domid, t)),
            _ => Err(bad()),
        }
    }

    fn stop(mut self) {
        drop(self.requests);
        let _ = self.child.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `--seq`: one domain at a time, exec and in-process interleaved.
fn seq(xc: &XenCtrl, xs: &Xs, o: &GuestOpts, server: &mut Server, n: usize) -> Res<()> {
    for rep in 0..n {
        wait_scrubbed(xc)?;
        let doms = prepare(xc, xs, o, 1)?;
        let exec = exec_build(o, &doms[0]);
        teardown(xc, xs, &doms);
        let exec = exec?;
        wait_scrubbed(xc)?;
        let doms = prepare(xc, xs, o, 1)?;
        let t0 = Instant::now();
        let inproc = server.send(o, &doms[0]).and_then(|()| server.recv());
        let took = t0.elapsed();
        teardown(xc, xs, &doms);
        let (_, times) = inproc?;
        let times: Vec<String> = times
            .iter()
            .map(|(k, v)| format!("inproc_{k}={v}"))
            .collect();
        println!(
            "STORM seq guest={} size={} rep={rep} exec_ms={:.1} inproc_ms={:.1} {}",
            o.name,
            o.mem_mib,
            ms(exec),
            ms(took),
            times.join(" ")
        );
    }
    Ok(())
}

/// `--burst`: `n` builds at once by each arm; the host's free pages must come back.
fn burst(xc: &XenCtrl, xs: &Xs, o: &GuestOpts, server: &mut Server, n: usize) -> Res<()> {
    for arm in ["exec", "inproc"] {
        let (free_before, _) = wait_scrubbed(xc)?;
        let doms = prepare(xc, xs, o, n)?;
        let t0 = Instant::now();
        let builds: Res<Vec<f64>> = if arm == "exec" {
            std::thread::scope(|s| {
                let threads: Vec<_> = doms
                    .iter()
                    .map(|p| s.spawn(move || exec_build(o, p)))
                    .collect();
                threads
                    .into_iter()
                    .map(|t| {
                        t.join()
                            .map_err(|_| "a build thread panicked".to_string())?
                    })
                    .map(|r| r.map(ms))
                    .collect()
            })
        } else {
            doms.iter()
                .try_for_each(|p| server.send(o, p))
                .and_then(|()| {
                    (0..n)
                        .map(|_| server.recv().map(|_| ms(t0.elapsed())))
                        .collect()
                })
        };
        let wall = t0.elapsed();
        teardown(xc, xs, &doms);
        let builds = builds?;
        let (free_after, _) = wait_scrubbed(xc)?;
        // The host's own allocations move the count (291 pages short after one first burst,
        // back by the next). A guest left behind would be all its pages: half of one is the line.
        let balanced = free_after + (o.mem_mib << 8) / 2 >= free_before;
        let max = builds.iter().copied().fold(0.0, f64::max);
        println!(
            "STORM burst guest={} size={} n={n} arm={arm} wall_ms={:.1} median_ms={:.1} max_ms={max:.1} \
             free_before={free_before} free_after={free_after} short={} balanced={}",
            o.name,
            o.mem_mib,
            ms(wall),
            median(builds),
            free_before.saturating_sub(free_after),
            if balanced { "yes" } else { "no" }
        );
        if !balanced {
            return Err(format!(
                "{arm} burst of {n}: {free_before} free pages before, {free_after} after"
            ));
        }
    }
    Ok(())
}

/// `xg-e2e storm hvm|pvh GUEST-OPTS --server PATH [--seq N] [--burst 8,16]`.
pub fn storm(args: &[String]) -> Res<()> {
    let mode = match args[0].as_str() {
        "hvm" => super::Mode::Hvm,
        "pvh" => super::Mode::Pvh,
        "pv" => super::Mode::Pv,
        m => return Err(format!("storm: unknown guest kind {m}")),
    };
    let (mut server_path, mut seq_n, mut bursts) = (None, 0usize, Vec::new());
    let mut guest_args = Vec::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--server" => server_path = Some(val()?),
            "--seq" => seq_n = val()?.parse().map_err(|_| "bad --seq")?,
            "--burst" => {
                for n in val()?.split(',').filter(|n| !n.is_empty()) {
                    bursts.push(n.parse::<usize>().map_err(|_| "bad --burst")?);
                }
            }
            _ => guest_args.push(a.clone()),
        }
    }
    let o = parse_guest(mode, &guest_args)?;
    let xc = XenCtrl::open().map_err(xc_err)?;
    let xs = Xs::open()?;
    let mut server = Server::start(server_path.as_deref().ok_or("storm needs --server")?, &o)?;
    let outcome = seq(&xc, &xs, &o, &mut server, seq_n).and_then(|()| {
        bursts
            .iter()
            .try_for_each(|&n| burst(&xc, &xs, &o, &mut server, n))
    });
    server.stop();
    outcome
}
