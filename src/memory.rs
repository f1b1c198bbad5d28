//! Guest RAM population. [`plan_hvm_extents`] is pure: it chooses, for every RAM page, the
//! extent order libxenguest's `meminit_hvm` would use with plentiful memory (1 GiB where a
//! whole aligned GiB lies in a range and clear of the MMIO hole, else 2 MiB, else 4 KiB).
//! [`populate`] issues those extents with as few `populate_physmap` calls as the ABI allows
//! (one per order, the gfn array need not be contiguous), and when an order runs out it
//! splits what is left into the next smaller order, as libxenguest falls back.

use crate::error::{Error, ErrorKind, Result, Step};
use crate::hypervisor::{Hypervisor, MemFlags};
use crate::types::{pages_of_order, usize_of, DomId, Mfn, Pfn, ORDER_1G, ORDER_2M, PAGE_SHIFT};
use serde::Serialize;
use std::collections::BTreeMap;

/// First gfn of the VGA hole a device model emulates (0xA0000).
pub const VGA_HOLE_START_GFN: u64 = 0xA0;
/// End of the VGA hole (0xC0000); the hole is never populated.
pub const VGA_HOLE_END_GFN: u64 = 0xC0;
/// At most this many extents per call: 8 MiB of gfn array, as libxenguest's PV path uses.
pub const MAX_EXTENTS_PER_CALL: usize = 1 << 20;
/// At most this much guest memory per call (1 GiB, as libxenguest's HVM path asks for
/// superpages in batches of 512 2 MiB extents): a call cannot be interrupted, so this bounds
/// how long a cancelled build runs on, and how long one call holds up the caller.
pub const MAX_BYTES_PER_CALL: u64 = 1 << 30;

/// Extents of `order` one populate call asks for at most.
pub fn extents_per_call(order: u32) -> usize {
    let by_bytes = usize_of(MAX_BYTES_PER_CALL >> (PAGE_SHIFT + order.min(ORDER_1G)));
    by_bytes.clamp(1, MAX_EXTENTS_PER_CALL)
}
/// The orders tried, largest first.
pub const ORDERS: [u32; 3] = [ORDER_1G, ORDER_2M, 0];

/// `count` extents of `2^order` pages at consecutive gfns from `gfn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExtentRun {
    /// First gfn.
    pub gfn: u64,
    /// Extent order.
    pub order: u32,
    /// Number of extents.
    pub count: u64,
}

impl ExtentRun {
    /// Pages covered.
    pub fn pages(&self) -> u64 {
        self.count << self.order
    }

    /// One past the last gfn.
    pub fn end_gfn(&self) -> u64 {
        self.gfn + self.pages()
    }
}

/// Plan the extents for guest RAM `ranges` (pages, `[start, end)`), avoiding the MMIO hole
/// `hole` (pages) for 1 GiB extents and, with a device model, the VGA hole.
pub fn plan_hvm_extents(
    ranges: &[(u64, u64)],
    hole: (u64, u64),
    device_model: bool,
) -> Vec<ExtentRun> {
    let mut runs: Vec<ExtentRun> = Vec::new();
    let mut push = |gfn: u64, order: u32| match runs.last_mut() {
        Some(last) if last.order == order && last.end_gfn() == gfn => last.count += 1,
        _ => runs.push(ExtentRun {
            gfn,
            order,
            count: 1,
        }),
    };
    for &(start, end) in ranges {
        let mut cur = start;
        if start == 0 && device_model {
            for gfn in 0..VGA_HOLE_START_GFN.min(end) {
                push(gfn, 0);
            }
            cur = VGA_HOLE_END_GFN;
        }
        while cur < end {
            let order = [ORDER_1G, ORDER_2M]
                .into_iter()
                .find(|&order| {
                    let len = pages_of_order(order);
                    let clear_of_hole = order != ORDER_1G || cur + len <= hole.0 || cur >= hole.1;
                    cur % len == 0 && cur + len <= end && clear_of_hole
                })
                .unwrap_or(0);
            push(cur, order);
            cur += pages_of_order(order);
        }
    }
    runs
}

/// Pages per order in a plan.
pub fn pages_by_order(runs: &[ExtentRun]) -> BTreeMap<u32, u64> {
    let mut pages = BTreeMap::new();
    for run in runs {
        *pages.entry(run.order).or_insert(0) += run.pages();
    }
    pages
}

/// What a populate pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PopulateStats {
    /// Pages populated at each order.
    pub pages_by_order: BTreeMap<u32, u64>,
    /// `populate_physmap` calls made at each order.
    pub calls_by_order: BTreeMap<u32, u64>,
    /// Extents of each order that the host could not supply and were split smaller.
    pub fallback_extents_by_order: BTreeMap<u32, u64>,
}

impl PopulateStats {
    /// Pages populated in all.
    pub fn pages(&self) -> u64 {
        self.pages_by_order.values().sum()
    }

    /// Calls made in all.
    pub fn calls(&self) -> u64 {
        self.calls_by_order.values().sum()
    }
}

/// Populate the planned extents of `domid` with `flags` (PoD and/or an exact node); failures
/// are reported at `step`, the caller's.
///
/// Each order goes in as few calls as possible. When Xen completes fewer extents than asked,
/// the rest of that order is split into the next smaller order (the host has no free chunk
/// of that order, or the domain has no headroom for one); a shortfall at 4 KiB is an error
/// naming the pages missing and, with an exact node, the node.
pub fn populate(
    hv: &dyn Hypervisor,
    domid: DomId,
    runs: &[ExtentRun],
    flags: MemFlags,
    step: Step,
) -> Result<PopulateStats> {
    populate_recording(hv, domid, runs, flags, step, |_, _, _| {})
}

/// Extents for a PV guest of `total_pages` (`meminit_pv`): 2 MiB extents for every whole
/// superpage from pfn 0, 4 KiB pages for the rest.
pub fn plan_pv_extents(total_pages: u64) -> Vec<ExtentRun> {
    let superpages = total_pages >> ORDER_2M;
    let rest = total_pages - (superpages << ORDER_2M);
    let mut runs = Vec::new();
    if superpages > 0 {
        runs.push(ExtentRun {
            gfn: 0,
            order: ORDER_2M,
            count: superpages,
        });
    }
    if rest > 0 {
        runs.push(ExtentRun {
            gfn: superpages << ORDER_2M,
            order: 0,
            count: rest,
        });
    }
    runs
}

/// [`populate`] for a PV guest of `total_pages` (the runs must cover `[0, total_pages)`):
/// Xen writes each extent's machine frame back, and the p2m (`pfn -> mfn`) is built from
/// them. The p2m's allocation is the one thing proportional to the guest; it is refused with
/// an error, never an abort, when it cannot be had.
pub fn populate_pv(
    hv: &dyn Hypervisor,
    domid: DomId,
    runs: &[ExtentRun],
    flags: MemFlags,
    total_pages: u64,
    step: Step,
) -> Result<(P2m, PopulateStats)> {
    let too_many = || step.invalid(format!("{total_pages} pages do not fit in this process"));
    let total = usize::try_from(total_pages).map_err(|_| too_many())?;
    let mut p2m: Vec<u64> = Vec::new();
    p2m.try_reserve_exact(total).map_err(|_| too_many())?;
    p2m.resize(total, u64::MAX);
    let stats = populate_recording(hv, domid, runs, flags, step, |order, pfns, mfns| {
        for (&pfn, &mfn) in pfns.iter().zip(mfns) {
            for k in 0..pages_of_order(order) {
                // In bounds: the runs lie in [0, total_pages).
                if let Some(slot) = usize::try_from(pfn + k).ok().and_then(|i| p2m.get_mut(i)) {
                    *slot = mfn + k;
                }
            }
        }
    })?;
    Ok((P2m(p2m), stats))
}

/// A PV domain's p2m: the machine frame behind each pfn, as `populate_physmap` wrote them
/// back. The raw list is what the guest gets (its `mfn_list`) and what its page tables map.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct P2m(Vec<u64>);

impl P2m {
    /// A p2m from its list (`list[pfn]` = mfn).
    pub fn from_list(list: Vec<u64>) -> Self {
        P2m(list)
    }

    /// The machine frame behind `pfn`, if the p2m reaches it.
    pub fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        usize::try_from(pfn.0)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|&m| Mfn(m))
    }

    /// Frames the p2m covers.
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    /// Whether it covers none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The list, as the guest's `mfn_list` holds it.
    pub fn as_list(&self) -> &[u64] {
        &self.0
    }
}

/// [`populate`], handing `record(order, gfns asked, frames written back)` what each call
/// completed (for a PV domain Xen writes each extent's MFN over its gfn).
fn populate_recording(
    hv: &dyn Hypervisor,
    domid: DomId,
    runs: &[ExtentRun],
    flags: MemFlags,
    step: Step,
    mut record: impl FnMut(u32, &[u64], &[u64]),
) -> Result<PopulateStats> {
    let wanted_pages: u64 = runs.iter().map(ExtentRun::pages).sum();
    let mut pending: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for run in runs {
        let gfns = pending.entry(run.order).or_default();
        gfns.extend((0..run.count).map(|i| run.gfn + (i << run.order)));
    }

    let mut stats = PopulateStats::default();
    for (i, &order) in ORDERS.iter().enumerate() {
        let gfns = pending.remove(&order).unwrap_or_default();
        let mut pos = 0;
        while pos < gfns.len() {
            let chunk_end = gfns.len().min(pos + extents_per_call(order));
            let mut chunk = gfns[pos..chunk_end].to_vec();
            let asked = chunk.len();
            let done = hv
                .domain_populate_physmap(domid, order, flags, &mut chunk)
                .map_err(step.xc())?
                .min(asked);
            record(order, &gfns[pos..pos + done], &chunk[..done]);
            *stats.calls_by_order.entry(order).or_insert(0) += 1;
            *stats.pages_by_order.entry(order).or_insert(0) += (done as u64) << order;
            pos += done;
            if done == asked {
                continue;
            }
            let Some(&smaller) = ORDERS.get(i + 1) else {
                return Err(Error::new(
                    step,
                    ErrorKind::OutOfMemory {
                        wanted_pages,
                        populated_pages: stats.pages(),
                        node: flags.node.filter(|_| flags.exact_node),
                    },
                ));
            };
            log::debug!(
                "domid = {domid}; order {order}: {done} of {asked} extents; {} extents fall back to order {smaller}",
                gfns.len() - pos
            );
            *stats.fallback_extents_by_order.entry(order).or_insert(0) += (gfns.len() - pos) as u64;
            let split = pending.entry(smaller).or_default();
            for &gfn in &gfns[pos..] {
                split.extend((0..pages_of_order(order - smaller)).map(|j| gfn + (j << smaller)));
            }
            break;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 18; // pages

    #[test]
    fn hvm_4096_mib_plan_matches_libxenguest_orders() {
        // RAM [0, 0xF0000) and [0x100000, 0x110000); hole [0xF0000, 0x100000).
        let runs = plan_hvm_extents(
            &[(0, 0xF0000), (0x100000, 0x110000)],
            (0xF0000, 0x100000),
            true,
        );
        let pages = pages_by_order(&runs);
        assert_eq!(pages[&0], 160 + 320);
        assert_eq!(pages[&ORDER_2M] / 512, 511 + 384 + 128);
        assert_eq!(pages[&ORDER_1G] / GIB, 2);
        assert_eq!(
            pages.values().sum::<u64>(),
            (4096 << 8) - 32,
            "all but the VGA hole"
        );
        assert_eq!(
            runs[0],
            ExtentRun {
                gfn: 0,
                order: 0,
                count: 0xA0
            }
        );
        assert_eq!(
            runs[1],
            ExtentRun {
                gfn: 0xC0,
                order: 0,
                count: 0x140
            }
        );
        assert_eq!(
            runs[2],
            ExtentRun {
                gfn: 0x200,
                order: ORDER_2M,
                count: 511
            }
        );
        assert_eq!(
            runs[3],
            ExtentRun {
                gfn: GIB,
                order: ORDER_1G,
                count: 2
            }
        );
    }

    #[test]
    fn without_device_model_the_first_gib_is_a_1g_extent() {
        let runs = plan_hvm_extents(&[(0, 2 * GIB)], (0xFC000, 0x100000), false);
        assert_eq!(
            runs,
            vec![ExtentRun {
                gfn: 0,
                order: ORDER_1G,
                count: 2
            }]
        );
    }

    #[test]
    fn a_gib_touching_the_hole_gets_no_1g_extent() {
        // A range that (wrongly) runs into the hole: the GiB it shares is done in 2 MiB.
        let runs = plan_hvm_extents(&[(3 * GIB, 4 * GIB)], (0xF0000, 0x100000), false);
        assert_eq!(pages_by_order(&runs).get(&ORDER_1G), None);
    }

    fn check_plan(ranges: &[(u64, u64)], hole: (u64, u64), device_model: bool) {
        let runs = plan_hvm_extents(ranges, hole, device_model);
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for run in &runs {
            for i in 0..run.count {
                let gfn = run.gfn + (i << run.order);
                assert_eq!(
                    gfn % pages_of_order(run.order),
                    0,
                    "aligned to its order: {run:?}"
                );
                let end = gfn + pages_of_order(run.order);
                if run.order == ORDER_1G {
                    assert!(end <= hole.0 || gfn >= hole.1, "1 GiB extent in the hole");
                }
                covered.push((gfn, end));
            }
        }
        covered.sort_unstable();
        let mut expected: Vec<(u64, u64)> = Vec::new();
        for &(s, e) in ranges {
            if s == 0 && device_model {
                expected.push((0, VGA_HOLE_START_GFN.min(e)));
                if e > VGA_HOLE_END_GFN {
                    expected.push((VGA_HOLE_END_GFN, e));
                }
            } else if e > s {
                expected.push((s, e));
            }
        }
        // Merge the extents back into ranges: every RAM page exactly once, nothing else.
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in covered {
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                Some(last) => {
                    assert!(last.1 < s, "overlapping extents at {s:#x}");
                    merged.push((s, e));
                }
                None => merged.push((s, e)),
            }
        }
        let mut expected_merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in expected {
            match expected_merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => expected_merged.push((s, e)),
            }
        }
        assert_eq!(merged, expected_merged);
    }

    #[test]
    fn pv_plan_is_superpages_then_the_rest() {
        assert_eq!(
            plan_pv_extents(1025),
            vec![
                ExtentRun {
                    gfn: 0,
                    order: ORDER_2M,
                    count: 2
                },
                ExtentRun {
                    gfn: 1024,
                    order: 0,
                    count: 1
                },
            ]
        );
        assert_eq!(plan_pv_extents(0), vec![]);
        assert_eq!(
            plan_pv_extents(100),
            vec![ExtentRun {
                gfn: 0,
                order: 0,
                count: 100
            }]
        );
    }

    #[test]
    fn pv_populate_builds_the_p2m_and_falls_back() {
        use crate::hypervisor::sim::{DomainConfig, SimHost};
        // Half the 2 MiB chunks gone: some superpages fall back to 4 KiB, every pfn mapped.
        let host = SimHost::from_spec("nodes=1,node_mib=256,half_2m=0").unwrap();
        let domid = host.create_domain(&DomainConfig::pv(200 << 10, 1)).unwrap();
        let total = 160 << 8; // 160 MiB
        let (p2m, stats) = populate_pv(
            &host,
            domid,
            &plan_pv_extents(total),
            MemFlags::default(),
            total,
            Step::BootMemInit,
        )
        .unwrap();
        assert_eq!(stats.pages(), total);
        assert_eq!(p2m.len(), total);
        assert!(
            p2m.as_list().iter().all(|&m| m != u64::MAX),
            "every pfn has a frame"
        );
        assert_eq!(p2m.mfn(Pfn(total)), None);
        let mut sorted = p2m.as_list().to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len() as u64, total, "no frame twice");
        // Too little on the host: the one out-of-memory error, populated + missing = asked.
        let host = SimHost::from_spec("nodes=1,node_mib=64").unwrap();
        let domid = host.create_domain(&DomainConfig::pv(200 << 10, 1)).unwrap();
        let e = populate_pv(
            &host,
            domid,
            &plan_pv_extents(total),
            MemFlags::default(),
            total,
            Step::BootMemInit,
        )
        .unwrap_err();
        let ErrorKind::OutOfMemory {
            wanted_pages,
            populated_pages,
            node: None,
        } = e.kind
        else {
            panic!("{e}");
        };
        assert_eq!(wanted_pages, total);
        assert!(populated_pages < total);
    }

    proptest! {
        #[test]
        fn every_ram_page_once_nothing_in_the_holes(
            mem_mib in 2u64..20_000,
            hole_mib_log in 8u32..12,
            device_model: bool,
        ) {
            let hole_pages = (1u64 << hole_mib_log) << 8;
            let hole_start = (1u64 << 20) - hole_pages;
            let mem_pages = mem_mib << 8;
            let mut ranges = vec![(0, mem_pages.min(hole_start))];
            if mem_pages > hole_start {
                ranges.push((1 << 20, (1 << 20) + mem_pages - hole_start));
            }
            check_plan(&ranges, (hole_start, 1 << 20), device_model);
        }

        /// The PV plan covers [0, total) exactly once, superpages aligned.
        #[test]
        fn pv_plan_covers_every_page_once(total in 0u64..(1 << 22)) {
            let runs = plan_pv_extents(total);
            let mut next = 0;
            for r in &runs {
                prop_assert_eq!(r.gfn, next);
                prop_assert_eq!(r.gfn % pages_of_order(r.order), 0);
                next = r.end_gfn();
            }
            prop_assert_eq!(next, total);
        }
    }
}
