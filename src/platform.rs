//! `get_flags`: the VM's platform data, read from xenstore under `/local/domain/<domid>/`
//! and turned into typed values with the C xenguest's defaults and parsing rules.

use crate::error::{Error, ErrorKind, Result, Step};
use crate::store::{domain_path, Store};
use crate::types::DomId;
use serde::Serialize;

/// Most vCPUs an HVM guest's `hvm_info` table can describe (`HVM_MAX_VCPUS`).
pub const HVM_MAX_VCPUS: u32 = 128;
/// Most vCPUs a PV guest can have (Xen's `MAX_VIRT_CPUS` on x86).
pub const PV_MAX_VCPUS: u32 = 8192;

/// A value as the C `xenstore_get_value` reads it: `true`/`false` in any case, else
/// `strtoull(s, NULL, 0)`: leading white space, an optional sign (a minus wraps), `0x` hex,
/// leading-`0` octal, stopping at the first bad character. Returns the value and whether the
/// whole string was used; `None` on overflow (C's ERANGE, which it treats as absent).
pub fn parse_c_value(s: &str) -> Option<(u64, bool)> {
    if s.eq_ignore_ascii_case("true") {
        return Some((1, true));
    }
    if s.eq_ignore_ascii_case("false") {
        return Some((0, true));
    }
    strtoull(s)
}

/// `v` stored in a C `int`, as the C xenguest assigns `strtoull`'s result: its low 32 bits.
#[expect(
    clippy::cast_possible_truncation,
    reason = "the C code's implicit conversion, kept for the values it logs"
)]
fn c_int_of(v: u64) -> i32 {
    (v as u32).cast_signed()
}

/// Whether `v` stored in a C `int` is true (non-zero), as the C xenguest tests flags.
fn c_int_truth(v: u64) -> bool {
    v & 0xFFFF_FFFF != 0
}

/// `strtoull(s, &end, 0)`: the value, and whether `end` reached the end of `s`.
pub fn strtoull(s: &str) -> Option<(u64, bool)> {
    let b = s.as_bytes();
    let mut i = b
        .iter()
        .take_while(|c| c.is_ascii_whitespace() || **c == 0x0b)
        .count();
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, digits_from) = match (b.get(i), b.get(i + 1), b.get(i + 2)) {
        (Some(b'0'), Some(b'x' | b'X'), Some(c)) if c.is_ascii_hexdigit() => (16, i + 2),
        (Some(b'0'), _, _) => (8, i),
        _ => (10, i),
    };
    let digits = b[digits_from..]
        .iter()
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    if digits == 0 {
        return Some((0, s.is_empty()));
    }
    let mut value: u64 = 0;
    for c in &b[digits_from..digits_from + digits] {
        let d = (*c as char).to_digit(radix)? as u64;
        value = value.checked_mul(radix as u64)?.checked_add(d)?;
    }
    let value = if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some((value, digits_from + digits == b.len()))
}

/// Typed platform data (the C `struct flags`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlatformFlags {
    /// `platform/vcpu/number`: vCPUs the guest may have.
    pub vcpus: u32,
    /// `platform/vcpu/current`: vCPUs online at boot.
    pub vcpus_current: u32,
    /// `platform/vcpu/<n>/affinity`: '0'/'1' per pCPU, one per vCPU (None = unset).
    pub vcpu_affinity: Vec<Option<String>>,
    /// `platform/vcpu/weight` (0 = leave).
    pub vcpu_weight: u16,
    /// `platform/vcpu/cap` (0 = leave).
    pub vcpu_cap: u16,
    /// `platform/nx`.
    pub nx: bool,
    /// `platform/pae`.
    pub pae: bool,
    /// `platform/apic`: the hvm_info apic_mode.
    pub apic: u8,
    /// `platform/viridian` and its sub-features.
    pub viridian: Viridian,
    /// `platform/tsc_mode`.
    pub tsc_mode: u32,
    /// `platform/x87-fip-width`.
    pub x87_fip_width: u32,
    /// `platform/nomigrate` (forced on by nested virt).
    pub nomigrate: bool,
    /// `platform/cores-per-socket` (HVM containers only; 0 = unset).
    pub cores_per_socket: u32,
    /// `platform/nested-virt`, else `platform/exp-nested-hvm`.
    pub nested_virt: bool,
    /// `platform/hpet` (default on).
    pub hpet: bool,
    /// `platform/timeoffset`, seconds (libxenctrl takes an `int32_t`, so the parser bounds it).
    pub timeoffset_s: i32,
    /// The smallest MMIO hole the guest asks for, bytes (0 = default): the larger of
    /// `platform/mmio_hole_size` (bytes, the C xenguest's key) and `platform/mmio_size_mib`
    /// (MiB, the key xapi's platform data carries and its old in-process stubs passed to
    /// `xc_hvm_build` as `args.mmio_size`: xapi-project/xen-api at d940e578,
    /// `ocaml/xenguest/xenguest_stubs.c`, `get_flags`).
    pub mmio_hole_size_bytes: u64,
    /// `platform/acpi`, `acpi_s3`, `acpi_s4` after normalisation (-1 = was absent).
    pub acpi: [i32; 3],
    /// `platform/featureset`, raw.
    pub featureset: Option<String>,
}

/// Viridian (Hyper-V) enlightenments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Viridian {
    /// Base enlightenments.
    pub enabled: bool,
    /// `viridian_time_ref_count`.
    pub time_ref_count: bool,
    /// `viridian_reference_tsc`.
    pub reference_tsc: bool,
    /// `viridian_hcall_remote_tlb_flush`.
    pub hcall_remote_tlb_flush: bool,
    /// `viridian_apic_assist`.
    pub apic_assist: bool,
    /// `viridian_crash_ctl`.
    pub crash_ctl: bool,
    /// `viridian_stimer` (defaulted on with a vGPU, see [`read_platform`]).
    pub stimer: bool,
    /// Never read from xenstore by XenServer's xenguest (kept for fidelity).
    pub hcall_ipi: bool,
}

/// Reads keys relative to the domain's path, with the C defaults.
struct Reader<'a> {
    store: &'a dyn Store,
    base: String,
}

impl Reader<'_> {
    fn path(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    fn raw(&self, key: &str) -> Result<Option<String>> {
        self.store
            .read(&self.path(key))
            .map_err(Step::GetFlags.store())
    }

    /// The C `xenstore_get_value`: absent or overflowing → None.
    fn value(&self, key: &str) -> Result<Option<u64>> {
        let Some(s) = self.raw(key)? else {
            return Ok(None);
        };
        match parse_c_value(&s) {
            Some((v, true)) => Ok(Some(v)),
            Some((v, false)) => {
                log::warn!(
                    "{}: '{s}' is not a whole number; using {v}, as the C xenguest does",
                    self.path(key)
                );
                Ok(Some(v))
            }
            None => {
                log::warn!(
                    "{}: '{s}' is out of range; treated as unset",
                    self.path(key)
                );
                Ok(None)
            }
        }
    }

    fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self.value(key)?.unwrap_or(default))
    }

    fn bool(&self, key: &str) -> Result<bool> {
        Ok(c_int_truth(self.u64_or(key, 0)?))
    }

    /// An integer of type `T` (0 when absent); one that does not fit is an error naming the key
    /// and `T::MAX`, passed as `max` (the C code truncated).
    fn bounded<T: TryFrom<u64> + Into<u64> + Copy>(&self, key: &str, max: T) -> Result<T> {
        let v = self.u64_or(key, 0)?;
        match T::try_from(v) {
            Ok(t) => Ok(t),
            Err(_) => Err(Error::platform(
                self.path(key),
                self.raw(key)?.unwrap_or_default(),
                format!("must be at most {}", max.into()),
            )),
        }
    }

    /// `platform/mmio_size_mib` in bytes (0 when absent). Bounded here, in MiB, so that a
    /// value the layout refuses can only have come from `platform/mmio_hole_size`.
    fn mmio_size_mib(&self) -> Result<u64> {
        const KEY: &str = "platform/mmio_size_mib";
        let max_mib = crate::layout::MAX_MMIO_HOLE_BYTES >> 20;
        let mib = self.u64_or(KEY, 0)?;
        if mib > max_mib {
            return Err(Error::platform(
                self.path(KEY),
                self.raw(KEY)?.unwrap_or_default(),
                format!("must be at most {max_mib} (MiB)"),
            ));
        }
        Ok(mib << 20)
    }

    /// `hvmloader_flag`: normalise `platform/acpi*` to "0"/"1" for hvmloader, writing back.
    fn hvmloader_flag(&self, key: &str) -> Result<i32> {
        let write = |v: &str| {
            self.store
                .write(&self.path(key), v)
                .map_err(Step::GetFlags.store())
        };
        match self.raw(key)?.as_deref() {
            Some("1") => Ok(1),
            Some("0") => Ok(0),
            None => {
                write("0")?;
                Ok(-1)
            }
            Some(other) => {
                let n = if other.eq_ignore_ascii_case("true") {
                    1
                } else {
                    strtoull(other).map_or(0, |(v, _)| c_int_of(v))
                };
                let fixed = if n != 0 { "1" } else { "0" };
                log::info!(
                    "HVMLoader error: Fixing up key '{}' from '{other}' to '{n}'",
                    self.path(key)
                );
                write(fixed)?;
                Ok(n)
            }
        }
    }
}

/// Read and normalise the platform data (`get_flags`). `hvm` is the container type from
/// `xc_domain_getinfo`; `vgpu` is `-vgpu`. Writes back the normalised `platform/acpi*` keys.
pub fn read_platform(
    store: &dyn Store,
    domid: DomId,
    hvm: bool,
    vgpu: bool,
) -> Result<PlatformFlags> {
    let r = Reader {
        store,
        base: domain_path(domid),
    };
    let mut f = PlatformFlags {
        vcpus: r.bounded("platform/vcpu/number", u32::MAX)?,
        vcpus_current: r.bounded("platform/vcpu/current", u32::MAX)?,
        ..Default::default()
    };
    if hvm && f.vcpus == 0 {
        // The C xenguest built such a guest with no vCPU in its hvm_info table.
        return Err(Error::platform(
            r.path("platform/vcpu/number"),
            r.raw("platform/vcpu/number")?.unwrap_or_default(),
            "an HVM guest needs at least one vCPU",
        ));
    }
    // Bounded for PV too: a vCPU count is a loop over xenstore reads (the affinity keys),
    // and 2^32 - 1 of them hangs the builder while its memory grows.
    let (max_vcpus, kind) = if hvm {
        (HVM_MAX_VCPUS, "an HVM")
    } else {
        (PV_MAX_VCPUS, "a PV")
    };
    if f.vcpus > max_vcpus {
        let value = f.vcpus.to_string();
        let reason = format!("{kind} guest has at most {max_vcpus} vCPUs");
        return Err(Error::platform(
            r.path("platform/vcpu/number"),
            value,
            reason,
        ));
    }
    if f.vcpus_current > f.vcpus {
        return Err(Error::platform(
            r.path("platform/vcpu/current"),
            f.vcpus_current.to_string(),
            format!("more than platform/vcpu/number ({})", f.vcpus),
        ));
    }
    for n in 0..f.vcpus {
        f.vcpu_affinity
            .push(r.raw(&format!("platform/vcpu/{n}/affinity"))?);
    }
    f.vcpu_weight = r.bounded("platform/vcpu/weight", u16::MAX)?;
    f.vcpu_cap = r.bounded("platform/vcpu/cap", u16::MAX)?;
    f.nx = r.bool("platform/nx")?;
    f.viridian = Viridian {
        enabled: r.bool("platform/viridian")?,
        time_ref_count: r.bool("platform/viridian_time_ref_count")?,
        reference_tsc: r.bool("platform/viridian_reference_tsc")?,
        hcall_remote_tlb_flush: r.bool("platform/viridian_hcall_remote_tlb_flush")?,
        apic_assist: r.bool("platform/viridian_apic_assist")?,
        crash_ctl: r.bool("platform/viridian_crash_ctl")?,
        stimer: false,
        hcall_ipi: false,
    };
    match r.value("platform/viridian_stimer")? {
        Some(v) => f.viridian.stimer = c_int_truth(v),
        None if vgpu && (f.viridian.reference_tsc || f.viridian.time_ref_count) => {
            log::info!("vgpu attached and stimer not set - defaulting to enabled.");
            f.viridian.stimer = true;
        }
        None => {}
    }
    f.apic = r.bounded("platform/apic", u8::MAX)?;
    f.pae = r.bool("platform/pae")?;
    f.tsc_mode = r.bounded("platform/tsc_mode", u32::MAX)?;
    f.x87_fip_width = r.bounded("platform/x87-fip-width", u32::MAX)?;
    f.nomigrate = r.bool("platform/nomigrate")?;
    if hvm {
        f.cores_per_socket = r.bounded("platform/cores-per-socket", u32::MAX)?;
        if f.cores_per_socket != 0 && !f.vcpus.is_multiple_of(f.cores_per_socket) {
            return Err(Error::new(
                Step::GetFlags,
                ErrorKind::CoresPerSocket {
                    cores_per_socket: f.cores_per_socket,
                    vcpus: f.vcpus,
                },
            ));
        }
    }
    f.nested_virt = if r.raw("platform/nested-virt")?.is_some() {
        r.bool("platform/nested-virt")?
    } else {
        r.bool("platform/exp-nested-hvm")?
    };
    if f.nested_virt {
        f.nomigrate = true;
    }
    f.acpi = [
        r.hvmloader_flag("platform/acpi")?,
        r.hvmloader_flag("platform/acpi_s4")?,
        r.hvmloader_flag("platform/acpi_s3")?,
    ];
    f.hpet = match r.raw("platform/hpet")?.as_deref() {
        None | Some("") => true,
        Some(_) => r.bool("platform/hpet")?,
    };
    f.timeoffset_s = match r.raw("platform/timeoffset")? {
        None => 0,
        Some(s) => s.trim().parse::<i32>().map_err(|_| {
            Error::platform(
                r.path("platform/timeoffset"),
                s.clone(),
                "not a whole number of seconds that fits in 32 bits",
            )
        })?,
    };
    f.mmio_hole_size_bytes = r
        .u64_or("platform/mmio_hole_size", 0)?
        .max(r.mmio_size_mib()?);
    f.featureset = r.raw("platform/featureset")?;
    log_flags(domid, hvm, &f);
    Ok(f)
}

fn log_flags(domid: DomId, hvm: bool, f: &PlatformFlags) {
    let kind = if hvm { "HVM" } else { "PV" };
    log::info!("domid = {domid}; Determined the following parameters from xenstore ({kind}):");
    log::info!(
        "vcpu/number:{} vcpu/weight:{} vcpu/cap:{}",
        f.vcpus,
        f.vcpu_weight,
        f.vcpu_cap
    );
    log::info!(
        "nx: {}, pae {}, cores-per-socket {}, x86-fip-width {}, nested {}",
        f.nx as u8,
        f.pae as u8,
        f.cores_per_socket,
        f.x87_fip_width,
        f.nested_virt as u8
    );
    log::info!(
        "apic: {} acpi: {} acpi_s4: {} acpi_s3: {} tsc_mode: {} hpet: {}",
        f.apic,
        f.acpi[0],
        f.acpi[1],
        f.acpi[2],
        f.tsc_mode,
        f.hpet as u8
    );
    log::info!(
        "nomigrate {}, timeoffset {}, mmio_hole_size {:#x}",
        f.nomigrate as u8,
        f.timeoffset_s,
        f.mmio_hole_size_bytes
    );
    let v = &f.viridian;
    log::info!(
        "viridian: {}, time_ref_count: {}, reference_tsc: {}, hcall_remote_tlb_flush: {}, apic_assist: {}, crash_ctl: {}, stimer: {}, hcall_ipi: {}",
        v.enabled as u8,
        v.time_ref_count as u8,
        v.reference_tsc as u8,
        v.hcall_remote_tlb_flush as u8,
        v.apic_assist as u8,
        v.crash_ctl as u8,
        v.stimer as u8,
        v.hcall_ipi as u8
    );
    for (n, a) in f.vcpu_affinity.iter().enumerate() {
        log::debug!("vcpu/{n}/affinity:{}", a.as_deref().unwrap_or("unset"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A store with `keys` under domain 7, plus one vCPU unless `keys` says otherwise
    /// (xenopsd always writes `platform/vcpu/number`).
    fn store_with(keys: &[(&str, &str)]) -> MemoryStore {
        let s = MemoryStore::new();
        s.write("/local/domain/7/platform/vcpu/number", "1")
            .unwrap();
        for (k, v) in keys {
            s.write(&format!("/local/domain/7/{k}"), v).unwrap();
        }
        s
    }

    fn flags(keys: &[(&str, &str)]) -> Result<PlatformFlags> {
        read_platform(&store_with(keys), DomId(7), true, false)
    }

    #[test]
    fn strtoull_base_0_semantics() {
        assert_eq!(strtoull("42"), Some((42, true)));
        assert_eq!(strtoull("0x1F"), Some((31, true)));
        assert_eq!(strtoull("010"), Some((8, true)));
        assert_eq!(strtoull("  7"), Some((7, true)));
        assert_eq!(strtoull("12abc"), Some((12, false)));
        assert_eq!(strtoull("abc"), Some((0, false)));
        assert_eq!(strtoull(""), Some((0, true)));
        assert_eq!(strtoull("-1"), Some((u64::MAX, true)));
        assert_eq!(strtoull("0x"), Some((0, false)));
        assert_eq!(strtoull("08"), Some((0, false)));
        assert_eq!(strtoull("99999999999999999999"), None);
        assert_eq!(parse_c_value("TRUE"), Some((1, true)));
        assert_eq!(parse_c_value("False"), Some((0, true)));
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = store_with(&[]);
        let f = read_platform(&s, DomId(7), true, false).unwrap();
        assert_eq!((f.vcpus, f.vcpus_current, f.apic, f.tsc_mode), (1, 0, 0, 0));
        assert!(f.hpet, "hpet defaults on");
        assert!(!f.nx && !f.pae && !f.viridian.enabled && !f.nested_virt);
        assert_eq!(f.acpi, [-1, -1, -1]);
        // Absent acpi keys are written as "0" for hvmloader.
        assert_eq!(
            s.read("/local/domain/7/platform/acpi").unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            s.read("/local/domain/7/platform/acpi_s3")
                .unwrap()
                .as_deref(),
            Some("0")
        );
    }

    #[test]
    fn acpi_values_are_normalised_and_written_back() {
        let s = store_with(&[
            ("platform/acpi", "true"),
            ("platform/acpi_s3", "1"),
            ("platform/acpi_s4", "0x0"),
        ]);
        let f = read_platform(&s, DomId(7), true, false).unwrap();
        assert_eq!(f.acpi, [1, 0, 1]);
        assert_eq!(
            s.read("/local/domain/7/platform/acpi").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(
            s.read("/local/domain/7/platform/acpi_s4")
                .unwrap()
                .as_deref(),
            Some("0")
        );
        let s3_writes = s
            .writes()
            .into_iter()
            .filter(|(k, _)| k == "/local/domain/7/platform/acpi_s3")
            .count();
        assert_eq!(s3_writes, 1, "'1' is left alone: only the fixture wrote it");
    }

    #[test]
    fn good_values() {
        let f = flags(&[
            ("platform/vcpu/number", "4"),
            ("platform/vcpu/current", "2"),
            ("platform/vcpu/0/affinity", "0011"),
            ("platform/vcpu/weight", "512"),
            ("platform/vcpu/cap", "0x20"),
            ("platform/nx", "true"),
            ("platform/pae", "1"),
            ("platform/apic", "1"),
            ("platform/tsc_mode", "2"),
            ("platform/hpet", "0"),
            ("platform/timeoffset", "-3600"),
            ("platform/cores-per-socket", "2"),
            ("platform/mmio_hole_size", "0x40000000"),
            ("platform/featureset", "1-2"),
        ])
        .unwrap();
        assert_eq!(
            (f.vcpus, f.vcpus_current, f.vcpu_weight, f.vcpu_cap),
            (4, 2, 512, 32)
        );
        assert_eq!(f.vcpu_affinity, vec![Some("0011".into()), None, None, None]);
        assert!(f.nx && f.pae && !f.hpet);
        assert_eq!(
            (f.apic, f.tsc_mode, f.timeoffset_s, f.cores_per_socket),
            (1, 2, -3600, 2)
        );
        assert_eq!(f.mmio_hole_size_bytes, 1 << 30);
        assert_eq!(f.featureset.as_deref(), Some("1-2"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = flags(&[
            ("platform/vcpu/number", "4"),
            ("platform/cores-per-socket", "3"),
        ])
        .unwrap_err();
        assert_eq!(e.wire_text(), "Bad cores/socket setting: 3 (nr vcpus 4)\n");
        let e = flags(&[("platform/vcpu/weight", "70000")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("platform/vcpu/weight = '70000': must be at most 65535"),
            "{e}"
        );
        let e = flags(&[("platform/vcpu/number", "0")]).unwrap_err();
        assert!(e.to_string().contains("needs at least one vCPU"), "{e}");
        let e = flags(&[("platform/vcpu/number", "129")]).unwrap_err();
        assert!(e.to_string().contains("at most 128 vCPUs"), "{e}");
        let e = flags(&[
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/current", "3"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("platform/vcpu/current"), "{e}");
        for bad in ["soon", "2147483648", "-2147483649"] {
            let e = flags(&[("platform/timeoffset", bad)]).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("platform/timeoffset = '{bad}'")),
                "{e}"
            );
        }
        assert_eq!(
            flags(&[("platform/timeoffset", "-2147483648")])
                .unwrap()
                .timeoffset_s,
            i32::MIN
        );
        // The C parser's leniency is kept where it is harmless: trailing junk stops the number.
        assert_eq!(
            flags(&[("platform/vcpu/number", "2cpus")]).unwrap().vcpus,
            2
        );
        // Overflow counts as absent.
        assert_eq!(
            flags(&[("platform/tsc_mode", "99999999999999999999")])
                .unwrap()
                .tsc_mode,
            0
        );
    }

    /// Found by `cargo fuzz run platform`: a PV guest's `platform/vcpu/number` was only
    /// bounded by u32, and the affinity loop then read 2^32 - 1 keys (a hang, memory
    /// growing without bound).
    #[test]
    fn a_pv_vcpu_count_is_bounded_too() {
        let s = store_with(&[("platform/vcpu/number", "4294967295")]);
        let e = read_platform(&s, DomId(7), false, false).unwrap_err();
        assert!(
            e.to_string().contains("a PV guest has at most 8192 vCPUs"),
            "{e}"
        );
        let s = store_with(&[("platform/vcpu/number", "8192")]);
        let f = read_platform(&s, DomId(7), false, false).unwrap();
        assert_eq!(f.vcpu_affinity.len(), 8192);
    }

    #[test]
    fn mmio_size_mib_and_mmio_hole_size_the_larger_wins() {
        let hole = |keys: &[(&str, &str)]| flags(keys).map(|f| f.mmio_hole_size_bytes);
        assert_eq!(hole(&[]).unwrap(), 0);
        assert_eq!(
            hole(&[("platform/mmio_size_mib", "512")]).unwrap(),
            512 << 20
        );
        assert_eq!(
            hole(&[
                ("platform/mmio_size_mib", "1024"),
                ("platform/mmio_hole_size", "0x20000000"),
            ])
            .unwrap(),
            1 << 30
        );
        assert_eq!(
            hole(&[
                ("platform/mmio_size_mib", "256"),
                ("platform/mmio_hole_size", "0x40000000"),
            ])
            .unwrap(),
            1 << 30
        );
        assert_eq!(
            hole(&[("platform/mmio_size_mib", "2048")]).unwrap(),
            2 << 30
        );
        // MiB that would overflow bytes, or more than the largest hole: refused, naming the key.
        for bad in ["2049", "18446744073709551615"] {
            let e = hole(&[("platform/mmio_size_mib", bad)]).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("/local/domain/7/platform/mmio_size_mib")
                    && text.contains("must be at most 2048 (MiB)"),
                "{text}"
            );
        }
    }

    #[test]
    fn hpet_empty_means_default_on() {
        assert!(flags(&[("platform/hpet", "")]).unwrap().hpet);
        assert!(!flags(&[("platform/hpet", "FALSE")]).unwrap().hpet);
    }

    #[test]
    fn nested_virt_key_wins_over_legacy_and_forces_nomigrate() {
        let f = flags(&[
            ("platform/nested-virt", "0"),
            ("platform/exp-nested-hvm", "1"),
        ])
        .unwrap();
        assert!(!f.nested_virt);
        let f = flags(&[("platform/exp-nested-hvm", "1")]).unwrap();
        assert!(f.nested_virt && f.nomigrate);
    }

    #[test]
    fn stimer_defaults_on_with_vgpu_and_a_time_source() {
        let s = store_with(&[("platform/viridian_reference_tsc", "1")]);
        assert!(
            read_platform(&s, DomId(7), true, true)
                .unwrap()
                .viridian
                .stimer
        );
        assert!(
            !read_platform(&s, DomId(7), true, false)
                .unwrap()
                .viridian
                .stimer
        );
        let s = store_with(&[
            ("platform/viridian_reference_tsc", "1"),
            ("platform/viridian_stimer", "0"),
        ]);
        assert!(
            !read_platform(&s, DomId(7), true, true)
                .unwrap()
                .viridian
                .stimer
        );
    }

    #[test]
    fn cores_per_socket_is_ignored_for_pv() {
        let s = store_with(&[
            ("platform/vcpu/number", "4"),
            ("platform/cores-per-socket", "3"),
        ]);
        assert_eq!(
            read_platform(&s, DomId(7), false, false)
                .unwrap()
                .cores_per_socket,
            0
        );
    }

    #[test]
    fn store_failure_is_reported_not_defaulted() {
        let s = store_with(&[]);
        s.fail_next("read", libc::EIO);
        let e = read_platform(&s, DomId(7), true, false).unwrap_err();
        assert!(
            matches!(
                e,
                Error {
                    step: Step::GetFlags,
                    kind: ErrorKind::Store(_)
                }
            ),
            "{e:?}"
        );
    }
}
