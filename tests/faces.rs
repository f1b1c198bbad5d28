//! One table of xenopsd argv lists through both faces: the binary (spawned, `-sim`) and the
//! library path the OCaml stubs take (`request::command_of_argv`, then `builder::build`), on
//! the same simulated host. Both must print the same `result:` or `error:` line; the table
//! also pins what that line is.

use std::path::{Path, PathBuf};
use std::process::Command;
use xenguest::builder::{self, BuildEnv, BuildMode, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::request::{self, BuildCommand};
use xenguest::store::{domain_path, MemoryStore, Store};

const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";
const SHIM: &str = "/usr/lib/xen-4.17/boot/xen-shim";
const SPEC: &str = "nodes=2,node_mib=2048";
/// What the binary's `-sim` writes for every domain (xenopsd's platform defaults).
const PLATFORM: [(&str, &str); 4] = [
    ("platform/vcpu/number", "1"),
    ("platform/vcpu/current", "1"),
    ("platform/acpi_s3", "0"),
    ("platform/acpi_s4", "0"),
];

struct Host {
    dir: tempfile::TempDir,
    paths: HostPaths,
}

impl Host {
    fn new() -> Host {
        for f in [HVMLOADER, SHIM] {
            assert!(Path::new(f).exists(), "{f} missing: run `make deps`");
        }
        let dir = tempfile::tempdir().unwrap();
        let ipxe = dir.path().join("ipxe.bin");
        std::fs::write(&ipxe, vec![0x55u8; 8192]).unwrap();
        let pci = dir.path().join("pci");
        for sbdf in ["0000:03:00.0", "0000:04:00.0"] {
            let d = pci.join(sbdf);
            std::fs::create_dir_all(&d).unwrap();
            let mut text = "0x00000000e0000000 0x00000000e0ffffff 0x0000000000040200\n".to_string();
            text += &"0x0000000000000000 0x0000000000000000 0x0000000000000000\n".repeat(6);
            std::fs::write(d.join("resource"), text).unwrap();
            std::fs::write(d.join("vendor"), "0x10de\n").unwrap();
            std::fs::write(d.join("device"), "0x1db4\n").unwrap();
        }
        let paths = HostPaths {
            ipxe,
            ovmf: dir.path().join("OVMF-release.fd"),
            seabios: dir.path().join("bios-256k.bin"),
            sysfs_pci_devices: pci,
        };
        Host { dir, paths }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// The binary, as xenopsd runs it, on a simulated host; its control-fd line.
    fn binary(&self, args: &[String], keys: &[(String, String)]) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xenguest"));
        cmd.args(args).args(["-sim", SPEC]);
        for (k, v) in keys {
            cmd.arg("-sim-key").arg(format!("{k}={v}"));
        }
        let out = cmd
            .env("XENGUEST_IPXE", &self.paths.ipxe)
            .env("XENGUEST_SYSFS_PCI", &self.paths.sysfs_pci_devices)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The stubs' path: the shared argv parser, then the build on a host the toolstack
    /// prepared as the binary's `-sim` does.
    fn library(&self, args: &[String], keys: &[(String, String)]) -> String {
        let argv: Vec<&str> = std::iter::once("xenguest")
            .chain(args.iter().map(String::as_str))
            .collect();
        let BuildCommand { mode, request: req } = match request::command_of_argv(&argv) {
            Ok((_, c)) => c,
            Err(e) => return format!("error:{}", e.wire_text()),
        };
        let host = SimHost::from_spec(SPEC).unwrap();
        let store = MemoryStore::new();
        let base = domain_path(req.domid);
        for (k, v) in PLATFORM {
            store.write(&format!("{base}/{k}"), v).unwrap();
        }
        for (k, v) in keys {
            store.write(k, v).unwrap();
        }
        let max_mem_kib = (req.mem_max_mib << 10) + 1024;
        let config = DomainConfig::of_kind(mode != BuildMode::Pv, req.domid, max_mem_kib, 1);
        host.create_domain(&config).unwrap();
        let env = BuildEnv {
            hv: &host,
            store: &store,
            paths: &self.paths,
        };
        match builder::build(env, mode, &req) {
            Ok(out) => {
                let r = out.result;
                match r.protocol {
                    Some(p) => format!("result:{} {} {p}\n", r.store_mfn, r.console_mfn),
                    None => format!("result:{} {}\n", r.store_mfn, r.console_mfn),
                }
            }
            Err(e) => format!("error:{}", e.wire_text()),
        }
    }
}

/// Name, argv, absolute xenstore keys, the expected line (a prefix when it ends with `:`).
type Case<'a> = (&'a str, Vec<String>, Vec<(String, String)>, String);

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// xenopsd's argv: control fds first, then the mode's words, then the base.
fn xenopsd(mode_words: &[&str], tail: &[&str]) -> Vec<String> {
    let mut v = words(&["-controloutfd", "1", "-controlinfd", "0"]);
    v.extend(words(mode_words));
    v.extend(words(&[
        "-domid",
        "1",
        "-store_port",
        "1",
        "-store_domid",
        "0",
        "-console_port",
        "2",
        "-console_domid",
        "0",
        "-mem_max_mib",
        "512",
        "-mem_start_mib",
        "512",
    ]));
    v.extend(words(tail));
    v
}

#[test]
fn the_binary_and_the_library_path_agree() {
    let host = Host::new();
    let module = host.file("initrd", &[0xa5; 20_000]);
    let big_kernel = host.file("vmlinux", &vec![0u8; 2 << 20]);
    let hvm = ["-mode", "hvm_build", "-image", HVMLOADER];
    let pvh = |image: &str| -> Vec<String> {
        words(&[
            "-mode",
            "pvh_build",
            "-image",
            image,
            "-cmdline",
            "pv-shim console=xen",
            "-features",
            "",
            "-flags",
            "0",
        ])
    };
    let with = |mut a: Vec<String>, extra: Vec<String>| {
        a.extend(extra);
        a
    };
    let pvh_words = |image: &str, extra: &[&str]| {
        let m: Vec<String> = pvh(image);
        let m: Vec<&str> = m.iter().map(String::as_str).collect();
        xenopsd(&m, extra)
    };
    let mut eleven = Vec::new();
    for _ in 0..11 {
        eleven.extend(["-module", module.as_str()]);
    }
    let limit = vec![(
        request::KERNEL_MAX_SIZE_KEY.to_string(),
        "0x100000".to_string(),
    )];
    let bad_pci = "error:xenguest: main: [22] bad PCI address 'zz' in -pci_passthrough \
                   (want SSSS:BB:DD.F or BB:DD.F, hex)\n";
    let too_many =
        "error:xenguest: pvh_build: [22] 11 modules given: a PVH guest takes at most 10\n";
    let big_kernel_error = format!(
        "error:xenguest: xc_dom_kernel_file: [27] {big_kernel}: 2097152 bytes exceeds the limit of 1048576\n"
    );
    let cases: Vec<Case> = vec![
        (
            "hvm",
            xenopsd(&hvm, &[]),
            vec![],
            "result:1044476 1044479\n".into(),
        ),
        (
            "hvm, vGPU, node, force, BB:DD.F passthrough",
            xenopsd(
                &hvm,
                &[
                    "-vgpu",
                    "-mem_pnode",
                    "0",
                    "--force",
                    "-pci_passthrough",
                    "0000:03:00.0,04:00.0",
                ],
            ),
            vec![],
            "result:".into(),
        ),
        (
            "bad PCI token",
            xenopsd(&hvm, &["-pci_passthrough", "0000:03:00.0,zz"]),
            vec![],
            bad_pci.into(),
        ),
        (
            "pvh, modules with and without -cmdline",
            pvh_words(
                SHIM,
                &["-module", &module, "-cmdline", "root=/dev/xvda1", "-module", &module],
            ),
            vec![],
            "result:1044476 1044479\n".into(),
        ),
        (
            "pvh, 11 modules",
            with(pvh_words(SHIM, &[]), words(&eleven)),
            vec![],
            too_many.into(),
        ),
        (
            "pvh, kernel over a 0x100000 limit",
            pvh_words(&big_kernel, &[]),
            limit.clone(),
            big_kernel_error,
        ),
        (
            "missing -image",
            xenopsd(&["-mode", "hvm_build"], &[]),
            vec![],
            "error:xenguest: missing command line options\n".into(),
        ),
        (
            "unknown option",
            xenopsd(&hvm, &["-bogus"]),
            vec![],
            "error:xenguest: invalid command line '-bogus'\n".into(),
        ),
        (
            "bad integer",
            xenopsd(&hvm, &["-mem_pnode", "one"]),
            vec![],
            "error:xenguest: 'one' is not a valid int\n".into(),
        ),
        (
            // Migration modes are the binary's alone (the in-process module builds only).
            "the test mode",
            xenopsd(&["-mode", "test"], &[]),
            vec![],
            "error:xenguest: test: [38] not implemented: test mode not supported\n".into(),
        ),
        (
            "pv, missing kernel",
            xenopsd(
                &[
                    "-mode",
                    "linux_build",
                    "-image",
                    "/nonexistent/vmlinuz",
                    "-cmdline",
                    "",
                    "-ramdisk",
                    "",
                    "-features",
                    "",
                    "-flags",
                    "0",
                ],
                &[],
            ),
            vec![],
            "error:xenguest: xc_dom_kernel_file: [2] /nonexistent/vmlinuz: No such file or directory\n"
                .into(),
        ),
    ];
    for (name, args, keys, want) in cases {
        let binary = host.binary(&args, &keys);
        let library = host.library(&args, &keys);
        assert_eq!(binary, library, "{name}: the faces disagree");
        assert!(
            binary.starts_with(&want) && (want.ends_with(':') || binary == want),
            "{name}: {binary:?}, want {want:?}"
        );
    }
}
