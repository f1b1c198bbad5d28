//! `construct_cpuid_policy`: the guest's CPUID featureset from `platform/featureset` (or the
//! host's maximum), adjusted for nx, pae and nomigrate, applied with cores-per-socket.

use crate::error::{Error, Result, Step};
use crate::hypervisor::{CpuidPolicy, FeaturesetKind, Hypervisor};
use crate::platform::PlatformFlags;
use crate::types::DomId;

/// A feature's position in Xen's featureset: word and bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Featureset word index.
    pub word: usize,
    /// Bit within the word.
    pub bit: u32,
}

/// PAE: leaf 1 edx bit 6 (featureset word 0).
pub const PAE: Feature = Feature { word: 0, bit: 6 };
/// VMX: leaf 1 ecx bit 5 (word 1).
pub const VMX: Feature = Feature { word: 1, bit: 5 };
/// NX: leaf 0x80000001 edx bit 20 (word 2).
pub const NX: Feature = Feature { word: 2, bit: 20 };
/// SVM: leaf 0x80000001 ecx bit 2 (word 3).
pub const SVM: Feature = Feature { word: 3, bit: 2 };
/// Invariant TSC: leaf 0x80000007 edx bit 8 (word 7).
pub const ITSC: Feature = Feature { word: 7, bit: 8 };

fn has(words: &[u32], f: Feature) -> bool {
    words.get(f.word).is_some_and(|w| w & (1 << f.bit) != 0)
}

fn set(words: &mut [u32], f: Feature, on: bool) {
    if let Some(w) = words.get_mut(f.word) {
        if on {
            *w |= 1 << f.bit;
        } else {
            *w &= !(1 << f.bit);
        }
    }
}

/// Parse `platform/featureset`: 32-bit hex words separated by `-` or `:`. The error is the
/// C text, `Bad '<rest>' in featureset`.
pub fn parse_featureset(s: &str) -> std::result::Result<Vec<u32>, String> {
    let mut words = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        let word = u32::from_str_radix(&rest[..digits], 16)
            .map_err(|_| format!("Bad '{rest}' in featureset"))?;
        words.push(word);
        rest = &rest[digits..];
        match rest.as_bytes().first() {
            None => {}
            Some(b'-' | b':') if rest.len() > 1 => rest = &rest[1..],
            Some(_) => return Err(format!("Bad '{rest}' in featureset")),
        }
    }
    Ok(words)
}

/// The policy to apply: featureset words sized to the host's, adjusted as the C code does.
/// `hvm_fallback` picks the host maximum used when `platform/featureset` is absent: HVM for
/// HVM and PVH guests, PV for PV ones (the C code gives PVH the PV maximum; see `builder::pvh`).
///
/// Pure: the caller fetches `max`, the mode's maximum featureset, only when the guest has no
/// `platform/featureset` (`None` otherwise), so a build makes the calls the C code makes.
pub fn plan_policy(
    flags: &PlatformFlags,
    host: &[u32],
    max: Option<&[u32]>,
    restore: bool,
) -> Result<CpuidPolicy> {
    let mut words = match &flags.featureset {
        None => max
            .ok_or_else(|| {
                Step::ConstructCpuidPolicy
                    .invalid("no platform/featureset and no maximum featureset to fall back to")
            })?
            .to_vec(),
        Some(s) => {
            let words = parse_featureset(s)
                .map_err(|reason| Error::platform("platform/featureset", s.clone(), reason))?;
            if words.iter().skip(host.len()).any(|&w| w != 0) {
                return Err(Error::platform(
                    "platform/featureset",
                    s.clone(),
                    format!("Requested featureset '{s}' truncated on this host"),
                ));
            }
            words
        }
    };
    words.resize(host.len(), 0);
    if !flags.nx {
        set(&mut words, NX, false);
    }
    if !flags.pae {
        set(&mut words, PAE, false);
    }
    if flags.nomigrate && has(host, ITSC) {
        set(&mut words, ITSC, true);
    }
    Ok(CpuidPolicy {
        restore,
        featureset: words,
        nested_virt: flags.nested_virt,
        cores_per_socket: flags.cores_per_socket,
    })
}

/// Build and apply the guest's CPUID policy (a build's: `restore` false).
pub fn construct_cpuid_policy(
    hv: &dyn Hypervisor,
    domid: DomId,
    flags: &PlatformFlags,
    hvm_fallback: bool,
) -> Result<()> {
    apply_cpuid_policy(hv, domid, flags, hvm_fallback, false)
}

/// Build and apply the guest's CPUID policy; `restore` marks it as applied to a restored
/// guest (`xc_cpuid_apply_policy`'s `restore` argument: keep what an older Xen showed it).
pub fn apply_cpuid_policy(
    hv: &dyn Hypervisor,
    domid: DomId,
    flags: &PlatformFlags,
    hvm_fallback: bool,
    restore: bool,
) -> Result<()> {
    let step = Step::ConstructCpuidPolicy;
    let host = hv
        .get_cpu_featureset(FeaturesetKind::Host)
        .map_err(step.xc())?;
    let kind = if hvm_fallback {
        FeaturesetKind::HvmMax
    } else {
        FeaturesetKind::PvMax
    };
    let max = match flags.featureset {
        None => Some(hv.get_cpu_featureset(kind).map_err(step.xc())?),
        Some(_) => None,
    };
    let policy = plan_policy(flags, &host, max.as_deref(), restore)?;
    hv.cpuid_apply_policy(domid, &policy).map_err(step.xc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn featureset_words() {
        assert_eq!(
            parse_featureset("17cbfbff-f7fa3223:2d93fbff"),
            Ok(vec![0x17cbfbff, 0xf7fa3223, 0x2d93fbff])
        );
        assert_eq!(parse_featureset(""), Ok(vec![]));
        assert_eq!(
            parse_featureset("1-zz"),
            Err("Bad 'zz' in featureset".into())
        );
        assert_eq!(parse_featureset("1-"), Err("Bad '-' in featureset".into()));
        assert_eq!(
            parse_featureset("1_2"),
            Err("Bad '_2' in featureset".into())
        );
        assert!(parse_featureset("100000000").is_err(), "a word has 32 bits");
    }

    fn flags(featureset: Option<&str>, nx: bool, pae: bool, nomigrate: bool) -> PlatformFlags {
        PlatformFlags {
            featureset: featureset.map(str::to_string),
            nx,
            pae,
            nomigrate,
            ..Default::default()
        }
    }

    #[test]
    fn adjustments() {
        let mut host = vec![u32::MAX; 8];
        let all = "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff-ffffffff-ffffffff-00000000";
        let p = plan_policy(&flags(Some(all), false, false, true), &host, None, false).unwrap();
        assert!(!has(&p.featureset, NX) && !has(&p.featureset, PAE));
        assert!(
            has(&p.featureset, ITSC),
            "nomigrate sets ITSC when the host has it"
        );
        set(&mut host, ITSC, false);
        let p = plan_policy(&flags(Some(all), true, true, true), &host, None, false).unwrap();
        assert!(has(&p.featureset, NX) && has(&p.featureset, PAE) && !has(&p.featureset, ITSC));
    }

    #[test]
    fn absent_featureset_uses_the_fallback_and_extra_words_must_be_zero() {
        let host = vec![0; 4];
        let p = plan_policy(&flags(None, true, true, false), &host, Some(&[7, 7]), false).unwrap();
        assert_eq!(p.featureset, vec![7, 7, 0, 0]);
        assert!(plan_policy(
            &flags(Some("1-2-3-4-0-0"), true, true, false),
            &host,
            None,
            false
        )
        .is_ok());
        let e = plan_policy(
            &flags(Some("1-2-3-4-5"), true, true, false),
            &host,
            None,
            false,
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("truncated on this host"));
        assert!(plan_policy(&flags(None, true, true, false), &host, None, false).is_err());
    }

    proptest::proptest! {
        /// The policy has the host's width; NX and PAE follow the platform flags; ITSC is
        /// only ever added when the host has it; nothing else differs from what was asked.
        #[test]
        fn adjustments_touch_only_their_bits(
            host in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..12),
            max in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..12),
            nx: bool, pae: bool, nomigrate: bool,
        ) {
            let p = plan_policy(&flags(None, nx, pae, nomigrate), &host, Some(&max), false);
            let Ok(p) = p else { return Ok(()); };
            proptest::prop_assert_eq!(p.featureset.len(), host.len());
            proptest::prop_assert!(nx || !has(&p.featureset, NX));
            proptest::prop_assert!(pae || !has(&p.featureset, PAE));
            if has(&p.featureset, ITSC) {
                proptest::prop_assert!(has(&max, ITSC) || (nomigrate && has(&host, ITSC)));
            }
            let mut expected = max.clone();
            expected.resize(host.len(), 0);
            for bit in [NX, PAE, ITSC] {
                set(&mut expected, bit, has(&p.featureset, bit));
            }
            proptest::prop_assert_eq!(&p.featureset, &expected);
        }
    }
}
