//! What xenguest does around `xc_domain_restore` that the stream does not carry, over the
//! [`Hypervisor`] and [`Store`] seams so that every engine (and the simulated host) shares it.
//!
//! The C xenguest's `stub_xc_domain_restore` and `set_genid` (xenserver/xen.pg
//! `patches/xenguest.patch` at 4f8cbaa4): read the platform data (`get_flags`, which also
//! writes back the normalised `platform/acpi*` keys); for HVM and PVH containers set
//! `HVM_PARAM_HPET_ENABLED` and the time offset; configure the vCPUs; restore the stream, whose
//! `static_data_done` callback applies the CPUID policy when the stream has none (a v2 stream
//! from an older host), chosen by the domain's HAP flag as C does; then, HVM only, write
//! `platform/generation-id` into the page the guest's firmware named in
//! `HVM_PARAM_VM_GENERATION_ID_ADDR`.

use crate::boot::param;
use crate::cpuid;
use crate::hypervisor::Hypervisor;
use crate::platform::{read_platform, strtoull, PlatformFlags};
use crate::store::{domain_path, Store};
use crate::types::{DomId, GuestPhys, MapAddr};
use crate::vcpu::configure_vcpus;
use crate::{Result, Step};

/// `HVM_PARAM_VM_GENERATION_ID_ADDR`: the guest-physical address of the 16-byte generation id
/// (xen-project/xen `xen/include/public/hvm/params.h`).
pub const VM_GENERATION_ID_ADDR: u32 = 34;

/// The step of generation-id failures (C's `set_genid`, which logs and exits 1).
const SET_GENID: Step = Step::Mode("set_genid");

/// What the steps before the stream found out, for the steps after it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The domain's platform data.
    pub flags: PlatformFlags,
    /// `XEN_DOMINF_hvm_guest`: an HVM or PVH container.
    pub hvm: bool,
    /// `XEN_DOMINF_hap`: picks the HVM (HAP) or PV maximum policy in the CPUID fallback, as C's
    /// `construct_cpuid_policy(&f, dominfo.hap, true)` does.
    pub hap: bool,
}

/// Before the stream: platform data, HPET and time offset (HVM and PVH), vCPUs.
pub fn before_stream(
    hv: &dyn Hypervisor,
    store: &dyn Store,
    domid: DomId,
    vgpu: bool,
) -> Result<Prepared> {
    let info = hv.domain_getinfo(domid).map_err(Step::DomainGetinfo.xc())?;
    let flags = read_platform(store, domid, info.hvm, vgpu)?;
    if info.hvm {
        // C ignores this return value, as the builder does.
        if let Err(e) = hv.hvm_param_set(domid, param::HPET_ENABLED, flags.hpet.into()) {
            log::warn!("HVM_PARAM_HPET_ENABLED: {e}");
        }
        crate::builder::container::set_time_offset(hv, domid, &flags)?;
    }
    configure_vcpus(hv, domid, &flags)?;
    Ok(Prepared {
        flags,
        hvm: info.hvm,
        hap: info.hap,
    })
}

/// `static_data_done` when the stream carried no CPUID policy (`XGR_SDD_MISSING_CPUID`):
/// the policy the builder would apply, marked as a restore.
pub fn cpuid_fallback(hv: &dyn Hypervisor, domid: DomId, prepared: &Prepared) -> Result<()> {
    log::info!("The stream has no CPUID policy: applying the platform's");
    cpuid::apply_cpuid_policy(hv, domid, &prepared.flags, prepared.hap, true)
}

/// After the stream: the generation id (HVM only; PVH has no firmware that asks for one).
pub fn after_stream(
    hv: &dyn Hypervisor,
    store: &dyn Store,
    domid: DomId,
    prepared: &Prepared,
) -> Result<()> {
    if prepared.hvm {
        set_generation_id(hv, store, domid)?;
    }
    Ok(())
}

/// Parse `platform/generation-id` (`A:B`, each as `strtoull(.., 0)` reads it). Both halves
/// must be non-zero, as C requires.
pub fn parse_generation_id(s: &str) -> std::result::Result<[u64; 2], String> {
    let (a, b) = s.split_once(':').unwrap_or((s, ""));
    let half = |part: &str| match strtoull(part) {
        Some((v, _)) => Ok(v),
        None => Err(format!("strtoull of '{s}' failed: out of range")),
    };
    let first = half(a)?;
    // C reads the second half only when the first ended exactly at the ':'.
    let second = match (strtoull(a), s.contains(':')) {
        (Some((_, true)), true) => half(b)?,
        _ => 0,
    };
    if first == 0 || second == 0 {
        return Err(format!("'{s}' is not a valid generation id"));
    }
    Ok([first, second])
}

/// `set_genid`: nothing to do when the firmware set no address or the toolstack wrote no id.
fn set_generation_id(hv: &dyn Hypervisor, store: &dyn Store, domid: DomId) -> Result<()> {
    let paddr = hv
        .hvm_param_get(domid, VM_GENERATION_ID_ADDR)
        .map_err(SET_GENID.xc())?;
    if paddr == 0 {
        return Ok(());
    }
    let path = format!("{}/platform/generation-id", domain_path(domid));
    let Some(text) = store.read(&path).map_err(SET_GENID.store())? else {
        return Ok(());
    };
    let id = parse_generation_id(&text).map_err(|reason| SET_GENID.invalid(reason))?;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&id[0].to_le_bytes());
    bytes[8..].copy_from_slice(&id[1].to_le_bytes());
    hv.write_guest(domid, MapAddr::phys(GuestPhys(paddr)), &bytes)
        .map_err(SET_GENID.xc())?;
    log::info!("Wrote generation ID {}:{} at {paddr:#x}", id[0], id[1]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::sim::{DomainConfig, SimHost};
    use crate::hypervisor::MemFlags;
    use crate::store::MemoryStore;

    #[test]
    fn generation_ids_are_read_as_c_reads_them() {
        assert_eq!(parse_generation_id("12:34"), Ok([12, 34]));
        assert_eq!(parse_generation_id("0x10:010"), Ok([16, 8]));
        for bad in ["12", "12x:34", "0:5", "5:0", ":5", ""] {
            let e = parse_generation_id(bad).unwrap_err();
            assert_eq!(e, format!("'{bad}' is not a valid generation id"), "{bad}");
        }
        assert!(parse_generation_id("1:99999999999999999999")
            .unwrap_err()
            .contains("out of range"));
    }

    fn host_with(hvm: bool, keys: &[(&str, &str)]) -> (SimHost, MemoryStore, DomId) {
        let host = SimHost::from_spec("nodes=1,node_mib=1024").unwrap();
        let domid = DomId(3);
        host.create_domain(&DomainConfig::of_kind(hvm, domid, 64 << 10, 2))
            .unwrap();
        let store = MemoryStore::new();
        // xenopsd always writes the vCPU count.
        for (k, v) in [("platform/vcpu/number", "2")].iter().chain(keys) {
            store
                .write(&format!("{}/{k}", domain_path(domid)), v)
                .unwrap();
        }
        (host, store, domid)
    }

    #[test]
    fn before_stream_sets_hpet_time_offset_and_normalises_acpi_keys() {
        let (host, store, domid) = host_with(
            true,
            &[("platform/hpet", "0"), ("platform/timeoffset", "-3600")],
        );
        let prepared = before_stream(&host, &store, domid, false).unwrap();
        assert!(prepared.hvm);
        assert_eq!(host.hvm_param_get(domid, param::HPET_ENABLED).unwrap(), 0);
        assert_eq!(
            host.domain_snapshot(domid).unwrap().time_offset_s,
            Some(-3600)
        );
        // get_flags writes back the hvmloader flags it read, "0" when absent.
        let acpi = store
            .read(&format!("{}/platform/acpi", domain_path(domid)))
            .unwrap();
        assert_eq!(acpi.as_deref(), Some("0"));
    }

    #[test]
    fn a_time_offset_beyond_32_bits_is_refused_before_the_stream() {
        let (host, store, domid) = host_with(true, &[("platform/timeoffset", "4294967296")]);
        let e = before_stream(&host, &store, domid, false).unwrap_err();
        assert!(e.wire_text().contains("platform/timeoffset"), "{e}");
    }

    #[test]
    fn the_generation_id_lands_where_the_firmware_asked() {
        let (host, store, domid) = host_with(true, &[("platform/generation-id", "7:9")]);
        let prepared = before_stream(&host, &store, domid, false).unwrap();
        // No address from the firmware yet: nothing is written.
        after_stream(&host, &store, domid, &prepared).unwrap();
        let paddr = 0x1000 * 0x20 + 0x10;
        let mut extents = [0x20];
        host.domain_populate_physmap(domid, 0, MemFlags::default(), &mut extents)
            .unwrap();
        host.hvm_param_set(domid, VM_GENERATION_ID_ADDR, paddr)
            .unwrap();
        after_stream(&host, &store, domid, &prepared).unwrap();
        let mut got = [0u8; 16];
        host.read_guest(domid, MapAddr::phys(GuestPhys(paddr)), &mut got)
            .unwrap();
        assert_eq!(&got[..8], &7u64.to_le_bytes());
        assert_eq!(&got[8..], &9u64.to_le_bytes());

        store
            .write(
                &format!("{}/platform/generation-id", domain_path(domid)),
                "7",
            )
            .unwrap();
        let e = after_stream(&host, &store, domid, &prepared).unwrap_err();
        assert_eq!(
            e.wire_text(),
            "xenguest: set_genid: [22] '7' is not a valid generation id\n"
        );
    }

    #[test]
    fn the_cpuid_fallback_is_a_restore_policy_keyed_on_hap() {
        let (host, store, domid) = host_with(true, &[]);
        let prepared = before_stream(&host, &store, domid, false).unwrap();
        cpuid_fallback(&host, domid, &prepared).unwrap();
        let policy = host
            .domain_snapshot(domid)
            .unwrap()
            .cpuid_policy
            .expect("a policy applied");
        assert!(policy.restore);
    }
}
