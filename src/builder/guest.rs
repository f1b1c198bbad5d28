//! Guest memory as every builder writes it, in bounded chunks. An HVM or PVH domain is
//! translated: its frames are gfns and it is written at guest-physical addresses. A PV domain
//! is not: the builder keeps its p2m (`pfn -> mfn`, from `populate_physmap`) and writes each
//! MFN-contiguous run at its machine address. Either way no write costs dom0 memory in
//! proportion to what an image merely declares (a bss, a `memsz`): zeros go out at most
//! [`CHUNK_BYTES`] at a time.

use crate::error::{Result, Step};
use crate::hypervisor::Hypervisor;
use crate::memory::P2m;
use crate::types::{usize_of, DomId, GuestPhys, MapAddr, Mfn, Pfn, PAGE_BYTES};

/// Images are assembled, and zeros written, this much at a time (4 MiB): fresh memory is
/// dear in a PV dom0, and a build never holds a second copy of a large kernel.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How the domain's frames are addressed.
enum Space {
    /// HVM/PVH: gfn = pfn.
    Translated,
    /// PV: the p2m, `pfn -> mfn`.
    Pv(P2m),
}

/// A domain's memory, by pseudo-physical address (guest-physical for a translated domain).
pub(crate) struct GuestMemory<'a> {
    hv: &'a dyn Hypervisor,
    domid: DomId,
    space: Space,
}

impl<'a> GuestMemory<'a> {
    /// An HVM or PVH domain.
    pub fn translated(hv: &'a dyn Hypervisor, domid: DomId) -> Self {
        GuestMemory {
            hv,
            domid,
            space: Space::Translated,
        }
    }

    /// A PV domain with its p2m.
    pub fn pv(hv: &'a dyn Hypervisor, domid: DomId, p2m: P2m) -> Self {
        GuestMemory {
            hv,
            domid,
            space: Space::Pv(p2m),
        }
    }

    /// The hypervisor this memory is written through.
    pub fn hv(&self) -> &'a dyn Hypervisor {
        self.hv
    }

    /// The domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The PV p2m's list (empty for a translated domain).
    pub fn p2m(&self) -> &[u64] {
        match &self.space {
            Space::Translated => &[],
            Space::Pv(p2m) => p2m.as_list(),
        }
    }

    /// The machine frame behind PV pfn `pfn`.
    pub fn mfn(&self, pfn: Pfn) -> Result<Mfn> {
        match &self.space {
            Space::Translated => Err(Step::P2m.invalid(format!(
                "pfn {pfn} of a translated domain has no machine frame the toolstack may see"
            ))),
            Space::Pv(p2m) => p2m.mfn(pfn).ok_or_else(|| {
                Step::P2m.invalid(format!(
                    "pfn {pfn} is beyond the p2m ({} frames)",
                    p2m.len()
                ))
            }),
        }
    }

    /// `[at, at + len)` (pseudo-physical bytes) as runs the seam can take in one call:
    /// `(offset in the range, where the run starts, length)`. One run for a translated
    /// domain; for a PV one, a run per machine-contiguous stretch of the p2m.
    fn runs(&self, at: u64, len: u64) -> Result<Vec<(u64, MapAddr, u64)>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let Space::Pv(_) = &self.space else {
            return Ok(vec![(0, MapAddr::phys(GuestPhys(at)), len)]);
        };
        let mut runs: Vec<(u64, MapAddr, u64)> = Vec::new();
        let (first, last) = (at / PAGE_BYTES, (at + len - 1) / PAGE_BYTES);
        for pfn in first..=last {
            let page_from = (pfn * PAGE_BYTES).max(at);
            let page_to = ((pfn + 1) * PAGE_BYTES).min(at + len);
            let start = MapAddr::machine(self.mfn(Pfn(pfn))?, page_from % PAGE_BYTES);
            match runs.last_mut() {
                Some((_, m0, n)) if m0.byte() + *n == start.byte() => *n += page_to - page_from,
                _ => runs.push((page_from - at, start, page_to - page_from)),
            }
        }
        Ok(runs)
    }

    /// Copy `data` in at pseudo-physical `at` (one seam call per machine-contiguous run).
    pub fn write(&self, step: Step, at: u64, data: &[u8]) -> Result<()> {
        for (offset, addr, len) in self.runs(at, data.len() as u64)? {
            // In bounds: the runs tile [0, data.len()).
            let bytes = &data[usize_of(offset)..usize_of(offset + len)];
            self.hv
                .write_guest(self.domid, addr, bytes)
                .map_err(step.xc())?;
        }
        Ok(())
    }

    /// Zero `[at, at + len)`, [`CHUNK_BYTES`] at a time.
    pub fn zero(&self, step: Step, at: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; len.min(CHUNK_BYTES) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK_BYTES);
            self.write(step, at + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Write a `len`-byte image from `at`, [`CHUNK_BYTES`] at a time: each chunk starts
    /// zeroed and `fill(offset, chunk)` copies in what the image has there (libxenguest
    /// zeroes a segment, then loads into it).
    pub fn write_image(
        &self,
        step: Step,
        at: u64,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> Result<()> {
        let mut buf = vec![0u8; len.min(CHUNK_BYTES) as usize];
        let mut offset = 0;
        while offset < len {
            let chunk = &mut buf[..(len - offset).min(CHUNK_BYTES) as usize];
            chunk.fill(0);
            fill(offset, chunk);
            self.write(step, at + offset, chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Clear `pages` frames from pfn `pfn` (`xc_clear_domain_pages`, per MFN run).
    pub fn clear(&self, step: Step, pfn: u64, pages: u64) -> Result<()> {
        for (_, start, len) in self.runs(pfn * PAGE_BYTES, pages * PAGE_BYTES)? {
            self.hv
                .clear_domain_pages(self.domid, start.frame(), len / PAGE_BYTES)
                .map_err(step.xc())?;
        }
        Ok(())
    }
}

/// Copy into `chunk` (the image's bytes from `offset`) the part of `bytes` (the image's bytes
/// from `at`) that falls in it.
pub(crate) fn copy_overlap(at: u64, bytes: &[u8], offset: u64, chunk: &mut [u8]) {
    let start = at.max(offset);
    let end = (at + bytes.len() as u64).min(offset + chunk.len() as u64);
    if start < end {
        let (from, to) = (usize_of(start - at), usize_of(start - offset));
        let n = usize_of(end - start);
        chunk[to..to + n].copy_from_slice(&bytes[from..from + n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::sim::{DomainConfig, SimHost};
    use crate::types::MapFrame;

    #[test]
    fn copy_overlap_copies_only_the_shared_part() {
        let mut chunk = [0u8; 4];
        copy_overlap(2, b"abcdef", 0, &mut chunk); // image bytes 2..8, chunk 0..4
        assert_eq!(&chunk, b"\0\0ab");
        let mut chunk = [0u8; 4];
        copy_overlap(2, b"abcdef", 4, &mut chunk); // chunk 4..8
        assert_eq!(&chunk, b"cdef");
        let mut chunk = [9u8; 4];
        copy_overlap(20, b"abc", 4, &mut chunk); // no overlap: untouched
        assert_eq!(chunk, [9; 4]);
        let mut chunk = [0u8; 2];
        copy_overlap(0, b"abcdef", 3, &mut chunk); // inside the bytes
        assert_eq!(&chunk, b"de");
    }

    #[test]
    fn pv_runs_follow_the_p2m_and_split_where_mfns_do() {
        let host = SimHost::from_spec("nodes=1,node_mib=64").unwrap();
        let mem = GuestMemory::pv(&host, DomId(1), P2m::from_list(vec![10, 11, 20, 21]));
        // Bytes 0x800..0x3800: half of pfn 0, pfn 1 (mfn 11, contiguous), pfns 2 and half 3.
        let runs = mem.runs(0x800, 0x3000).unwrap();
        assert_eq!(
            runs,
            vec![
                (0, MapAddr::machine(Mfn(10), 0x800), 0x1800),
                (0x1800, MapAddr::machine(Mfn(20), 0), 0x1800)
            ]
        );
        assert_eq!(runs[0].1.frame(), MapFrame::Mfn(Mfn(10)));
        assert!(mem.runs(0x4000, 1).is_err(), "beyond the p2m");
        assert_eq!(mem.mfn(Pfn(3)).unwrap(), Mfn(21));
        let t = GuestMemory::translated(&host, DomId(1));
        assert_eq!(
            t.runs(0x800, 0x3000).unwrap(),
            vec![(0, MapAddr::phys(GuestPhys(0x800)), 0x3000)]
        );
        assert!(
            t.mfn(Pfn(0)).is_err(),
            "a translated domain has no MFNs to show"
        );
    }

    #[test]
    fn zeroing_a_large_range_is_bounded_chunks() {
        let host = SimHost::from_spec("nodes=1,node_mib=256").unwrap();
        let domid = host
            .create_domain(&DomainConfig::hvm(128 << 10, 1))
            .expect("domain");
        let mut gfns: Vec<u64> = (0..0x4000).collect(); // 64 MiB
        let done = host
            .domain_populate_physmap(domid, 0, Default::default(), &mut gfns)
            .unwrap();
        assert_eq!(done, 0x4000);
        let mem = GuestMemory::translated(&host, domid);
        mem.write(Step::BuildImage, 0x1000, &[7; 16]).unwrap();
        mem.zero(Step::BuildImage, 0x1000 + 8, 40 << 20).unwrap();
        let mut buf = [0xffu8; 16];
        host.read_guest(domid, MapAddr::phys(GuestPhys(0x1000)), &mut buf)
            .unwrap();
        assert_eq!(buf, [7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        let writes = host
            .trace_for(domid)
            .iter()
            .filter(|t| t.kind == "write_guest")
            .count();
        assert_eq!(writes, 1 + 10, "40 MiB of zeros in 4 MiB chunks");
    }
}
