//! The simulated host's CPUID featuresets (`xc_get_cpu_featureset`), modelled on a
//! Skylake-class Intel server. Word order is Xen's `FEATURESET_*` order (1d, 1c, e1d, e1c,
//! Da1, 7b0, 7c0, e7d, e8b, 7d0, ...). PV max ⊂ HVM max ⊂ host.

use crate::hypervisor::FeaturesetKind;

/// Words in every featureset the host returns.
pub const FEATURESET_WORDS: usize = 16;

/// `XEN_SYSCTL_cpu_featureset_host`.
pub const HOST: [u32; FEATURESET_WORDS] = [
    0xbfeb_fbff, // 1d
    0x7ffe_fbff, // 1c (vmx, smx, est, ...)
    0x2c10_0800, // e1d: syscall, nx, page1gb, rdtscp, lm
    0x0000_0121, // e1c: lahf_lm, abm, prefetchw
    0x0000_000f, // Da1: xsaveopt, xsavec, xgetbv1, xsaves
    0x029c_6fbf, // 7b0
    0x0000_0000, // 7c0
    0x0000_0100, // e7d: invariant TSC
    0x0000_0000, // e8b
    0xbc00_0400, // 7d0: md_clear, ibrsb, stibp, l1d_flush, arch_caps, ssbd
    0,
    0,
    0,
    0,
    0,
    0,
];

/// `XEN_SYSCTL_cpu_featureset_hvm`: the host without host-only features (ds, acpi, tm,
/// pbe, dtes64, ds_cpl, smx, est, tm2, xtpr, pdcm, pqm, proc_trace). Invariant TSC is
/// kept (Xen adds it per domain for non-migratable guests).
pub const HVM_MAX: [u32; FEATURESET_WORDS] = [
    0x1f8b_fbff,
    0x7ffe_3a2b,
    0x2c10_0800,
    0x0000_0121,
    0x0000_000f,
    0x009c_6fbf,
    0x0000_0000,
    0x0000_0100,
    0x0000_0000,
    0xbc00_0400,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// `XEN_SYSCTL_cpu_featureset_pv`: the HVM maximum without vmx, monitor, x2apic,
/// tsc_deadline, page1gb and invpcid.
pub const PV_MAX: [u32; FEATURESET_WORDS] = [
    0x1f8b_fbff,
    0x7ede_3a03,
    0x2810_0800,
    0x0000_0121,
    0x0000_000f,
    0x009c_6bbf,
    0x0000_0000,
    0x0000_0100,
    0x0000_0000,
    0xbc00_0400,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// The featureset of `kind`.
pub fn featureset(kind: FeaturesetKind) -> &'static [u32; FEATURESET_WORDS] {
    match kind {
        FeaturesetKind::Host => &HOST,
        FeaturesetKind::PvMax => &PV_MAX,
        FeaturesetKind::HvmMax => &HVM_MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxima_nest() {
        for i in 0..FEATURESET_WORDS {
            assert_eq!(
                PV_MAX[i] & !HVM_MAX[i],
                0,
                "word {i}: PV max outside HVM max"
            );
            assert_eq!(HVM_MAX[i] & !HOST[i], 0, "word {i}: HVM max outside host");
        }
        // What the builder's CPUID planning relies on: pae, nx, itsc everywhere; vmx HVM only.
        for fs in [&HOST, &HVM_MAX, &PV_MAX] {
            assert!(fs[0] & (1 << 6) != 0 && fs[2] & (1 << 20) != 0 && fs[7] & (1 << 8) != 0);
        }
        assert!(HVM_MAX[1] & (1 << 5) != 0 && PV_MAX[1] & (1 << 5) == 0);
    }
}
