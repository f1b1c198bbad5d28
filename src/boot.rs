//! Guest-visible structures a guest boots from, as bytes: for an HVM container the special
//! pages and their HVM params, the identity page table, `hvm_info_table` and
//! `hvm_start_info`; for a PV guest `start_info` and shared info. The layouts are the
//! [`crate::abi`] types. Pure: the builders decide where they go and write them through the seam.

use crate::abi::{self, FromZeros, HvmInfoTable, HvmModlistEntry, HvmStartInfo};
use crate::types::{Gfn, Mfn, PAGE_BYTES, PAGE_USIZE};
use core::mem::size_of;
use once_cell::sync::Lazy;
use zerocopy::{Immutable, IntoBytes};

/// HVM parameter indices (`xen/include/public/hvm/params.h`).
pub mod param {
    /// Xenstore ring gfn.
    pub const STORE_PFN: u32 = 1;
    /// Xenstore event channel.
    pub const STORE_EVTCHN: u32 = 2;
    /// Synchronous ioreq page.
    pub const IOREQ_PFN: u32 = 5;
    /// Buffered ioreq page.
    pub const BUFIOREQ_PFN: u32 = 6;
    /// Viridian enlightenment mask.
    pub const VIRIDIAN: u32 = 9;
    /// HPET on/off.
    pub const HPET_ENABLED: u32 = 11;
    /// Identity page table (a byte address).
    pub const IDENT_PT: u32 = 12;
    /// Console ring gfn.
    pub const CONSOLE_PFN: u32 = 17;
    /// Console event channel.
    pub const CONSOLE_EVTCHN: u32 = 18;
    /// Paging ring gfn.
    pub const PAGING_RING_PFN: u32 = 27;
    /// Monitor (vm_event) ring gfn.
    pub const MONITOR_RING_PFN: u32 = 28;
    /// Sharing ring gfn.
    pub const SHARING_RING_PFN: u32 = 29;
    /// What a triple fault does.
    pub const TRIPLE_FAULT_REASON: u32 = 31;
    /// First ioreq-server page.
    pub const IOREQ_SERVER_PFN: u32 = 32;
    /// Number of ioreq-server pages.
    pub const NR_IOREQ_SERVER_PAGES: u32 = 33;
    /// x87 FIP/FDP width.
    pub const X87_FIP_WIDTH: u32 = 36;
}

/// `SHUTDOWN_crash`: XenServer makes a triple fault crash the guest (Xen's default reboots).
pub const SHUTDOWN_CRASH: u64 = 3;
/// Viridian: base frequency MSRs and cpu hotplug, always on with viridian.
pub const HVMPV_BASE_FREQ: u64 = 1 << 0;
/// Viridian feature bits (`HVMPV_*`).
pub mod viridian {
    /// Time reference counter.
    pub const TIME_REF_CNT: u64 = 1 << 2;
    /// Reference TSC page.
    pub const REFERENCE_TSC: u64 = 1 << 3;
    /// Remote TLB flush hypercall.
    pub const HCALL_REMOTE_TLB_FLUSH: u64 = 1 << 4;
    /// APIC assist.
    pub const APIC_ASSIST: u64 = 1 << 5;
    /// Crash control MSRs.
    pub const CRASH_CTL: u64 = 1 << 6;
    /// SynIC.
    pub const SYNIC: u64 = 1 << 7;
    /// Synthetic timers.
    pub const STIMER: u64 = 1 << 8;
    /// IPI hypercall.
    pub const HCALL_IPI: u64 = 1 << 9;
    /// CPU hotplug.
    pub const CPU_HOTPLUG: u64 = 1 << 12;
}

/// Special pages end here (exclusive), `X86_HVM_END_SPECIAL_REGION`.
pub const END_SPECIAL_REGION_GFN: u64 = 0xFF000;
/// Number of special pages.
pub const NR_SPECIAL_PAGES: u64 = 8;
/// Number of ioreq-server pages (with a device model).
pub const NR_IOREQ_SERVER_PAGES: u64 = 8;

/// The special pages, in `special_pfn(i)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Mem-paging ring.
    Paging = 0,
    /// Monitor ring.
    Access = 1,
    /// Sharing ring.
    Sharing = 2,
    /// Buffered ioreq.
    BufIoreq = 3,
    /// Xenstore ring.
    Xenstore = 4,
    /// Ioreq.
    Ioreq = 5,
    /// Identity page table.
    IdentPt = 6,
    /// Console ring.
    Console = 7,
}

impl Special {
    /// Its gfn: `0xFF000 − 8 + i`.
    pub const fn gfn(self) -> Gfn {
        Gfn(END_SPECIAL_REGION_GFN - NR_SPECIAL_PAGES + self as u64)
    }
}

/// First ioreq-server page, just below the special pages.
pub const IOREQ_SERVER_GFN: Gfn =
    Gfn(END_SPECIAL_REGION_GFN - NR_SPECIAL_PAGES - NR_IOREQ_SERVER_PAGES);

/// The HVM params that point at special pages, in libxenguest's order.
pub fn special_page_params() -> [(u32, u64); 7] {
    [
        (param::STORE_PFN, Special::Xenstore.gfn().0),
        (param::BUFIOREQ_PFN, Special::BufIoreq.gfn().0),
        (param::IOREQ_PFN, Special::Ioreq.gfn().0),
        (param::CONSOLE_PFN, Special::Console.gfn().0),
        (param::PAGING_RING_PFN, Special::Paging.gfn().0),
        (param::MONITOR_RING_PFN, Special::Access.gfn().0),
        (param::SHARING_RING_PFN, Special::Sharing.gfn().0),
    ]
}

/// The special-page region of an HVM container (`alloc_magic_pages_hvm`), planned: which
/// frames to populate and clear, and the params that point into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialPages {
    /// First frame (the ioreq-server pages' with a device model, else the special pages').
    pub first: Gfn,
    /// Frames from `first`.
    pub nr_pages: u64,
    /// `(param, value)` to set, in libxenguest's order, the identity page table's last.
    pub params: Vec<(u32, u64)>,
}

/// Plan the special pages: the 8 special pages, and with a device model (HVM, not PVH) the 8
/// ioreq-server pages just below them, in one range (libxenguest populates them in two
/// calls), with their params and the identity page table's.
pub fn special_pages(ioreq_server: bool) -> SpecialPages {
    let mut params = special_page_params().to_vec();
    let (first, nr_pages) = if ioreq_server {
        params.push((param::IOREQ_SERVER_PFN, IOREQ_SERVER_GFN.0));
        params.push((param::NR_IOREQ_SERVER_PAGES, NR_IOREQ_SERVER_PAGES));
        (IOREQ_SERVER_GFN, NR_IOREQ_SERVER_PAGES + NR_SPECIAL_PAGES)
    } else {
        (Special::Paging.gfn(), NR_SPECIAL_PAGES)
    };
    params.push((param::IDENT_PT, Special::IdentPt.gfn().paddr()));
    SpecialPages {
        first,
        nr_pages,
        params,
    }
}

/// The identity page table: 1024 4 MiB PSE entries mapping the first 4 GiB
/// (present, rw, user, accessed, dirty, PSE), used by EPT guests while paging is off.
/// The same page for every guest, so it is built once, on first use.
pub fn ident_page_table() -> &'static [u8] {
    static TABLE: Lazy<Vec<u8>> = Lazy::new(|| {
        const FLAGS: u32 = 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80;
        (0..1024u32)
            .flat_map(|i| ((i << 22) | FLAGS).to_le_bytes())
            .collect()
    });
    &TABLE
}

/// `HVM_INFO_PFN`: the page holding `hvm_info_table`.
pub const HVM_INFO_GFN: Gfn = Gfn(0x9F);
/// Offset of the table in its page (`HVM_INFO_OFFSET`).
pub const HVM_INFO_OFFSET: u64 = 0x800;
/// Size of `struct hvm_info_table`.
pub const HVM_INFO_BYTES: usize = size_of::<HvmInfoTable>();

/// What `hvm_info_table` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvmInfo {
    /// `apic_mode`.
    pub apic_mode: u8,
    /// `nr_vcpus`.
    pub nr_vcpus: u32,
    /// The first `vcpus_online` bits of `vcpu_online` are set (at most 128).
    pub vcpus_online: u32,
    /// End of low RAM, bytes.
    pub lowmem_end: u64,
    /// End of high RAM, bytes.
    pub highmem_end: u64,
    /// First gfn reserved for special pages (the ioreq-server pages).
    pub reserved_mem_pgstart: u64,
}

/// [`abi::HvmInfoTable`] as bytes: "HVM INFO", its length, a checksum that makes the bytes
/// sum to 0, the page bounds and the online map.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the table's fields are uint32_t; the C code stores the same truncated values"
)]
pub fn hvm_info_table(info: &HvmInfo) -> [u8; HVM_INFO_BYTES] {
    let mut t = HvmInfoTable::new_zeroed();
    t.signature = *b"HVM INFO";
    t.length = HVM_INFO_BYTES as u32;
    t.apic_mode = info.apic_mode;
    t.nr_vcpus = info.nr_vcpus;
    t.low_mem_pgend = (info.lowmem_end / PAGE_BYTES) as u32;
    t.reserved_mem_pgstart = info.reserved_mem_pgstart as u32;
    t.high_mem_pgend = (info.highmem_end / PAGE_BYTES) as u32;
    for cpu in 0..(info.vcpus_online as usize).min(abi::HVM_MAX_VCPUS) {
        t.vcpu_online[cpu / 8] |= 1 << (cpu % 8);
    }
    let sum = t.as_bytes().iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t.checksum = sum.wrapping_neg();
    zerocopy::transmute!(t)
}

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_INFO_MAGIC: u32 = abi::XEN_HVM_START_MAGIC_VALUE;
/// `sizeof(struct hvm_start_info)` (version 1).
pub const START_INFO_BYTES: usize = size_of::<HvmStartInfo>();
/// `sizeof(struct hvm_modlist_entry)`.
pub const MODLIST_ENTRY_BYTES: usize = size_of::<HvmModlistEntry>();
/// hvmloader takes at most this many modules (`HVMLOADER_MODULE_MAX_COUNT`).
pub const HVMLOADER_MODULE_MAX_COUNT: usize = 2;
/// Room for each module's command line (`HVMLOADER_MODULE_CMDLINE_SIZE`).
pub const MODULE_CMDLINE_BYTES: usize = 1024;

/// A module as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartModule {
    /// Guest-physical address.
    pub paddr: u64,
    /// Length, bytes.
    pub size: u64,
    /// Command line.
    pub cmdline: String,
}

/// Copy `value`'s bytes into `seg` at `at` (a place the caller's layout made room for).
fn put<T: IntoBytes + Immutable + ?Sized>(seg: &mut [u8], at: usize, value: &T) {
    let bytes = value.as_bytes();
    seg[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The module list entries for `modules` (in order), with each command line in its 1 KiB
/// slot from `cmdlines_at` in `seg` (at `paddr`), cut at 1023 bytes.
fn module_entries<'a>(
    seg: &mut [u8],
    paddr: u64,
    cmdlines_at: usize,
    modules: impl Iterator<Item = &'a StartModule>,
) -> Vec<HvmModlistEntry> {
    modules
        .enumerate()
        .map(|(i, m)| {
            let slot = cmdlines_at + i * MODULE_CMDLINE_BYTES;
            let text = &m.cmdline.as_bytes()[..m.cmdline.len().min(MODULE_CMDLINE_BYTES - 1)];
            put(seg, slot, text);
            HvmModlistEntry {
                paddr: m.paddr,
                size: m.size,
                cmdline_paddr: paddr + slot as u64,
                reserved: 0,
            }
        })
        .collect()
}

/// A version 1 [`abi::HvmStartInfo`] with nothing filled in.
fn start_info_v1() -> HvmStartInfo {
    let mut si = HvmStartInfo::new_zeroed();
    si.magic = START_INFO_MAGIC;
    si.version = 1;
    si
}

/// Bytes of the `hvm_start_info` segment for an HVM guest with hvmloader: the structure,
/// the module list (room for [`HVMLOADER_MODULE_MAX_COUNT`]), then each module's command
/// line in a 1 KiB slot. `paddr` is where the segment will live.
pub fn hvm_start_info(paddr: u64, modules: &[StartModule]) -> Vec<u8> {
    let modlist_at = START_INFO_BYTES;
    let cmdlines_at = modlist_at + MODLIST_ENTRY_BYTES * HVMLOADER_MODULE_MAX_COUNT;
    let mut seg = vec![0u8; hvm_start_info_bytes()];
    let count = modules.len().min(HVMLOADER_MODULE_MAX_COUNT);
    let entries = module_entries(&mut seg, paddr, cmdlines_at, modules.iter().take(count));
    let mut si = start_info_v1();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "at most HVMLOADER_MODULE_MAX_COUNT"
    )]
    let nr_modules = count as u32;
    si.nr_modules = nr_modules;
    if count > 0 {
        si.modlist_paddr = paddr + modlist_at as u64;
    }
    put(&mut seg, 0, &si);
    put(&mut seg, modlist_at, entries.as_slice());
    seg
}

/// Bytes of hvmloader's `hvm_start_info` segment: the structure, then a module list entry and
/// a 1 KiB command-line slot for each of [`HVMLOADER_MODULE_MAX_COUNT`] modules.
pub const fn hvm_start_info_bytes() -> usize {
    START_INFO_BYTES + (MODLIST_ENTRY_BYTES + MODULE_CMDLINE_BYTES) * HVMLOADER_MODULE_MAX_COUNT
}

/// Room libxenguest keeps in the start info for module list entries and module command
/// lines: at least [`HVMLOADER_MODULE_MAX_COUNT`], more when more modules are given.
pub fn start_info_module_slots(nr_modules: usize) -> usize {
    nr_modules.max(HVMLOADER_MODULE_MAX_COUNT)
}

/// Bytes of the kernel command line in the PVH start info: the string, its NUL, rounded up
/// to 8 bytes (`ROUNDUP(strlen + 1, 3)`).
pub fn start_info_cmdline_bytes(cmdline: &str) -> usize {
    (cmdline.len() + 1).next_multiple_of(8)
}

/// Size of the PVH `hvm_start_info` segment built by [`pvh_start_info`].
pub fn pvh_start_info_bytes(cmdline: &str, nr_modules: usize) -> usize {
    let slots = start_info_module_slots(nr_modules);
    START_INFO_BYTES
        + start_info_cmdline_bytes(cmdline)
        + slots * (MODLIST_ENTRY_BYTES + MODULE_CMDLINE_BYTES)
}

/// Bytes of the `hvm_start_info` segment for a PVH guest, laid out as libxenguest's
/// `bootlate_hvm` does without a device model: the structure, the kernel command line, the
/// module list, a 1 KiB command-line slot per module, then the (empty) memory map, whose
/// address is recorded with 0 entries. `rsdp_paddr` points at the ACPI RSDP. Modules of
/// length 0 are left out of the list, as libxenguest does. libxenguest has room for two
/// modules only (more overrun its buffer); here the list grows with the modules, so up to
/// two the bytes are libxenguest's. Module command lines are cut at 1023 bytes (callers
/// refuse longer ones).
pub fn pvh_start_info(
    paddr: u64,
    cmdline: &str,
    modules: &[StartModule],
    rsdp_paddr: u64,
) -> Vec<u8> {
    let slots = start_info_module_slots(modules.len());
    let cmdline_at = START_INFO_BYTES;
    let modlist_at = cmdline_at + start_info_cmdline_bytes(cmdline);
    let cmdlines_at = modlist_at + MODLIST_ENTRY_BYTES * slots;
    let memmap_at = cmdlines_at + MODULE_CMDLINE_BYTES * slots;
    let mut seg = vec![0u8; pvh_start_info_bytes(cmdline, modules.len())];
    put(&mut seg, cmdline_at, cmdline.as_bytes());
    let present = modules.iter().filter(|m| m.size > 0);
    let entries = module_entries(&mut seg, paddr, cmdlines_at, present);
    let mut si = start_info_v1();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "one entry per module, and requests carry at most 10 modules"
    )]
    let nr_modules = entries.len() as u32;
    si.nr_modules = nr_modules;
    if !entries.is_empty() {
        si.modlist_paddr = paddr + modlist_at as u64;
    }
    si.cmdline_paddr = paddr + cmdline_at as u64;
    si.rsdp_paddr = rsdp_paddr;
    si.memmap_paddr = paddr + memmap_at as u64;
    put(&mut seg, 0, &si);
    put(&mut seg, modlist_at, entries.as_slice());
    seg
}

/// What a 64-bit PV guest's start info carries ([`abi::StartInfo`]), as the PV build knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PvStartInfo {
    /// `nr_pages`.
    pub nr_pages: u64,
    /// Machine address of shared info.
    pub shared_info: u64,
    /// `SIF_*`.
    pub flags: u32,
    /// Xenstore ring MFN.
    pub store_mfn: Mfn,
    /// Xenstore event channel.
    pub store_evtchn: u32,
    /// Console ring MFN.
    pub console_mfn: Mfn,
    /// Console event channel.
    pub console_evtchn: u32,
    /// Virtual address of the L4.
    pub pt_base: u64,
    /// Frames of the initial page tables.
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list.
    pub mfn_list: u64,
    /// Ramdisk: virtual address, or frame with `SIF_MOD_START_PFN`.
    pub mod_start: u64,
    /// Ramdisk length, bytes.
    pub mod_len: u64,
    /// Command line (cut at its first NUL and to 1023 bytes).
    pub cmdline: String,
    /// First frame of the p2m (with `INIT_P2M`).
    pub first_p2m_pfn: u64,
    /// Frames of the p2m and its tables (with `INIT_P2M`).
    pub nr_p2m_frames: u64,
}

impl PvStartInfo {
    /// The start_info page as libxenguest's `start_info_x86_64` fills it: the structure at
    /// offset 0, zeros after it.
    pub fn page(&self) -> Vec<u8> {
        let mut si = abi::StartInfo::new_zeroed();
        let magic = abi::GUEST_TYPE_X86_64.as_bytes();
        si.magic[..magic.len()].copy_from_slice(magic);
        si.nr_pages = self.nr_pages;
        si.shared_info = self.shared_info;
        si.flags = self.flags;
        si.store_mfn = self.store_mfn.0;
        si.store_evtchn = self.store_evtchn;
        si.console.mfn = self.console_mfn.0;
        si.console.evtchn = self.console_evtchn;
        si.pt_base = self.pt_base;
        si.nr_pt_frames = self.nr_pt_frames;
        si.mfn_list = self.mfn_list;
        si.mod_start = self.mod_start;
        si.mod_len = self.mod_len;
        // strncpy + forced NUL: at most 1023 bytes, cut at a NUL.
        let cmd = self.cmdline.as_bytes();
        let cmd = &cmd[..cmd.iter().position(|&b| b == 0).unwrap_or(cmd.len())];
        let n = cmd.len().min(abi::MAX_GUEST_CMDLINE - 1);
        si.cmd_line[..n].copy_from_slice(&cmd[..n]);
        si.first_p2m_pfn = self.first_p2m_pfn;
        si.nr_p2m_frames = self.nr_p2m_frames;
        let mut page = vec![0u8; PAGE_USIZE];
        put(&mut page, 0, &si);
        page
    }
}

/// A page of shared info as libxenguest's `shared_info_x86_64` leaves it: zero, every legacy
/// vCPU's `evtchn_upcall_mask` set.
pub fn pv_shared_info_page() -> Vec<u8> {
    let mut info = abi::SharedInfo::new_zeroed();
    for vcpu in &mut info.vcpu_info {
        vcpu.evtchn_upcall_mask = 1;
    }
    let mut page = vec![0u8; PAGE_USIZE];
    put(&mut page, 0, &info);
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::usize_of;

    #[test]
    fn special_pages_cover_every_param_and_end_at_the_region_end() {
        for ioreq_server in [false, true] {
            let p = special_pages(ioreq_server);
            assert_eq!(p.first.0 + p.nr_pages, END_SPECIAL_REGION_GFN);
            assert_eq!(p.nr_pages, if ioreq_server { 16 } else { 8 });
            for (param, value) in &p.params {
                let gfn = if *param == param::IDENT_PT {
                    value >> 12
                } else if *param == param::NR_IOREQ_SERVER_PAGES {
                    continue;
                } else {
                    *value
                };
                assert!(
                    (p.first.0..p.first.0 + p.nr_pages).contains(&gfn),
                    "param {param} -> {value:#x} outside the region"
                );
            }
            assert_eq!(p.params.last().unwrap().0, param::IDENT_PT);
        }
    }

    /// A zero buffer of `len` bytes with each `(offset, bytes)` copied in: the layout written
    /// out by hand from Xen's headers, independently of [`crate::abi`].
    fn by_hand(len: usize, fields: &[(usize, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; len];
        for (at, bytes) in fields {
            b[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        b
    }

    #[test]
    fn hvm_info_table_golden() {
        let t = hvm_info_table(&HvmInfo {
            apic_mode: 1,
            nr_vcpus: 4,
            vcpus_online: 10,
            lowmem_end: 0xF000_0000,
            highmem_end: 0x1_1000_0000,
            reserved_mem_pgstart: 0xFEFF0,
        });
        let mut expected = by_hand(
            48,
            &[
                (0, b"HVM INFO"),
                (8, &48u32.to_le_bytes()),
                (13, &[1]),
                (16, &4u32.to_le_bytes()),
                (20, &0xF0000u32.to_le_bytes()),
                (24, &0xFEFF0u32.to_le_bytes()),
                (28, &0x110000u32.to_le_bytes()),
                (32, &[0xFF, 0x03]),
            ],
        );
        expected[12] = expected.iter().fold(0u8, |s, b| s.wrapping_sub(*b));
        assert_eq!(t.as_slice(), expected.as_slice());
    }

    #[test]
    fn pvh_start_info_golden() {
        let modules = [
            StartModule {
                paddr: 0x200_0000,
                size: 0x1234,
                cmdline: "initrd".into(),
            },
            StartModule {
                paddr: 0x300_0000,
                size: 0x10,
                cmdline: String::new(),
            },
        ];
        let paddr = 0x10_0000u64;
        let seg = pvh_start_info(paddr, "quiet", &modules, 0xFFFC0);
        // 56-byte hvm_start_info, "quiet\0" in 8 bytes at 56, the list at 64 (2 x 32 bytes),
        // command-line slots at 128 and 1152, the empty memory map at 2176.
        let expected = by_hand(
            2176,
            &[
                (0, &0x336e_c578u32.to_le_bytes()),
                (4, &1u32.to_le_bytes()),
                (12, &2u32.to_le_bytes()),
                (16, &(paddr + 64).to_le_bytes()),
                (24, &(paddr + 56).to_le_bytes()),
                (32, &0xFFFC0u64.to_le_bytes()),
                (40, &(paddr + 2176).to_le_bytes()),
                (56, b"quiet"),
                (64, &0x200_0000u64.to_le_bytes()),
                (72, &0x1234u64.to_le_bytes()),
                (80, &(paddr + 128).to_le_bytes()),
                (96, &0x300_0000u64.to_le_bytes()),
                (104, &0x10u64.to_le_bytes()),
                (112, &(paddr + 1152).to_le_bytes()),
                (128, b"initrd"),
            ],
        );
        assert_eq!(seg, expected);
    }

    #[test]
    fn pv_start_info_page_golden() {
        let page = PvStartInfo {
            nr_pages: 0x40000,
            shared_info: 0x1234_5000,
            flags: 8,
            store_mfn: Mfn(0xABCDE),
            store_evtchn: 7,
            console_mfn: Mfn(0xABCDF),
            console_evtchn: 8,
            pt_base: 0xffff_ffff_8100_0000,
            nr_pt_frames: 9,
            mfn_list: 0xffff_ffff_8200_0000,
            mod_start: 0x555,
            mod_len: 0x3000,
            cmdline: "console=hvc0".into(),
            first_p2m_pfn: 0x666,
            nr_p2m_frames: 0x77,
        }
        .page();
        let expected = by_hand(
            4096,
            &[
                (0, b"xen-3.0-x86_64"),
                (32, &0x40000u64.to_le_bytes()),
                (40, &0x1234_5000u64.to_le_bytes()),
                (48, &8u32.to_le_bytes()),
                (56, &0xABCDEu64.to_le_bytes()),
                (64, &7u32.to_le_bytes()),
                (72, &0xABCDFu64.to_le_bytes()),
                (80, &8u32.to_le_bytes()),
                (88, &0xffff_ffff_8100_0000u64.to_le_bytes()),
                (96, &9u64.to_le_bytes()),
                (104, &0xffff_ffff_8200_0000u64.to_le_bytes()),
                (112, &0x555u64.to_le_bytes()),
                (120, &0x3000u64.to_le_bytes()),
                (128, b"console=hvc0"),
                (1152, &0x666u64.to_le_bytes()),
                (1160, &0x77u64.to_le_bytes()),
            ],
        );
        assert_eq!(page, expected);
    }

    #[test]
    fn pv_start_info_cmdline_is_cut_at_a_nul_and_at_1023_bytes() {
        let cmd_line = |cmdline: String| {
            let page = PvStartInfo {
                cmdline,
                ..Default::default()
            }
            .page();
            page[128..1152].to_vec()
        };
        let cut = cmd_line("a\0b".into());
        assert_eq!(&cut[..3], b"a\0\0");
        let long = cmd_line("y".repeat(1500));
        assert!(long[..1023].iter().all(|&b| b == b'y'));
        assert_eq!(long[1023], 0, "always NUL-terminated");
    }

    #[test]
    fn pv_shared_info_page_masks_every_legacy_vcpu() {
        let mask_at: Vec<usize> = (0..32).map(|v| v * 64 + 1).collect();
        let fields: Vec<(usize, &[u8])> = mask_at.iter().map(|&at| (at, &[1u8][..])).collect();
        assert_eq!(pv_shared_info_page(), by_hand(4096, &fields));
    }

    #[test]
    fn special_pages_are_where_libxenguest_puts_them() {
        assert_eq!(Special::Xenstore.gfn(), Gfn(1044476));
        assert_eq!(Special::Console.gfn(), Gfn(1044479));
        assert_eq!(Special::Paging.gfn(), Gfn(0xFEFF8));
        assert_eq!(IOREQ_SERVER_GFN, Gfn(0xFEFF0));
    }

    #[test]
    fn ident_pt_maps_4_gib_in_4_mib_pages() {
        let pt = ident_page_table();
        assert_eq!(pt.len(), 4096);
        assert_eq!(&pt[0..4], &0xE7u32.to_le_bytes());
        assert_eq!(&pt[4092..4096], &(0xFFC0_00E7u32).to_le_bytes());
    }

    #[test]
    fn hvm_info_checksum_and_fields() {
        let t = hvm_info_table(&HvmInfo {
            apic_mode: 1,
            nr_vcpus: 4,
            vcpus_online: 2,
            lowmem_end: 0xF000_0000,
            highmem_end: 0x1_1000_0000,
            reserved_mem_pgstart: 0xFEFF0,
        });
        assert_eq!(&t[0..8], b"HVM INFO");
        assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(t[32], 0b11);
        assert_eq!(u32::from_le_bytes(t[20..24].try_into().unwrap()), 0xF0000);
        assert_eq!(u32::from_le_bytes(t[24..28].try_into().unwrap()), 0xFEFF0);
        assert_eq!(u32::from_le_bytes(t[28..32].try_into().unwrap()), 0x110000);
        let many = hvm_info_table(&HvmInfo {
            vcpus_online: 500,
            ..HvmInfo {
                apic_mode: 0,
                nr_vcpus: 128,
                vcpus_online: 0,
                lowmem_end: 0,
                highmem_end: 0,
                reserved_mem_pgstart: 0,
            }
        });
        assert_eq!(
            &many[32..48],
            &[0xFF; 16],
            "online map is bounded at 128 vCPUs"
        );
    }

    #[test]
    fn start_info_lists_modules_with_cmdlines() {
        let seg = hvm_start_info(
            0x135000,
            &[StartModule {
                paddr: 0x136000,
                size: 100,
                cmdline: "ipxe".into(),
            }],
        );
        assert_eq!(
            u32::from_le_bytes(seg[0..4].try_into().unwrap()),
            START_INFO_MAGIC
        );
        assert_eq!(u32::from_le_bytes(seg[12..16].try_into().unwrap()), 1);
        assert_eq!(
            u64::from_le_bytes(seg[16..24].try_into().unwrap()),
            0x135000 + 56
        );
        let cmdline_paddr = u64::from_le_bytes(seg[56 + 16..56 + 24].try_into().unwrap());
        let at = usize_of(cmdline_paddr - 0x135000);
        assert_eq!(&seg[at..at + 5], b"ipxe\0");
    }

    #[test]
    fn pvh_start_info_has_cmdline_modules_and_rsdp() {
        let modules: Vec<StartModule> = (0..3)
            .map(|i| StartModule {
                paddr: 0x200_0000 + i * 0x1000,
                size: if i == 1 { 0 } else { 100 + i },
                cmdline: format!("mod{i}"),
            })
            .collect();
        let paddr = 0x300_0000;
        let seg = pvh_start_info(paddr, "console=hvc0", &modules, 0xFFFC0);
        let u32_at = |at: usize| u32::from_le_bytes(seg[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(seg[at..at + 8].try_into().unwrap());
        assert_eq!((u32_at(0), u32_at(4)), (START_INFO_MAGIC, 1));
        assert_eq!(u32_at(12), 2, "the empty module is left out");
        assert_eq!(u64_at(24), paddr + 56);
        assert_eq!(&seg[56..69], b"console=hvc0\0");
        assert_eq!(u64_at(32), 0xFFFC0);
        let modlist = usize_of(u64_at(16) - paddr);
        assert_eq!(modlist, 56 + 16, "after the cmdline rounded to 8");
        let entry = |i: usize| &seg[modlist + 32 * i..modlist + 32 * (i + 1)];
        let field = |e: &[u8], at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap());
        assert_eq!((field(entry(0), 0), field(entry(0), 8)), (0x200_0000, 100));
        assert_eq!((field(entry(1), 0), field(entry(1), 8)), (0x200_2000, 102));
        let cmdline = usize_of(field(entry(1), 16) - paddr);
        assert_eq!(&seg[cmdline..cmdline + 5], b"mod2\0");
        // Three slots (one per module), then the empty memory map.
        assert_eq!(u64_at(40), paddr + (56 + 16 + 3 * 32 + 3 * 1024) as u64);
        assert_eq!(seg.len(), pvh_start_info_bytes("console=hvc0", 3));
        assert_eq!(u32_at(48), 0);
        // Up to two modules, libxenguest's sizes.
        assert_eq!(pvh_start_info_bytes("", 0), 56 + 8 + 2 * (32 + 1024));
    }
}
