//! Whole HVM builds on the simulated host: golden cases from the references, fragmentation,
//! NUMA placement, and a fault at every call position.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "tests read back guest ranges the test itself sized small, and build byte patterns"
)]

mod common;

use common::{real_hvmloader, request, Fixture};
use std::collections::BTreeMap;
use std::path::Path;
use xenguest::boot::{self, param, Special};
use xenguest::hypervisor::sim::{Fault, FaultAction};
use xenguest::hypervisor::{Hypervisor, PciSbdf, ReservedRange};
use xenguest::image::elf::Elf;
use xenguest::types::{DomId, E820Entry, E820Type, MapFrame};
use xenguest::ErrorKind;

const GIB: u64 = 1 << 30;

fn ram(addr: u64, end: u64) -> E820Entry {
    E820Entry {
        addr,
        size: end - addr,
        kind: E820Type::Ram,
    }
}

fn orders(pages: &BTreeMap<u32, u64>) -> (u64, u64, u64) {
    let get = |o: u32| pages.get(&o).copied().unwrap_or(0) >> o;
    (get(18), get(9), get(0))
}

#[test]
fn golden_4096_mib() {
    golden_4096(common::firmware::firmware());
}

#[test]
fn golden_4096_mib_with_debians_hvmloader() {
    if let Some(image) = real_hvmloader("golden_4096_mib_with_debians_hvmloader") {
        golden_4096(Path::new(image));
    }
}

fn golden_4096(image: &Path) {
    let fx = Fixture::new("nodes=2,node_mib=8192");
    let domid = fx.domain(4096, &[]);
    fx.host.clear_trace();
    let mut req = request(domid, 4096, 4096);
    req.image = image.to_path_buf();
    let out = fx.build(&req).unwrap();

    assert_eq!(out.result.wire_text(), "1044476 1044479");
    let layout = out.report.layout.as_ref().unwrap();
    assert_eq!(
        layout.e820,
        vec![ram(0x10_0000, 0xF000_0000), ram(4 * GIB, 0x1_1000_0000)]
    );
    assert_eq!(
        fx.key(domid, "vm-data/mmio-hole-size").as_deref(),
        Some("268435456")
    );

    // Same pages at the same orders as libxenguest: 2 x 1G, 1023 x 2M, 480 x 4K ...
    let snap = fx.host.domain_snapshot(domid).unwrap();
    assert_eq!(
        orders(&out.report.memory.ram.pages_by_order),
        (2, 1023, 480)
    );
    let mut expected = BTreeMap::from([(18, 2 << 18), (9, 1023 << 9), (0, 480 + 16)]);
    assert_eq!(
        snap.ram_pages_by_order, expected,
        "the host agrees (plus 16 special pages)"
    );
    expected.clear();
    // ... in 5 populate calls for RAM instead of 259 (at most 1 GiB each: 1G, 1G, 512 x 2M,
    // 511 x 2M, the 4K pages), plus one for the 16 special pages.
    assert_eq!(out.report.memory.ram.calls(), 5);
    assert_eq!(
        fx.host.call_counts(Some(domid))["domain_populate_physmap"],
        6
    );
    assert_eq!(snap.repopulated_pages, 0, "every page populated once");
    assert_eq!(snap.tot_pages, (4096 << 8) - 32 + 16);
    assert_eq!(snap.e820.as_deref(), Some(&layout.e820[..]));

    // The call sequence, as kinds (consecutive repeats collapsed).
    let mut kinds: Vec<&str> = fx.host.trace_for(domid).iter().map(|t| t.kind).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        vec![
            "domain_getinfo",
            "sched_credit_domain_get",
            "sched_credit_domain_set",
            "domain_set_tsc_info",
            "domain_populate_physmap",
            "domain_claim_pages",
            "domain_set_memory_map",
            "write_guest",
            "domain_populate_physmap",
            "clear_domain_pages",
            "hvm_param_set",
            "write_guest",
            "hvm_param_set",
            "write_guest",
            "hvm_param_set",
            "domain_hvm_set_boot_vcpu",
            "gnttab_seed",
            "hvm_param_set",
            "domain_set_time_offset",
            "cpuid_apply_policy",
            "domain_pages_by_node", // the report's placement query
        ]
    );
    assert!(fx.host.check_accounting().is_ok());
}

#[test]
fn firmware_lands_at_its_physical_addresses_and_boot_structures_are_right() {
    let (segments, bounds, _) = firmware_lands(common::firmware::firmware());
    assert_eq!(segments, 2, "text and data+bss");
    assert_eq!(
        bounds,
        (
            u64::from(common::firmware::FIRMWARE_PADDR),
            u64::from(common::firmware::FIRMWARE_END)
        )
    );
}

#[test]
fn debians_hvmloader_lands_at_its_physical_addresses() {
    if let Some(image) = real_hvmloader("debians_hvmloader_lands_at_its_physical_addresses") {
        let (_, bounds, module_paddr) = firmware_lands(Path::new(image));
        // The generated firmware ends where this one does, so modules land alike.
        assert_eq!(bounds.1, u64::from(common::firmware::FIRMWARE_END));
        let (_, _, generated) = firmware_lands(common::firmware::firmware());
        assert_eq!(module_paddr, generated, "iPXE at the same address");
    }
}

/// Build a 1 GiB guest with `image_path`, check every segment and the boot structures;
/// the image's segment count and physical bounds, and where the iPXE module went.
fn firmware_lands(image_path: &Path) -> (usize, (u64, u64), u64) {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(
        1024,
        &[
            ("platform/vcpu/number", "4"),
            ("platform/vcpu/current", "2"),
            ("platform/apic", "1"),
        ],
    );
    let mut req = request(domid, 1024, 1024);
    req.image = image_path.to_path_buf();
    fx.build(&req).unwrap();

    let image = std::fs::read(image_path).unwrap();
    let elf = Elf::parse(&image).unwrap();
    for seg in &elf.segments {
        let bytes = fx.read_guest(domid, seg.paddr, seg.memsz as usize);
        assert_eq!(
            &bytes[..seg.filesz as usize],
            elf.segment_bytes(seg),
            "hvmloader at {:#x}",
            seg.paddr
        );
        assert!(
            bytes[seg.filesz as usize..].iter().all(|b| *b == 0),
            "bss zeroed"
        );
    }
    let snap = fx.host.domain_snapshot(domid).unwrap();
    let boot_vcpu = snap.boot_vcpu.unwrap();
    assert_eq!(u64::from(boot_vcpu.entry), elf.entry);

    // hvm_start_info: magic, one module (iPXE) with its bytes and cmdline.
    let si = fx.read_guest(domid, boot_vcpu.start_info_paddr.into(), 4096);
    assert_eq!(
        u32::from_le_bytes(si[0..4].try_into().unwrap()),
        boot::START_INFO_MAGIC
    );
    assert_eq!(
        u32::from_le_bytes(si[12..16].try_into().unwrap()),
        1,
        "one module: ipxe"
    );
    let modlist = u64::from_le_bytes(si[16..24].try_into().unwrap());
    let entry = fx.read_guest(domid, modlist, 32);
    let (paddr, size) = (
        u64::from_le_bytes(entry[0..8].try_into().unwrap()),
        u64::from_le_bytes(entry[8..16].try_into().unwrap()),
    );
    assert_eq!(
        fx.read_guest(domid, paddr, size as usize),
        common::ipxe_bytes()
    );
    assert!(paddr >= elf.paddr_bounds().1, "module after the image");
    let cmdline = fx.read_guest(
        domid,
        u64::from_le_bytes(entry[16..24].try_into().unwrap()),
        5,
    );
    assert_eq!(&cmdline, b"ipxe\0");

    // hvm_info: vCPUs, online map, memory bounds, checksum.
    let info = fx.read_guest(domid, 0x9F800, boot::HVM_INFO_BYTES);
    assert_eq!(&info[0..8], b"HVM INFO");
    assert_eq!(info.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    assert_eq!(
        (
            info[13],
            u32::from_le_bytes(info[16..20].try_into().unwrap()),
            info[32]
        ),
        (1, 4, 0b11)
    );
    assert_eq!(
        u32::from_le_bytes(info[20..24].try_into().unwrap()),
        1024 << 8
    );

    // Special pages: populated, cleared (one call over all 16), params; identity table.
    let clear: Vec<_> = fx
        .host
        .trace_for(domid)
        .into_iter()
        .filter(|t| t.kind == "clear_domain_pages")
        .collect();
    assert_eq!(clear.len(), 1);
    assert!(fx
        .read_guest(domid, Special::Xenstore.gfn().paddr(), 4096)
        .iter()
        .all(|b| *b == 0));
    assert_eq!(
        fx.read_guest(domid, Special::IdentPt.gfn().paddr(), 4096),
        boot::ident_page_table()
    );
    let p = &snap.hvm_params;
    assert_eq!(p[&param::STORE_PFN], 0xFEFFC);
    assert_eq!(p[&param::CONSOLE_PFN], 0xFEFFF);
    assert_eq!(p[&param::IOREQ_SERVER_PFN], 0xFEFF0);
    assert_eq!(p[&param::NR_IOREQ_SERVER_PAGES], 8);
    assert_eq!(p[&param::IDENT_PT], 0xFEFFE000);
    assert_eq!((p[&param::STORE_EVTCHN], p[&param::CONSOLE_EVTCHN]), (1, 2));
    assert_eq!(p[&param::TRIPLE_FAULT_REASON], 3);
    assert_eq!(p[&param::HPET_ENABLED], 1);
    let grants = snap.grants.unwrap();
    assert_eq!(
        (grants.console, grants.xenstore),
        (
            MapFrame::Gfn(Special::Console.gfn()),
            MapFrame::Gfn(Special::Xenstore.gfn())
        )
    );
    (elf.segments.len(), elf.paddr_bounds(), paddr)
}

#[test]
fn golden_2048_mib() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(2048, &[]);
    let out = fx.build(&request(domid, 2048, 2048)).unwrap();
    assert_eq!(
        out.report.layout.unwrap().e820,
        vec![ram(0x10_0000, 2 * GIB)]
    );
    // The first GiB holds the VGA hole (2M and 4K); the second is one 1G extent.
    assert_eq!(orders(&out.report.memory.ram.pages_by_order), (1, 511, 480));
}

#[test]
fn golden_vgpu() {
    let fx = Fixture::new("nodes=1,node_mib=8192");
    let domid = fx.domain(4096, &[("platform/viridian_reference_tsc", "1")]);
    let mut req = request(domid, 4096, 4096);
    req.vgpu = true;
    let out = fx.build(&req).unwrap();
    let layout = out.report.layout.unwrap();
    assert_eq!(layout.mmio_size, 512 << 20);
    assert_eq!(
        layout.e820,
        vec![
            ram(0x10_0000, 0xE000_0000),
            ram(4 * GIB, 0x1_2000_0000),
            E820Entry {
                addr: 0xFB00_0000,
                size: 0x100_0000,
                kind: E820Type::Reserved
            }
        ]
    );
    assert_eq!(
        fx.key(domid, "vm-data/vram-reserved-addr").as_deref(),
        Some("fb000000")
    );
    assert_eq!(
        fx.key(domid, "vm-data/vram-reserved-size").as_deref(),
        Some("16777216")
    );
    assert_eq!(
        fx.key(domid, "vm-data/mmio-hole-size").as_deref(),
        Some("536870912")
    );
}

#[test]
fn viridian_mask_with_vgpu_stimer_default() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(
        1024,
        &[
            ("platform/viridian", "1"),
            ("platform/viridian_time_ref_count", "1"),
        ],
    );
    let mut req = request(domid, 1024, 1024);
    req.vgpu = true;
    fx.build(&req).unwrap();
    let v = fx.host.domain_snapshot(domid).unwrap().hvm_params[&param::VIRIDIAN];
    use boot::viridian::*;
    assert_eq!(
        v,
        boot::HVMPV_BASE_FREQ | CPU_HOTPLUG | TIME_REF_CNT | SYNIC | STIMER
    );
}

#[test]
fn passthrough_bars_grow_the_hole_and_rmrrs_are_reserved() {
    let fx = Fixture::new("nodes=1,node_mib=8192");
    let gpu = PciSbdf {
        seg: 0,
        bus: 3,
        dev: 0,
        func: 0,
    };
    fx.pci_device(
        "0000:03:00.0",
        &[256 << 20, 32 << 20, 16 << 20],
        0x10de,
        0x1db4,
    );
    fx.host.add_rmrr(
        gpu,
        ReservedRange {
            start_pfn: 0xC0000,
            nr_pages: 0x100,
        },
    );
    let domid = fx.domain(4096, &[]);
    let mut req = request(domid, 4096, 4096);
    req.pci_passthrough = vec![gpu];
    let out = fx.build(&req).unwrap();
    let layout = out.report.layout.unwrap();
    // 256 MiB + 304 MiB of BARs -> 1 GiB hole ... then the RMRR at 3 GiB grows it to cover [3G, 4G).
    assert_eq!((layout.mmio_start, layout.mmio_size), (0xC000_0000, GIB));
    assert!(layout.e820.contains(&E820Entry {
        addr: 0xC000_0000,
        size: 0x10_0000,
        kind: E820Type::Reserved
    }));
    let total: u64 = layout.ram_ranges_pages().iter().map(|(s, e)| e - s).sum();
    assert_eq!(total, 4096 << 8, "no RAM lost to the hole");
    assert!(fx.host.check_accounting().is_ok());
}

#[test]
fn mxgpu_gets_a_2_gib_hole() {
    let fx = Fixture::new("nodes=1,node_mib=8192");
    fx.pci_device("0000:05:00.0", &[16 << 20], 0x1002, 0x692f);
    let domid = fx.domain(4096, &[]);
    let mut req = request(domid, 4096, 4096);
    req.pci_passthrough = vec![PciSbdf {
        seg: 0,
        bus: 5,
        dev: 0,
        func: 0,
    }];
    assert_eq!(
        fx.build(&req).unwrap().report.layout.unwrap().mmio_size,
        2 * GIB
    );
}

#[test]
fn missing_sysfs_device_is_the_c_error() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(1024, &[]);
    let mut req = request(domid, 1024, 1024);
    req.pci_passthrough = vec![PciSbdf {
        seg: 0,
        bus: 9,
        dev: 1,
        func: 2,
    }];
    let e = fx.build(&req).unwrap_err();
    assert!(
        e.wire_text()
            .starts_with("Error: unable to get PCI MMIO info"),
        "{e}"
    );
}

#[test]
fn populate_on_demand_when_start_is_below_max() {
    let fx = Fixture::new("nodes=1,node_mib=8192");
    let domid = fx.domain(4096, &[]);
    let out = fx.build(&request(domid, 4096, 2048)).unwrap();
    assert_eq!(out.report.memory.pod_target_pages, Some(2048 << 8));
    let snap = fx.host.domain_snapshot(domid).unwrap();
    // All RAM is PoD, but for the pages the build wrote (firmware, tables): those were backed
    // from the cache on access, as Xen does.
    let pod: u64 = snap.pod_pages_by_order.values().sum();
    let backed: u64 = snap.ram_pages_by_order.values().sum::<u64>() - 16;
    assert!(backed > 0 && backed < 100, "{backed}");
    assert_eq!(pod + backed, (4096 << 8) - 32);
    // The cache backs the target; the pages written at build time came out of it.
    assert!(snap.pod_cache_pages > 0 && snap.pod_cache_pages <= 2048 << 8);
    assert_eq!(
        snap.tot_pages,
        (2048 << 8) + 16,
        "cache + special pages, nothing else"
    );
    assert!(fx.host.check_accounting().is_ok());
}

#[test]
fn safety_checks_and_force() {
    let fx = Fixture::new("nodes=1,node_mib=8192");
    let domid = fx.domain(2048, &[("platform/nested-virt", "1")]);
    let e = fx.build(&request(domid, 2048, 1024)).unwrap_err();
    assert_eq!(
        e.wire_text(),
        "Populate on Demand and Nested Virtualisation are mutually exclusive\n"
    );
    let mut forced = request(domid, 2048, 1024);
    forced.force = true;
    fx.build(&forced).unwrap();

    let domid = fx.domain(1024, &[]);
    let mut req = request(domid, 1024, 512);
    req.pci_passthrough = vec![PciSbdf {
        seg: 0,
        bus: 1,
        dev: 0,
        func: 0,
    }];
    assert_eq!(
        fx.build(&req).unwrap_err().wire_text(),
        "Populate on Demand and PCI Passthrough are mutually exclusive\n"
    );
}

#[test]
fn no_free_1g_chunk_falls_back_to_2m() {
    let fx = Fixture::new("nodes=2,node_mib=4096,no_1g=0,no_1g=1");
    let domid = fx.domain(4096, &[]);
    let out = fx.build(&request(domid, 4096, 4096)).unwrap();
    assert_eq!(
        orders(&out.report.memory.ram.pages_by_order),
        (0, 1023 + 1024, 480)
    );
    assert_eq!(
        out.report.memory.ram.fallback_extents_by_order.get(&18),
        Some(&2)
    );
    let snap = fx.host.domain_snapshot(domid).unwrap();
    assert_eq!(snap.repopulated_pages, 0);
    assert_eq!(
        snap.ram_pages_by_order.values().sum::<u64>(),
        (4096 << 8) - 32 + 16
    );
}

#[test]
fn half_the_2m_chunks_gone_falls_back_to_4k() {
    let fx = Fixture::new("nodes=1,node_mib=3072,half_2m=0");
    let domid = fx.domain(2048, &[]);
    let out = fx.build(&request(domid, 2048, 2048)).unwrap();
    let (g1, m2, k4) = orders(&out.report.memory.ram.pages_by_order);
    assert_eq!(g1, 0);
    assert!(m2 > 0 && k4 > 480, "some 2M, the rest 4K: {m2} {k4}");
    assert_eq!(out.report.memory.ram.pages(), (2048 << 8) - 32);
    assert_eq!(fx.host.domain_snapshot(domid).unwrap().repopulated_pages, 0);
}

#[test]
fn not_enough_memory_is_a_clear_error_and_nothing_leaks() {
    let fx = Fixture::new("nodes=1,node_mib=4096,free_mib=0:1024");
    let before = fx.host.free_pages();
    let domid = fx.domain(2048, &[]);
    let e = fx.build(&request(domid, 2048, 2048)).unwrap_err();
    // Found before anything is allocated: the host has 1 GiB free for a 2 GiB guest.
    assert!(matches!(e.kind, ErrorKind::NoRoom(_)), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "xenguest: hvm_build: [12] the guest needs 524288 pages but the host can give"
        ),
        "{e}"
    );
    assert_eq!(
        fx.host
            .call_counts(Some(domid))
            .get("domain_populate_physmap"),
        None
    );
    assert_eq!(fx.host.outstanding_claims(), 0);
    fx.host.destroy_domain(domid).unwrap();
    assert_eq!(fx.host.free_pages(), before);
    assert!(fx.host.check_accounting().is_ok());
}

#[test]
fn mem_pnode_populates_from_that_node_only() {
    let fx = Fixture::new("nodes=2,node_mib=8192");
    let domid = fx.domain(4096, &[]);
    let mut req = request(domid, 4096, 4096);
    req.mem_pnode = Some(1);
    let out = fx.build(&req).unwrap();
    let nodes = out.report.memory.pages_by_node.unwrap();
    assert!(
        nodes[0] <= 16,
        "only the special pages may come from elsewhere: {nodes:?}"
    );
    assert_eq!(nodes[0] + nodes[1], (4096 << 8) - 32 + 16);
    let populate_flags: Vec<String> = fx
        .host
        .trace_for(domid)
        .iter()
        .filter(|t| t.kind == "domain_populate_physmap")
        .map(|t| t.detail.clone())
        .collect();
    assert_eq!(populate_flags.len(), 6, "{populate_flags:?}");
}

#[test]
fn mem_pnode_shortfall_names_the_node_and_never_spills() {
    let fx = Fixture::new("nodes=2,node_mib=8192,free_mib=1:1024");
    let node0_free = fx.host.free_pages_on_node(0);
    let domid = fx.domain(2048, &[]);
    let mut req = request(domid, 2048, 2048);
    req.mem_pnode = Some(1);
    let e = fx.build(&req).unwrap_err();
    match &e.kind {
        ErrorKind::OutOfMemory {
            node: Some(1),
            wanted_pages,
            populated_pages,
        } => {
            assert_eq!(*wanted_pages, (2048 << 8) - 32);
            assert!(*populated_pages <= 1024 << 8);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("missing on node 1 (exact)"), "{e}");
    assert_eq!(
        fx.host.free_pages_on_node(0),
        node0_free,
        "nothing spilled to node 0"
    );
}

#[test]
fn partial_superpage_calls_fall_back_correctly() {
    for nth in 1..=2 {
        let fx = Fixture::new("nodes=1,node_mib=8192");
        let domid = fx.domain(4096, &[]);
        // nth=1: the 1G call completes 1 of 2; nth=2: the 2M call completes 100 of 1023.
        let done = if nth == 1 { 1 } else { 100 };
        fx.host
            .inject(Fault::partial(nth, done).for_domain(domid))
            .unwrap();
        let out = fx.build(&request(domid, 4096, 4096)).unwrap();
        assert_eq!(out.report.memory.ram.pages(), (4096 << 8) - 32);
        let snap = fx.host.domain_snapshot(domid).unwrap();
        assert_eq!(snap.repopulated_pages, 0, "nth={nth}");
        assert_eq!(
            snap.ram_pages_by_order.values().sum::<u64>(),
            (4096 << 8) - 32 + 16
        );
    }
}

/// A fault in every call the build makes, one at a time: the build fails with the C text
/// for that step (or carries on where the C xenguest ignores the failure), never panics,
/// leaves no claim, and destroying the domain returns every page.
#[test]
fn a_fault_at_every_call_position() {
    let clean = Fixture::new("nodes=2,node_mib=4096");
    let domid = clean.domain(
        2048,
        &[("platform/viridian", "1"), ("platform/x87-fip-width", "4")],
    );
    clean.host.clear_trace();
    clean.build(&request(domid, 2048, 2048)).unwrap();
    let calls: Vec<&'static str> = clean.host.trace_for(domid).iter().map(|t| t.kind).collect();
    assert!(calls.len() > 30);

    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut failed, mut tolerated) = (0, 0);
    for kind in calls {
        let nth = *seen.entry(kind).and_modify(|n| *n += 1).or_insert(1);
        for errno in [libc::ENOMEM, libc::EINVAL, libc::EBUSY] {
            let fx = Fixture::new("nodes=2,node_mib=4096");
            let free = fx.host.free_pages();
            let domid = fx.domain(
                2048,
                &[("platform/viridian", "1"), ("platform/x87-fip-width", "4")],
            );
            fx.host.domain_claim_pages(domid, 2048 << 8).unwrap(); // xenopsd's claim
            fx.host
                .inject(Fault {
                    kind,
                    nth,
                    domid: Some(domid),
                    action: FaultAction::Errno(errno),
                })
                .unwrap();
            match fx.build(&request(domid, 2048, 2048)) {
                Ok(out) => {
                    // Only where the C xenguest ignores the failure.
                    assert!(
                        matches!(
                            kind,
                            "sched_credit_domain_get"
                                | "hvm_param_set"
                                | "domain_claim_pages"
                                | "domain_pages_by_node"
                        ),
                        "{kind} #{nth} failed but the build went on"
                    );
                    assert_eq!(out.result.store_mfn, 1044476);
                    tolerated += 1;
                }
                Err(e) => {
                    let text = e.wire_text();
                    assert!(text.ends_with('\n') && text.len() > 10, "{kind}: {text:?}");
                    if text.starts_with("xenguest: ")
                        && !matches!(e.kind, ErrorKind::OutOfMemory { .. })
                    {
                        assert!(
                            text.contains(&format!("[{errno}]")),
                            "{kind} #{nth}: {text}"
                        );
                    }
                    failed += 1;
                }
            }
            if kind != "domain_claim_pages" {
                assert_eq!(
                    fx.host.outstanding_claims(),
                    0,
                    "{kind} #{nth}: claim left behind"
                );
            }
            fx.host.destroy_domain(domid).unwrap();
            assert_eq!(fx.host.free_pages(), free, "{kind} #{nth}: pages lost");
            fx.host.check_accounting().unwrap();
        }
    }
    assert!(
        failed > 80 && tolerated > 0,
        "failed {failed} tolerated {tolerated}"
    );
}

#[test]
fn ovmf_is_loaded_first_when_the_bios_is_ovmf() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let ovmf: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&fx.paths.ovmf, &ovmf).unwrap();
    std::fs::write(fx.dir.path().join("OVMF-custom.fd"), b"custom firmware").unwrap();

    let domid = fx.domain(1024, &[("hvmloader/bios", "ovmf")]);
    fx.build(&request(domid, 1024, 1024)).unwrap();
    let (data, name) = first_module(&fx, domid);
    assert_eq!(data, ovmf);
    assert_eq!(&name, b"firmware\0");
    assert_eq!(module_count(&fx, domid), 2, "firmware + ipxe");

    let domid = fx.domain(
        1024,
        &[
            ("hvmloader/bios", "ovmf"),
            ("platform/ovmf-override", "OVMF-custom.fd"),
        ],
    );
    fx.build(&request(domid, 1024, 1024)).unwrap();

    let domid = fx.domain(
        1024,
        &[
            ("hvmloader/bios", "ovmf"),
            ("platform/ovmf-override", "../../etc/passwd"),
        ],
    );
    let e = fx.build(&request(domid, 1024, 1024)).unwrap_err();
    assert!(
        e.to_string().contains("must be a filename, not a path"),
        "{e}"
    );

    let domid = fx.domain(1024, &[("hvmloader/bios", "rombios")]);
    let e = fx.build(&request(domid, 1024, 1024)).unwrap_err();
    assert!(
        e.to_string().contains("Unsupported bios type 'rombios'"),
        "{e}"
    );
}

/// The boot vCPU's start info page.
fn start_info(fx: &Fixture, domid: DomId) -> Vec<u8> {
    let si_paddr = fx
        .host
        .domain_snapshot(domid)
        .unwrap()
        .boot_vcpu
        .unwrap()
        .start_info_paddr;
    fx.read_guest(domid, si_paddr.into(), 4096)
}

/// How many modules the start info lists.
fn module_count(fx: &Fixture, domid: DomId) -> u32 {
    u32::from_le_bytes(start_info(fx, domid)[12..16].try_into().unwrap())
}

/// The first module's bytes and name, from the boot vCPU's start info.
fn first_module(fx: &Fixture, domid: DomId) -> (Vec<u8>, Vec<u8>) {
    let si = start_info(fx, domid);
    let modlist = u64::from_le_bytes(si[16..24].try_into().unwrap());
    let entry = fx.read_guest(domid, modlist, 32);
    let word = |i: usize| u64::from_le_bytes(entry[i * 8..i * 8 + 8].try_into().unwrap());
    let data = fx.read_guest(domid, word(0), word(1) as usize);
    let name = fx.read_guest(domid, word(2), 9);
    (data, name)
}

/// hvmloader without a built-in BIOS (Debian's) boots SeaBIOS as its `firmware` module, as
/// libxl passes it; a missing SeaBIOS file is named.
#[test]
fn seabios_is_the_firmware_module_when_the_bios_is_seabios() {
    let fx = Fixture::new("nodes=1,node_mib=4096");
    let seabios: Vec<u8> = (0..262144u32).map(|i| (i * 13 + 5) as u8).collect();
    std::fs::write(&fx.paths.seabios, &seabios).unwrap();
    let domid = fx.domain(1024, &[("hvmloader/bios", "seabios")]);
    fx.build(&request(domid, 1024, 1024)).unwrap();
    let (data, name) = first_module(&fx, domid);
    assert_eq!(data, seabios);
    assert_eq!(&name, b"firmware\0");

    std::fs::remove_file(&fx.paths.seabios).unwrap();
    let domid = fx.domain(1024, &[("hvmloader/bios", "seabios")]);
    let e = fx.build(&request(domid, 1024, 1024)).unwrap_err();
    assert!(
        e.to_string().contains("bios-256k.bin"),
        "the error names the missing file: {e}"
    );
}

#[test]
fn vcpus_scheduler_tsc_time_offset_and_cpuid_reach_the_hypervisor() {
    let fx = Fixture::new("nodes=2,node_mib=4096,cpus=8");
    let domid = fx.domain(
        1024,
        &[
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/0/affinity", "0110"),
            ("platform/vcpu/1/affinity", "00000001"),
            ("platform/vcpu/weight", "512"),
            ("platform/vcpu/cap", "50"),
            ("platform/tsc_mode", "2"),
            ("platform/timeoffset", "-7200"),
            ("platform/cores-per-socket", "2"),
            ("platform/nx", "0"),
            ("platform/pae", "true"),
        ],
    );
    fx.build(&request(domid, 1024, 1024)).unwrap();
    let snap = fx.host.domain_snapshot(domid).unwrap();
    assert_eq!(snap.vcpu_hard_affinity[0], vec![1, 2]);
    assert_eq!(snap.vcpu_hard_affinity[1], vec![7]);
    assert_eq!((snap.sched.weight, snap.sched.cap), (512, 50));
    assert_eq!(snap.tsc_mode, Some(2));
    assert_eq!(snap.time_offset_s, Some(-7200));
    let policy = snap.cpuid_policy.unwrap();
    assert_eq!(policy.cores_per_socket, 2);
    let nx = xenguest::cpuid::NX;
    assert_eq!(
        policy.featureset[nx.word] & (1 << nx.bit),
        0,
        "nx=0 clears NX"
    );
    let pae = xenguest::cpuid::PAE;
    assert_ne!(policy.featureset[pae.word] & (1 << pae.bit), 0, "pae kept");
}

#[test]
fn no_credit_scheduler_is_logged_not_fatal_and_bad_affinity_is() {
    let fx = Fixture::new("nodes=1,node_mib=4096,sched=credit2");
    let domid = fx.domain(1024, &[("platform/vcpu/weight", "512")]);
    fx.build(&request(domid, 1024, 1024)).unwrap();

    let fx = Fixture::new("nodes=1,node_mib=4096");
    let domid = fx.domain(1024, &[("platform/vcpu/0/affinity", "0000")]);
    let e = fx.build(&request(domid, 1024, 1024)).unwrap_err();
    assert!(
        e.wire_text()
            .starts_with("xenguest: xc_vcpu_setaffinity: [22] "),
        "{e}"
    );
}
