//! Xen's guest ABI structures the builders write into guests, as `#[repr(C)]` types laid out
//! as Xen's public headers lay them out (xen-project/xen at tag RELEASE-4.17.0, files under
//! `xen/include/public/`). None of these headers packs its structures.
//!
//! Each type derives zerocopy's `IntoBytes`, which refuses at compile time any type with
//! padding, so every padding byte of the C layout is an explicit field here and is zero in
//! [`FromZeros::new_zeroed`]. Sizes and the offsets the builders rely on are asserted at
//! compile time below each type; with feature `xen` the tests also compare every field offset
//! with bindgen's layout-tested bindings (`xen_sys::abi`).
//!
//! Fields are in host byte order: Xen's x86 guest ABI is little-endian, so the crate refuses
//! to build for a big-endian target rather than write wrong bytes.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use zerocopy::FromZeros;

#[cfg(target_endian = "big")]
compile_error!("Xen's x86 guest ABI structures (src/abi.rs) are written in host byte order");

/// `HVM_MAX_VCPUS` (`public/hvm/hvm_info_table.h` line 18): bits in `vcpu_online`.
pub const HVM_MAX_VCPUS: usize = 128;

/// `struct hvm_info_table` (`public/hvm/hvm_info_table.h` lines 28-63): what hvmloader reads
/// at `HVM_INFO_PADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmInfoTable {
    /// `"HVM INFO"`.
    pub signature: [u8; 8],
    /// `sizeof(struct hvm_info_table)`.
    pub length: u32,
    /// Makes the bytes of the table sum to 0.
    pub checksum: u8,
    /// Whether firmware builds APIC descriptors (MADT, MP tables).
    pub apic_mode: u8,
    /// C padding before `nr_vcpus`.
    pad0: [u8; 2],
    /// vCPUs of the domain.
    pub nr_vcpus: u32,
    /// End of RAM below 4 GiB, in pages.
    pub low_mem_pgend: u32,
    /// First page of the reserved area below 4 GiB.
    pub reserved_mem_pgstart: u32,
    /// End of RAM above 4 GiB, in pages (0: none).
    pub high_mem_pgend: u32,
    /// Bitmap of the vCPUs online at boot.
    pub vcpu_online: [u8; HVM_MAX_VCPUS.div_ceil(8)],
}

const _: () = assert!(size_of::<HvmInfoTable>() == 48);
const _: () = assert!(offset_of!(HvmInfoTable, length) == 8);
const _: () = assert!(offset_of!(HvmInfoTable, checksum) == 12);
const _: () = assert!(offset_of!(HvmInfoTable, apic_mode) == 13);
const _: () = assert!(offset_of!(HvmInfoTable, nr_vcpus) == 16);
const _: () = assert!(offset_of!(HvmInfoTable, low_mem_pgend) == 20);
const _: () = assert!(offset_of!(HvmInfoTable, reserved_mem_pgstart) == 24);
const _: () = assert!(offset_of!(HvmInfoTable, high_mem_pgend) == 28);
const _: () = assert!(offset_of!(HvmInfoTable, vcpu_online) == 32);

/// `XEN_HVM_START_MAGIC_VALUE` (`public/arch-x86/hvm/start_info.h` line 86).
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct hvm_start_info`, version 1 (`public/arch-x86/hvm/start_info.h` lines 108-126, the
/// layout drawn in lines 15-42): what a PVH kernel or hvmloader finds at `%ebx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of the structure (1: with the memory map fields).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Entries in the module list.
    pub nr_modules: u32,
    /// Guest-physical address of the [`HvmModlistEntry`] array.
    pub modlist_paddr: u64,
    /// Guest-physical address of the NUL-terminated kernel command line.
    pub cmdline_paddr: u64,
    /// Guest-physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Guest-physical address of the [`HvmMemmapTableEntry`] array.
    pub memmap_paddr: u64,
    /// Entries in the memory map (0: none given).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvmStartInfo>() == 56);
const _: () = assert!(offset_of!(HvmStartInfo, version) == 4);
const _: () = assert!(offset_of!(HvmStartInfo, nr_modules) == 12);
const _: () = assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
const _: () = assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
const _: () = assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_paddr) == 40);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);

/// `struct hvm_modlist_entry` (`public/arch-x86/hvm/start_info.h` lines 128-133).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// Guest-physical address of the module.
    pub paddr: u64,
    /// Length of the module, bytes.
    pub size: u64,
    /// Guest-physical address of its NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Zero.
    pub reserved: u64,
}

const _: () = assert!(size_of::<HvmModlistEntry>() == 32);
const _: () = assert!(offset_of!(HvmModlistEntry, size) == 8);
const _: () = assert!(offset_of!(HvmModlistEntry, cmdline_paddr) == 16);

/// `struct hvm_memmap_table_entry` (`public/arch-x86/hvm/start_info.h` lines 135-140).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Length, bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*` (ACPI address range types).
    pub r#type: u32,
    /// Must be zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvmMemmapTableEntry>() == 24);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, size) == 8);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, r#type) == 16);

/// `MAX_GUEST_CMDLINE` (`public/xen.h` line 854).
pub const MAX_GUEST_CMDLINE: usize = 1024;
/// `SIF_MOD_START_PFN` (`public/xen.h` line 873): `mod_start` is a frame number.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// The magic of a 64-bit PV guest's start info, libxenguest's `guest_type`
/// (`tools/libs/guest/xg_dom_x86.c` line 1906).
pub const GUEST_TYPE_X86_64: &str = "xen-3.0-x86_64";

/// The console member of `start_info` as a domU sees it: the `domU` arm of the union
/// (`public/xen.h` lines 836-845; the `dom0` arm, two `uint32_t`, is smaller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ConsoleDomU {
    /// Machine frame of the console ring.
    pub mfn: u64,
    /// Console event channel.
    pub evtchn: u32,
    /// C padding to the union's 8-byte alignment.
    pad0: u32,
}

const _: () = assert!(size_of::<ConsoleDomU>() == 16);
const _: () = assert!(offset_of!(ConsoleDomU, evtchn) == 8);

/// x86_64 `start_info_t` (`public/xen.h` lines 828-860, `unsigned long` and `xen_pfn_t` being
/// 64-bit): what a PV kernel finds at `%rsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL-padded.
    pub magic: [u8; 32],
    /// Pages of the domain.
    pub nr_pages: u64,
    /// Machine address of shared info.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// C padding before `store_mfn`.
    pad0: u32,
    /// Machine frame of the xenstore ring.
    pub store_mfn: u64,
    /// Xenstore event channel.
    pub store_evtchn: u32,
    /// C padding before `console`.
    pad1: u32,
    /// Console ring and event channel.
    pub console: ConsoleDomU,
    /// Virtual address of the top-level page table.
    pub pt_base: u64,
    /// Frames of the initial page tables.
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list.
    pub mfn_list: u64,
    /// Ramdisk: virtual address, or frame with [`SIF_MOD_START_PFN`].
    pub mod_start: u64,
    /// Ramdisk length, bytes.
    pub mod_len: u64,
    /// NUL-terminated kernel command line.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First frame of the initial p2m mapping and its tables.
    pub first_p2m_pfn: u64,
    /// Frames of the initial p2m mapping and its tables.
    pub nr_p2m_frames: u64,
}

const _: () = assert!(size_of::<StartInfo>() == 1168);
const _: () = assert!(offset_of!(StartInfo, nr_pages) == 32);
const _: () = assert!(offset_of!(StartInfo, shared_info) == 40);
const _: () = assert!(offset_of!(StartInfo, flags) == 48);
const _: () = assert!(offset_of!(StartInfo, store_mfn) == 56);
const _: () = assert!(offset_of!(StartInfo, store_evtchn) == 64);
const _: () = assert!(offset_of!(StartInfo, console) == 72);
const _: () = assert!(offset_of!(StartInfo, pt_base) == 88);
const _: () = assert!(offset_of!(StartInfo, nr_pt_frames) == 96);
const _: () = assert!(offset_of!(StartInfo, mfn_list) == 104);
const _: () = assert!(offset_of!(StartInfo, mod_start) == 112);
const _: () = assert!(offset_of!(StartInfo, mod_len) == 120);
const _: () = assert!(offset_of!(StartInfo, cmd_line) == 128);
const _: () = assert!(offset_of!(StartInfo, first_p2m_pfn) == 1152);
const _: () = assert!(offset_of!(StartInfo, nr_p2m_frames) == 1160);

/// `XEN_LEGACY_MAX_VCPUS` (`public/arch-x86/xen.h` line 100): vCPU slots in shared info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `struct vcpu_time_info` (`public/xen.h` lines 643-672, interface version above 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the values.
    pub version: u32,
    /// Padding in the C structure too.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at the last update.
    pub system_time: u64,
    /// TSC to nanoseconds multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// TSC shift before the multiplication.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding in the C structure too.
    pub pad1: [u8; 2],
}

const _: () = assert!(size_of::<VcpuTimeInfo>() == 32);
const _: () = assert!(offset_of!(VcpuTimeInfo, tsc_to_system_mul) == 24);

/// x86_64 `struct arch_vcpu_info` (`public/arch-x86/xen-x86_64.h` lines 204-207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// The guest's `%cr2` at a page fault.
    pub cr2: u64,
    /// Keeps `vcpu_info` at 64 bytes.
    pub pad: u64,
}

const _: () = assert!(size_of::<ArchVcpuInfo>() == 16);

/// `struct vcpu_info` (`public/xen.h` lines 678-713; x86 defines `XEN_HAVE_PV_UPCALL_MASK`,
/// `public/arch-x86/xen.h` line 66).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuInfo {
    /// Xen sets it to signal pending events.
    pub evtchn_upcall_pending: u8,
    /// Non-zero: no event upcalls to this vCPU.
    pub evtchn_upcall_mask: u8,
    /// C padding before `evtchn_pending_sel`.
    pad0: [u8; 6],
    /// Which words of `evtchn_pending` to scan.
    pub evtchn_pending_sel: u64,
    /// Architecture part.
    pub arch: ArchVcpuInfo,
    /// Time base.
    pub time: VcpuTimeInfo,
}

const _: () = assert!(size_of::<VcpuInfo>() == 64);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_upcall_mask) == 1);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
const _: () = assert!(offset_of!(VcpuInfo, arch) == 16);
const _: () = assert!(offset_of!(VcpuInfo, time) == 32);

/// x86_64 `struct arch_shared_info` (`public/arch-x86/xen.h` lines 217-257).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Valid entries of the p2m.
    pub max_pfn: u64,
    /// Frame of the p2m's frame list list (0: not set up).
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// `%cr3` of the address space holding the linear p2m list.
    pub p2m_cr3: u64,
    /// Virtual address of the linear p2m list.
    pub p2m_vaddr: u64,
    /// Odd while the guest changes the p2m mapping.
    pub p2m_generation: u64,
}

const _: () = assert!(size_of::<ArchSharedInfo>() == 48);

/// Event channel words in each of `evtchn_pending` and `evtchn_mask`:
/// `sizeof(xen_ulong_t) * 8`.
pub const EVTCHN_WORDS: usize = 64;

/// x86_64 `struct shared_info` (`public/xen.h` lines 727-785).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    /// Per-vCPU event and time state of the first [`XEN_LEGACY_MAX_VCPUS`] vCPUs.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Pending event channels, one bit each.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// Masked event channels, one bit each.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Odd while the wallclock is updated.
    pub wc_version: u32,
    /// Wallclock seconds (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds (high 32 bits).
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}

const _: () = assert!(size_of::<SharedInfo>() == 3136);
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
const _: () = assert!(offset_of!(SharedInfo, wc_version) == 3072);
const _: () = assert!(offset_of!(SharedInfo, arch) == 3088);

#[cfg(test)]
mod tests;
