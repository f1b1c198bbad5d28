//! `make bench`: the native stream engine on the simulated host, against a model of
//! libxenguest's restore: save throughput, restore time, populate calls and the restored
//! guest's page mix, per guest size. Prints a markdown section for BENCHMARKS.md.
//!
//! The libxenguest baseline is a model of `xc_domain_restore`'s memory handling
//! (xen-project/xen RELEASE-4.17.3, tools/libs/guest/xg_sr_restore.c: `process_page_data`
//! populates each batch's new pfns with one `xc_domain_populate_physmap_exact` call of
//! order-0 extents, then maps and writes them): it reads the same stream with the project's
//! codec and issues those calls for real against the simulated host. It lives here, not in
//! the product.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "statistics printed in whole units"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use xenguest::builder::{self, BuildEnv, BuildMode, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::hypervisor::{Hypervisor, MemFlags, SHUTDOWN_SUSPEND};
use xenguest::migrate::engine::{PrecopyDecision, PrecopyStats, RestoreHooks, SaveHooks};
use xenguest::migrate::native::{restore, save};
use xenguest::migrate::stream::{Record, StreamReader};
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::{DomId, GuestPhys, MapAddr};

const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";

struct NonLive<'a>(&'a SimHost, DomId);
impl SaveHooks for NonLive<'_> {
    fn precopy_policy(&self, _: PrecopyStats) -> PrecopyDecision {
        PrecopyDecision::StopAndCopy
    }
    fn suspend(&self) -> bool {
        self.0.set_shutdown(self.1, Some(SHUTDOWN_SUSPEND)).is_ok()
    }
    fn progress(&self, _: u64, _: u64) {}
}

struct Quiet;
impl RestoreHooks for Quiet {
    fn progress(&self, _: u64, _: u64) {}
}

/// A domain as xenopsd creates it: max_pages = RAM + 1 MiB.
fn domain(host: &SimHost, store: &MemoryStore, mib: u64) -> DomId {
    let domid = host
        .create_domain(&DomainConfig::hvm((mib << 10) + 1024, 1))
        .unwrap();
    let base = domain_path(domid);
    for (k, v) in [
        ("platform/vcpu/number", "1"),
        ("platform/vcpu/current", "1"),
    ] {
        store.write(&format!("{base}/{k}"), v).unwrap();
    }
    domid
}

/// The model of libxenguest's restore memory handling: per PAGE_DATA record, the pfns not
/// yet populated in one 4 KiB populate call, then the data written. Returns the calls made.
fn libxenguest_restore(host: &SimHost, domid: DomId, stream: &[u8]) -> u64 {
    let mut r = StreamReader::new(stream);
    r.read_headers().unwrap();
    let mut populated = BTreeSet::new();
    let mut calls = 0;
    loop {
        let raw = r.next_record().unwrap();
        match raw.decode().unwrap() {
            Record::End => return calls,
            Record::PageData(pages) => {
                let mut new: Vec<u64> = pages
                    .entries()
                    .iter()
                    .filter(|(p, t)| t.populates() && populated.insert(p.0))
                    .map(|(p, _)| p.0)
                    .collect();
                if !new.is_empty() {
                    calls += 1;
                    let n = new.len();
                    let done = host
                        .domain_populate_physmap(domid, 0, MemFlags::default(), &mut new)
                        .unwrap();
                    assert_eq!(done, n);
                }
                for (pfn, _, data) in pages.pages() {
                    if let Some(data) = data {
                        host.write_guest(domid, MapAddr::phys(GuestPhys(pfn.0 << 12)), data)
                            .unwrap();
                    }
                }
            }
            _ => {}
        }
    }
}

fn orders(pages: &BTreeMap<u32, u64>) -> String {
    let get = |o: u32| pages.get(&o).copied().unwrap_or(0);
    format!("{} / {} / {}", get(18), get(9), get(0))
}

fn main() {
    if !std::path::Path::new(HVMLOADER).exists() {
        eprintln!("{HVMLOADER} missing (make deps)");
        std::process::exit(1);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "## 4. Migration on the simulated host: the native engine against libxenguest's restore\n"
    );
    println!(
        "A guest built by our HVM builder (Debian's hvmloader) on a 1-node simulated host, saved \
         non-live by the native engine into memory, then restored into a fresh domain created as \
         xenopsd creates it (max_pages = RAM + 1 MiB) twice: by the native engine, and by a model \
         of libxenguest 4.17's restore (`process_page_data`: each batch's new pfns in one \
         4 KiB populate call, as `benches/migration.rs` documents), both against the same \
         simulated host. *Pages by order*: RAM pages the restore populated as 1 GiB / 2 MiB / \
         4 KiB extents (the native engine gives back what a superpage took beyond the guest's \
         RAM). Times are wall clock on {cpu}, one run each; the simulator's own costs (its \
         page store, its p2m) are in both columns.\n"
    );
    println!(
        "| guest | stream | save | save throughput | restore (native) | populate calls (native) | pages by order (native) | restore (libxenguest model) | populate calls (libxenguest model) | pages by order (model) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for mib in [512u64, 2048, 4096] {
        let host = SimHost::from_spec("nodes=1,node_mib=16384").unwrap();
        let store = MemoryStore::new();
        let src = domain(&host, &store, mib);
        let paths = HostPaths::default();
        let req = BuildRequest::new(src, mib, mib, HVMLOADER);
        builder::build(
            BuildEnv {
                hv: &host,
                store: &store,
                paths: &paths,
            },
            BuildMode::Hvm,
            &req,
        )
        .unwrap();
        let mut stream = Vec::new();
        let t = Instant::now();
        let saved = save::save(&host, src, &mut stream, 0, &NonLive(&host, src)).unwrap();
        let save_s = t.elapsed().as_secs_f64();
        let mb = saved.bytes as f64 / (1 << 20) as f64;

        let dst = domain(&host, &store, mib);
        let fallback = || Ok(());
        let params = restore::Params {
            domid: dst,
            store: (1, DomId(0)),
            console: (2, DomId(0)),
            cpuid_fallback: &fallback,
        };
        let t = Instant::now();
        let (_, stats) = restore::restore(&host, &stream[..], &params, &Quiet).unwrap();
        let native_ms = t.elapsed().as_secs_f64() * 1e3;
        let native_mix = host.domain_snapshot(dst).unwrap().ram_pages_by_order;
        host.destroy_domain(dst).unwrap();

        let model = domain(&host, &store, mib);
        let t = Instant::now();
        let model_calls = libxenguest_restore(&host, model, &stream);
        let model_ms = t.elapsed().as_secs_f64() * 1e3;
        let model_mix = host.domain_snapshot(model).unwrap().ram_pages_by_order;
        println!(
            "| HVM {mib} MiB | {mb:.0} MiB | {:.0} ms | {:.0} MiB/s | {native_ms:.0} ms | {} | {} | {model_ms:.0} ms | {model_calls} | {} |",
            save_s * 1e3,
            mb / save_s,
            stats.populate_calls(),
            orders(&native_mix),
            orders(&model_mix),
        );
    }
    println!();
}
