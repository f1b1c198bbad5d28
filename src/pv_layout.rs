//! The virtual layout of a 64-bit PV guest, pure: where libxenguest's bump allocator puts the
//! kernel, the ramdisk, the p2m list, start_info, the xenstore and console rings, the initial
//! page tables and the boot stack, and which page-table entries map them
//! (`xg_dom_core.c` `xc_dom_alloc_segment`/`xc_dom_alloc_page`/`xc_dom_alloc_pad`,
//! `xg_dom_x86.c` `count_pgtables`, `alloc_pgtables_pv`, `alloc_p2m_list_x86_64`,
//! `setup_pgtables_pv`).
//!
//! Virtual address `virt_base + pfn * 4096` is guest frame `pfn` for everything below
//! `virt_pgtab_end` (mapping 0). A kernel with an `INIT_P2M` note gets its p2m list mapped
//! at that address instead, by a second mapping whose page tables follow the list.
//!
//! [`plan`] decides; [`PvLayout::page_tables`] turns the plan and the p2m into table
//! contents. Nothing here talks to the hypervisor.

use crate::types::{usize_of, PAGE_BYTES};
use std::collections::BTreeMap;

/// 48-bit virtual addresses (`VIRT_BITS_X86_64`).
pub const VADDR_MASK: u64 = (1 << 48) - 1;
/// `_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED`: L1 entries.
pub const PROT_L1: u64 = 0x23;
/// `_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_USER`: L2-L4 entries.
pub const PROT_UPPER: u64 = 0x67;
/// `_PAGE_RW`.
pub const PTE_RW: u64 = 0x2;
/// Padding mapped after the boot stack (512 KiB), as libxenguest leaves.
pub const PADDING_PAGES: u64 = (512 << 10) / PAGE_BYTES;
/// Bytes of one p2m entry (`sizeof_pfn`, 8 for x86_64).
pub const P2M_ENTRY_BYTES: u64 = 8;
/// Largest kernel image accepted in the virtual layout (1 GiB: Xen's PV kernel area).
pub const MAX_KERNEL_BYTES: u64 = 1 << 30;

/// A segment of guest frames and its virtual range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// First virtual address.
    pub vstart: u64,
    /// End of the contents (not rounded to a page).
    pub vend: u64,
    /// First guest frame.
    pub pfn: u64,
    /// Frames.
    pub pages: u64,
}

/// One level of a mapping: the virtual range its tables cover and where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    /// First virtual address covered (masked to 48 bits).
    pub from: u64,
    /// Last virtual address covered (inclusive).
    pub to: u64,
    /// Frame of the first table.
    pub pfn: u64,
    /// Tables at this level (0: shared with an earlier mapping, or none needed).
    pub tables: u64,
}

/// A virtual range mapped onto consecutive guest frames, and the tables that map it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mapping {
    /// First virtual address (masked).
    pub from: u64,
    /// Last virtual address (inclusive, masked).
    pub to: u64,
    /// Frame mapped at `from`.
    pub pfn: u64,
    /// Page-table frames this mapping adds.
    pub tables: u64,
    /// Levels, L1 first (`levels[3]` is the L4).
    pub levels: [Level; 4],
}

impl Mapping {
    /// Frames of this mapping's own page tables: `[first, first + tables)`.
    pub fn table_pfns(&self) -> (u64, u64) {
        let first = self.levels[3].pfn;
        (first, first + self.tables)
    }
}

/// What the layout is planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLayoutInput {
    /// Guest pages (`xc_dom_mem_init`): also the p2m size.
    pub total_pages: u64,
    /// `VIRT_BASE`.
    pub virt_base: u64,
    /// Kernel image start (`virt_kstart`), page aligned.
    pub kernel_vstart: u64,
    /// Kernel image end (`virt_kend`).
    pub kernel_vend: u64,
    /// Ramdisk size, bytes, if any.
    pub ramdisk_bytes: Option<u64>,
    /// `MOD_START_PFN`: the ramdisk goes after the initial mapping, by frame number.
    pub unmapped_initrd: bool,
    /// `INIT_P2M`, if declared.
    pub p2m_base: Option<u64>,
}

/// Why a layout cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not enough guest memory for the segments and the initial mapping.
    #[error("{0}")]
    NoRoom(String),
    /// The kernel's addresses cannot be laid out.
    #[error("{0}")]
    BadAddress(String),
}

/// The planned layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvLayout {
    /// Guest pages.
    pub total_pages: u64,
    /// `VIRT_BASE`.
    pub virt_base: u64,
    /// The kernel image.
    pub kernel: Segment,
    /// The ramdisk, if any.
    pub ramdisk: Option<Segment>,
    /// Whether the ramdisk is outside the initial mapping (`SIF_MOD_START_PFN`).
    pub ramdisk_unmapped: bool,
    /// The p2m list (with, when mapped at `INIT_P2M`, that mapping's page tables after it).
    pub p2m: Segment,
    /// Frames of the p2m list proper (without page tables).
    pub p2m_list_pages: u64,
    /// Whether the p2m list is mapped at `INIT_P2M`.
    pub p2m_at_base: bool,
    /// The `start_info` page.
    pub start_info_pfn: u64,
    /// The xenstore ring.
    pub xenstore_pfn: u64,
    /// The console ring.
    pub console_pfn: u64,
    /// The initial page tables (mapping 0's).
    pub pgtables: Segment,
    /// The boot stack page.
    pub bootstack_pfn: u64,
    /// End of the initial mapping (exclusive).
    pub virt_pgtab_end: u64,
    /// Frames allocated in all (the rest of RAM is free for the guest).
    pub pfn_alloc_end: u64,
    /// The mappings, the kernel's first.
    pub mappings: Vec<Mapping>,
}

/// libxenguest's bump allocator: virtual and frame cursors moving together.
struct Alloc {
    total_pages: u64,
    virt_end: u64,
    pfn_end: u64,
}

impl Alloc {
    /// `xc_dom_chk_alloc_pages`.
    fn take(&mut self, name: &str, pages: u64) -> Result<(), LayoutError> {
        if pages > self.total_pages
            || self.pfn_end > self.total_pages
            || pages > self.total_pages - self.pfn_end
        {
            return Err(LayoutError::NoRoom(format!(
                "segment {name} too large ({pages:#x} > {:#x} - {:#x} pages)",
                self.total_pages, self.pfn_end
            )));
        }
        self.pfn_end += pages;
        self.virt_end += pages * PAGE_BYTES;
        Ok(())
    }

    /// `xc_dom_alloc_pad`: skip frames up to virtual `boundary`.
    fn pad(&mut self, boundary: u64) -> Result<(), LayoutError> {
        if !boundary.is_multiple_of(PAGE_BYTES) {
            return Err(LayoutError::BadAddress(format!(
                "segment boundary isn't page aligned ({boundary:#x})"
            )));
        }
        if boundary < self.virt_end {
            return Err(LayoutError::BadAddress(format!(
                "segment boundary too low ({boundary:#x} < {:#x})",
                self.virt_end
            )));
        }
        self.take("padding", (boundary - self.virt_end) / PAGE_BYTES)
    }

    /// `xc_dom_alloc_segment`: optionally padded to `start`, `size` bytes.
    fn segment(&mut self, name: &str, start: u64, size: u64) -> Result<Segment, LayoutError> {
        if start != 0 {
            self.pad(start)?;
        }
        let pages = size.div_ceil(PAGE_BYTES);
        let seg = Segment {
            vstart: self.virt_end,
            vend: self.virt_end + size,
            pfn: self.pfn_end,
            pages,
        };
        self.take(name, pages)?;
        Ok(seg)
    }

    /// `xc_dom_alloc_page`.
    fn page(&mut self, name: &str) -> Result<u64, LayoutError> {
        let pfn = self.pfn_end;
        self.take(name, 1)?;
        Ok(pfn)
    }
}

/// The lowest virtual-address bit each level's index takes (level 0 = an L1 table's index, bit
/// 12); one past the last level is the address width of a 4-level table.
const INDEX_SHIFT: [u32; 5] = [12, 21, 30, 39, 48];

/// Bits one table at `level` covers (level 0 = an L1 table: 2 MiB).
fn table_bits(level: usize) -> u32 {
    INDEX_SHIFT[level + 1]
}

/// `count_pgtables`: the tables mapping `[from, to]` onto frames from `pfn`, sharing the
/// upper-level tables of the earlier mappings where their ranges overlap. Table frames are
/// numbered from `pfn_alloc_end`, top level first.
fn count_tables(
    maps: &[Mapping],
    from: u64,
    to: u64,
    pfn: u64,
    pfn_alloc_end: u64,
    p2m_size: u64,
) -> Result<Mapping, LayoutError> {
    if maps.len() >= 2 {
        return Err(LayoutError::NoRoom("too many mappings".into()));
    }
    let pfn_end = pfn + ((to - from) >> 12);
    if pfn_end >= p2m_size {
        return Err(LayoutError::NoRoom(format!(
            "not enough memory for initial mapping ({pfn_end:#x} > {p2m_size:#x})"
        )));
    }
    if maps.iter().any(|m| from < m.to && to > m.from) {
        return Err(LayoutError::BadAddress(format!(
            "overlapping mappings at {from:#x}..{to:#x}"
        )));
    }
    let mut map = Mapping {
        from: from & VADDR_MASK,
        to: to & VADDR_MASK,
        ..Mapping::default()
    };
    for l in (0..4).rev() {
        map.levels[l].pfn = pfn_alloc_end + map.tables;
        if l == 3 {
            // The one L4 belongs to the first mapping.
            if maps.is_empty() {
                map.levels[3].from = 0;
                map.levels[3].to = VADDR_MASK;
                map.levels[3].tables = 1;
                map.tables += 1;
            }
            continue;
        }
        let bits = table_bits(l);
        let mask = (1u64 << bits) - 1;
        let lvl = &mut map.levels[l];
        lvl.from = map.from & !mask;
        lvl.to = map.to | mask;
        for m in maps {
            let other = m.levels[l];
            if other.from == other.to {
                continue;
            }
            if lvl.from >= other.from && lvl.to <= other.to {
                lvl.from = 0;
                lvl.to = 0;
                break;
            }
            if lvl.from >= other.from && lvl.from <= other.to {
                lvl.from = other.to + 1;
            }
            if lvl.to >= other.from && lvl.to <= other.to {
                lvl.to = other.from - 1;
            }
        }
        if lvl.from < lvl.to {
            lvl.tables = ((lvl.to - lvl.from) >> bits) + 1;
        }
        map.tables += lvl.tables;
    }
    Ok(map)
}

/// Plan the layout `xc_dom_build_image` makes for a 64-bit PV kernel.
pub fn plan(input: &PvLayoutInput) -> Result<PvLayout, LayoutError> {
    let total = input.total_pages;
    if input.kernel_vstart < input.virt_base || input.kernel_vend < input.kernel_vstart {
        return Err(LayoutError::BadAddress(format!(
            "kernel [{:#x}, {:#x}) is not above VIRT_BASE {:#x}",
            input.kernel_vstart, input.kernel_vend, input.virt_base
        )));
    }
    if input.kernel_vend - input.kernel_vstart > MAX_KERNEL_BYTES {
        return Err(LayoutError::BadAddress(format!(
            "kernel image of {:#x} bytes is larger than {MAX_KERNEL_BYTES:#x}",
            input.kernel_vend - input.kernel_vstart
        )));
    }
    let mut a = Alloc {
        total_pages: total,
        virt_end: input.virt_base,
        pfn_end: 0,
    };
    let kernel = a.segment(
        "kernel",
        input.kernel_vstart,
        input.kernel_vend - input.kernel_vstart,
    )?;

    let mut ramdisk = None;
    let unmapped = input.unmapped_initrd;
    if let (Some(bytes), false) = (input.ramdisk_bytes, unmapped) {
        ramdisk = Some(a.segment("module0", 0, bytes)?);
    }

    // INIT_P2M is honoured only below VIRT_BASE and page aligned (else silently dropped).
    let p2m_base = input
        .p2m_base
        .filter(|&b| b < input.virt_base && b % PAGE_BYTES == 0);
    let p2m_bytes = (total * P2M_ENTRY_BYTES).next_multiple_of(PAGE_BYTES);
    let p2m_list_pages = p2m_bytes / PAGE_BYTES;
    let mut maps: Vec<Mapping> = Vec::new();
    let mut p2m = None;
    if p2m_base.is_none() {
        p2m = Some(a.segment("phys2mach", 0, p2m_bytes)?);
    }

    let start_info_pfn = a.page("start info")?;
    let xenstore_pfn = a.page("xenstore")?;
    let console_pfn = a.page("console")?;

    // alloc_pgtables_pv: grow the mapping until it covers its own tables, the boot stack
    // and 512 KiB of padding, in 4 MiB steps.
    let extra = 1 + PADDING_PAGES;
    let mut pages = extra;
    let mut map0 = None;
    for _ in 0..64 {
        let try_end = (a.virt_end + pages * PAGE_BYTES) | ((4 << 20) - 1);
        let m = count_tables(&maps, input.virt_base, try_end, 0, a.pfn_end, total)?;
        pages = m.tables + extra;
        if a.virt_end + pages * PAGE_BYTES <= try_end + 1 {
            map0 = Some((m, try_end));
            break;
        }
    }
    let Some((map0, try_end)) = map0 else {
        return Err(LayoutError::NoRoom(
            "initial page tables do not converge".into(),
        ));
    };
    maps.push(map0);
    let virt_pgtab_end = try_end + 1;
    let pgtables = a.segment("page tables", 0, map0.tables * PAGE_BYTES)?;
    let bootstack_pfn = a.page("boot stack")?;
    a.pad(virt_pgtab_end)?;

    if let (Some(bytes), true) = (input.ramdisk_bytes, unmapped) {
        ramdisk = Some(a.segment("module0", 0, bytes)?);
    }

    let p2m = match (p2m, p2m_base) {
        (Some(seg), _) => seg,
        (None, Some(base)) => {
            let from = base;
            let to = from + p2m_bytes - 1;
            let mut m = count_tables(&maps, from, to, a.pfn_end, a.pfn_end, total)?;
            m.pfn = a.pfn_end;
            for l in &mut m.levels {
                l.pfn += p2m_list_pages;
            }
            maps.push(m);
            let mut seg = a.segment("phys2mach", 0, p2m_bytes + m.tables * PAGE_BYTES)?;
            seg.vstart = base;
            seg
        }
        (None, None) => unreachable!("the p2m is placed in one of the two ways"),
    };

    Ok(PvLayout {
        total_pages: total,
        virt_base: input.virt_base,
        kernel,
        ramdisk,
        ramdisk_unmapped: unmapped && ramdisk.is_some(),
        p2m,
        p2m_list_pages,
        p2m_at_base: p2m_base.is_some(),
        start_info_pfn,
        xenstore_pfn,
        console_pfn,
        pgtables,
        bootstack_pfn,
        virt_pgtab_end,
        pfn_alloc_end: a.pfn_end,
        mappings: maps,
    })
}

/// A page-table frame and its 512 entries.
pub type TablePage = (u64, Box<[u64; 512]>);

/// One page-table entry to write: `table[index]` points at frame `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pte {
    /// Frame of the table.
    pub table: u64,
    /// Entry index, 0..512.
    pub index: usize,
    /// Frame the entry points at (a lower table, or a mapped page at level 0).
    pub target: u64,
    /// 0 = L1 entry ... 3 = L4 entry.
    pub level: usize,
}

impl PvLayout {
    /// Virtual address of guest frame `pfn` in the initial mapping.
    pub fn vaddr_of_pfn(&self, pfn: u64) -> u64 {
        self.virt_base + pfn * PAGE_BYTES
    }

    /// The table at `level` holding the entry for (masked) virtual address `va`.
    fn table_for(&self, level: usize, va: u64) -> Option<u64> {
        let bits = table_bits(level);
        self.mappings.iter().find_map(|m| {
            let l = m.levels[level];
            (l.tables > 0 && l.from <= va && va <= l.to).then(|| l.pfn + ((va - l.from) >> bits))
        })
    }

    /// Whether `pfn` is one of the page-table frames (mapped read-only).
    pub fn is_table_pfn(&self, pfn: u64) -> bool {
        self.mappings.iter().any(|m| {
            let (first, end) = m.table_pfns();
            (first..end).contains(&pfn)
        })
    }

    /// Every entry of the initial page tables (`setup_pgtables_pv`), in table order.
    pub fn ptes(&self) -> Result<Vec<Pte>, LayoutError> {
        let mut out: BTreeMap<(u64, usize), Pte> = BTreeMap::new();
        let missing = |level: usize, va: u64| {
            LayoutError::BadAddress(format!("no L{} table for {va:#x}", level + 1))
        };
        for m in &self.mappings {
            let pages = ((m.to - m.from) >> 12) + 1;
            for i in 0..pages {
                let va = m.from + i * PAGE_BYTES;
                let mut target = m.pfn + i;
                for (level, &shift) in INDEX_SHIFT.iter().take(4).enumerate() {
                    let table = self
                        .table_for(level, va)
                        .ok_or_else(|| missing(level, va))?;
                    let index = usize_of((va >> shift) & 511);
                    out.insert(
                        (table, index),
                        Pte {
                            table,
                            index,
                            target,
                            level,
                        },
                    );
                    target = table;
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// The contents of every page-table frame, given the p2m (`pfn -> mfn`): frame and its
    /// 512 entries, ascending by frame. Page-table frames are mapped read-only.
    pub fn page_tables(&self, p2m: &[u64]) -> Result<Vec<TablePage>, LayoutError> {
        let mut tables: BTreeMap<u64, Box<[u64; 512]>> = BTreeMap::new();
        for m in &self.mappings {
            let (first, end) = m.table_pfns();
            for pfn in first..end {
                tables.insert(pfn, Box::new([0; 512]));
            }
        }
        let mfn = |pfn: u64| {
            p2m.get(usize_of(pfn))
                .copied()
                .ok_or_else(|| LayoutError::NoRoom(format!("pfn {pfn:#x} beyond the p2m")))
        };
        for pte in self.ptes()? {
            let prot = if pte.level > 0 {
                PROT_UPPER
            } else if self.is_table_pfn(pte.target) {
                PROT_L1 & !PTE_RW
            } else {
                PROT_L1
            };
            let table = tables.get_mut(&pte.table).ok_or_else(|| {
                LayoutError::BadAddress(format!("no table frame {:#x}", pte.table))
            })?;
            table[pte.index] = (mfn(pte.target)? << 12) | prot;
        }
        Ok(tables.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINUX_BASE: u64 = 0xffff_ffff_8000_0000;

    fn linux(total_pages: u64, kernel_mib: u64, p2m_base: Option<u64>) -> PvLayout {
        plan(&PvLayoutInput {
            total_pages,
            virt_base: LINUX_BASE,
            kernel_vstart: LINUX_BASE + 0x100_0000,
            kernel_vend: LINUX_BASE + 0x100_0000 + (kernel_mib << 20) + 0x1234,
            ramdisk_bytes: Some(10 << 20),
            unmapped_initrd: p2m_base.is_some(),
            p2m_base,
        })
        .unwrap()
    }

    #[test]
    fn classic_layout_without_init_p2m() {
        // 1 GiB guest, 30 MiB kernel at 16 MiB, 10 MiB ramdisk mapped.
        let l = linux(1 << 18, 30, None);
        assert_eq!(l.kernel.pfn, 0x1000);
        assert_eq!(l.kernel.pages, (30 << 8) + 2);
        let rd = l.ramdisk.unwrap();
        assert_eq!(rd.pfn, l.kernel.pfn + l.kernel.pages);
        assert_eq!(l.p2m.pfn, rd.pfn + rd.pages);
        assert_eq!(l.p2m.pages, (1 << 18) * 8 / 4096);
        assert_eq!(l.start_info_pfn, l.p2m.pfn + l.p2m.pages);
        assert_eq!(
            (l.xenstore_pfn, l.console_pfn),
            (l.start_info_pfn + 1, l.start_info_pfn + 2)
        );
        assert_eq!(l.pgtables.pfn, l.console_pfn + 1);
        assert_eq!(l.bootstack_pfn, l.pgtables.pfn + l.pgtables.pages);
        // One L4, one L3, one L2, and an L1 per 2 MiB of the mapping.
        let m = l.mappings[0];
        let mapped = (l.virt_pgtab_end - LINUX_BASE) >> 12;
        assert_eq!(m.tables, 3 + mapped.div_ceil(512));
        assert_eq!(l.virt_pgtab_end % (4 << 20), 0);
        assert!(l.vaddr_of_pfn(l.bootstack_pfn + 1 + PADDING_PAGES) <= l.virt_pgtab_end);
        assert_eq!(l.pfn_alloc_end, mapped);
        assert!(!l.ramdisk_unmapped);
    }

    #[test]
    fn init_p2m_gets_its_own_mapping_after_the_initial_one() {
        let l = linux(1 << 20, 20, Some(0x80_0000_0000));
        assert!(l.p2m_at_base && l.ramdisk_unmapped);
        let mapped = (l.virt_pgtab_end - LINUX_BASE) >> 12;
        let rd = l.ramdisk.unwrap();
        assert_eq!(rd.pfn, mapped, "unmapped ramdisk right after the mapping");
        assert_eq!(l.p2m.pfn, rd.pfn + rd.pages);
        assert_eq!(l.p2m.vstart, 0x80_0000_0000);
        assert_eq!(l.p2m_list_pages, (1 << 20) * 8 / 4096);
        let m1 = l.mappings[1];
        // L3 for slot 1, one L2, one L1 per 2 MiB of list (2048 pages = 4 L1s).
        assert_eq!(m1.tables, 1 + 1 + 4);
        assert_eq!(m1.levels[3].tables, 0, "the L4 is shared");
        assert_eq!(m1.levels[2].pfn, l.p2m.pfn + l.p2m_list_pages);
        assert_eq!(l.p2m.pages, l.p2m_list_pages + m1.tables);
    }

    #[test]
    fn every_mapped_page_has_one_l1_entry_and_tables_are_read_only() {
        let l = linux(1 << 18, 12, Some(0x80_0000_0000));
        let p2m: Vec<u64> = (0..1u64 << 18).map(|p| 0x50_0000 + p).collect();
        let tables = l.page_tables(&p2m).unwrap();
        let by_pfn: BTreeMap<u64, &[u64; 512]> = tables.iter().map(|(p, t)| (*p, &**t)).collect();
        let l1s = l
            .ptes()
            .unwrap()
            .into_iter()
            .filter(|p| p.level == 0)
            .count() as u64;
        let mapped0 = (l.virt_pgtab_end - LINUX_BASE) >> 12;
        assert_eq!(l1s, mapped0 + l.p2m_list_pages);
        // Walk one address in each mapping from the L4.
        let walk = |va: u64| -> u64 {
            let va = va & VADDR_MASK;
            let mut table = l.pgtables.pfn;
            for level in (0..4).rev() {
                let e = by_pfn[&table][((va >> (12 + 9 * level)) & 511) as usize];
                assert_ne!(e & 1, 0, "present at level {level} for {va:#x}");
                table = (e >> 12) - 0x50_0000;
                if level == 0 {
                    return e;
                }
            }
            unreachable!()
        };
        let e = walk(l.vaddr_of_pfn(l.start_info_pfn));
        assert_eq!(e, ((0x50_0000 + l.start_info_pfn) << 12) | PROT_L1);
        let e = walk(l.vaddr_of_pfn(l.pgtables.pfn));
        assert_eq!(e & PTE_RW, 0, "page tables are read-only");
        let e = walk(0x80_0000_0000 + 4096);
        assert_eq!(e >> 12, 0x50_0000 + l.p2m.pfn + 1);
    }

    #[test]
    fn too_little_memory_is_an_error() {
        let r = plan(&PvLayoutInput {
            total_pages: 1024,
            virt_base: LINUX_BASE,
            kernel_vstart: LINUX_BASE + 0x100_0000,
            kernel_vend: LINUX_BASE + 0x200_0000,
            ramdisk_bytes: None,
            unmapped_initrd: false,
            p2m_base: None,
        });
        assert!(matches!(r, Err(LayoutError::NoRoom(_))), "{r:?}");
        let r = plan(&PvLayoutInput {
            total_pages: 1 << 18,
            virt_base: LINUX_BASE,
            kernel_vstart: LINUX_BASE + 0x100_0010,
            kernel_vend: LINUX_BASE + 0x200_0000,
            ramdisk_bytes: None,
            unmapped_initrd: false,
            p2m_base: None,
        });
        assert!(matches!(r, Err(LayoutError::BadAddress(_))), "{r:?}");
    }
}
