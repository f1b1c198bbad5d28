//! What libxenguest's `xc_dom_parse_image` learns about a kernel or firmware image, worked
//! out the way it works it out: `elf_xen_parse` (libelf-dominfo.c) reads the Xen notes and
//! derives the addresses, then the ELF loader (`xc_dom_parse_elf_kernel`) or the HVM firmware
//! loader (`xc_dom_parse_hvm_kernel`) names the guest type and the kernel segment. Pure: the
//! PV, PVH and HVM builders take their addresses from [`summarize`], and
//! `tests/libxenguest_diff.rs` checks it against libxenguest itself on real images.
//!
//! Where this differs from libxenguest (none of it matters for real Xen guests):
//! * notes are read from `PT_NOTE` segments only: libelf falls back to `SHT_NOTE` sections
//!   and, for PV, to the legacy `__xen_guest` section;
//! * the image's bounds come from the `PT_LOAD` segments with a memory size
//!   ([`Elf::paddr_bounds`]); libelf takes every `PT_LOAD` with R, W or X set, empty or not;
//! * `BSD_SYMTAB` is recorded but the symbol table is not appended, so `virt_kend` is not
//!   extended past it;
//! * in an HVM container, an image with Xen notes but no `PHYS32_ENTRY` is refused as not
//!   HVM-capable. libxenguest refuses it too when the notes are otherwise valid; when they
//!   are not, its HVM firmware loader takes the image as firmware instead.

use super::elf::{Class, Elf, EM_386, EM_X86_64};
use super::xen_notes::{NotesError, XenNotes, XENFEAT_DOM0};

/// What the image is parsed for (`dom->container_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// A PV domain: the kernel runs paged, at its virtual addresses.
    Pv,
    /// An HVM container: a PVH kernel (`PHYS32_ENTRY`) or HVM firmware such as hvmloader,
    /// both loaded at their physical addresses and entered in 32-bit protected mode.
    Hvm,
}

/// A PV kernel's `PAE_MODE`, as libelf's note parser reads it (`enum xen_pae_type`): the
/// note `yes` means PAE with extended CR3, any note containing `bimodal` means either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pae {
    /// No note, or another value: not a PAE kernel.
    No,
    /// `yes` (`XEN_PAE_EXTCR3`).
    ExtendedCr3,
    /// `bimodal` (`XEN_PAE_BIMODAL`).
    Bimodal,
}

impl Pae {
    /// From the `PAE_MODE` note.
    pub fn of(notes: &XenNotes) -> Self {
        match notes.pae_mode.as_deref() {
            Some(s) if s.contains("bimodal") => Pae::Bimodal,
            Some("yes") => Pae::ExtendedCr3,
            _ => Pae::No,
        }
    }

    /// libelf's name for it (`enum xen_pae_type`, lower case).
    pub fn name(self) -> &'static str {
        match self {
            Pae::No => "no",
            Pae::ExtendedCr3 => "extended-cr3",
            Pae::Bimodal => "bimodal",
        }
    }
}

/// What `xc_dom_parse_image` knows about an image once it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `dom->guest_type`: `xen-3.0-x86_64`, `xen-3.0-x86_32p` or `xen-3.0-x86_32` for a PV
    /// kernel, `hvm-3.0-x86_32` for anything in an HVM container.
    pub guest_type: &'static str,
    /// `dom->kernel_seg`, `[start, end)`: virtual addresses for PV (`virt_kstart`,
    /// `virt_kend`), physical ones in an HVM container (the loadable segments' bounds).
    pub kernel_seg: (u64, u64),
    /// Where the boot vCPU starts: for PV the virtual entry (the `ENTRY` note, else the ELF
    /// entry); for PVH the `PHYS32_ENTRY` note; for firmware the ELF entry (libxenguest
    /// records the last as `phys_entry` when it loads the image).
    pub entry: u64,
    /// The Xen kernel's parameters; `None` for HVM firmware, which has no Xen notes.
    pub parms: Option<DomParms>,
}

/// A Xen kernel's parameters beyond the segment and entry (`struct elf_dom_parms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomParms {
    /// `virt_base`: the `VIRT_BASE` note, 0 when absent and always 0 in an HVM container.
    pub virt_base: u64,
    /// `elf_paddr_offset`: the `PADDR_OFFSET` note, 0 when absent and always 0 in an HVM
    /// container. A segment's virtual address is `p_paddr + virt_base - elf_paddr_offset`.
    pub elf_paddr_offset: u64,
    /// `pae`.
    pub pae: Pae,
    /// The notes themselves (strings in full: libelf keeps the first 15 bytes).
    pub notes: XenNotes,
}

/// Why `xc_dom_parse_image` would refuse the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// The notes are malformed, or require a feature libelf does not know.
    #[error(transparent)]
    Notes(#[from] NotesError),
    /// A PV kernel without Xen notes.
    #[error("Not a Xen-ELF image: No ELF notes or '__xen_guest' section found")]
    NotXenElf,
    /// `LOADER` is not `generic` and `GUEST_OS` not `linux`.
    #[error(
        "Will only load images built for the generic loader or Linux images (Not '{loader}' and '{guest_os}')"
    )]
    UnknownLoader {
        /// `LOADER` (empty when absent).
        loader: String,
        /// `GUEST_OS` (empty when absent).
        guest_os: String,
    },
    /// `XEN_VERSION` is not `xen-3.0`.
    #[error("Xen will only load images built for Xen v3.0 (Not '{0}')")]
    NotXen30(String),
    /// `PADDR_OFFSET` without `VIRT_BASE`.
    #[error("ELF_PADDR_OFFSET set, VIRT_BASE unset")]
    PaddrOffsetWithoutVirtBase,
    /// The entry lies outside the image, or the image below its base.
    #[error(
        "ELF start or entries are out of bounds (base {virt_base:#x}, image [{start:#x}, {end:#x}), entry {entry:#x})"
    )]
    OutOfBounds {
        /// `virt_base`.
        virt_base: u64,
        /// `virt_kstart`.
        start: u64,
        /// `virt_kend`.
        end: u64,
        /// The entry.
        entry: u64,
    },
    /// `INIT_P2M` points into the kernel image.
    #[error("P->M table base {0:#x} is out of bounds")]
    P2mInsideKernel(u64),
    /// The kernel requires `XENFEAT_dom0`.
    #[error("Kernel does not support unprivileged (DomU) operation")]
    Dom0Only,
    /// An image with Xen notes but no way into an HVM container.
    #[error(
        "image not capable of booting inside a HVM container: no XEN_ELFNOTE_PHYS32_ENTRY note"
    )]
    NotHvmCapable,
    /// HVM firmware that is not ELF32.
    #[error("HVM firmware (hvmloader) must be a 32-bit ELF image")]
    FirmwareNot32Bit,
}

/// `xc_dom_parse_image` for an ELF image (a bzImage's payload once unpacked) in `container`,
/// without the host-dependent checks (`xc_dom_compat_check`, requested features).
pub fn summarize(elf: &Elf<'_>, container: Container) -> Result<ImageSummary, SummaryError> {
    let notes = XenNotes::from_elf(elf)?;
    let (pstart, pend) = elf.paddr_bounds();
    let hvm = container == Container::Hvm;
    if hvm && notes.count == 0 {
        // xc_dom_parse_hvm_kernel: firmware at its physical addresses.
        if elf.class != Class::Elf32 {
            return Err(SummaryError::FirmwareNot32Bit);
        }
        return Ok(ImageSummary {
            guest_type: "hvm-3.0-x86_32",
            kernel_seg: (pstart, pend),
            entry: elf.entry,
            parms: None,
        });
    }

    // elf_xen_note_check: a PVH kernel needs PHYS32_ENTRY alone, a PV one the usual notes.
    if hvm && notes.phys32_entry.is_none() {
        return Err(SummaryError::NotHvmCapable);
    }
    if !hvm {
        if notes.count == 0 {
            return Err(SummaryError::NotXenElf);
        }
        let starts = |v: &Option<String>, p: &str| v.as_deref().is_some_and(|s| s.starts_with(p));
        if !starts(&notes.loader, "generic") && !starts(&notes.guest_os, "linux") {
            return Err(SummaryError::UnknownLoader {
                loader: notes.loader.clone().unwrap_or_default(),
                guest_os: notes.guest_os.clone().unwrap_or_default(),
            });
        }
        if !starts(&notes.xen_version, "xen-3.0") {
            return Err(SummaryError::NotXen30(
                notes.xen_version.clone().unwrap_or_default(),
            ));
        }
    }

    // elf_xen_addr_calc_check. Paging is off in an HVM container: no base, no offset.
    if notes.paddr_offset.is_some() && notes.virt_base.is_none() {
        return Err(SummaryError::PaddrOffsetWithoutVirtBase);
    }
    let (virt_base, elf_paddr_offset) = if hvm {
        (0, 0)
    } else {
        (
            notes.virt_base.unwrap_or(0),
            notes.paddr_offset.unwrap_or(0),
        )
    };
    let virt_offset = virt_base.wrapping_sub(elf_paddr_offset);
    let start = pstart.wrapping_add(virt_offset);
    let end = pend.wrapping_add(virt_offset);
    let entry = match notes.phys32_entry {
        Some(phys) if hvm => u64::from(phys),
        _ => notes.entry.unwrap_or(elf.entry),
    };
    if start > end || entry < start || entry > end || virt_base > start {
        return Err(SummaryError::OutOfBounds {
            virt_base,
            start,
            end,
            entry,
        });
    }
    if let Some(p2m) = notes.init_p2m.filter(|p| (start..end).contains(p)) {
        return Err(SummaryError::P2mInsideKernel(p2m));
    }

    // xc_dom_parse_elf_kernel, then xc_dom_guest_type.
    if notes.requires(XENFEAT_DOM0) {
        return Err(SummaryError::Dom0Only);
    }
    let pae = Pae::of(&notes);
    let guest_type = match (hvm, elf.machine, pae) {
        (true, _, _) => "hvm-3.0-x86_32",
        (false, EM_X86_64, _) => "xen-3.0-x86_64",
        // A bimodal kernel runs as PAE where the host offers xen-3.0-x86_32p (a 64-bit Xen
        // with 32-bit PV), as assumed here; libxenguest falls back to xen-3.0-x86_32 without.
        (false, EM_386, Pae::ExtendedCr3 | Pae::Bimodal) => "xen-3.0-x86_32p",
        // Elf::parse accepts no other machine.
        (false, _, _) => "xen-3.0-x86_32",
    };
    Ok(ImageSummary {
        guest_type,
        kernel_seg: (start, end),
        entry,
        parms: Some(DomParms {
            virt_base,
            elf_paddr_offset,
            pae,
            notes,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::xen_notes::tests::{elf32_with_notes, note};
    use crate::image::xen_notes::{self as n};

    /// An ELF32 kernel image at `paddr` (entry = `paddr`, 0x3000 bytes) with these notes.
    fn kernel(paddr: u32, notes: &[(u32, &[u8])]) -> Vec<u8> {
        let bytes: Vec<u8> = notes
            .iter()
            .flat_map(|(k, d)| note(b"Xen", *k, d))
            .collect();
        elf32_with_notes(paddr, &[0x90; 0x1000], 0x2000, &bytes)
    }

    fn sum(img: &[u8], container: Container) -> Result<ImageSummary, SummaryError> {
        summarize(&Elf::parse(img).unwrap(), container)
    }

    /// A 32-bit Linux PV kernel's notes: linked at 0xc0100000 (p_paddr 0x100000 + VIRT_BASE).
    const LINUX: [(u32, &[u8]); 4] = [
        (n::GUEST_OS, b"linux\0"),
        (n::XEN_VERSION, b"xen-3.0\0"),
        (n::VIRT_BASE, &[0, 0, 0, 0xc0]),
        (n::ENTRY, &[0x10, 0x10, 0x10, 0xc0]),
    ];

    #[test]
    fn a_pv_kernel_s_addresses_follow_virt_base_and_paddr_offset() {
        let s = sum(&kernel(0x10_0000, &LINUX), Container::Pv).unwrap();
        assert_eq!(s.guest_type, "xen-3.0-x86_32");
        assert_eq!(
            (s.kernel_seg, s.entry),
            ((0xc010_0000, 0xc010_3000), 0xc010_1010)
        );
        let p = s.parms.unwrap();
        assert_eq!(
            (p.virt_base, p.elf_paddr_offset, p.pae),
            (0xc000_0000, 0, Pae::No)
        );

        // p_paddr already virtual (PADDR_OFFSET = VIRT_BASE); no ENTRY note: e_entry.
        let notes = [
            LINUX[0],
            LINUX[1],
            LINUX[2],
            (n::PADDR_OFFSET, &[0, 0, 0, 0xc0][..]),
        ];
        let s = sum(&kernel(0xc000_0000, &notes), Container::Pv).unwrap();
        assert_eq!(
            (s.kernel_seg, s.entry),
            ((0xc000_0000, 0xc000_3000), 0xc000_0000)
        );
        // No VIRT_BASE either: 0, and p_paddr is the virtual address.
        let s = sum(&kernel(0x10_0000, &LINUX[..2]), Container::Pv).unwrap();
        assert_eq!((s.kernel_seg, s.entry), ((0x10_0000, 0x10_3000), 0x10_0000));
    }

    #[test]
    fn a_pv_guest_type_follows_the_pae_note_as_libelf_reads_it() {
        for (pae, guest_type) in [
            (&b"yes\0"[..], "xen-3.0-x86_32p"),
            (b"bimodal\0", "xen-3.0-x86_32p"),
            // libelf's note parser knows only "yes" and "bimodal".
            (b"yes[extended-cr3]\0", "xen-3.0-x86_32"),
            (b"no\0", "xen-3.0-x86_32"),
        ] {
            let mut notes = LINUX.to_vec();
            notes.push((n::PAE_MODE, pae));
            let s = sum(&kernel(0x10_0000, &notes), Container::Pv).unwrap();
            assert_eq!(
                s.guest_type,
                guest_type,
                "{:?}",
                String::from_utf8_lossy(pae)
            );
        }
    }

    #[test]
    fn a_pvh_kernel_runs_at_its_physical_addresses_from_phys32_entry() {
        // ENTRY and VIRT_BASE are for PV: ignored here.
        let mut notes = LINUX.to_vec();
        notes.push((n::PHYS32_ENTRY, &[0x40, 0, 0x10, 0]));
        let s = sum(&kernel(0x10_0000, &notes), Container::Hvm).unwrap();
        assert_eq!(s.guest_type, "hvm-3.0-x86_32");
        assert_eq!((s.kernel_seg, s.entry), ((0x10_0000, 0x10_3000), 0x10_0040));
        let p = s.parms.unwrap();
        assert_eq!(
            (p.virt_base, p.elf_paddr_offset),
            (0, 0),
            "forced to 0 for PVH"
        );
        // PHYS32_ENTRY alone is enough in an HVM container, and is ignored for PV.
        let only = kernel(0x10_0000, &[(n::PHYS32_ENTRY, &0x10_0000u32.to_le_bytes())]);
        assert_eq!(sum(&only, Container::Hvm).unwrap().entry, 0x10_0000);
        assert!(matches!(
            sum(&only, Container::Pv),
            Err(SummaryError::UnknownLoader { .. })
        ));
    }

    #[test]
    fn firmware_is_an_elf32_image_without_notes() {
        let img = kernel(0x10_0000, &[]);
        let s = sum(&img, Container::Hvm).unwrap();
        assert_eq!(
            (s.guest_type, s.kernel_seg, s.entry, s.parms),
            ("hvm-3.0-x86_32", (0x10_0000, 0x10_3000), 0x10_0000, None)
        );
        assert_eq!(sum(&img, Container::Pv), Err(SummaryError::NotXenElf));
    }

    #[test]
    fn what_libxenguest_refuses_is_refused() {
        let refused = |notes: &[(u32, &[u8])], container| sum(&kernel(0x10_0000, notes), container);
        let with = |extra: (u32, &'static [u8])| {
            let mut v = LINUX.to_vec();
            v.push(extra);
            v
        };
        assert!(matches!(
            refused(
                &[(n::GUEST_OS, b"netbsd\0"), (n::XEN_VERSION, b"xen-3.0\0")],
                Container::Pv
            ),
            Err(SummaryError::UnknownLoader { .. })
        ));
        assert_eq!(
            refused(
                &[(n::LOADER, b"generic\0"), (n::XEN_VERSION, b"xen-2\0")],
                Container::Pv
            ),
            Err(SummaryError::NotXen30("xen-2".into()))
        );
        assert_eq!(
            refused(&LINUX[..2], Container::Hvm),
            Err(SummaryError::NotHvmCapable)
        );
        let offset_only = [LINUX[0], LINUX[1], (n::PADDR_OFFSET, &[0u8; 4][..])];
        assert_eq!(
            refused(&offset_only, Container::Pv),
            Err(SummaryError::PaddrOffsetWithoutVirtBase)
        );
        let outside = [
            LINUX[0],
            LINUX[1],
            LINUX[2],
            (n::ENTRY, &[0, 0x40, 0x10, 0xc0][..]),
        ];
        assert!(matches!(
            refused(&outside, Container::Pv),
            Err(SummaryError::OutOfBounds {
                entry: 0xc010_4000,
                ..
            })
        ));
        let phys_outside = [(n::PHYS32_ENTRY, &0x20_0000u32.to_le_bytes()[..])];
        assert!(matches!(
            refused(&phys_outside, Container::Hvm),
            Err(SummaryError::OutOfBounds { .. })
        ));
        let p2m_inside = with((n::INIT_P2M, &[0, 0x20, 0x10, 0xc0]));
        assert_eq!(
            refused(&p2m_inside, Container::Pv),
            Err(SummaryError::P2mInsideKernel(0xc010_2000))
        );
        let dom0 = with((n::FEATURES, b"!dom0\0"));
        assert_eq!(refused(&dom0, Container::Pv), Err(SummaryError::Dom0Only));
    }
}
