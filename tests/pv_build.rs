//! Whole PV builds (`linux_build`) on the simulated host, where the domain is not translated
//! and Xen hands back MFNs: the layout, every page-table mapping walked from CR3 in guest
//! memory, the p2m list, start_info, the boot vCPU, compressed kernels of every format,
//! limits and bombs, and failures.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "tests read back guest ranges the test itself sized small, and build byte patterns"
)]

mod common;

use common::compress::compress;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xenguest::abi::SIF_MOD_START_PFN;
use xenguest::builder::{self, BuildEnv, BuildMode, BuildOutput, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, Fault, GfnState, SimHost};
use xenguest::hypervisor::Hypervisor;
use xenguest::image::bzimage;
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::{DomId, MapAddr, MapFrame, Mfn};
use xenguest::{Error, ErrorKind};

const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
const PADDR: u64 = 0x100_0000;
const KSTART: u64 = VIRT_BASE + PADDR;
const ENTRY: u64 = KSTART + 0x40;
const HYPERCALL: u64 = KSTART + 0x2000;
const INIT_P2M: u64 = 0x80_0000_0000;

/// Offsets in the x86_64 `start_info_t` (xen-project/xen RELEASE-4.17.0,
/// `xen/include/public/xen.h` lines 828-860), written out here so the test checks the bytes
/// independently of `xenguest::abi`.
mod si {
    pub const NR_PAGES: usize = 32;
    pub const SHARED_INFO: usize = 40;
    pub const FLAGS: usize = 48;
    pub const STORE_MFN: usize = 56;
    pub const STORE_EVTCHN: usize = 64;
    pub const CONSOLE_MFN: usize = 72;
    pub const CONSOLE_EVTCHN: usize = 80;
    pub const PT_BASE: usize = 88;
    pub const NR_PT_FRAMES: usize = 96;
    pub const MFN_LIST: usize = 104;
    pub const MOD_START: usize = 112;
    pub const MOD_LEN: usize = 120;
    pub const CMD_LINE: usize = 128;
    pub const FIRST_P2M_PFN: usize = 1152;
    pub const NR_P2M_FRAMES: usize = 1160;
}

/// What the synthetic kernel declares.
#[derive(Clone)]
struct KernelSpec {
    code_bytes: usize,
    bss: u64,
    init_p2m: bool,
    elf32: bool,
    guest_os: &'static str,
    loader: &'static str,
    features: &'static str,
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec {
            code_bytes: 3 << 20,
            bss: 0x4_0000,
            init_p2m: false,
            elf32: false,
            guest_os: "linux",
            loader: "generic",
            features: "!writable_page_tables|pae_pgdir_above_4gb",
        }
    }
}

fn note(kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&4u32.to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&kind.to_le_bytes());
    n.extend_from_slice(b"Xen\0");
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

fn code(spec: &KernelSpec) -> Vec<u8> {
    (0..spec.code_bytes)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

/// An ELF64 (or ELF32) PV kernel: one PT_LOAD at physical 16 MiB / virtual VIRT_BASE + 16
/// MiB, and a PT_NOTE with the Xen notes Linux carries.
fn pv_kernel(spec: &KernelSpec) -> Vec<u8> {
    let mut notes = Vec::new();
    let str_note = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    notes.extend(note(6, &str_note(spec.guest_os)));
    notes.extend(note(7, &str_note("2.6")));
    notes.extend(note(5, &str_note("xen-3.0")));
    notes.extend(note(3, &VIRT_BASE.to_le_bytes()));
    notes.extend(note(4, &0u64.to_le_bytes()));
    notes.extend(note(1, &ENTRY.to_le_bytes()));
    notes.extend(note(2, &HYPERCALL.to_le_bytes()));
    notes.extend(note(10, &str_note(spec.features)));
    notes.extend(note(9, &str_note("yes")));
    notes.extend(note(8, &str_note(spec.loader)));
    if spec.init_p2m {
        notes.extend(note(15, &INIT_P2M.to_le_bytes()));
        notes.extend(note(16, &1u32.to_le_bytes()));
    }
    let code = code(spec);
    if spec.elf32 {
        return elf32(&code, &notes);
    }
    let phoff = 64u64;
    let data_at = 0x1000u64;
    let note_at = data_at + code.len() as u64;
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2;
    v[5] = 1;
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes());
    v[18..20].copy_from_slice(&62u16.to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&ENTRY.to_le_bytes());
    v[32..40].copy_from_slice(&phoff.to_le_bytes());
    v[52..54].copy_from_slice(&64u16.to_le_bytes());
    v[54..56].copy_from_slice(&56u16.to_le_bytes());
    v[56..58].copy_from_slice(&2u16.to_le_bytes());
    let mut ph = |p_type: u32, off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64| {
        v.extend_from_slice(&p_type.to_le_bytes());
        v.extend_from_slice(&7u32.to_le_bytes());
        for x in [off, vaddr, paddr, filesz, memsz, 0x1000] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    };
    let len = code.len() as u64;
    ph(1, data_at, KSTART, PADDR, len, len + spec.bss);
    ph(4, note_at, 0, 0, notes.len() as u64, notes.len() as u64);
    v.resize(data_at as usize, 0);
    v.extend_from_slice(&code);
    v.extend_from_slice(&notes);
    v
}

fn elf32(code: &[u8], notes: &[u8]) -> Vec<u8> {
    let data_at = 0x1000u32;
    let note_at = data_at + code.len() as u32;
    let mut v = vec![0u8; 52];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 1;
    v[5] = 1;
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes());
    v[18..20].copy_from_slice(&3u16.to_le_bytes());
    v[24..28].copy_from_slice(&0xc010_0000u32.to_le_bytes());
    v[28..32].copy_from_slice(&52u32.to_le_bytes());
    v[42..44].copy_from_slice(&32u16.to_le_bytes());
    v[44..46].copy_from_slice(&2u16.to_le_bytes());
    let mut ph = |p_type: u32, off: u32, addr: u32, filesz: u32| {
        for x in [p_type, off, addr, addr & 0x0fff_ffff, filesz, filesz, 7, 4] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    };
    ph(1, data_at, 0xc010_0000, code.len() as u32);
    ph(4, note_at, 0, notes.len() as u32);
    v.resize(data_at as usize, 0);
    v.extend_from_slice(code);
    v.extend_from_slice(notes);
    v
}

struct Fixture {
    host: SimHost,
    store: MemoryStore,
    paths: HostPaths,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            host: SimHost::from_spec(spec).unwrap(),
            store: MemoryStore::new(),
            paths: HostPaths {
                ipxe: dir.path().join("none"),
                ovmf: dir.path().join("none"),
                seabios: dir.path().join("none"),
                sysfs_pci_devices: dir.path().join("none"),
            },
            dir,
        }
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    fn domain(&self, mib: u64) -> DomId {
        let d = self
            .host
            .create_domain(&DomainConfig::pv((mib << 10) + 1024, 2))
            .unwrap();
        for (k, v) in [
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/current", "2"),
        ] {
            self.store
                .write(&format!("{}/{k}", domain_path(d)), v)
                .unwrap();
        }
        d
    }

    fn build(&self, req: &BuildRequest) -> xenguest::Result<BuildOutput> {
        builder::build(
            BuildEnv {
                hv: &self.host,
                store: &self.store,
                paths: &self.paths,
            },
            BuildMode::Pv,
            req,
        )
    }

    fn request(&self, d: DomId, mib: u64, kernel: &Path, ramdisk: Option<PathBuf>) -> BuildRequest {
        let mut req = BuildRequest::new(d, mib, mib, kernel);
        req.ramdisk = ramdisk;
        req.cmdline = "root=/dev/xvda1 console=hvc0".into();
        req.store_port = 7;
        req.console_port = 8;
        req
    }

    fn page(&self, d: DomId, mfn: u64) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        self.host
            .read_guest(d, MapAddr::machine(Mfn(mfn), 0), &mut buf)
            .unwrap();
        buf
    }

    fn mfn_of(&self, d: DomId, pfn: u64) -> u64 {
        match self.host.lookup_gfn(d, pfn) {
            Some(GfnState::Ram { mfn }) => mfn,
            other => panic!("pfn {pfn:#x}: {other:?}"),
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Every leaf mapping reachable from the L4: canonical virtual address -> (mfn, writable),
/// and the set of table frames.
fn walk(fx: &Fixture, d: DomId, l4: u64) -> (BTreeMap<u64, (u64, bool)>, BTreeSet<u64>) {
    let mut leaves = BTreeMap::new();
    let mut tables = BTreeSet::from([l4]);
    let mut stack = vec![(l4, 3u32, 0u64)];
    while let Some((mfn, level, va_base)) = stack.pop() {
        let page = fx.page(d, mfn);
        for i in 0..512usize {
            let e = u64_at(&page, i * 8);
            if e & 1 == 0 {
                continue;
            }
            assert_eq!(e & 0x80, 0, "no superpages");
            let target = (e & 0x000f_ffff_ffff_f000) >> 12;
            let va = va_base | ((i as u64) << (12 + 9 * level));
            if level == 0 {
                let canon = if va & (1 << 47) != 0 {
                    va | 0xffff_0000_0000_0000
                } else {
                    va
                };
                assert_eq!(e & 0xfff, if e & 2 != 0 { 0x23 } else { 0x21 });
                assert!(leaves.insert(canon, (target, e & 2 != 0)).is_none());
            } else {
                assert_eq!(e & 0xfff, 0x67, "upper-level protection");
                assert!(tables.insert(target), "table {target:#x} reached twice");
                stack.push((target, level - 1, va));
            }
        }
    }
    (leaves, tables)
}

/// Read `len` bytes at virtual `va` through the walked mappings.
fn read_virt(
    fx: &Fixture,
    d: DomId,
    leaves: &BTreeMap<u64, (u64, bool)>,
    va: u64,
    len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut at = va;
    while out.len() < len {
        let (mfn, _) = leaves[&(at & !0xfff)];
        let page = fx.page(d, mfn);
        let off = (at & 0xfff) as usize;
        let n = (4096 - off).min(len - out.len());
        out.extend_from_slice(&page[off..off + n]);
        at += n as u64;
    }
    out
}

/// The whole check of a built guest; returns the start_info page.
fn check_guest(
    fx: &Fixture,
    d: DomId,
    out: &BuildOutput,
    spec: &KernelSpec,
    ramdisk: Option<&[u8]>,
    mib: u64,
) -> Vec<u8> {
    let snap = fx.host.domain_snapshot(d).unwrap();
    let total = mib << 8;
    assert_eq!(snap.tot_pages, total);
    fx.host.check_accounting().unwrap();
    let ctx = snap.pv_vcpu.expect("vCPU 0 context");
    let l4 = ctx.cr3 >> 12;
    assert_eq!(snap.pinned_l4_mfn, Some(l4), "the L4 is pinned");
    assert_eq!(ctx.rip, ENTRY);
    assert_eq!((ctx.cs, ctx.ss, ctx.ds), (0xe033, 0xe02b, 0));
    assert_eq!(ctx.flags, (1 << 2) | (1 << 5));
    assert_eq!(ctx.rflags, 1 << 9);
    assert_eq!(ctx.kernel_sp, ctx.rsp);
    assert_eq!(snap.address_size, 64);

    // start_info at rsi.
    let si_pfn = (ctx.rsi - VIRT_BASE) >> 12;
    let start = fx.page(d, fx.mfn_of(d, si_pfn));
    assert_eq!(&start[..15], b"xen-3.0-x86_64\0");
    assert_eq!(u64_at(&start, si::NR_PAGES), total);
    assert_eq!(u64_at(&start, si::SHARED_INFO), snap.shared_info_mfn << 12);
    let store_mfn = u64_at(&start, si::STORE_MFN);
    let console_mfn = u64_at(&start, si::CONSOLE_MFN);
    assert_eq!(
        store_mfn,
        fx.mfn_of(d, si_pfn + 1),
        "xenstore follows start_info"
    );
    assert_eq!(console_mfn, fx.mfn_of(d, si_pfn + 2));
    assert_eq!(
        out.result.wire_text(),
        format!("{store_mfn} {console_mfn} x86_64-abi")
    );
    assert_eq!(
        (
            u32_at(&start, si::STORE_EVTCHN),
            u32_at(&start, si::CONSOLE_EVTCHN)
        ),
        (7, 8)
    );
    let grants = snap.grants.unwrap();
    assert_eq!(
        (grants.console, grants.xenstore),
        (
            MapFrame::Mfn(Mfn(console_mfn)),
            MapFrame::Mfn(Mfn(store_mfn))
        )
    );
    let cmd = &start[si::CMD_LINE..si::CMD_LINE + 40];
    assert!(cmd.starts_with(b"root=/dev/xvda1 console=hvc0\0"));
    let pt_base = u64_at(&start, si::PT_BASE);
    let nr_pt = u64_at(&start, si::NR_PT_FRAMES);
    assert_eq!(
        fx.mfn_of(d, (pt_base - VIRT_BASE) >> 12),
        l4,
        "pt_base is the L4"
    );
    assert_eq!(
        ctx.rsp,
        pt_base + (nr_pt + 1) * 4096,
        "boot stack after the tables"
    );

    // Every mapping.
    let (leaves, tables) = walk(fx, d, l4);
    let initial: Vec<u64> = leaves
        .keys()
        .copied()
        .filter(|&va| va >= VIRT_BASE)
        .collect();
    let n = initial.len() as u64;
    assert_eq!(initial.first(), Some(&VIRT_BASE));
    assert_eq!(
        initial.last(),
        Some(&(VIRT_BASE + (n - 1) * 4096)),
        "contiguous"
    );
    assert_eq!(n % 1024, 0, "ends on a 4 MiB boundary");
    assert!(
        VIRT_BASE + n * 4096 >= ctx.rsp + (512 << 10),
        "512 KiB past the stack"
    );
    for (i, va) in initial.iter().enumerate() {
        let (mfn, rw) = leaves[va];
        assert_eq!(mfn, fx.mfn_of(d, i as u64), "va {va:#x} maps pfn {i:#x}");
        assert_eq!(
            rw,
            !tables.contains(&mfn),
            "page tables (only) are read-only"
        );
    }
    let p2m_va = u64_at(&start, si::MFN_LIST);
    let p2m_leaves = leaves.len() as u64 - n;
    if spec.init_p2m {
        assert_eq!(p2m_va, INIT_P2M);
        assert_eq!(
            p2m_leaves,
            total * 8 / 4096,
            "the p2m mapping covers the list"
        );
        let first = u64_at(&start, si::FIRST_P2M_PFN);
        let frames = u64_at(&start, si::NR_P2M_FRAMES);
        assert_eq!(frames, total * 8 / 4096 + (tables.len() as u64 - nr_pt));
        assert_eq!(leaves[&INIT_P2M].0, fx.mfn_of(d, first));
    } else {
        assert_eq!(p2m_leaves, 0);
        assert_eq!(
            tables.len() as u64,
            nr_pt,
            "nr_pt_frames counts every table"
        );
        assert_eq!(u64_at(&start, si::FIRST_P2M_PFN), 0);
    }
    // The p2m list.
    let list = read_virt(fx, d, &leaves, p2m_va, (total * 8) as usize);
    for pfn in 0..total {
        assert_eq!(
            u64_at(&list, pfn as usize * 8),
            fx.mfn_of(d, pfn),
            "p2m[{pfn:#x}]"
        );
    }
    // The kernel image and its bss.
    // The kernel image, but for the page Xen wrote the hypercall stubs into.
    let mut code = code(spec);
    let hc = (HYPERCALL - KSTART) as usize;
    let stubs = read_virt(fx, d, &leaves, HYPERCALL, 4096);
    assert_eq!(
        &stubs[..14],
        b"\x51\x41\x53\xb8\0\0\0\0\x0f\x05\x41\x5b\x59\xc3"
    );
    code[hc..hc + 4096].copy_from_slice(&stubs);
    assert!(
        read_virt(fx, d, &leaves, KSTART, code.len()) == code,
        "kernel contents"
    );
    let bss = read_virt(
        fx,
        d,
        &leaves,
        KSTART + code.len() as u64,
        spec.bss as usize,
    );
    assert!(bss.iter().all(|&b| b == 0));
    // The ramdisk.
    let flags = u32_at(&start, si::FLAGS);
    let mod_start = u64_at(&start, si::MOD_START);
    let mod_len = u64_at(&start, si::MOD_LEN);
    match ramdisk {
        None => assert_eq!((mod_start, mod_len), (0, 0)),
        Some(rd) if spec.init_p2m => {
            assert_eq!(flags & SIF_MOD_START_PFN, SIF_MOD_START_PFN);
            assert_eq!(mod_len, (rd.len() as u64).next_multiple_of(4096));
            assert!(mod_start >= n, "unmapped: after the initial mapping");
            for (i, chunk) in rd.chunks(4096).enumerate() {
                let page = fx.page(d, fx.mfn_of(d, mod_start + i as u64));
                assert_eq!(&page[..chunk.len()], chunk);
            }
        }
        Some(rd) => {
            assert_eq!(flags & SIF_MOD_START_PFN, 0);
            assert_eq!(mod_len, rd.len() as u64);
            assert!(read_virt(fx, d, &leaves, mod_start, rd.len()) == rd);
        }
    }
    // Rings clear, shared info masked, hypercall page written by Xen.
    assert!(fx.page(d, store_mfn).iter().all(|&b| b == 0));
    assert!(fx.page(d, console_mfn).iter().all(|&b| b == 0));
    let shinfo = fx.page(d, snap.shared_info_mfn);
    assert!((0..32).all(|v| shinfo[v * 64 + 1] == 1));
    assert_eq!(snap.hypercall_page_mfn, Some(leaves[&HYPERCALL].0));
    start
}

fn ramdisk_bytes() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i % 253) as u8).collect()
}

#[test]
fn elf_kernel_builds_with_every_mapping_checked() {
    let fx = Fixture::new("nodes=1,node_mib=2048");
    let spec = KernelSpec::default();
    let kernel = fx.file("vmlinux", &pv_kernel(&spec));
    let rd = ramdisk_bytes();
    let initrd = fx.file("initrd", &rd);
    let d = fx.domain(512);
    let out = fx
        .build(&fx.request(d, 512, &kernel, Some(initrd)))
        .unwrap();
    check_guest(&fx, d, &out, &spec, Some(&rd), 512);
    // 2 MiB extents in one call, nothing at 4 KiB.
    assert_eq!(
        out.report.memory.ram.pages_by_order.get(&9),
        Some(&(512 << 8))
    );
    assert_eq!(out.report.memory.ram.calls(), 1);
    assert_eq!(out.report.hypercalls["mmuext_pin_l4_table"], 1);
    assert_eq!(out.report.hypercalls["vcpu_setcontext_pv"], 1);
    assert_eq!(fx.host.outstanding_claims(), 0);
}

#[test]
fn linux_style_kernel_with_init_p2m_and_unmapped_initrd() {
    let fx = Fixture::new("nodes=2,node_mib=2048");
    let spec = KernelSpec {
        init_p2m: true,
        ..KernelSpec::default()
    };
    let kernel = fx.file("vmlinux", &pv_kernel(&spec));
    let rd = ramdisk_bytes();
    let initrd = fx.file("initrd", &rd);
    let d = fx.domain(1024);
    let out = fx
        .build(&fx.request(d, 1024, &kernel, Some(initrd)))
        .unwrap();
    check_guest(&fx, d, &out, &spec, Some(&rd), 1024);
}

#[test]
fn odd_sizes_fall_back_to_4k_and_fragmented_hosts_still_build() {
    // 130.5 MiB is not a whole number of 2 MiB extents... mem is in MiB, so use 131 MiB:
    // 65 x 2 MiB + 256 x 4 KiB.
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let spec = KernelSpec::default();
    let kernel = fx.file("vmlinux", &pv_kernel(&spec));
    let d = fx.domain(131);
    let out = fx.build(&fx.request(d, 131, &kernel, None)).unwrap();
    assert_eq!(
        out.report.memory.ram.pages_by_order.get(&9),
        Some(&(65 << 9))
    );
    assert_eq!(out.report.memory.ram.pages_by_order.get(&0), Some(&256));
    check_guest(&fx, d, &out, &spec, None, 131);

    let fx = Fixture::new("nodes=1,node_mib=1024,only_4k=0");
    let kernel = fx.file("vmlinux", &pv_kernel(&spec));
    let d = fx.domain(256);
    let out = fx.build(&fx.request(d, 256, &kernel, None)).unwrap();
    assert_eq!(
        out.report.memory.ram.pages_by_order.get(&0),
        Some(&(256 << 8))
    );
    check_guest(&fx, d, &out, &spec, None, 256);
}

#[test]
fn bzimages_of_every_compression_build() {
    let spec = KernelSpec {
        code_bytes: 1 << 20,
        init_p2m: true,
        ..KernelSpec::default()
    };
    let elf = pv_kernel(&spec);
    for format in ["gzip", "bzip2", "xz", "lzma", "zstd", "lz4", "lzo"] {
        let fx = Fixture::new("nodes=1,node_mib=1024");
        let img = bzimage::wrap(&compress(format, &elf), 27, 0x020f);
        let kernel = fx.file("vmlinuz", &img);
        let d = fx.domain(128);
        let out = fx
            .build(&fx.request(d, 128, &kernel, None))
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        check_guest(&fx, d, &out, &spec, None, 128);
    }
    // A gzipped ELF file (not a bzImage) is gunzipped as libxenguest does.
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let kernel = fx.file("vmlinux.gz", &compress("gzip", &elf));
    let d = fx.domain(128);
    let out = fx.build(&fx.request(d, 128, &kernel, None)).unwrap();
    check_guest(&fx, d, &out, &spec, None, 128);
}

#[track_caller]
fn expect_image_error(r: xenguest::Result<BuildOutput>, step: &str, code: i32, text: &str) {
    match r {
        Err(
            e @ Error {
                kind: ErrorKind::Image { .. },
                ..
            },
        ) => {
            assert_eq!((e.step().wire_name(), e.code()), (step, code), "{e}");
            assert!(e.to_string().contains(text), "{e}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("built"),
    }
}

#[test]
fn limits_stop_bombs_and_large_files() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    fx.store
        .write("/mh/limits/pv-kernel-max_size", "2097152")
        .unwrap();
    let bomb = bzimage::wrap(&compress("xz", &vec![0u8; 64 << 20]), 27, 0x020f);
    assert!(bomb.len() < 1 << 20);
    let d = fx.domain(128);
    let r = fx.build(&fx.request(d, 128, &fx.file("bomb", &bomb), None));
    expect_image_error(r, "xc_dom_parse_image", libc::EFBIG, "limit of 2097152");
    let gz_bomb = compress("gzip", &vec![0u8; 64 << 20]);
    let r = fx.build(&fx.request(d, 128, &fx.file("bomb.gz", &gz_bomb), None));
    expect_image_error(r, "xc_dom_kernel_file", libc::EFBIG, "limit");
    let big = vec![0u8; 3 << 20];
    let r = fx.build(&fx.request(d, 128, &fx.file("big", &big), None));
    expect_image_error(r, "xc_dom_kernel_file", libc::EFBIG, "exceeds the limit");
    // Read as C's strtoull(s, NULL, 0), as for PVH: "0x100000" is 1 MiB, not the default.
    fx.store
        .write("/mh/limits/pv-kernel-max_size", "0x100000")
        .unwrap();
    let r = fx.build(&fx.request(d, 128, &fx.file("big2", &vec![0u8; 2 << 20]), None));
    expect_image_error(r, "xc_dom_kernel_file", libc::EFBIG, "limit of 1048576");
    // The ramdisk limit: a file larger than it is refused.
    fx.store
        .write("/mh/limits/pv-ramdisk-max_size", "1000000")
        .unwrap();
    fx.store
        .write("/mh/limits/pv-kernel-max_size", "0")
        .unwrap();
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let initrd = fx.file("initrd", &ramdisk_bytes());
    let r = fx.build(&fx.request(d, 128, &kernel, Some(initrd)));
    expect_image_error(r, "xc_dom_module_file", libc::EFBIG, "exceeds the limit");
    // A gzipped ramdisk that inflates past it goes in compressed, as libxenguest does.
    let gz = compress("gzip", &ramdisk_bytes());
    let initrd = fx.file("initrd.gz", &gz);
    let out = fx
        .build(&fx.request(d, 128, &kernel, Some(initrd)))
        .unwrap();
    check_guest(&fx, d, &out, &KernelSpec::default(), Some(&gz), 128);
}

#[test]
fn bad_kernels_give_clear_errors() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let d = fx.domain(128);
    let good = pv_kernel(&KernelSpec::default());
    let try_img = |name: &str, img: &[u8]| fx.build(&fx.request(d, 128, &fx.file(name, img), None));
    for cut in [0usize, 10, 63, 100, 200, 0x1000, good.len() - 10] {
        let r = try_img("cut", &good[..cut]);
        expect_image_error(r, "xc_dom_parse_image", libc::EINVAL, "");
    }
    let r = fx.build(&fx.request(d, 128, Path::new("/nonexistent/vmlinux"), None));
    expect_image_error(r, "xc_dom_kernel_file", libc::ENOENT, "No such file");
    let mut corrupt = compress("xz", &good);
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let r = try_img("corrupt", &bzimage::wrap(&corrupt, 27, 0x020f));
    expect_image_error(r, "xc_dom_parse_image", libc::EINVAL, "corrupt xz data");
    let r = try_img("old", &bzimage::wrap(&compress("gzip", &good), 27, 0x0206));
    expect_image_error(r, "xc_dom_parse_image", libc::EINVAL, "too old");
    let r = try_img(
        "bsd",
        &pv_kernel(&KernelSpec {
            guest_os: "netbsd",
            loader: "netbsd",
            ..KernelSpec::default()
        }),
    );
    expect_image_error(
        r,
        "xc_dom_parse_image",
        libc::EINVAL,
        "generic loader or Linux",
    );
    let r = try_img(
        "dom0",
        &pv_kernel(&KernelSpec {
            features: "!dom0",
            ..KernelSpec::default()
        }),
    );
    expect_image_error(r, "xc_dom_parse_image", libc::EINVAL, "DomU");
    let r = try_img("hvmloader", b"\x7fELF\x01\x01\x01");
    expect_image_error(r, "xc_dom_parse_image", libc::EINVAL, "");
    // 32-bit PAE kernels are refused, clearly.
    let r = try_img(
        "i386",
        &pv_kernel(&KernelSpec {
            elf32: true,
            ..KernelSpec::default()
        }),
    );
    expect_image_error(
        r,
        "xc_dom_parse_image",
        libc::EOPNOTSUPP,
        "32-bit PV kernels",
    );
    // Nothing was populated by any of these.
    assert_eq!(fx.host.domain_snapshot(d).unwrap().tot_pages, 0);
}

#[test]
fn out_of_memory_is_a_clear_error() {
    // More than the host has: refused before anything is allocated.
    let fx = Fixture::new("nodes=1,node_mib=64");
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let d = fx.domain(128);
    let e = fx.build(&fx.request(d, 128, &kernel, None)).unwrap_err();
    assert_eq!(
        (e.step().wire_name(), e.code()),
        ("linux_build", libc::ENOMEM),
        "{e}"
    );
    assert_eq!(fx.host.domain_snapshot(d).unwrap().tot_pages, 0);
    // Enough on the host but not on the exact node: the one out-of-memory text.
    let fx = Fixture::new("nodes=2,node_mib=64");
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let d = fx.domain(100);
    let mut req = fx.request(d, 100, &kernel, None);
    req.mem_pnode = Some(0);
    let e = fx.build(&req).unwrap_err();
    assert_eq!(
        (e.step().wire_name(), e.code()),
        ("xc_dom_boot_mem_init", libc::ENOMEM),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(
            "xenguest: xc_dom_boot_mem_init: [12] Could not allocate memory for guest: \
             25600 pages requested, "
        ),
        "{e}"
    );
    assert!(e.to_string().ends_with("missing on node 0 (exact)"), "{e}");
    assert_eq!(fx.host.outstanding_claims(), 0);
    // Too little guest memory for the kernel and its mapping.
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let d = fx.domain(16);
    let r = fx.build(&fx.request(d, 16, &kernel, None));
    expect_image_error(r, "xc_dom_build_image", libc::ENOMEM, "too large");
}

/// A PV guest far larger than the host (4000000 MiB on 1 GiB: once 32 s and 8 GB resident
/// of per-page bookkeeping before its ENOMEM) fails in milliseconds, before any allocation.
#[test]
fn an_impossible_pv_size_fails_fast_without_allocating() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let d = fx.domain(128);
    for mib in [4_000_000, xenguest::MAX_GUEST_MIB, u64::MAX >> 20] {
        let started = std::time::Instant::now();
        let e = fx.build(&fx.request(d, mib, &kernel, None)).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{mib}: {e}"
        );
        assert_eq!(e.step().wire_name(), "linux_build", "{mib}: {e}");
        assert!(
            e.code() == libc::ENOMEM || e.code() == libc::EINVAL,
            "{mib}: {e}"
        );
    }
    assert_eq!(fx.host.domain_snapshot(d).unwrap().tot_pages, 0);
    assert_eq!(
        fx.host.call_counts(Some(d)).get("domain_populate_physmap"),
        None
    );
}

#[test]
fn a_fault_at_each_pv_call_fails_the_build_at_its_step() {
    let spec = KernelSpec::default();
    for (kind, step) in [
        ("domain_set_address_size", "xc_dom_boot_mem_init"),
        ("domain_populate_physmap", "xc_dom_boot_mem_init"),
        ("write_guest", "xc_dom_build_image"),
        ("clear_domain_pages", "xc_dom_build_image"),
        ("domain_shared_info_frame", "xc_dom_boot_image"),
        ("hypercall_page_init", "xc_dom_boot_image"),
        ("mmuext_pin_l4_table", "xc_dom_boot_image"),
        ("vcpu_setcontext_pv", "xc_dom_boot_image"),
        ("gnttab_seed", "xc_dom_gnttab_init"),
        ("get_native_protocol", "xc_domain_get_native_protocol"),
    ] {
        let fx = Fixture::new("nodes=1,node_mib=1024");
        let kernel = fx.file("vmlinux", &pv_kernel(&spec));
        let d = fx.domain(128);
        fx.host.inject(Fault::errno(kind, 1, libc::EIO)).unwrap();
        let e = fx.build(&fx.request(d, 128, &kernel, None)).unwrap_err();
        assert_eq!(
            (e.step().wire_name(), e.code()),
            (step, libc::EIO),
            "{kind}: {e}"
        );
        assert_eq!(fx.host.outstanding_claims(), 0);
    }
}

#[test]
fn hvm_domains_and_bad_requests_are_refused() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let kernel = fx.file("vmlinux", &pv_kernel(&KernelSpec::default()));
    let hvm = fx
        .host
        .create_domain(&DomainConfig::hvm(1 << 20, 1))
        .unwrap();
    let e = fx.build(&fx.request(hvm, 128, &kernel, None)).unwrap_err();
    assert_eq!(e.step(), "xc_dom_boot_xen_init", "{e}");
    let d = fx.domain(128);
    let mut req = fx.request(d, 128, &kernel, None);
    req.mem_start_mib = 0;
    assert_eq!(fx.build(&req).unwrap_err().code(), libc::EINVAL);
}

/// A real PV kernel: GRUB's x86_64-xen image (`grub-xen-bin`), when installed.
#[test]
fn real_pvgrub_image_builds() {
    let dir = Path::new("/usr/lib/grub/x86_64-xen");
    if !dir.exists() {
        eprintln!("skipped: grub-xen-bin is not installed");
        return;
    }
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let img = fx.dir.path().join("pvgrub.elf");
    let status = std::process::Command::new("grub-mkimage")
        .args(["-O", "x86_64-xen", "-o"])
        .arg(&img)
        .args(["-p", "(xen/xvda,msdos1)/boot/grub", "normal"])
        .status()
        .unwrap();
    assert!(status.success());
    let d = fx.domain(256);
    let out = fx.build(&fx.request(d, 256, &img, None)).unwrap();
    let snap = fx.host.domain_snapshot(d).unwrap();
    let ctx = snap.pv_vcpu.unwrap();
    assert_eq!(snap.pinned_l4_mfn, Some(ctx.cr3 >> 12));
    let (leaves, _) = walk(&fx, d, ctx.cr3 >> 12);
    assert!(leaves.contains_key(&(ctx.rip & !0xfff)), "entry is mapped");
    assert!(out.result.wire_text().ends_with(" x86_64-abi"));
    fx.host.check_accounting().unwrap();
}
