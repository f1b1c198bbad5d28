//! Whole PVH builds on the simulated host: a synthetic PVH kernel (and Debian's xen-shim),
//! modules with command lines, the memory layout, ACPI, start info and boot vCPU, and the
//! refusals (passthrough, too many modules, no PHYS32_ENTRY, gzip bombs).
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "tests read back guest ranges the test itself sized small, and build byte patterns"
)]

mod common;

use common::compress::compress;
use common::{elf_note, pvh_kernel, Fixture};
use std::collections::BTreeMap;
use std::io::Write;
use xenguest::acpi::{self, byte_sum, AcpiConfig};
use xenguest::boot::{self, param};
use xenguest::builder::{BuildMode, BuildOutput};
use xenguest::hypervisor::{FeaturesetKind, HvmBootVcpu, Hypervisor, PciSbdf};
use xenguest::image::bzimage;
use xenguest::image::xen_notes::{self, XenNotes};
use xenguest::request::{BuildRequest, Module};
use xenguest::store::Store;
use xenguest::types::{DomId, E820Entry, E820Type, GuestPhys, MapAddr};

const GIB: u64 = 1 << 30;
const KERNEL_PADDR: u64 = 0x100_0000;
const ENTRY: u32 = 0x100_0040;
const XEN_SHIM: &str = "/usr/lib/xen-4.17/boot/xen-shim";

fn phys32_note(entry: u32) -> Vec<u8> {
    elf_note(b"Xen", xen_notes::PHYS32_ENTRY, &entry.to_le_bytes())
}

fn kernel_code() -> Vec<u8> {
    (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect()
}

fn kernel_bytes(elf64: bool) -> Vec<u8> {
    let mut notes = elf_note(b"Xen", xen_notes::GUEST_OS, b"linux\0");
    notes.extend(phys32_note(ENTRY));
    pvh_kernel(elf64, KERNEL_PADDR, &kernel_code(), 0x3000, &notes)
}

fn module_bytes(i: usize) -> Vec<u8> {
    (0..5000 + 3000 * i)
        .map(|j| (j % 241) as u8 ^ i as u8)
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Pvh {
    fx: Fixture,
    domid: DomId,
    req: BuildRequest,
}

/// A PVH domain of `mem_max_mib` with a kernel file and `nr_modules` modules.
fn pvh(mem_max_mib: u64, mem_start_mib: u64, nr_modules: usize, keys: &[(&str, &str)]) -> Pvh {
    let fx = Fixture::new("nodes=2,node_mib=8192");
    let domid = fx.domain(mem_max_mib, keys);
    let kernel = fx.file("vmlinux", &kernel_bytes(true));
    let mut req = BuildRequest::new(domid, mem_max_mib, mem_start_mib, kernel);
    req.cmdline = "console=hvc0 root=/dev/xvda1 ro".into();
    req.modules = (0..nr_modules)
        .map(|i| Module {
            path: fx.file(&format!("module{i}"), &module_bytes(i)),
            cmdline: if i == 1 {
                String::new()
            } else {
                format!("module {i} args")
            },
        })
        .collect();
    Pvh { fx, domid, req }
}

impl Pvh {
    fn build(&self) -> xenguest::Result<BuildOutput> {
        self.fx.build_mode(BuildMode::Pvh, &self.req)
    }

    fn boot_vcpu(&self) -> HvmBootVcpu {
        let snap = self.fx.host.domain_snapshot(self.domid).unwrap();
        snap.boot_vcpu.expect("boot vCPU set")
    }

    fn read(&self, paddr: u64, len: usize) -> Vec<u8> {
        self.fx.read_guest(self.domid, paddr, len)
    }

    fn c_string(&self, paddr: u64) -> String {
        let bytes = self.read(paddr, 1024);
        let end = bytes.iter().position(|b| *b == 0).expect("NUL");
        String::from_utf8(bytes[..end].to_vec()).unwrap()
    }

    /// An ACPI table in guest memory, its checksum verified.
    fn acpi_table(&self, paddr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let head = self.read(paddr, 8);
        assert_eq!(&head[..4], sig, "table at {paddr:#x}");
        let t = self.read(paddr, u32_at(&head, 4) as usize);
        assert_eq!(byte_sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
        t
    }
}

fn ram(addr: u64, end: u64) -> E820Entry {
    E820Entry {
        addr,
        size: end - addr,
        kind: E820Type::Ram,
    }
}

fn acpi_entry(addr: u64, size: u64) -> E820Entry {
    E820Entry {
        addr,
        size,
        kind: E820Type::Acpi,
    }
}

#[test]
fn golden_4096_mib_with_modules() {
    let p = pvh(
        4096,
        4096,
        2,
        &[
            ("platform/vcpu/number", "4"),
            ("platform/vcpu/current", "2"),
            ("platform/apic", "1"),
        ],
    );
    let out = p.build().unwrap();
    assert_eq!(out.result.wire_text(), "1044476 1044479");
    assert_eq!(out.report.mode, "pvh_build");

    // e820: RAM from 0, the three ACPI modules (the RSDP page overlapping RAM), high RAM.
    let tables = acpi::build_pvh(&AcpiConfig {
        nr_vcpus: 4,
        vcpus_online: 2,
        apic_mode: 1,
    })
    .unwrap();
    let table_bytes = tables.tables.data.len() as u64;
    let expected = [
        ram(0, 0xF000_0000),
        acpi_entry(0xFF000, 0x1000),
        acpi_entry(0xFC00_0000, 0x1000),
        acpi_entry(0xFC00_1000, table_bytes),
        ram(4 * GIB, 0x1_1000_0000),
    ];
    let snap = p.fx.host.domain_snapshot(p.domid).unwrap();
    assert_eq!(snap.e820.as_deref(), Some(&expected[..]));
    assert_eq!(out.report.layout.as_ref().unwrap().e820, expected);

    // Memory: 3 x 1 GiB from gfn 0 (no VGA hole), 2 MiB for [3, 3.75) GiB and high RAM.
    let by_order = &out.report.memory.ram.pages_by_order;
    assert_eq!(by_order.get(&18), Some(&(3 << 18)));
    assert_eq!(by_order.get(&9), Some(&(512 << 9)));
    assert_eq!(by_order.get(&0), None, "no 4 KiB RAM pages");
    let first_1g =
        p.fx.host
            .trace_for(p.domid)
            .into_iter()
            .find(|t| t.kind == "domain_populate_physmap")
            .unwrap();
    assert!(first_1g.detail.contains("order=18"), "{}", first_1g.detail);
    let acpi_pages = 1 + table_bytes / 4096;
    assert_eq!(
        snap.ram_pages_by_order,
        BTreeMap::from([
            (18, 3 << 18),
            (9, 512 << 9),
            (0, boot::NR_SPECIAL_PAGES + acpi_pages)
        ]),
        "RAM, then special and ACPI pages at 4 KiB"
    );
    assert_eq!(
        snap.repopulated_pages, 0,
        "the RSDP page is not populated twice"
    );
    assert_eq!(
        snap.tot_pages,
        (4096 << 8) + boot::NR_SPECIAL_PAGES + acpi_pages
    );

    // The kernel at its physical address, bss cleared.
    let code = kernel_code();
    assert_eq!(p.read(KERNEL_PADDR, code.len()), code);
    assert!(p
        .read(KERNEL_PADDR + code.len() as u64, 0x3000)
        .iter()
        .all(|b| *b == 0));

    // Boot vCPU: flat 32-bit entry at PHYS32_ENTRY, ebx = start info, MTRRs write-back.
    let vcpu = p.boot_vcpu();
    assert_eq!(vcpu.entry, ENTRY);
    assert!(vcpu.mtrr_write_back);

    // hvm_start_info: magic, cmdline, modules with their bytes and cmdlines, rsdp_paddr.
    let si_paddr = u64::from(vcpu.start_info_paddr);
    let si = p.read(si_paddr, boot::START_INFO_BYTES);
    assert_eq!(
        (u32_at(&si, 0), u32_at(&si, 4)),
        (boot::START_INFO_MAGIC, 1)
    );
    assert_eq!(
        p.c_string(u64_at(&si, 24)),
        "console=hvc0 root=/dev/xvda1 ro"
    );
    assert_eq!(u64_at(&si, 32), 0xFFFC0, "rsdp_paddr");
    assert_eq!(u32_at(&si, 12), 2);
    let modlist = u64_at(&si, 16);
    let mut prev_end = KERNEL_PADDR + code.len() as u64 + 0x3000;
    for i in 0..2 {
        let e = p.read(modlist + 32 * i as u64, 32);
        let (paddr, size) = (u64_at(&e, 0), u64_at(&e, 8));
        assert_eq!(p.read(paddr, size as usize), module_bytes(i), "module {i}");
        assert!(
            paddr >= prev_end && paddr % 4096 == 0,
            "module {i} after the last"
        );
        prev_end = paddr + size;
        let cmdline = p.c_string(u64_at(&e, 16));
        assert_eq!(
            cmdline,
            if i == 1 {
                String::new()
            } else {
                format!("module {i} args")
            }
        );
    }
    assert!(si_paddr >= prev_end, "start info after the modules");

    // ACPI in guest memory: RSDP at 0xFFFC0, XSDT -> MADT with 4 LAPICs (ids 0, 2, 4, 6),
    // the first 2 enabled; FADT -> DSDT.
    let rsdp = p.read(0xFFFC0, 64);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(byte_sum(&rsdp[..20]), 0);
    assert_eq!(byte_sum(&rsdp[..36]), 0);
    let xsdt = p.acpi_table(u64_at(&rsdp, 24), b"XSDT");
    let rsdt = p.acpi_table(u32_at(&rsdp, 16).into(), b"RSDT");
    assert_eq!((xsdt.len(), rsdt.len()), (52, 44));
    let fadt = p.acpi_table(u64_at(&xsdt, 36), b"FACP");
    let dsdt = p.acpi_table(u64_at(&fadt, 140), b"DSDT");
    assert_eq!(dsdt, acpi::dsdt_pvh());
    let madt = p.acpi_table(u64_at(&xsdt, 44), b"APIC");
    let lapics: Vec<(u8, u8, u32)> = madt[44..]
        .chunks(8)
        .map(|e| (e[2], e[3], u32_at(e, 4)))
        .collect();
    assert_eq!(lapics, vec![(0, 0, 1), (1, 2, 1), (2, 4, 0), (3, 6, 0)]);
    let info = p.read(acpi::ACPI_INFO_ADDRESS, 20);
    assert_eq!(
        u16::from_le_bytes([info[2], info[3]]),
        4,
        "acpi_info nr_cpus"
    );

    // Special pages and params; no device model, so no ioreq-server pages.
    let params = &snap.hvm_params;
    assert_eq!(params[&param::STORE_PFN], 0xFEFFC);
    assert_eq!(params[&param::CONSOLE_PFN], 0xFEFFF);
    assert_eq!(params[&param::IDENT_PT], 0xFEFFE000);
    assert_eq!(params[&param::TRIPLE_FAULT_REASON], boot::SHUTDOWN_CRASH);
    assert_eq!(params[&param::STORE_EVTCHN], 1);
    assert_eq!(params[&param::CONSOLE_EVTCHN], 2);
    assert!(!params.contains_key(&param::IOREQ_SERVER_PFN));
    assert!(!params.contains_key(&param::NR_IOREQ_SERVER_PAGES));
    assert!(snap.tot_pages < snap.max_pages);
    assert!(p.fx.host.check_accounting().is_ok());
}

#[test]
fn ioreq_server_pages_are_not_populated() {
    let p = pvh(1024, 1024, 0, &[]);
    p.build().unwrap();
    use xenguest::hypervisor::Hypervisor;
    let mut b = [0u8; 1];
    assert!(p
        .fx
        .host
        .read_guest(
            p.domid,
            MapAddr::phys(GuestPhys(boot::IOREQ_SERVER_GFN.paddr())),
            &mut b
        )
        .is_err());
    // Nothing in the VGA hole is skipped: gfn 0xA0 is RAM.
    assert!(p
        .fx
        .host
        .read_guest(p.domid, MapAddr::phys(GuestPhys(0xA0000)), &mut b)
        .is_ok());
}

#[test]
fn small_guest_without_high_ram_and_an_elf32_kernel() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(768, &[]);
    let mut notes = phys32_note(ENTRY);
    notes.extend(elf_note(b"GNU", 3, b"build-id"));
    let kernel = fx.file(
        "vmlinux32",
        &pvh_kernel(false, KERNEL_PADDR, &kernel_code(), 0, &notes),
    );
    let req = BuildRequest::new(domid, 768, 768, kernel);
    let out = fx.build_mode(BuildMode::Pvh, &req).unwrap();
    let snap = fx.host.domain_snapshot(domid).unwrap();
    let e820 = snap.e820.unwrap();
    assert_eq!(e820[0], ram(0, 768 << 20));
    assert_eq!(e820.len(), 4, "no high RAM");
    assert_eq!(out.report.memory.ram.pages_by_order.get(&18), None);
    assert_eq!(
        out.report.memory.ram.pages_by_order.get(&9),
        Some(&(384 << 9))
    );
    // One vCPU, no platform/apic: libacpi builds no MADT.
    let rsdp = fx.read_guest(domid, 0xFFFC0, 64);
    let xsdt = fx.read_guest(domid, u64_at(&rsdp, 24), 44);
    assert_eq!(u32_at(&xsdt, 4), 44, "FADT only");
    // An empty kernel command line is still given, as "".
    let si = fx.read_guest(domid, snap.boot_vcpu.unwrap().start_info_paddr.into(), 56);
    assert_eq!(fx.read_guest(domid, u64_at(&si, 24), 1), [0]);
    assert_eq!(u32_at(&si, 12), 0, "no modules");
}

#[test]
fn pod_when_start_is_below_max() {
    let p = pvh(4096, 2048, 1, &[]);
    let out = p.build().unwrap();
    assert_eq!(out.report.memory.pod_target_pages, Some(2048 << 8));
    let snap = p.fx.host.domain_snapshot(p.domid).unwrap();
    assert!(snap.pod_entries > 0);
    assert!(snap.tot_pages <= (2048 << 8) + 64);
    // Module and start info are readable through PoD memory.
    let si = p.read(p.boot_vcpu().start_info_paddr.into(), 56);
    assert_eq!(u32_at(&si, 0), boot::START_INFO_MAGIC);
    assert!(p.fx.host.check_accounting().is_ok());
}

#[test]
fn up_to_ten_modules_are_listed_and_eleven_refused() {
    let mut p = pvh(2048, 2048, 10, &[]);
    p.build().unwrap();
    let si = p.read(p.boot_vcpu().start_info_paddr.into(), 56);
    assert_eq!(u32_at(&si, 12), 10);
    let modlist = u64_at(&si, 16);
    for i in 0..10 {
        let e = p.read(modlist + 32 * i as u64, 32);
        assert_eq!(
            p.read(u64_at(&e, 0), u64_at(&e, 8) as usize),
            module_bytes(i)
        );
        if i != 1 {
            assert_eq!(p.c_string(u64_at(&e, 16)), format!("module {i} args"));
        }
    }

    let extra = p.req.modules[0].clone();
    p.req.modules.push(extra);
    let e = p.build().unwrap_err();
    assert_eq!(e.step(), "pvh_build");
    assert!(
        e.to_string()
            .contains("11 modules given: a PVH guest takes at most 10"),
        "{e}"
    );
}

#[test]
fn without_a_featureset_pvh_gets_the_hvm_maximum() {
    // Not the C quirk (PV maximum): a PVH kernel needs HVM features such as PGE.
    let p = pvh(
        1024,
        1024,
        0,
        &[("platform/nx", "true"), ("platform/pae", "true")],
    );
    p.build().unwrap();
    let hvm_max =
        p.fx.host
            .get_cpu_featureset(FeaturesetKind::HvmMax)
            .unwrap();
    let applied =
        p.fx.host
            .domain_snapshot(p.domid)
            .unwrap()
            .cpuid_policy
            .unwrap();
    assert_eq!(applied.featureset, hvm_max);
}

#[test]
fn passthrough_is_refused_as_in_c() {
    let mut p = pvh(1024, 1024, 0, &[]);
    p.req.pci_passthrough = vec![PciSbdf {
        seg: 0,
        bus: 3,
        dev: 0,
        func: 0,
    }];
    let e = p.build().unwrap_err();
    assert_eq!(e.step(), "pvh_setup_mem");
    assert_eq!(
        e.wire_text(),
        "xenguest: pvh_setup_mem: [22] PCI passthrough not supported under PVH\n"
    );
    // With PoD the safety check speaks first, as in C.
    p.req.mem_start_mib = 512;
    assert_eq!(
        p.build().unwrap_err().to_string(),
        "Populate on Demand and PCI Passthrough are mutually exclusive"
    );
}

#[test]
fn a_kernel_without_phys32_entry_is_refused_naming_the_note() {
    let fx = Fixture::new("nodes=1,node_mib=2048");
    let domid = fx.domain(512, &[]);
    let pv_only = elf_note(b"Xen", xen_notes::GUEST_OS, b"linux\0");
    for (name, notes) in [("pv-only", pv_only), ("no-notes", Vec::new())] {
        let kernel = fx.file(name, &pvh_kernel(true, KERNEL_PADDR, b"code", 0, &notes));
        let e = fx
            .build_mode(BuildMode::Pvh, &BuildRequest::new(domid, 512, 512, kernel))
            .unwrap_err();
        assert_eq!(e.step(), "xc_dom_parse_image", "{name}");
        assert!(
            e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"),
            "{name}: {e}"
        );
    }
    let outside = fx.file(
        "outside",
        &pvh_kernel(true, KERNEL_PADDR, b"code", 0, &phys32_note(0x10)),
    );
    let e = fx
        .build_mode(BuildMode::Pvh, &BuildRequest::new(domid, 512, 512, outside))
        .unwrap_err();
    assert!(e.to_string().contains("out of bounds"), "{e}");
    let dom0 = fx.file(
        "dom0-only",
        &pvh_kernel(true, KERNEL_PADDR, b"code", 0, &{
            let mut n = phys32_note(KERNEL_PADDR as u32);
            n.extend(elf_note(b"Xen", xen_notes::FEATURES, b"!dom0\0"));
            n
        }),
    );
    let e = fx
        .build_mode(BuildMode::Pvh, &BuildRequest::new(domid, 512, 512, dom0))
        .unwrap_err();
    assert!(e.to_string().contains("unprivileged (DomU)"), "{e}");
    // Nothing was populated: the checks come before memory.
    assert_eq!(fx.host.domain_snapshot(domid).unwrap().tot_pages, 0);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_gzip_kernel_and_module_are_inflated() {
    let mut p = pvh(1024, 1024, 1, &[]);
    p.req.image = p.fx.file("vmlinux.gz", &gzip(&kernel_bytes(true)));
    p.req.modules[0].path = p.fx.file("initrd.gz", &gzip(&module_bytes(0)));
    p.build().unwrap();
    let code = kernel_code();
    assert_eq!(p.read(KERNEL_PADDR, code.len()), code);
    let si = p.read(p.boot_vcpu().start_info_paddr.into(), 56);
    let e = p.read(u64_at(&si, 16), 32);
    assert_eq!(
        p.read(u64_at(&e, 0), u64_at(&e, 8) as usize),
        module_bytes(0),
        "libxenguest hands gzip modules over inflated"
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    let p = pvh(1024, 1024, 1, &[]);
    p.fx.store
        .write("/mh/limits/pv-kernel-max_size", "0x100000")
        .unwrap();
    let mut bomb = kernel_bytes(true);
    bomb.resize(64 << 20, 0);
    let mut req = p.req.clone();
    req.image = p.fx.file("bomb.gz", &gzip(&bomb));
    let e = p.fx.build_mode(BuildMode::Pvh, &req).unwrap_err();
    assert_eq!(e.step(), "xc_dom_kernel_file");
    assert_eq!(e.code(), libc::EFBIG);
    assert!(
        e.to_string()
            .contains("more than the limit of 1048576 bytes"),
        "{e}"
    );

    // A plain file over the limit is refused when read; a module over its own limit too.
    p.fx.store
        .write("/mh/limits/pv-ramdisk-max_size", "4096")
        .unwrap();
    let e = p.fx.build_mode(BuildMode::Pvh, &p.req).unwrap_err();
    assert_eq!(
        (e.step().wire_name(), e.code()),
        ("xc_dom_module_file", libc::EFBIG)
    );
}

#[test]
fn bzimage_kernels_of_every_compression_build() {
    // As libxenguest's bzImage loader does for an HVM container: the payload is the PVH ELF.
    for format in ["gzip", "bzip2", "xz", "lzma", "zstd", "lz4", "lzo"] {
        let mut p = pvh(1024, 1024, 1, &[]);
        let img = bzimage::wrap(&compress(format, &kernel_bytes(true)), 27, 0x020f);
        p.req.image = p.fx.file("vmlinuz", &img);
        p.build().unwrap_or_else(|e| panic!("{format}: {e}"));
        let code = kernel_code();
        assert_eq!(p.read(KERNEL_PADDR, code.len()), code, "{format}");
        assert_eq!(p.boot_vcpu().entry, ENTRY, "{format}");
    }
}

#[test]
fn a_compressed_file_that_is_no_bzimage_is_refused() {
    // libxenguest decompresses gzip files and bzImage payloads only: "no loader found".
    let mut p = pvh(1024, 1024, 0, &[]);
    p.req.image =
        p.fx.file("vmlinux.xz", &compress("xz", &kernel_bytes(true)));
    let e = p.build().unwrap_err();
    assert_eq!(
        (e.step().wire_name(), e.code()),
        ("xc_dom_parse_image", libc::EINVAL),
        "{e}"
    );
}

#[test]
fn debian_xen_shim_builds() {
    assert!(
        std::path::Path::new(XEN_SHIM).exists(),
        "{XEN_SHIM} missing: run `make deps` (xen-utils-4.17)"
    );
    let image = std::fs::read(XEN_SHIM).unwrap();
    let elf = xenguest::image::elf::Elf::parse(&image).unwrap();
    let notes = XenNotes::from_elf(&elf).unwrap();
    let entry = notes.phys32_entry.expect("xen-shim is PVH-capable");

    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(1024, &[("platform/vcpu/number", "2")]);
    let kernel = fx.file("vmlinux", &kernel_bytes(true));
    let mut req = BuildRequest::new(domid, 1024, 1024, XEN_SHIM);
    req.cmdline = "pv-shim console=xen,pv shim_mem=1024M".into();
    req.modules = vec![Module {
        path: kernel,
        cmdline: "root=/dev/xvda1".into(),
    }];
    let out = fx.build_mode(BuildMode::Pvh, &req).unwrap();
    assert_eq!(out.result.wire_text(), "1044476 1044479");
    let snap = fx.host.domain_snapshot(domid).unwrap();
    assert_eq!(snap.boot_vcpu.unwrap().entry, entry);
    let seg = elf.segments[0];
    assert_eq!(
        fx.read_guest(domid, seg.paddr, seg.filesz as usize),
        elf.segment_bytes(&seg)
    );
}

/// The `dsdt_pvh` bytes in Debian's libxenlight (exported, in `.data`), if installed.
fn libxenlight_dsdt_pvh() -> Option<Vec<u8>> {
    let lib = std::fs::read("/usr/lib/x86_64-linux-gnu/libxenlight.so.4.17.0").ok()?;
    let u16_at = |at: usize| u16::from_le_bytes(lib[at..at + 2].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(&lib, 0x28) as usize, u16_at(0x3A), u16_at(0x3C));
    let sections: Vec<&[u8]> = (0..shnum)
        .map(|i| &lib[shoff + i * shentsize..shoff + (i + 1) * shentsize])
        .collect();
    let dynsym = sections.iter().find(|s| u32_at(s, 4) == 11)?; // SHT_DYNSYM
    let strtab = sections[u32_at(dynsym, 40) as usize];
    let (sym_off, sym_size) = (u64_at(dynsym, 24) as usize, u64_at(dynsym, 32) as usize);
    let str_off = u64_at(strtab, 24) as usize;
    let value = (sym_off..sym_off + sym_size).step_by(24).find_map(|at| {
        let name_at = str_off + u32_at(&lib, at) as usize;
        let name = &lib[name_at..name_at + 9];
        (name == b"dsdt_pvh\0").then(|| u64_at(&lib, at + 8))
    })?;
    // The section holding the address maps it to a file offset.
    let sec = sections.iter().find(|s| {
        let (addr, size) = (u64_at(s, 16), u64_at(s, 32));
        u32_at(s, 4) == 1 && value >= addr && value < addr + size // SHT_PROGBITS
    })?;
    let off = (value - u64_at(sec, 16) + u64_at(sec, 24)) as usize;
    let len = u32_at(&lib, off + 4) as usize;
    Some(lib[off..off + len].to_vec())
}

#[test]
fn dsdt_is_byte_for_byte_libxenlight_s() {
    let Some(theirs) = libxenlight_dsdt_pvh() else {
        eprintln!("libxenlight.so.4.17.0 not installed: skipped");
        return;
    };
    assert_eq!(acpi::dsdt_pvh(), theirs);
}

#[test]
fn the_binary_builds_pvh_with_paired_modules() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let kernel = fx.file("vmlinux", &kernel_bytes(true));
    let m0 = fx.file("m0", &module_bytes(0));
    let m1 = fx.file("m1", &module_bytes(1));
    let report = fx.dir.path().join("report.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_xenguest"))
        .args(["-controloutfd", "1", "-mode", "pvh_build", "-image"])
        .arg(&kernel)
        .args(["-domid", "4", "-store_port", "5", "-console_port", "6"])
        .args(["-mem_max_mib", "512", "-mem_start_mib", "512"])
        .args(["-cmdline", "console=hvc0", "-module"])
        .arg(&m0)
        .args(["-module"])
        .arg(&m1)
        .args(["-cmdline", "first module", "-features", "", "-flags", "0"])
        .args(["-sim", "nodes=1,node_mib=1024", "-report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "result:1044476 1044479\n",
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success());
    let json = std::fs::read_to_string(report).unwrap();
    assert!(json.contains("pvh_build"), "{json}");
}
