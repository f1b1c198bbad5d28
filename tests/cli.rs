//! The binary as xenopsd runs it: argv shapes, control-fd lines, exit codes, reports.

use std::process::{Command, Output};

#[path = "common/firmware.rs"]
mod firmware;
#[path = "common/same_guest.rs"]
mod same_guest;

/// The generated test firmware (Debian's hvmloader is not needed to drive the binary).
fn hvmloader() -> &'static str {
    firmware::firmware().to_str().expect("UTF-8 target dir")
}

fn xenguest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xenguest"))
        .args(args)
        .env(
            "XENGUEST_IPXE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        )
        .output()
        .expect("run xenguest")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// xenopsd's hvm_build argv (DOM xenguest_args_hvm), with the control fd on stdout.
fn hvm_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-controloutfd",
        "1",
        "-mode",
        "hvm_build",
        "-image",
        hvmloader(),
        "-domid",
        "3",
        "-store_port",
        "5",
        "-store_domid",
        "0",
        "-console_port",
        "6",
        "-console_domid",
        "0",
        "-mem_max_mib",
        "1024",
        "-mem_start_mib",
        "1024",
        "-sim",
        "nodes=2,node_mib=2048",
        "-stderr",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn hvm_build_prints_the_result_and_exits_0() {
    let o = xenguest(&hvm_args(&[]));
    assert_eq!(
        stdout(&o),
        "result:1044476 1044479\n",
        "stderr: {}",
        stderr(&o)
    );
    assert!(o.status.success());
    let log = stderr(&o);
    assert!(log.contains("xenguest-3-build["), "syslog ident: {log}");
    assert!(
        log.contains("]: Command line: -controloutfd 1 -mode hvm_build"),
        "{log}"
    );
    assert!(log.trim_end().ends_with("All done"), "{log}");
}

#[test]
fn double_dash_prefixes_and_equals_forms_are_accepted() {
    let o = xenguest(&[
        "--controloutfd=1",
        "-mode=hvm_build",
        "--image",
        hvmloader(),
        "-domid",
        "3",
        "-store_p",
        "5",
        "-console_p=6",
        "-mem_max",
        "1024",
        "-mem_start_mib",
        "512",
        "-mem_start_mib",
        "1024",
        "-sim",
        "nodes=1,node_mib=2048",
        "--force",
        "-fork",
        "true",
        "-stderr",
    ]);
    assert_eq!(stdout(&o), "result:1044476 1044479\n", "{}", stderr(&o));
}

#[test]
fn report_json_has_the_layout_orders_and_call_counts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let o = xenguest(&hvm_args(&[
        "-mem_max_mib",
        "4096",
        "-mem_start_mib",
        "4096",
        "-sim",
        "nodes=2,node_mib=8192",
        "-report",
        report.to_str().unwrap(),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["result"]["store_mfn"], 1044476);
    assert_eq!(r["layout"]["mmio_size"], 268435456);
    assert_eq!(r["layout"]["e820"].as_array().unwrap().len(), 2);
    assert_eq!(r["memory"]["ram"]["pages_by_order"]["18"], 2 << 18);
    assert_eq!(r["memory"]["ram"]["pages_by_order"]["9"], 1023 << 9);
    let populate = r["hypercalls"]["domain_populate_physmap"].as_u64().unwrap();
    assert!(populate <= 6, "far below libxenguest's 259: {populate}");
    let writes = r["xenstore_writes"].as_array().unwrap();
    assert!(writes
        .iter()
        .any(|w| w[0] == "/local/domain/3/vm-data/mmio-hole-size" && w[1] == "268435456"));
    let time = |part: &str| r["time"][part].as_u64().unwrap();
    assert!(time("elapsed_us") > 0);
    assert!(
        time("hypervisor_us") > 0 && time("images_us") > 0,
        "{}",
        r["time"]
    );
    // The four parts are disjoint and cover the build: they add up to it, but for the
    // rounding of each to whole microseconds.
    let parts = time("hypervisor_us") + time("xenstore_us") + time("images_us") + time("own_us");
    assert!(parts.abs_diff(time("elapsed_us")) <= 4, "{}", r["time"]);
}

#[test]
fn sim_keys_reach_the_build() {
    let o = xenguest(&hvm_args(&[
        "-sim-key",
        "platform/vcpu/number=3",
        "-sim-key",
        "platform/cores-per-socket=2",
    ]));
    assert_eq!(
        stdout(&o),
        "error:Bad cores/socket setting: 2 (nr vcpus 3)\n"
    );
    assert_eq!(o.status.code(), Some(1));
}

/// `platform/mmio_size_mib` (MiB, from xapi) and `platform/mmio_hole_size` (bytes): the
/// larger sets the hole, reported to the toolstack in `vm-data/mmio-hole-size`.
#[test]
fn mmio_size_mib_sets_the_hole_with_mmio_hole_size() {
    let hole_of = |keys: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.json");
        let mut args = vec!["-report", report.to_str().unwrap()];
        for k in keys {
            args.extend(["-sim-key", k]);
        }
        let o = xenguest(&hvm_args(&args));
        assert!(o.status.success(), "{keys:?}: {}", stdout(&o));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let written = r["xenstore_writes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w[0] == "/local/domain/3/vm-data/mmio-hole-size")
            .map(|w| w[1].as_str().unwrap().to_string());
        (r["layout"]["mmio_size"].as_u64().unwrap(), written)
    };
    assert_eq!(
        hole_of(&["platform/mmio_size_mib=1024"]),
        (1 << 30, Some("1073741824".into()))
    );
    assert_eq!(
        hole_of(&[
            "platform/mmio_size_mib=512",
            "platform/mmio_hole_size=0x40000000"
        ])
        .0,
        1 << 30
    );
    assert_eq!(
        hole_of(&[
            "platform/mmio_size_mib=1024",
            "platform/mmio_hole_size=0x20000000"
        ])
        .0,
        1 << 30
    );
    let o = xenguest(&hvm_args(&["-sim-key", "platform/mmio_size_mib=4096"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("platform/mmio_size_mib") && stdout(&o).contains("at most 2048 (MiB)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn errors_go_to_the_control_fd_in_the_c_format() {
    let o = xenguest(&hvm_args(&["-image", "/nonexistent/hvmloader"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "error:xenguest: xc_dom_kernel_file: [2] /nonexistent/hvmloader: No such file or directory\n");

    let o = xenguest(&hvm_args(&["-image", "/etc/hostname"]));
    assert!(
        stdout(&o).starts_with(
            "error:xenguest: xc_dom_parse_image: [22] /etc/hostname: not an ELF image"
        ),
        "{}",
        stdout(&o)
    );

    let o = xenguest(&hvm_args(&[
        "-mem_pnode",
        "1",
        "-sim",
        "nodes=2,node_mib=2048,free_mib=1:512",
    ]));
    let line = stdout(&o);
    assert!(
        line.starts_with("error:xenguest: hvm_build_setup_mem: [12] Could not allocate memory"),
        "{line}"
    );
    assert!(line.contains("missing on node 1 (exact)"), "{line}");

    let o = xenguest(&hvm_args(&["-sim", "nodes=two"]));
    assert!(
        stdout(&o).starts_with("error:xenguest: sim: [22] "),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("nodes"),
        "the bad key is named: {}",
        stdout(&o)
    );
}

/// Migration from the shell on a simulated host kept in files: build, live save (the line
/// answering `suspend:` on the control-in fd suspends the guest), restore into another host;
/// the result names the store and console frames the build reported.
/// xenopsd's HVM build of `mib` MiB as domain `domid` on the simulated host kept in `host`
/// (created from hvm_args' `-sim` spec when absent); it must succeed.
fn build_into_host_file(host: &str, domid: &str, mib: &str) {
    let mut args = hvm_args(&["-sim-host", host]);
    let at = |args: &[&str], k: &str| args.iter().position(|x| *x == k).unwrap() + 1;
    let (d, m) = (at(&args, "-domid"), at(&args, "-mem_max_mib"));
    args[d] = domid;
    (args[m], args[m + 2]) = (mib, mib);
    let built = xenguest(&args);
    assert_eq!(
        stdout(&built),
        "result:1044476 1044479\n",
        "{}",
        stderr(&built)
    );
}

#[test]
fn a_guest_built_saved_and_restored_on_simulated_hosts_kept_in_files() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let stream = dir.path().join("stream");
    let report = dir.path().join("restore.json");
    let a_arg = a.to_str().unwrap();
    build_into_host_file(a_arg, "3", "256");
    assert!(a.exists(), "the host is written back");

    // Without -sim the file is the host; the domain is there, so it can be saved.
    let out = std::fs::File::create(&stream).unwrap();
    let mut save = Command::new(env!("CARGO_BIN_EXE_xenguest"))
        .args(["-mode", "hvm_save", "-domid", "3", "-fd", "3", "-live"])
        .args([
            "-controloutfd",
            "1",
            "-controlinfd",
            "0",
            "-sim-host",
            a_arg,
            "-stderr",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_with_fd3(out)
        .unwrap();
    use std::io::Write;
    save.stdin.take().unwrap().write_all(b"done\n").unwrap();
    let saved = save.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&saved.stdout),
        "suspend:\nresult:0 0\n",
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let bytes = std::fs::metadata(&stream).unwrap().len();
    assert!(bytes > 256 << 20, "every page of the guest: {bytes}");

    let input = std::fs::File::open(&stream).unwrap();
    let restored = Command::new(env!("CARGO_BIN_EXE_xenguest"))
        .args(["-mode", "hvm_restore", "-domid", "9", "-fd", "3"])
        .args([
            "-store_port",
            "4",
            "-console_port",
            "5",
            "-controloutfd",
            "1",
            "-stderr",
        ])
        .args([
            "-sim-host",
            b.to_str().unwrap(),
            "-sim",
            "nodes=1,node_mib=2048",
            "-report",
            report.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_with_fd3(input)
        .unwrap()
        .wait_with_output()
        .unwrap();
    let log = String::from_utf8_lossy(&restored.stderr);
    assert_eq!(
        String::from_utf8_lossy(&restored.stdout),
        "result:1044476 1044479\n",
        "{log}"
    );
    assert!(log.contains("Restored d9: "), "{log}");
    assert!(b.exists());
    // -report: what the native restore did, in figures.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["mode"], "hvm_restore");
    assert_eq!(report["store_frame"], 1044476);
    let stats = &report["stats"];
    assert_eq!(stats["version"], 3, "{report}");
    assert!(stats["pages_written"].as_u64().unwrap() > 0, "{report}");
    let calls: u64 = stats["populate_calls_by_order"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(
        (1..=8).contains(&calls),
        "a 256 MiB guest in a few calls: {report}"
    );

    // A host file that is not one is refused, the error on the control fd.
    std::fs::write(&b, "{}").unwrap();
    let o = xenguest(
        &[
            "-mode",
            "hvm_save",
            "-domid",
            "9",
            "-fd",
            "1",
            "-controloutfd",
            "1",
        ]
        .iter()
        .copied()
        .chain(["-sim-host", b.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("error:xenguest: sim: [22] "),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("is not a simulated host"),
        "{}",
        stdout(&o)
    );
}

/// Spawning with a file as fd 3 (the `-fd` the toolstack hands over).
trait SpawnWithFd3 {
    fn spawn_with_fd3(&mut self, file: std::fs::File) -> std::io::Result<std::process::Child>;
}

impl SpawnWithFd3 for Command {
    fn spawn_with_fd3(&mut self, file: std::fs::File) -> std::io::Result<std::process::Child> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = file.as_raw_fd();
        // SAFETY: only dup2 and fcntl run between fork and exec, both async-signal-safe;
        // `file` outlives the spawn (it is moved into this function and dropped after).
        unsafe {
            self.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it then.
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn();
        drop(file);
        child
    }
}

/// The direct modes without Xen: each fails at the first thing that needs the hypervisor, with
/// the C text, and a stream fd that is not open is named before anything else.
#[test]
fn direct_migration_modes_without_xen_report_the_missing_hypervisor() {
    if std::path::Path::new("/dev/xen/privcmd").exists() {
        return; // a real Xen host: the open would succeed
    }
    let base = [
        "-controloutfd",
        "1",
        "-domid",
        "7",
        "-store_port",
        "1",
        "-console_port",
        "2",
    ];
    for mode in ["save", "hvm_save", "restore", "hvm_restore", "resume_slow"] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["-mode", mode, "-fd", "0"]);
        let o = xenguest(&args);
        assert_eq!(o.status.code(), Some(1), "{mode}");
        let line = stdout(&o);
        // Save opens xc before xenstored (for the nomigrate check), as C opens xc first.
        let expected = "error:xenguest: xc_interface_open: [2] Failed to open xc interface";
        assert!(line.starts_with(expected), "{mode}: {line}");
    }
    let mut args = base.to_vec();
    args.extend_from_slice(&["-mode", "restore", "-fd", "97"]);
    let o = xenguest(&args);
    assert_eq!(
        stdout(&o),
        "error:xenguest: main: [22] -fd 97 is not an open file descriptor\n"
    );
}

/// emu-manager's side of one `xenguest -mode listen`: the process, started as emu-manager
/// starts it (`-debug -domid D -controloutfd 2 -controlinfd 0 -mode listen`), and its control
/// socket.
struct Emp {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    sock: std::os::unix::net::UnixStream,
    framer: xenguest::migrate::emp::Reader,
    /// Events that arrived while a reply was awaited.
    events: std::collections::VecDeque<serde_json::Value>,
    path: String,
}

impl Emp {
    /// Start it and connect once it said `Ready`; None (skipped) where `/run/xen` is not
    /// writable or a real Xen host would need the domain to exist.
    fn start(domid: u32, extra: &[&str]) -> Option<Emp> {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        if std::path::Path::new("/dev/xen/privcmd").exists() {
            return None;
        }
        let domid_arg = domid.to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_xenguest"))
            .args(["-debug", "-domid", &domid_arg])
            .args(["-controloutfd", "2", "-controlinfd", "0", "-mode", "listen"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run xenguest");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        if stdout.read_line(&mut ready).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let _ = child.wait();
            if err.contains("Permission denied") {
                eprintln!("skipped: /run/xen is not writable here");
                return None;
            }
            panic!("no Ready: {err}");
        }
        assert_eq!(ready, "Ready\n");
        let path = format!("/run/xen/xenguest-control-{domid}");
        let sock = std::os::unix::net::UnixStream::connect(&path).expect("the control socket");
        Some(Emp {
            child,
            stdout,
            sock,
            framer: xenguest::migrate::emp::Reader::new(64 * 1024),
            events: Default::default(),
            path,
        })
    }

    /// The next message (replies and events, JSON objects back to back).
    fn next(&mut self) -> serde_json::Value {
        use std::io::Read;
        loop {
            let mut buf = [0u8; 4096];
            let n = self.sock.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the socket");
            let mut got = self.framer.feed(&buf[..n]).unwrap().into_iter();
            if let Some(v) = got.next() {
                self.events.extend(got);
                return v;
            }
        }
    }

    /// Send `json` (with `fd` by SCM_RIGHTS) and return its reply, keeping events for later.
    fn command(&mut self, json: &str, fd: Option<std::os::fd::BorrowedFd<'_>>) -> String {
        use std::io::Write;
        match fd {
            Some(fd) => {
                xenguest::migrate::socket::send_stream_with_fd(&self.sock, json.as_bytes(), fd)
                    .unwrap();
            }
            None => self.sock.write_all(json.as_bytes()).unwrap(),
        }
        loop {
            let v = match self.events.iter().position(|v| v.get("event").is_none()) {
                Some(i) => self.events.remove(i).unwrap(),
                None => self.next(),
            };
            if v.get("event").is_none() {
                return v.to_string();
            }
            self.events.push_back(v);
        }
    }

    /// The next MIGRATION event's data.
    fn event(&mut self) -> serde_json::Value {
        loop {
            let v = match self.events.pop_front() {
                Some(v) => v,
                None => self.next(),
            };
            if v.get("event").and_then(|e| e.as_str()) == Some("MIGRATION") {
                return v["data"].clone();
            }
        }
    }

    /// `quit`: the process exits 0, said nothing after `Ready`, and removed its socket.
    fn quit(mut self) -> String {
        use std::io::Read;
        assert_eq!(
            self.command(r#"{"execute":"quit"}"#, None),
            r#"{"return":{}}"#
        );
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(0), "{err}");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "nothing on stdout after Ready");
        assert!(
            !std::path::Path::new(&self.path).exists(),
            "the socket is removed"
        );
        err
    }
}

/// A domid no other test uses, so the socket path is this test's alone.
fn private_domid(base: u32) -> u32 {
    base + std::process::id() % 500
}

/// `-mode listen` as emu-manager starts it: `Ready` on stdout once the socket listens and
/// nothing after it; commands that need Xen are refused on the socket with the C text, and
/// `quit` ends the process with 0 and removes the socket.
#[test]
fn listen_serves_the_socket_emu_manager_connects_to() {
    let Some(mut emp) = Emp::start(private_domid(32000), &["-mem_pnode", "0"]) else {
        return;
    };
    // emu-manager's first command: the stream fd by SCM_RIGHTS.
    let (stream, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = std::os::fd::AsFd::as_fd(&stream);
    assert_eq!(
        emp.command(r#"{ "execute" : "migrate_init" }"#, Some(fd)),
        r#"{"return":{}}"#
    );
    let reply = emp.command(r#"{"execute":"migrate_live"}"#, None);
    assert!(
        reply.contains("xc_interface_open") && reply.contains("Failed to open xc interface"),
        "{reply}"
    );
    emp.quit();
}

/// Listen mode on a simulated host kept in a file, driven as emu-manager drives it: a guest
/// built there is saved live over EMP (`operation_save`: progress events, pause, paused,
/// completed), then a second `-mode listen` restores the stream into a new domain
/// (`operation_load`), which then holds the guest page for page.
#[test]
fn listen_on_a_simulated_host_saves_live_and_restores_over_emp() {
    use std::os::fd::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host.json");
    let host_arg = host.to_str().unwrap();
    let (src, dst) = (private_domid(31000), private_domid(31500));
    build_into_host_file(host_arg, &src.to_string(), "128");

    let Some(mut save) = Emp::start(src, &["-sim-host", host_arg, "-stderr"]) else {
        return;
    };
    let stream = dir.path().join("stream");
    let out = std::fs::File::create(&stream).unwrap();
    let ok = r#"{"return":{}}"#;
    assert_eq!(
        save.command(r#"{"execute":"migrate_init"}"#, Some(out.as_fd())),
        ok
    );
    drop(out);
    for c in ["track_dirty", "migrate_progress", "migrate_live"] {
        assert_eq!(
            save.command(&format!(r#"{{"execute":"{c}"}}"#), None),
            ok,
            "{c}"
        );
    }
    // emu-manager's "live done": after the first pass, once fewer than 50 pages remain.
    loop {
        let data = save.event();
        assert_ne!(
            data["status"], "completed",
            "completed before it was paused"
        );
        let (iteration, remaining) = (data["iteration"].as_i64(), data["remaining"].as_i64());
        if iteration.unwrap_or(0) > 0 && (0..50).contains(&remaining.unwrap_or(-1)) {
            break;
        }
    }
    assert_eq!(save.command(r#"{"execute":"migrate_pause"}"#, None), ok);
    assert_eq!(save.command(r#"{"execute":"migrate_paused"}"#, None), ok);
    loop {
        let data = save.event();
        if data["status"] == "completed" {
            break;
        }
    }
    let log = save.quit();
    assert!(log.contains("suspend was received"), "{log}");
    let bytes = std::fs::metadata(&stream).unwrap().len();
    assert!(bytes > 128 << 20, "every page of the guest: {bytes}");

    let mut restore = Emp::start(dst, &["-sim-host", host_arg]).unwrap();
    let input = std::fs::File::open(&stream).unwrap();
    assert_eq!(
        restore.command(r#"{"execute":"migrate_init"}"#, Some(input.as_fd())),
        ok
    );
    let ports = r#"{"execute":"set_args","arguments":{"store_port":"4","console_port":"5"}}"#;
    assert_eq!(restore.command(ports, None), ok);
    assert_eq!(restore.command(r#"{"execute":"restore"}"#, None), ok);
    let done = loop {
        let data = restore.event();
        if data["status"] == "completed" {
            break data;
        }
    };
    assert_eq!(done["result"], "1044476 1044479", "{done}");
    restore.quit();

    let host = xenguest::hypervisor::sim::SimHost::load_from(&host).unwrap();
    same_guest::assert_same_guest(
        &host,
        xenguest::types::DomId(src),
        xenguest::types::DomId(dst),
    );
}

/// `linux_build` as xenopsd runs it (empty ramdisk), on a real PV kernel: GRUB's x86_64-xen
/// image (package grub-xen-bin), when installed.
#[test]
fn linux_build_prints_mfns_and_the_protocol() {
    if !std::path::Path::new("/usr/lib/grub/x86_64-xen").exists() {
        eprintln!("skipped: grub-xen-bin is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pvgrub.elf");
    let ok = Command::new("grub-mkimage")
        .args(["-O", "x86_64-xen", "-o"])
        .arg(&img)
        .args(["-p", "(xen/xvda,msdos1)/boot/grub", "normal"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut args = hvm_args(&[]);
    args[3] = "linux_build";
    args[5] = img.to_str().unwrap();
    args.extend_from_slice(&[
        "-cmdline",
        "",
        "-features",
        "",
        "-ramdisk",
        "",
        "-flags",
        "0",
    ]);
    let o = xenguest(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = stdout(&o);
    let nums: Vec<&str> = line
        .trim_end()
        .strip_prefix("result:")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .collect();
    assert_eq!(nums.len(), 3, "{line}");
    assert!(nums[0].parse::<u64>().is_ok() && nums[1].parse::<u64>().is_ok());
    assert_eq!(nums[2], "x86_64-abi");
}

#[test]
fn command_line_errors_exit_1_with_the_c_messages() {
    let o = xenguest(&["-mode", "hvm_build", "-bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unrecognized option '-bogus'"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("xenguest: invalid command line '-bogus'"),
        "{}",
        stderr(&o)
    );

    let o = xenguest(&["-mode", "hvm_build", "-domid"]);
    assert!(
        stderr(&o).contains("requires an argument"),
        "{}",
        stderr(&o)
    );

    let o = xenguest(&["-mode", "frobnicate"]);
    assert!(
        stderr(&o).contains("xenguest: unrecognized mode 'frobnicate'"),
        "{}",
        stderr(&o)
    );

    let o = xenguest(&["-domid", "1"]);
    assert!(
        stderr(&o).contains("xenguest: no `-mode' option specified"),
        "{}",
        stderr(&o)
    );

    let o = xenguest(&["-mode", "hvm_build", "-domid", "1"]);
    assert!(
        stderr(&o).contains("xenguest: missing command line options"),
        "{}",
        stderr(&o)
    );

    let o = xenguest(&["-mode", "hvm_build", "-domid", "12x"]);
    assert!(
        stderr(&o).contains("xenguest: '12x' is not a valid int"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// xenopsd sends stderr to /dev/null and puts `-controloutfd` first: a command-line error
/// must reach the control fd too (C's `xg_err`), once that fd has been seen.
#[test]
fn command_line_errors_also_go_to_the_control_fd() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["-controloutfd", "1", "-mode", "hvm_build", "-bogus"],
            "error:xenguest: invalid command line '-bogus'\n",
        ),
        (
            &["-controloutfd", "1", "-mode", "frobnicate"],
            "error:xenguest: unrecognized mode 'frobnicate'\n",
        ),
        (
            &["-controloutfd", "1", "-mode", "hvm_build", "-domid", "12x"],
            "error:xenguest: '12x' is not a valid int\n",
        ),
        (
            &["-controloutfd", "1", "-mode", "hvm_build", "-domid", "1"],
            "error:xenguest: missing command line options\n",
        ),
        (
            &["-controloutfd", "1", "-domid", "1"],
            "error:xenguest: no `-mode' option specified\n",
        ),
        // The fd is known from the whole command line once it parsed.
        (
            &["-mode", "hvm_build", "-controloutfd", "1"],
            "error:xenguest: missing command line options\n",
        ),
    ];
    for (args, line) in cases {
        let o = xenguest(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&o), line, "{args:?}");
        let text = line.strip_prefix("error:").unwrap();
        assert!(stderr(&o).contains(text), "{args:?}: {}", stderr(&o));
    }
    // An error before -controloutfd is seen goes to stderr only, as in C.
    let o = xenguest(&["-mode", "hvm_build", "-bogus", "-controloutfd", "1"]);
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    assert!(stderr(&o).contains("xenguest: invalid command line '-bogus'"));
    // A control fd that is not open cannot carry it; stderr still does.
    let o = xenguest(&["-controloutfd", "57", "-mode", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("xenguest: unrecognized mode 'nope'"));
}

#[test]
fn bad_pci_tokens_are_refused_naming_them() {
    let o = xenguest(&hvm_args(&["-pci_passthrough", "0000:03:00.0,zz"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "error:xenguest: main: [22] bad PCI address 'zz' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)\n"
    );
}

#[test]
fn absolute_sim_keys_are_written_as_given() {
    // A key starting with `/` is not under the domain's path (e.g. /mh/limits/*).
    let o = xenguest(&hvm_args(&[
        "-sim-key",
        "/local/domain/3/platform/vcpu/number=3",
        "-sim-key",
        "/local/domain/3/platform/cores-per-socket=2",
    ]));
    assert_eq!(
        stdout(&o),
        "error:Bad cores/socket setting: 2 (nr vcpus 3)\n"
    );
}

#[test]
fn a_closed_control_fd_is_refused_up_front() {
    let mut args = hvm_args(&[]);
    args[1] = "57";
    let o = xenguest(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("fd 57"), "{}", stderr(&o));
}

#[test]
fn supports_answers_on_stdout() {
    // The libxenguest stream engine (the default `xen` feature) gives migration v2, as C.
    let o = xenguest(&["-supports", "migration-v2"]);
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("true\n", Some(0)));
    let o = xenguest(&["-supports", "mem_pnode"]);
    assert_eq!((stdout(&o).as_str(), o.status.code()), ("true\n", Some(0)));
    let o = xenguest(&["-supports", "teleport"]);
    assert_eq!(stdout(&o), "false\n");
}

#[test]
fn without_sim_the_real_backend_is_opened_and_its_failure_reported() {
    if std::path::Path::new("/dev/xen/privcmd").exists() {
        return; // a real Xen host: the open would succeed
    }
    let mut args = hvm_args(&[]);
    let at = args.iter().position(|a| *a == "-sim").unwrap();
    args.drain(at..at + 2);
    let o = xenguest(&args);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "error:xenguest: xc_interface_open: [2] Failed to open xc interface: No such file or directory\n"
    );
    // libxc's own complaint goes to the (quiet) logger, not to stderr.
    assert!(!stderr(&o).contains("xencall: error"), "{}", stderr(&o));
}

/// libxenguest's shadow-op calls bind to the binary's EBUSY-retrying wrappers only if the
/// binary exports them (build.rs).
#[test]
fn the_binary_exports_its_shadow_op_wrappers() {
    let Ok(o) = Command::new("nm")
        .args(["-D", "--defined-only", env!("CARGO_BIN_EXE_xenguest")])
        .output()
    else {
        eprintln!("skipped: nm (binutils) is not installed");
        return;
    };
    let symbols = stdout(&o);
    for name in ["xc_shadow_control", "xc_logdirty_control"] {
        assert!(
            symbols.contains(&format!(" T {name}\n")),
            "{name} in {symbols}"
        );
    }
}
