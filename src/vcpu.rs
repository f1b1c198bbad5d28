//! `configure_vcpus` and `configure_tsc`: hard affinity from the platform strings, credit
//! scheduler weight and cap, TSC mode.

use crate::error::{Result, Step};
use crate::hypervisor::Hypervisor;
use crate::platform::PlatformFlags;
use crate::types::DomId;

/// A `'0'`/`'1'` string as a pCPU mask `nr_cpus` wide: character j sets pCPU j iff it is
/// `'1'`; anything else is 0 and characters past the width are ignored (C semantics).
pub fn affinity_mask(s: &str, nr_cpus: u32) -> Vec<bool> {
    let mut mask = vec![false; nr_cpus as usize];
    for (bit, c) in mask.iter_mut().zip(s.bytes()) {
        *bit = c == b'1';
    }
    mask
}

/// Set each vCPU's hard affinity from `platform/vcpu/<n>/affinity`, then the credit weight
/// and cap. A domain outside a credit scheduler pool is logged and left alone.
pub fn configure_vcpus(hv: &dyn Hypervisor, domid: DomId, flags: &PlatformFlags) -> Result<()> {
    let width = hv
        .physinfo()
        .map_err(Step::CpumapAlloc.xc())?
        .nr_cpus
        .div_ceil(8)
        * 8;
    for (vcpu, affinity) in (0u32..).zip(&flags.vcpu_affinity) {
        let Some(s) = affinity else { continue };
        let mask = affinity_mask(s, width);
        hv.vcpu_setaffinity_hard(domid, vcpu, &mask)
            .map_err(Step::VcpuSetaffinity.xc())?;
    }
    let mut sched = match hv.sched_credit_domain_get(domid) {
        Ok(sched) => sched,
        Err(e) => {
            log::info!("Failed to get credit scheduler parameters: scheduler not enabled? ({e})");
            return Ok(());
        }
    };
    if flags.vcpu_weight != 0 {
        sched.weight = flags.vcpu_weight;
    }
    if flags.vcpu_cap != 0 {
        sched.cap = flags.vcpu_cap;
    }
    hv.sched_credit_domain_set(domid, sched)
        .map_err(Step::SchedCreditDomainSet.xc())
}

/// `xc_domain_set_tsc_info(domid, tsc_mode, 0, 0, 0)`.
pub fn configure_tsc(hv: &dyn Hypervisor, domid: DomId, tsc_mode: u32) -> Result<()> {
    hv.domain_set_tsc_info(domid, tsc_mode)
        .map_err(Step::DomainSetTscInfo.xc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_follows_the_c_rules() {
        assert_eq!(affinity_mask("0110", 4), vec![false, true, true, false]);
        assert_eq!(affinity_mask("1x1", 4), vec![true, false, true, false]);
        assert_eq!(
            affinity_mask("111111", 4),
            vec![true; 4],
            "extra characters ignored"
        );
        assert_eq!(affinity_mask("", 2), vec![false; 2]);
    }
}
