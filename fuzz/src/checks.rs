//! The fuzz checks: one function per target, taking the raw fuzz input and panicking when
//! the code under test panics or breaks a property. Three drivers run them: the libFuzzer
//! targets in `fuzz/fuzz_targets/` (`make fuzz`), the regression replay of
//! `fuzz/regressions/<target>/*`, and the randomized pass in `tests/robustness.rs` (stable
//! `cargo test`). Only `xenguest`, `std`, `libc` and `tempfile` are used, so the file can be
//! included by either crate.

use std::collections::BTreeMap;
use xenguest::builder::{self, BuildEnv, BuildMode, HostPaths};
use xenguest::cpuid;
use xenguest::hypervisor::sim::{DomainConfig, Fault, FaultAction, HostSpec, SimHost, CALL_KINDS};
use xenguest::hypervisor::{Hypervisor, PciSbdf, ReservedRange};
use xenguest::image::elf::Elf;
use xenguest::layout::{self, HvmLayoutInput};
use xenguest::memory;
use xenguest::platform;
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::{usize_of, DomId};
use xenguest::{builder::passthrough, vcpu, Error};

/// Every library check by target name (the CLI targets live in the fuzz crate only, as the
/// parser is part of the binary).
pub const TARGETS: &[(&str, Check)] = &[
    ("c_value", c_value),
    ("featureset", featureset),
    ("affinity", affinity),
    ("sysfs_resource", sysfs_resource),
    ("elf", elf),
    ("kernel_image", kernel_image),
    ("layout", layout),
    ("sim_spec", sim_spec),
    ("platform", platform),
    ("hvm_build", hvm_build),
    ("migration_stream", migration_stream),
    ("migration_restore", migration_restore),
];

/// A check: panics on a bug.
pub type Check = fn(&[u8]);

/// Structured values out of fuzz bytes; past the end every read is zero.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// A byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// A bool.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// One of `items` (not empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize_of(self.below(items.len() as u64))]
    }

    /// A string of up to 255 bytes (lossy UTF-8).
    pub fn string(&mut self) -> String {
        let n = usize::from(self.u8());
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// Everything left (lossy UTF-8).
    pub fn rest_string(&mut self) -> String {
        let n = self.data.len();
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// An error as the control fd carries it: one line, newline-terminated, never empty.
fn check_error_text(e: &Error) {
    let text = e.wire_text();
    assert!(text.ends_with('\n') && text.len() > 1, "{e:?}: {text:?}");
    assert_eq!(
        text.matches('\n').count(),
        1 + e.to_string().matches('\n').count()
    );
    let _ = (e.code(), e.step());
}

/// `strtoull(s, NULL, 0)` and `xenstore_get_value`'s booleans: the Rust parser agrees with
/// the C library on the value, on where parsing stopped and on overflow.
pub fn c_value(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let ours = platform::strtoull(s);
    let value = platform::parse_c_value(s);
    if s.eq_ignore_ascii_case("true") {
        assert_eq!(value, Some((1, true)));
    } else if s.eq_ignore_ascii_case("false") {
        assert_eq!(value, Some((0, true)));
    } else {
        assert_eq!(value, ours);
    }
    let Ok(c) = std::ffi::CString::new(s) else {
        return; // A NUL would end the C string early; xenstore values never hold one.
    };
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call, `end` is a valid
    // out-pointer, and errno is thread-local.
    let (v, errno) = unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtoull(c.as_ptr(), &mut end, 0);
        (v, *libc::__errno_location())
    };
    let consumed = end as usize - c.as_ptr() as usize;
    if errno == libc::ERANGE {
        assert_eq!(ours, None, "{s:?}: C overflows");
    } else {
        assert_eq!(
            ours,
            Some((v, consumed == s.len())),
            "{s:?}: C says {v} ({consumed} bytes)"
        );
    }
}

/// `platform/featureset`: an accepted string is hex words and separators and its canonical
/// form parses to the same words; a refused one gets the C text naming the rest.
pub fn featureset(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match cpuid::parse_featureset(&s) {
        Ok(words) => {
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b':'));
            let canonical: Vec<String> = words.iter().map(|w| format!("{w:x}")).collect();
            assert_eq!(cpuid::parse_featureset(&canonical.join(":")), Ok(words));
        }
        Err(e) => {
            assert!(
                e.starts_with("Bad '") && e.ends_with("' in featureset"),
                "{e}"
            );
            assert!(s.ends_with(&e[5..e.len() - 15]), "{s:?}: {e}");
        }
    }
}

/// `platform/vcpu/<n>/affinity`: as wide as asked, pCPU j set iff character j is '1'.
pub fn affinity(data: &[u8]) {
    let mut b = Bytes::new(data);
    let nr_cpus = u32::from(b.u16() % 4097);
    let s = b.rest_string();
    let mask = vcpu::affinity_mask(&s, nr_cpus);
    assert_eq!(mask.len(), nr_cpus as usize);
    for (j, bit) in mask.iter().enumerate() {
        assert_eq!(*bit, s.as_bytes().get(j) == Some(&b'1'), "{s:?} cpu {j}");
    }
}

/// The sysfs `resource` reader: agrees with a 128-bit model, and whatever it returns (also
/// summed over several devices, as the build does) makes a layout without panicking.
pub fn sysfs_resource(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let got = passthrough::parse_resource(&text);
    let model = (|| {
        let mut total: u128 = 0;
        for line in text.lines().take(passthrough::RESOURCE_LINES) {
            let mut f = line
                .split_whitespace()
                .map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16));
            let (Some(Ok(start)), Some(Ok(end))) = (f.next(), f.next()) else {
                return None;
            };
            if start != 0 {
                if end < start {
                    return None;
                }
                total += u128::from(end - start) + 1;
            }
        }
        u64::try_from(total).ok()
    })();
    assert_eq!(got.as_ref().ok().copied(), model, "{text:?}");
    if let Ok(bytes) = got {
        for devices in [1u64, 3] {
            let bar_bytes = (0..devices).fold(0u64, |sum, _| sum.saturating_add(bytes));
            for vgpu in [false, true] {
                let input = HvmLayoutInput {
                    mem_max_mib: 4096,
                    passthrough_bar_bytes: bar_bytes,
                    vgpu,
                    ..Default::default()
                };
                match layout::plan_hvm(&input) {
                    Ok(l) => {
                        assert!(l.mmio_size <= layout::MAX_MMIO_HOLE_BYTES);
                        assert!(l.mmio_size >= layout::DEFAULT_MMIO_HOLE_BYTES);
                    }
                    Err(e) => check_error_text(&e),
                }
            }
        }
    }
}

/// ELF images: parsing never panics, and what it accepts can be walked (segment bytes,
/// bounds, notes) without leaving the image.
pub fn elf(data: &[u8]) {
    let Ok(elf) = Elf::parse(data) else { return };
    assert!(!elf.segments.is_empty());
    for seg in &elf.segments {
        assert!(seg.filesz <= seg.memsz);
        assert_eq!(elf.segment_bytes(seg).len() as u64, seg.filesz);
    }
    let (start, end) = elf.paddr_bounds();
    assert!(start <= end);
    let base = data.as_ptr() as usize;
    let inside = |s: &[u8]| {
        let at = s.as_ptr() as usize;
        s.is_empty() || (at >= base && at + s.len() <= base + data.len())
    };
    match elf.notes() {
        Ok(notes) => {
            for n in &notes {
                assert!(inside(n.name) && inside(n.desc));
            }
            assert_eq!(
                elf.has_xen_notes(),
                Ok(notes.iter().any(|n| n.name == b"Xen"))
            );
        }
        Err(_) => assert!(elf.has_xen_notes().is_err()),
    }
}

/// PV/PVH kernel and module images: every decompressor (libxenguest's seven formats, the
/// hand-written LZO and LZ4 included) with a limit, the bzImage wrapper, the raw LZO1X block
/// decoder, Xen ELF notes and feature strings. No panic, and no output past its limit.
pub fn kernel_image(data: &[u8]) {
    use xenguest::image::{bzimage, decompress, xen_notes};
    let mut b = Bytes::new(data);
    let selector = b.u8();
    let limit = u64::from(b.u16()) * 64;
    let rest = b.rest();
    match selector % 5 {
        0 => {
            // The format's magic from the selector, so every decoder sees fuzzed streams.
            const FORMATS: [(&[u8], decompress::Format); 7] = [
                (b"\x1f\x8b", decompress::Format::Gzip),
                (b"BZh", decompress::Format::Bzip2),
                (b"\xfd7zXZ\x00", decompress::Format::Xz),
                (b"\x28\xb5\x2f\xfd", decompress::Format::Zstd),
                (b"\x5d\x00", decompress::Format::Lzma),
                (b"\x89LZO", decompress::Format::Lzo),
                (b"\x02\x21", decompress::Format::Lz4),
            ];
            let (magic, format) = FORMATS[usize::from(selector / 5) % FORMATS.len()];
            let stream = [magic, rest].concat();
            assert_eq!(decompress::Format::detect(&stream), Some(format));
            if let Ok(out) = decompress::decompress(format, &stream, limit) {
                assert!(
                    out.len() as u64 <= limit,
                    "{format}: {} > {limit}",
                    out.len()
                );
            }
        }
        1 => {
            let max = usize_of(limit);
            let mut out = vec![7u8; usize::from(selector / 5)];
            let before = out.clone();
            let _ = decompress::lzo1x_decompress(rest, &mut out, max);
            assert!(out.len() <= before.len() + max);
            assert_eq!(out[..before.len()], before[..], "the prefix is kept");
        }
        2 => {
            if let Ok((out, _)) = bzimage::unpack(rest, limit) {
                assert!(out.len() as u64 <= limit);
            }
            let _ = bzimage::is_bzimage(rest);
        }
        3 => {
            if let Ok(elf) = Elf::parse(rest) {
                if let Ok(notes) = xen_notes::XenNotes::from_elf(&elf) {
                    for bit in 0..64 {
                        let _ = (notes.requires(bit), notes.supports(bit));
                    }
                }
            }
        }
        _ => {
            let _ = xen_notes::parse_features(&String::from_utf8_lossy(rest));
        }
    }
}

/// The HVM layout and its extent plan from arbitrary sizes, hole requests, BARs and RMRRs:
/// no panic; a layout keeps every MiB of RAM, keeps the hole below 4 GiB, fits Xen's e820;
/// the extent plan covers the RAM but the VGA hole exactly once, aligned, outside the hole.
pub fn layout(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mem_max_mib = match b.u8() % 4 {
        0 => b.u64(),
        1 => b.below(xenguest::MAX_GUEST_MIB + 2),
        2 => u64::from(b.u16()),
        _ => 2 + u64::from(b.u8()) * 64,
    };
    let min_mmio_hole_bytes = match b.u8() % 3 {
        0 => 0,
        1 => u64::from(b.u8()) << 24,
        _ => b.u64(),
    };
    let vgpu = b.bool();
    let mxgpu = b.bool();
    let passthrough_bar_bytes = match b.u8() % 3 {
        0 => 0,
        1 => u64::from(b.u32()),
        _ => b.u64(),
    };
    let nr_rmrrs = match b.u8() % 8 {
        7 => usize::from(b.u8()),
        n => usize::from(n),
    };
    let rmrrs: Vec<ReservedRange> = (0..nr_rmrrs)
        .map(|_| {
            let start_pfn = match b.u8() % 3 {
                0 => 0xA0000 + u64::from(b.u16()) * 0x10,
                1 => u64::from(b.u32()),
                _ => b.u64(),
            };
            let nr_pages = match b.u8() % 3 {
                0 => u64::from(b.u8()) + 1,
                1 => u64::from(b.u32()),
                _ => b.u64(),
            };
            ReservedRange {
                start_pfn,
                nr_pages,
            }
        })
        .collect();
    let input = HvmLayoutInput {
        mem_max_mib,
        min_mmio_hole_bytes,
        vgpu,
        passthrough_bar_bytes,
        mxgpu,
        rmrrs,
    };
    let l = match layout::plan_hvm(&input) {
        Ok(l) => l,
        Err(e) => return check_error_text(&e),
    };
    assert_eq!(
        l.mmio_start.checked_add(l.mmio_size),
        Some(layout::FOUR_GIB)
    );
    assert!(l.lowmem_end <= l.mmio_start && l.lowmem_end >= layout::LOW_RAM_START);
    assert!(l.highmem_end >= layout::FOUR_GIB);
    assert!(l.e820.len() <= layout::E820_MAX_ENTRIES);
    let ranges = l.ram_ranges_pages();
    let ram: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    assert_eq!(ram, mem_max_mib << 8, "RAM lost or invented: {l:?}");
    if vgpu {
        let addr = l
            .vram_reserved_addr
            .expect("a vGPU gets a VRAM reservation");
        assert!(addr >= l.mmio_start && addr + layout::VRAM_RESERVED_BYTES <= layout::FOUR_GIB);
    }

    let hole = l.mmio_hole_pages();
    let runs = memory::plan_hvm_extents(&ranges, hole, true);
    let mut planned = 0;
    let mut last_end = 0;
    for run in &runs {
        let size = 1u64 << run.order;
        assert!(run.count > 0 && run.gfn % size == 0, "{run:?}");
        assert!(run.gfn >= last_end, "runs overlap or go backwards: {run:?}");
        last_end = run.end_gfn();
        assert!(
            ranges
                .iter()
                .any(|&(s, e)| run.gfn >= s && run.end_gfn() <= e),
            "{run:?} outside RAM {ranges:?}"
        );
        assert!(
            run.end_gfn() <= hole.0 || run.gfn >= hole.1,
            "{run:?} in the hole"
        );
        assert!(
            run.end_gfn() <= memory::VGA_HOLE_START_GFN || run.gfn >= memory::VGA_HOLE_END_GFN,
            "{run:?} in the VGA hole"
        );
        planned += run.pages();
    }
    let low = ranges[0].1;
    let vga = low
        .min(memory::VGA_HOLE_END_GFN)
        .saturating_sub(memory::VGA_HOLE_START_GFN);
    assert_eq!(planned, ram - vga);
}

/// The `-sim` host spec: no panic, `Display` parses back to an equal spec, and a modest host
/// can be built and passes its own accounting check.
pub fn sim_spec(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let Ok(spec) = HostSpec::parse(&s) else {
        return;
    };
    let again = HostSpec::parse(&spec.to_string());
    assert_eq!(again.as_ref(), Ok(&spec), "{s:?} -> {spec}");
    if u64::from(spec.nodes) * spec.node_mib <= 16 << 10 {
        let host = SimHost::new(spec);
        host.check_accounting().unwrap();
    }
}

/// Interesting values for platform keys: C booleans, bases, signs, overflow, limits.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "4",
    "true",
    "FALSE",
    "-1",
    "0x10",
    "010",
    "08",
    " 7",
    "2cpus",
    "99999999999999999999",
    "128",
    "129",
    "65535",
    "65536",
    "4294967296",
    "0x80000000",
    "0x40000000",
    "-7200",
    "ovmf",
    "seabios",
    "0110",
    "ffffffff-ffffffff",
    "1-2-3-4-5-6-7-8-9-a-b-c-d-e-f-10-11-12-13-14-15",
];

/// The platform keys xenopsd writes (and a few it should not).
const KEYS: &[&str] = &[
    "platform/vcpu/number",
    "platform/vcpu/current",
    "platform/vcpu/0/affinity",
    "platform/vcpu/1/affinity",
    "platform/vcpu/weight",
    "platform/vcpu/cap",
    "platform/nx",
    "platform/pae",
    "platform/apic",
    "platform/viridian",
    "platform/viridian_time_ref_count",
    "platform/viridian_reference_tsc",
    "platform/viridian_hcall_remote_tlb_flush",
    "platform/viridian_apic_assist",
    "platform/viridian_crash_ctl",
    "platform/viridian_stimer",
    "platform/tsc_mode",
    "platform/x87-fip-width",
    "platform/nomigrate",
    "platform/cores-per-socket",
    "platform/nested-virt",
    "platform/exp-nested-hvm",
    "platform/acpi",
    "platform/acpi_s3",
    "platform/acpi_s4",
    "platform/hpet",
    "platform/timeoffset",
    "platform/mmio_hole_size",
    "platform/featureset",
    "hvmloader/bios",
    "platform/ovmf-override",
];

/// Up to 16 platform keys with fuzzed or interesting values.
fn platform_keys(b: &mut Bytes<'_>) -> Vec<(&'static str, String)> {
    let n = b.u8() % 17;
    (0..n)
        .map(|_| {
            let key = b.pick(KEYS);
            let value = if b.bool() {
                b.pick(VALUES).to_string()
            } else {
                b.string()
            };
            (key, value)
        })
        .collect()
}

/// `get_flags` over a store holding fuzzed platform keys, then everything that consumes the
/// flags without a hypervisor (affinity masks, viridian mask, CPUID policy, layout).
pub fn platform(data: &[u8]) {
    let mut b = Bytes::new(data);
    let hvm = b.bool();
    let vgpu = b.bool();
    let store = MemoryStore::new();
    let domid = DomId(7);
    let base = domain_path(domid);
    for (key, value) in platform_keys(&mut b) {
        store.write(&format!("{base}/{key}"), &value).unwrap();
    }
    let f = match platform::read_platform(&store, domid, hvm, vgpu) {
        Ok(f) => f,
        Err(e) => return check_error_text(&e),
    };
    if hvm {
        assert!(f.vcpus >= 1 && f.vcpus <= platform::HVM_MAX_VCPUS, "{f:?}");
        if f.cores_per_socket != 0 {
            assert_eq!(f.vcpus % f.cores_per_socket, 0);
        }
    }
    assert!(f.vcpus <= platform::PV_MAX_VCPUS, "{}", f.vcpus);
    assert!(f.vcpus_current <= f.vcpus);
    assert_eq!(f.vcpu_affinity.len(), f.vcpus as usize);
    for key in ["platform/acpi", "platform/acpi_s3", "platform/acpi_s4"] {
        let v = store.read(&format!("{base}/{key}")).unwrap();
        assert!(matches!(v.as_deref(), Some("0" | "1")), "{key} = {v:?}");
    }
    for a in f.vcpu_affinity.iter().flatten() {
        assert_eq!(vcpu::affinity_mask(a, 64).len(), 64);
    }
    let _ = builder::container::viridian_mask(&f);
    let host = xenguest::hypervisor::sim::featureset(xenguest::hypervisor::FeaturesetKind::Host);
    match cpuid::plan_policy(&f, host, Some(host), false) {
        Ok(p) => assert_eq!(p.featureset.len(), host.len()),
        Err(e) => check_error_text(&e),
    }
    let input = HvmLayoutInput {
        mem_max_mib: 1024,
        min_mmio_hole_bytes: f.mmio_hole_size_bytes,
        vgpu,
        ..Default::default()
    };
    if let Err(e) = layout::plan_hvm(&input) {
        check_error_text(&e);
    }
}

/// A minimal ELF32 hvmloader stand-in: one `PT_LOAD` of `code` at `paddr` plus `bss`.
pub fn elf32_image(paddr: u32, entry: u32, code: &[u8], bss: u32) -> Vec<u8> {
    let mut v = vec![0u8; 52];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 1; // ELFCLASS32
    v[5] = 1; // little-endian
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    v[24..28].copy_from_slice(&entry.to_le_bytes());
    v[28..32].copy_from_slice(&52u32.to_le_bytes());
    v[42..44].copy_from_slice(&32u16.to_le_bytes());
    v[44..46].copy_from_slice(&1u16.to_le_bytes());
    let filesz = u32::try_from(code.len()).unwrap_or(u32::MAX);
    let memsz = filesz.saturating_add(bss);
    for x in [1, 84, paddr, paddr, filesz, memsz, 7, 4] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(code);
    v
}

/// Debian's hvmloader, when installed.
pub const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";

const ERRNOS: &[i32] = &[
    libc::ENOMEM,
    libc::EINVAL,
    libc::EBUSY,
    libc::EIO,
    libc::ESRCH,
    libc::EPERM,
    libc::EAGAIN,
    libc::EFAULT,
];

/// A whole HVM build on a small simulated host from fuzzed sizes, platform keys, firmware,
/// passthrough devices (sysfs text and RMRRs), a node, and one hypercall or store fault.
/// It must not panic; a failure is one newline-terminated error line; no claim is left
/// unless a claim call itself was failed; after the toolstack destroys the domain every
/// page is back and the host's books balance.
pub fn hvm_build(data: &[u8]) {
    let mut b = Bytes::new(data);
    let nodes = 1 + b.below(2);
    let node_mib = 64 + 64 * b.below(8);
    let mut spec = format!("nodes={nodes},node_mib={node_mib},cpus={}", 1 + b.below(8));
    match b.u8() % 6 {
        0 => spec += ",no_1g=0",
        1 => spec += ",half_2m=0",
        2 => spec += ",only_4k=0",
        3 => spec += &format!(",free_mib=0:{}", b.below(node_mib)),
        _ => {}
    }
    if b.u8().is_multiple_of(4) {
        spec += ",sched=credit2";
    }
    let host = SimHost::from_spec(&spec).unwrap();
    let store = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let paths = HostPaths {
        ipxe: dir.path().join("ipxe.bin"),
        ovmf: dir.path().join("OVMF-release.fd"),
        seabios: dir.path().join("bios-256k.bin"),
        sysfs_pci_devices: dir.path().join("pci"),
    };
    std::fs::create_dir(&paths.sysfs_pci_devices).unwrap();
    let ipxe_len = usize::from(b.u16() % 16384);
    std::fs::write(&paths.ipxe, vec![0x5a; ipxe_len]).unwrap();
    if b.bool() {
        std::fs::write(&paths.ovmf, vec![0xa5; usize::from(b.u16())]).unwrap();
    }

    let mem_max_mib = match b.u8() % 4 {
        0 => u64::from(b.u8()),
        1 => 2 + b.below(nodes * node_mib),
        _ => 2 + b.below(192),
    };
    let mem_start_mib = match b.u8() % 4 {
        0 => u64::from(b.u8()),
        1 => 1 + b.below(mem_max_mib.max(1)),
        _ => mem_max_mib,
    };
    let image = dir.path().join("hvmloader");
    match b.u8() % 4 {
        0 if std::path::Path::new(HVMLOADER).exists() => {
            std::fs::copy(HVMLOADER, &image).unwrap();
        }
        1 => {
            let raw = b.string();
            std::fs::write(&image, raw).unwrap();
        }
        _ => {
            let paddr = match b.u8() % 3 {
                0 => 0x10_0000,
                1 => b.u32() & !0xfff,
                _ => b.u32(),
            };
            let code = vec![0x90; usize::from(b.u16() % 8192)];
            let bss = match b.u8() % 3 {
                0 => 0,
                1 => u32::from(b.u16()),
                _ => b.u32() % (16 << 20),
            };
            let entry = paddr.wrapping_add(u32::from(b.u8()));
            std::fs::write(&image, elf32_image(paddr, entry, &code, bss)).unwrap();
        }
    }

    let mut req = BuildRequest::new(DomId(0), mem_max_mib, mem_start_mib, &image);
    req.vgpu = b.bool();
    req.force = b.u8().is_multiple_of(4);
    req.store_port = u32::from(b.u8());
    req.console_port = u32::from(b.u8());
    if b.u8().is_multiple_of(4) {
        req.mem_pnode = Some(u32::from(b.u8() % 3));
    }
    for i in 0..b.u8() % 3 {
        let sbdf = PciSbdf {
            seg: 0,
            bus: 3 + i,
            dev: 0,
            func: 0,
        };
        req.pci_passthrough.push(sbdf);
        if b.bool() {
            let folder = paths.sysfs_pci_devices.join(sbdf.to_string());
            std::fs::create_dir(&folder).unwrap();
            let resource = if b.bool() {
                b.string()
            } else {
                let size = 1u64 << (12 + b.below(24));
                format!(
                    "0xe0000000 {:#x} 0x40200\n{}",
                    0xe000_0000 + size - 1,
                    "0x0 0x0 0x0\n".repeat(6)
                )
            };
            std::fs::write(folder.join("resource"), resource).unwrap();
            let (vendor, device) = if b.bool() {
                passthrough::MXGPU_ID
            } else {
                (0x10de, 0x1db4)
            };
            std::fs::write(folder.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
            std::fs::write(folder.join("device"), format!("{device:#06x}\n")).unwrap();
        }
        if b.bool() {
            host.add_rmrr(
                sbdf,
                ReservedRange {
                    start_pfn: match b.u8() % 2 {
                        0 => 0xA0000 + u64::from(b.u16()),
                        _ => u64::from(b.u32()),
                    },
                    nr_pages: 1 + u64::from(b.u16() % 512),
                },
            );
        }
    }

    let keys = platform_keys(&mut b);
    let vcpus = keys
        .iter()
        .rev()
        .find(|(k, _)| *k == "platform/vcpu/number")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 128);
    let free = host.free_pages();
    let max_mem_kib = (mem_max_mib << 10) + [1024, 0, 4096][usize::from(b.u8() % 3)];
    let domid = host
        .create_domain(&DomainConfig::hvm(max_mem_kib, vcpus))
        .unwrap();
    req.domid = domid;
    let dbase = domain_path(domid);
    store
        .write(&format!("{dbase}/platform/vcpu/number"), "1")
        .unwrap();
    for (key, value) in &keys {
        store.write(&format!("{dbase}/{key}"), value).unwrap();
    }
    if b.bool() {
        // xenopsd's claim; refused when the host is short, as Xen refuses it.
        let _ = host.domain_claim_pages(domid, mem_max_mib << 8);
    }
    let mut claim_faulted = false;
    match b.u8() % 4 {
        0 => {
            // The builder's calls only: creating and destroying are the toolstack's.
            let kinds: Vec<&str> = CALL_KINDS
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| !matches!(*k, "create_domain" | "destroy_domain"))
                .collect();
            let kind = b.pick(&kinds);
            let action = if kind == "domain_populate_physmap" && b.bool() {
                FaultAction::Partial(usize::from(b.u16()))
            } else {
                FaultAction::Errno(b.pick(ERRNOS))
            };
            claim_faulted = kind == "domain_claim_pages";
            let fault = Fault {
                kind,
                nth: 1 + b.below(40),
                domid: Some(domid),
                action,
            };
            host.inject(fault).unwrap();
        }
        1 => {
            let op = ["read", "write", "directory", "rm"][usize::from(b.u8() % 4)];
            let errno = b.pick(ERRNOS);
            store.fail_nth(Some(op), 1 + b.below(80), errno);
        }
        _ => {}
    }

    let env = BuildEnv {
        hv: &host,
        store: &store,
        paths: &paths,
    };
    let before = host.trace_for(domid).len();
    match builder::build(env, BuildMode::Hvm, &req) {
        Ok(out) => {
            assert_eq!(out.result.wire_text(), "1044476 1044479");
            let snap = host.domain_snapshot(domid).unwrap();
            assert!(snap.boot_vcpu.is_some() && snap.grants.is_some());
            // The report's RAM pages are what the host's trace says populate did.
            let mut by_order: BTreeMap<u32, u64> = BTreeMap::new();
            let calls = host.trace_for(domid);
            let populates: Vec<_> = calls[before..]
                .iter()
                .filter(|t| t.kind == "domain_populate_physmap" && t.errno.is_none())
                .collect();
            for t in &populates[..populates.len() - 1] {
                let (order, done) = populate_detail(&t.detail);
                *by_order.entry(order).or_default() += done << order;
            }
            by_order.retain(|_, v| *v > 0);
            let mut reported = out.report.memory.ram.pages_by_order.clone();
            reported.retain(|_, v| *v > 0);
            assert_eq!(reported, by_order, "report vs trace");
        }
        Err(e) => {
            check_error_text(&e);
            if std::env::var_os("XENGUEST_FUZZ_DEBUG").is_some() {
                eprintln!("hvm_build: {}", e.wire_text().trim_end());
            }
        }
    }
    if !claim_faulted {
        assert_eq!(host.outstanding_claims(), 0, "claim left behind");
    }
    // A fault armed for a call the build never reached must not hit the toolstack.
    host.clear_faults();
    host.destroy_domain(domid).unwrap();
    assert_eq!(host.outstanding_claims(), 0);
    assert_eq!(host.free_pages(), free, "pages lost");
    host.check_accounting().unwrap();
}

/// `(order, done)` from a populate trace line (`order=9 extents=.. flags=.. done=N`).
pub fn populate_detail(detail: &str) -> (u32, u64) {
    let field = |name: &str| {
        detail
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {detail:?}"))
    };
    let order = u32::try_from(field("order=")).expect("an extent order fits 32 bits");
    (order, field("done="))
}

/// The migration stream reader on arbitrary bytes after valid headers (and, when the input
/// starts with `X`, on the headers too): every record is read and decoded or refused, never
/// a panic; a record decoded re-encodes to a body that decodes to the same record (reserved
/// fields, ignored as libxenguest ignores them, are written as zero); no body is larger
/// than the input.
pub fn migration_stream(data: &[u8]) {
    use xenguest::migrate::stream::{GuestType, StreamReader, StreamWriter};
    let mut bytes = Vec::new();
    if data.first() != Some(&b'X') {
        let mut w = StreamWriter::new(&mut bytes);
        w.write_headers(GuestType::X86Hvm, (4, 17)).unwrap();
    }
    bytes.extend_from_slice(data);
    let mut r = StreamReader::new(&bytes[..]);
    if r.read_headers().is_err() {
        return;
    }
    while let Ok(raw) = r.next_record() {
        assert!(
            raw.body.len() <= bytes.len(),
            "a body larger than the input"
        );
        if let Ok(record) = raw.decode() {
            let body = record.encode();
            let again = xenguest::migrate::stream::Record::decode(raw.rtype, &body);
            assert_eq!(again.as_ref(), Ok(&record), "{}", raw.name());
        }
    }
    assert!(r.offset() <= bytes.len() as u64);
}

/// The native restore on arbitrary bytes after valid headers (and, when the input starts
/// with `X`, on the headers too), into a 32 MiB HVM domain of a simulated host that also
/// holds another domain: never a panic; whatever the outcome, the domain holds no more than
/// its `max_pages`, the other domain's page is as it was, the host's books balance, and
/// destroying the domain gives every page back.
pub fn migration_restore(data: &[u8]) {
    use xenguest::migrate::engine::RestoreHooks;
    use xenguest::migrate::native::restore::{restore, Params};
    use xenguest::migrate::stream::{GuestType, StreamWriter};
    use xenguest::types::{GuestPhys, MapAddr};
    struct Quiet;
    impl RestoreHooks for Quiet {
        fn progress(&self, _: u64, _: u64) {}
    }
    let mut bytes = Vec::new();
    if data.first() != Some(&b'X') {
        let mut w = StreamWriter::new(&mut bytes);
        w.write_headers(GuestType::X86Hvm, (4, 17)).unwrap();
    }
    bytes.extend_from_slice(data);
    let host = SimHost::from_spec("nodes=1,node_mib=256").unwrap();
    let other = host.create_domain(&DomainConfig::hvm(4096, 1)).unwrap();
    let mut one = [0u64];
    host.domain_populate_physmap(other, 0, Default::default(), &mut one)
        .unwrap();
    let at = MapAddr::phys(GuestPhys(0));
    host.write_guest(other, at, b"the other domain").unwrap();
    let free = host.free_pages();
    let domid = host.create_domain(&DomainConfig::hvm(32 << 10, 1)).unwrap();
    let fallback = || Ok(());
    let params = Params {
        domid,
        store: (1, DomId(0)),
        console: (2, DomId(0)),
        cpuid_fallback: &fallback,
    };
    let _ = restore(&host, &bytes[..], &params, &Quiet);
    let info = host.domain_getinfo(domid).unwrap();
    assert!(info.tot_pages <= info.max_pages);
    let mut seen = [0u8; 16];
    host.read_guest(other, at, &mut seen).unwrap();
    assert_eq!(&seen, b"the other domain");
    host.check_accounting().unwrap();
    host.destroy_domain(domid).unwrap();
    assert_eq!(host.free_pages(), free, "every page back");
}
