//! ACPI tables for a PVH guest, as bytes: what the C xenguest's `xenguest_dom_load_acpi`
//! builds with Xen's libacpi (`tools/libacpi/build.c`) and the PVH DSDT (`mk_dsdt
//! --maxcpu any --dm-version none`, compiled by iasl). Pure: a configuration in, three
//! modules out (RSDP, info page, tables), each with the guest-physical address it goes to.
//!
//! What libacpi builds for PVH (no table flags): FACS, DSDT, a revision-1 FADT for the RSDT
//! and a revision-5 FADT for the XSDT, a MADT (local APICs only, id = 2·cpu, enabled for the
//! first `vcpus_online`) when there is more than one vCPU or `apic_mode` is set, then XSDT and
//! RSDT, all allocated in that order from 0xFC001000; the RSDP (revision 2) sits in the last
//! 64 bytes below 1 MiB and the `acpi_info` block the DSDT reads at 0xFC000000.

use crate::types::usize_of;
use std::fmt;

/// Where the RSDP goes: the last 64 bytes of the BIOS area below 1 MiB.
pub const RSDP_ADDRESS: u64 = 0x10_0000 - 64;
/// Bytes of the RSDP module.
pub const RSDP_BYTES: usize = 64;
/// `ACPI_INFO_PHYSICAL_ADDRESS`: the page holding `acpi_info` (the DSDT's `BIOS` region).
pub const ACPI_INFO_ADDRESS: u64 = 0xFC00_0000;
/// Bytes of the info module (one page).
pub const ACPI_INFO_BYTES: usize = 4096;
/// The tables start on the page after the info page.
pub const TABLES_ADDRESS: u64 = ACPI_INFO_ADDRESS + 4096;
/// Pages available for the tables (`NUM_ACPI_PAGES`).
pub const MAX_TABLE_PAGES: u64 = 16;
/// `LAPIC_BASE_ADDRESS`.
pub const LAPIC_BASE_ADDRESS: u32 = 0xFEE0_0000;
/// Most vCPUs the tables describe (`HVM_MAX_VCPUS`: the DSDT's processor objects).
pub const MAX_VCPUS: u32 = 128;
/// The ACPI revision xenguest asks libacpi for (FADT revision 5).
pub const ACPI_REVISION: u8 = 5;

const PAGE: u64 = 4096;
const HEADER_BYTES: usize = 36;
const FACS_BYTES: usize = 64;
const FADT_V1_BYTES: usize = 116;
const FADT_BYTES: usize = 268;
const MADT_HEADER_BYTES: usize = 44;
/// Bytes of one local-APIC entry, as its length field holds it.
const MADT_LAPIC_LEN: u8 = 8;
const MADT_LAPIC_BYTES: usize = MADT_LAPIC_LEN as usize;
/// libacpi sizes the MADT allocation for 16 interrupt source overrides and an IO-APIC even
/// when it writes neither; the gap shifts every later table, so it is kept.
const MADT_UNUSED_BYTES: usize = 16 * 10 + 12;

/// What the tables describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcpiConfig {
    /// `platform/vcpu/number`.
    pub nr_vcpus: u32,
    /// `platform/vcpu/current`: the first this many are enabled in the MADT.
    pub vcpus_online: u32,
    /// `platform/apic`.
    pub apic_mode: u8,
}

/// One ACPI module: bytes and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiModule {
    /// Guest-physical address.
    pub paddr: u64,
    /// Contents.
    pub data: Vec<u8>,
}

impl AcpiModule {
    /// Guest frames covered, `[first, end)`.
    pub fn gfns(&self) -> (u64, u64) {
        let first = self.paddr / PAGE;
        let end = (self.paddr + self.data.len() as u64).div_ceil(PAGE);
        (first, end)
    }
}

/// The three modules, in libxenguest's `acpi_modules[]` order.
#[derive(Clone, PartialEq, Eq)]
pub struct PvhAcpi {
    /// RSDP (64 bytes at [`RSDP_ADDRESS`]).
    pub rsdp: AcpiModule,
    /// `acpi_info` page at [`ACPI_INFO_ADDRESS`].
    pub info: AcpiModule,
    /// The tables, whole pages from [`TABLES_ADDRESS`].
    pub tables: AcpiModule,
    /// Where each table went: (signature, address, length).
    pub directory: Vec<([u8; 4], u64, usize)>,
}

impl fmt::Debug for PvhAcpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PvhAcpi");
        for (sig, addr, len) in &self.directory {
            d.field(
                &String::from_utf8_lossy(sig),
                &format_args!("{addr:#x}+{len}"),
            );
        }
        d.finish()
    }
}

impl PvhAcpi {
    /// RSDP, info, tables.
    pub fn modules(&self) -> [&AcpiModule; 3] {
        [&self.rsdp, &self.info, &self.tables]
    }
}

/// Why the tables cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    /// More vCPUs than the tables can describe.
    #[error("{0} vCPUs: the PVH ACPI tables describe at most {MAX_VCPUS}")]
    TooManyVcpus(u32),
    /// The tables do not fit their pages (libacpi's "out of memory").
    #[error("unable to build ACPI tables: {needed} bytes do not fit {MAX_TABLE_PAGES} pages")]
    OutOfRoom {
        /// Bytes the allocation would have reached.
        needed: u64,
    },
}

/// Sum of bytes, mod 256.
pub fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// Set `bytes[at]` so that `bytes[..len]` sums to 0 (libacpi's `set_checksum`).
fn set_checksum(bytes: &mut [u8], at: usize, len: usize) {
    bytes[at] = 0;
    bytes[at] = byte_sum(&bytes[..len]).wrapping_neg();
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

// Every table, and the whole tables area, lies below 4 GiB, so their 32-bit fields hold any
// address or length in it.
const _: () = assert!(TABLES_ADDRESS + MAX_TABLE_PAGES * PAGE <= 1 << 32);

/// A 32-bit table field for `n`, an address or length inside the tables area (below 4 GiB,
/// asserted above; allocations beyond the area are refused by `Tables::alloc`).
#[expect(
    clippy::cast_possible_truncation,
    reason = "the tables area ends below 4 GiB, asserted at compile time"
)]
fn field32(n: u64) -> u32 {
    n as u32
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// An ACPI table of `len` bytes starting with libacpi's common header (OEM "Xen", table
/// "HVM", creator "HVML", revisions 0); the checksum is left for the caller.
fn table(sig: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let mut t = vec![0u8; len];
    t[0..4].copy_from_slice(sig);
    put32(&mut t, 4, field32(len as u64));
    t[8] = revision;
    t[10..13].copy_from_slice(b"Xen");
    t[16..19].copy_from_slice(b"HVM");
    t[28..32].copy_from_slice(b"HVML");
    t
}

/// A Generic Address Structure.
fn gas(b: &mut [u8], at: usize, space: u8, bit_width: u8, address: u64) {
    b[at] = space;
    b[at + 1] = bit_width;
    put64(b, at + 4, address);
}

const SYSTEM_IO: u8 = 1;
const PM1A_EVT_BLK: u32 = 0xB000;
const PM1A_CNT_BLK: u32 = PM1A_EVT_BLK + 4;
const PM_TMR_BLK: u32 = PM1A_EVT_BLK + 8;
const GPE0_BLK: u32 = 0xAFE0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_FIX_RTC: u32 = 1 << 6;
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_USE_PLATFORM_CLOCK: u32 = 1 << 15;
const FADT_NO_VGA: u16 = 1 << 2;
const FADT_NO_CMOS_RTC: u16 = 1 << 5;

/// libacpi's static FADT (`static_tables.c`) with the ACPI I/O ports of version 1 (the
/// checksum, revision, length and pointers are filled in later).
fn fadt_template() -> Vec<u8> {
    let mut f = table(b"FACP", FADT_BYTES, 0);
    put16(&mut f, 46, 9); // sci_int
    put32(&mut f, 56, PM1A_EVT_BLK);
    put32(&mut f, 64, PM1A_CNT_BLK);
    put32(&mut f, 76, PM_TMR_BLK);
    put32(&mut f, 80, GPE0_BLK);
    f[88] = 4; // pm1_evt_len
    f[89] = 2; // pm1_cnt_len
    f[91] = 4; // pm_tmr_len
    f[92] = 4; // gpe0_blk_len
    put16(&mut f, 96, 0x0FFF); // p_lvl2_lat: no C2
    put16(&mut f, 98, 0x0FFF); // p_lvl3_lat: no C3
    put32(
        &mut f,
        112,
        FADT_PROC_C1 | FADT_WBINVD | FADT_FIX_RTC | FADT_TMR_VAL_EXT | FADT_USE_PLATFORM_CLOCK,
    );
    gas(&mut f, 116, SYSTEM_IO, 8, 0xCF9); // reset_reg
    f[128] = 6; // reset_value
    gas(&mut f, 148, SYSTEM_IO, 32, PM1A_EVT_BLK.into()); // x_pm1a_evt_blk
    gas(&mut f, 172, SYSTEM_IO, 16, PM1A_CNT_BLK.into()); // x_pm1a_cnt_blk
    gas(&mut f, 208, SYSTEM_IO, 32, PM_TMR_BLK.into()); // x_pm_tmr_blk
    f
}

/// libacpi's bump allocator over the table pages: at least 16-byte alignment, no room
/// past [`MAX_TABLE_PAGES`].
struct Tables {
    buf: Vec<u8>,
    next: u64,
    directory: Vec<([u8; 4], u64, usize)>,
}

impl Tables {
    fn alloc(&mut self, size: usize, align: u64) -> Result<u64, AcpiError> {
        let align = align.max(16);
        let start = self.next.next_multiple_of(align);
        let end = start + size as u64;
        if end > TABLES_ADDRESS + MAX_TABLE_PAGES * PAGE {
            return Err(AcpiError::OutOfRoom {
                needed: end - TABLES_ADDRESS,
            });
        }
        self.next = end;
        self.buf.resize(usize_of(end - TABLES_ADDRESS), 0);
        Ok(start)
    }

    /// Allocate room for `alloc_size` bytes and put `bytes` at its start.
    fn place(&mut self, bytes: &[u8], alloc_size: usize, align: u64) -> Result<u64, AcpiError> {
        let paddr = self.alloc(alloc_size, align)?;
        let at = usize_of(paddr - TABLES_ADDRESS);
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
        let mut sig = [0u8; 4];
        sig.copy_from_slice(&bytes[..4]);
        self.directory.push((sig, paddr, bytes.len()));
        Ok(paddr)
    }
}

/// Build the PVH ACPI tables.
pub fn build_pvh(config: &AcpiConfig) -> Result<PvhAcpi, AcpiError> {
    if config.nr_vcpus > MAX_VCPUS {
        return Err(AcpiError::TooManyVcpus(config.nr_vcpus));
    }
    let mut t = Tables {
        buf: Vec::new(),
        next: TABLES_ADDRESS,
        directory: Vec::new(),
    };
    let mut info = vec![0u8; ACPI_INFO_BYTES];

    let mut facs = vec![0u8; FACS_BYTES];
    facs[0..4].copy_from_slice(b"FACS");
    put32(&mut facs, 4, field32(FACS_BYTES as u64));
    facs[32] = 1; // version
    let facs_at = t.place(&facs, FACS_BYTES, 64)?;

    let dsdt = dsdt_pvh();
    let dsdt_at = t.place(&dsdt, dsdt.len(), 16)?;

    // The revision-1 FADT for the RSDT, copied from the template before the PVH changes.
    let template = fadt_template();
    let mut fadt_v1 = template[..FADT_V1_BYTES].to_vec();
    put32(&mut fadt_v1, 4, field32(FADT_V1_BYTES as u64));
    fadt_v1[8] = 1;
    put32(&mut fadt_v1, 40, field32(dsdt_at));
    put32(&mut fadt_v1, 36, field32(facs_at));
    set_checksum(&mut fadt_v1, 9, FADT_V1_BYTES);
    let fadt_v1_at = t.place(&fadt_v1, FADT_V1_BYTES, 16)?;

    // The revision-5 FADT: no PM timer, no power/sleep buttons, no VGA, no CMOS RTC.
    let mut fadt = template;
    put32(&mut fadt, 76, 0);
    fadt[91] = 0;
    fadt[208..220].fill(0);
    let flags = u32::from_le_bytes([fadt[112], fadt[113], fadt[114], fadt[115]]);
    put32(&mut fadt, 112, flags | FADT_PWR_BUTTON | FADT_SLP_BUTTON);
    fadt[8] = ACPI_REVISION;
    put32(&mut fadt, 36, field32(facs_at));
    put32(&mut fadt, 40, field32(dsdt_at));
    put64(&mut fadt, 132, facs_at);
    put64(&mut fadt, 140, dsdt_at);
    put16(&mut fadt, 109, FADT_NO_VGA | FADT_NO_CMOS_RTC);
    set_checksum(&mut fadt, 9, FADT_BYTES);
    let fadt_at = t.place(&fadt, FADT_BYTES, 16)?;

    let mut secondary = Vec::new();
    if config.nr_vcpus > 1 || config.apic_mode != 0 {
        let too_many = || AcpiError::TooManyVcpus(config.nr_vcpus);
        let n = usize_of(u64::from(config.nr_vcpus));
        let len = MADT_HEADER_BYTES + MADT_LAPIC_BYTES * n;
        let mut madt = table(b"APIC", len, 2);
        put32(&mut madt, 36, LAPIC_BASE_ADDRESS);
        put32(&mut madt, 40, 1); // PC-AT compatible
        for (cpu, at) in (0..config.nr_vcpus).zip((MADT_HEADER_BYTES..).step_by(MADT_LAPIC_BYTES)) {
            madt[at] = 0; // processor local APIC
            madt[at + 1] = MADT_LAPIC_LEN;
            madt[at + 2] = u8::try_from(cpu).map_err(|_| too_many())?;
            madt[at + 3] = u8::try_from(2 * cpu).map_err(|_| too_many())?;
            put32(&mut madt, at + 4, u32::from(cpu < config.vcpus_online));
        }
        set_checksum(&mut madt, 9, len);
        let madt_at = t.place(&madt, len + MADT_UNUSED_BYTES, 16)?;
        put16(
            &mut info,
            2,
            u16::try_from(config.nr_vcpus).map_err(|_| too_many())?,
        );
        put32(&mut info, 12, field32(madt_at + 9));
        put32(&mut info, 16, field32(madt_at + MADT_HEADER_BYTES as u64));
        secondary.push(madt_at);
    }

    let xsdt_len = HEADER_BYTES + 8 * (1 + secondary.len());
    let mut xsdt = table(b"XSDT", xsdt_len, 1);
    for (i, addr) in std::iter::once(fadt_at)
        .chain(secondary.iter().copied())
        .enumerate()
    {
        put64(&mut xsdt, HEADER_BYTES + 8 * i, addr);
    }
    set_checksum(&mut xsdt, 9, xsdt_len);
    // libacpi allocates one entry more than it fills (the struct holds one already).
    let xsdt_at = t.place(&xsdt, HEADER_BYTES + 8 + 8 * secondary.len(), 16)?;

    let rsdt_len = HEADER_BYTES + 4 * (1 + secondary.len());
    let mut rsdt = table(b"RSDT", rsdt_len, 1);
    for (i, addr) in std::iter::once(fadt_v1_at)
        .chain(secondary.iter().copied())
        .enumerate()
    {
        put32(&mut rsdt, HEADER_BYTES + 4 * i, field32(addr));
    }
    set_checksum(&mut rsdt, 9, rsdt_len);
    let rsdt_at = t.place(&rsdt, HEADER_BYTES + 4 + 4 * secondary.len(), 16)?;

    let mut rsdp = vec![0u8; RSDP_BYTES];
    rsdp[0..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..12].copy_from_slice(b"Xen");
    rsdp[15] = 2; // revision
    put32(&mut rsdp, 16, field32(rsdt_at));
    put32(&mut rsdp, 20, 36); // length
    put64(&mut rsdp, 24, xsdt_at);
    set_checksum(&mut rsdp, 8, 20);
    set_checksum(&mut rsdp, 32, 36);

    let pages = (t.next - TABLES_ADDRESS).div_ceil(PAGE);
    t.buf.resize(usize_of(pages * PAGE), 0);
    Ok(PvhAcpi {
        rsdp: AcpiModule {
            paddr: RSDP_ADDRESS,
            data: rsdp,
        },
        info: AcpiModule {
            paddr: ACPI_INFO_ADDRESS,
            data: info,
        },
        tables: AcpiModule {
            paddr: TABLES_ADDRESS,
            data: t.buf,
        },
        directory: t.directory,
    })
}

/// AML encoding, just what the PVH DSDT needs, producing the bytes iasl does.
mod aml {
    /// A name segment: four characters, `_`-padded.
    pub fn seg(name: &str) -> Vec<u8> {
        let mut s: Vec<u8> = name.bytes().take(4).collect();
        s.resize(4, b'_');
        s
    }

    /// `^A.B`: parent prefix and a dual name path.
    pub fn parent_dual(a: &str, b: &str) -> Vec<u8> {
        let mut v = vec![0x5E, 0x2E];
        v.extend(seg(a));
        v.extend(seg(b));
        v
    }

    /// `\A.B`: root prefix and a dual name path.
    pub fn root_dual(a: &str, b: &str) -> Vec<u8> {
        let mut v = vec![0x5C, 0x2E];
        v.extend(seg(a));
        v.extend(seg(b));
        v
    }

    /// An integer in its shortest encoding (Zero, One, Byte, Word, DWord, QWord).
    pub fn int(v: u64) -> Vec<u8> {
        match v {
            0 => vec![0x00],
            1 => vec![0x01],
            2..=0xFF => vec![0x0A, v.to_le_bytes()[0]],
            0x100..=0xFFFF => {
                let mut b = vec![0x0B];
                b.extend_from_slice(&v.to_le_bytes()[..2]);
                b
            }
            0x1_0000..=0xFFFF_FFFF => {
                let mut b = vec![0x0C];
                b.extend_from_slice(&v.to_le_bytes()[..4]);
                b
            }
            _ => {
                let mut b = vec![0x0E];
                b.extend(v.to_le_bytes());
                b
            }
        }
    }

    /// A package length for `len` bytes that follow it (the encoding counts itself).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "each byte of the encoding takes the low bits of a bounded or shifted value"
    )]
    pub fn pkg_length(len: usize) -> Vec<u8> {
        let total = |n: usize| len + n;
        if total(1) <= 0x3F {
            return vec![total(1) as u8];
        }
        let n = if total(2) <= 0xFFF {
            2
        } else if total(3) <= 0xF_FFFF {
            3
        } else {
            4
        };
        let t = total(n);
        let mut v = vec![(((n - 1) << 6) | (t & 0xF)) as u8];
        for i in 1..n {
            v.push((t >> (4 + 8 * (i - 1))) as u8);
        }
        v
    }

    /// A field element's bit length: the package-length encoding, without counting itself.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "each byte of the encoding takes the low bits of a bounded or shifted value"
    )]
    pub fn bits(n: usize) -> Vec<u8> {
        if n <= 0x3F {
            vec![n as u8]
        } else {
            vec![0x40 | (n & 0xF) as u8, (n >> 4) as u8]
        }
    }

    /// `op PkgLength head body`.
    pub fn pkg(op: &[u8], head: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = op.to_vec();
        v.extend(pkg_length(head.len() + body.len()));
        v.extend_from_slice(head);
        v.extend_from_slice(body);
        v
    }

    pub fn scope(name: &[u8], body: &[u8]) -> Vec<u8> {
        pkg(&[0x10], name, body)
    }

    pub fn method(name: &str, args: u8, body: &[u8]) -> Vec<u8> {
        let mut head = seg(name);
        head.push(args);
        pkg(&[0x14], &head, body)
    }

    pub fn if_(predicate: &[u8], body: &[u8]) -> Vec<u8> {
        pkg(&[0xA0], predicate, body)
    }

    pub fn else_(body: &[u8]) -> Vec<u8> {
        pkg(&[0xA1], &[], body)
    }

    pub fn ret(v: &[u8]) -> Vec<u8> {
        cat(&[&[0xA4], v])
    }

    pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// `OperationRegion(name, space, offset, len)`.
    pub fn op_region(name: &str, space: u8, offset: &[u8], len: &[u8]) -> Vec<u8> {
        cat(&[&[0x5B, 0x80], &seg(name), &[space], offset, len])
    }

    /// `Field(region, ByteAcc, NoLock, Preserve) { ... }`; `None` names reserve bits.
    pub fn field(region: &str, elements: &[(Option<&str>, usize)]) -> Vec<u8> {
        let mut head = seg(region);
        head.push(0x01);
        let mut body = Vec::new();
        for (name, n) in elements {
            match name {
                Some(name) => body.extend(seg(name)),
                None => body.push(0x00),
            }
            body.extend(bits(*n));
        }
        pkg(&[0x5B, 0x81], &head, &body)
    }

    pub const SYSTEM_MEMORY: u8 = 0;
    pub const SYSTEM_IO: u8 = 1;
    pub const LOCAL0: u8 = 0x60;
    pub const LOCAL1: u8 = 0x61;
    pub const LOCAL2: u8 = 0x62;
    pub const ARG0: u8 = 0x68;
    pub const ARG1: u8 = 0x69;
    pub const NULL_TARGET: u8 = 0x00;
    pub const ADD: u8 = 0x72;
    pub const SUBTRACT: u8 = 0x74;
    pub const STORE: u8 = 0x70;
    pub const AND: u8 = 0x7B;
    pub const SHIFT_RIGHT: u8 = 0x7A;
    pub const DEREF_OF: u8 = 0x83;
    pub const INDEX: u8 = 0x88;
    pub const NOTIFY: u8 = 0x86;
    pub const TO_BUFFER: u8 = 0x96;
    pub const LNOT: u8 = 0x92;
    pub const LEQUAL: u8 = 0x93;
    pub const LLESS: u8 = 0x95;
}

/// iasl's version in Debian 12, recorded in the DSDT header's creator revision.
const IASL_REVISION: u32 = 0x2020_0925;

/// The PVH DSDT: the `acpi_info` fields at 0xFC000000, a processor object per possible
/// vCPU (128) with `_MAT`/`_STA` reading the MADT, the CPU hotplug handler `PRSC` over the
/// online map at I/O port 0xAF00, and GPE 2 calling it: the AML iasl makes of
/// `mk_dsdt --maxcpu any --dm-version none` after `dsdt_acpi_info.asl`.
pub fn dsdt_pvh() -> Vec<u8> {
    use aml::*;
    let mut body = scope(
        &seg("_SB"),
        &cat(&[
            &op_region("BIOS", SYSTEM_MEMORY, &int(ACPI_INFO_ADDRESS), &int(40)),
            &field(
                "BIOS",
                &[
                    (Some("UAR1"), 1),
                    (Some("UAR2"), 1),
                    (Some("LTP1"), 1),
                    (Some("HPET"), 1),
                    (None, 12),
                    (Some("NCPU"), 16),
                    (Some("PMIN"), 32),
                    (Some("PLEN"), 32),
                    (Some("MSUA"), 32),
                    (Some("MAPA"), 32),
                    (Some("VGIA"), 32),
                    (Some("LMIN"), 32),
                    (Some("HMIN"), 32),
                    (Some("LLEN"), 32),
                    (Some("HLEN"), 32),
                ],
            ),
        ]),
    );

    let mut sb = cat(&[
        &op_region("MSUM", SYSTEM_MEMORY, &seg("MSUA"), &int(1)),
        &field("MSUM", &[(Some("MSU"), 8)]),
    ]);
    // PMAT(cpu, mat): the MADT entry while cpu < NCPU, else a disabled one.
    let mut pmat_default = int(8);
    pmat_default.extend([0, 8, 0xFF, 0xFF, 0, 0, 0, 0]);
    sb.extend(method(
        "PMAT",
        2,
        &cat(&[
            &if_(
                &cat(&[&[LLESS, ARG0], &seg("NCPU")]),
                &ret(&[TO_BUFFER, ARG1, NULL_TARGET]),
            ),
            &ret(&pkg(&[0x11], &[], &pmat_default)),
        ]),
    ));
    for cpu in 0..MAX_VCPUS as u64 {
        sb.extend(processor(cpu));
    }
    sb.extend(op_region(
        "PRST",
        SYSTEM_IO,
        &int(0xAF00),
        &int(u64::from(MAX_VCPUS).div_ceil(8)),
    ));
    sb.extend(field("PRST", &[(Some("PRS"), MAX_VCPUS as usize)]));
    sb.extend(method("PRSC", 0, &hotplug_body()));
    body.extend(scope(&seg("_SB"), &sb));

    let call = root_dual("_SB", "PRSC");
    body.extend(scope(&seg("_GPE"), &method("_E02", 0, &call)));

    let mut dsdt = table(b"DSDT", HEADER_BYTES + body.len(), 5);
    dsdt[28..32].copy_from_slice(b"INTL");
    put32(&mut dsdt, 32, IASL_REVISION);
    dsdt[HEADER_BYTES..].copy_from_slice(&body);
    let len = dsdt.len();
    set_checksum(&mut dsdt, 9, len);
    dsdt
}

/// `Processor(PRxx, cpu, 0xB010, 6)` and its methods.
#[expect(
    clippy::cast_possible_truncation,
    reason = "cpu < MAX_VCPUS (128): the processor id is one byte"
)]
fn processor(cpu: u64) -> Vec<u8> {
    use aml::*;
    let name = format!("PR{cpu:02X}");
    let mut p = Vec::new();
    p.extend(cat(&[&[0x08], &seg("_HID"), &[0x0D], b"ACPI0007\0"]));
    p.extend(cat(&[&[0x08], &seg("_UID"), &int(cpu)]));
    let offset = cat(&[&[ADD], &seg("MAPA"), &int(cpu * 8), &[NULL_TARGET]]);
    p.extend(op_region("MATR", SYSTEM_MEMORY, &offset, &int(8)));
    p.extend(field("MATR", &[(Some("MAT"), 64)]));
    p.extend(field("MATR", &[(None, 32), (Some("FLG"), 1)]));
    let mat = if cpu == 0 {
        ret(&cat(&[&[TO_BUFFER], &seg("MAT"), &[NULL_TARGET]]))
    } else {
        ret(&cat(&[&seg("PMAT"), &int(cpu), &seg("MAT")]))
    };
    p.extend(method("_MAT", 0, &mat));
    let mut sta = if_(&seg("FLG"), &ret(&int(0xF)));
    if cpu != 0 {
        sta = if_(&cat(&[&[LLESS], &int(cpu), &seg("NCPU")]), &sta);
    }
    sta.extend(ret(&int(0)));
    p.extend(method("_STA", 0, &sta));
    p.extend(method("_EJ0", 1, &cat(&[&[0x5B, 0x22], &int(200)])));
    let mut head = seg(&name);
    head.push(cpu as u8);
    head.extend(0xB010u32.to_le_bytes());
    head.push(6);
    pkg(&[0x5B, 0x83], &head, &p)
}

/// `PRSC`: for each CPU whose bit in the online map differs from its MADT flag, update the
/// flag and the MADT checksum and notify the OS (device check or eject request).
fn hotplug_body() -> Vec<u8> {
    use aml::*;
    let mut b = cat(&[&[STORE, TO_BUFFER], &seg("PRS"), &[NULL_TARGET, LOCAL0]]);
    for cpu in 0..MAX_VCPUS as u64 {
        let name = format!("PR{cpu:02X}");
        if cpu % 8 == 0 {
            b.extend(cat(&[
                &[STORE, DEREF_OF, INDEX, LOCAL0],
                &int(cpu / 8),
                &[NULL_TARGET, LOCAL1],
            ]));
        } else {
            b.extend(cat(&[&[SHIFT_RIGHT, LOCAL1], &int(1), &[LOCAL1]]));
        }
        b.extend(cat(&[&[AND, LOCAL1], &int(1), &[LOCAL2]]));
        let flg = parent_dual(&name, "FLG");
        let msu = seg("MSU");
        let online = cat(&[
            &[NOTIFY],
            &seg(&name),
            &int(1),
            &[SUBTRACT],
            &msu,
            &int(1),
            &msu,
        ]);
        let offline = cat(&[&[NOTIFY], &seg(&name), &int(3), &[ADD], &msu, &int(1), &msu]);
        let inner = cat(&[
            &cat(&[&[STORE, LOCAL2], &flg]),
            &if_(&cat(&[&[LEQUAL, LOCAL2], &int(1)]), &online),
            &else_(&offline),
        ]);
        b.extend(if_(&cat(&[&[LNOT, LEQUAL, LOCAL2], &flg]), &inner));
    }
    b.extend(ret(&int(1)));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The table at guest address `paddr`, checked: in bounds, length, checksum.
    fn table_at(acpi: &PvhAcpi, paddr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let at = usize_of(paddr - TABLES_ADDRESS);
        let b = &acpi.tables.data;
        assert_eq!(&b[at..at + 4], sig, "signature at {paddr:#x}");
        let len = if sig == b"FACS" {
            64
        } else {
            u32_at(b, at + 4) as usize
        };
        let t = b[at..at + len].to_vec();
        if sig != b"FACS" {
            assert_eq!(byte_sum(&t), 0, "{} checksum", String::from_utf8_lossy(sig));
            assert_eq!(&t[10..13], b"Xen");
        }
        t
    }

    fn build(nr_vcpus: u32, vcpus_online: u32, apic_mode: u8) -> PvhAcpi {
        build_pvh(&AcpiConfig {
            nr_vcpus,
            vcpus_online,
            apic_mode,
        })
        .unwrap()
    }

    #[test]
    fn rsdp_points_at_valid_xsdt_and_rsdt() {
        let acpi = build(4, 2, 1);
        let r = &acpi.rsdp.data;
        assert_eq!((acpi.rsdp.paddr, r.len()), (0xFFFC0, 64));
        assert_eq!(&r[0..8], b"RSD PTR ");
        assert_eq!(byte_sum(&r[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(byte_sum(&r[..36]), 0, "extended checksum");
        assert_eq!((r[15], u32_at(r, 20)), (2, 36));
        let xsdt = table_at(&acpi, u64_at(r, 24), b"XSDT");
        let rsdt = table_at(&acpi, u32_at(r, 16).into(), b"RSDT");
        assert_eq!((xsdt.len(), rsdt.len()), (36 + 16, 36 + 8), "FADT and MADT");

        let fadt = table_at(&acpi, u64_at(&xsdt, 36), b"FACP");
        assert_eq!((fadt.len(), fadt[8]), (268, 5));
        let fadt_v1 = table_at(&acpi, u32_at(&rsdt, 36).into(), b"FACP");
        assert_eq!((fadt_v1.len(), fadt_v1[8]), (116, 1));
        assert_eq!(u64_at(&xsdt, 44), u64::from(u32_at(&rsdt, 40)), "same MADT");
        let dsdt = table_at(&acpi, u64_at(&fadt, 140), b"DSDT");
        assert_eq!(u32_at(&fadt, 40) as u64, u64_at(&fadt, 140));
        assert_eq!(u32_at(&fadt_v1, 40), u32_at(&fadt, 40));
        assert_eq!(dsdt, dsdt_pvh());
        table_at(&acpi, u64_at(&fadt, 132), b"FACS");
        assert_eq!(u32_at(&fadt, 36) as u64, u64_at(&fadt, 132));
        // PVH: no PM timer, buttons as fixed features absent, no VGA, no CMOS RTC.
        assert_eq!(u32_at(&fadt, 76), 0);
        assert_eq!(u32_at(&fadt, 112) & 0x30, 0x30);
        assert_eq!(u16::from_le_bytes([fadt[109], fadt[110]]), 0x24);
        assert_eq!(
            u32_at(&fadt_v1, 76),
            0xB008,
            "the v1 copy predates the changes"
        );
    }

    #[test]
    fn madt_lists_every_vcpu_enabling_the_online_ones() {
        let acpi = build(6, 4, 0);
        let xsdt = table_at(&acpi, u64_at(&acpi.rsdp.data, 24), b"XSDT");
        let madt_at = u64_at(&xsdt, 44);
        let madt = table_at(&acpi, madt_at, b"APIC");
        assert_eq!(madt.len(), 44 + 6 * 8);
        assert_eq!(
            (madt[8], u32_at(&madt, 36), u32_at(&madt, 40)),
            (2, 0xFEE0_0000, 1)
        );
        for cpu in 0..6u8 {
            let at = 44 + 8 * usize::from(cpu);
            let e = &madt[at..at + 8];
            assert_eq!(&e[..4], &[0, 8, cpu, 2 * cpu]);
            assert_eq!(u32_at(e, 4), u32::from(cpu < 4), "cpu {cpu}");
        }
        // acpi_info: CPU count, MADT checksum and first LAPIC addresses for the DSDT.
        let info = &acpi.info.data;
        assert_eq!(acpi.info.paddr, 0xFC00_0000);
        assert_eq!(u16::from_le_bytes([info[2], info[3]]), 6);
        assert_eq!(u32_at(info, 12) as u64, madt_at + 9);
        assert_eq!(u32_at(info, 16) as u64, madt_at + 44);
    }

    #[test]
    fn one_vcpu_without_apic_gets_no_madt_as_libacpi_decides() {
        let acpi = build(1, 1, 0);
        let xsdt = table_at(&acpi, u64_at(&acpi.rsdp.data, 24), b"XSDT");
        assert_eq!(xsdt.len(), 44, "FADT only");
        assert_eq!(
            u16::from_le_bytes([acpi.info.data[2], acpi.info.data[3]]),
            0
        );
        let with_apic = build(1, 1, 1);
        let xsdt = table_at(&with_apic, u64_at(&with_apic.rsdp.data, 24), b"XSDT");
        assert_eq!(xsdt.len(), 52);
    }

    #[test]
    fn layout_is_libacpi_s() {
        let acpi = build(2, 2, 1);
        let order: Vec<_> = acpi.directory.iter().map(|(s, a, _)| (*s, *a)).collect();
        let dsdt_len = dsdt_pvh().len() as u64;
        let dsdt_end = 0xFC00_1040 + dsdt_len;
        let fadt_v1 = dsdt_end.next_multiple_of(16);
        let fadt = fadt_v1 + 128; // 116 rounded to 16
        let madt = fadt + 272; // 268 rounded
        let xsdt = madt + 240; // 44 + 2 * 8 + the unused 172, rounded
        assert_eq!(
            order,
            vec![
                (*b"FACS", 0xFC00_1000),
                (*b"DSDT", 0xFC00_1040),
                (*b"FACP", fadt_v1),
                (*b"FACP", fadt),
                (*b"APIC", madt),
                (*b"XSDT", xsdt),
                (*b"RSDT", xsdt + 64),
            ]
        );
        assert_eq!(acpi.tables.data.len() % 4096, 0);
        assert_eq!(acpi.tables.gfns().0, 0xFC001);
    }

    #[test]
    fn the_most_vcpus_fit_and_more_are_refused() {
        let acpi = build(128, 128, 1);
        assert!(acpi.tables.data.len() as u64 <= MAX_TABLE_PAGES * PAGE);
        let xsdt = table_at(&acpi, u64_at(&acpi.rsdp.data, 24), b"XSDT");
        let madt = table_at(&acpi, u64_at(&xsdt, 44), b"APIC");
        assert_eq!(madt[44 + 8 * 127 + 3], 254, "LAPIC id 2 x 127");
        assert_eq!(
            build_pvh(&AcpiConfig {
                nr_vcpus: 129,
                vcpus_online: 1,
                apic_mode: 1
            }),
            Err(AcpiError::TooManyVcpus(129))
        );
    }

    #[test]
    fn dsdt_is_well_formed() {
        let d = dsdt_pvh();
        assert_eq!(&d[0..4], b"DSDT");
        assert_eq!(u32_at(&d, 4) as usize, d.len());
        assert_eq!(byte_sum(&d), 0);
        assert_eq!(d[8], 5);
        // Byte for byte the `dsdt_pvh` Debian's libxenlight carries (iasl 20200925): 27803
        // bytes with this FNV-1a hash (tests/pvh_build.rs compares with the library itself).
        assert_eq!(d.len(), 27803);
        let fnv = d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        assert_eq!(fnv, 0x2c10_9d14_77d9_3df7);
        for cpu in [0u64, 1, 0x7F] {
            let name = format!("PR{cpu:02X}");
            assert!(d.windows(4).any(|w| w == name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn aml_encodings() {
        use aml::*;
        assert_eq!(int(0), [0x00]);
        assert_eq!(int(1), [0x01]);
        assert_eq!(int(0xC8), [0x0A, 0xC8]);
        assert_eq!(int(0x3F8), [0x0B, 0xF8, 0x03]);
        assert_eq!(int(0xFC00_0000), [0x0C, 0, 0, 0, 0xFC]);
        assert_eq!(pkg_length(0x3E), [0x3F]);
        assert_eq!(pkg_length(0x3F), [0x41, 0x04]);
        assert_eq!(pkg_length(0x6BF6), [0x89, 0xBF, 0x06]);
        assert_eq!(bits(64), [0x40, 0x04]);
        assert_eq!(bits(128), [0x40, 0x08]);
        assert_eq!(seg("MSU"), b"MSU_");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    proptest! {
        /// For every vCPU count: each table's checksum and length agree with its bytes,
        /// the RSDP's two checksums hold, and the MADT has one local APIC per vCPU, enabled
        /// for the online ones only.
        #[test]
        fn tables_are_consistent(nr_vcpus in 1u32..=128, online_frac in 0.0f64..=1.0, apic_mode in 1u8..2) {
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a fraction in [0, 1] of a u32")]
            let vcpus_online = ((f64::from(nr_vcpus) * online_frac).floor() as u32).max(1);
            let t = build_pvh(&AcpiConfig { nr_vcpus, vcpus_online, apic_mode }).unwrap();
            prop_assert_eq!(sum(&t.rsdp.data[..20]), 0, "RSDP v1 checksum");
            prop_assert_eq!(sum(&t.rsdp.data[..36]), 0, "RSDP extended checksum");
            let mut lapics = Vec::new();
            for (sig, addr, len) in &t.directory {
                let at = usize::try_from(addr - t.tables.paddr).unwrap();
                let table = &t.tables.data[at..at + len];
                if sig == b"FACS" {
                    continue; // no checksum
                }
                let declared = u32::from_le_bytes(table[4..8].try_into().unwrap());
                prop_assert_eq!(declared as usize, *len, "{:?} length", sig);
                prop_assert_eq!(sum(table), 0, "{:?} checksum", sig);
                if sig == b"APIC" {
                    let mut off = 44;
                    while off + 2 <= table.len() {
                        let (kind, n) = (table[off], usize::from(table[off + 1]));
                        prop_assert!(n >= 2 && off + n <= table.len());
                        if kind == 0 {
                            let flags = u32::from_le_bytes(table[off + 4..off + 8].try_into().unwrap());
                            lapics.push(flags & 1 == 1);
                        }
                        off += n;
                    }
                }
            }
            prop_assert_eq!(lapics.len(), nr_vcpus as usize);
            let enabled = lapics.iter().take_while(|e| **e).count();
            prop_assert_eq!(enabled, vcpus_online as usize);
            prop_assert!(lapics[enabled..].iter().all(|e| !e));
        }
    }
}
