//! The simulated host's view of an HVM context (the format is [`crate::hypervisor::hvm_save`]).
//!
//! What the simulated host checks, as `hvm_load()`/`arch_hvm_load()` do: the descriptors fit
//! the blob, the HEADER comes first with `HVM_FILE_MAGIC` and `HVM_FILE_VERSION`, every
//! typecode is at most `HVM_SAVE_CODE_MAX`, and END closes it. It keeps the blob as it is and
//! does not model the records' contents (CPU registers, LAPIC, timers).

use crate::hypervisor::hvm_save::{
    descriptor, records, CODE_MAX, END, FILE_MAGIC, FILE_VERSION, HEADER, HEADER_BYTES,
};

/// The context of a domain nothing was loaded into: the HEADER and END only.
pub fn minimal() -> Vec<u8> {
    let mut out = descriptor(HEADER, 0, HEADER_BYTES).to_vec();
    out.extend_from_slice(&FILE_MAGIC.to_le_bytes());
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]); // changeset, cpuid, gtsc_khz
    out.extend_from_slice(&descriptor(END, 0, 0));
    out
}

/// Check `blob` as `hvm_load()` would; the reason when Xen would refuse it.
pub fn check(blob: &[u8]) -> Result<(), String> {
    let mut recs = records(blob);
    let word = |data: &[u8], i: usize| {
        data.get(i..i + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match recs.next().transpose()? {
        Some((HEADER, _, data)) if data.len() == HEADER_BYTES => {
            if word(data, 0) != FILE_MAGIC || word(data, 4) != FILE_VERSION {
                return Err(format!(
                    "HEADER magic {:#x} version {}, expected {FILE_MAGIC:#x} version {FILE_VERSION}",
                    word(data, 0),
                    word(data, 4)
                ));
            }
        }
        _ => return Err("the first record is not the HEADER".into()),
    }
    for rec in recs {
        match rec? {
            (END, _, _) => return Ok(()),
            (typecode, _, _) if typecode > CODE_MAX => {
                return Err(format!("unknown save record type {typecode}"));
            }
            _ => {}
        }
    }
    Err("the context ends without an END record".into())
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
        cpu.extend_from_slice(&descriptor(2, 0, 4));
        cpu.extend_from_slice(&[1, 2, 3, 4]);
        cpu.extend_from_slice(&descriptor(END, 0, 0));
        assert_eq!(check(&cpu), Ok(()));
        let mut unknown = ok[..32].to_vec();
        unknown.extend_from_slice(&descriptor(99, 0, 0));
        assert!(check(&unknown)
            .unwrap_err()
            .contains("unknown save record type 99"));
        let mut long = ok[..32].to_vec();
        long.extend_from_slice(&descriptor(2, 0, usize::MAX >> 32));
        assert!(check(&long).unwrap_err().contains("overruns"));
        assert!(check(&[]).is_err());
    }
}
