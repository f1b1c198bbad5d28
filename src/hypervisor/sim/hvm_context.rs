//! The HVM context blob (`xc_domain_hvm_getcontext` / `_setcontext`): Xen's save records back
//! to back, each a `struct hvm_save_descriptor` (u16 typecode, u16 instance, u32 length) and
//! its data, the first the HEADER, the last END (xen-project/xen
//! `xen/include/public/hvm/save.h` and `arch-x86/hvm/save.h` at c447b73).
//!
//! What the simulated host checks, as `hvm_load()`/`arch_hvm_load()` do: the descriptors fit
//! the blob, the HEADER comes first with `HVM_FILE_MAGIC` and `HVM_FILE_VERSION`, every
//! typecode is at most `HVM_SAVE_CODE_MAX`, and END closes it. It keeps the blob as it is and
//! does not model the records' contents (CPU registers, LAPIC, timers).

/// `HVM_FILE_MAGIC`.
const MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`.
const VERSION: u32 = 1;
/// `HVM_SAVE_CODE_MAX` in Xen 4.17.
const CODE_MAX: u16 = 20;
/// `HVM_SAVE_CODE(HEADER)`.
const HEADER: u16 = 1;
/// `HVM_SAVE_CODE(END)`.
const END: u16 = 0;
/// `sizeof(struct hvm_save_header)`.
const HEADER_BYTES: usize = 24;

fn descriptor(typecode: u16, length: u32) -> [u8; 8] {
    let mut d = [0u8; 8];
    d[..2].copy_from_slice(&typecode.to_le_bytes());
    d[4..].copy_from_slice(&length.to_le_bytes());
    d
}

/// The context of a domain nothing was loaded into: the HEADER and END only.
pub fn minimal() -> Vec<u8> {
    let mut out = descriptor(HEADER, 24).to_vec();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]); // changeset, cpuid, gtsc_khz
    out.extend_from_slice(&descriptor(END, 0));
    out
}

/// Check `blob` as `hvm_load()` would; the reason when Xen would refuse it.
pub fn check(blob: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    let mut first = true;
    loop {
        let d = blob
            .get(at..at + 8)
            .ok_or_else(|| format!("truncated descriptor at byte {at}"))?;
        let typecode = u16::from_le_bytes([d[0], d[1]]);
        let length = u32::from_le_bytes([d[4], d[5], d[6], d[7]]);
        let start = at + 8;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|e| *e <= blob.len())
            .ok_or_else(|| {
                format!("record {typecode} at byte {at}: length {length} overruns the context")
            })?;
        if first {
            let data = blob.get(start..end).unwrap_or_default();
            let word = |i: usize| {
                data.get(i..i + 4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            if typecode != HEADER || data.len() != HEADER_BYTES {
                return Err("the first record is not the HEADER".into());
            }
            if word(0) != MAGIC || word(4) != VERSION {
                return Err(format!(
                    "HEADER magic {:#x} version {}, expected {MAGIC:#x} version {VERSION}",
                    word(0),
                    word(4)
                ));
            }
            first = false;
        } else if typecode == END {
            return Ok(());
        } else if typecode > CODE_MAX {
            return Err(format!("unknown save record type {typecode} at byte {at}"));
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_passes_and_damage_is_refused() {
        let ok = minimal();
        assert_eq!(check(&ok), Ok(()));
        assert!(check(&ok[..ok.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        let mut bad = ok.clone();
        bad[8] ^= 1;
        assert!(check(&bad).unwrap_err().contains("magic"));
        let mut cpu = ok[..32].to_vec();
        cpu.extend_from_slice(&descriptor(2, 4));
        cpu.extend_from_slice(&[1, 2, 3, 4]);
        cpu.extend_from_slice(&descriptor(END, 0));
        assert_eq!(check(&cpu), Ok(()));
        let mut unknown = ok[..32].to_vec();
        unknown.extend_from_slice(&descriptor(99, 0));
        assert!(check(&unknown)
            .unwrap_err()
            .contains("unknown save record type 99"));
        let mut long = ok[..32].to_vec();
        long.extend_from_slice(&descriptor(2, u32::MAX));
        assert!(check(&long).unwrap_err().contains("overruns"));
        assert!(check(&[]).is_err());
    }
}
