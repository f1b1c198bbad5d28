//! Xen ELF notes (`xen/include/public/elfnote.h`): what a PV or PVH kernel tells the domain
//! builder about itself, read the way libelf's `elf_xen_parse_note` reads them. Pure and
//! untrusted: notes come from guest kernels, so every value is taken from bounds-checked
//! descriptors and nothing here panics.
//!
//! Numeric notes hold 1, 2, 4 or 8 little-endian bytes (any other size reads as 0, as in
//! libelf); string notes end at their first NUL. A later note of the same type wins.

use super::elf::{Elf, ElfError, Note};
use std::fmt;

/// `XEN_ELFNOTE_ENTRY`: PV virtual entry point.
pub const ENTRY: u32 = 1;
/// `XEN_ELFNOTE_HYPERCALL_PAGE`: virtual address of the hypercall page.
pub const HYPERCALL_PAGE: u32 = 2;
/// `XEN_ELFNOTE_VIRT_BASE`: virtual address the kernel is mapped at.
pub const VIRT_BASE: u32 = 3;
/// `XEN_ELFNOTE_PADDR_OFFSET`: ELF `p_paddr` minus this is the offset from `VIRT_BASE`.
pub const PADDR_OFFSET: u32 = 4;
/// `XEN_ELFNOTE_XEN_VERSION`: `xen-3.0`.
pub const XEN_VERSION: u32 = 5;
/// `XEN_ELFNOTE_GUEST_OS`: e.g. `linux`.
pub const GUEST_OS: u32 = 6;
/// `XEN_ELFNOTE_GUEST_VERSION`.
pub const GUEST_VERSION: u32 = 7;
/// `XEN_ELFNOTE_LOADER`: `generic`.
pub const LOADER: u32 = 8;
/// `XEN_ELFNOTE_PAE_MODE`: `yes`, `no`, `bimodal`, `yes[extended-cr3]`.
pub const PAE_MODE: u32 = 9;
/// `XEN_ELFNOTE_FEATURES`: `|`-separated feature names, `!` marks a required one.
pub const FEATURES: u32 = 10;
/// `XEN_ELFNOTE_BSD_SYMTAB`: `yes` to load the symbol table.
pub const BSD_SYMTAB: u32 = 11;
/// `XEN_ELFNOTE_HV_START_LOW`: lowest address the hypervisor may use (32-bit PV).
pub const HV_START_LOW: u32 = 12;
/// `XEN_ELFNOTE_SUSPEND_CANCEL`.
pub const SUSPEND_CANCEL: u32 = 14;
/// `XEN_ELFNOTE_INIT_P2M`: virtual address for the initial p2m list.
pub const INIT_P2M: u32 = 15;
/// `XEN_ELFNOTE_MOD_START_PFN`: the kernel takes an unmapped initrd by frame number.
pub const MOD_START_PFN: u32 = 16;
/// `XEN_ELFNOTE_SUPPORTED_FEATURES`: bitmap of supported features.
pub const SUPPORTED_FEATURES: u32 = 17;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: 32-bit physical entry point; makes an image PVH-capable.
pub const PHYS32_ENTRY: u32 = 18;

/// Feature bits (`XENFEAT_*`) that the `FEATURES` note may name, as libelf knows them.
pub const FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", 0),
    ("writable_descriptor_tables", 1),
    ("auto_translated_physmap", 2),
    ("supervisor_mode_kernel", 3),
    ("pae_pgdir_above_4gb", 4),
    ("hvm_callback_vector", 8),
    ("dom0", 11),
];
/// `XENFEAT_dom0`: a kernel requiring it cannot run as a domU.
pub const XENFEAT_DOM0: u32 = 11;
/// Longest feature name libelf compares (its buffer is 64 bytes with the NUL).
const FEATURE_TOKEN_MAX: usize = 63;

/// Why the notes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotesError {
    /// The ELF note list itself is malformed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// `FEATURES` requires a feature libelf does not know.
    #[error("FEATURES note requires unknown feature '{0}'")]
    UnknownRequiredFeature(String),
    /// `PHYS32_ENTRY` does not fit 32 bits.
    #[error("PHYS32_ENTRY note {0:#x} is not a 32-bit address")]
    Phys32EntryTooHigh(u64),
}

/// The Xen notes of an image. `None` = the note is absent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct XenNotes {
    /// Number of notes named "Xen" found.
    pub count: usize,
    /// `ENTRY`.
    pub entry: Option<u64>,
    /// `HYPERCALL_PAGE`.
    pub hypercall_page: Option<u64>,
    /// `VIRT_BASE`.
    pub virt_base: Option<u64>,
    /// `PADDR_OFFSET`.
    pub paddr_offset: Option<u64>,
    /// `XEN_VERSION`.
    pub xen_version: Option<String>,
    /// `GUEST_OS`.
    pub guest_os: Option<String>,
    /// `GUEST_VERSION`.
    pub guest_version: Option<String>,
    /// `LOADER`.
    pub loader: Option<String>,
    /// `PAE_MODE`.
    pub pae_mode: Option<String>,
    /// `FEATURES`, the raw string.
    pub features: Option<String>,
    /// `BSD_SYMTAB` = `yes`.
    pub bsd_symtab: bool,
    /// `HV_START_LOW`.
    pub hv_start_low: Option<u64>,
    /// `SUSPEND_CANCEL`.
    pub suspend_cancel: Option<u64>,
    /// `INIT_P2M`.
    pub init_p2m: Option<u64>,
    /// `MOD_START_PFN` is present and non-zero.
    pub mod_start_pfn: bool,
    /// `PHYS32_ENTRY`.
    pub phys32_entry: Option<u32>,
    /// Features the kernel supports (`FEATURES` and `SUPPORTED_FEATURES`), bit = `XENFEAT_*`.
    pub supported_features: u32,
    /// Features the kernel requires (`!name` in `FEATURES`).
    pub required_features: u32,
}

impl fmt::Debug for XenNotes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |v: Option<u64>| v.map(|v| format!("{v:#x}"));
        f.debug_struct("XenNotes")
            .field("count", &self.count)
            .field("entry", &hex(self.entry))
            .field("hypercall_page", &hex(self.hypercall_page))
            .field("virt_base", &hex(self.virt_base))
            .field("paddr_offset", &hex(self.paddr_offset))
            .field("xen_version", &self.xen_version)
            .field("guest_os", &self.guest_os)
            .field("loader", &self.loader)
            .field("pae_mode", &self.pae_mode)
            .field("features", &self.features)
            .field("init_p2m", &hex(self.init_p2m))
            .field("mod_start_pfn", &self.mod_start_pfn)
            .field(
                "phys32_entry",
                &self.phys32_entry.map(u64::from).map(Some).map(hex),
            )
            .field(
                "supported_features",
                &format_args!("{:#x}", self.supported_features),
            )
            .field(
                "required_features",
                &format_args!("{:#x}", self.required_features),
            )
            .finish()
    }
}

/// A numeric descriptor as libelf reads it: 1, 2, 4 or 8 little-endian bytes, else 0.
fn numeric(desc: &[u8]) -> u64 {
    match desc.len() {
        1 | 2 | 4 | 8 => desc
            .iter()
            .rev()
            .fold(0u64, |v, b| (v << 8) | u64::from(*b)),
        _ => 0,
    }
}

/// A string descriptor: up to its first NUL (or its end), invalid UTF-8 replaced.
fn string(desc: &[u8]) -> String {
    let end = desc.iter().position(|b| *b == 0).unwrap_or(desc.len());
    String::from_utf8_lossy(&desc[..end]).into_owned()
}

/// Parse a `FEATURES` string into (supported, required) bitmaps, as `elf_xen_parse_features`:
/// `|`-separated names (each cut at 63 bytes), `!name` = required. An unknown supported name
/// is ignored; an unknown required one is an error.
pub fn parse_features(features: &str) -> Result<(u32, u32), NotesError> {
    let (mut supported, mut required) = (0u32, 0u32);
    for token in features.split('|') {
        let token = &token.as_bytes()[..token.len().min(FEATURE_TOKEN_MAX)];
        let (is_required, name) = match token.strip_prefix(b"!") {
            Some(name) => (true, name),
            None => (false, token),
        };
        match FEATURE_NAMES.iter().find(|(n, _)| n.as_bytes() == name) {
            Some(&(_, bit)) => {
                supported |= 1 << bit;
                if is_required {
                    required |= 1 << bit;
                }
            }
            None if is_required => {
                return Err(NotesError::UnknownRequiredFeature(
                    String::from_utf8_lossy(name).into_owned(),
                ))
            }
            None => {}
        }
    }
    Ok((supported, required))
}

impl XenNotes {
    /// The Xen notes among `notes` (those named "Xen"); other owners are skipped.
    pub fn parse(notes: &[Note<'_>]) -> Result<Self, NotesError> {
        let mut x = XenNotes::default();
        for note in notes.iter().filter(|n| n.name == b"Xen") {
            x.count += 1;
            let num = numeric(note.desc);
            let text = || Some(string(note.desc));
            match note.kind {
                ENTRY => x.entry = Some(num),
                HYPERCALL_PAGE => x.hypercall_page = Some(num),
                VIRT_BASE => x.virt_base = Some(num),
                PADDR_OFFSET => x.paddr_offset = Some(num),
                XEN_VERSION => x.xen_version = text(),
                GUEST_OS => x.guest_os = text(),
                GUEST_VERSION => x.guest_version = text(),
                LOADER => x.loader = text(),
                PAE_MODE => x.pae_mode = text(),
                FEATURES => {
                    let s = string(note.desc);
                    let (supported, required) = parse_features(&s)?;
                    x.supported_features |= supported;
                    x.required_features |= required;
                    x.features = Some(s);
                }
                BSD_SYMTAB => x.bsd_symtab = string(note.desc) == "yes",
                HV_START_LOW => x.hv_start_low = Some(num),
                SUSPEND_CANCEL => x.suspend_cancel = Some(num),
                INIT_P2M => x.init_p2m = Some(num),
                MOD_START_PFN => x.mod_start_pfn = num != 0,
                // An array of 32-bit words; Xen has one submap.
                SUPPORTED_FEATURES if note.desc.len() >= 4 && note.desc.len() % 4 == 0 => {
                    let d = note.desc;
                    x.supported_features |= u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                }
                PHYS32_ENTRY => {
                    let entry =
                        u32::try_from(num).map_err(|_| NotesError::Phys32EntryTooHigh(num))?;
                    x.phys32_entry = Some(entry);
                }
                _ => {}
            }
        }
        Ok(x)
    }

    /// The Xen notes of an ELF image.
    pub fn from_elf(elf: &Elf<'_>) -> Result<Self, NotesError> {
        Self::parse(&elf.notes()?)
    }

    /// Whether the kernel requires feature `bit` (`XENFEAT_*`).
    pub fn requires(&self, bit: u32) -> bool {
        bit < 32 && self.required_features & (1 << bit) != 0
    }

    /// Whether the kernel supports feature `bit`.
    pub fn supports(&self, bit: u32) -> bool {
        bit < 32 && self.supported_features & (1 << bit) != 0
    }
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the fixture builders pack small test lengths into 32-bit ELF fields"
)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One note as bytes (4-byte aligned name and descriptor).
    pub(crate) fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(name);
        v.push(0);
        v.resize(v.len().next_multiple_of(4), 0);
        v.extend_from_slice(desc);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    /// A minimal ELF32 image: one PT_LOAD of `code` at `paddr` (plus `bss` zero bytes) and
    /// one PT_NOTE holding `notes` as they are (possibly malformed).
    pub(crate) fn elf32_with_notes(paddr: u32, code: &[u8], bss: u32, notes: &[u8]) -> Vec<u8> {
        let data_at = 52 + 2 * 32;
        let note_at = data_at + code.len() as u32;
        let mut v = vec![0u8; 52];
        v[..4].copy_from_slice(b"\x7fELF");
        v[4..7].copy_from_slice(&[1, 1, 1]);
        v[16..18].copy_from_slice(&2u16.to_le_bytes());
        v[18..20].copy_from_slice(&3u16.to_le_bytes());
        v[24..28].copy_from_slice(&paddr.to_le_bytes());
        v[28..32].copy_from_slice(&52u32.to_le_bytes());
        v[42..44].copy_from_slice(&32u16.to_le_bytes());
        v[44..46].copy_from_slice(&2u16.to_le_bytes());
        let code_len = code.len() as u32;
        for ph in [
            [1, data_at, paddr, paddr, code_len, code_len + bss, 7, 4],
            [4, note_at, 0, 0, notes.len() as u32, 0, 4, 4],
        ] {
            ph.iter()
                .for_each(|x| v.extend_from_slice(&x.to_le_bytes()));
        }
        v.extend_from_slice(code);
        v.extend_from_slice(notes);
        v
    }

    fn n<'a>(kind: u32, desc: &'a [u8]) -> Note<'a> {
        Note {
            name: b"Xen",
            kind,
            desc,
        }
    }

    #[test]
    fn a_linux_pv_kernel_s_notes() {
        let owned: Vec<(u32, Vec<u8>)> = vec![
            (GUEST_OS, b"linux\0".to_vec()),
            (GUEST_VERSION, b"2.6\0".to_vec()),
            (XEN_VERSION, b"xen-3.0\0".to_vec()),
            (VIRT_BASE, 0xffff_ffff_8000_0000u64.to_le_bytes().to_vec()),
            (ENTRY, 0xffff_ffff_8100_0180u64.to_le_bytes().to_vec()),
            (
                HYPERCALL_PAGE,
                0xffff_ffff_8100_1000u64.to_le_bytes().to_vec(),
            ),
            (INIT_P2M, 0x80_0000_0000u64.to_le_bytes().to_vec()),
            (
                FEATURES,
                b"!writable_page_tables|pae_pgdir_above_4gb|unknown_one\0".to_vec(),
            ),
            (
                SUPPORTED_FEATURES,
                (1u32 << 11 | 1 << 8).to_le_bytes().to_vec(),
            ),
            (PAE_MODE, b"yes\0".to_vec()),
            (LOADER, b"generic\0".to_vec()),
            (PADDR_OFFSET, 0u64.to_le_bytes().to_vec()),
            (MOD_START_PFN, 1u32.to_le_bytes().to_vec()),
            (PHYS32_ENTRY, 0x100_0000u32.to_le_bytes().to_vec()),
        ];
        let mut notes: Vec<Note<'_>> = owned.iter().map(|(k, d)| n(*k, d)).collect();
        notes.push(Note {
            name: b"GNU",
            kind: 3,
            desc: b"build-id",
        });
        let x = XenNotes::parse(&notes).unwrap();
        assert_eq!(x.count, 14);
        assert_eq!(x.guest_os.as_deref(), Some("linux"));
        assert_eq!(x.xen_version.as_deref(), Some("xen-3.0"));
        assert_eq!(x.virt_base, Some(0xffff_ffff_8000_0000));
        assert_eq!(x.entry, Some(0xffff_ffff_8100_0180));
        assert_eq!(x.hypercall_page, Some(0xffff_ffff_8100_1000));
        assert_eq!(x.init_p2m, Some(0x80_0000_0000));
        assert_eq!(x.paddr_offset, Some(0));
        assert_eq!(x.pae_mode.as_deref(), Some("yes"));
        assert_eq!(x.loader.as_deref(), Some("generic"));
        assert!(x.mod_start_pfn);
        assert_eq!(x.phys32_entry, Some(0x100_0000));
        assert!(x.requires(0) && x.supports(0));
        assert!(x.supports(4) && !x.requires(4));
        assert!(x.supports(XENFEAT_DOM0) && !x.requires(XENFEAT_DOM0));
        assert!(x.supports(8));
        assert!(!x.requires(99) && !x.supports(99));
    }

    #[test]
    fn numeric_sizes_and_strings_as_libelf_reads_them() {
        let x = XenNotes::parse(&[n(ENTRY, &[0x34, 0x12]), n(VIRT_BASE, &[1, 2, 3])]).unwrap();
        assert_eq!(x.entry, Some(0x1234));
        assert_eq!(x.virt_base, Some(0), "3-byte descriptors read as 0");
        let x = XenNotes::parse(&[n(GUEST_OS, b"linux"), n(LOADER, b"")]).unwrap();
        assert_eq!(
            x.guest_os.as_deref(),
            Some("linux"),
            "no NUL: the whole desc"
        );
        assert_eq!(x.loader.as_deref(), Some(""));
        let x = XenNotes::parse(&[n(ENTRY, &[1]), n(ENTRY, &[2])]).unwrap();
        assert_eq!(x.entry, Some(2), "the last note wins");
    }

    #[test]
    fn required_unknown_feature_and_wide_phys32_entry_are_refused() {
        assert_eq!(
            XenNotes::parse(&[n(FEATURES, b"!no_such_thing\0")]),
            Err(NotesError::UnknownRequiredFeature("no_such_thing".into()))
        );
        assert_eq!(
            XenNotes::parse(&[n(PHYS32_ENTRY, &0x1_0000_0000u64.to_le_bytes())]),
            Err(NotesError::Phys32EntryTooHigh(0x1_0000_0000))
        );
        let (s, r) = parse_features("!dom0").unwrap();
        assert_eq!((s, r), (1 << 11, 1 << 11));
        assert_eq!(parse_features("").unwrap(), (0, 0));
        assert_eq!(parse_features("||").unwrap(), (0, 0));
    }

    #[test]
    fn no_xen_notes_is_an_empty_set() {
        let x = XenNotes::parse(&[Note {
            name: b"GNU",
            kind: PHYS32_ENTRY,
            desc: &[1, 0, 0, 0],
        }])
        .unwrap();
        assert_eq!(x, XenNotes::default());
    }

    #[test]
    fn notes_read_from_an_elf_image() {
        let mut notes = note(b"Xen", PHYS32_ENTRY, &0x100_0040u32.to_le_bytes());
        notes.extend(note(b"Xen", GUEST_OS, b"linux\0"));
        let img = elf32_with_notes(0x100_0000, b"code", 64, &notes);
        let elf = Elf::parse(&img).unwrap();
        let x = XenNotes::from_elf(&elf).unwrap();
        assert_eq!(x.phys32_entry, Some(0x100_0040));
        assert_eq!(x.guest_os.as_deref(), Some("linux"));
    }

    proptest! {
        #[test]
        fn arbitrary_notes_never_panic(
            kinds in proptest::collection::vec(0u32..20, 0..8),
            descs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 8),
        ) {
            let notes: Vec<Note<'_>> = kinds
                .iter()
                .zip(&descs)
                .map(|(k, d)| Note { name: b"Xen", kind: *k, desc: d })
                .collect();
            let _ = XenNotes::parse(&notes);
        }

        #[test]
        fn arbitrary_note_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let img = elf32_with_notes(0x100_0000, b"code", 0, &bytes);
            if let Ok(elf) = Elf::parse(&img) {
                let _ = XenNotes::from_elf(&elf);
            }
        }
    }
}
