//! Guest-physical layout of an HVM guest: the low MMIO hole, RAM below and above 4 GiB,
//! RMRR and vGPU VRAM reservations, and the e820 handed to Xen. Pure: numbers in, a plan
//! out (the C xenguest's `hvm_build_setup_mem`, before it calls libxenguest).

use crate::error::{Error, Result, Step};
use crate::hypervisor::ReservedRange;
use crate::types::{E820Entry, E820Type, PAGE_SHIFT};
use serde::Serialize;

/// 4 GiB, where high RAM starts.
pub const FOUR_GIB: u64 = 1 << 32;
/// Default low MMIO hole, `HVM_BELOW_4G_MMIO_LENGTH` (4 GiB − 0xF0000000).
pub const DEFAULT_MMIO_HOLE_BYTES: u64 = 256 << 20;
/// With an NVIDIA vGPU the hole is at least this big (XGN rule) ...
pub const VGPU_MIN_MMIO_HOLE_BYTES: u64 = 512 << 20;
/// ... and its BARs need this much more MMIO space.
pub const VGPU_EXTRA_MMIO_BYTES: u64 = 256 << 20;
/// hvmloader doubles the hole up to this size and no further.
pub const MAX_MMIO_HOLE_BYTES: u64 = 2 << 30;
/// An AMD MxGPU (S7150) needs the largest hole.
pub const MXGPU_MMIO_HOLE_BYTES: u64 = MAX_MMIO_HOLE_BYTES;
/// RAM below 4 GiB starts here in the map given to Xen; hvmloader owns the first MiB.
pub const LOW_RAM_START: u64 = 1 << 20;
/// First candidate address of the vGPU VRAM reservation (`VRAM_RESERVED_ADDR_INIT`).
pub const VRAM_RESERVED_ADDR_INIT: u64 = 0xFB00_0000;
/// Size of the vGPU VRAM reservation (`VRAM_RESERVED_SIZE`).
pub const VRAM_RESERVED_BYTES: u64 = 0x0100_0000;
/// The e820 handed to Xen holds at most this many entries (`E820MAX`).
pub const E820_MAX_ENTRIES: usize = 128;
/// RMRR entries stop two short of `E820MAX`, leaving room for high RAM and VRAM.
pub const MAX_RMRR_E820_INDEX: usize = E820_MAX_ENTRIES - 2;
/// One past the highest frame of a 52-bit physical address space (x86's architectural
/// maximum): RMRRs must end below it.
pub const MAX_PFN: u64 = 1 << (52 - PAGE_SHIFT);

/// What the layout depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HvmLayoutInput {
    /// Guest RAM, MiB (`-mem_max_mib`).
    pub mem_max_mib: u64,
    /// `platform/mmio_hole_size`: a minimum for the hole, bytes (0 = default).
    pub min_mmio_hole_bytes: u64,
    /// `-vgpu`: an NVIDIA vGPU is attached.
    pub vgpu: bool,
    /// Sum of the BAR sizes of the passthrough devices, bytes.
    pub passthrough_bar_bytes: u64,
    /// An AMD MxGPU is passed through.
    pub mxgpu: bool,
    /// Reserved device memory of the passthrough devices, in the order found.
    pub rmrrs: Vec<ReservedRange>,
}

/// The layout: what `xc_dom_image` gets and the e820 for `xc_domain_set_memory_map`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HvmLayout {
    /// End of RAM below the hole, bytes.
    pub lowmem_end: u64,
    /// End of RAM above 4 GiB, bytes (4 GiB when there is none).
    pub highmem_end: u64,
    /// Start of the low MMIO hole, bytes.
    pub mmio_start: u64,
    /// Size of the low MMIO hole, bytes (written to `vm-data/mmio-hole-size`).
    pub mmio_size: u64,
    /// The map for Xen, in the C xenguest's order (not sorted).
    pub e820: Vec<E820Entry>,
    /// Guest-physical address of the vGPU VRAM reservation.
    pub vram_reserved_addr: Option<u64>,
}

impl HvmLayout {
    /// Guest RAM ranges in pages, `[start, end)`: the vmemranges libxenguest populates.
    pub fn ram_ranges_pages(&self) -> Vec<(u64, u64)> {
        let mut ranges = vec![(0, self.lowmem_end >> PAGE_SHIFT)];
        if self.highmem_end > FOUR_GIB {
            ranges.push((FOUR_GIB >> PAGE_SHIFT, self.highmem_end >> PAGE_SHIFT));
        }
        ranges
    }

    /// The hole in pages, `[start, end)`.
    pub fn mmio_hole_pages(&self) -> (u64, u64) {
        (
            self.mmio_start >> PAGE_SHIFT,
            (self.mmio_start + self.mmio_size) >> PAGE_SHIFT,
        )
    }
}

/// The hole before RMRRs: default or `platform/mmio_hole_size`, grown for vGPU, BARs, MxGPU.
fn provisional_hole(input: &HvmLayoutInput) -> u64 {
    let mut size = DEFAULT_MMIO_HOLE_BYTES.max(input.min_mmio_hole_bytes);
    // Saturating: BAR sizes come from sysfs text, and any sum past 2 GiB asks for the most.
    let mut needed = DEFAULT_MMIO_HOLE_BYTES.saturating_add(input.passthrough_bar_bytes);
    if input.vgpu {
        needed = needed.saturating_add(VGPU_EXTRA_MMIO_BYTES);
        size = size.max(VGPU_MIN_MMIO_HOLE_BYTES);
    }
    while size < needed && size < MAX_MMIO_HOLE_BYTES {
        size <<= 1;
    }
    if input.mxgpu {
        size = size.max(MXGPU_MMIO_HOLE_BYTES);
    }
    size
}

fn overlaps(a: u64, a_len: u64, b: &E820Entry) -> bool {
    a < b.end() && b.addr < a + a_len
}

/// RAM of `ram_bytes` around a hole from `mmio_start` to 4 GiB: `(lowmem_end, highmem_end)`,
/// RAM from 0 up to the hole, the rest from 4 GiB (`highmem_end` = 4 GiB when none is above).
pub const fn split_ram(ram_bytes: u64, mmio_start: u64) -> (u64, u64) {
    if ram_bytes > mmio_start {
        (mmio_start, FOUR_GIB + (ram_bytes - mmio_start))
    } else {
        (ram_bytes, FOUR_GIB)
    }
}

/// The PVH layout (`pvh_setup_mem`): no device model and no passthrough, so a hole of
/// exactly [`DEFAULT_MMIO_HOLE_BYTES`] below 4 GiB and RAM around it; the e820 is
/// [`pvh_e820`]'s, once the ACPI tables are placed. `mem_max_mib` is bounded by the
/// request's checks ([`crate::MAX_GUEST_MIB`]).
pub fn plan_pvh(mem_max_mib: u64) -> HvmLayout {
    let mmio_size = DEFAULT_MMIO_HOLE_BYTES;
    let mmio_start = FOUR_GIB - mmio_size;
    let (lowmem_end, highmem_end) = split_ram(mem_max_mib << 20, mmio_start);
    HvmLayout {
        lowmem_end,
        highmem_end,
        mmio_start,
        mmio_size,
        e820: Vec::new(),
        vram_reserved_addr: None,
    }
}

/// The PVH e820 (`pvh_setup_e820`), in the C order (not sorted): RAM from 0, an ACPI entry
/// per table module `(paddr, bytes)` (page-aligned down, so the RSDP's overlaps low RAM), RAM
/// above 4 GiB.
pub fn pvh_e820(plan: &HvmLayout, acpi_modules: &[(u64, u64)]) -> Vec<E820Entry> {
    let mut e820 = vec![E820Entry {
        addr: 0,
        size: plan.lowmem_end,
        kind: E820Type::Ram,
    }];
    for &(paddr, bytes) in acpi_modules {
        let offset = paddr % (1 << PAGE_SHIFT);
        e820.push(E820Entry {
            addr: paddr - offset,
            size: bytes + offset,
            kind: E820Type::Acpi,
        });
    }
    if plan.highmem_end > FOUR_GIB {
        e820.push(E820Entry {
            addr: FOUR_GIB,
            size: plan.highmem_end - FOUR_GIB,
            kind: E820Type::Ram,
        });
    }
    e820
}

/// Plan the layout. Errors name the value that makes it impossible.
pub fn plan_hvm(input: &HvmLayoutInput) -> Result<HvmLayout> {
    let invalid = |reason: String| Step::HvmSetupMem.invalid(reason);
    if input.mem_max_mib < 2 {
        return Err(invalid(format!(
            "mem_max_mib {} is too small (at least 2 MiB)",
            input.mem_max_mib
        )));
    }
    if input.mem_max_mib > crate::MAX_GUEST_MIB {
        return Err(invalid(format!(
            "mem_max_mib {} exceeds {} MiB",
            input.mem_max_mib,
            crate::MAX_GUEST_MIB
        )));
    }
    if input.min_mmio_hole_bytes > MAX_MMIO_HOLE_BYTES
        || !input.min_mmio_hole_bytes.is_multiple_of(1 << PAGE_SHIFT)
    {
        return Err(Error::platform(
            "platform/mmio_hole_size",
            input.min_mmio_hole_bytes.to_string(),
            format!("must be a multiple of 4096 and at most {MAX_MMIO_HOLE_BYTES:#x}"),
        ));
    }

    let mut mmio_size = provisional_hole(input);
    let mut mmio_start = FOUR_GIB - mmio_size;
    let (mut lowmem_end, mut highmem_end) = split_ram(input.mem_max_mib << 20, mmio_start);

    let mut e820 = vec![E820Entry {
        addr: LOW_RAM_START,
        size: lowmem_end - LOW_RAM_START,
        kind: E820Type::Ram,
    }];
    let mut overlapped_ram = 0;
    for rmrr in &input.rmrrs {
        if e820.len() >= MAX_RMRR_E820_INDEX {
            return Err(Error::layout(
                "Error: too many E820 reserved entries for domain",
            ));
        }
        // Xen reports frames below 2^40 (52-bit physical addresses); anything else would
        // wrap the byte addresses below.
        let end_pfn = rmrr.start_pfn.checked_add(rmrr.nr_pages);
        if end_pfn.is_none_or(|end| end > MAX_PFN) {
            return Err(Error::layout(format!(
                "Error: RMRR at pfn {:#x} of {:#x} pages is beyond the physical address space",
                rmrr.start_pfn, rmrr.nr_pages
            )));
        }
        let addr = rmrr.start_pfn << PAGE_SHIFT;
        let size = rmrr.nr_pages << PAGE_SHIFT;
        e820.push(E820Entry {
            addr,
            size,
            kind: E820Type::Reserved,
        });
        // The C code shrinks low RAM to the RMRR even when it lies in the first MiB, which
        // underflows the RAM entry; RAM starts at 1 MiB, so such an RMRR overlaps nothing.
        if addr < lowmem_end && addr >= LOW_RAM_START {
            overlapped_ram += lowmem_end - addr;
            lowmem_end = addr;
        }
    }
    e820[0].size -= overlapped_ram;
    highmem_end += overlapped_ram;
    mmio_size += overlapped_ram;
    mmio_start -= overlapped_ram;
    if highmem_end > FOUR_GIB {
        e820.push(E820Entry {
            addr: FOUR_GIB,
            size: highmem_end - FOUR_GIB,
            kind: E820Type::Ram,
        });
    }

    let mut vram_reserved_addr = None;
    if input.vgpu {
        let mut addr = VRAM_RESERVED_ADDR_INIT;
        while e820.iter().any(|e| overlaps(addr, VRAM_RESERVED_BYTES, e)) {
            addr -= VRAM_RESERVED_BYTES;
            if addr < mmio_start {
                return Err(Error::layout(
                    "Error: failed to allocate VRAM reserved region",
                ));
            }
        }
        e820.push(E820Entry {
            addr,
            size: VRAM_RESERVED_BYTES,
            kind: E820Type::Reserved,
        });
        vram_reserved_addr = Some(addr);
    }

    Ok(HvmLayout {
        lowmem_end,
        highmem_end,
        mmio_start,
        mmio_size,
        e820,
        vram_reserved_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn pvh_has_an_exact_256_mib_hole() {
        let l = plan_pvh(8192);
        assert_eq!((l.mmio_start, l.mmio_size), (0xF000_0000, 256 << 20));
        assert_eq!(
            (l.lowmem_end, l.highmem_end),
            (0xF000_0000, FOUR_GIB + (4352 << 20))
        );
        let l = plan_pvh(2048);
        assert_eq!((l.lowmem_end, l.highmem_end), (2 << 30, FOUR_GIB));
        assert_eq!(l.ram_ranges_pages(), vec![(0, 0x80000)]);
    }

    #[test]
    fn pvh_e820_is_the_c_one() {
        let plan = plan_pvh(4096);
        let e = pvh_e820(
            &plan,
            &[(0xFF000, 0x24), (0xFC00_0000, 0x1000), (0xFC00_1000, 0x3a5)],
        );
        let acpi = |addr, size| E820Entry {
            addr,
            size,
            kind: E820Type::Acpi,
        };
        assert_eq!(e.len(), 5);
        assert_eq!((e[0].addr, e[0].size), (0, 0xF000_0000));
        assert_eq!(e[1], acpi(0xFF000, 0x24));
        assert_eq!(e[2], acpi(0xFC00_0000, 0x1000));
        assert_eq!(e[3], acpi(0xFC00_1000, 0x3a5));
        assert_eq!((e[4].addr, e[4].end()), (FOUR_GIB, 0x1_1000_0000));
        // An unaligned table starts its entry at its page.
        assert_eq!(pvh_e820(&plan, &[(0xFF010, 0x24)])[1], acpi(0xFF000, 0x34));
    }

    proptest::proptest! {
        /// All the RAM asked for, none of it in the hole, low RAM below the hole.
        #[test]
        fn pvh_ram_is_all_there_and_clear_of_the_hole(mib in 1u64..(1 << 24)) {
            let l = plan_pvh(mib);
            let ram: u64 = l.ram_ranges_pages().iter().map(|(s, e)| e - s).sum();
            proptest::prop_assert_eq!(ram << PAGE_SHIFT, mib << 20);
            proptest::prop_assert!(l.lowmem_end <= l.mmio_start);
            proptest::prop_assert_eq!(l.mmio_start + l.mmio_size, FOUR_GIB);
            let e = pvh_e820(&l, &[]);
            let ram_e820: u64 = e.iter().filter(|x| x.kind == E820Type::Ram).map(|x| x.size).sum();
            proptest::prop_assert_eq!(ram_e820, mib << 20);
        }
    }

    fn ram(addr: u64, end: u64) -> E820Entry {
        E820Entry {
            addr,
            size: end - addr,
            kind: E820Type::Ram,
        }
    }

    fn reserved(addr: u64, size: u64) -> E820Entry {
        E820Entry {
            addr,
            size,
            kind: E820Type::Reserved,
        }
    }

    fn plan(mem_max_mib: u64) -> HvmLayout {
        plan_hvm(&HvmLayoutInput {
            mem_max_mib,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn golden_4096_mib() {
        let l = plan(4096);
        assert_eq!(
            l.e820,
            vec![ram(0x10_0000, 0xF000_0000), ram(FOUR_GIB, 0x1_1000_0000)]
        );
        assert_eq!((l.mmio_start, l.mmio_size), (0xF000_0000, 268_435_456));
        assert_eq!(
            l.ram_ranges_pages(),
            vec![(0, 0xF0000), (0x100000, 0x110000)]
        );
    }

    #[test]
    fn golden_2048_mib_has_no_high_ram() {
        let l = plan(2048);
        assert_eq!(l.e820, vec![ram(0x10_0000, 0x8000_0000)]);
        assert_eq!((l.lowmem_end, l.highmem_end), (0x8000_0000, FOUR_GIB));
        assert_eq!(l.ram_ranges_pages(), vec![(0, 0x80000)]);
    }

    #[test]
    fn golden_vgpu_4096_mib() {
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 4096,
            vgpu: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            l.e820,
            vec![
                ram(0x10_0000, 0xE000_0000),
                ram(FOUR_GIB, 0x1_2000_0000),
                reserved(0xFB00_0000, 0x100_0000)
            ]
        );
        assert_eq!(l.mmio_size, 536_870_912);
        assert_eq!(l.vram_reserved_addr, Some(0xFB00_0000));
    }

    #[test]
    fn passthrough_bars_double_the_hole_up_to_2_gib() {
        let with_bars = |bytes| {
            plan_hvm(&HvmLayoutInput {
                mem_max_mib: 8192,
                passthrough_bar_bytes: bytes,
                ..Default::default()
            })
            .unwrap()
            .mmio_size
        };
        assert_eq!(with_bars(0), 256 << 20);
        assert_eq!(with_bars(1), 512 << 20);
        assert_eq!(with_bars(256 << 20), 512 << 20);
        assert_eq!(with_bars(700 << 20), 1 << 30);
        assert_eq!(with_bars(64 << 30), 2 << 30, "the hole never exceeds 2 GiB");
    }

    #[test]
    fn mxgpu_gets_2_gib() {
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 8192,
            mxgpu: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((l.mmio_start, l.mmio_size), (0x8000_0000, 0x8000_0000));
        assert_eq!(l.highmem_end, FOUR_GIB + (6 << 30));
    }

    #[test]
    fn platform_mmio_hole_size_is_a_minimum() {
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 4096,
            min_mmio_hole_bytes: 1 << 30,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (l.mmio_start, l.lowmem_end, l.highmem_end),
            (0xC000_0000, 0xC000_0000, FOUR_GIB + (1 << 30))
        );
        let small = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 4096,
            min_mmio_hole_bytes: 4096,
            ..Default::default()
        });
        assert_eq!(small.unwrap().mmio_size, DEFAULT_MMIO_HOLE_BYTES);
        let bad = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 4096,
            min_mmio_hole_bytes: 3 << 30,
            ..Default::default()
        });
        assert!(matches!(
            bad,
            Err(Error {
                kind: ErrorKind::Platform { .. },
                ..
            })
        ));
    }

    #[test]
    fn rmrr_in_low_ram_moves_ram_above_4_gib_and_grows_the_hole() {
        let rmrr = ReservedRange {
            start_pfn: 0xC0000,
            nr_pages: 0x100,
        }; // 3 GiB, 1 MiB long
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 4096,
            rmrrs: vec![rmrr],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            l.e820,
            vec![
                ram(0x10_0000, 0xC000_0000),
                reserved(0xC000_0000, 0x10_0000),
                ram(FOUR_GIB, 0x1_4000_0000)
            ]
        );
        assert_eq!((l.mmio_start, l.mmio_size), (0xC000_0000, 0x4000_0000));
        let total: u64 = l.ram_ranges_pages().iter().map(|(s, e)| e - s).sum();
        assert_eq!(total, 4096 << 8, "RAM is preserved");
    }

    #[test]
    fn rmrr_below_1_mib_does_not_underflow() {
        let rmrr = ReservedRange {
            start_pfn: 0xE0,
            nr_pages: 0x10,
        };
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 2048,
            rmrrs: vec![rmrr],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            l.e820,
            vec![ram(0x10_0000, 0x8000_0000), reserved(0xE_0000, 0x1_0000)]
        );
    }

    #[test]
    fn too_many_rmrrs_is_the_c_error() {
        let rmrrs = (0..200)
            .map(|i| ReservedRange {
                start_pfn: 0x100000 + 2 * i,
                nr_pages: 1,
            })
            .collect();
        let e = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 2048,
            rmrrs,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.wire_text(),
            "Error: too many E820 reserved entries for domain\n"
        );
    }

    #[test]
    fn vram_steps_down_past_an_rmrr() {
        let rmrr = ReservedRange {
            start_pfn: 0xFB000,
            nr_pages: 1,
        };
        let l = plan_hvm(&HvmLayoutInput {
            mem_max_mib: 1024,
            vgpu: true,
            rmrrs: vec![rmrr],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.vram_reserved_addr, Some(0xFA00_0000));
    }

    /// Found by `cargo fuzz run layout` / `sysfs_resource`: a sysfs `resource` with a huge
    /// BAR overflowed the hole arithmetic (a panic in debug builds, a wrapped sum, so the
    /// default hole, in release).
    #[test]
    fn huge_bars_ask_for_the_largest_hole_without_overflow() {
        for vgpu in [false, true] {
            let l = plan_hvm(&HvmLayoutInput {
                mem_max_mib: 4096,
                passthrough_bar_bytes: u64::MAX,
                vgpu,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(l.mmio_size, MAX_MMIO_HOLE_BYTES);
        }
    }

    /// Found by `cargo fuzz run layout`: an RMRR whose byte range wraps 64 bits made the
    /// VRAM placement overflow (`E820Entry::end`).
    #[test]
    fn rmrrs_beyond_the_physical_address_space_are_refused() {
        for (start_pfn, nr_pages) in [(u64::MAX >> 4, 16), (MAX_PFN - 1, 2), (1, u64::MAX)] {
            let e = plan_hvm(&HvmLayoutInput {
                mem_max_mib: 1024,
                vgpu: true,
                rmrrs: vec![ReservedRange {
                    start_pfn,
                    nr_pages,
                }],
                ..Default::default()
            })
            .unwrap_err();
            assert!(
                e.to_string().contains("beyond the physical address space"),
                "{e}"
            );
        }
        let last = ReservedRange {
            start_pfn: MAX_PFN - 1,
            nr_pages: 1,
        };
        assert!(plan_hvm(&HvmLayoutInput {
            mem_max_mib: 1024,
            vgpu: true,
            rmrrs: vec![last],
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn impossible_sizes_are_refused() {
        assert!(matches!(
            plan_hvm(&HvmLayoutInput::default()),
            Err(Error {
                kind: ErrorKind::InvalidRequest(_),
                ..
            })
        ));
        let huge = HvmLayoutInput {
            mem_max_mib: u64::MAX >> 20,
            ..Default::default()
        };
        assert!(plan_hvm(&huge).unwrap_err().to_string().contains("exceeds"));
    }
}
