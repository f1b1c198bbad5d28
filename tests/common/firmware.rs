//! A generated HVM test firmware, so whole-build tests do not need Debian's hvmloader.
//!
//! An ELF32 i386 executable like hvmloader (xen-project/xen RELEASE-4.17.0
//! `tools/firmware/hvmloader/Makefile` links it at 0x100000, entry there, no Xen notes):
//! a text segment and a data segment whose bss ends where Debian 12's hvmloader 4.17 ends
//! (0x133f40), so modules land at the same addresses as with the real image.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "fixtures pack small test sizes into the fields of the images they build"
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the firmware is linked and starts (hvmloader's `HVMLOADER_PHYSICAL_ADDRESS`).
pub const FIRMWARE_PADDR: u32 = 0x10_0000;

/// Where its image ends, bss included: Debian's hvmloader's `p_paddr + p_memsz`.
pub const FIRMWARE_END: u32 = 0x13_3f40;

const TEXT_BYTES: u32 = 0x1000;
const DATA_BYTES: u32 = 0x600;

/// The text: `cli; hlt; jmp $-1` and a recognisable pattern.
fn text() -> Vec<u8> {
    let mut v = vec![0xfa, 0xf4, 0xeb, 0xfd];
    v.extend((4..TEXT_BYTES).map(|i| (i % 253) as u8));
    v
}

fn data() -> Vec<u8> {
    (0..DATA_BYTES)
        .map(|i| (i * 7 % 255) as u8 ^ 0x5a)
        .collect()
}

/// The firmware's bytes: ELF header, two `PT_LOAD` headers, text, data.
pub fn firmware_bytes() -> Vec<u8> {
    const EHSIZE: u32 = 52;
    const PHENTSIZE: u32 = 32;
    let text_at = EHSIZE + 2 * PHENTSIZE;
    let data_at = text_at + TEXT_BYTES;
    let data_paddr = FIRMWARE_PADDR + TEXT_BYTES;
    let mut v = vec![0u8; EHSIZE as usize];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 1; // ELFCLASS32
    v[5] = 1; // little-endian
    v[6] = 1; // EV_CURRENT
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&3u16.to_le_bytes()); // EM_386
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..28].copy_from_slice(&FIRMWARE_PADDR.to_le_bytes()); // e_entry
    v[28..32].copy_from_slice(&EHSIZE.to_le_bytes()); // e_phoff
    v[40..42].copy_from_slice(&(EHSIZE as u16).to_le_bytes());
    v[42..44].copy_from_slice(&(PHENTSIZE as u16).to_le_bytes());
    v[44..46].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let segments = [
        // p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags (R+X, R+W), p_align
        [
            1,
            text_at,
            FIRMWARE_PADDR,
            FIRMWARE_PADDR,
            TEXT_BYTES,
            TEXT_BYTES,
            5,
            16,
        ],
        [
            1,
            data_at,
            data_paddr,
            data_paddr,
            DATA_BYTES,
            FIRMWARE_END - data_paddr,
            6,
            16,
        ],
    ];
    for header in segments {
        for word in header {
            v.extend_from_slice(&word.to_le_bytes());
        }
    }
    v.extend(text());
    v.extend(data());
    v
}

/// The firmware as a file (written once per test process, under Cargo's target tmp dir).
pub fn firmware() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("xenguest-test-firmware.elf");
        // Several test binaries run at once: write a private file, then rename over.
        let private = dir.join(format!("xenguest-test-firmware.{}.tmp", std::process::id()));
        std::fs::write(&private, firmware_bytes()).unwrap();
        std::fs::rename(&private, &path).unwrap();
        path
    })
}
