//! Behaviour of the simulated host, call by call.

use super::*;
use crate::types::{pages_of_mib, E820Type, Gfn, GuestPhys, MapAddr, MapFrame, Mfn};

/// Guest-physical `paddr` of a translated domain, as the foreign-map calls take it.
fn at(paddr: u64) -> MapAddr {
    MapAddr::phys(GuestPhys(paddr))
}
use std::sync::Arc;

const GIB: u64 = 1 << 18;

fn host(spec: &str) -> SimHost {
    SimHost::from_spec(spec).unwrap()
}

fn hvm(h: &SimHost, max_mib: u64) -> DomId {
    h.create_domain(&DomainConfig::hvm(max_mib << 10, 2))
        .unwrap()
}

fn populate(h: &SimHost, d: DomId, order: u32, flags: MemFlags, gfns: &[u64]) -> usize {
    let mut ext = gfns.to_vec();
    h.domain_populate_physmap(d, order, flags, &mut ext)
        .unwrap()
}

/// `n` consecutive extents of `order` from `gfn`.
fn run(gfn: u64, order: u32, n: u64) -> Vec<u64> {
    (0..n).map(|i| gfn + (i << order)).collect()
}

fn mfn_of(h: &SimHost, d: DomId, gfn: u64) -> u64 {
    match h.lookup_gfn(d, gfn) {
        Some(GfnState::Ram { mfn }) => mfn,
        other => panic!("gfn {gfn:#x}: {other:?}"),
    }
}

fn node_of_gfn(h: &SimHost, d: DomId, gfn: u64) -> u32 {
    h.node_of_mfn(mfn_of(h, d, gfn)).unwrap()
}

fn code<T: std::fmt::Debug>(r: XcResult<T>) -> (&'static str, i32) {
    let e = r.unwrap_err();
    (e.function, e.code)
}

const ANY: MemFlags = MemFlags {
    node: None,
    exact_node: false,
    populate_on_demand: false,
};
const POD: MemFlags = MemFlags {
    node: None,
    exact_node: false,
    populate_on_demand: true,
};

fn on_node(n: u32) -> MemFlags {
    MemFlags {
        node: Some(n),
        exact_node: false,
        populate_on_demand: false,
    }
}

#[test]
fn split_keeps_upper_half_and_destroy_merges_back() {
    let h = host("node_mib=2048");
    let initial = h.free_chunks_by_order(0);
    let d = hvm(&h, 1024);
    assert_eq!(populate(&h, d, 0, ANY, &[0x10]), 1);
    // The lowest GiB chunk is split; the page handed out is its highest frame.
    assert_eq!(mfn_of(&h, d, 0x10), GIB - 1);
    assert_eq!(populate(&h, d, 9, ANY, &[0x200]), 1);
    assert_eq!(mfn_of(&h, d, 0x200), GIB - 1024);
    let c = h.free_chunks_by_order(0);
    assert_eq!(c[18], 1);
    assert_eq!(c[9], 0, "the order-9 lower half was handed out");
    h.check_accounting().unwrap();
    h.destroy_domain(d).unwrap();
    assert_eq!(h.free_chunks_by_order(0), initial);
    assert_eq!(h.free_pages(), pages_of_mib(2048));
    assert!(!h.domain_exists(d));
    assert_eq!(
        code(h.domain_getinfo(d)),
        ("xc_domain_getinfo", libc::ESRCH)
    );
    h.check_accounting().unwrap();
}

#[test]
fn no_1g_refuses_1g_but_gives_2m() {
    let h = host("nodes=2,node_mib=2048,no_1g=0");
    let d = hvm(&h, 4096);
    assert_eq!(populate(&h, d, 18, MemFlags::exact(0), &[0]), 0);
    assert_eq!(populate(&h, d, 9, MemFlags::exact(0), &[0]), 1);
    // The other node still has whole GiBs.
    assert_eq!(populate(&h, d, 18, MemFlags::exact(1), &[GIB]), 1);
    h.check_accounting().unwrap();
}

#[test]
fn only_4k_refuses_2m_but_gives_4k() {
    let h = host("node_mib=64,only_4k=0");
    assert_eq!(h.free_pages(), pages_of_mib(64) / 2);
    let d = hvm(&h, 64);
    assert_eq!(populate(&h, d, 9, ANY, &[0]), 0);
    assert_eq!(populate(&h, d, 0, ANY, &run(0, 0, 100)), 100);
    h.check_accounting().unwrap();
}

#[test]
fn half_2m_leaves_every_second_2m_chunk() {
    let h = host("node_mib=1024,half_2m=0");
    let d = hvm(&h, 1024);
    assert_eq!(populate(&h, d, 18, ANY, &[0]), 0);
    assert_eq!(populate(&h, d, 9, ANY, &run(0, 9, 300)), 256);
    h.check_accounting().unwrap();
}

#[test]
fn exact_node_never_spills_non_exact_does() {
    let h = host("nodes=2,node_mib=1024");
    let d = hvm(&h, 4096);
    assert_eq!(populate(&h, d, 18, MemFlags::exact(0), &[0]), 1);
    assert_eq!(h.free_pages_on_node(0), 0);
    assert_eq!(populate(&h, d, 0, MemFlags::exact(0), &[GIB]), 0);
    assert_eq!(populate(&h, d, 0, on_node(0), &[GIB]), 1);
    assert_eq!(node_of_gfn(&h, d, GIB), 1);
    // An offline node below MAX_NUMNODES: exact fails, a hint spills; >= 64 is refused.
    assert_eq!(populate(&h, d, 0, MemFlags::exact(5), &[GIB + 1]), 0);
    assert_eq!(populate(&h, d, 0, on_node(5), &[GIB + 1]), 1);
    assert_eq!(populate(&h, d, 0, on_node(64), &[GIB + 2]), 0);
    h.check_accounting().unwrap();
}

#[test]
fn non_exact_requests_rotate_across_affinity_nodes() {
    let h = host("nodes=4,node_mib=1024,cpus=8");
    let d = hvm(&h, 4096);
    assert_eq!(populate(&h, d, 9, ANY, &run(0, 9, 5)), 5);
    let nodes: Vec<u32> = (0..5).map(|i| node_of_gfn(&h, d, i << 9)).collect();
    assert_eq!(
        nodes,
        [1, 2, 3, 0, 1],
        "cycle_node() from last_alloc_node = 0"
    );
    assert_eq!(h.domain_snapshot(d).unwrap().last_alloc_node, 1);
    // A node hint starts there, and sets last_alloc_node too.
    assert_eq!(populate(&h, d, 9, on_node(3), &[5 << 9]), 1);
    assert_eq!(node_of_gfn(&h, d, 5 << 9), 3);
    assert_eq!(populate(&h, d, 9, ANY, &[6 << 9]), 1);
    assert_eq!(node_of_gfn(&h, d, 6 << 9), 0);
}

#[test]
fn explicit_affinity_then_spill_outside_it() {
    let h = host("nodes=3,node_mib=1024");
    let cfg = DomainConfig {
        node_affinity: Some(vec![1]),
        ..DomainConfig::hvm(4 << 20, 1)
    };
    let d = h.create_domain(&cfg).unwrap();
    assert_eq!(h.domain_snapshot(d).unwrap().node_affinity, [1]);
    assert_eq!(populate(&h, d, 18, ANY, &[0]), 1);
    assert_eq!(node_of_gfn(&h, d, 0), 1);
    // Node 1 is full: the retry over nodes outside the mask starts at node 0.
    assert_eq!(populate(&h, d, 9, ANY, &[GIB]), 1);
    assert_eq!(node_of_gfn(&h, d, GIB), 0);
    let bad = DomainConfig {
        node_affinity: Some(vec![7]),
        ..DomainConfig::hvm(1024, 1)
    };
    assert_eq!(
        code(h.create_domain(&bad)),
        ("xc_domain_node_setaffinity", libc::EINVAL)
    );
}

#[test]
fn vcpu_hard_affinity_drives_automatic_node_affinity() {
    let h = host("nodes=2,node_mib=1024,cpus=8");
    let d = hvm(&h, 1024);
    assert_eq!(h.domain_snapshot(d).unwrap().node_affinity, [0, 1]);
    let node1: Vec<bool> = (0..8).map(|c| c >= 4).collect();
    h.vcpu_setaffinity_hard(d, 0, &node1).unwrap();
    // vCPU 1 still runs anywhere: the union is both nodes.
    assert_eq!(h.domain_snapshot(d).unwrap().node_affinity, [0, 1]);
    h.vcpu_setaffinity_hard(d, 1, &node1).unwrap();
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(snap.node_affinity, [1]);
    assert_eq!(snap.vcpu_hard_affinity[1], [4, 5, 6, 7]);
    assert_eq!(populate(&h, d, 9, ANY, &run(0, 9, 3)), 3);
    assert!((0..3).all(|i| node_of_gfn(&h, d, i << 9) == 1));
    let f = "xc_vcpu_setaffinity";
    assert_eq!(
        code(h.vcpu_setaffinity_hard(d, 2, &node1)),
        (f, libc::EINVAL)
    );
    assert_eq!(
        code(h.vcpu_setaffinity_hard(d, 0, &[false; 8])),
        (f, libc::EINVAL)
    );
    let beyond: Vec<bool> = (0..16).map(|c| c >= 8).collect();
    assert_eq!(
        code(h.vcpu_setaffinity_hard(d, 0, &beyond)),
        (f, libc::EINVAL)
    );
    assert_eq!(
        code(h.vcpu_setaffinity_hard(DomId(99), 0, &node1)),
        (f, libc::ESRCH)
    );
}

#[test]
fn max_pages_refuses_a_whole_extent() {
    let h = host("node_mib=4096");
    let d = hvm(&h, 1024 + 511);
    assert_eq!(
        populate(&h, d, 18, ANY, &[0, GIB]),
        1,
        "second GiB: only 511 MiB headroom"
    );
    let free = h.free_pages();
    let chunks = h.free_chunks_by_order(0);
    assert_eq!(populate(&h, d, 18, ANY, &[GIB]), 0);
    assert_eq!(
        (h.free_pages(), h.free_chunks_by_order(0)),
        (free, chunks),
        "the block went back"
    );
    assert_eq!(populate(&h, d, 9, ANY, &run(GIB, 9, 256)), 255);
    assert_eq!(populate(&h, d, 0, ANY, &run(GIB + 255 * 512, 0, 512)), 256);
    let info = h.domain_getinfo(d).unwrap();
    assert_eq!(info.tot_pages, info.max_pages);
    h.check_accounting().unwrap();
}

#[test]
fn claims() {
    let h = host("node_mib=1024");
    let f = "xc_domain_claim_pages";
    let a = hvm(&h, 1024);
    let b = hvm(&h, 1024);
    assert_eq!(code(h.domain_claim_pages(DomId(77), 10)), (f, libc::EINVAL));
    assert_eq!(
        code(h.domain_claim_pages(a, GIB + 1)),
        (f, libc::EINVAL),
        "above max_pages"
    );
    h.domain_claim_pages(a, 200_000).unwrap();
    assert_eq!(
        code(h.domain_claim_pages(a, 1000)),
        (f, libc::EINVAL),
        "one claim per domain"
    );
    assert_eq!(
        code(h.domain_claim_pages(b, 70_000)),
        (f, libc::ENOMEM),
        "only 62144 unclaimed"
    );
    assert_eq!(h.outstanding_claims(), 200_000);
    assert_eq!(h.physinfo().unwrap().outstanding_pages, 200_000);
    // The gate: b may only take unclaimed memory.
    assert_eq!(populate(&h, b, 9, ANY, &run(0, 9, 200)), 121);
    // a's claim is consumed as it allocates.
    assert_eq!(populate(&h, a, 9, ANY, &run(0, 9, 390)), 390);
    assert_eq!(h.domain_getinfo(a).unwrap().outstanding_pages, 320);
    assert_eq!(h.outstanding_claims(), 320);
    assert_eq!(h.free_pages(), 512);
    // The known edge: 512 pages free, but a's remaining claim (320) is below the request.
    assert_eq!(populate(&h, a, 9, ANY, &[390 << 9]), 0);
    assert_eq!(populate(&h, a, 0, ANY, &[390 << 9]), 1);
    // pages <= tot_pages is refused while no claim is live.
    h.domain_claim_pages(a, 0).unwrap();
    assert_eq!(h.outstanding_claims(), 0);
    assert_eq!(code(h.domain_claim_pages(a, 1000)), (f, libc::EINVAL));
    h.domain_claim_pages(a, 0).unwrap();
    // Destroy drops the claim.
    let c = hvm(&h, 1);
    h.domain_claim_pages(c, 100).unwrap();
    assert_eq!(h.outstanding_claims(), 100);
    h.destroy_domain(c).unwrap();
    assert_eq!(h.outstanding_claims(), 0);
    h.check_accounting().unwrap();
}

#[test]
fn pod_target_cache_and_entries() {
    let h = host("node_mib=2048");
    let f = "xc_domain_set_pod_target";
    let d = hvm(&h, 1024);
    assert_eq!(code(h.domain_set_pod_target(d, GIB + 1)), (f, libc::EINVAL));
    let target = pages_of_mib(256) + 100;
    let info = h.domain_set_pod_target(d, target).unwrap();
    assert_eq!(
        info,
        PodInfo {
            tot_pages: target,
            pod_cache_pages: target,
            pod_entries: 0
        }
    );
    // A lower target leaves the cache alone (the balloon driver's job).
    assert_eq!(
        h.domain_set_pod_target(d, 1000).unwrap().pod_cache_pages,
        target
    );
    assert_eq!(populate(&h, d, 18, POD, &[0]), 1);
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(
        (snap.pod_entries, snap.pod_cache_pages, snap.tot_pages),
        (GIB, target, target)
    );
    assert_eq!(snap.pod_pages_by_order.get(&18), Some(&GIB));
    // Touching a PoD frame backs it from the cache.
    h.write_guest(d, at(0x5000), b"hello").unwrap();
    let mut buf = [0u8; 5];
    h.read_guest(d, at(0x5000), &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(
        (snap.pod_entries, snap.pod_cache_pages, snap.tot_pages),
        (GIB - 1, target - 1, target)
    );
    assert!(matches!(h.lookup_gfn(d, 5), Some(GfnState::Ram { .. })));
    // PoD over RAM is refused (EBUSY inside Xen: 0 done).
    assert_eq!(populate(&h, d, 0, POD, &[5]), 0);
    h.check_accounting().unwrap();
    let pv = h.create_domain(&DomainConfig::pv(1 << 20, 1)).unwrap();
    assert_eq!(code(h.domain_set_pod_target(pv, 10)), (f, libc::EINVAL));
    assert_eq!(populate(&h, pv, 0, POD, &[0]), 0, "PV cannot take PoD");
    assert_eq!(
        code(h.domain_set_pod_target(DomId(99), 10)),
        (f, libc::ESRCH)
    );
    h.destroy_domain(d).unwrap();
    h.destroy_domain(pv).unwrap();
    assert_eq!(h.free_pages(), pages_of_mib(2048));
    h.check_accounting().unwrap();
}

#[test]
fn pod_target_out_of_memory_keeps_what_it_got() {
    let h = host("node_mib=64");
    let d = hvm(&h, 1024);
    assert_eq!(
        code(h.domain_set_pod_target(d, pages_of_mib(100))),
        ("xc_domain_set_pod_target", libc::ENOMEM)
    );
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(snap.pod_cache_pages, pages_of_mib(64));
    assert_eq!(h.free_pages(), 0);
    h.check_accounting().unwrap();
    h.destroy_domain(d).unwrap();
    assert_eq!(h.free_pages(), pages_of_mib(64));
}

#[test]
fn pod_cache_exhausted_is_a_fault() {
    let h = host("node_mib=64");
    let d = hvm(&h, 64);
    h.domain_set_pod_target(d, 1).unwrap();
    assert_eq!(populate(&h, d, 9, POD, &[0]), 1);
    h.write_guest(d, at(0), &[1]).unwrap();
    assert_eq!(
        code(h.write_guest(d, at(4096), &[1])),
        ("xc_map_foreign_range", libc::EFAULT)
    );
}

#[test]
fn caller_order_limits() {
    let h = host("caller=domu,node_mib=2048");
    let d = hvm(&h, 2048);
    assert_eq!(populate(&h, d, 18, ANY, &[0]), 0);
    assert_eq!(populate(&h, d, 10, ANY, &[0]), 0);
    assert_eq!(populate(&h, d, 9, ANY, &[0]), 1);
    assert_eq!(populate(&h, d, 18, POD, &[GIB]), 1, "PoD may use MAX_ORDER");
    // An unprivileged caller's hint is ignored, an exact one fails the call.
    assert_eq!(populate(&h, d, 0, MemFlags::exact(0), &[1 << 9]), 0);
    assert_eq!(populate(&h, d, 0, on_node(0), &[1 << 9]), 1);
    let h = host("caller=hwdom,node_mib=2048");
    let d = hvm(&h, 2048);
    assert_eq!(populate(&h, d, 13, ANY, &[0]), 0);
    assert_eq!(populate(&h, d, 12, ANY, &[0]), 1);
}

/// Stricter than Xen: a frame numbered for the other kind of domain is refused, so a builder
/// that hands a PV domain a gfn (or a translated one an MFN) fails instead of writing to
/// whatever page that number names.
#[test]
fn frames_numbered_for_the_other_kind_of_domain_are_refused() {
    let h = host("node_mib=1024");
    let pv = h.create_domain(&DomainConfig::pv(64 << 10, 1)).unwrap();
    let mut ext = vec![0];
    assert_eq!(h.domain_populate_physmap(pv, 0, ANY, &mut ext).unwrap(), 1);
    let mfn = Mfn(ext[0]);
    let d = hvm(&h, 64);
    assert_eq!(populate(&h, d, 0, ANY, &[0]), 1);

    let f = "xc_map_foreign_range";
    h.write_guest(pv, MapAddr::machine(mfn, 8), &[1]).unwrap();
    assert_eq!(code(h.write_guest(pv, at(0), &[1])), (f, libc::EINVAL));
    assert_eq!(
        code(h.read_guest(d, MapAddr::machine(mfn, 0), &mut [0])),
        (f, libc::EINVAL)
    );
    let g = "xc_clear_domain_pages";
    assert_eq!(
        code(h.clear_domain_pages(pv, MapFrame::Gfn(Gfn(0)), 1)),
        (g, libc::EINVAL)
    );
    h.clear_domain_pages(pv, MapFrame::Mfn(mfn), 1).unwrap();
    let s = "xc_dom_gnttab_seed";
    let gfn0 = MapFrame::Gfn(Gfn(0));
    assert_eq!(
        code(h.gnttab_seed(pv, gfn0, gfn0, DomId(0), DomId(0))),
        (s, libc::EINVAL)
    );
    let mfn0 = MapFrame::Mfn(mfn);
    assert_eq!(
        code(h.gnttab_seed(d, gfn0, mfn0, DomId(0), DomId(0))),
        (s, libc::EINVAL)
    );
    let e = h.write_guest(pv, at(0), &[1]).unwrap_err();
    assert!(
        e.message.contains("PV: its frames are mfns, not gfn 0x0"),
        "{e}"
    );
}

#[test]
fn pv_gets_mfns_written_back_hvm_does_not() {
    let h = host("node_mib=1024");
    let pv = h.create_domain(&DomainConfig::pv(64 << 10, 1)).unwrap();
    let mut ext = vec![0, 1, 2];
    assert_eq!(h.domain_populate_physmap(pv, 0, ANY, &mut ext).unwrap(), 3);
    assert_ne!(ext, [0, 1, 2]);
    for (pfn, mfn) in ext.iter().enumerate() {
        assert_eq!(mfn_of(&h, pv, pfn as u64), *mfn);
    }
    let d = hvm(&h, 64);
    let mut ext = vec![0, 1, 2];
    assert_eq!(h.domain_populate_physmap(d, 0, ANY, &mut ext).unwrap(), 3);
    assert_eq!(ext, [0, 1, 2]);
    assert_eq!(
        code(h.hvm_param_set(pv, 1, 1)),
        ("xc_hvm_param_set", libc::EINVAL)
    );
    let vcpu = HvmBootVcpu {
        entry: 0x100000,
        start_info_paddr: 0x1000,
        mtrr_write_back: true,
    };
    assert_eq!(
        code(h.domain_hvm_set_boot_vcpu(pv, &vcpu)),
        ("xc_domain_hvm_setcontext", libc::EINVAL)
    );
    h.domain_hvm_set_boot_vcpu(d, &vcpu).unwrap();
    assert_eq!(h.domain_snapshot(d).unwrap().boot_vcpu, Some(vcpu));
}

#[test]
fn repopulating_a_gfn_is_counted_and_accounted() {
    let h = host("node_mib=256");
    let d = hvm(&h, 256);
    assert_eq!(populate(&h, d, 9, ANY, &[0]), 1);
    assert_eq!(populate(&h, d, 0, ANY, &[3]), 1);
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(
        (snap.repopulated_pages, snap.tot_pages, snap.unmapped_pages),
        (1, 513, 1)
    );
    assert_eq!(snap.ram_pages_by_order.get(&9), Some(&511));
    assert_eq!(
        h.p2m_extents(d).unwrap().len(),
        3,
        "the 2 MiB extent was split around gfn 3"
    );
    h.check_accounting().unwrap();
    h.destroy_domain(d).unwrap();
    assert_eq!(h.free_pages(), pages_of_mib(256));
    h.check_accounting().unwrap();
}

#[test]
fn guest_memory_reads_writes_and_clears() {
    let h = host("node_mib=256");
    let d = hvm(&h, 256);
    assert_eq!(populate(&h, d, 0, ANY, &[0, 1, 3]), 3);
    let data: Vec<u8> = (0..=u8::MAX).cycle().take(6000).collect();
    h.write_guest(d, at(100), &data).unwrap();
    let mut back = vec![0u8; 6000];
    h.read_guest(d, at(100), &mut back).unwrap();
    assert_eq!(back, data);
    let mut zero = [0xffu8; 16];
    h.read_guest(d, at(3 * 4096), &mut zero).unwrap();
    assert_eq!(zero, [0; 16], "unwritten pages read as zeros");
    let f = "xc_map_foreign_range";
    assert_eq!(
        code(h.write_guest(d, at(4096 * 2 + 5), &[1])),
        (f, libc::EFAULT)
    );
    assert_eq!(
        code(h.read_guest(d, at(4000), &mut [0u8; 8192])),
        (f, libc::EFAULT),
        "spans gfn 2"
    );
    assert_eq!(
        code(h.write_guest(d, at(u64::MAX), &[1, 2])),
        (f, libc::EFAULT)
    );
    assert_eq!(
        code(h.write_guest(DomId(99), at(0), &[1])),
        (f, libc::ESRCH)
    );
    h.clear_domain_pages(d, MapFrame::Gfn(Gfn(0)), 2).unwrap();
    h.read_guest(d, at(100), &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
    assert_eq!(
        code(h.clear_domain_pages(d, MapFrame::Gfn(Gfn(1)), 2)),
        ("xc_clear_domain_pages", libc::EFAULT)
    );
    assert_eq!(h.domain_snapshot(d).unwrap().written_pages, 0);
}

#[test]
fn recorded_settings_and_their_errors() {
    let h = host("nodes=2,node_mib=256,cpus=4");
    let d = hvm(&h, 64);
    h.hvm_param_set(d, 12, 0xfeff0).unwrap();
    assert_eq!(h.hvm_param_get(d, 12).unwrap(), 0xfeff0);
    assert_eq!(h.hvm_param_get(d, 13).unwrap(), 0);
    assert_eq!(
        code(h.hvm_param_set(d, 39, 0)),
        ("xc_hvm_param_set", libc::EINVAL)
    );
    assert_eq!(
        code(h.hvm_param_get(d, 64)),
        ("xc_hvm_param_get", libc::EINVAL)
    );
    let e = E820Entry {
        addr: 0,
        size: 0xa0000,
        kind: E820Type::Ram,
    };
    h.domain_set_memory_map(d, &[e]).unwrap();
    assert_eq!(
        code(h.domain_set_memory_map(d, &[e; 129])),
        ("xc_domain_set_memory_map", libc::EINVAL)
    );
    h.domain_set_tsc_info(d, 2).unwrap();
    assert_eq!(
        code(h.domain_set_tsc_info(d, 3)),
        ("xc_domain_set_tsc_info", libc::EINVAL)
    );
    h.domain_set_time_offset(d, -3600).unwrap();
    assert_eq!(
        h.sched_credit_domain_get(d).unwrap(),
        SchedCredit {
            weight: 256,
            cap: 0
        }
    );
    h.sched_credit_domain_set(
        d,
        SchedCredit {
            weight: 512,
            cap: u16::MAX,
        },
    )
    .unwrap();
    assert_eq!(
        h.sched_credit_domain_get(d).unwrap(),
        SchedCredit {
            weight: 512,
            cap: 0
        }
    );
    h.gnttab_seed(
        d,
        MapFrame::Gfn(Gfn(0xfeffc)),
        MapFrame::Gfn(Gfn(0xfeffd)),
        DomId(0),
        DomId(0),
    )
    .unwrap();
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(snap.e820, Some(vec![e]));
    assert_eq!((snap.tsc_mode, snap.time_offset_s), (Some(2), Some(-3600)));
    assert_eq!(snap.grants.unwrap().xenstore, MapFrame::Gfn(Gfn(0xfeffd)));
    assert_eq!(snap.hvm_params.get(&12), Some(&0xfeff0));
    let info = h.physinfo().unwrap();
    assert_eq!(
        (info.nr_cpus, info.nr_nodes, info.free_pages),
        (4, 2, pages_of_mib(512))
    );
    assert_eq!(h.domain_pages_by_node(d).unwrap(), [0, 0]);
    let h2 = host("sched=credit2,node_pages=off");
    let d2 = hvm(&h2, 64);
    assert_eq!(
        code(h2.sched_credit_domain_get(d2)),
        ("xc_sched_credit_domain_get", libc::EINVAL)
    );
    let params = SchedCredit { weight: 1, cap: 0 };
    assert_eq!(
        code(h2.sched_credit_domain_set(d2, params)),
        ("xc_sched_credit_domain_set", libc::EINVAL)
    );
    assert_eq!(
        code(h2.domain_pages_by_node(d2)),
        ("xc_domain_get_node_pages", libc::ENOSYS)
    );
    assert_eq!(
        code(h.sched_credit_domain_get(DomId(9))),
        ("xc_sched_credit_domain_get", libc::ESRCH)
    );
    let bad = DomainConfig {
        hap: true,
        ..DomainConfig::pv(1024, 1)
    };
    assert_eq!(
        code(h.create_domain(&bad)),
        ("xc_domain_create", libc::EINVAL)
    );
    assert_eq!(
        code(h.create_domain(&DomainConfig::hvm(1024, 0))),
        ("xc_domain_create", libc::EINVAL)
    );
}

#[test]
fn cpuid_policy_is_clamped_not_refused() {
    let h = host("");
    let d = hvm(&h, 64);
    let pv = h.create_domain(&DomainConfig::pv(1024, 1)).unwrap();
    let host_fs = h.get_cpu_featureset(FeaturesetKind::Host).unwrap();
    let hvm_max = h.get_cpu_featureset(FeaturesetKind::HvmMax).unwrap();
    let pv_max = h.get_cpu_featureset(FeaturesetKind::PvMax).unwrap();
    assert_eq!((host_fs.len(), hvm_max.len(), pv_max.len()), (16, 16, 16));
    let policy = CpuidPolicy {
        restore: false,
        featureset: host_fs.clone(),
        nested_virt: false,
        cores_per_socket: 0,
    };
    h.cpuid_apply_policy(d, &policy).unwrap();
    h.cpuid_apply_policy(pv, &policy).unwrap();
    assert_eq!(h.domain_snapshot(d).unwrap().cpuid_effective, Some(hvm_max));
    assert_eq!(h.domain_snapshot(pv).unwrap().cpuid_effective, Some(pv_max));
    assert_eq!(
        h.domain_snapshot(d).unwrap().cpuid_policy,
        Some(policy.clone())
    );
    let mut long = policy.clone();
    long.featureset.extend([0, 1]);
    assert_eq!(
        code(h.cpuid_apply_policy(d, &long)),
        ("xc_cpuid_apply_policy", libc::EOPNOTSUPP)
    );
    long.featureset.pop();
    h.cpuid_apply_policy(d, &long).unwrap();
}

#[test]
fn absurd_populate_arguments() {
    let h = host("node_mib=64");
    let d = hvm(&h, 64);
    let f = "xc_domain_populate_physmap";
    assert_eq!(
        code(h.domain_populate_physmap(d, 19, ANY, &mut [0])),
        (f, libc::EINVAL)
    );
    assert_eq!(
        code(h.domain_populate_physmap(d, u32::MAX, POD, &mut [0])),
        (f, libc::EINVAL)
    );
    assert_eq!(
        code(h.domain_populate_physmap(DomId(9), 0, ANY, &mut [0])),
        (f, libc::ESRCH)
    );
    assert_eq!(h.domain_populate_physmap(d, 0, ANY, &mut []).unwrap(), 0);
    assert_eq!(
        populate(&h, d, 9, ANY, &[u64::MAX - 10]),
        0,
        "gfn range wraps"
    );
    assert_eq!(populate(&h, d, 0, POD, &[1 << 36]), 0, "beyond the p2m");
    // A RAM extent beyond the p2m is allocated, then cannot be mapped: owned, unmapped.
    assert_eq!(populate(&h, d, 0, ANY, &[1 << 36]), 0);
    assert_eq!(h.domain_snapshot(d).unwrap().unmapped_pages, 1);
    h.check_accounting().unwrap();
}

#[test]
fn faults_fire_once_on_the_nth_call() {
    let h = host("node_mib=256");
    let a = hvm(&h, 256);
    let b = hvm(&h, 256);
    assert!(h
        .inject(Fault::errno("no_such_call", 1, libc::EIO))
        .is_err());
    h.inject(Fault::errno("domain_claim_pages", 2, libc::EIO))
        .unwrap();
    h.inject(Fault::partial(1, 3).for_domain(b)).unwrap();
    h.inject(Fault::errno("physinfo", 1, libc::EACCES)).unwrap();
    h.domain_claim_pages(a, 100).unwrap();
    assert_eq!(
        code(h.domain_claim_pages(b, 100)),
        ("xc_domain_claim_pages", libc::EIO)
    );
    h.domain_claim_pages(b, 100).unwrap();
    assert_eq!(
        populate(&h, a, 0, ANY, &run(0, 0, 10)),
        10,
        "the partial fault is for b"
    );
    assert_eq!(populate(&h, b, 0, ANY, &run(0, 0, 10)), 3);
    assert_eq!(populate(&h, b, 0, ANY, &run(16, 0, 10)), 10);
    assert_eq!(code(h.physinfo()), ("xc_physinfo", libc::EACCES));
    assert!(h.physinfo().is_ok());
    assert!(h.pending_faults().is_empty());
    let faulted: Vec<_> = h
        .trace()
        .into_iter()
        .filter(|e| e.detail.ends_with("[injected]"))
        .collect();
    assert_eq!(faulted.len(), 3);
    assert_eq!(faulted[0].errno, Some(libc::EIO));
    assert!(
        faulted[1].detail.contains("done=3"),
        "{}",
        faulted[1].detail
    );
    // Partial on another kind fails with ENOMEM.
    h.inject(Fault {
        kind: "hvm_param_set",
        nth: 0,
        domid: None,
        action: FaultAction::Partial(1),
    })
    .unwrap();
    assert_eq!(
        code(h.hvm_param_set(a, 1, 1)),
        ("xc_hvm_param_set", libc::ENOMEM)
    );
    h.check_accounting().unwrap();
}

#[test]
fn trace_and_counts() {
    let h = host("node_mib=256");
    let d = hvm(&h, 256);
    h.clear_trace();
    assert_eq!(populate(&h, d, 9, ANY, &run(0, 9, 4)), 4);
    h.hvm_param_set(d, 1, 2).unwrap();
    let _ = h.hvm_param_set(DomId(42), 1, 2);
    h.physinfo().unwrap();
    let t = h.trace_for(d);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].kind, "domain_populate_physmap");
    assert_eq!(t[0].detail, "order=9 extents=4 flags=0x0 first=0x0 done=4");
    assert!(t[0].seq < t[1].seq);
    let all = h.call_counts(None);
    assert_eq!(all.get("hvm_param_set"), Some(&2));
    assert_eq!(all.get("physinfo"), Some(&1));
    assert_eq!(h.call_counts(Some(d)).get("hvm_param_set"), Some(&1));
    let failed: Vec<_> = h
        .trace()
        .into_iter()
        .filter(|e| e.errno.is_some())
        .collect();
    assert_eq!((failed.len(), failed[0].errno), (1, Some(libc::ESRCH)));
}

#[test]
fn domids_count_up_or_are_taken_as_asked() {
    let h = host("node_mib=256");
    assert_eq!(hvm(&h, 16), DomId(1));
    let asked = DomainConfig {
        domid: Some(DomId(7)),
        ..DomainConfig::hvm(1024, 1)
    };
    assert_eq!(h.create_domain(&asked).unwrap(), DomId(7));
    assert_eq!(
        code(h.create_domain(&asked)),
        ("xc_domain_create", libc::EEXIST)
    );
    let zero = DomainConfig {
        domid: Some(DomId(0)),
        ..asked.clone()
    };
    assert_eq!(
        h.create_domain(&zero).unwrap(),
        DomId(2),
        "0 means pick one"
    );
    h.destroy_domain(DomId(7)).unwrap();
    assert_eq!(
        code(h.destroy_domain(DomId(7))),
        ("xc_domain_destroy", libc::ESRCH)
    );
    assert_eq!(h.domains(), [DomId(1), DomId(2)]);
}

#[test]
fn rmrrs_are_reported_per_device() {
    let h = host("");
    let dev = PciSbdf {
        seg: 0,
        bus: 3,
        dev: 0,
        func: 0,
    };
    assert!(h.reserved_device_memory_map(dev).unwrap().is_empty());
    let r = ReservedRange {
        start_pfn: 0xad000,
        nr_pages: 0x20,
    };
    h.add_rmrr(dev, r);
    assert_eq!(h.reserved_device_memory_map(dev).unwrap(), [r]);
    assert!(h
        .reserved_device_memory_map(PciSbdf { func: 1, ..dev })
        .unwrap()
        .is_empty());
}

#[test]
fn large_guest_in_1g_extents_is_fast() {
    let h = host("nodes=2,node_mib=262144,cpus=16");
    let initial = [h.free_chunks_by_order(0), h.free_chunks_by_order(1)];
    let d = h.create_domain(&DomainConfig::hvm(256 << 20, 16)).unwrap();
    let t = std::time::Instant::now();
    h.domain_claim_pages(d, 256 * GIB).unwrap();
    assert_eq!(populate(&h, d, 18, ANY, &run(0, 18, 256)), 256);
    h.domain_claim_pages(d, 0).unwrap();
    h.destroy_domain(d).unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        [h.free_chunks_by_order(0), h.free_chunks_by_order(1)],
        initial
    );
    h.check_accounting().unwrap();
}

#[test]
fn concurrent_builds_keep_exact_accounting() {
    let h = Arc::new(host("nodes=2,node_mib=2048,cpus=8,no_1g=1"));
    let initial = [h.free_chunks_by_order(0), h.free_chunks_by_order(1)];
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for round in 0..8u64 {
                    let d = h.create_domain(&DomainConfig::hvm(48 << 10, 2)).unwrap();
                    let pages = pages_of_mib(48);
                    // The claim may fail when other threads hold the memory; that is fine.
                    let _ = h.domain_claim_pages(d, pages);
                    if (t + round) % 3 == 0 {
                        h.domain_set_pod_target(d, pages_of_mib(16)).ok();
                        assert_eq!(populate(&h, d, 9, POD, &run(0, 9, 24)), 24);
                    } else {
                        let node = MemFlags::exact(((t + round) % 2) as u32);
                        // 1 GiB is over max_pages: refused, nothing leaks.
                        assert_eq!(populate(&h, d, 18, ANY, &[0]), 0);
                        let done = populate(&h, d, 9, node, &run(0, 9, 16));
                        let mut gfn = (done as u64) << 9;
                        while gfn < pages {
                            let n = (pages - gfn).min(1000);
                            let got = populate(&h, d, 0, ANY, &run(gfn, 0, n)) as u64;
                            gfn += got;
                            if got < n {
                                break;
                            }
                        }
                    }
                    let _ = h.write_guest(d, at(0x1000), &[t.to_le_bytes()[0]; 64]);
                    h.domain_claim_pages(d, 0).unwrap();
                    h.destroy_domain(d).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    h.check_accounting().unwrap();
    assert!(h.domains().is_empty());
    assert_eq!(h.outstanding_claims(), 0);
    assert_eq!(
        [h.free_chunks_by_order(0), h.free_chunks_by_order(1)],
        initial
    );
    assert_eq!(h.call_counts(None).get("destroy_domain"), Some(&128));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Populate {
            dom: usize,
            order: u32,
            gfn: u64,
            n: u64,
            node: Option<u32>,
            exact: bool,
            pod: bool,
        },
        Claim {
            dom: usize,
            pages: u64,
        },
        PodTarget {
            dom: usize,
            pages: u64,
        },
        Write {
            dom: usize,
            gfn: u64,
        },
        Destroy {
            dom: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, prop::sample::select(vec![0u32, 1, 9, 10, 18]), 0..2048u64, 1..40u64,
                  prop::option::of(0..3u32), any::<bool>(), any::<bool>())
                .prop_map(|(dom, order, gfn, n, node, exact, pod)| Op::Populate { dom, order, gfn, n, node, exact, pod }),
            1 => (0..3usize, 0..70_000u64).prop_map(|(dom, pages)| Op::Claim { dom, pages }),
            1 => (0..3usize, 0..20_000u64).prop_map(|(dom, pages)| Op::PodTarget { dom, pages }),
            1 => (0..3usize, 0..4096u64).prop_map(|(dom, gfn)| Op::Write { dom, gfn }),
            1 => (0..3usize).prop_map(|dom| Op::Destroy { dom }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn any_call_sequence_keeps_the_books(ops in prop::collection::vec(op(), 1..40)) {
            let h = host("nodes=2,node_mib=256,cpus=4,half_2m=1");
            let initial = [h.free_chunks_by_order(0), h.free_chunks_by_order(1)];
            let mk = |i: usize| {
                let cfg = if i == 2 { DomainConfig::pv(200 << 10, 1) } else { DomainConfig::hvm(200 << 10, 1) };
                h.create_domain(&cfg).unwrap()
            };
            let mut doms: Vec<DomId> = (0..3).map(mk).collect();
            for op in ops {
                match op {
                    Op::Populate { dom, order, gfn, n, node, exact, pod } => {
                        let flags = MemFlags { node, exact_node: exact, populate_on_demand: pod };
                        let mut ext = run(gfn << order, order, n);
                        let done = h.domain_populate_physmap(doms[dom], order, flags, &mut ext).unwrap();
                        prop_assert!(done <= crate::types::usize_of(n));
                    }
                    Op::Claim { dom, pages } => { let _ = h.domain_claim_pages(doms[dom], pages); }
                    Op::PodTarget { dom, pages } => { let _ = h.domain_set_pod_target(doms[dom], pages); }
                    Op::Write { dom, gfn } => { let _ = h.write_guest(doms[dom], at(gfn << 12), &[7; 10]); }
                    Op::Destroy { dom } => {
                        h.destroy_domain(doms[dom]).unwrap();
                        doms[dom] = mk(dom);
                    }
                }
                if let Err(e) = h.check_accounting() {
                    prop_assert!(false, "{}", e);
                }
            }
            for d in doms {
                h.destroy_domain(d).unwrap();
            }
            prop_assert_eq!(h.outstanding_claims(), 0);
            prop_assert_eq!([h.free_chunks_by_order(0), h.free_chunks_by_order(1)], initial);
        }
    }
}

#[test]
fn decrease_reservation_gives_pages_back_from_inside_a_superpage() {
    let h = host("nodes=1,node_mib=4096");
    let free0 = h.free_pages();
    let d = hvm(&h, 2048);
    assert_eq!(populate(&h, d, 18, MemFlags::default(), &[0]), 1);
    h.write_guest(d, at(0xb0 << 12), &[7; 4096]).unwrap();
    // Two holes punched in the 1 GiB page (the VGA hole's first frames), then a miss stops.
    assert_eq!(
        h.domain_decrease_reservation(d, &[0xb0, 0xb1, 0xb1, 0xb2])
            .unwrap(),
        2
    );
    let snap = h.domain_snapshot(d).unwrap();
    assert_eq!(snap.tot_pages, GIB - 2);
    assert_eq!(h.lookup_gfn(d, 0xb0), None);
    assert!(matches!(h.lookup_gfn(d, 0xb2), Some(GfnState::Ram { .. })));
    assert_eq!(h.free_pages(), free0 - GIB + 2);
    h.check_accounting().unwrap();
    h.destroy_domain(d).unwrap();
    assert_eq!(h.free_pages(), free0);
    h.check_accounting().unwrap();
    let pv = h.create_domain(&DomainConfig::pv(1 << 20, 1)).unwrap();
    assert_eq!(
        code(h.domain_decrease_reservation(pv, &[0])),
        ("xc_domain_decrease_reservation", libc::EINVAL)
    );
}

#[test]
fn a_restored_domain_keeps_its_context_tsc_and_policy() {
    let h = host("nodes=1,node_mib=1024");
    let d = hvm(&h, 64);
    let minimal = h.domain_hvm_getcontext(d).unwrap();
    let mut ctx = minimal[..32].to_vec();
    ctx.extend_from_slice(&[2, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
    ctx.extend_from_slice(&minimal[32..]);
    h.domain_hvm_setcontext(d, &ctx).unwrap();
    assert_eq!(h.domain_hvm_getcontext(d).unwrap(), ctx);
    assert_eq!(
        code(h.domain_hvm_setcontext(d, &ctx[1..])),
        ("xc_domain_hvm_setcontext", libc::EINVAL)
    );
    let tsc = TscInfo {
        mode: 2,
        khz: 2_000_000,
        nsec: 123,
        incarnation: 4,
    };
    h.domain_restore_tsc_info(d, &tsc).unwrap();
    assert_eq!(h.domain_get_tsc_info(d).unwrap(), tsc);
    assert_eq!(
        code(h.domain_restore_tsc_info(d, &TscInfo { mode: 3, ..tsc })),
        ("xc_domain_set_tsc_info", libc::EINVAL)
    );
    let leaf = CpuidLeaf {
        leaf: 1,
        subleaf: u32::MAX,
        regs: [1, 2, 3, 4],
    };
    h.domain_set_cpu_policy(d, &[leaf], &[]).unwrap();
    assert_eq!(
        h.domain_snapshot(d).unwrap().cpu_policy,
        Some((vec![leaf], vec![]))
    );
    assert_eq!(
        code(h.domain_set_cpu_policy(d, &vec![leaf; 257], &[])),
        ("xc_set_domain_cpu_policy", libc::E2BIG)
    );
}

#[test]
fn log_dirty_tracks_writes_and_page_types_say_what_is_ram() {
    let h = host("nodes=1,node_mib=256");
    let d = hvm(&h, 64);
    populate(&h, d, 9, MemFlags::default(), &[0]);
    let code = |r: XcResult<u64>| r.map_err(|e| (e.function, e.code)).unwrap_err();
    let mut bitmap = [0u64; 8];
    assert_eq!(
        code(h.domain_logdirty_clean(d, &mut bitmap, 512)),
        ("xc_shadow_control", libc::EINVAL),
        "log-dirty is off"
    );
    h.domain_logdirty(d, true).unwrap();
    assert_eq!(
        h.domain_logdirty(d, true).unwrap_err().code,
        libc::EINVAL,
        "already on"
    );
    h.guest_write(d, 3 * 4096 + 10, b"hello").unwrap();
    h.write_guest(d, at(200 * 4096), &[1; 8192]).unwrap();
    assert_eq!(h.domain_logdirty_clean(d, &mut bitmap, 512).unwrap(), 3);
    assert_eq!(bitmap[0], 1 << 3);
    assert_eq!(bitmap[3], (1 << (200 - 192)) | (1 << (201 - 192)));
    assert_eq!(
        h.domain_logdirty_clean(d, &mut bitmap, 512).unwrap(),
        0,
        "cleaned"
    );
    assert_eq!(
        h.domain_logdirty_clean(d, &mut bitmap, 513)
            .unwrap_err()
            .code,
        libc::EINVAL,
        "bitmap too small"
    );
    h.domain_logdirty(d, false).unwrap();
    assert_eq!(
        h.domain_pfn_types(d, &[0, 511, 512]).unwrap(),
        vec![0, 0, 0xf << 28]
    );
    assert_eq!(
        h.domain_pfn_types(d, &[0; 1025]).unwrap_err().code,
        libc::E2BIG
    );
    assert_eq!(h.domain_maximum_gpfn(d).unwrap(), 511);
    assert_eq!(h.xen_version().unwrap(), (4, 17));
}

#[test]
fn a_host_kept_in_a_file_comes_back_whole_and_a_damaged_file_is_refused() {
    let h = host("nodes=2,node_mib=512,half_2m=1,free_mib=0:300");
    let d = hvm(&h, 64);
    populate(&h, d, 9, MemFlags::default(), &[0, 512]);
    h.write_guest(d, at(5 * 4096), b"kept").unwrap();
    h.hvm_param_set(d, 1, 0xfeffc).unwrap();
    h.set_shutdown(d, Some(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.json");
    h.save_to(&path).unwrap();

    let back = SimHost::load_from(&path).unwrap();
    assert_eq!(back.domain_snapshot(d), h.domain_snapshot(d));
    assert_eq!(back.p2m_extents(d), h.p2m_extents(d));
    assert_eq!(back.free_pages(), h.free_pages());
    assert_eq!(back.spec(), h.spec());
    let mut buf = [0u8; 4];
    back.read_guest(d, at(5 * 4096), &mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    assert_eq!(back.domain_getinfo(d).unwrap().shutdown_reason, Some(2));
    // It goes on as the same host: the next domain gets the next domid.
    assert_eq!(hvm(&back, 64), hvm(&h, 64));

    let text = std::fs::read_to_string(&path).unwrap();
    for (bad, why) in [
        (
            text.replace("version 1", "version 9"),
            "not 'xenguest simulated host",
        ),
        (
            text[..text.len() / 2].to_string(),
            "is not a simulated host",
        ),
        (
            text.replacen("\"free_pages\":", "\"free_pages\":1", 1),
            "inconsistent host",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = SimHost::load_from(&path).err().unwrap();
        assert!(e.contains(why), "{e}");
    }
    assert!(SimHost::load_from(&dir.path().join("none"))
        .err()
        .unwrap()
        .starts_with("cannot read"));
}
