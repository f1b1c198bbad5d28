//! Cancelling a build from another thread, on the simulated host: it stops at its next check
//! point, also inside a long populate on a slow host, fails with the cancelled error at the
//! step it was in, and leaves the host as any failed build leaves it (no claim, every page
//! back once the domain is destroyed).

mod common;

use common::{request, Fixture};
use std::time::{Duration, Instant};
use xenguest::builder::BuildMode;
use xenguest::cancel::Cancel;
use xenguest::error::ErrorKind;

/// A host without 1 GiB pages: a guest of tens of GiB takes one populate call per GiB.
const SMALL_PAGES: &str = "nodes=1,node_mib=40960,no_1g=0";
/// The guest of the long build, MiB.
const LONG_MIB: u64 = 32 << 10;

fn assert_left_clean(fx: &Fixture, domid: xenguest::types::DomId, free_before: u64) {
    assert_eq!(fx.host.outstanding_claims(), 0, "the claim is released");
    fx.host.destroy_domain(domid).unwrap();
    assert_eq!(fx.host.free_pages(), free_before, "every page is back");
    fx.host.check_accounting().unwrap();
}

#[test]
fn a_build_cancelled_before_it_starts_makes_no_call_and_says_so() {
    let fx = Fixture::new(SMALL_PAGES);
    let free = fx.host.free_pages();
    let domid = fx.domain(1024, &[]);
    fx.host.clear_trace();
    let cancel = Cancel::new();
    cancel.cancel();
    let e = fx
        .build_cancellable(BuildMode::Hvm, &request(domid, 1024, 1024), &cancel)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert_eq!(e.code(), libc::ECANCELED);
    assert_eq!(e.wire_line(), "xenguest: hvm_build: [125] build cancelled");
    let calls: Vec<_> = fx
        .host
        .trace_for(domid)
        .into_iter()
        .map(|t| t.kind)
        .collect();
    // Only the builder's own clean-up reaches the host: the claim release of a failed build.
    assert_eq!(calls, ["domain_claim_pages"]);
    assert_left_clean(&fx, domid, free);
}

#[test]
fn a_build_that_is_not_cancelled_is_unchanged() {
    let fx = Fixture::new(SMALL_PAGES);
    let domid = fx.domain(256, &[]);
    let out = fx
        .build_cancellable(BuildMode::Hvm, &request(domid, 256, 256), &Cancel::new())
        .unwrap();
    let plain_domid = fx.domain(256, &[]);
    let plain = fx.build(&request(plain_domid, 256, 256)).unwrap();
    assert_eq!(out.report.hypercalls, plain.report.hypercalls);
}

#[test]
fn a_cancel_from_another_thread_stops_a_long_populate_within_a_call() {
    let fx = Fixture::new(SMALL_PAGES);
    let free = fx.host.free_pages();
    // How many populate calls the whole build makes, at full speed.
    let baseline = {
        let d = fx.domain(LONG_MIB, &[]);
        let out = fx.build(&request(d, LONG_MIB, LONG_MIB)).unwrap();
        fx.host.destroy_domain(d).unwrap();
        out.report.hypercalls["domain_populate_physmap"]
    };
    assert!(baseline >= 32, "a long populate: {baseline} calls");

    let domid = fx.domain(LONG_MIB, &[]);
    fx.host.set_call_latency(Duration::from_millis(20));
    let cancel = Cancel::new();
    let remote = cancel.clone();
    let (result, stopped_after) = std::thread::scope(|s| {
        let host = &fx.host;
        let canceller = s.spawn(move || {
            // Cancel once the populate is under way.
            while host
                .call_counts(Some(domid))
                .get("domain_populate_physmap")
                .is_none_or(|&n| n < 2)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            remote.cancel();
            Instant::now()
        });
        let result =
            fx.build_cancellable(BuildMode::Hvm, &request(domid, LONG_MIB, LONG_MIB), &cancel);
        let returned = Instant::now();
        let cancelled_at = canceller.join().unwrap();
        (result, returned.saturating_duration_since(cancelled_at))
    });
    fx.host.set_call_latency(Duration::ZERO);
    let e = result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    assert_eq!(
        e.wire_line(),
        "xenguest: hvm_build_setup_mem: [125] build cancelled"
    );
    // The call in flight finishes (20 ms), then the build unwinds; the rest of the build
    // would take over 400 ms more.
    assert!(
        stopped_after < Duration::from_millis(500),
        "stopped {stopped_after:?} after the cancel"
    );
    let made = fx.host.call_counts(Some(domid))["domain_populate_physmap"];
    assert!(made < baseline, "{made} of {baseline} populate calls made");
    assert_left_clean(&fx, domid, free);
}

#[test]
fn every_mode_stops_and_reports_the_cancel() {
    let fx = Fixture::new(SMALL_PAGES);
    let free = fx.host.free_pages();
    for mode in [BuildMode::Hvm, BuildMode::Pvh] {
        let domid = fx.domain(128, &[]);
        let cancel = Cancel::new();
        cancel.cancel();
        let mut req = request(domid, 128, 128);
        req.image = fx.file("kernel", b"not even an image");
        let e = fx.build_cancellable(mode, &req, &cancel).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cancelled, "{mode:?}: {e}");
        assert_left_clean(&fx, domid, free);
    }
}
