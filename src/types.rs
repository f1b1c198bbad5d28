//! Units and small newtypes shared by every step. Page = 4 KiB guest or machine frame.

use serde::Serialize;
use std::fmt;

/// log2 of the x86 page size.
pub const PAGE_SHIFT: u32 = 12;
/// x86 page size in bytes.
pub const PAGE_BYTES: u64 = 1 << PAGE_SHIFT;
/// Extent order of a 2 MiB superpage.
pub const ORDER_2M: u32 = 9;
/// Extent order of a 1 GiB superpage.
pub const ORDER_1G: u32 = 18;
/// Largest order the buddy allocator knows (`MAX_ORDER` on x86).
pub const MAX_ORDER: u32 = 18;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DomId(pub u32);

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A guest frame number (guest-physical address >> 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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

/// E820 entry types used by the builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
