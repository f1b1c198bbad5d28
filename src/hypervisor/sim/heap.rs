//! Xen's heap as the simulator models it: one buddy allocator per NUMA node
//! (`xen/common/page_alloc.c`). Each node's machine frames are one contiguous range; its
//! free memory sits on per-order free lists of MFN-aligned chunks (order 0..=18).
//!
//! Left out on purpose: zones (so no DMA-zone reservation on multi-node hosts), dirty
//! markers and scrubbing (all free memory counts as clean), and the order a real free list
//! keeps its chunks in (the simulator takes the lowest-addressed chunk of an order, as a
//! freshly booted heap would, whose lists were filled in ascending address order).

use super::spec::HostSpec;
use crate::types::{pages_of_mib, MAX_ORDER};
use std::collections::BTreeSet;

/// Number of free lists per node (orders 0..=MAX_ORDER).
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

const GIB_PAGES: u64 = 1 << 18;
const MIB2_PAGES: u64 = 1 << 9;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NodeHeap {
    /// First MFN of the node.
    base: u64,
    /// Frames the node spans.
    pages: u64,
    /// Free chunks per order, by first MFN.
    free: Vec<BTreeSet<u64>>,
    /// Pages on this node's free lists (`node_avail_pages`).
    free_pages: u64,
}

impl NodeHeap {
    fn contains(&self, mfn: u64) -> bool {
        mfn >= self.base && mfn - self.base < self.pages
    }
}

/// The host's free memory: per-node buddy free lists and the global counter.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Heap {
    nodes: Vec<NodeHeap>,
    /// `total_avail_pages`.
    total_free: u64,
}

/// Largest order a chunk starting at `mfn` with `len` pages left may have.
fn chunk_order(mfn: u64, len: u64) -> u32 {
    let align = if mfn == 0 {
        MAX_ORDER
    } else {
        mfn.trailing_zeros().min(MAX_ORDER)
    };
    let fit = 63 - len.leading_zeros(); // floor(log2(len)), len > 0
    align.min(fit)
}

impl Heap {
    /// The heap of a host described by `spec`, and per node the pages that start out held
    /// by other domains (`free_mib` and the fragmentation options take them).
    pub fn build(spec: &HostSpec) -> (Heap, Vec<u64>) {
        let node_pages = pages_of_mib(spec.node_mib);
        let mut heap = Heap {
            nodes: Vec::new(),
            total_free: 0,
        };
        let mut held = Vec::new();
        let mut base = 0u64;
        for node in 0..spec.nodes {
            heap.nodes.push(NodeHeap {
                base,
                pages: node_pages,
                free: vec![BTreeSet::new(); NR_ORDERS],
                free_pages: 0,
            });
            let free = pages_of_mib(spec.node_free_mib(node)).min(node_pages);
            let mut ranges = vec![(base, base + free)];
            if spec.no_1g.contains(&node) {
                ranges = punch(&ranges, GIB_PAGES, |_| true);
            }
            if spec.half_2m.contains(&node) {
                ranges = punch(&ranges, MIB2_PAGES, |block| (block / MIB2_PAGES) % 2 == 1);
            }
            let idx = node as usize;
            if spec.only_4k.contains(&node) {
                for (start, end) in ranges {
                    // Keep even frames: no two free pages are buddies, nothing merges.
                    let mut mfn = start + (start % 2);
                    while mfn < end {
                        heap.free_on(idx, mfn, 0);
                        mfn += 2;
                    }
                }
            } else {
                for (start, end) in ranges {
                    heap.free_range(start, end - start);
                }
            }
            held.push(node_pages - heap.nodes[idx].free_pages);
            // Nodes start GiB-aligned, as real NUMA ranges do.
            base = (base + node_pages).div_ceil(GIB_PAGES) * GIB_PAGES;
        }
        (heap, held)
    }

    /// Number of nodes.
    pub fn nr_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Free pages on the whole host.
    pub fn total_free(&self) -> u64 {
        self.total_free
    }

    /// Free pages on `node` (0 for a node that does not exist).
    pub fn node_free(&self, node: usize) -> u64 {
        self.nodes.get(node).map_or(0, |n| n.free_pages)
    }

    /// Frames the host spans, summed over nodes.
    pub fn total_pages(&self) -> u64 {
        self.nodes.iter().map(|n| n.pages).sum()
    }

    /// `[first, end)` MFNs of `node`.
    pub fn node_range(&self, node: usize) -> Option<(u64, u64)> {
        self.nodes.get(node).map(|n| (n.base, n.base + n.pages))
    }

    /// The node holding `mfn`.
    pub fn node_of(&self, mfn: u64) -> Option<usize> {
        let i = self
            .nodes
            .partition_point(|n| n.base <= mfn)
            .checked_sub(1)?;
        self.nodes[i].contains(mfn).then_some(i)
    }

    /// Take a `2^order` block from `node` as `alloc_heap_pages()` does once `get_free_buddy()`
    /// picked the node: the smallest order with a free chunk, split keeping the *upper*
    /// half each time (lower halves go back on their lists). `None` if the node has no
    /// chunk of at least that order.
    pub fn take(&mut self, node: usize, order: u32) -> Option<u64> {
        if order > MAX_ORDER {
            return None;
        }
        let n = self.nodes.get_mut(node)?;
        let want = 1u64 << order;
        if n.free_pages < want {
            return None;
        }
        let mut k = order as usize;
        let mut mfn = loop {
            if k >= NR_ORDERS {
                return None;
            }
            if let Some(m) = n.free[k].pop_first() {
                break m;
            }
            k += 1;
        };
        while k > order as usize {
            k -= 1;
            n.free[k].insert(mfn);
            mfn += 1 << k;
        }
        n.free_pages -= want;
        self.total_free -= want;
        Some(mfn)
    }

    /// Return an aligned `2^order` block, merging with free buddies up to order 18
    /// (`free_heap_pages()`). A block outside every node is ignored and logged: the
    /// accounting check reports the loss.
    pub fn free(&mut self, mfn: u64, order: u32) {
        match self.node_of(mfn) {
            Some(node) => self.free_on(node, mfn, order),
            None => log::error!("sim heap: freeing mfn {mfn:#x} outside every node"),
        }
    }

    fn free_on(&mut self, node: usize, mut mfn: u64, mut order: u32) {
        let n = &mut self.nodes[node];
        n.free_pages += 1 << order;
        self.total_free += 1 << order;
        while order < MAX_ORDER {
            let buddy = mfn ^ (1 << order);
            // A buddy on this node's own list is on this node, so merging never straddles
            // nodes.
            if !n.free[order as usize].remove(&buddy) {
                break;
            }
            mfn = mfn.min(buddy);
            order += 1;
        }
        n.free[order as usize].insert(mfn);
    }

    /// Return `len` pages from `mfn` (any alignment) as the largest aligned chunks.
    pub fn free_range(&mut self, mut mfn: u64, mut len: u64) {
        while len > 0 {
            let order = chunk_order(mfn, len);
            self.free(mfn, order);
            mfn += 1 << order;
            len -= 1 << order;
        }
    }

    /// Free chunks on `node` per order (all zero for a node that does not exist).
    pub fn chunks_by_order(&self, node: usize) -> [u64; NR_ORDERS] {
        let mut out = [0u64; NR_ORDERS];
        if let Some(n) = self.nodes.get(node) {
            for (o, list) in n.free.iter().enumerate() {
                out[o] = list.len() as u64;
            }
        }
        out
    }

    /// Every free chunk as `(first mfn, pages)`.
    pub fn free_chunks(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.nodes.iter().flat_map(|n| {
            n.free
                .iter()
                .enumerate()
                .flat_map(|(o, list)| list.iter().map(move |&m| (m, 1u64 << o)))
        })
    }

    /// Internal consistency: counters equal the lists, chunks are aligned and inside their
    /// node, and no two free buddies were left unmerged.
    pub fn check(&self) -> Result<(), String> {
        let mut total = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            let mut sum = 0;
            for (o, list) in n.free.iter().enumerate() {
                for &m in list {
                    let size = 1u64 << o;
                    if m % size != 0 || !n.contains(m) || !n.contains(m + size - 1) {
                        return Err(format!("node {i}: bad order-{o} chunk at mfn {m:#x}"));
                    }
                    if o < MAX_ORDER as usize && list.contains(&(m ^ size)) {
                        return Err(format!(
                            "node {i}: unmerged order-{o} buddies at mfn {m:#x}"
                        ));
                    }
                    sum += size;
                }
            }
            if sum != n.free_pages {
                return Err(format!(
                    "node {i}: free lists hold {sum} pages, counter says {}",
                    n.free_pages
                ));
            }
            total += sum;
        }
        if total != self.total_free {
            return Err(format!(
                "free lists hold {total} pages, total_avail says {}",
                self.total_free
            ));
        }
        Ok(())
    }
}

/// Remove the first page of every `block`-aligned block that lies wholly inside a range
/// and satisfies `pick(block start)`.
fn punch(ranges: &[(u64, u64)], block: u64, pick: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(start, end) in ranges {
        let mut cur = start;
        let mut b = start.div_ceil(block) * block;
        while b + block <= end {
            if pick(b) {
                if cur < b {
                    out.push((cur, b));
                }
                cur = b + 1;
            }
            b += block;
        }
        if cur < end {
            out.push((cur, end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(s: &str) -> (Heap, Vec<u64>) {
        Heap::build(&HostSpec::parse(s).unwrap())
    }

    #[test]
    fn initial_chunks_are_largest_aligned() {
        let (h, held) = heap("node_mib=3000");
        // 3000 MiB = 2 GiB + 952 MiB = 512+256+128+32+16+8 MiB.
        let c = h.chunks_by_order(0);
        assert_eq!(c[18], 2);
        assert_eq!(
            (c[17], c[16], c[15], c[13], c[12], c[11]),
            (1, 1, 1, 1, 1, 1)
        );
        assert_eq!(h.total_free(), pages_of_mib(3000));
        assert_eq!(held, vec![0]);
        h.check().unwrap();
    }

    #[test]
    fn split_keeps_upper_half_and_free_merges_back() {
        let (mut h, _) = heap("node_mib=1024");
        let before = h.chunks_by_order(0);
        let m = h.take(0, 0).unwrap();
        // The only chunk is the GiB at 0: the returned page is its last one.
        assert_eq!(m, GIB_PAGES - 1);
        let after = h.chunks_by_order(0);
        assert_eq!(after[18], 0);
        assert!(after[..18].iter().all(|&c| c == 1), "{after:?}");
        let m2 = h.take(0, 9).unwrap();
        assert_eq!(
            m2,
            GIB_PAGES - 1024,
            "the order-9 lower half left by the first split"
        );
        h.free(m, 0);
        h.free(m2, 9);
        assert_eq!(h.chunks_by_order(0), before);
        h.check().unwrap();
    }

    #[test]
    fn fragmentation_options() {
        let (h, held) = heap("nodes=4,node_mib=1024,no_1g=0,half_2m=1,only_4k=2,free_mib=3:100");
        assert_eq!(h.chunks_by_order(0)[18], 0);
        assert_eq!(h.chunks_by_order(0)[17], 1);
        assert_eq!(held[0], 1);
        let c1 = h.chunks_by_order(1);
        assert_eq!(c1[10..].iter().sum::<u64>(), 0);
        assert_eq!(c1[9], 256, "every second 2 MiB chunk of the GiB");
        assert_eq!(held[1], 256);
        let c2 = h.chunks_by_order(2);
        assert_eq!(c2[0], GIB_PAGES / 2);
        assert_eq!(c2[1..].iter().sum::<u64>(), 0);
        assert_eq!(held[2], GIB_PAGES / 2);
        assert_eq!(h.node_free(3), pages_of_mib(100));
        assert_eq!(held[3], pages_of_mib(924));
        h.check().unwrap();
    }

    #[test]
    fn node_lookup() {
        let (h, _) = heap("nodes=2,node_mib=1536");
        let (b1, e1) = h.node_range(1).unwrap();
        assert_eq!(b1, 2 * GIB_PAGES, "nodes start GiB-aligned");
        assert_eq!(h.node_of(b1), Some(1));
        assert_eq!(h.node_of(e1 - 1), Some(1));
        assert_eq!(h.node_of(e1), None);
        assert_eq!(h.node_of(b1 - 1), None, "gap after node 0");
        assert_eq!(h.node_of(0), Some(0));
    }
}
