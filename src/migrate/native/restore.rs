//! Restoring an HVM or PVH domain from a stream, over the [`Hypervisor`] seam: what
//! libxenguest's `xc_domain_restore` does for an x86 HVM stream (xen-project/xen
//! `tools/libs/guest/xg_sr_restore.c` and `xg_sr_restore_x86_hvm.c` at RELEASE-4.17.3), with
//! guest RAM in superpages ([`super::pfns`]).
//!
//! The stream is untrusted. The codec bounds each record by the bytes that arrived; here
//! every pfn is checked against the p2m's limit before it is used, nothing is written to a
//! frame this restore did not populate, and what is kept per pfn is bounded by the pages Xen
//! let the domain have.

use super::pfns::{plan_batch, Named, Populated};
use crate::boot::param;
use crate::hypervisor::{CpuidLeaf, Hypervisor, MemFlags, MsrEntry};
use crate::memory::{extents_per_call, ORDERS};
use crate::migrate::engine::{RestoreHooks, RestoreResult};
use crate::migrate::stream::{GuestType, PageData, PageType, Record, StreamReader, TscInfo};
use crate::types::{
    DomId, Gfn, GuestPhys, MapAddr, MapFrame, Pfn, ORDER_1G, P2M_GFN_LIMIT, PAGE_BYTES, PAGE_USIZE,
};
use crate::{Error, ErrorKind, Result, Step};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;

/// The step of every failure: the libxenguest call this replaces.
pub const STEP: Step = Step::Mode(CALL);
const CALL: &str = "xc_domain_restore";

/// What a restore did, for the report and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreStats {
    /// The stream's version.
    pub version: u32,
    /// Records read.
    pub records: u64,
    /// Pages whose data the stream carried (VERIFY passes aside).
    pub pages_written: u64,
    /// `populate_physmap` calls, by order.
    pub populate_calls_by_order: BTreeMap<u32, u64>,
    /// Pages populated, by order.
    pub populated_pages_by_order: BTreeMap<u32, u64>,
    /// Pages given back from superpages (holes the stream named, or never named).
    pub punched_pages: u64,
    /// `decrease_reservation` calls.
    pub punch_calls: u64,
    /// Orders Xen refused, so that the rest of the restore asked for smaller ones.
    pub refused_orders: Vec<u32>,
    /// Pages a VERIFY pass found different.
    pub verify_mismatches: u64,
}

impl RestoreStats {
    /// Populate calls in all.
    pub fn populate_calls(&self) -> u64 {
        self.populate_calls_by_order.values().sum()
    }
}

/// What the caller passes (`xc_domain_restore`'s arguments) and the CPUID fallback.
pub struct Params<'a> {
    /// The domain.
    pub domid: DomId,
    /// The xenstore event channel and the domain serving xenstore.
    pub store: (u32, DomId),
    /// The console event channel and the domain serving the console.
    pub console: (u32, DomId),
    /// `static_data_done` with `XGR_SDD_MISSING_CPUID`: the platform's policy.
    pub cpuid_fallback: &'a dyn Fn() -> Result<()>,
}

/// One restore in progress.
struct Restore<'a> {
    hv: &'a dyn Hypervisor,
    p: &'a Params<'a>,
    populated: Populated,
    /// The largest order still worth asking for.
    max_order: u32,
    static_data_done: bool,
    cpuid: Option<Vec<CpuidLeaf>>,
    msrs: Option<Vec<MsrEntry>>,
    context: Option<Vec<u8>>,
    store_gfn: Option<u64>,
    console_gfn: Option<u64>,
    verify: bool,
    /// Holes named inside superpages populated ahead, not yet given back.
    holes: Vec<u64>,
    stats: RestoreStats,
}

/// Restore `p.domid` from `input` (headers first). `hooks` get progress.
pub fn restore<R: Read>(
    hv: &dyn Hypervisor,
    input: R,
    p: &Params<'_>,
    hooks: &dyn RestoreHooks,
) -> Result<(RestoreResult, RestoreStats)> {
    let mut reader = StreamReader::new(input);
    let header = reader.read_headers().map_err(|e| e.at(CALL))?;
    let info = hv.domain_getinfo(p.domid).map_err(STEP.xc())?;
    if header.guest != GuestType::X86Hvm || !info.hvm {
        return Err(STEP.invalid(format!(
            "Unable to restore a {} stream into {} domain",
            if header.guest == GuestType::X86Hvm {
                "x86 HVM"
            } else {
                "x86 PV"
            },
            if info.hvm { "an HVM" } else { "a PV" }
        )));
    }
    let mut r = Restore {
        hv,
        p,
        populated: Populated::new(),
        max_order: ORDER_1G,
        static_data_done: false,
        cpuid: None,
        msrs: None,
        context: None,
        store_gfn: None,
        console_gfn: None,
        verify: false,
        holes: Vec::new(),
        stats: RestoreStats {
            version: header.version,
            ..RestoreStats::default()
        },
    };
    loop {
        let raw = reader.next_record().map_err(|e| e.at(CALL))?;
        r.stats.records += 1;
        let record = raw.decode().map_err(|e| e.at(CALL))?;
        match record {
            Record::End => break,
            Record::PageData(pages) => {
                r.page_data(&pages)?;
                hooks.progress(r.stats.pages_written, info.max_pages);
            }
            Record::TscInfo(tsc) => r.tsc(&tsc)?,
            Record::HvmContext(blob) => r.context = Some(blob.to_vec()),
            Record::HvmParams(params) => {
                for entry in params {
                    r.param(entry.index, entry.value)?;
                }
            }
            Record::Verify => r.verify = true,
            Record::StaticDataEnd => r.static_data_end()?,
            Record::CpuidPolicy(leaves) => r.cpuid = Some(leaves),
            Record::MsrPolicy(msrs) => r.msrs = Some(msrs),
            Record::Other { .. } if raw.optional() => {
                log::debug!("Skipping optional record {}", raw.name());
            }
            Record::Other { .. } => {
                return Err(STEP.invalid(format!(
                    "Unrecognised mandatory record {} at byte {}",
                    raw.name(),
                    raw.at
                )));
            }
        }
    }
    let result = r.complete()?;
    Ok((result, r.stats))
}

impl Restore<'_> {
    fn domid(&self) -> DomId {
        self.p.domid
    }

    /// `handle_static_data_end`: the policy from the stream, or the platform's when the stream
    /// has none (`XGR_SDD_MISSING_CPUID`, a version 2 stream).
    fn static_data_end(&mut self) -> Result<()> {
        if self.static_data_done {
            return Err(STEP.invalid("Duplicate STATIC_DATA_END record"));
        }
        self.static_data_done = true;
        if self.cpuid.is_some() || self.msrs.is_some() {
            let leaves = self.cpuid.take().unwrap_or_default();
            let msrs = self.msrs.take().unwrap_or_default();
            self.hv
                .domain_set_cpu_policy(self.domid(), &leaves, &msrs)
                .map_err(STEP.xc())?;
            if !leaves.is_empty() {
                return Ok(());
            }
        }
        (self.p.cpuid_fallback)()
    }

    fn tsc(&mut self, tsc: &TscInfo) -> Result<()> {
        self.hv
            .domain_restore_tsc_info(self.domid(), tsc)
            .map_err(STEP.xc())
    }

    /// One HVM_PARAMS entry (`handle_hvm_params`): the store and console frames are kept for
    /// the grant table, and the pages a device model or the store uses are cleared (errors
    /// ignored, as libxenguest ignores them); PAE_ENABLED is obsolete and dropped.
    fn param(&mut self, index: u64, value: u64) -> Result<()> {
        const PAE_ENABLED: u64 = 4;
        let to_clear = match index {
            i if i == u64::from(param::STORE_PFN) => {
                self.store_gfn = Some(value);
                Some(value)
            }
            i if i == u64::from(param::CONSOLE_PFN) => {
                self.console_gfn = Some(value);
                Some(value)
            }
            i if i == u64::from(param::IOREQ_PFN) || i == u64::from(param::BUFIOREQ_PFN) => {
                Some(value)
            }
            PAE_ENABLED => return Ok(()),
            _ => None,
        };
        if let Some(gfn) = to_clear.filter(|&g| g < P2M_GFN_LIMIT && self.populated.contains(g)) {
            let frame = MapFrame::Gfn(Gfn(gfn));
            if let Err(e) = self.hv.clear_domain_pages(self.domid(), frame, 1) {
                log::warn!("clearing gfn {gfn:#x} for HVM param {index}: {e}");
            }
        }
        let index = u32::try_from(index)
            .map_err(|_| STEP.invalid(format!("HVM param index {index} is out of range")))?;
        self.hv
            .hvm_param_set(self.domid(), index, value)
            .map_err(STEP.xc())
    }

    /// PAGE_DATA (`handle_page_data`, `process_page_data`): populate what is new, give back
    /// holes inside superpages, then write (or, after VERIFY, compare) the data.
    fn page_data(&mut self, pages: &PageData<'_>) -> Result<()> {
        if !self.static_data_done {
            if self.stats.version >= 3 {
                return Err(STEP.invalid("No STATIC_DATA_END seen before PAGE_DATA"));
            }
            // Version 2 has no STATIC_DATA_END: it is where the first PAGE_DATA is.
            self.static_data_end()?;
        }
        if let Some((pfn, _)) = pages.entries().iter().find(|(p, _)| p.0 >= P2M_GFN_LIMIT) {
            return Err(STEP.invalid(format!(
                "pfn {pfn} is beyond the largest guest frame Xen maps ({P2M_GFN_LIMIT:#x})"
            )));
        }
        let singles = self.populate_superpages(pages.entries())?;
        for &(Pfn(pfn), t) in pages.entries() {
            if self.populated.name(pfn) == Named::FirstInAhead && !t.populates() {
                self.holes.push(pfn);
            }
        }
        if self.holes.len() >= extents_per_call(0) {
            self.punch_holes()?;
        }
        self.populate_singles(&singles)?;
        self.write(pages)
    }

    /// Populate the batch's superpages; an order Xen refuses is not asked for again, and the
    /// batch is planned anew with the next one down. Returns the 4 KiB pages still to populate.
    fn populate_superpages(&mut self, entries: &[(Pfn, PageType)]) -> Result<Vec<u64>> {
        'plan: loop {
            let mut plan = plan_batch(&self.populated, entries, self.max_order, u64::MAX);
            if plan.iter().any(|e| e.1 > 0) {
                // Superpages only within what Xen would still give the domain (its max_pages
                // less what it holds, the holes given back first): more is refused, and
                // logged by Xen as an over-allocation.
                self.punch_holes()?;
                let info = self.hv.domain_getinfo(self.domid()).map_err(STEP.xc())?;
                let headroom = info.max_pages.saturating_sub(info.tot_pages);
                plan = plan_batch(&self.populated, entries, self.max_order, headroom);
            }
            for order in ORDERS.into_iter().filter(|&o| o > 0) {
                let gfns: Vec<u64> = plan.iter().filter(|e| e.1 == order).map(|e| e.0).collect();
                for chunk in gfns.chunks(extents_per_call(order)) {
                    let done = self.populate_call(order, chunk)?;
                    if done < chunk.len() {
                        log::debug!(
                            "domid = {}; order {order} refused after {done} extents: asking for smaller ones",
                            self.domid()
                        );
                        self.stats.refused_orders.push(order);
                        self.max_order = ORDERS.into_iter().find(|&o| o < order).unwrap_or(0);
                        continue 'plan;
                    }
                }
            }
            return Ok(plan.iter().filter(|e| e.1 == 0).map(|e| e.0).collect());
        }
    }

    /// Populate 4 KiB pages; a shortfall is the error.
    fn populate_singles(&mut self, gfns: &[u64]) -> Result<()> {
        for chunk in gfns.chunks(extents_per_call(0)) {
            let done = self.populate_call(0, chunk)?;
            if done < chunk.len() {
                return Err(Error::new(
                    STEP,
                    ErrorKind::OutOfMemory {
                        wanted_pages: chunk.len() as u64,
                        populated_pages: done as u64,
                        node: None,
                    },
                ));
            }
        }
        Ok(())
    }

    /// One `populate_physmap` call of `gfns` at `order`: how many extents were done.
    fn populate_call(&mut self, order: u32, gfns: &[u64]) -> Result<usize> {
        // Holes go back in large calls, and always before more memory is asked for: what a
        // superpage took beyond the guest's RAM may be the headroom the next call needs.
        self.punch_holes()?;
        let mut extents = gfns.to_vec();
        let done = self
            .hv
            .domain_populate_physmap(self.domid(), order, MemFlags::default(), &mut extents)
            .map_err(STEP.xc())?
            .min(gfns.len());
        *self.stats.populate_calls_by_order.entry(order).or_insert(0) += 1;
        *self
            .stats
            .populated_pages_by_order
            .entry(order)
            .or_insert(0) += (done as u64) << order;
        for &gfn in &gfns[..done] {
            self.populated.insert(gfn, order);
        }
        Ok(done)
    }

    /// Give back the holes collected so far (no call when there are none).
    fn punch_holes(&mut self) -> Result<()> {
        let holes = std::mem::take(&mut self.holes);
        self.punch(&holes)
    }

    /// Give back populated pfns (`decrease_reservation`).
    fn punch(&mut self, gfns: &[u64]) -> Result<()> {
        for chunk in gfns.chunks(extents_per_call(0)) {
            let done = self
                .hv
                .domain_decrease_reservation(self.domid(), chunk)
                .map_err(STEP.xc())?;
            self.stats.punch_calls += 1;
            if done < chunk.len() {
                return Err(STEP.xc()(crate::hypervisor::XcError::errno_with(
                    "xc_domain_decrease_reservation",
                    libc::EFAULT,
                    format!("gave back {done} of {} pages", chunk.len()),
                )));
            }
            for &gfn in chunk {
                self.populated.remove(gfn);
            }
            self.stats.punched_pages += chunk.len() as u64;
        }
        Ok(())
    }

    /// Write (or compare) the pages with data, one foreign access per run of consecutive pfns.
    fn write(&mut self, pages: &PageData<'_>) -> Result<()> {
        let mut with_data = Vec::with_capacity(pages.entries().len());
        for &(Pfn(pfn), t) in pages.entries() {
            if !t.has_data() {
                continue;
            }
            if !self.populated.contains(pfn) {
                return Err(STEP.invalid(format!("pfn {pfn:#x} has data but is not populated")));
            }
            with_data.push(pfn);
        }
        // Pages with data are back to back in the record, so a run of pfns is one slice of it.
        let data = pages.data();
        for (first, i, n) in super::runs(&with_data) {
            self.write_run(first, &data[i * PAGE_USIZE..(i + n) * PAGE_USIZE])?;
        }
        Ok(())
    }

    fn write_run(&mut self, first: u64, bytes: &[u8]) -> Result<()> {
        let at = MapAddr::phys(GuestPhys(first * PAGE_BYTES));
        if !self.verify {
            self.hv
                .write_guest(self.domid(), at, bytes)
                .map_err(STEP.xc())?;
            self.stats.pages_written += (bytes.len() / PAGE_USIZE) as u64;
            return Ok(());
        }
        let mut now = vec![0u8; bytes.len()];
        self.hv
            .read_guest(self.domid(), at, &mut now)
            .map_err(STEP.xc())?;
        for (i, (a, b)) in now
            .chunks(PAGE_USIZE)
            .zip(bytes.chunks(PAGE_USIZE))
            .enumerate()
        {
            if a != b {
                log::error!("verify pfn {:#x} failed", first + i as u64);
                self.stats.verify_mismatches += 1;
            }
        }
        Ok(())
    }

    /// END (`x86_hvm_stream_complete`): what superpages covered and the stream never named is
    /// given back, then the event channels, the HVM context and the grant table.
    fn complete(&mut self) -> Result<RestoreResult> {
        if !self.static_data_done {
            return Err(STEP.invalid("The stream ended without STATIC_DATA_END"));
        }
        self.punch_holes()?;
        let unnamed = self.populated.unnamed();
        self.punch(&unnamed)?;
        let (store_port, store_domid) = self.p.store;
        let (console_port, console_domid) = self.p.console;
        for (index, port) in [
            (param::STORE_EVTCHN, store_port),
            (param::CONSOLE_EVTCHN, console_port),
        ] {
            self.hv
                .hvm_param_set(self.domid(), index, port.into())
                .map_err(STEP.xc())?;
        }
        let Some(context) = self.context.take() else {
            return Err(STEP.invalid("The stream has no HVM_CONTEXT record"));
        };
        self.hv
            .domain_hvm_setcontext(self.domid(), &context)
            .map_err(STEP.xc())?;
        let store_gfn = self.store_gfn.unwrap_or(0);
        let console_gfn = self.console_gfn.unwrap_or(0);
        self.hv
            .gnttab_seed(
                self.domid(),
                MapFrame::Gfn(Gfn(console_gfn)),
                MapFrame::Gfn(Gfn(store_gfn)),
                console_domid,
                store_domid,
            )
            .map_err(STEP.xc())?;
        log::info!(
            "Restored d{}: {} pages written, populate calls {:?}, pages {:?}, {} given back",
            self.domid(),
            self.stats.pages_written,
            self.stats.populate_calls_by_order,
            self.stats.populated_pages_by_order,
            self.stats.punched_pages
        );
        Ok(RestoreResult {
            store_frame: store_gfn,
            console_frame: console_gfn,
            stats: None,
        })
    }
}
