//! Units and small newtypes shared by every step. Page = 4 KiB guest or machine frame.

use serde::{Deserialize, Serialize};
use std::fmt;

/// log2 of the x86 page size.
pub const PAGE_SHIFT: u32 = 12;
/// x86 page size in bytes.
pub const PAGE_BYTES: u64 = 1 << PAGE_SHIFT;
/// The same, to size and index buffers.
pub const PAGE_USIZE: usize = 1 << PAGE_SHIFT;

// A toolstack for x86 Xen runs in a 64-bit dom0; the conversions below rely on it.
const _: () = assert!(
    usize::BITS == 64,
    "xenguest is built for 64-bit targets only"
);

/// `n` as a `usize`, to index or size an in-memory buffer: lossless on the 64-bit targets the
/// crate builds for (checked at compile time above).
#[expect(
    clippy::cast_possible_truncation,
    reason = "usize is 64 bits wide, asserted at compile time"
)]
pub const fn usize_of(n: u64) -> usize {
    n as usize
}
/// Extent order of a 2 MiB superpage.
pub const ORDER_2M: u32 = 9;
/// Extent order of a 1 GiB superpage.
pub const ORDER_1G: u32 = 18;
/// Largest order the buddy allocator knows (`MAX_ORDER` on x86).
pub const MAX_ORDER: u32 = 18;
/// Guest frames a 4-level p2m (EPT or p2m-pt) can map: 48-bit guest-physical addresses.
pub const P2M_GFN_LIMIT: u64 = 1 << 36;

/// 4 KiB pages in `mib` MiB.
pub const fn pages_of_mib(mib: u64) -> u64 {
    mib << (20 - PAGE_SHIFT)
}

/// Pages needed to hold `bytes` bytes (rounded up).
pub const fn pages_of_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_BYTES)
}

/// Pages in one extent of `order`.
pub const fn pages_of_order(order: u32) -> u64 {
    1 << order
}

/// A domain id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DomId(pub u32);

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A guest frame number (guest-physical address >> 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The guest-physical byte address of this frame.
    pub const fn paddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A machine frame number (host-physical address >> 12). Only a PV domain shows its MFNs to
/// the toolstack: its p2m maps each [`Pfn`] to one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The machine byte address of this frame.
    pub const fn maddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A PV domain's pseudo-physical frame number: an index into its p2m (`pfn -> mfn`). In a
/// translated (HVM/PVH) domain pfn and gfn are the same number, and the code says [`Gfn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pfn(pub u64);

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A guest-physical byte address in a translated (HVM/PVH) domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GuestPhys(pub u64);

impl GuestPhys {
    /// The frame the address falls in.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }
}

/// A frame numbered as the foreign-mapping calls number it (`xc_map_foreign_range`,
/// `xc_clear_domain_pages`, `xc_dom_gnttab_seed`'s "gmfn"): by gfn in a translated domain,
/// by MFN in a PV one. Which one a call gets is the caller's to say, so that a PV MFN cannot
/// pass for a gfn (the simulated host refuses the wrong kind for the domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MapFrame {
    /// A translated domain's frame.
    Gfn(Gfn),
    /// A PV domain's frame.
    Mfn(Mfn),
}

impl MapFrame {
    /// The frame number the call takes (`xen_pfn_t`).
    pub const fn number(self) -> u64 {
        match self {
            MapFrame::Gfn(Gfn(n)) | MapFrame::Mfn(Mfn(n)) => n,
        }
    }

    /// Whether the frame is a PV machine frame.
    pub const fn is_machine(self) -> bool {
        matches!(self, MapFrame::Mfn(_))
    }
}

impl fmt::Display for MapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapFrame::Gfn(g) => write!(f, "gfn {g}"),
            MapFrame::Mfn(m) => write!(f, "mfn {m}"),
        }
    }
}

/// A byte address in a domain's foreign-mapping numbering: `offset` bytes into `frame`. An
/// access from it runs on through the frames that follow in the same numbering (consecutive
/// gfns, or consecutive MFNs: the PV builder splits its writes where the p2m is not
/// machine-contiguous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MapAddr {
    frame: MapFrame,
    /// Below [`PAGE_BYTES`], as every constructor leaves it.
    offset: u64,
}

impl MapAddr {
    /// The start of `frame`.
    pub const fn frame_start(frame: MapFrame) -> Self {
        MapAddr { frame, offset: 0 }
    }

    /// A guest-physical address in a translated domain.
    pub const fn phys(addr: GuestPhys) -> Self {
        MapAddr {
            frame: MapFrame::Gfn(addr.gfn()),
            offset: addr.0 % PAGE_BYTES,
        }
    }

    /// `offset` bytes into a PV domain's machine frame `mfn`.
    pub const fn machine(mfn: Mfn, offset: u64) -> Self {
        MapAddr {
            frame: MapFrame::Mfn(Mfn(mfn.0.wrapping_add(offset / PAGE_BYTES))),
            offset: offset % PAGE_BYTES,
        }
    }

    /// The first frame.
    pub const fn frame(self) -> MapFrame {
        self.frame
    }

    /// The byte number in the frame numbering (`frame << 12 | offset`).
    pub const fn byte(self) -> u64 {
        (self.frame.number() << PAGE_SHIFT) | self.offset
    }
}

impl fmt::Display for MapAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frame {
            MapFrame::Gfn(_) => write!(f, "paddr={:#x}", self.byte()),
            MapFrame::Mfn(_) => write!(f, "maddr={:#x}", self.byte()),
        }
    }
}

/// E820 entry types used by the builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum E820Type {
    /// Usable RAM (1).
    Ram,
    /// Reserved (2).
    Reserved,
    /// ACPI reclaimable (3).
    Acpi,
    /// ACPI NVS (4).
    Nvs,
}

impl E820Type {
    /// The numeric type Xen and the guest see.
    pub const fn code(self) -> u32 {
        match self {
            E820Type::Ram => 1,
            E820Type::Reserved => 2,
            E820Type::Acpi => 3,
            E820Type::Nvs => 4,
        }
    }
}

/// One entry of the memory map handed to `xc_domain_set_memory_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct E820Entry {
    /// Start, bytes.
    pub addr: u64,
    /// Length, bytes.
    pub size: u64,
    /// Kind of range.
    #[serde(rename = "type")]
    pub kind: E820Type,
}

impl E820Entry {
    /// End (exclusive), bytes.
    pub const fn end(&self) -> u64 {
        self.addr + self.size
    }
}

impl fmt::Display for E820Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}) {:?}", self.addr, self.end(), self.kind)
    }
}
