//! Differential test: our image parser (`src/image`, as the builders use it) against
//! libxenguest's own `xc_dom_parse_image`, on real images: Debian's hvmloader and xen-shim,
//! grub's PV and PVH images and a Debian kernel (bzImage and the vmlinux inside).
//!
//! libxenguest runs in tests/support/xg_parse.c, built here and linked with the installed
//! libxenguest 4.17 (the product never links it for parsing); it opens libxenctrl with
//! `XC_OPENFLAG_DUMMY`, so no hypervisor is needed, and prints what it learnt. Each image is
//! parsed for a PV domain and for an HVM container by both sides: both must accept exactly
//! the containers the image is made for, and agree on every field both know. Each case prints
//! its table of compared values.
//!
//! The images come from `scripts/diff-images.sh` (grub, the kernel) and xen-utils-4.17
//! (hvmloader, xen-shim), so these tests are `#[ignore]`d in a plain `cargo test`:
//! `make test-diff` makes the images and runs them. A missing image fails its test, naming
//! how to get it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use xenguest::image::elf::Elf;
use xenguest::image::summary::{self, Container, ImageSummary, Pae};
use xenguest::image::{bzimage, decompress, DEFAULT_MAX_IMAGE_BYTES};

/// Where `scripts/diff-images.sh` puts its images (`IMAGES` there).
fn images_dir() -> PathBuf {
    std::env::var_os("XENGUEST_IMAGES")
        .map_or_else(|| PathBuf::from("/var/tmp/xenguest-images"), PathBuf::from)
}

const MAKE_IMAGES: &str = "run `make test-diff` (or scripts/diff-images.sh)";
const INSTALL_XEN: &str = "install xen-utils-4.17 (`make deps`)";

/// One real image and the containers it is made for.
struct Case {
    path: PathBuf,
    /// How to get the file when it is missing.
    how_to_get: &'static str,
    /// Containers both parsers must accept it in (and refuse it in the other).
    accepted_in: &'static [Container],
}

macro_rules! diff_test {
    ($name:ident, $path:expr, $how_to_get:expr, $accepted_in:expr) => {
        #[test]
        #[ignore = "needs real images and libxenguest: run `make test-diff`"]
        fn $name() {
            check(&Case {
                path: $path,
                how_to_get: $how_to_get,
                accepted_in: $accepted_in,
            });
        }
    };
}

diff_test!(
    hvmloader_is_hvm_firmware,
    PathBuf::from("/usr/lib/xen-4.17/boot/hvmloader"),
    INSTALL_XEN,
    &[Container::Hvm]
);
diff_test!(
    xen_shim_is_a_pvh_kernel,
    PathBuf::from("/usr/lib/xen-4.17/boot/xen-shim"),
    INSTALL_XEN,
    &[Container::Hvm]
);
diff_test!(
    pvgrub_x86_64_is_a_pv_kernel,
    images_dir().join("pvgrub-x86_64.elf"),
    MAKE_IMAGES,
    &[Container::Pv]
);
diff_test!(
    grub_i386_xen_pvh_is_a_pvh_kernel,
    images_dir().join("grub-pvh.elf"),
    MAKE_IMAGES,
    &[Container::Hvm]
);
// Linux boots both ways (PVH from 4.11: PHYS32_ENTRY). Our PVH builder still refuses a
// bzImage (it wants the vmlinux); the parser takes it as libxenguest does.
diff_test!(
    debian_vmlinuz_is_a_pv_and_pvh_kernel,
    images_dir().join("vmlinuz"),
    MAKE_IMAGES,
    &[Container::Pv, Container::Hvm]
);
diff_test!(
    debian_vmlinux_is_a_pv_and_pvh_kernel,
    images_dir().join("vmlinux"),
    MAKE_IMAGES,
    &[Container::Pv, Container::Hvm]
);

/// Parse `case` both ways in both containers; panic naming every disagreement.
fn check(case: &Case) {
    assert!(
        case.path.is_file(),
        "{} is missing: {}",
        case.path.display(),
        case.how_to_get
    );
    let file = std::fs::read(&case.path).expect("read the image");
    let mut report = String::new();
    let mut problems = Vec::new();
    for container in [Container::Pv, Container::Hvm] {
        let name = format!("{} in {}", case.path.display(), container_name(container));
        let ours = ours(&file, container);
        let theirs = libxenguest(&case.path, container);
        let expected = case.accepted_in.contains(&container);
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => {
                let rows = compare(&ours, &theirs);
                let differ: Vec<_> = rows.iter().filter(|(_, o, t)| o != t).collect();
                let (n, total) = (differ.len(), rows.len());
                writeln!(
                    report,
                    "\n{name}: accepted by both, {n} of {total} fields differ"
                )
                .unwrap();
                report.push_str(&table(&rows));
                problems.extend(
                    differ
                        .iter()
                        .map(|(f, o, t)| format!("{name}: {f}: ours {o:?}, libxenguest {t:?}")),
                );
                if !expected {
                    problems.push(format!(
                        "{name}: accepted by both, but the image is not made for it"
                    ));
                }
            }
            (Err(ours), Err(theirs)) => {
                writeln!(
                    report,
                    "\n{name}: refused by both\n  ours:        {ours}\n  libxenguest: {theirs}"
                )
                .unwrap();
                if expected {
                    problems.push(format!(
                        "{name}: refused by both, but the image is made for it"
                    ));
                }
            }
            (Ok(_), Err(theirs)) => problems.push(format!(
                "{name}: we accept it, libxenguest refuses it: {theirs}"
            )),
            (Err(ours), Ok(_)) => problems.push(format!(
                "{name}: libxenguest accepts it, we refuse it: {ours}"
            )),
        }
    }
    println!("{report}");
    assert!(
        problems.is_empty(),
        "disagreements:\n{}",
        problems.join("\n")
    );
}

fn container_name(c: Container) -> &'static str {
    match c {
        Container::Pv => "a PV domain",
        Container::Hvm => "an HVM container",
    }
}

/// The compared values, one row per field, marking those that differ.
fn table(rows: &[(String, String, String)]) -> String {
    // An empty string shows as "".
    let show = |v: &str| {
        if v.is_empty() {
            "\"\"".into()
        } else {
            v.to_string()
        }
    };
    let mut out = format!("  {:<22} {:<42} {:<42}\n", "field", "ours", "libxenguest");
    for (field, o, t) in rows {
        let mark = if o == t { "" } else { "   <-- DIFFERS" };
        let (o, t) = (show(o), show(t));
        writeln!(out, "  {field:<22} {o:<42} {t:<42}{mark}").unwrap();
    }
    out
}

// ---- Our side -------------------------------------------------------------------------

/// Our view of the image, as the fields xg_parse prints. What the builders do with a kernel
/// file: a gzip-compressed file is inflated (`xc_dom_kernel_file`), a bzImage's payload
/// unpacked (the bzImage loader), and the ELF image summarised.
fn ours(file: &[u8], container: Container) -> Result<BTreeMap<String, String>, String> {
    let limit = DEFAULT_MAX_IMAGE_BYTES;
    let inflated;
    let data = if decompress::is_gzip(file) {
        inflated = decompress::gunzip(file, limit).map_err(|e| e.to_string())?;
        &inflated[..]
    } else {
        file
    };
    let is_bzimage = bzimage::is_bzimage(data);
    let unpacked;
    let elf_bytes = if is_bzimage {
        unpacked = bzimage::unpack(data, limit).map_err(|e| e.to_string())?.0;
        &unpacked[..]
    } else {
        data
    };
    let elf = Elf::parse(elf_bytes).map_err(|e| e.to_string())?;
    let s = summary::summarize(&elf, container).map_err(|e| e.to_string())?;
    Ok(fields(&elf, &s, is_bzimage))
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn opt_hex(v: Option<u64>) -> String {
    v.map_or_else(|| "unset".into(), hex)
}

/// libelf keeps the first 15 bytes of a string note in a `char[16]`.
fn cut15(s: &Option<String>) -> String {
    let s = s.as_deref().unwrap_or("");
    let mut end = s.len().min(15);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The summary as the keys and value formats xg_parse prints.
fn fields(elf: &Elf<'_>, s: &ImageSummary, is_bzimage: bool) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    // Which libxenguest loader takes it, as we recognise the format.
    let loader = match (is_bzimage, &s.parms) {
        (true, _) => "Linux bzImage",
        (false, Some(_)) => "ELF-generic",
        (false, None) => "HVM-generic",
    };
    put("loader_name", loader.into());
    put("guest_type", s.guest_type.into());
    put(
        "kernel_seg",
        format!("{}..{}", hex(s.kernel_seg.0), hex(s.kernel_seg.1)),
    );
    let Some(p) = &s.parms else {
        // HVM firmware: its entry, and the image libxenguest's loader lays out.
        put("phys_entry", hex(s.entry));
        let (len, fnv) = firmware_image(elf);
        put("loaded_bytes", hex(len));
        put("loaded_fnv1a", hex(fnv));
        return f;
    };
    let n = &p.notes;
    put("virt_base", hex(p.virt_base));
    put("elf_paddr_offset", hex(p.elf_paddr_offset));
    put("virt_entry", hex(s.entry));
    put("virt_kstart", hex(s.kernel_seg.0));
    put("virt_kend", hex(s.kernel_seg.1));
    put("virt_hypercall", opt_hex(n.hypercall_page));
    put("virt_hv_start_low", opt_hex(n.hv_start_low));
    put("p2m_base", opt_hex(n.init_p2m));
    put("phys_entry", opt_hex(n.phys32_entry.map(u64::from)));
    put("guest_os", cut15(&n.guest_os));
    put("guest_ver", cut15(&n.guest_version));
    put("xen_ver", cut15(&n.xen_version));
    put("loader", cut15(&n.loader));
    put("pae", Pae::of(n).name().into());
    put("bsd_symtab", u8::from(n.bsd_symtab).to_string());
    put("unmapped_initrd", u8::from(n.mod_start_pfn).to_string());
    put("f_supported", hex(n.supported_features.into()));
    put("f_required", hex(n.required_features.into()));
    // The notes as recorded (libelf: the note's value; strings in full).
    let nums = [
        ("ENTRY", n.entry),
        ("HYPERCALL_PAGE", n.hypercall_page),
        ("VIRT_BASE", n.virt_base),
        ("PADDR_OFFSET", n.paddr_offset),
        ("HV_START_LOW", n.hv_start_low),
        ("SUSPEND_CANCEL", n.suspend_cancel),
        ("INIT_P2M", n.init_p2m),
        ("PHYS32_ENTRY", n.phys32_entry.map(u64::from)),
    ];
    for (name, v) in nums {
        if let Some(v) = v {
            put(&format!("note.{name}"), hex(v));
        }
    }
    let strings = [
        ("XEN_VERSION", &n.xen_version),
        ("GUEST_OS", &n.guest_os),
        ("GUEST_VERSION", &n.guest_version),
        ("LOADER", &n.loader),
        ("PAE_MODE", &n.pae_mode),
        ("FEATURES", &n.features),
    ];
    for (name, v) in strings {
        if let Some(v) = v {
            put(&format!("note.{name}"), escape(v));
        }
    }
    f
}

/// The `[pstart, pend)` image libxenguest's HVM loader writes (whole pages, segments at
/// `p_paddr - pstart`, the rest zero), as its length and FNV-1a hash: the same bytes our HVM
/// build writes into guest memory.
fn firmware_image(elf: &Elf<'_>) -> (u64, u64) {
    let (start, end) = elf.paddr_bounds();
    let len = (end - start).next_multiple_of(4096);
    let mut image = vec![0u8; usize::try_from(len).expect("firmware fits memory")];
    for seg in &elf.segments {
        let at = usize::try_from(seg.paddr - start).expect("in the image");
        let bytes = elf.segment_bytes(seg);
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let fnv = image.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (len, fnv)
}

/// xg_parse's escaping: anything unprintable (and the backslash) as `\xNN`.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'\\' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

// ---- libxenguest's side ---------------------------------------------------------------

/// Notes libelf records that `XenNotes` keeps only as parsed values: compared through
/// `f_supported`, `unmapped_initrd` and `bsd_symtab` instead.
const PARSED_ONLY_NOTES: [&str; 3] = [
    "note.SUPPORTED_FEATURES",
    "note.MOD_START_PFN",
    "note.BSD_SYMTAB",
];

/// xg_parse, compiled once per test run into cargo's scratch directory for tests.
fn xg_parse() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xg_parse");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/xg_parse.c");
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-o"])
            .arg(&out)
            .arg(&src)
            // -rdynamic: xg_parse's xc_map_foreign_ranges must be visible to libxenguest.
            .args(["-rdynamic", "-lxenguest", "-lxenctrl", "-lxentoollog"])
            .status()
            .expect("run cc");
        assert!(
            status.success(),
            "building tests/support/xg_parse.c failed (needs libxen-dev: `make deps`)"
        );
        out
    })
}

/// libxenguest's view of the image: xg_parse's `key=value` lines, or why it refused.
fn libxenguest(path: &Path, container: Container) -> Result<Vec<(String, String)>, String> {
    let mode = match container {
        Container::Pv => "pv",
        Container::Hvm => "hvm",
    };
    let out = Command::new(xg_parse())
        .arg(mode)
        .arg(path)
        .output()
        .expect("run xg_parse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .filter(|(k, _)| !PARSED_ONLY_NOTES.contains(&k.as_str()))
            .collect()),
        // Its log says why; the last error line is the reason.
        Some(2) => Err(stderr
            .lines()
            .rfind(|l| l.contains("error"))
            .unwrap_or("(no error logged)")
            .to_string()),
        _ => panic!(
            "xg_parse {mode} {} failed ({}):\n{stderr}",
            path.display(),
            out.status
        ),
    }
}

/// Every field either side printed, in xg_parse's order: (field, ours, theirs), with
/// `(absent)` where one side lacks it.
fn compare(
    ours: &BTreeMap<String, String>,
    theirs: &[(String, String)],
) -> Vec<(String, String, String)> {
    let absent = || "(absent)".to_string();
    let mut rows: Vec<_> = theirs
        .iter()
        .map(|(k, t)| {
            let o = ours.get(k).cloned().unwrap_or_else(absent);
            (k.clone(), o, t.clone())
        })
        .collect();
    for (k, o) in ours {
        if !theirs.iter().any(|(t, _)| t == k) {
            rows.push((k.clone(), o.clone(), absent()));
        }
    }
    rows
}
