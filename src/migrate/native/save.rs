//! Saving an HVM or PVH domain to a stream, over the [`Hypervisor`] seam: what
//! libxenguest's `xc_domain_save` does for an x86 HVM domain on a plain stream (xen-project/xen
//! `tools/libs/guest/xg_sr_save.c` and `xg_sr_save_x86_hvm.c` at RELEASE-4.17.3).
//!
//! Headers, the CPU policy and STATIC_DATA_END; then memory: live, every page with log-dirty
//! on, then the dirty ones while the precopy policy says continue (asked before and after each
//! pass, as `send_memory_live` asks), then the suspend and a last pass; or, not live, the
//! suspend first and one pass. Each batch of at most 1024 pfns has its types from
//! `getpageframeinfo3`, holes go as XTAB without data, RAM is read one foreign access per run
//! of consecutive pfns. After memory: VERIFY and a full resend with `-debug` on a live save,
//! then TSC info, the HVM context, the HVM params and END.

use crate::hypervisor::{CpuidLeaf, Hypervisor, MsrEntry, XcError, XcResult, SHUTDOWN_SUSPEND};
use crate::migrate::engine::{
    PrecopyDecision, PrecopyStats, SaveHooks, XCFLAGS_DEBUG, XCFLAGS_LIVE,
};
use crate::migrate::stream::{
    format::MAX_BATCH_PFNS, GuestType, HvmParam, PageData, PageType, Record, StreamWriter,
};
use crate::types::{usize_of, DomId, GuestPhys, MapAddr, Pfn, PAGE_BYTES, PAGE_USIZE};
use crate::{Error, ErrorKind, Result, Step};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

const CALL: &str = "xc_domain_save";
/// The step of every failure: the libxenguest call this replaces.
pub const STEP: Step = Step::Mode(CALL);

/// The HVM params a save carries when they are non-zero (`write_hvm_params`): the store,
/// ioreq, paging, monitor and sharing rings, the VM86 TSS, the console, the ACPI I/O ports,
/// Viridian, the identity page table, the generation id, the ioreq servers, the x87 FIP width
/// and the MCA capabilities.
pub const SAVED_PARAMS: [u32; 16] = [1, 5, 6, 27, 28, 29, 37, 17, 19, 9, 12, 34, 32, 33, 36, 38];

/// Tries of a shadow operation that says EBUSY, and the pause between them (XenServer's
/// libxenguest retries 10 times, 10 ms apart).
const EBUSY_TRIES: u32 = 10;
const EBUSY_PAUSE: Duration = Duration::from_millis(10);

/// What a save did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SaveStats {
    /// Pages sent in each memory pass, the first (every page) first.
    pub pages_per_pass: Vec<u64>,
    /// Holes sent as XTAB in the first pass.
    pub holes: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Where the memory passes' time went, µs: page types, reading guest pages, writing the
    /// stream (which waits for its reader), and the policy and progress callbacks.
    pub types_us: u64,
    /// See `types_us`.
    pub read_us: u64,
    /// See `types_us`.
    pub write_us: u64,
    /// See `types_us`.
    pub hooks_us: u64,
}

/// Microseconds since `t0`, added to `into`.
fn add_us(into: &mut u64, t0: Instant) {
    *into += u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
}

/// Save `domid` into `out` with `flags` (`XCFLAGS_*`).
pub fn save<W: Write>(
    hv: &dyn Hypervisor,
    domid: DomId,
    out: W,
    flags: u32,
    hooks: &dyn SaveHooks,
) -> Result<SaveStats> {
    let info = hv.domain_getinfo(domid).map_err(STEP.xc())?;
    if !info.hvm {
        return Err(Error::new(
            STEP,
            ErrorKind::NotImplemented(
                "the native stream engine saves HVM and PVH domains; PV domains are saved by \
                 libxenguest's engine"
                    .into(),
            ),
        ));
    }
    let live = flags & XCFLAGS_LIVE != 0;
    let mut s = Save {
        hv,
        domid,
        w: StreamWriter::new(out),
        hooks,
        p2m_size: hv.domain_maximum_gpfn(domid).map_err(STEP.xc())? + 1,
        buf: Vec::new(),
        stats: SaveStats::default(),
    };
    let result = if live {
        shadow_op(|| hv.domain_logdirty(domid, true)).map_err(STEP.xc())?;
        let r = s.run(true, flags & XCFLAGS_DEBUG != 0);
        // As libxenguest's cleanup: log-dirty goes off whatever happened.
        if let Err(e) = shadow_op(|| hv.domain_logdirty(domid, false)) {
            log::warn!("turning log-dirty off for d{domid}: {e}");
        }
        r
    } else {
        s.run(false, false)
    };
    result?;
    s.stats.bytes = s.w.offset();
    Ok(s.stats)
}

/// A shadow operation, retried while Xen says EBUSY.
fn shadow_op<T>(mut op: impl FnMut() -> XcResult<T>) -> XcResult<T> {
    let mut tries = 1;
    loop {
        match op() {
            Err(e) if e.code == libc::EBUSY && tries < EBUSY_TRIES => {
                tries += 1;
                std::thread::sleep(EBUSY_PAUSE);
            }
            r => return r,
        }
    }
}

/// Which pfns a pass sends.
enum Pass {
    /// `[0, p2m_size)`.
    All,
    /// These, ascending.
    Dirty(Vec<u64>),
}

struct Save<'a, W: Write> {
    hv: &'a dyn Hypervisor,
    domid: DomId,
    w: StreamWriter<W>,
    hooks: &'a dyn SaveHooks,
    p2m_size: u64,
    /// The batch buffer (at most 1024 pages).
    buf: Vec<u8>,
    stats: SaveStats,
}

impl<W: Write> Save<'_, W> {
    fn write(&mut self, record: &Record<'_>) -> Result<()> {
        self.w.write_record(record).map_err(|e| e.at(CALL))
    }

    fn run(&mut self, live: bool, debug: bool) -> Result<()> {
        let (major, minor) = self.hv.xen_version().map_err(STEP.xc())?;
        self.w
            .write_headers(GuestType::X86Hvm, (major, minor))
            .map_err(|e| e.at(CALL))?;
        self.static_data()?;
        if live {
            self.precopy()?;
            self.suspend()?;
            let dirty = self.clean()?;
            self.send(&Pass::Dirty(dirty))?;
            if debug {
                self.write(&Record::Verify)?;
                self.send(&Pass::All)?;
            }
        } else {
            self.suspend()?;
            self.send(&Pass::All)?;
        }
        self.end_of_checkpoint()?;
        self.write(&Record::End)?;
        self.w.flush().map_err(|e| e.at(CALL))
    }

    /// `x86_hvm_static_data`: the CPUID and MSR policy, then STATIC_DATA_END.
    fn static_data(&mut self) -> Result<()> {
        let (leaves, msrs): (Vec<CpuidLeaf>, Vec<MsrEntry>) = self
            .hv
            .domain_get_cpu_policy(self.domid)
            .map_err(STEP.xc())?;
        if !leaves.is_empty() {
            self.write(&Record::CpuidPolicy(leaves))?;
        }
        if !msrs.is_empty() {
            self.write(&Record::MsrPolicy(msrs))?;
        }
        self.write(&Record::StaticDataEnd)
    }

    /// `send_memory_live` up to the suspend: the policy is asked before each pass (with the
    /// pages to send) and after it (with -1), and each pass but the first sends what log-dirty
    /// found since the one before.
    fn precopy(&mut self) -> Result<()> {
        let mut stats = PrecopyStats {
            iteration: 0,
            total_written_pages: 0,
            dirty_pages: i64::try_from(self.p2m_size).unwrap_or(i64::MAX),
        };
        let mut pass = Pass::All;
        let decision = loop {
            let decision = self.hooks.precopy_policy(stats);
            stats.iteration += 1;
            if stats.dirty_pages != 0 && decision != PrecopyDecision::Abort {
                self.send(&pass)?;
            }
            if decision != PrecopyDecision::Continue {
                break decision;
            }
            stats.total_written_pages += u64::try_from(stats.dirty_pages).unwrap_or(0);
            stats.dirty_pages = -1;
            let decision = self.hooks.precopy_policy(stats);
            if decision != PrecopyDecision::Continue {
                break decision;
            }
            let dirty = self.clean()?;
            stats.dirty_pages = i64::try_from(dirty.len()).unwrap_or(i64::MAX);
            pass = Pass::Dirty(dirty);
        };
        if decision == PrecopyDecision::Abort {
            return Err(STEP.xc()(XcError::errno_with(
                CALL,
                libc::ECANCELED,
                "Abort precopy loop (the precopy policy said abort)",
            )));
        }
        Ok(())
    }

    /// The toolstack suspends the domain; it must then be shut down for suspend.
    fn suspend(&mut self) -> Result<()> {
        if !self.hooks.suspend() {
            return Err(STEP.xc()(XcError::errno_with(
                CALL,
                libc::EINVAL,
                "Failed to suspend domain (the suspend callback failed)",
            )));
        }
        let info = self.hv.domain_getinfo(self.domid).map_err(STEP.xc())?;
        if info.shutdown_reason != Some(SHUTDOWN_SUSPEND) {
            return Err(STEP.xc()(XcError::errno_with(
                CALL,
                libc::EINVAL,
                format!(
                    "Domain has not been suspended: shutdown {}, reason {}",
                    i32::from(info.shutdown_reason.is_some()),
                    info.shutdown_reason.map_or(-1, i64::from)
                ),
            )));
        }
        Ok(())
    }

    /// `XEN_DOMCTL_SHADOW_OP_CLEAN`: the pfns dirtied since the last clean, ascending.
    fn clean(&mut self) -> Result<Vec<u64>> {
        let mut bitmap = vec![0u64; usize_of(self.p2m_size.div_ceil(64))];
        let p2m_size = self.p2m_size;
        shadow_op(|| {
            self.hv
                .domain_logdirty_clean(self.domid, &mut bitmap, p2m_size)
        })
        .map_err(STEP.xc())?;
        let mut dirty = Vec::new();
        for (w, &word) in bitmap.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let pfn = w as u64 * 64 + u64::from(bits.trailing_zeros());
                if pfn < p2m_size {
                    dirty.push(pfn);
                }
                bits &= bits - 1;
            }
        }
        Ok(dirty)
    }

    /// One pass: the pfns in batches, with progress.
    fn send(&mut self, pass: &Pass) -> Result<()> {
        let total = match pass {
            Pass::All => self.p2m_size,
            Pass::Dirty(pfns) => pfns.len() as u64,
        };
        let mut done = 0;
        let mut batch = Vec::with_capacity(MAX_BATCH_PFNS);
        let mut pfns: Box<dyn Iterator<Item = u64>> = match pass {
            Pass::All => Box::new(0..self.p2m_size),
            Pass::Dirty(pfns) => Box::new(pfns.iter().copied()),
        };
        loop {
            batch.clear();
            batch.extend(pfns.by_ref().take(MAX_BATCH_PFNS));
            if batch.is_empty() {
                break;
            }
            let holes = self.send_batch(&batch)?;
            if matches!(pass, Pass::All) && self.stats.pages_per_pass.is_empty() {
                self.stats.holes += holes;
            }
            done += batch.len() as u64;
            let t0 = Instant::now();
            self.hooks.progress(done, total);
            add_us(&mut self.stats.hooks_us, t0);
        }
        self.stats.pages_per_pass.push(total);
        Ok(())
    }

    /// One PAGE_DATA record (`write_batch`); returns the holes in it.
    fn send_batch(&mut self, pfns: &[u64]) -> Result<u64> {
        let t0 = Instant::now();
        let types = self
            .hv
            .domain_pfn_types(self.domid, pfns)
            .map_err(STEP.xc())?;
        add_us(&mut self.stats.types_us, t0);
        if types.len() != pfns.len() {
            return Err(STEP.invalid(format!(
                "getpageframeinfo3 gave {} types for {} pfns",
                types.len(),
                pfns.len()
            )));
        }
        let mut entries = Vec::with_capacity(pfns.len());
        for (&pfn, &bits) in pfns.iter().zip(&types) {
            let t = PageType::from_pfinfo(bits)
                .ok_or_else(|| STEP.invalid(format!("pfn {pfn:#x} has unknown type {bits:#x}")))?;
            entries.push((Pfn(pfn), t));
        }
        let with_data: Vec<u64> = entries
            .iter()
            .filter(|(_, t)| t.has_data())
            .map(|(p, _)| p.0)
            .collect();
        let t0 = Instant::now();
        // One buffer for the whole save, zeroed once: read into, then written from.
        let mut buf = std::mem::take(&mut self.buf);
        let bytes = with_data.len() * PAGE_USIZE;
        if buf.len() < bytes {
            buf.resize(bytes, 0);
        }
        for (first, i, n) in super::runs(&with_data) {
            let at = MapAddr::phys(GuestPhys(first * PAGE_BYTES));
            self.hv
                .read_guest(
                    self.domid,
                    at,
                    &mut buf[i * PAGE_USIZE..(i + n) * PAGE_USIZE],
                )
                .map_err(STEP.xc())?;
        }
        add_us(&mut self.stats.read_us, t0);
        let holes = (entries.len() - with_data.len()) as u64;
        let t0 = Instant::now();
        let written = PageData::new(entries, &buf[..bytes])
            .map_err(|why| STEP.invalid(why))
            .and_then(|record| self.write(&Record::PageData(record)));
        self.buf = buf;
        written?;
        add_us(&mut self.stats.write_us, t0);
        Ok(holes)
    }

    /// `x86_hvm_end_of_checkpoint`: TSC info, HVM context, HVM params.
    fn end_of_checkpoint(&mut self) -> Result<()> {
        let tsc = self.hv.domain_get_tsc_info(self.domid).map_err(STEP.xc())?;
        self.write(&Record::TscInfo(tsc))?;
        let context = self
            .hv
            .domain_hvm_getcontext(self.domid)
            .map_err(STEP.xc())?;
        self.write(&Record::HvmContext(&context))?;
        let mut params = Vec::new();
        for index in SAVED_PARAMS {
            let value = self
                .hv
                .hvm_param_get(self.domid, index)
                .map_err(STEP.xc())?;
            if value != 0 {
                params.push(HvmParam {
                    index: index.into(),
                    value,
                });
            }
        }
        self.write(&Record::HvmParams(params))
    }
}
