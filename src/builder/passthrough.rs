//! PCI passthrough facts the HVM layout needs: each device's BAR sizes from sysfs, whether
//! it is an AMD MxGPU, and its reserved device memory (RMRRs) from Xen.

use crate::error::{Error, Result, Step};
use crate::hypervisor::{Hypervisor, PciSbdf, ReservedRange};
use std::path::Path;

/// sysfs lines read from `resource`: BAR0–5 and the expansion ROM.
pub const RESOURCE_LINES: usize = 7;
/// Most devices with RMRRs a domain may have (`MAX_RMRR_DEVICES`).
pub const MAX_RMRR_DEVICES: usize = 128;
/// AMD FirePro S7150 (MxGPU): vendor and device id.
pub const MXGPU_ID: (u32, u32) = (0x1002, 0x692f);

/// What the passthrough devices need from the layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassthroughNeeds {
    /// Sum of BAR sizes, bytes.
    pub bar_bytes: u64,
    /// An MxGPU is among them.
    pub mxgpu: bool,
    /// Every device's RMRRs, in device order.
    pub rmrrs: Vec<ReservedRange>,
}

/// Sum the sizes of the first seven `start end flags` lines of a sysfs `resource` file.
pub fn parse_resource(text: &str) -> std::result::Result<u64, String> {
    let mut total: u64 = 0;
    for (n, line) in text.lines().take(RESOURCE_LINES).enumerate() {
        let mut fields = line
            .split_whitespace()
            .map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16));
        let (Some(Ok(start)), Some(Ok(end))) = (fields.next(), fields.next()) else {
            return Err(format!("line {}: '{line}'", n + 1));
        };
        if start != 0 {
            let size = end
                .checked_sub(start)
                .and_then(|d| d.checked_add(1))
                .ok_or(format!("line {}: end before start", n + 1))?;
            total = total.checked_add(size).ok_or("BAR sizes overflow")?;
        }
    }
    Ok(total)
}

fn read_id(dir: &Path, file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// Scan the devices: RMRRs from Xen, BARs and ids from `<sysfs_devices>/<sbdf>/`.
pub fn scan(
    hv: &dyn Hypervisor,
    sysfs_devices: &Path,
    devices: &[PciSbdf],
) -> Result<PassthroughNeeds> {
    let mut needs = PassthroughNeeds::default();
    let mut rmrr_devices = 0;
    for sbdf in devices {
        log::info!("Getting RMRRs for device '{sbdf}'");
        let rmrrs = hv
            .reserved_device_memory_map(*sbdf)
            .map_err(Step::HvmSetupMem.xc())?;
        if !rmrrs.is_empty() {
            rmrr_devices += 1;
            if rmrr_devices >= MAX_RMRR_DEVICES {
                return Err(Error::layout(format!(
                    "Error: hit limit of {MAX_RMRR_DEVICES} RMRR devices for domain"
                )));
            }
            needs.rmrrs.extend(rmrrs);
        }
        log::info!("Getting total MMIO space occupied for device '{sbdf}'");
        let dir = sysfs_devices.join(sbdf.to_string());
        let resource = dir.join("resource");
        let text = std::fs::read_to_string(&resource).map_err(|e| {
            Error::layout(format!(
                "Error: unable to get PCI MMIO info: {}: {e}",
                resource.display()
            ))
        })?;
        let bytes = parse_resource(&text).map_err(|why| {
            log::error!("Syntax error in '{}'", resource.display());
            Error::layout(format!(
                "Error: unable to get PCI MMIO info: syntax error in '{}': {why}",
                resource.display()
            ))
        })?;
        needs.bar_bytes = needs.bar_bytes.saturating_add(bytes);
        if (read_id(&dir, "vendor"), read_id(&dir, "device"))
            == (Some(MXGPU_ID.0), Some(MXGPU_ID.1))
        {
            log::info!("MxGPU device found. Applying MMIO hole workaround");
            needs.mxgpu = true;
        }
    }
    Ok(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_sizes() {
        let text = "0x00000000f0000000 0x00000000f0ffffff 0x0000000000040200\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x00000000e0000000 0x00000000efffffff 0x000000000014220c\n";
        assert_eq!(parse_resource(text), Ok((16 << 20) + (256 << 20)));
        assert!(parse_resource("garbage\n").is_err());
        assert!(
            parse_resource("0x10 0x0f 0x0\n").is_err(),
            "end before start"
        );
        let eight = "0x1000 0x1fff 0\n".repeat(8);
        assert_eq!(
            parse_resource(&eight),
            Ok(7 * 4096),
            "only BAR0-5 and the ROM count"
        );
    }
}
