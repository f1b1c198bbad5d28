//! Pure parts of the e2e toolstack (`xg-e2e`), kept here so they are unit-tested on any machine:
//! the marker firmware image, the populate-call log of the `popcount` shim, and the timing of
//! libxenguest's build phase in a timestamped `xl -vvv create` log.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "a test harness parsing its own shim's log and building a tiny marker image"
)]

use std::collections::BTreeMap;

/// The line the HVM guest prints on its console (Xen's debug port 0xe9, shown by Xen as
/// `(d<domid>) <line>`).
pub const HVM_MARKER: &str = "XENGUEST-E2E-HVM-OK";

/// Size of the marker firmware: hvmloader's OVMF loader copies the image's last 64 KiB to
/// 0xF0000 (the reset vector's segment), so the image must hold at least that.
pub const FIRMWARE_BYTES: usize = 0x10000;

/// Where the code and the message sit in the image (= offset in segment 0xF000 at run time).
const CODE_OFFSET: usize = 0xFE00;
const MESSAGE_OFFSET: usize = 0xFF00;
const RESET_VECTOR_OFFSET: usize = 0xFFF0;

/// The marker firmware: a 64 KiB flat image handed to hvmloader as its `firmware` module (the
/// role OVMF plays for UEFI guests). hvmloader does its whole job (hypercall page, xenstore,
/// PCI, ACPI, SMBIOS, e820 from the memory map our build set), then jumps to the reset vector
/// F000:FFF0 in real mode. There this image jumps to 16-bit code that writes
/// `<HVM_MARKER> <text>\n` to port 0xE9 (Xen's HVM debug console) and halts with interrupts
/// off, which Xen turns into a clean poweroff of the domain ("All CPUs offline").
pub fn marker_firmware(text: &str) -> Vec<u8> {
    let mut img = vec![0u8; FIRMWARE_BYTES];
    let mut message = format!("{HVM_MARKER} {text}").into_bytes();
    message.retain(|&b| b != 0 && b != b'\n');
    message.truncate(RESET_VECTOR_OFFSET - MESSAGE_OFFSET - 2);
    message.extend_from_slice(b"\n\0");
    img[MESSAGE_OFFSET..MESSAGE_OFFSET + message.len()].copy_from_slice(&message);
    let [lo, hi] = (MESSAGE_OFFSET as u16).to_le_bytes();
    #[rustfmt::skip]
    let code = [
        0xFA,                   // cli
        0xFC,                   // cld
        0xBE, lo, hi,           // mov si, MESSAGE_OFFSET
        0xBA, 0xE9, 0x00,       // mov dx, 0xe9
        // next:
        0x2E, 0xAC,             // cs lodsb
        0x84, 0xC0,             // test al, al
        0x74, 0x03,             // jz done
        0xEE,                   // out dx, al
        0xEB, 0xF7,             // jmp next
        // done:
        0xFA,                   // cli
        0xF4,                   // hlt
        0xEB, 0xFC,             // jmp done
    ];
    img[CODE_OFFSET..CODE_OFFSET + code.len()].copy_from_slice(&code);
    let [lo, hi] = (CODE_OFFSET as u16).to_le_bytes();
    // jmp far 0xF000:CODE_OFFSET
    img[RESET_VECTOR_OFFSET..RESET_VECTOR_OFFSET + 5].copy_from_slice(&[0xEA, lo, hi, 0x00, 0xF0]);
    img
}

/// What a guest wrote to its console: the output half of a `struct xencons_interface` page
/// (public/io/console.h: `in[1024]`, `out[2048]`, then the u32 indexes in_cons, in_prod,
/// out_cons, out_prod). Everything the producer index says was written, wrapped at 2 KiB, as
/// text (at most the ring's size: older bytes were overwritten).
pub fn console_output(page: &[u8]) -> String {
    const OUT: usize = 1024;
    const OUT_BYTES: usize = 2048;
    const OUT_PROD: usize = 3084;
    let Some(prod) = page.get(OUT_PROD..OUT_PROD + 4) else {
        return String::new();
    };
    let prod = u32::from_le_bytes([prod[0], prod[1], prod[2], prod[3]]) as usize;
    let first = prod.saturating_sub(OUT_BYTES);
    let bytes: Vec<u8> = (first..prod).map(|i| page[OUT + i % OUT_BYTES]).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Populate calls from one process, as the `popcount` shim logged them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PopulateCount {
    /// Calls (`xc_domain_populate_physmap` and `_exact`, the inner call of `_exact` not
    /// counted twice).
    pub calls: u64,
    /// Extents asked for.
    pub extents: u64,
    /// Pages populated, by extent order.
    pub pages_by_order: BTreeMap<u32, u64>,
    /// Time spent inside the calls, microseconds.
    pub us: u64,
    /// The same, by extent order.
    pub us_by_order: BTreeMap<u32, u64>,
}

impl PopulateCount {
    /// Total pages populated.
    pub fn pages(&self) -> u64 {
        self.pages_by_order.values().sum()
    }

    /// `4k=<n> 2m=<n> 1g=<n>` in pages of each size.
    pub fn extents_text(&self) -> String {
        let n = |order: u32| self.pages_by_order.get(&order).unwrap_or(&0) >> order;
        format!("4k={} 2m={} 1g={}", n(0), n(9), n(18))
    }

    /// `us4k=<us> us2m=<us> us1g=<us>`: time inside the calls of each extent order.
    pub fn us_text(&self) -> String {
        let us = |order: u32| self.us_by_order.get(&order).copied().unwrap_or(0);
        format!("us4k={} us2m={} us1g={}", us(0), us(9), us(18))
    }
}

/// Sum the shim's log (`popcount comm=<c> pid=<p> fn=<f> domid=<d> order=<o> nr=<n> rc=<r>`
/// lines) per command name, for one domain. `rc` is the count done (the plain call) or 0/-1
/// (`_exact`, all or nothing).
pub fn count_populates(log: &str, domid: u32) -> BTreeMap<String, PopulateCount> {
    let mut out: BTreeMap<String, PopulateCount> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("popcount ") else {
            continue;
        };
        let kv: BTreeMap<&str, &str> = rest.split(' ').filter_map(|f| f.split_once('=')).collect();
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok());
        let (Some(d), Some(order), Some(nr), Some(rc)) =
            (num("domid"), num("order"), num("nr"), num("rc"))
        else {
            continue;
        };
        if d != i64::from(domid) {
            continue;
        }
        let done = match kv.get("fn") {
            Some(&"xc_domain_populate_physmap_exact") if rc == 0 => nr,
            Some(&"xc_domain_populate_physmap_exact") => 0,
            _ => rc.max(0),
        };
        let c = out
            .entry(kv.get("comm").unwrap_or(&"?").to_string())
            .or_default();
        c.calls += 1;
        c.extents += nr as u64;
        let us = num("us").unwrap_or(0).max(0) as u64;
        c.us += us;
        *c.us_by_order.entry(order as u32).or_default() += us;
        *c.pages_by_order.entry(order as u32).or_default() += (done as u64) << order;
    }
    out
}

/// In a log whose lines start with `[<ms>]` (`xg-e2e timed`), the milliseconds from libxl's
/// first libxenguest line (`xc_dom_allocate`) to its last (`xc_dom_release`): the C domain build.
pub fn libxenguest_build_ms(log: &str) -> Option<u64> {
    let stamp = |line: &str| -> Option<u64> {
        line.strip_prefix('[')?
            .split(']')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    let start = log
        .lines()
        .find(|l| l.contains("xc_dom_allocate"))
        .and_then(stamp)?;
    let end = log
        .lines()
        .filter(|l| l.contains("xc_dom_release"))
        .filter_map(stamp)
        .next_back()?;
    end.checked_sub(start)
}

/// libxenguest's own debug account of an HVM build's RAM (`PHYSICAL MEMORY ALLOCATION:` then
/// `4KB PAGES: 0x..`, `2MB PAGES: 0x..`, `1GB PAGES: 0x..`), as `4k=.. 2m=.. 1g=..`.
pub fn libxenguest_allocation(log: &str) -> Option<String> {
    let mut vals = Vec::new();
    for key in ["4KB PAGES:", "2MB PAGES:", "1GB PAGES:"] {
        let line = log.lines().find(|l| l.contains(key))?;
        let hex = line.split(key).nth(1)?.trim();
        vals.push(u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()?);
    }
    Some(format!("4k={} 2m={} 1g={}", vals[0], vals[1], vals[2]))
}

/// libxl's shadow (HAP) pool for a guest, KiB (`libxl_get_required_shadow_memory`).
pub fn required_shadow_kib(maxmem_kib: u64, vcpus: u32) -> u64 {
    4 * (256 * u64::from(vcpus) + 2 * (maxmem_kib / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_output_reads_the_out_ring_up_to_the_producer() {
        let mut page = vec![0u8; 4096];
        page[1024..1024 + 6].copy_from_slice(b"hello\n");
        page[3084..3088].copy_from_slice(&6u32.to_le_bytes());
        assert_eq!(console_output(&page), "hello\n");
        // Wrapped: 2050 bytes written, the first two were overwritten by the last two.
        page[1024..3072].fill(b'a');
        page[1024..1026].copy_from_slice(b"yz");
        page[3084..3088].copy_from_slice(&2050u32.to_le_bytes());
        let text = console_output(&page);
        assert_eq!(text.len(), 2048);
        assert!(text.ends_with("ayz") && text.starts_with("aa"), "{text:?}");
        assert_eq!(console_output(&page[..100]), "");
    }

    #[test]
    fn firmware_jumps_from_the_reset_vector_to_code_that_prints_the_marker() {
        let img = marker_firmware("domain built by xenguest");
        assert_eq!(img.len(), FIRMWARE_BYTES);
        // The reset vector (F000:FFF0) is the image's 16th byte from the end.
        assert_eq!(&img[0xFFF0..0xFFF5], &[0xEA, 0x00, 0xFE, 0x00, 0xF0]);
        assert_eq!(img[0xFE00], 0xFA);
        let msg = &img[0xFF00..];
        let end = msg.iter().position(|&b| b == 0).unwrap();
        assert_eq!(
            std::str::from_utf8(&msg[..end]).unwrap(),
            "XENGUEST-E2E-HVM-OK domain built by xenguest\n"
        );
        // The loop's backward jump lands on `cs lodsb`.
        let jmp_at = 0xFE00 + 15;
        assert_eq!(img[jmp_at], 0xEB);
        let target = (jmp_at + 2) as isize + (img[jmp_at + 1] as i8) as isize;
        assert_eq!(&img[target as usize..target as usize + 2], &[0x2E, 0xAC]);
        // jz skips `out` and the jmp to `cli; hlt`.
        let jz_at = 0xFE00 + 12;
        assert_eq!(
            &img[jz_at + 2 + img[jz_at + 1] as usize..][..2],
            &[0xFA, 0xF4]
        );
        // A long text never reaches the reset vector.
        let long = marker_firmware(&"x".repeat(1000));
        assert_eq!(&long[0xFFF0..0xFFF5], &img[0xFFF0..0xFFF5]);
    }

    #[test]
    fn populate_log_is_summed_per_process_and_domain() {
        let log = "\
popcount comm=xenguest pid=9 fn=xc_domain_populate_physmap domid=3 order=9 nr=10 rc=10 us=700
popcount comm=xenguest pid=9 fn=xc_domain_populate_physmap domid=3 order=0 nr=8 rc=5 us=20
popcount comm=xenguest pid=9 fn=xc_domain_populate_physmap_exact domid=3 order=0 nr=16 rc=0 us=30
popcount comm=xl pid=7 fn=xc_domain_populate_physmap_exact domid=3 order=0 nr=4 rc=-1
popcount comm=xl pid=7 fn=xc_domain_populate_physmap domid=4 order=18 nr=1 rc=1
garbage
";
        let c = count_populates(log, 3);
        let ours = &c["xenguest"];
        assert_eq!(ours.calls, 3);
        assert_eq!(ours.extents, 34);
        assert_eq!(ours.us, 750);
        assert_eq!(ours.us_text(), "us4k=50 us2m=700 us1g=0");
        assert_eq!(ours.pages(), 10 * 512 + 5 + 16);
        assert_eq!(ours.extents_text(), "4k=21 2m=10 1g=0");
        assert_eq!(c["xl"].calls, 1);
        assert_eq!(c["xl"].pages(), 0);
    }

    #[test]
    fn libxenguest_phase_and_allocation_come_from_the_xl_log() {
        let log = "\
[  10] libxl: debug: something
[ 120] domainbuilder: detail: xc_dom_allocate: cmdline=\"\", features=\"\"
[ 300] xc: detail: PHYSICAL MEMORY ALLOCATION:
[ 300] xc: detail:   4KB PAGES: 0x0000000000000200
[ 300] xc: detail:   2MB PAGES: 0x000000000000003f
[ 300] xc: detail:   1GB PAGES: 0x0000000000000000
[ 900] domainbuilder: detail: xc_dom_release: called
[ 950] libxl: debug: done
";
        assert_eq!(libxenguest_build_ms(log), Some(780));
        assert_eq!(
            libxenguest_allocation(log).as_deref(),
            Some("4k=512 2m=63 1g=0")
        );
        assert_eq!(libxenguest_build_ms("[1] nothing"), None);
    }

    #[test]
    fn shadow_pool_follows_libxl() {
        assert_eq!(required_shadow_kib(128 * 1024, 1), 4 * (256 + 256));
    }
}

/// What the toolstack and the build promised an HVM Linux guest, to check its marker against.
#[derive(Clone, Debug)]
pub struct HvmPromise {
    /// The domain the guest runs in.
    pub domid: u32,
    /// What the toolstack wrote to `data/e2e-token`.
    pub token: String,
    /// `platform/vcpu/number`.
    pub vcpus: u32,
    /// `platform/vcpu/current`.
    pub vcpus_current: u32,
    /// The guest's RAM (`-mem_max_mib`, xl's `maxmem`).
    pub mem_max_mib: u64,
    /// `memory/static-max`, as the toolstack wrote it (KiB).
    pub static_max_kib: u64,
    /// `memory/target`, as the toolstack wrote it (KiB).
    pub target_kib: u64,
    /// The domain's pages when it was unpaused (KiB), if known: a populate-on-demand guest
    /// (target below static-max) holds no more than its target, plus what the firmware and
    /// the device model's ROMs took ([`POD_SLACK_KIB`]).
    pub paused_kib: Option<u64>,
}

/// What a populate-on-demand guest may hold above its target before it runs: the special
/// pages, hvmloader's and QEMU's ROMs.
pub const POD_SLACK_KIB: u64 = 8 << 10;

/// How far the e820's RAM may fall short of the guest's maximum: the legacy hole at
/// 0xa0000-0x100000 (hvmloader: the VGA window and the BIOS), plus at most 1 MiB that SeaBIOS
/// keeps for itself at the top of low RAM.
const E820_LEGACY_HOLE_KIB: u64 = 384;
const E820_FIRMWARE_SLACK_KIB: u64 = 1024;
/// How far the balloon driver's target may be from static-max - target less the RAM the
/// e820 does not have (Linux's `watch_target` counts the pages it found at boot, which is the
/// e820's RAM less what never became a page).
const BALLOON_SLACK_KIB: u64 = 1024;

/// Linux's cpulist for CPUs 0..n (`/sys/devices/system/cpu/online`).
fn cpulist(n: u32) -> String {
    if n == 1 {
        "0".into()
    } else {
        format!("0-{}", n - 1)
    }
}

/// The ways the marker line of the HVM Linux guest (e2e/guests/linux-init.sh) differs from
/// what was promised; empty when it matches.
pub fn check_hvm_marker(line: &str, p: &HvmPromise) -> Vec<String> {
    let f = fields(line);
    let mut bad = Vec::new();
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("(missing)");
    let num = |k: &str| get(k).parse::<u64>().ok();
    let mut want = |k: &str, expected: String| {
        if get(k) != expected {
            bad.push(format!("{k}={} (expected {expected})", get(k)));
        }
    };
    want("domid", p.domid.to_string());
    want("token", p.token.clone());
    want("platform_pci", "bound".into());
    want("cpus_online", cpulist(p.vcpus_current));
    want("cpus_possible", cpulist(p.vcpus));
    if let Some(paused) = p.paused_kib {
        if p.target_kib < p.static_max_kib && paused > p.target_kib + POD_SLACK_KIB {
            bad.push(format!(
                "paused_kib={paused} (a populate-on-demand guest holds at most its target {} \
                 + {POD_SLACK_KIB} before it runs)",
                p.target_kib
            ));
        }
    }
    let max_kib = p.mem_max_mib << 10;
    let ram_hi = max_kib.saturating_sub(E820_LEGACY_HOLE_KIB);
    let ram_lo = ram_hi.saturating_sub(E820_FIRMWARE_SLACK_KIB);
    match num("e820_ram_kib") {
        Some(ram) if (ram_lo..=ram_hi).contains(&ram) => {
            let expected = p
                .target_kib
                .saturating_sub(p.static_max_kib.saturating_sub(ram));
            match (num("balloon_target_kib"), num("balloon_kib")) {
                (Some(t), Some(cur)) => {
                    if t.abs_diff(expected) > BALLOON_SLACK_KIB {
                        bad.push(format!(
                            "balloon_target_kib={t} (expected {expected}: memory/target {} - \
                             (static-max {} - e820 RAM {ram}), within {BALLOON_SLACK_KIB})",
                            p.target_kib, p.static_max_kib
                        ));
                    }
                    if cur > t {
                        bad.push(format!("balloon_kib={cur} (still above its target {t})"));
                    }
                }
                _ => bad.push("balloon figures missing".into()),
            }
        }
        Some(ram) => bad.push(format!(
            "e820_ram_kib={ram} (expected {ram_lo}..={ram_hi} for {} MiB)",
            p.mem_max_mib
        )),
        None => bad.push(format!("e820_ram_kib={}", get("e820_ram_kib"))),
    }
    bad
}

/// `key=value` fields of a line (values may be double-quoted, with spaces).
pub fn fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(' ').map(|i| i + 1).unwrap_or(0);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.entry(key).or_insert(value);
        rest = next;
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// The boot tests of an e2e serial log (`@@BOOT <guest> PASS|FAIL E2E ...` and the marker line
/// `@@SEEN <guest> ...` that made it pass) as a Markdown table.
pub fn boot_table(log: &str) -> String {
    let mut s = String::from(
        "Boot tests (guests built by our xenguest, then run; the `xl-` row by `xl create -p`). \
build: xenguest's run (xl: all of `xl create -p`); ready: from the domain's creation to the \
unpause, device model included; to marker: from the unpause to the guest's marker on its \
serial port:\n\n\
| guest | result | build | ready | guest ran | to marker | shutdown | what it printed |\n\
|---|---|---|---|---|---|---|---|\n",
    );
    for rest in log.lines().filter_map(|l| l.split("@@BOOT ").nth(1)) {
        let mut words = rest.split(' ');
        let (guest, verdict) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
        let f = fields(rest);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("?").to_string();
        let seen = log
            .lines()
            .find_map(|l| l.split(&format!("@@SEEN {guest} ")).nth(1))
            .map(|l| l.trim().replace('|', "\\|"))
            .unwrap_or_default();
        let ms = |k: &str| f.get(k).map_or("–".into(), |v| format!("{v} ms"));
        s += &format!(
            "| {guest} | {verdict} | {} | {} | {} | {} | {} | `{seen}` |\n",
            ms("build_ms"),
            ms("ready_ms"),
            ms("run_ms"),
            ms("marker_ms"),
            get("shutdown")
        );
    }
    s + "\n"
}

/// The `real-xen-migration` section of BENCHMARKS.md from an e2e serial log: a row per
/// `@@MIGRATE <case> PASS|FAIL E2E MIGRATE ...` line (dom0's `migrate_case`).
pub fn migration_report(log: &str, qemu_s: u64) -> String {
    let mut s = format!(
        "## Real Xen 4.17 under QEMU: migration through `xenguest -mode listen` (`make e2e`)\n\n\
A 128 MiB guest that rewrites 2048 pages (8 MiB) a second and checks them is moved to a new \
domain by two `xenguest -mode listen` driven as emu-manager drives them (`xg-e2e migrate`), \
the stream on a socketpair. *engines*: the save's and the restore's stream engine (`default` \
is the native one for these HVM and PVH guests; `libxenguest` is Debian's libxenguest 4.17 \
through `XENGUEST_STREAM_ENGINE`), so the mixed rows are the differential: each engine's \
stream read by the other. Save: `migrate_init` to `completed`; restore done: when the \
target's `completed` arrived; downtime: from the source's suspend to the target's unpause \
(build_post included); pfns sent: the count after the last precopy pass (the stop-and-copy \
pass adds the rest), which counts every pfn a pass covers up to the highest gfn, holes \
included: these guests' special pages sit just below 4 GiB, so the first pass alone is \
about 1 M pfns, of which 32 K are RAM. *populate calls*, *time in populate* and *restored pages by order*: \
what the target's restore asked Xen for and how long Xen took over it, counted by the `LD_PRELOAD` shim of \
`xc_domain_populate_physmap{{,_exact}}` (`e2e/popcount`) in the target's xenguest whichever \
engine ran, as extents of each size (the native engine gives back the holes of a superpage \
it populated ahead). QEMU \
TCG (no KVM), {qemu_s} s for the run; times are an emulated machine's, to compare with each \
other, not with hardware. There is no `xl` column: `xl save` cannot save these guests (no PV \
drivers to suspend the PVH one, no device model for the HVM one).\n\n\
| case | result | engines (save → restore) | precopy passes | pfns sent | save | restore done | downtime | populate calls | time in populate | restored extents | target resumed at generation |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for rest in log.lines().filter_map(|l| l.split("@@MIGRATE ").nth(1)) {
        let mut words = rest.split(' ');
        let (case, verdict) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
        let f = fields(rest);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("?").to_string();
        let passes = match get("live").as_str() {
            "1" => get("iterations"),
            _ => "non-live".into(),
        };
        s += &format!(
            "| {case} | {verdict} | {} → {} | {passes} | {} | {} ms | {} ms | {} ms | {} | {} | {} | {} (source's last: {}) |\n",
            get("save_engine"),
            get("restore_engine"),
            get("sent_pages"),
            get("save_ms"),
            get("restore_done_ms"),
            get("downtime_ms"),
            get("populate_calls"),
            get("populate_us")
                .parse::<f64>()
                .map_or("?".into(), |us| format!("{:.0} ms", us / 1e3)),
            get("restored_pages"),
            get("target_first_gen"),
            get("source_last_gen"),
        );
    }
    if let Some(rest) = log.lines().find_map(|l| l.split("@@XLRESTORE pvh ").nth(1)) {
        let f = fields(rest);
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("?").to_string();
        s += &format!(
            "\n`xl restore` of a PVH guest saved non-live by the native engine, the stream wrapped in \
xl's save-file header and libxl's stream (`xg-e2e xl-restore`): **{}**; the restored domain \
resumed at generation {} (the source's last: {}) and ticked {} times.\n",
            rest.split(' ').next().unwrap_or("?"),
            get("target_first_gen"),
            get("source_last_gen"),
            get("target_ticks"),
        );
    }
    let compared: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("@@STREAMCMP ").nth(1))
        .collect();
    if !compared.is_empty() {
        s += "\nOne suspended 128 MiB guest saved non-live twice, by libxenguest's engine and by \
the native one (`xg-e2e stream-compare`), the two streams compared record by record: header, \
CPU policy, every pfn's type and data, TSC info (`nsec` aside), HVM params, and the HVM \
context record by record (the records that hold the time of the save, vCPU TSC and timers, \
are listed, not failed).\n\n\
| guest | result | pfns with data | holes | context records | differences | clock records that differ |\n\
|---|---|---|---|---|---|---|\n";
        for rest in compared {
            let mut words = rest.split(' ');
            let (guest, verdict) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
            let f = fields(rest);
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("?").to_string();
            let none = |v: String| if v.is_empty() { "none".to_string() } else { v };
            s += &format!(
                "| {guest} | {verdict} | {} | {} | {} | {} | {} |\n",
                get("pages"),
                get("holes"),
                get("context_records"),
                none(get("differences")),
                none(get("clock_records_differing")),
            );
        }
    }
    s + "\n"
}

/// Median, minimum and maximum of `v`, as `m (lo–hi)`.
fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    match median(v.to_vec()) {
        Some(m) => format!("{m:.0} ({lo:.0}–{hi:.0}) ms"),
        None => "?".into(),
    }
}

/// The `real-xen-inprocess` section of BENCHMARKS.md: the `@@STORM` lines of `xg-e2e storm`.
pub fn storm_report(log: &str, qemu_s: u64) -> String {
    let seq: Vec<BTreeMap<String, String>> = log
        .lines()
        .filter_map(|l| l.split("@@STORM seq ").nth(1))
        .map(fields)
        .collect();
    let get = |f: &BTreeMap<String, String>, k: &str| f.get(k).cloned().unwrap_or("?".into());
    let num = |f: &BTreeMap<String, String>, k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok());
    let mut s = format!(
        "## Real Xen 4.17 under QEMU: in-process builds against fork/exec (`make e2e`)\n\n\
The same builds with xenopsd's argv, by fork/exec of our binary (as xenopsd runs xenguest \
today) and by one long-lived OCaml process building in-process through the OCaml module \
(`xenguest-ocaml -serve`, `Xenguest.build_of_argv` on one handle, a thread per build, as \
xenopsd would), on the same host in one run (`xg-e2e storm`). *exec*: fork to exit of the \
binary; *in-process*: from the argv sent to the answer read; *core*: the build's own \
`elapsed_us`. QEMU TCG, {qemu_s} s for the run: compare the columns with each other.\n\n\
One build at a time, exec and in-process interleaved:\n\n\
| guest | builds | exec | in-process | in-process core | in-process / exec |\n|---|---|---|---|---|---|\n"
    );
    let mut split = String::from(
        "\nWhere an in-process build's time went, medians in µs (the build's own report: time \
inside hypervisor calls and xenstore operations, reading and unpacking images, and the rest, \
our own work). A kernel's first build unpacks it; the repeats find it in the cache:\n\n\
| guest | builds | core | hypervisor | xenstore | images | own |\n|---|---|---|---|---|---|---|\n",
    );
    let mut guests: Vec<String> = Vec::new();
    for f in &seq {
        let g = format!("{} {} MiB", get(f, "guest"), get(f, "size"));
        if !guests.contains(&g) {
            guests.push(g);
        }
    }
    for g in &guests {
        let rows: Vec<&BTreeMap<String, String>> = seq
            .iter()
            .filter(|f| &format!("{} {} MiB", get(f, "guest"), get(f, "size")) == g)
            .collect();
        let col = |k: &str, skip: usize| -> Vec<f64> {
            rows.iter().skip(skip).filter_map(|f| num(f, k)).collect()
        };
        let core: Vec<f64> = col("inproc_core_us", 0).iter().map(|us| us / 1e3).collect();
        let ratio = match (median(col("inproc_ms", 0)), median(col("exec_ms", 0))) {
            (Some(i), Some(e)) if e > 0.0 => format!("{:.2}", i / e),
            _ => "?".into(),
        };
        s += &format!(
            "| {g} | {} | {} | {} | {} | {ratio} |\n",
            rows.len(),
            spread(&col("exec_ms", 0)),
            spread(&col("inproc_ms", 0)),
            spread(&core)
        );
        let first_apart = g.starts_with("linux") && rows.len() > 1;
        let parts = [
            "core_us",
            "hypervisor_us",
            "xenstore_us",
            "images_us",
            "own_us",
        ];
        let mut split_row = |label: String, take: &[&BTreeMap<String, String>]| {
            let cells: Vec<String> = parts
                .iter()
                .map(|k| {
                    let v: Vec<f64> = take
                        .iter()
                        .filter_map(|f| num(f, &format!("inproc_{k}")))
                        .collect();
                    median(v).map_or("?".into(), |m| format!("{m:.0}"))
                })
                .collect();
            split += &format!("| {label} | {} | {} |\n", take.len(), cells.join(" | "));
        };
        if first_apart {
            split_row(format!("{g}, first build"), &rows[..1]);
            split_row(format!("{g}, repeats"), &rows[1..]);
        } else {
            split_row(g.clone(), &rows);
        }
        // A kernel: the first in-process build decompresses it, the repeats use the cache.
        if first_apart {
            s += &format!(
                "| {g}, in-process first build / repeats | | | {} / {} | | |\n",
                spread(&col("inproc_ms", 0)[..1]),
                spread(&col("inproc_ms", 1))
            );
        }
    }
    s += &split;
    s += "\nBursts: N builds at once, every domain created first; exec: N threads each forking the \
binary; in-process: N argv lines to the one process. *balanced*: the host's free pages after \
every domain was destroyed and scrubbed are those before, short by less than half a \
guest; *pages short*: by how many (the host's own allocations move the count: 291 pages short \
after the first burst of one run came back by the next; one 128 MiB guest left behind would \
be 32768).\n\n\
| guest | N | arm | whole burst | per build | slowest | pages short | balanced |\n|---|---|---|---|---|---|---|---|\n";
    for f in log
        .lines()
        .filter_map(|l| l.split("@@STORM burst ").nth(1))
        .map(fields)
    {
        s += &format!(
            "| {} {} MiB | {} | {} | {} ms | {} ms | {} ms | {} | {} |\n",
            get(&f, "guest"),
            get(&f, "size"),
            get(&f, "n"),
            if get(&f, "arm") == "exec" {
                "exec"
            } else {
                "in-process"
            },
            get(&f, "wall_ms"),
            get(&f, "median_ms"),
            get(&f, "max_ms"),
            get(&f, "short"),
            get(&f, "balanced"),
        );
    }
    s + "\n"
}

/// A row of the benchmark tables: the guest (`hvm`, `linux-pv`, ...) and its RAM in MiB.
type Row = (String, u64);

/// The `real-xen` section of BENCHMARKS.md from an e2e serial log (`@@BENCH`, `@@BOOT` and
/// `@@SEEN` lines written by dom0's /init).
pub fn bench_report(log: &str, qemu_s: u64) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("@@BENCH ")).collect();
    // A row per guest (`guest=`, HVM when absent) and size, in the order the log has them.
    let row_of = |f: &BTreeMap<String, String>| -> Option<Row> {
        let guest = f.get("guest").map_or("hvm", String::as_str).to_string();
        Some((guest, f.get("size")?.parse().ok()?))
    };
    let mut sizes: Vec<Row> = Vec::new();
    for row in lines.iter().filter_map(|l| row_of(&fields(l))) {
        if !sizes.contains(&row) {
            sizes.push(row);
        }
    }
    let rows_of = |who: &str, row: &Row| -> Vec<BTreeMap<String, String>> {
        lines
            .iter()
            .filter(|l| l.contains(&format!("@@BENCH {who} ")))
            .map(|l| fields(l))
            .filter(|f| row_of(f).as_ref() == Some(row))
            .collect()
    };
    let pick = |who: &str, row: &Row, key: &str| -> Vec<f64> {
        rows_of(who, row)
            .iter()
            .filter_map(|f| f.get(key)?.parse().ok())
            .collect()
    };
    let text = |who: &str, row: &Row, key: &str| -> String {
        rows_of(who, row)
            .first()
            .and_then(|f| f.get(key).cloned())
            .unwrap_or_else(|| "?".into())
    };
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into());
    // "median (min-max) ms" of a column
    let spread = |v: Vec<f64>| -> String {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
        match median(v) {
            Some(m) => format!("{m:.0} ({lo:.0}–{hi:.0}) ms"),
            None => "?".into(),
        }
    };
    let reps = sizes
        .first()
        .map(|r| pick("ours", r, "build_ms").len())
        .unwrap_or(0);
    let hv = log
        .lines()
        .find_map(|l| l.split("@@HYPERVISOR ").nth(1))
        .unwrap_or("xen ?")
        .trim();
    let mut s = String::new();
    s += "## Real Xen 4.17 under QEMU: our xenguest against `xl create -p` (`make e2e`)\n\n";
    s += &format!(
        "Debian 12's {hv} hypervisor booted by `qemu-system-x86_64` (TCG, `-cpu max,-smap,-rdtscp`, \
2 vCPUs, 4 GiB; dom0 1 GiB, 1 vCPU), every build on the same hypervisor, ours and xl's \
alternating, {reps} of each per HVM size (Debian's kernel as PV and PVH: fewer); whole QEMU run {qemu_s} s. Nested emulation makes \
hypercalls slow and very noisy (the same populate work takes 0.1 s or 4 s from one build to the \
next): read the medians and minima, and compare rows with each other, not with bare metal.\n\n"
    );
    s += &boot_table(log);
    s += "Time, ms, median (min–max):\n\n";
    s += "| guest | builder | build | in populate calls | build outside populate | whole command |\n";
    s += "|---|---|---|---|---|---|\n";
    for row @ (guest, size) in &sizes {
        let core: Vec<f64> = pick("ours", row, "core_us")
            .into_iter()
            .map(|us| us / 1000.0)
            .collect();
        let ours_pop: Vec<f64> = pick("ours", row, "populate_us")
            .into_iter()
            .map(|us| us / 1000.0)
            .collect();
        let xl_build = pick("xl", row, "libxenguest_build_ms");
        let xl_pop: Vec<f64> = pick("xl", row, "populate_us")
            .into_iter()
            .map(|us| us / 1000.0)
            .collect();
        let minus =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a - b).collect() };
        s += &format!(
            "| {guest} {size} MiB | Rust xenguest | {} | {} | {} | {} xenguest process |\n",
            spread(core.clone()),
            spread(ours_pop.clone()),
            spread(minus(&core, &ours_pop)),
            spread(pick("ours", row, "build_ms")),
        );
        s += &format!(
            "| {guest} {size} MiB | libxenguest (xl) | {} | {} | {} | {} `xl create -p` |\n",
            spread(xl_build.clone()),
            spread(xl_pop.clone()),
            spread(minus(&xl_build, &xl_pop)),
            spread(pick("xl", row, "wall_ms")),
        );
    }
    s += "\nPopulate calls and extents (4k/2m/1g) per build:\n\n";
    s += "| guest | calls: ours | calls: libxenguest | extents: ours | extents: libxenguest | in populate, 4k/2m/1g extents: ours | the same: libxenguest | libxenguest's own debug log |\n";
    s += "|---|---|---|---|---|---|---|---|\n";
    for row @ (guest, size) in &sizes {
        let pages = |who: &str| {
            format!(
                "{}/{}/{}",
                text(who, row, "4k"),
                text(who, row, "2m"),
                text(who, row, "1g")
            )
        };
        // median ms inside the calls of each extent order
        let by_order = |who: &str| {
            ["us4k", "us2m", "us1g"]
                .map(|k| ms(median(pick(who, row, k)).map(|us| us / 1000.0)))
                .join("/")
                + " ms"
        };
        s += &format!(
            "| {guest} {size} MiB | {} | {} | {} | {} | {} | {} | {} |\n",
            ms(median(pick("ours", row, "calls"))),
            ms(median(pick("xl", row, "calls"))),
            pages("ours"),
            pages("xl"),
            by_order("ours"),
            by_order("xl"),
            text("xl", row, "allocation"),
        );
    }
    s += "\n*build*: ours is the build as the binary logs it (`<mode>_build done: ... us`); \
libxenguest's is libxl's `xc_dom_allocate` to `xc_dom_release` in `xl -vvv` output, time-stamped \
as it is written. *in populate calls*: time inside `xc_domain_populate_physmap(_exact)`, measured, \
like the call and extent counts, by the same `LD_PRELOAD` shim on both sides (`e2e/popcount`; the \
builder's process only, not the device model), in all and by the order of the extents asked for. *whole command*: fork to exit of our binary run \
with xenopsd's argv (exec, dynamic linking, syslog, xenstore and the build), and the whole \
`xl create -p` (domain creation and the device model's start included). Extents are the first \
build's; libxenguest's log counts the VGA hole's 32 pages that it does not populate (and has no \
such line for PV and PVH). The Linux rows build Debian's xz-compressed vmlinuz with a busybox \
initramfs (PV: ramdisk; PVH: module): most of their build is decompressing the kernel, on both \
sides.\n";
    s
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn migration_rows_come_from_the_migrate_lines() {
        let log = "[ 27.2] @@MIGRATE pvh-live PASS E2E MIGRATE kind=pvh source=1 target=2 live=1 \
                   iterations=4 sent_pages=40000 save_ms=6496 restore_done_ms=6515 downtime_ms=900 \
                   save_engine=libxenguest restore_engine=native result=\"1 2\" \
                   source_last_gen=0000000b target_first_gen=0000000c target_ticks=6 \
                   populate_calls=3 populate_us=2500 restored_pages=\"4k=48 2m=64 1g=0\"\n\
                   [ 42.2] @@MIGRATE hvm-nonlive FAIL E2E MIGRATE kind=hvm live=0 save_ms=4630\n";
        let r = migration_report(log, 76);
        assert!(
            r.contains(
                "| pvh-live | PASS | libxenguest → native | 4 | 40000 | 6496 ms | 6515 ms | 900 ms | 3 | 2 ms | 4k=48 2m=64 1g=0 | 0000000c (source's last: 0000000b) |"
            ),
            "{r}"
        );
        assert!(
            r.contains("| hvm-nonlive | FAIL | ? → ? | non-live | ? | 4630 ms | ? ms |"),
            "{r}"
        );
        assert!(r.contains("76 s"));
    }

    fn promise() -> HvmPromise {
        HvmPromise {
            domid: 9,
            token: "t-42".into(),
            vcpus: 2,
            vcpus_current: 1,
            mem_max_mib: 512,
            static_max_kib: 512 << 10,
            target_kib: 384 << 10,
            paused_kib: Some(395_000),
        }
    }

    const GOOD: &str = "XENGUEST-E2E-LINUX-HVM-OK kernel=6.1 cpus=1 mem=400000kB domid=9 \
        token=t-42 platform_pci=bound cpus_online=0 cpus_possible=0-1 e820_ram_kib=523644 \
        balloon_kib=392828 balloon_target_kib=392828 mem_after=380000kB";

    #[test]
    fn hvm_marker_that_keeps_every_promise_passes() {
        assert_eq!(check_hvm_marker(GOOD, &promise()), Vec::<String>::new());
    }

    #[test]
    fn hvm_marker_names_each_broken_promise() {
        let line = GOOD
            .replace("domid=9", "domid=8")
            .replace("token=t-42", "token=xsread:_data/e2e-token:_ENOENT")
            .replace("cpus_online=0 ", "cpus_online=0-1 ")
            .replace("balloon_kib=392828", "balloon_kib=523644");
        let bad = check_hvm_marker(&line, &promise());
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad[0].starts_with("domid=8"), "{bad:?}");
        assert!(bad[1].contains("expected t-42"), "{bad:?}");
        assert!(bad[2].starts_with("cpus_online=0-1"), "{bad:?}");
        assert!(bad[3].contains("still above its target"), "{bad:?}");
        let line = GOOD.replace("e820_ram_kib=523644", "e820_ram_kib=261760");
        assert!(check_hvm_marker(&line, &promise())[0].starts_with("e820_ram_kib=261760"));
        let line = GOOD.replace("balloon_target_kib=392828", "balloon_target_kib=523644");
        assert!(check_hvm_marker(&line, &promise())[0].contains("memory/target 393216"));
        // Fully populated though the target is below the maximum: not populate-on-demand.
        let full = HvmPromise {
            paused_kib: Some(525_000),
            ..promise()
        };
        assert!(check_hvm_marker(GOOD, &full)[0].starts_with("paused_kib=525000"));
        assert!(!check_hvm_marker("nothing", &promise()).is_empty());
    }

    #[test]
    fn fields_take_quoted_values() {
        let f = fields(r#"@@BENCH ours size=128 rep=1 E2E name=b result="1 2" build_ms=3.5"#);
        assert_eq!(f["size"], "128");
        assert_eq!(f["result"], "1 2");
        assert_eq!(f["build_ms"], "3.5");
    }

    #[test]
    fn report_has_a_row_per_size_with_medians() {
        let log = r#"[1] @@HYPERVISOR xen 4.17.7
[2] (d1) XENGUEST-E2E-HVM-OK guest firmware reached
[3] @@BOOT hvm PASS E2E name=hvm-boot domid=1 build_ms=190.0 shutdown=poweroff run_ms=900
[3] @@SEEN hvm (d1) XENGUEST-E2E-HVM-OK guest firmware reached
[3] @@BOOT linux-pv FAIL E2E name=linux-pv domid=2 build_ms=7000.0 shutdown=crash run_ms=100
[3] @@BOOT xl-linux-hvm PASS E2E name=xl-linux-hvm domid=3 build_ms=4100 ready_ms=4100 shutdown=poweroff run_ms=150000 marker_ms=140000
[3] @@SEEN xl-linux-hvm XENGUEST-E2E-LINUX-HVM-OK cpus=1 domid=3
[4] @@BENCH ours size=128 rep=1 E2E name=b domid=2 create_ms=20.0 build_ms=200.0 post_ms=10.0 POPCOUNT comm=xenguest calls=3 4k=496 2m=63 1g=0 core_us=95000
[5] @@BENCH ours size=128 rep=2 E2E name=b domid=3 create_ms=30.0 build_ms=100.0 post_ms=10.0 POPCOUNT comm=xenguest calls=3 4k=496 2m=63 1g=0 core_us=90000
[6] @@BENCH xl size=128 rep=1 domid=4 TIMED wall_ms=1500 rc=0 XLPHASE libxenguest_build_ms=99 allocation="4k=512 2m=63 1g=0" POPCOUNT comm=xl calls=20
[7] @@BENCH ours guest=linux-pv size=256 rep=1 E2E name=k domid=5 build_ms=7000.0 POPCOUNT comm=xenguest calls=1 populate_us=5000 4k=0 2m=128 1g=0 us4k=0 us2m=5000 us1g=0 core_us=6500000
[8] @@BENCH xl guest=linux-pv size=256 rep=1 domid=6 TIMED wall_ms=9000 rc=0 XLPHASE libxenguest_build_ms=6000 allocation="?" POPCOUNT comm=xl calls=2 populate_us=4000 4k=0 2m=128 1g=0
"#;
        let r = bench_report(log, 300);
        assert!(
            r.contains("| hvm 128 MiB | Rust xenguest | 95 (90–95) ms | ? | ? | 200 (100–200) ms xenguest process |"),
            "{r}"
        );
        assert!(
            r.contains("| hvm 128 MiB | libxenguest (xl) | 99 (99–99) ms | ? | ? | 1500 (1500–1500) ms `xl create -p` |"),
            "{r}"
        );
        assert!(
            r.contains("| hvm 128 MiB | 3 | 20 | 496/63/0 | ?/?/? | ?/?/? ms | ?/?/? ms | 4k=512 2m=63 1g=0 |"),
            "{r}"
        );
        // The Linux rows come after the HVM ones, keyed by guest.
        assert!(
            r.contains("| linux-pv 256 MiB | Rust xenguest | 6500 (6500–6500) ms | 5 (5–5) ms | 6495 (6495–6495) ms | 7000 (7000–7000) ms xenguest process |"),
            "{r}"
        );
        assert!(
            r.contains(
                "| linux-pv 256 MiB | 1 | 2 | 0/128/0 | 0/128/0 | 0/5/0 ms | ?/?/? ms | ? |"
            ),
            "{r}"
        );
        assert!(r.find("| hvm 128 MiB | 3 |") < r.find("| linux-pv 256 MiB | 1 |"));
        assert!(
            r.contains(
                "| hvm | PASS | 190.0 ms | – | 900 ms | – | poweroff | `(d1) XENGUEST-E2E-HVM-OK guest firmware reached` |"
            ),
            "{r}"
        );
        assert!(
            r.contains("| linux-pv | FAIL | 7000.0 ms | – | 100 ms | – | crash | `` |"),
            "{r}"
        );
        assert!(
            r.contains("| xl-linux-hvm | PASS | 4100 ms | 4100 ms | 150000 ms | 140000 ms | poweroff | `XENGUEST-E2E-LINUX-HVM-OK cpus=1 domid=3` |"),
            "{r}"
        );
    }

    #[test]
    fn storm_report_tables() {
        let log = "\
[ 1.0] @@STORM seq guest=hvm size=128 rep=0 exec_ms=500.0 inproc_ms=200.0 inproc_core_us=150000 inproc_hypervisor_us=140000 inproc_xenstore_us=900 inproc_images_us=2000 inproc_own_us=700
[ 2.0] @@STORM seq guest=hvm size=128 rep=1 exec_ms=700.0 inproc_ms=300.0 inproc_core_us=250000 inproc_hypervisor_us=240000 inproc_xenstore_us=800 inproc_images_us=3000 inproc_own_us=600
[ 3.0] @@STORM seq guest=hvm size=128 rep=2 exec_ms=600.0 inproc_ms=250.0 inproc_core_us=200000 inproc_hypervisor_us=190000 inproc_xenstore_us=700 inproc_images_us=1000 inproc_own_us=800
[ 4.0] @@STORM burst guest=hvm size=128 n=8 arm=exec wall_ms=4000.0 median_ms=3000.0 max_ms=3900.0 free_before=9 free_after=9 balanced=yes
[ 5.0] @@STORM burst guest=hvm size=128 n=8 arm=inproc wall_ms=2000.0 median_ms=1500.0 max_ms=1990.0 free_before=9 free_after=9 short=0 balanced=yes
[ 6.0] @@STORM seq guest=linux-pvh size=256 rep=0 exec_ms=9000.0 inproc_ms=8000.0 inproc_core_us=7900000
[ 7.0] @@STORM seq guest=linux-pvh size=256 rep=1 exec_ms=9100.0 inproc_ms=400.0 inproc_core_us=300000
";
        let r = storm_report(log, 100);
        assert!(
            r.contains("| hvm 128 MiB | 3 | 600 (500–700) ms | 250 (200–300) ms | 200 (150–250) ms | 0.42 |"),
            "{r}"
        );
        assert!(
            r.contains("| linux-pvh 256 MiB, in-process first build / repeats | | | 8000 (8000–8000) ms / 400 (400–400) ms | | |"),
            "{r}"
        );
        assert!(
            r.contains(
                "| hvm 128 MiB | 8 | in-process | 2000.0 ms | 1500.0 ms | 1990.0 ms | 0 | yes |"
            ),
            "{r}"
        );
        assert!(r.contains("| hvm 128 MiB | 8 | exec | 4000.0 ms |"), "{r}");
        assert!(
            r.contains("| hvm 128 MiB | 3 | 200000 | 190000 | 800 | 2000 | 700 |"),
            "{r}"
        );
        // Rows without the parts (an older server) show what is missing.
        assert!(
            r.contains("| linux-pvh 256 MiB, first build | 1 | 7900000 | ? | ? | ? | ? |"),
            "{r}"
        );
    }
}
