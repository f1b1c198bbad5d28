//! Where an HVM container's boot images go (pure): the firmware or kernel at its ELF
//! physical addresses, each module page by page after it, then the `hvm_start_info`, all
//! below a limit. This is what libxenguest's `xc_dom_build_image` does with
//! `xc_dom_alloc_segment` for an HVM container (xen-project/xen RELEASE-4.17.0,
//! tools/libs/guest/xg_dom_core.c and xg_dom_x86.c), planned before anything is written.

use crate::types::PAGE_BYTES;

/// Which container's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// hvmloader: at or above 1 MiB, below the lower of low RAM's end and the MMIO hole.
    Hvm {
        /// Lowest address the image may use (1 MiB).
        low_ram_start: u64,
    },
    /// A PVH kernel: below low RAM's end, clear of the ACPI RSDP page; the start info below
    /// 4 GiB too (`%ebx` is 32 bits).
    Pvh {
        /// The page holding the RSDP, which the kernel must not overlap.
        rsdp_page: u64,
    },
}

/// Why the images do not fit. The texts are the builder's `xc_dom_build_image` errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The image's own segments lie outside the RAM it may use.
    #[error("segments [{start:#x}, {end:#x}) do not fit in low RAM [{low:#x}, {limit:#x})")]
    ImageOutside {
        /// Lowest segment address.
        start: u64,
        /// End of the highest segment.
        end: u64,
        /// Lowest usable address.
        low: u64,
        /// End of usable RAM.
        limit: u64,
    },
    /// A PVH kernel's segments lie outside low RAM.
    #[error("segments [{start:#x}, {end:#x}) do not fit in low RAM [0, {limit:#x})")]
    KernelOutside {
        /// Lowest segment address.
        start: u64,
        /// End of the highest segment.
        end: u64,
        /// End of low RAM.
        limit: u64,
    },
    /// A PVH kernel overlaps the RSDP page.
    #[error("segments [{start:#x}, {end:#x}) overlap the ACPI RSDP page {rsdp_page:#x}")]
    OverlapsRsdp {
        /// Lowest segment address.
        start: u64,
        /// End of the highest segment.
        end: u64,
        /// The RSDP page.
        rsdp_page: u64,
    },
    /// HVM: a module does not fit (libxenguest's text).
    #[error("Insufficient space to load modules: {bytes} bytes at {paddr:#x} pass {limit:#x}")]
    HvmModule {
        /// Index of the module.
        index: usize,
        /// Its size.
        bytes: u64,
        /// Where it would go.
        paddr: u64,
        /// End of usable RAM.
        limit: u64,
    },
    /// PVH: a module does not fit.
    #[error("{bytes} bytes at {paddr:#x} do not fit in low RAM below {limit:#x}")]
    PvhModule {
        /// Index of the module.
        index: usize,
        /// Its size.
        bytes: u64,
        /// Where it would go.
        paddr: u64,
        /// End of usable RAM.
        limit: u64,
    },
    /// HVM: no room for the start info.
    #[error("Insufficient space for the start info at {paddr:#x} below {limit:#x}")]
    HvmStartInfo {
        /// Where it would go.
        paddr: u64,
        /// End of usable RAM.
        limit: u64,
    },
    /// PVH: no room for the start info.
    #[error("{bytes} bytes at {paddr:#x} do not fit below {limit:#x}")]
    PvhStartInfo {
        /// Its size.
        bytes: u64,
        /// Where it would go.
        paddr: u64,
        /// The limit in force.
        limit: u64,
    },
}

impl PlacementError {
    /// What was being placed, as the builders name it in the error (`hvmloader`, `kernel`,
    /// a module's name, `hvm_start_info`).
    pub fn what(&self, rules: Rules, module_names: &[&str]) -> String {
        let image = match rules {
            Rules::Hvm { .. } => "hvmloader",
            Rules::Pvh { .. } => "kernel",
        };
        match self {
            PlacementError::ImageOutside { .. }
            | PlacementError::KernelOutside { .. }
            | PlacementError::OverlapsRsdp { .. } => image.into(),
            PlacementError::HvmModule { index, .. } | PlacementError::PvhModule { index, .. } => {
                module_names
                    .get(*index)
                    .map_or_else(|| format!("module{index}"), |n| (*n).to_string())
            }
            PlacementError::HvmStartInfo { .. } | PlacementError::PvhStartInfo { .. } => {
                "hvm_start_info".into()
            }
        }
    }
}

/// Where each piece goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// Each module's address, in order (page-aligned).
    pub modules_paddr: Vec<u64>,
    /// The start info's address (page-aligned).
    pub start_info_paddr: u64,
}

const FOUR_GIB: u64 = 1 << 32;

/// Plan the images: the image's segments `[start, end)`, then `module_bytes` in order, page
/// by page after the image, then `start_info_bytes`, all below `limit`.
pub fn plan(
    rules: Rules,
    (start, end): (u64, u64),
    limit: u64,
    module_bytes: &[u64],
    start_info_bytes: u64,
) -> Result<ImagePlan, PlacementError> {
    let low = match rules {
        Rules::Hvm { low_ram_start } => low_ram_start,
        Rules::Pvh { .. } => 0,
    };
    if start < low || end > limit || start > end {
        return Err(match rules {
            Rules::Hvm { .. } => PlacementError::ImageOutside {
                start,
                end,
                low,
                limit,
            },
            Rules::Pvh { .. } => PlacementError::KernelOutside { start, end, limit },
        });
    }
    if let Rules::Pvh { rsdp_page } = rules {
        if start < rsdp_page + PAGE_BYTES && end > rsdp_page {
            return Err(PlacementError::OverlapsRsdp {
                start,
                end,
                rsdp_page,
            });
        }
    }
    let mut next = end.next_multiple_of(PAGE_BYTES);
    let mut modules_paddr = Vec::with_capacity(module_bytes.len());
    for (index, &bytes) in module_bytes.iter().enumerate() {
        let paddr = next;
        let after = bytes
            .div_ceil(PAGE_BYTES)
            .checked_mul(PAGE_BYTES)
            .and_then(|len| paddr.checked_add(len));
        match after {
            Some(after) if after <= limit => next = after,
            _ => {
                return Err(match rules {
                    Rules::Hvm { .. } => PlacementError::HvmModule {
                        index,
                        bytes,
                        paddr,
                        limit,
                    },
                    Rules::Pvh { .. } => PlacementError::PvhModule {
                        index,
                        bytes,
                        paddr,
                        limit,
                    },
                })
            }
        }
        modules_paddr.push(paddr);
    }
    let paddr = next;
    let fits = |limit: u64| {
        paddr
            .checked_add(start_info_bytes)
            .is_some_and(|e| e <= limit)
    };
    match rules {
        Rules::Hvm { .. } if !fits(limit) => Err(PlacementError::HvmStartInfo { paddr, limit }),
        Rules::Pvh { .. } if !fits(limit.min(FOUR_GIB)) => Err(PlacementError::PvhStartInfo {
            bytes: start_info_bytes,
            paddr,
            limit,
        }),
        _ => Ok(ImagePlan {
            modules_paddr,
            start_info_paddr: paddr,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HVM: Rules = Rules::Hvm {
        low_ram_start: 0x10_0000,
    };
    const PVH: Rules = Rules::Pvh {
        rsdp_page: 0xF_F000,
    };

    #[test]
    fn hvmloader_with_ovmf_and_ipxe() {
        // Debian's hvmloader ends at 0x133f40; modules follow page by page.
        let p = plan(
            HVM,
            (0x10_0000, 0x13_3f40),
            0xF000_0000,
            &[0x20_0000, 0x1_0001],
            2048,
        )
        .unwrap();
        assert_eq!(p.modules_paddr, vec![0x13_4000, 0x33_4000]);
        assert_eq!(p.start_info_paddr, 0x33_4000 + 0x1_1000);
    }

    #[test]
    fn texts_of_each_failure() {
        let e = plan(HVM, (0x8_0000, 0x9_0000), 1 << 30, &[], 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segments [0x80000, 0x90000) do not fit in low RAM [0x100000, 0x40000000)"
        );
        assert_eq!(e.what(HVM, &[]), "hvmloader");
        let e = plan(HVM, (0x10_0000, 0x20_0000), 0x30_0000, &[0x20_0000], 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Insufficient space to load modules: 2097152 bytes at 0x200000 pass 0x300000"
        );
        assert_eq!(e.what(HVM, &["ipxe"]), "ipxe");
        let e = plan(PVH, (0x10_0000, 0x20_0000), 0x30_0000, &[0x20_0000], 0).unwrap_err();
        assert_eq!(e.what(PVH, &[]), "module0");
        let e = plan(PVH, (0xF_0000, 0x10_0000), 1 << 30, &[], 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segments [0xf0000, 0x100000) overlap the ACPI RSDP page 0xff000"
        );
        let e = plan(PVH, (0x10_0000, 0x20_0000), 0x20_0100, &[], 0x200).unwrap_err();
        assert_eq!(
            e.to_string(),
            "512 bytes at 0x200000 do not fit below 0x200100"
        );
        assert_eq!(e.what(PVH, &[]), "hvm_start_info");
        // A PVH start info stays below 4 GiB even when RAM goes on above it.
        assert!(plan(PVH, (0x10_0000, 0xFFFF_F000), 1 << 33, &[], 0x2000).is_err());
    }

    proptest! {
        /// A plan, when there is one, overlaps nothing, aligns every module to a page and
        /// stays below the limit; and there is one exactly when the sizes fit.
        #[test]
        fn plans_fit_and_do_not_overlap(
            start_pages in 256u64..1024, image_bytes in 0u64..1 << 24,
            modules in proptest::collection::vec(0u64..1 << 24, 0..6),
            start_info in 0u64..8192, limit_mib in 2u64..64, pvh: bool,
        ) {
            let rules = if pvh { PVH } else { HVM };
            let start = start_pages * PAGE_BYTES;
            let end = start + image_bytes;
            let limit = limit_mib << 20;
            let page_len = |b: u64| b.div_ceil(PAGE_BYTES) * PAGE_BYTES;
            let needed = end.next_multiple_of(PAGE_BYTES)
                + modules.iter().map(|&b| page_len(b)).sum::<u64>()
                + start_info;
            let fits = end <= limit && needed <= limit;
            match plan(rules, (start, end), limit, &modules, start_info) {
                Ok(p) => {
                    prop_assert!(fits);
                    let mut prev_end = end;
                    for (&paddr, &bytes) in p.modules_paddr.iter().zip(&modules) {
                        prop_assert_eq!(paddr % PAGE_BYTES, 0);
                        prop_assert!(paddr >= prev_end);
                        prev_end = paddr + bytes;
                    }
                    prop_assert!(p.start_info_paddr >= prev_end);
                    prop_assert!(p.start_info_paddr + start_info <= limit);
                }
                Err(_) => prop_assert!(!fits),
            }
        }
    }
}
