//! The native stream engine on the simulated host: a guest built by the HVM builder is saved
//! live while it dirties pages between passes, restored into a new domain, and compared page
//! for page; version 2 streams, VERIFY, damaged streams, and every call failed in turn.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "tests size their guests small and build byte patterns"
)]

mod common;
#[path = "common/same_guest.rs"]
mod same_guest;

use common::{request, Fixture};
use same_guest::assert_same_guest;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use xenguest::hypervisor::sim::{DomainConfig, Fault, SimHost, TraceEntry};
use xenguest::hypervisor::{Hypervisor, SHUTDOWN_SUSPEND};
use xenguest::migrate::engine::{
    PrecopyDecision, PrecopyStats, RestoreHooks, RestoreResult, SaveHooks, XCFLAGS_DEBUG,
    XCFLAGS_LIVE,
};
use xenguest::migrate::native::restore::{self, RestoreStats};
use xenguest::migrate::native::save::{self, SaveStats};
use xenguest::migrate::stream::{Record, StreamReader, StreamWriter};
use xenguest::types::DomId;

const PAGE: u64 = 4096;

/// A running guest as a save sees it: it writes `dirty_per_pass` pages after each pass until
/// `passes` have been made, then the policy says stop; `suspend` is the toolstack's.
struct Guest<'a> {
    host: &'a SimHost,
    domid: DomId,
    passes: u32,
    dirty_per_pass: u64,
    seen: Mutex<Vec<PrecopyStats>>,
}

impl<'a> Guest<'a> {
    fn new(host: &'a SimHost, domid: DomId, passes: u32, dirty_per_pass: u64) -> Self {
        Guest {
            host,
            domid,
            passes,
            dirty_per_pass,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// Bytes the guest writes into page `i` of pass `pass`: recognisable, not zero.
    fn pattern(pass: u32, i: u64) -> Vec<u8> {
        (0..PAGE)
            .map(|b| (b as u8) ^ (i as u8) ^ (pass as u8).wrapping_mul(37) ^ 0x5a)
            .collect()
    }
}

impl SaveHooks for Guest<'_> {
    fn precopy_policy(&self, stats: PrecopyStats) -> PrecopyDecision {
        self.seen.lock().unwrap().push(stats);
        if stats.dirty_pages == -1 {
            // Between passes: the guest runs and writes.
            for i in 0..self.dirty_per_pass {
                let paddr = (0x1000 + i * 7) * PAGE;
                let data = Self::pattern(stats.iteration, i);
                self.host.guest_write(self.domid, paddr, &data).unwrap();
            }
        }
        if stats.iteration >= self.passes {
            PrecopyDecision::StopAndCopy
        } else {
            PrecopyDecision::Continue
        }
    }
    fn suspend(&self) -> bool {
        // One more write the last pass must carry (by a guest that writes at all), then the
        // toolstack suspends the guest.
        if self.dirty_per_pass > 0 {
            self.host
                .guest_write(self.domid, 0x2000 * PAGE, &Self::pattern(99, 1))
                .unwrap();
        }
        self.host
            .set_shutdown(self.domid, Some(SHUTDOWN_SUSPEND))
            .unwrap();
        true
    }
    fn progress(&self, _: u64, _: u64) {}
}

struct Quiet;
impl RestoreHooks for Quiet {
    fn progress(&self, _: u64, _: u64) {}
}

/// A built HVM guest of `mib` MiB with a few pages of its own data.
fn guest(fx: &Fixture, mib: u64) -> DomId {
    let domid = fx.domain(mib, &[]);
    fx.build(&request(domid, mib, mib)).unwrap();
    for i in 0..16u64 {
        fx.host
            .guest_write(domid, (0x300 + i) * PAGE, &Guest::pattern(0, i))
            .unwrap();
    }
    fx.host.set_shutdown(domid, None).unwrap();
    domid
}

/// A domain to restore into, as the toolstack creates it for an incoming guest.
fn target(host: &SimHost, mib: u64) -> DomId {
    host.create_domain(&DomainConfig::hvm((mib << 10) + 1024, 1))
        .unwrap()
}

fn restore_from(
    host: &SimHost,
    domid: DomId,
    input: impl Read,
    fallbacks: &Mutex<u32>,
) -> xenguest::Result<(RestoreResult, RestoreStats)> {
    let fallback = || {
        *fallbacks.lock().unwrap() += 1;
        Ok(())
    };
    let p = restore::Params {
        domid,
        store: (5, DomId(0)),
        console: (6, DomId(0)),
        cpuid_fallback: &fallback,
    };
    restore::restore(host, input, &p, &Quiet)
}

/// Save `src` into `dst` through a socket (the stream never sits whole in memory).
fn migrate(
    host: &SimHost,
    src: DomId,
    dst: DomId,
    hooks: &Guest<'_>,
    flags: u32,
) -> (SaveStats, RestoreStats, RestoreResult, u32) {
    let (mut tx, rx) = UnixStream::pair().unwrap();
    let fallbacks = Mutex::new(0);
    let (saved, restored) = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            let r = save::save(host, src, &mut tx, flags, hooks);
            tx.shutdown(std::net::Shutdown::Write).unwrap();
            r
        });
        let restored = restore_from(host, dst, rx, &fallbacks);
        (saver.join().unwrap(), restored)
    });
    let saved = saved.unwrap();
    let (result, stats) = restored.unwrap();
    let n = *fallbacks.lock().unwrap();
    (saved, stats, result, n)
}

#[test]
fn a_live_save_with_dirty_pages_restores_page_for_page_in_superpages() {
    let fx = Fixture::new("nodes=1,node_mib=6144");
    let src = guest(&fx, 2048);
    let dst = target(&fx.host, 2048);
    let hooks = Guest::new(&fx.host, src, 3, 40);
    let free_before = fx.host.free_pages();
    let (saved, restored, result, fallbacks) = migrate(&fx.host, src, dst, &hooks, XCFLAGS_LIVE);
    // The guest was told it migrated in full, and the policy was asked as libxenguest asks.
    let seen = hooks.seen.lock().unwrap().clone();
    let p2m_size = fx.host.domain_maximum_gpfn(src).unwrap() + 1;
    assert_eq!(
        seen[0],
        PrecopyStats {
            iteration: 0,
            total_written_pages: 0,
            dirty_pages: p2m_size as i64
        }
    );
    assert_eq!(seen[1].dirty_pages, -1);
    assert_eq!(seen[2].dirty_pages, 40, "the pages written between passes");
    assert_eq!(saved.pages_per_pass[0], p2m_size);
    assert_eq!(&saved.pages_per_pass[1..], &[40, 40, 41]);
    assert_eq!(fallbacks, 0, "a version 3 stream carries its CPU policy");

    // Restored: the same guest, populated with 2 calls of 1 GiB and a few of 4 KiB.
    assert_same_guest(&fx.host, src, dst);
    let snap = fx.host.domain_snapshot(dst).unwrap();
    assert_eq!(
        restored.populated_pages_by_order.get(&18),
        Some(&(2 << 18)),
        "{restored:?}"
    );
    assert!(
        restored.populate_calls() <= 5,
        "{:?}",
        restored.populate_calls_by_order
    );
    // All RAM came from the two 1 GiB extents, less the VGA hole given back.
    assert_eq!(snap.ram_pages_by_order.get(&18), Some(&((2 << 18) - 0x20)));
    assert_eq!(restored.punched_pages, 0x20, "the VGA hole");
    let store = fx.host.hvm_param_get(src, 1).unwrap();
    assert_eq!(result.store_frame, store);
    assert_eq!(snap.grants.unwrap().xenstore.number(), store);
    assert_eq!(
        fx.host.hvm_param_get(dst, 2).unwrap(),
        5,
        "store event channel"
    );
    fx.host.check_accounting().unwrap();
    assert_eq!(free_before - fx.host.free_pages(), snap.tot_pages);
}

#[test]
fn a_non_live_save_suspends_first_and_a_debug_save_verifies_clean() {
    let fx = Fixture::new("nodes=1,node_mib=2048");
    let src = guest(&fx, 128);
    let hooks = Guest::new(&fx.host, src, 1, 3);
    let dst = target(&fx.host, 128);
    let (saved, restored, _, _) = migrate(&fx.host, src, dst, &hooks, 0);
    assert!(
        hooks.seen.lock().unwrap().is_empty(),
        "no precopy without -live"
    );
    assert_eq!(saved.pages_per_pass.len(), 1);
    assert_same_guest(&fx.host, src, dst);
    assert_eq!(restored.verify_mismatches, 0);

    fx.host.set_shutdown(src, None).unwrap();
    let dst2 = target(&fx.host, 128);
    let (saved, restored, _, _) =
        migrate(&fx.host, src, dst2, &hooks, XCFLAGS_LIVE | XCFLAGS_DEBUG);
    // One precopy pass (the policy stops after it), the last pass, then the VERIFY pass.
    assert_eq!(saved.pages_per_pass.len(), 3, "{saved:?}");
    assert_eq!(
        saved.pages_per_pass[1],
        3 + 1,
        "written between passes and before suspend"
    );
    assert_eq!(restored.verify_mismatches, 0);
    assert_same_guest(&fx.host, src, dst2);
}

/// A whole stream in memory, from a non-live save of a small guest.
fn small_stream(fx: &Fixture) -> (DomId, Vec<u8>) {
    let src = guest(fx, 64);
    let hooks = Guest::new(&fx.host, src, 0, 0);
    let mut bytes = Vec::new();
    save::save(&fx.host, src, &mut bytes, 0, &hooks).unwrap();
    (src, bytes)
}

/// The stream rewritten by `edit`, record by record (headers kept as version 3).
fn rewrite(bytes: &[u8], mut edit: impl FnMut(Record<'_>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut r = StreamReader::new(bytes);
    r.read_headers().unwrap();
    let mut w = StreamWriter::new(Vec::new());
    w.write_headers(xenguest::migrate::stream::GuestType::X86Hvm, (4, 17))
        .unwrap();
    loop {
        let raw = r.next_record().unwrap();
        let rtype = raw.rtype;
        let rec = raw.decode().unwrap();
        let end = rec == Record::End;
        if let Some(body) = edit(rec) {
            w.write_raw(rtype, &body).unwrap();
        }
        if end {
            break;
        }
    }
    w.into_inner()
}

#[test]
fn a_version_2_stream_restores_with_the_cpuid_fallback() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let (src, bytes) = small_stream(&fx);
    let mut v2 = rewrite(&bytes, |rec| match rec {
        Record::CpuidPolicy(_) | Record::MsrPolicy(_) | Record::StaticDataEnd => None,
        r => Some(r.encode()),
    });
    // The image header's version (big-endian, bytes 12..16).
    v2[12..16].copy_from_slice(&2u32.to_be_bytes());
    let dst = target(&fx.host, 64);
    let fallbacks = Mutex::new(0);
    let (_, stats) = restore_from(&fx.host, dst, &v2[..], &fallbacks).unwrap();
    assert_eq!(stats.version, 2);
    assert_eq!(*fallbacks.lock().unwrap(), 1);
    assert!(fx.host.domain_snapshot(dst).unwrap().cpu_policy.is_none());
    let _ = src;

    // The same stream as version 3 is refused: STATIC_DATA_END must come first.
    v2[12..16].copy_from_slice(&3u32.to_be_bytes());
    let dst = target(&fx.host, 64);
    let e = restore_from(&fx.host, dst, &v2[..], &fallbacks).unwrap_err();
    assert_eq!(
        e.wire_text(),
        "xenguest: xc_domain_restore: [22] No STATIC_DATA_END seen before PAGE_DATA\n"
    );
}

#[test]
fn damaged_streams_are_named_and_cost_nothing_they_only_claim() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let (_, bytes) = small_stream(&fx);
    let free = fx.host.free_pages();
    let fail = |stream: &[u8]| {
        let dst = target(&fx.host, 64);
        let e = restore_from(&fx.host, dst, stream, &Mutex::new(0)).unwrap_err();
        fx.host.destroy_domain(dst).unwrap();
        assert_eq!(
            fx.host.free_pages(),
            free,
            "the toolstack's destroy frees it all"
        );
        e.wire_text()
    };
    // Cut anywhere: an EIO naming where.
    for cut in [0, 10, 24, 40, 41, bytes.len() / 2, bytes.len() - 1] {
        let t = fail(&bytes[..cut]);
        assert!(
            t.starts_with("xenguest: xc_domain_restore: [5] "),
            "{cut}: {t}"
        );
        assert!(t.contains(": the stream ended inside "), "{cut}: {t}");
    }
    // A pfn past what Xen maps.
    let far = rewrite(&bytes, |rec| match rec {
        Record::PageData(p) if p.entries()[0].0 .0 == 0 => {
            let mut enc = Record::PageData(p).encode();
            // The first entry's pfn: bytes 8..16 of the body.
            let entry = u64::from_le_bytes(enc[8..16].try_into().unwrap());
            enc[8..16].copy_from_slice(&(entry | (1 << 40)).to_le_bytes());
            Some(enc)
        }
        r => Some(r.encode()),
    });
    assert_eq!(
        fail(&far),
        "xenguest: xc_domain_restore: [22] pfn 0x10000000000 is beyond the largest guest frame Xen maps (0x1000000000)\n"
    );
    // An unknown mandatory record; an unknown optional one is skipped.
    let with = |rtype: u32| {
        let mut first = true;
        let mut r = StreamReader::new(&bytes[..]);
        r.read_headers().unwrap();
        let mut w = StreamWriter::new(Vec::new());
        w.write_headers(xenguest::migrate::stream::GuestType::X86Hvm, (4, 17))
            .unwrap();
        loop {
            let raw = r.next_record().unwrap();
            if first {
                w.write_raw(rtype, b"12345678").unwrap();
                first = false;
            }
            w.write_raw(raw.rtype, &raw.body).unwrap();
            if raw.rtype == 0 {
                break;
            }
        }
        w.into_inner()
    };
    assert_eq!(
        fail(&with(0x77)),
        "xenguest: xc_domain_restore: [22] Unrecognised mandatory record type 0x77 at byte 40\n"
    );
    let dst = target(&fx.host, 64);
    restore_from(&fx.host, dst, &with(0x8000_0077)[..], &Mutex::new(0)).unwrap();
    fx.host.destroy_domain(dst).unwrap();
    // A PV stream into an HVM domain.
    let mut pv = bytes.clone();
    pv[24] = 1; // the domain header's type: a little-endian u32 after the 24-byte image header
    assert_eq!(
        fail(&pv),
        "xenguest: xc_domain_restore: [22] Unable to restore a x86 PV stream into an HVM domain\n"
    );
}

/// Where to fail: the first, second and last call of each kind in a trace (a save makes one
/// `pfn_types` call per 1024 pfns, so failing each of those in turn would only repeat).
fn positions(trace: &[TraceEntry]) -> Vec<(&'static str, u64)> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for t in trace {
        *counts.entry(t.kind).or_insert(0) += 1;
    }
    let mut out = Vec::new();
    for (kind, n) in counts {
        let mut at = vec![1, 2.min(n), n];
        at.dedup();
        out.extend(at.into_iter().map(|nth| (kind, nth)));
    }
    out
}

/// Every call a save and a restore make, failed in turn: a clean error at the libxenguest
/// step, log-dirty off again, and after the toolstack destroys the target, every page back.
#[test]
fn every_call_of_save_and_restore_failed_in_turn() {
    let fx = Fixture::new("nodes=1,node_mib=1024");
    let (src, bytes) = small_stream(&fx);
    let hooks = Guest::new(&fx.host, src, 1, 2);
    // A clean live save, to learn its calls.
    fx.host.set_shutdown(src, None).unwrap();
    fx.host.clear_trace();
    save::save(&fx.host, src, std::io::sink(), XCFLAGS_LIVE, &hooks).unwrap();
    let calls = positions(&fx.host.trace_for(src));
    assert!(calls.iter().any(|c| c.0 == "domain_logdirty_clean"));
    println!("save: {} calls failed in turn", calls.len());
    for &(kind, nth) in &calls {
        fx.host.set_shutdown(src, None).unwrap();
        fx.host
            .inject(Fault::errno(kind, nth, libc::EIO).for_domain(src))
            .unwrap();
        let r = save::save(&fx.host, src, std::io::sink(), XCFLAGS_LIVE, &hooks);
        fx.host.clear_faults();
        match r {
            // Turning log-dirty off at the end is a cleanup whose failure is only logged.
            Ok(_) => {
                assert_eq!((kind, nth), ("domain_logdirty", 2));
                fx.host.domain_logdirty(src, false).unwrap();
            }
            Err(e) => assert!(
                e.wire_text().starts_with("xenguest: xc_domain_save: [5] "),
                "{kind} #{nth}: {e}"
            ),
        }
        // Log-dirty is off again (turning it on would say EINVAL if it were still on).
        fx.host
            .domain_logdirty(src, true)
            .unwrap_or_else(|e| panic!("{kind} #{nth}: log-dirty left on: {e}"));
        fx.host.domain_logdirty(src, false).unwrap();
    }

    // The restore.
    let dst = target(&fx.host, 64);
    fx.host.clear_trace();
    restore_from(&fx.host, dst, &bytes[..], &Mutex::new(0)).unwrap();
    let calls = positions(&fx.host.trace_for(dst));
    println!("restore: {} calls failed in turn", calls.len());
    fx.host.destroy_domain(dst).unwrap();
    let free = fx.host.free_pages();
    for &(kind, nth) in &calls {
        let dst = target(&fx.host, 64);
        fx.host
            .inject(Fault::errno(kind, nth, libc::EIO).for_domain(dst))
            .unwrap();
        let r = restore_from(&fx.host, dst, &bytes[..], &Mutex::new(0));
        fx.host.clear_faults();
        match r {
            // Clearing a param's page is best effort, as in libxenguest.
            Ok(_) => assert_eq!(kind, "clear_domain_pages", "#{nth}"),
            Err(e) => assert!(
                e.wire_text()
                    .starts_with("xenguest: xc_domain_restore: [5] "),
                "{kind} #{nth}: {e}"
            ),
        }
        fx.host.destroy_domain(dst).unwrap();
        assert_eq!(fx.host.free_pages(), free, "{kind} #{nth}: nothing leaked");
        fx.host.check_accounting().unwrap();
    }
}

#[test]
fn a_pv_domain_is_left_to_libxenguest() {
    let host = SimHost::from_spec("nodes=1,node_mib=256").unwrap();
    let pv = host.create_domain(&DomainConfig::pv(65536, 1)).unwrap();
    let hooks = Guest::new(&host, pv, 0, 0);
    let e = save::save(&host, pv, std::io::sink(), XCFLAGS_LIVE, &hooks).unwrap_err();
    assert!(
        e.wire_text()
            .contains("not implemented: the native stream engine saves HVM and PVH"),
        "{e}"
    );
}

/// The smallest useful stream (16 pages of RAM and a store page, policy, context, params):
/// it restores; with `XENGUEST_WRITE_SEEDS=1` it is written, headers stripped, as the
/// `migration_restore` fuzz target's seed.
#[test]
fn a_tiny_guest_saves_to_a_stream_small_enough_to_seed_the_fuzzer() {
    use xenguest::hypervisor::{CpuidLeaf, MemFlags, MsrEntry};
    let host = SimHost::from_spec("nodes=1,node_mib=256").unwrap();
    let src = host.create_domain(&DomainConfig::hvm(4096, 1)).unwrap();
    let mut gfns: Vec<u64> = (0..16).chain([0x20]).collect();
    host.domain_populate_physmap(src, 0, MemFlags::default(), &mut gfns)
        .unwrap();
    for i in 0..16u64 {
        host.guest_write(src, i * PAGE + 8, &Guest::pattern(1, i)[..64])
            .unwrap();
    }
    host.hvm_param_set(src, 1, 0x20).unwrap();
    let leaf = CpuidLeaf {
        leaf: 1,
        subleaf: u32::MAX,
        regs: [1, 2, 3, 4],
    };
    let msr = MsrEntry {
        index: 0xce,
        flags: 0,
        value: 0,
    };
    host.domain_set_cpu_policy(src, &[leaf], &[msr]).unwrap();
    let hooks = Guest::new(&host, src, 0, 0);
    let mut bytes = Vec::new();
    save::save(&host, src, &mut bytes, 0, &hooks).unwrap();
    assert!(bytes.len() < 96 << 10, "{} bytes", bytes.len());
    let dst = target(&host, 4);
    restore_from(&host, dst, &bytes[..], &Mutex::new(0)).unwrap();
    assert_same_guest(&host, src, dst);
    if std::env::var_os("XENGUEST_WRITE_SEEDS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/migration_restore");
        std::fs::create_dir_all(dir).unwrap();
        // The fuzz check writes the two headers (40 bytes) itself.
        std::fs::write(format!("{dir}/tiny-hvm"), &bytes[40..]).unwrap();
    }
}

/// The toolstack's `max_pages` (RAM + 1 MiB) leaves no room for a 1 GiB page ahead of a
/// 128 MiB guest: the restore asks for 2 MiB pages up to that headroom in one call, then
/// 4 KiB for the special pages, and asks for nothing Xen refuses: 2 calls where libxenguest's
/// restore makes one per batch of 1024 pfns (33 here).
#[test]
fn under_the_toolstacks_max_pages_a_small_guest_takes_2_mib_pages_in_a_few_calls() {
    let fx = Fixture::new("nodes=1,node_mib=2048");
    let src = guest(&fx, 128);
    let dst = target(&fx.host, 128);
    let hooks = Guest::new(&fx.host, src, 0, 0);
    let (_, restored, _, _) = migrate(&fx.host, src, dst, &hooks, 0);
    assert_same_guest(&fx.host, src, dst);
    assert_eq!(restored.refused_orders, Vec::<u32>::new(), "{restored:?}");
    assert_eq!(restored.populated_pages_by_order.get(&9), Some(&(64 * 512)));
    assert_eq!(restored.populate_calls(), 2, "{restored:?}");
    assert_eq!(restored.punched_pages, 0x20, "the VGA hole");
}
