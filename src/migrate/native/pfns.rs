//! Which guest frames a restore has populated, and where it can populate a superpage: pure,
//! no hypervisor, so that the choice is tested on its own.
//!
//! libxenguest's restore (xen-project/xen `tools/libs/guest/xg_sr_restore.c`,
//! `populate_pfns`, at RELEASE-4.17.3) populates each new pfn of a PAGE_DATA batch with a
//! 4 KiB page: a 2 GiB guest takes 512 calls and ends with no superpage at all. A save's first
//! pass names every pfn from 0 up to the sender's highest, in ascending batches, holes as XTAB
//! (`xg_sr_save.c`, `send_all`). So when a populatable pfn starts an aligned 1 GiB (else
//! 2 MiB) region and lies above every pfn named so far, nothing in that region has been seen
//! yet, and the whole region can be populated at once; the pfns of the region the stream then
//! names as holes (XTAB, BROKEN) are given back. That is the builder's own layout again
//! (superpages wherever a whole aligned region is RAM) with one or two calls per GiB.
//!
//! Tracking is bounded by what Xen let the domain populate, never by the stream: populated
//! pfns are kept as merged ranges, and each superpage populated ahead carries one bit per
//! page for "named by the stream yet".

use crate::memory::ORDERS;
use crate::migrate::stream::PageType;
use crate::types::{pages_of_order, usize_of, Pfn, ORDER_1G, P2M_GFN_LIMIT};
use std::collections::{BTreeMap, BTreeSet};

/// A superpage populated before the stream named its pfns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ahead {
    order: u32,
    /// Bit `i`: pfn `start + i` has been named.
    named: Vec<u64>,
}

impl Ahead {
    fn new(order: u32) -> Self {
        Ahead {
            order,
            named: vec![0; usize_of(pages_of_order(order).div_ceil(64))],
        }
    }

    /// Mark page `i` named; whether it was not before.
    fn name(&mut self, i: u64) -> bool {
        let (word, bit) = (usize_of(i / 64), 1u64 << (i % 64));
        let first = self.named[word] & bit == 0;
        self.named[word] |= bit;
        first
    }
}

/// What naming a pfn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The pfn lies in a superpage populated ahead and is named for the first time.
    FirstInAhead,
    /// Anything else.
    Other,
}

/// The populated pfns of a domain being restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Populated {
    /// Populated pfns, merged: start -> end (exclusive).
    ranges: BTreeMap<u64, u64>,
    /// Superpages populated ahead of the stream: first pfn -> tracking.
    ahead: BTreeMap<u64, Ahead>,
    /// The highest pfn the stream has named.
    high_water: Option<u64>,
}

impl Populated {
    /// Nothing populated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `pfn` is populated.
    pub fn contains(&self, pfn: u64) -> bool {
        self.ranges
            .range(..=pfn)
            .next_back()
            .is_some_and(|(_, &end)| pfn < end)
    }

    /// Whether any pfn of `[start, end)` is populated.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ranges
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }

    /// The populated pfns as merged ranges `[start, end)`, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    /// Pages populated.
    pub fn pages(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Note `[start, start + 2^order)` populated; a superpage is tracked as populated ahead.
    pub fn insert(&mut self, start: u64, order: u32) {
        let first = start;
        let mut end = start + pages_of_order(order);
        let mut start = start;
        // Merge with a range that touches on the left, then swallow those on the right.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let touching: Vec<u64> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in touching {
            if let Some(e) = self.ranges.remove(&s) {
                end = end.max(e);
            }
        }
        self.ranges.insert(start, end);
        if order > 0 {
            self.ahead.insert(first, Ahead::new(order));
        }
    }

    /// Note `pfn` given back.
    pub fn remove(&mut self, pfn: u64) {
        let Some((&s, &e)) = self.ranges.range(..=pfn).next_back() else {
            return;
        };
        if pfn >= e {
            return;
        }
        self.ranges.remove(&s);
        if s < pfn {
            self.ranges.insert(s, pfn);
        }
        if pfn + 1 < e {
            self.ranges.insert(pfn + 1, e);
        }
    }

    /// The stream names `pfn` (any type).
    pub fn name(&mut self, pfn: u64) -> Named {
        self.high_water = Some(self.high_water.map_or(pfn, |h| h.max(pfn)));
        match self.ahead.range_mut(..=pfn).next_back() {
            Some((&start, ahead)) if pfn - start < pages_of_order(ahead.order) => {
                if ahead.name(pfn - start) {
                    Named::FirstInAhead
                } else {
                    Named::Other
                }
            }
            _ => Named::Other,
        }
    }

    /// The pfns of superpages populated ahead that the stream never named and that are
    /// still populated: what is left to give back at the end of the stream.
    pub fn unnamed(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (&start, ahead) in &self.ahead {
            for i in 0..pages_of_order(ahead.order) {
                let named = ahead.named[usize_of(i / 64)] & (1 << (i % 64)) != 0;
                if !named && self.contains(start + i) {
                    out.push(start + i);
                }
            }
        }
        out
    }

    /// Pages populated by superpages ahead, by order (the restored guest's page mix, before
    /// holes were given back).
    pub fn ahead_pages_by_order(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for a in self.ahead.values() {
            *out.entry(a.order).or_insert(0) += pages_of_order(a.order);
        }
        out
    }
}

/// The extents to populate for one PAGE_DATA batch: for each populatable pfn not yet
/// populated, a superpage of at most `max_order` when it starts an aligned region above
/// every pfn named so far (and the region is clear), with the rest of its 1 GiB region in
/// superpages of the same order; else its own 4 KiB page. Superpages take at most
/// `headroom_pages` in all (what Xen would still give the domain: asking for more only makes
/// Xen refuse, and log it), so a small guest under the toolstack's `max_pages` gets 2 MiB
/// pages up to its size at once. Ascending by gfn within each order; each pfn at most once.
pub fn plan_batch(
    populated: &Populated,
    entries: &[(Pfn, PageType)],
    max_order: u32,
    headroom_pages: u64,
) -> Vec<(u64, u32)> {
    let mut left = headroom_pages;
    let mut high_water = populated.high_water;
    let mut superpages: Vec<(u64, u64)> = Vec::new();
    let mut plan: Vec<(u64, u32)> = Vec::new();
    let mut singles = BTreeSet::new();
    for &(Pfn(pfn), t) in entries {
        let covered = populated.contains(pfn)
            || singles.contains(&pfn)
            || superpages.iter().any(|&(s, e)| (s..e).contains(&pfn));
        if t.populates() && !covered {
            let above = high_water.is_none_or(|h| h < pfn);
            let order = ORDERS
                .into_iter()
                .filter(|&o| o > 0 && o <= max_order)
                .find(|&o| {
                    let len = pages_of_order(o);
                    len <= left
                        && above
                        && pfn % len == 0
                        && pfn + len <= P2M_GFN_LIMIT
                        && !populated.overlaps(pfn, pfn + len)
                })
                .unwrap_or(0);
            if order == 0 {
                singles.insert(pfn);
                plan.push((pfn, 0));
            } else {
                // The rest of the enclosing 1 GiB region goes ahead too, in extents of the same
                // order: one call where the pass would otherwise make one per batch.
                let region_end = (pfn | (pages_of_order(ORDER_1G) - 1)) + 1;
                let len = pages_of_order(order);
                let mut start = pfn;
                while start < region_end.min(P2M_GFN_LIMIT) && len <= left {
                    if !populated.overlaps(start, start + len) {
                        match superpages.last_mut() {
                            Some(last) if last.1 == start => last.1 = start + len,
                            _ => superpages.push((start, start + len)),
                        }
                        plan.push((start, order));
                        left -= len;
                    }
                    start += len;
                }
            }
        }
        high_water = Some(high_water.map_or(pfn, |h| h.max(pfn)));
    }
    plan.sort_by_key(|&(gfn, order)| (std::cmp::Reverse(order), gfn));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ORDER_2M;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 18;
    const MIB2: u64 = 512;

    fn batch(range: std::ops::Range<u64>, hole: impl Fn(u64) -> bool) -> Vec<(Pfn, PageType)> {
        range
            .map(|p| {
                let t = if hole(p) {
                    PageType::XTab
                } else {
                    PageType::NoTab
                };
                (Pfn(p), t)
            })
            .collect()
    }

    /// Walk a first pass as the save sends it (batches of 1024, ascending), populating what
    /// the plan says and giving back the holes named inside a superpage: the calls made.
    fn first_pass(
        end: u64,
        hole: impl Fn(u64) -> bool + Copy,
        max_order: u32,
        mut headroom: u64,
    ) -> (Populated, Vec<(u64, u32)>, Vec<u64>) {
        let mut p = Populated::new();
        let mut calls = Vec::new();
        let mut punched = Vec::new();
        let mut start = 0;
        while start < end {
            let b = batch(start..(start + 1024).min(end), hole);
            let plan = plan_batch(&p, &b, max_order, headroom);
            for &(gfn, order) in &plan {
                headroom -= pages_of_order(order);
                p.insert(gfn, order);
            }
            calls.extend(plan);
            for &(Pfn(pfn), t) in &b {
                if p.name(pfn) == Named::FirstInAhead && !t.populates() {
                    p.remove(pfn);
                    punched.push(pfn);
                    headroom += 1;
                }
            }
            start += 1024;
        }
        (p, calls, punched)
    }

    #[test]
    fn a_2_gib_hvm_guest_takes_two_gib_pages_and_gives_back_the_vga_hole() {
        let vga = |p: u64| (0xa0..0xc0).contains(&p);
        let (p, calls, punched) = first_pass(2 * GIB, vga, ORDER_1G, u64::MAX);
        assert_eq!(calls, vec![(0, ORDER_1G), (GIB, ORDER_1G)]);
        assert_eq!(punched, (0xa0..0xc0).collect::<Vec<_>>());
        assert_eq!(p.pages(), 2 * GIB - 0x20);
        assert!(p.unnamed().is_empty());
        assert_eq!(
            p.ahead_pages_by_order(),
            BTreeMap::from([(ORDER_1G, 2 * GIB)])
        );
    }

    #[test]
    fn ram_ending_inside_a_region_takes_2_mib_pages_and_gives_back_the_rest() {
        // 1 GiB + 3 MiB + 4 KiB of RAM, then holes up to 2 GiB (the sender's p2m).
        let ram_end = GIB + 3 * 256 + 1;
        let (p, calls, punched) = first_pass(2 * GIB, |pfn| pfn >= ram_end, ORDER_2M, u64::MAX);
        // Each GiB is planned whole when its first pfn is seen: 2 batches, 512 extents each.
        assert_eq!(calls.len(), 1024);
        assert!(calls.iter().all(|c| c.1 == ORDER_2M));
        assert_eq!(calls[512], (GIB, ORDER_2M));
        assert_eq!(p.pages(), ram_end);
        assert_eq!(punched.len() as u64, 2 * GIB - ram_end);
        assert_eq!(
            p.ahead_pages_by_order(),
            BTreeMap::from([(ORDER_2M, 2 * GIB)])
        );
    }

    /// The toolstack's max_pages for a 128 MiB guest (RAM + 1 MiB): no 1 GiB page, and the
    /// first GiB's 2 MiB pages stop at the headroom, so nothing is asked that Xen refuses.
    #[test]
    fn superpages_stop_at_the_headroom() {
        let ram = 128 * 256;
        let vga = |p: u64| (0xa0..0xc0).contains(&p) || p >= ram;
        let (p, calls, punched) = first_pass(GIB, vga, ORDER_1G, ram + 256);
        let superpages: Vec<_> = calls.iter().filter(|c| c.1 > 0).collect();
        assert_eq!(
            superpages.len(),
            64,
            "128 MiB in 2 MiB pages, then no more room"
        );
        assert!(superpages.iter().all(|c| c.1 == ORDER_2M && c.0 < ram));
        assert_eq!(punched, (0xa0..0xc0).collect::<Vec<_>>());
        assert_eq!(p.pages(), ram - 0x20);
        // No headroom: 4 KiB pages only.
        let b = batch(0..8, |_| false);
        assert!(plan_batch(&Populated::new(), &b, ORDER_1G, 0)
            .iter()
            .all(|c| c.1 == 0));
    }

    #[test]
    fn later_passes_never_populate_ahead() {
        let (mut p, _, _) = first_pass(GIB, |_| false, ORDER_1G, u64::MAX);
        // A dirty page below the high water, then one past everything named, unaligned.
        let again = [(Pfn(5), PageType::NoTab), (Pfn(GIB + 7), PageType::NoTab)];
        assert_eq!(
            plan_batch(&p, &again, ORDER_1G, u64::MAX),
            vec![(GIB + 7, 0)]
        );
        p.insert(GIB + 7, 0);
        assert!(p.contains(GIB + 7) && !p.contains(GIB + 8));
    }

    #[test]
    fn a_pfn_named_twice_in_a_batch_is_planned_once() {
        let b = [(Pfn(3), PageType::NoTab), (Pfn(3), PageType::NoTab)];
        assert_eq!(plan_batch(&Populated::new(), &b, 0, u64::MAX), vec![(3, 0)]);
    }

    proptest! {
        /// Whatever the stream names, in any order: every populatable pfn ends populated,
        /// no extent overlaps another or anything populated, and nothing is populated that
        /// was not either named populatable or inside a superpage given back later.
        #[test]
        fn plans_cover_what_is_named_and_never_overlap(
            pfns in proptest::collection::vec((0u64..4 * MIB2, any::<bool>()), 1..300),
            max_order in prop_oneof![Just(0u32), Just(ORDER_2M)],
            headroom in prop_oneof![Just(u64::MAX), 0u64..3 * MIB2],
        ) {
            let mut p = Populated::new();
            for chunk in pfns.chunks(37) {
                let b: Vec<_> = chunk
                    .iter()
                    .map(|&(pfn, ram)| (Pfn(pfn), if ram { PageType::NoTab } else { PageType::XTab }))
                    .collect();
                let plan = plan_batch(&p, &b, max_order, headroom);
                let ahead: u64 = plan
                    .iter()
                    .filter(|c| c.1 > 0)
                    .map(|c| pages_of_order(c.1))
                    .sum();
                prop_assert!(ahead <= headroom, "{} pages in superpages, {} of room", ahead, headroom);
                let mut sorted: Vec<(u64, u64)> = plan
                    .iter()
                    .map(|&(gfn, order)| (gfn, gfn + pages_of_order(order)))
                    .collect();
                sorted.sort_unstable();
                for &(gfn, end) in &sorted {
                    prop_assert_eq!(gfn % (end - gfn), 0);
                    prop_assert!(!p.overlaps(gfn, end));
                }
                for pair in sorted.windows(2) {
                    prop_assert!(pair[0].1 <= pair[1].0, "{:?} overlaps", pair);
                }
                for &(gfn, order) in &plan {
                    p.insert(gfn, order);
                }
                for &(Pfn(pfn), t) in &b {
                    if p.name(pfn) == Named::FirstInAhead && !t.populates() {
                        p.remove(pfn);
                    }
                    if t.populates() {
                        prop_assert!(p.contains(pfn));
                    }
                }
            }
            for pfn in p.unnamed() {
                p.remove(pfn);
            }
            let named_ram: BTreeSet<u64> =
                pfns.iter().filter(|x| x.1).map(|x| x.0).collect();
            for (start, end) in p.ranges() {
                for pfn in start..end {
                    // Populated: named RAM at some point, or named a hole only after it was
                    // named RAM (then kept, as libxenguest keeps it).
                    prop_assert!(named_ram.contains(&pfn), "pfn {} populated", pfn);
                }
            }
        }
    }
}
