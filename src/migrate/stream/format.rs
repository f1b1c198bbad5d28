//! The stream's constants and its records as typed values, with each record's body encoding
//! and its checked decoding (xen-project/xen `tools/libs/guest/xg_sr_stream_format.h` and
//! `docs/specs/libxc-migration-stream.pandoc`, at c447b73). Bodies are little-endian.

use super::StreamError;
use crate::types::{Pfn, PAGE_BYTES};

/// `IHDR_MARKER`: the first 8 bytes of every stream.
pub const IHDR_MARKER: u64 = u64::MAX;
/// `IHDR_ID`: "XENF".
pub const IHDR_ID: u32 = 0x5845_4e46;
/// `IHDR_OPT_BIG_ENDIAN`: the options bit libxenguest refuses, as does this reader.
pub const IHDR_OPT_BIG_ENDIAN: u16 = 1;
/// The version this codec writes; it reads 2 and 3.
pub const VERSION_WRITTEN: u32 = 3;
/// Image header, bytes (its fields big-endian).
pub const IHDR_BYTES: usize = 24;
/// Domain header, bytes.
pub const DHDR_BYTES: usize = 16;
/// `REC_ALIGN`: every record is padded with zeros to a multiple of this.
pub const REC_ALIGN: u64 = 8;
/// `REC_LENGTH_MAX`: libxenguest's limit on one record's body, bytes (128 MiB).
pub const REC_LENGTH_MAX: u32 = 128 << 20;
/// `REC_TYPE_OPTIONAL`: set in the type of a record a reader may skip.
pub const REC_TYPE_OPTIONAL: u32 = 0x8000_0000;
/// `PAGE_DATA_PFN_MASK`: a PAGE_DATA entry's pfn bits.
pub const PAGE_DATA_PFN_MASK: u64 = 0x000f_ffff_ffff_ffff;
/// `PAGE_DATA_TYPE_MASK`: a PAGE_DATA entry's type bits (the PFINFO type, shifted up 32).
pub const PAGE_DATA_TYPE_MASK: u64 = 0xf000_0000_0000_0000;
/// Most pfns a PAGE_DATA record carries as libxenguest writes them (`MAX_BATCH_SIZE`).
pub const MAX_BATCH_PFNS: usize = 1024;

/// The record types (`REC_TYPE_*`).
pub mod rec {
    /// `REC_TYPE_END`.
    pub const END: u32 = 0x00;
    /// `REC_TYPE_PAGE_DATA`.
    pub const PAGE_DATA: u32 = 0x01;
    /// `REC_TYPE_X86_PV_INFO`.
    pub const X86_PV_INFO: u32 = 0x02;
    /// `REC_TYPE_X86_PV_P2M_FRAMES`.
    pub const X86_PV_P2M_FRAMES: u32 = 0x03;
    /// `REC_TYPE_X86_PV_VCPU_BASIC`.
    pub const X86_PV_VCPU_BASIC: u32 = 0x04;
    /// `REC_TYPE_X86_PV_VCPU_EXTENDED`.
    pub const X86_PV_VCPU_EXTENDED: u32 = 0x05;
    /// `REC_TYPE_X86_PV_VCPU_XSAVE`.
    pub const X86_PV_VCPU_XSAVE: u32 = 0x06;
    /// `REC_TYPE_SHARED_INFO`.
    pub const SHARED_INFO: u32 = 0x07;
    /// `REC_TYPE_X86_TSC_INFO`.
    pub const X86_TSC_INFO: u32 = 0x08;
    /// `REC_TYPE_HVM_CONTEXT`.
    pub const HVM_CONTEXT: u32 = 0x09;
    /// `REC_TYPE_HVM_PARAMS`.
    pub const HVM_PARAMS: u32 = 0x0a;
    /// `REC_TYPE_TOOLSTACK` (deprecated).
    pub const TOOLSTACK: u32 = 0x0b;
    /// `REC_TYPE_X86_PV_VCPU_MSRS`.
    pub const X86_PV_VCPU_MSRS: u32 = 0x0c;
    /// `REC_TYPE_VERIFY`.
    pub const VERIFY: u32 = 0x0d;
    /// `REC_TYPE_CHECKPOINT` (Remus/COLO only).
    pub const CHECKPOINT: u32 = 0x0e;
    /// `REC_TYPE_CHECKPOINT_DIRTY_PFN_LIST` (COLO only).
    pub const CHECKPOINT_DIRTY_PFN_LIST: u32 = 0x0f;
    /// `REC_TYPE_STATIC_DATA_END` (version 3).
    pub const STATIC_DATA_END: u32 = 0x10;
    /// `REC_TYPE_X86_CPUID_POLICY` (version 3).
    pub const X86_CPUID_POLICY: u32 = 0x11;
    /// `REC_TYPE_X86_MSR_POLICY` (version 3).
    pub const X86_MSR_POLICY: u32 = 0x12;

    /// The record's name, as libxenguest's `rec_type_to_str` gives it; `None` when unknown.
    pub fn name(rtype: u32) -> Option<&'static str> {
        Some(match rtype & !super::REC_TYPE_OPTIONAL {
            END => "END",
            PAGE_DATA => "PAGE_DATA",
            X86_PV_INFO => "X86_PV_INFO",
            X86_PV_P2M_FRAMES => "X86_PV_P2M_FRAMES",
            X86_PV_VCPU_BASIC => "X86_PV_VCPU_BASIC",
            X86_PV_VCPU_EXTENDED => "X86_PV_VCPU_EXTENDED",
            X86_PV_VCPU_XSAVE => "X86_PV_VCPU_XSAVE",
            SHARED_INFO => "SHARED_INFO",
            X86_TSC_INFO => "X86_TSC_INFO",
            HVM_CONTEXT => "HVM_CONTEXT",
            HVM_PARAMS => "HVM_PARAMS",
            TOOLSTACK => "TOOLSTACK",
            X86_PV_VCPU_MSRS => "X86_PV_VCPU_MSRS",
            VERIFY => "VERIFY",
            CHECKPOINT => "CHECKPOINT",
            CHECKPOINT_DIRTY_PFN_LIST => "CHECKPOINT_DIRTY_PFN_LIST",
            STATIC_DATA_END => "STATIC_DATA_END",
            X86_CPUID_POLICY => "X86_CPUID_POLICY",
            X86_MSR_POLICY => "X86_MSR_POLICY",
            _ => return None,
        })
    }

    /// The name for messages: the known name, or the number.
    pub fn display(rtype: u32) -> String {
        name(rtype).map_or_else(|| format!("type {rtype:#x}"), str::to_string)
    }
}

/// The domain header's guest type (`DHDR_TYPE_*`); PVH streams are HVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestType {
    /// `DHDR_TYPE_X86_PV`.
    X86Pv,
    /// `DHDR_TYPE_X86_HVM` (HVM and PVH).
    X86Hvm,
}

impl GuestType {
    /// The header's number.
    pub fn number(self) -> u32 {
        match self {
            GuestType::X86Pv => 1,
            GuestType::X86Hvm => 2,
        }
    }
}

/// The domain header (`struct xc_sr_dhdr`), with the image header's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainHeader {
    /// The stream's version (2 or 3), from the image header.
    pub version: u32,
    /// PV or HVM.
    pub guest: GuestType,
    /// The Xen the stream came from; major 0 marks a stream converted from the legacy format.
    pub xen_major: u32,
    /// Minor version (the conversion script's version, for a converted stream).
    pub xen_minor: u32,
}

/// A page's type in a PAGE_DATA entry: `XEN_DOMCTL_PFINFO_*` (xen-project/xen
/// `xen/include/public/domctl.h`), the ones libxenguest's `is_known_page_type` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageType {
    /// `NOTAB`: an ordinary page, its data in the record.
    NoTab,
    /// `L1TAB`..`L4TAB` (`level` 1 to 4), pinned or not: a PV page table, its data in the
    /// record.
    PageTable {
        /// 1 to 4.
        level: u8,
        /// `LPINTAB`.
        pinned: bool,
    },
    /// `XALLOC`: allocate, no data (Xen 4.2 to 4.5's synthetic type).
    XAlloc,
    /// `BROKEN`: a broken page, no data.
    Broken,
    /// `XTAB`: a hole, no data and nothing to populate.
    XTab,
}

use crate::hypervisor::pfinfo::{
    BROKEN as PFINFO_BROKEN, LPINTAB as PFINFO_LPINTAB, XALLOC as PFINFO_XALLOC,
    XTAB as PFINFO_XTAB,
};

impl PageType {
    /// The type from the 32-bit PFINFO value (`(entry & PAGE_DATA_TYPE_MASK) >> 32`).
    pub fn from_pfinfo(bits: u32) -> Option<Self> {
        Some(match bits {
            0 => PageType::NoTab,
            PFINFO_XTAB => PageType::XTab,
            PFINFO_XALLOC => PageType::XAlloc,
            PFINFO_BROKEN => PageType::Broken,
            _ => {
                let level = u8::try_from((bits & !PFINFO_LPINTAB) >> 28).ok()?;
                if !(1..=4).contains(&level) || bits & 0x0fff_ffff != 0 {
                    return None;
                }
                PageType::PageTable {
                    level,
                    pinned: bits & PFINFO_LPINTAB != 0,
                }
            }
        })
    }

    /// The 32-bit PFINFO value.
    pub fn pfinfo(self) -> u32 {
        match self {
            PageType::NoTab => 0,
            PageType::PageTable { level, pinned } => {
                (u32::from(level) << 28) | if pinned { PFINFO_LPINTAB } else { 0 }
            }
            PageType::XAlloc => PFINFO_XALLOC,
            PageType::Broken => PFINFO_BROKEN,
            PageType::XTab => PFINFO_XTAB,
        }
    }

    /// A page of data follows in the record (`page_type_has_stream_data`).
    pub fn has_data(self) -> bool {
        matches!(self, PageType::NoTab | PageType::PageTable { .. })
    }

    /// The page is guest RAM, to be populated (`page_type_to_populate`).
    pub fn populates(self) -> bool {
        !matches!(self, PageType::Broken | PageType::XTab)
    }
}

/// A PAGE_DATA record: pfns with their types, and a page of data for each whose type has
/// data, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageData<'a> {
    entries: Vec<(Pfn, PageType)>,
    data: &'a [u8],
}

/// Bytes of one page, as a `usize`.
const PAGE: usize = 4096;
const _: () = assert!(PAGE as u64 == PAGE_BYTES);

impl<'a> PageData<'a> {
    /// Entries and their pages' data, back to back; checked: at least one entry, each pfn
    /// within [`PAGE_DATA_PFN_MASK`], exactly a page of data per entry with data.
    pub fn new(entries: Vec<(Pfn, PageType)>, data: &'a [u8]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("no pfns (at least 1 expected)".into());
        }
        if let Some((pfn, _)) = entries.iter().find(|(p, _)| p.0 > PAGE_DATA_PFN_MASK) {
            return Err(format!("pfn {pfn} does not fit the 52 pfn bits"));
        }
        let with_data = entries.iter().filter(|(_, t)| t.has_data()).count();
        if Some(data.len()) != with_data.checked_mul(PAGE) {
            return Err(format!(
                "{} bytes of page data for {with_data} pages with data",
                data.len()
            ));
        }
        Ok(PageData { entries, data })
    }

    /// The entries, in the record's order.
    pub fn entries(&self) -> &[(Pfn, PageType)] {
        &self.entries
    }

    /// The pages' data, back to back (what follows [`PageData::encode_head`] in the body).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The body up to the pages' data: the count, the reserved word and the entries.
    pub fn encode_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 8 * self.entries.len());
        // PageData::new bounds the entries by the body they came from or the caller's
        // pages; a count past u32 cannot be written.
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (pfn, t) in &self.entries {
            out.extend_from_slice(&((u64::from(t.pfinfo()) << 32) | pfn.0).to_le_bytes());
        }
        out
    }

    /// Each entry with its page's data, if its type has data.
    pub fn pages(&self) -> impl Iterator<Item = (Pfn, PageType, Option<&'a [u8]>)> + '_ {
        let mut chunks = self.data.chunks_exact(PAGE);
        self.entries.iter().map(move |&(pfn, t)| {
            let data = if t.has_data() { chunks.next() } else { None };
            (pfn, t, data)
        })
    }
}

/// X86_TSC_INFO (`struct xc_sr_rec_x86_tsc_info`): what `xc_domain_get_tsc_info` gives.
pub use crate::hypervisor::TscInfo;
/// X86_CPUID_POLICY entries and X86_MSR_POLICY entries, as the hypervisor takes them.
pub use crate::hypervisor::{CpuidLeaf, MsrEntry};

/// One HVM_PARAMS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvmParam {
    /// `HVM_PARAM_*` index.
    pub index: u64,
    /// Its value.
    pub value: u64,
}

/// A record, typed. A body is borrowed from the record read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// END: the stream's last record.
    End,
    /// PAGE_DATA.
    PageData(PageData<'a>),
    /// X86_TSC_INFO.
    TscInfo(TscInfo),
    /// HVM_CONTEXT: `xc_domain_hvm_getcontext`'s blob, as it is.
    HvmContext(&'a [u8]),
    /// HVM_PARAMS.
    HvmParams(Vec<HvmParam>),
    /// VERIFY: the pages that follow are to be compared, not written.
    Verify,
    /// STATIC_DATA_END (version 3).
    StaticDataEnd,
    /// X86_CPUID_POLICY (version 3).
    CpuidPolicy(Vec<CpuidLeaf>),
    /// X86_MSR_POLICY (version 3).
    MsrPolicy(Vec<MsrEntry>),
    /// A record the codec carries but does not interpret (the PV records, TOOLSTACK,
    /// CHECKPOINT, unknown types): its type, optional bit included, and body.
    Other {
        /// The type as in the stream.
        rtype: u32,
        /// The body.
        body: &'a [u8],
    },
}

/// Little-endian fields of a body, read with bounds checks.
struct Fields<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.body.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn rest(&self) -> &'a [u8] {
        self.body.get(self.at..).unwrap_or_default()
    }
}

/// A record body made of `count`-prefixed or bare fixed-size entries: checks that `rest`
/// holds exactly `count` entries of `size` bytes (`count: None`: as many as fit exactly).
fn entries_in(rest: &[u8], size: usize, count: Option<u32>) -> Result<usize, String> {
    let n = match count {
        Some(c) => usize::try_from(c).map_err(|_| format!("count {c}"))?,
        None if !rest.len().is_multiple_of(size) => {
            return Err(format!("length {} is not a multiple of {size}", rest.len()));
        }
        None => rest.len() / size,
    };
    match n.checked_mul(size) {
        Some(bytes) if bytes == rest.len() => Ok(n),
        _ => Err(format!(
            "{} bytes of entries for {n} entries of {size} bytes",
            rest.len()
        )),
    }
}

impl<'a> Record<'a> {
    /// The record type, as written.
    pub fn rtype(&self) -> u32 {
        match self {
            Record::End => rec::END,
            Record::PageData(_) => rec::PAGE_DATA,
            Record::TscInfo(_) => rec::X86_TSC_INFO,
            Record::HvmContext(_) => rec::HVM_CONTEXT,
            Record::HvmParams(_) => rec::HVM_PARAMS,
            Record::Verify => rec::VERIFY,
            Record::StaticDataEnd => rec::STATIC_DATA_END,
            Record::CpuidPolicy(_) => rec::X86_CPUID_POLICY,
            Record::MsrPolicy(_) => rec::X86_MSR_POLICY,
            Record::Other { rtype, .. } => *rtype,
        }
    }

    /// Decode the body of a record of type `rtype`, checking every length and count against
    /// the body (libxenguest's checks in `handle_*`, and the empty records' zero length,
    /// which libxenguest does not check). The error is the reason, for [`StreamError`].
    pub fn decode(rtype: u32, body: &'a [u8]) -> Result<Self, String> {
        let mut f = Fields { body, at: 0 };
        let empty = |r: Record<'a>| match body.len() {
            0 => Ok(r),
            n => Err(format!("length {n}, expected 0")),
        };
        match rtype {
            rec::END => empty(Record::End),
            rec::VERIFY => empty(Record::Verify),
            rec::STATIC_DATA_END => empty(Record::StaticDataEnd),
            rec::PAGE_DATA => {
                let short = || format!("length {} is shorter than its header", body.len());
                let count = f.u32().ok_or_else(short)?;
                f.u32().ok_or_else(short)?; // _res1
                let n = usize::try_from(count).map_err(|_| format!("count {count}"))?;
                // The count must fit the body before anything proportional to it is made.
                if n.checked_mul(8).is_none_or(|bytes| bytes > f.rest().len()) {
                    return Err(format!(
                        "length {} is too short for {count} pfns",
                        body.len()
                    ));
                }
                let mut entries = Vec::with_capacity(n);
                for i in 0..n {
                    let raw = f.u64().ok_or_else(short)?;
                    let bits = u32::try_from((raw & PAGE_DATA_TYPE_MASK) >> 32).unwrap_or(0);
                    let t = PageType::from_pfinfo(bits)
                        .ok_or_else(|| format!("unknown page type {bits:#x} (entry {i})"))?;
                    if raw & !(PAGE_DATA_TYPE_MASK | PAGE_DATA_PFN_MASK) != 0 {
                        return Err(format!("reserved bits set in entry {i} ({raw:#x})"));
                    }
                    entries.push((Pfn(raw & PAGE_DATA_PFN_MASK), t));
                }
                PageData::new(entries, f.rest()).map(Record::PageData)
            }
            rec::X86_TSC_INFO => {
                if body.len() != 24 {
                    return Err(format!("length {}, expected 24", body.len()));
                }
                let (mode, khz, nsec, incarnation) = (f.u32(), f.u32(), f.u64(), f.u32());
                match (mode, khz, nsec, incarnation) {
                    (Some(mode), Some(khz), Some(nsec), Some(incarnation)) => {
                        Ok(Record::TscInfo(TscInfo {
                            mode,
                            khz,
                            nsec,
                            incarnation,
                        }))
                    }
                    _ => Err("truncated".into()),
                }
            }
            rec::HVM_CONTEXT => Ok(Record::HvmContext(body)),
            rec::HVM_PARAMS => {
                let short = || format!("length {} is shorter than its header", body.len());
                let count = f.u32().ok_or_else(short)?;
                f.u32().ok_or_else(short)?;
                let n = entries_in(f.rest(), 16, Some(count))?;
                let mut params = Vec::with_capacity(n);
                for _ in 0..n {
                    match (f.u64(), f.u64()) {
                        (Some(index), Some(value)) => params.push(HvmParam { index, value }),
                        _ => return Err(short()),
                    }
                }
                Ok(Record::HvmParams(params))
            }
            rec::X86_CPUID_POLICY => {
                let n = entries_in(body, 24, None)?;
                let mut leaves = Vec::with_capacity(n);
                for _ in 0..n {
                    let w: Vec<u32> = (0..6).filter_map(|_| f.u32()).collect();
                    match w.as_slice() {
                        [leaf, subleaf, a, b, c, d] => leaves.push(CpuidLeaf {
                            leaf: *leaf,
                            subleaf: *subleaf,
                            regs: [*a, *b, *c, *d],
                        }),
                        _ => return Err("truncated".into()),
                    }
                }
                Ok(Record::CpuidPolicy(leaves))
            }
            rec::X86_MSR_POLICY => {
                let n = entries_in(body, 16, None)?;
                let mut msrs = Vec::with_capacity(n);
                for _ in 0..n {
                    match (f.u32(), f.u32(), f.u64()) {
                        (Some(index), Some(flags), Some(value)) => msrs.push(MsrEntry {
                            index,
                            flags,
                            value,
                        }),
                        _ => return Err("truncated".into()),
                    }
                }
                Ok(Record::MsrPolicy(msrs))
            }
            _ => Ok(Record::Other { rtype, body }),
        }
    }

    /// The body, encoded (without the record header and padding).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let u32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        let u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        match self {
            Record::End | Record::Verify | Record::StaticDataEnd => {}
            Record::PageData(p) => {
                out.extend_from_slice(&p.encode_head());
                out.extend_from_slice(p.data);
            }
            Record::TscInfo(t) => {
                u32(&mut out, t.mode);
                u32(&mut out, t.khz);
                u64(&mut out, t.nsec);
                u32(&mut out, t.incarnation);
                u32(&mut out, 0);
            }
            Record::HvmContext(blob) => out.extend_from_slice(blob),
            Record::HvmParams(params) => {
                u32(&mut out, u32::try_from(params.len()).unwrap_or(u32::MAX));
                u32(&mut out, 0);
                for p in params {
                    u64(&mut out, p.index);
                    u64(&mut out, p.value);
                }
            }
            Record::CpuidPolicy(leaves) => {
                for l in leaves {
                    for v in [
                        l.leaf, l.subleaf, l.regs[0], l.regs[1], l.regs[2], l.regs[3],
                    ] {
                        u32(&mut out, v);
                    }
                }
            }
            Record::MsrPolicy(msrs) => {
                for m in msrs {
                    u32(&mut out, m.index);
                    u32(&mut out, m.flags);
                    u64(&mut out, m.value);
                }
            }
            Record::Other { body, .. } => out.extend_from_slice(body),
        }
        out
    }
}

/// The record-level error for a decode failure of the record at `at`.
pub(super) fn malformed(rtype: u32, at: u64, why: String) -> StreamError {
    StreamError::Malformed {
        name: rec::display(rtype),
        at,
        why,
    }
}
