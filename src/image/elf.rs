//! A minimal, bounds-checked ELF reader: the header, `PT_LOAD` segments and notes. It
//! borrows the image and never indexes past it.

use crate::types::usize_of;
use std::fmt;

/// ELF class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ELFCLASS32.
    Elf32,
    /// ELFCLASS64.
    Elf64,
}

/// `EM_386`.
pub const EM_386: u16 = 3;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Most program headers accepted (real kernels have a handful).
pub const MAX_PROGRAM_HEADERS: usize = 64;

/// Why an image is not a usable ELF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not ELF at all.
    #[error("not an ELF image (bad magic)")]
    BadMagic,
    /// Structure points outside the file.
    #[error(
        "truncated ELF image: {what} at offset {offset:#x} needs {len} bytes, file has {file_len}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: u64,
        /// How much.
        len: u64,
        /// File size.
        file_len: u64,
    },
    /// A field holds a value we do not support.
    #[error("unsupported ELF image: {0}")]
    Unsupported(String),
    /// A segment is inconsistent.
    #[error("bad ELF segment {index}: {reason}")]
    BadSegment {
        /// Program header index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// File offset of the contents.
    pub offset: u64,
    /// Bytes present in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero).
    pub memsz: u64,
}

impl Segment {
    /// Where the contents lie in the image file (in bounds once `parse` accepted it).
    pub fn file_range(&self) -> std::ops::Range<usize> {
        usize_of(self.offset)..usize_of(self.offset + self.filesz)
    }
}

/// An ELF note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    /// Owner name, without the NUL.
    pub name: &'a [u8],
    /// Note type.
    pub kind: u32,
    /// Descriptor bytes.
    pub desc: &'a [u8],
}

/// A parsed ELF image.
#[derive(Clone)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// 32 or 64 bit.
    pub class: Class,
    /// `e_machine`.
    pub machine: u16,
    /// `e_entry`.
    pub entry: u64,
    /// `PT_LOAD` segments with non-zero memory size, in file order.
    pub segments: Vec<Segment>,
    notes: Vec<(u64, u64)>,
}

impl fmt::Debug for Elf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elf")
            .field("class", &self.class)
            .field("machine", &self.machine)
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("segments", &self.segments)
            .finish()
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&self, what: &'static str, offset: u64, len: u64) -> Result<&'a [u8], ElfError> {
        let truncated = || ElfError::Truncated {
            what,
            offset,
            len,
            file_len: self.data.len() as u64,
        };
        let end = offset.checked_add(len).ok_or_else(truncated)?;
        if end > self.data.len() as u64 {
            return Err(truncated());
        }
        Ok(&self.data[usize_of(offset)..usize_of(end)])
    }

    fn u16(&self, what: &'static str, offset: u64) -> Result<u16, ElfError> {
        let b = self.bytes(what, offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, what: &'static str, offset: u64) -> Result<u32, ElfError> {
        let b = self.bytes(what, offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, what: &'static str, offset: u64) -> Result<u64, ElfError> {
        let b = self.bytes(what, offset, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A word that is 4 bytes in ELF32 and 8 in ELF64.
    fn word(&self, class: Class, what: &'static str, offset: u64) -> Result<u64, ElfError> {
        match class {
            Class::Elf32 => self.u32(what, offset).map(u64::from),
            Class::Elf64 => self.u64(what, offset),
        }
    }
}

impl<'a> Elf<'a> {
    /// Parse `data`. Only little-endian x86 images are accepted.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        let r = Reader { data };
        if r.bytes("ELF magic", 0, 4).map_err(|_| ElfError::BadMagic)? != ELF_MAGIC {
            return Err(ElfError::BadMagic);
        }
        let ident = r.bytes("ELF ident", 0, 16)?;
        let class = match ident[4] {
            1 => Class::Elf32,
            2 => Class::Elf64,
            c => return Err(ElfError::Unsupported(format!("class {c}"))),
        };
        if ident[5] != 1 {
            return Err(ElfError::Unsupported("big-endian image".into()));
        }
        let machine = r.u16("e_machine", 18)?;
        if machine != EM_386 && machine != EM_X86_64 {
            return Err(ElfError::Unsupported(format!(
                "machine {machine} is not x86"
            )));
        }
        // Header field offsets differ by class: (entry, phoff, phentsize, phnum).
        let (entry_at, phoff_at, phentsize_at, phnum_at) = match class {
            Class::Elf32 => (24, 28, 42, 44),
            Class::Elf64 => (24, 32, 54, 56),
        };
        let entry = r.word(class, "e_entry", entry_at)?;
        let phoff = r.word(class, "e_phoff", phoff_at)?;
        let phentsize = u64::from(r.u16("e_phentsize", phentsize_at)?);
        let phnum = usize::from(r.u16("e_phnum", phnum_at)?);
        let min_phentsize = match class {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        };
        if phnum == 0 || phnum > MAX_PROGRAM_HEADERS {
            return Err(ElfError::Unsupported(format!("{phnum} program headers")));
        }
        if phentsize < min_phentsize {
            return Err(ElfError::Unsupported(format!(
                "program header size {phentsize}"
            )));
        }

        let mut segments = Vec::new();
        let mut notes = Vec::new();
        for index in 0..phnum {
            let ph = phoff
                .checked_add(index as u64 * phentsize)
                .ok_or(ElfError::Truncated {
                    what: "program header",
                    offset: phoff,
                    len: phentsize,
                    file_len: data.len() as u64,
                })?;
            r.bytes("program header", ph, phentsize)?;
            let p_type = r.u32("p_type", ph)?;
            let (offset, vaddr, paddr, filesz, memsz) = match class {
                Class::Elf32 => (
                    r.word(class, "p_offset", ph + 4)?,
                    r.word(class, "p_vaddr", ph + 8)?,
                    r.word(class, "p_paddr", ph + 12)?,
                    r.word(class, "p_filesz", ph + 16)?,
                    r.word(class, "p_memsz", ph + 20)?,
                ),
                Class::Elf64 => (
                    r.u64("p_offset", ph + 8)?,
                    r.u64("p_vaddr", ph + 16)?,
                    r.u64("p_paddr", ph + 24)?,
                    r.u64("p_filesz", ph + 32)?,
                    r.u64("p_memsz", ph + 40)?,
                ),
            };
            match p_type {
                PT_LOAD if memsz > 0 => {
                    if filesz > memsz {
                        let reason =
                            format!("file size {filesz:#x} exceeds memory size {memsz:#x}");
                        return Err(ElfError::BadSegment { index, reason });
                    }
                    r.bytes("segment contents", offset, filesz)?;
                    if paddr.checked_add(memsz).is_none() || vaddr.checked_add(memsz).is_none() {
                        return Err(ElfError::BadSegment {
                            index,
                            reason: "address range overflows".into(),
                        });
                    }
                    segments.push(Segment {
                        paddr,
                        vaddr,
                        offset,
                        filesz,
                        memsz,
                    });
                }
                PT_NOTE => {
                    r.bytes("note segment", offset, filesz)?;
                    notes.push((offset, filesz));
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfError::Unsupported("no loadable segment".into()));
        }
        Ok(Elf {
            data,
            class,
            machine,
            entry,
            segments,
            notes,
        })
    }

    /// The bytes of a segment present in the file.
    pub fn segment_bytes(&self, seg: &Segment) -> &'a [u8] {
        // In bounds: checked in `parse`.
        &self.data[seg.file_range()]
    }

    /// Lowest and highest (exclusive) physical address of the loadable segments.
    pub fn paddr_bounds(&self) -> (u64, u64) {
        let start = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let end = self
            .segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0);
        (start, end)
    }

    /// Every note in the `PT_NOTE` segments. A malformed note list is an error.
    pub fn notes(&self) -> Result<Vec<Note<'a>>, ElfError> {
        let r = Reader { data: self.data };
        let mut out = Vec::new();
        for &(start, len) in &self.notes {
            let end = start + len;
            let mut at = start;
            while at + 12 <= end {
                let namesz = u64::from(r.u32("note namesz", at)?);
                let descsz = u64::from(r.u32("note descsz", at + 4)?);
                let kind = r.u32("note type", at + 8)?;
                let name_at = at + 12;
                let desc_at = name_at + namesz.next_multiple_of(4);
                let next = desc_at + descsz.next_multiple_of(4);
                if next > end {
                    return Err(ElfError::Truncated {
                        what: "note",
                        offset: at,
                        len: next - at,
                        file_len: end,
                    });
                }
                let name = r.bytes("note name", name_at, namesz)?;
                let name = name.strip_suffix(&[0]).unwrap_or(name);
                let desc = r.bytes("note desc", desc_at, descsz)?;
                out.push(Note { name, kind, desc });
                at = next;
            }
        }
        Ok(out)
    }

    /// Whether the image carries Xen notes (name "Xen").
    pub fn has_xen_notes(&self) -> Result<bool, ElfError> {
        Ok(self.notes()?.iter().any(|n| n.name == b"Xen"))
    }
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the fixture builders pack small test lengths into 32-bit ELF fields"
)]
pub(crate) mod tests {
    use super::*;

    /// A small ELF32 image: one PT_LOAD of `code` at `paddr` with `bss` zero bytes after it,
    /// and optionally a Xen note.
    pub(crate) fn elf32(paddr: u32, entry: u32, code: &[u8], bss: u32, xen_note: bool) -> Vec<u8> {
        let phnum: u16 = if xen_note { 2 } else { 1 };
        let ph_at = 52u32;
        let note = if xen_note {
            let mut n = Vec::new();
            n.extend_from_slice(&4u32.to_le_bytes());
            n.extend_from_slice(&4u32.to_le_bytes());
            n.extend_from_slice(&1u32.to_le_bytes());
            n.extend_from_slice(b"Xen\0");
            n.extend_from_slice(&0x1234u32.to_le_bytes());
            n
        } else {
            Vec::new()
        };
        let data_at = ph_at + 32 * u32::from(phnum);
        let note_at = data_at + code.len() as u32;
        let mut v = vec![0u8; 52];
        v[..4].copy_from_slice(ELF_MAGIC);
        v[4] = 1;
        v[5] = 1;
        v[6] = 1;
        v[16..18].copy_from_slice(&2u16.to_le_bytes());
        v[18..20].copy_from_slice(&EM_386.to_le_bytes());
        v[24..28].copy_from_slice(&entry.to_le_bytes());
        v[28..32].copy_from_slice(&ph_at.to_le_bytes());
        v[42..44].copy_from_slice(&32u16.to_le_bytes());
        v[44..46].copy_from_slice(&phnum.to_le_bytes());
        let mut ph = |p_type: u32, off: u32, addr: u32, filesz: u32, memsz: u32| {
            for x in [p_type, off, addr, addr, filesz, memsz, 7, 4] {
                v.extend_from_slice(&x.to_le_bytes());
            }
        };
        ph(
            PT_LOAD,
            data_at,
            paddr,
            code.len() as u32,
            code.len() as u32 + bss,
        );
        if xen_note {
            ph(PT_NOTE, note_at, 0, note.len() as u32, 0);
        }
        v.extend_from_slice(code);
        v.extend_from_slice(&note);
        v
    }

    #[test]
    fn parses_a_small_image() {
        let img = elf32(0x100000, 0x100010, b"hello", 11, false);
        let elf = Elf::parse(&img).unwrap();
        assert_eq!(
            (elf.class, elf.machine, elf.entry),
            (Class::Elf32, EM_386, 0x100010)
        );
        assert_eq!(elf.paddr_bounds(), (0x100000, 0x100010));
        assert_eq!(elf.segment_bytes(&elf.segments[0]), b"hello");
        assert!(!elf.has_xen_notes().unwrap());
    }

    #[test]
    fn reads_notes() {
        let img = elf32(0x100000, 0x100000, b"x", 0, true);
        let elf = Elf::parse(&img).unwrap();
        let notes = elf.notes().unwrap();
        assert_eq!(
            notes,
            vec![Note {
                name: b"Xen",
                kind: 1,
                desc: &0x1234u32.to_le_bytes()
            }]
        );
        assert!(elf.has_xen_notes().unwrap());
    }

    #[test]
    fn refuses_bad_images_without_panicking() {
        assert_eq!(Elf::parse(b"").unwrap_err(), ElfError::BadMagic);
        assert_eq!(Elf::parse(b"#!/bin/sh\n").unwrap_err(), ElfError::BadMagic);
        let img = elf32(0x100000, 0x100000, b"code", 0, false);
        for cut in 0..img.len() {
            assert!(Elf::parse(&img[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = img.clone();
        bad[18] = 40; // ARM
        assert!(matches!(Elf::parse(&bad), Err(ElfError::Unsupported(_))));
        let mut huge = img.clone();
        huge[52 + 16..52 + 20].copy_from_slice(&u32::MAX.to_le_bytes()); // filesz
        assert!(Elf::parse(&huge).is_err());
    }
}
