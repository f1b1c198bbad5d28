//! Two domains of a simulated host holding the same guest: what a restore must reproduce of
//! what was saved. Shared by the engine's tests and the binary's.

#![allow(
    clippy::cast_possible_truncation,
    reason = "page counts of small test guests as buffer lengths"
)]

use xenguest::hypervisor::sim::SimHost;
use xenguest::hypervisor::Hypervisor;
use xenguest::migrate::native::save::SAVED_PARAMS;
use xenguest::types::{DomId, GuestPhys, MapAddr};

const PAGE: u64 = 4096;

/// Populated gfns of a domain as merged ranges.
fn populated(host: &SimHost, domid: DomId) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in host.p2m_extents(domid).unwrap() {
        match out.last_mut() {
            Some(last) if last.1 == e.gfn => last.1 += e.pages,
            _ => out.push((e.gfn, e.gfn + e.pages)),
        }
    }
    out
}

/// Same frames, same bytes in each, same params, TSC and HVM context.
pub fn assert_same_guest(host: &SimHost, a: DomId, b: DomId) {
    let ranges = populated(host, a);
    assert_eq!(ranges, populated(host, b), "the same gfns are populated");
    let mut buf_a = vec![0u8; 256 * PAGE as usize];
    let mut buf_b = buf_a.clone();
    for (start, end) in ranges {
        let mut gfn = start;
        while gfn < end {
            let n = (end - gfn).min(256);
            let len = (n * PAGE) as usize;
            let at = MapAddr::phys(GuestPhys(gfn * PAGE));
            host.read_guest(a, at, &mut buf_a[..len]).unwrap();
            host.read_guest(b, at, &mut buf_b[..len]).unwrap();
            if buf_a[..len] != buf_b[..len] {
                let i = (0..n)
                    .find(|i| {
                        let r = (i * PAGE) as usize..((i + 1) * PAGE) as usize;
                        buf_a[r.clone()] != buf_b[r]
                    })
                    .unwrap();
                panic!("gfn {:#x} differs", gfn + i);
            }
            gfn += n;
        }
    }
    for index in SAVED_PARAMS {
        assert_eq!(
            host.hvm_param_get(a, index).unwrap(),
            host.hvm_param_get(b, index).unwrap(),
            "HVM param {index}"
        );
    }
    let (sa, sb) = (
        host.domain_snapshot(a).unwrap(),
        host.domain_snapshot(b).unwrap(),
    );
    assert_eq!(
        host.domain_hvm_getcontext(a).unwrap(),
        sb.hvm_context.clone().unwrap()
    );
    assert_eq!(host.domain_get_tsc_info(a).unwrap(), sb.tsc_info.unwrap());
    assert_eq!(
        host.domain_get_cpu_policy(a).unwrap(),
        sb.cpu_policy.clone().unwrap()
    );
    assert_eq!(sa.tot_pages, sb.tot_pages, "no page more or less");
}
