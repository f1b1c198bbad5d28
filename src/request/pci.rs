//! The `-pci_passthrough` list: comma-separated PCI addresses, `SSSS:BB:DD.F` (what xenopsd
//! writes, xen-api `ocaml/xenopsd/lib/xenops_server.ml`) or `BB:DD.F` meaning segment 0 (what
//! the C xenguest's `parse_pci_sbdf` also accepts, xenserver/xen.pg `patches/xenguest.patch`).
//!
//! Both faces parse the list here. The fields are hex and range-checked; C silently truncates
//! out-of-range fields and skips tokens it cannot parse, leaving the MMIO hole too small for
//! the device it dropped: here any such token refuses the request, naming it.

use crate::hypervisor::PciSbdf;

/// Why a `-pci_passthrough` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// A token that is not `SSSS:BB:DD.F` or `BB:DD.F` in hex with every field in range
    /// (segment <= ffff, bus <= ff, device <= 1f, function <= 7); the token as given.
    #[error("bad PCI address '{0}' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)")]
    BadToken(String),
}

impl From<PciError> for crate::Error {
    /// An invalid request at step `main`, where the binary has always refused its arguments.
    fn from(e: PciError) -> Self {
        crate::Step::Main.invalid(e.to_string())
    }
}

/// Parse a `-pci_passthrough` list. Empty tokens are ignored, as C's `strtok` does, so `""`
/// and `",,"` give no devices; devices keep the order given.
pub fn parse_pci_passthrough(list: &str) -> Result<Vec<PciSbdf>, PciError> {
    list.split(',')
        .filter(|t| !t.is_empty())
        .map(parse_pci_address)
        .collect()
}

/// One PCI address, `SSSS:BB:DD.F` or `BB:DD.F`: an element of the OCaml module's
/// `pci_passthrough` list, where a list cannot hide an empty or comma-joined entry.
pub fn parse_pci_address(token: &str) -> Result<PciSbdf, PciError> {
    parse_sbdf(token).ok_or_else(|| PciError::BadToken(token.to_string()))
}

/// One `[SSSS:]BB:DD.F`: hex digits only (no sign, whitespace or `0x`), nothing after.
fn parse_sbdf(token: &str) -> Option<PciSbdf> {
    fn hex(field: &str, max: u32) -> Option<u32> {
        if field.is_empty() || field.len() > 8 || !field.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(field, 16).ok().filter(|&v| v <= max)
    }
    let (head, func) = token.split_once('.')?;
    let parts: Vec<&str> = head.split(':').collect();
    let (seg, bus, dev) = match parts.as_slice() {
        [seg, bus, dev] => (hex(seg, 0xffff)?, *bus, *dev),
        [bus, dev] => (0, *bus, *dev),
        _ => return None,
    };
    Some(PciSbdf {
        seg: u16::try_from(seg).ok()?,
        bus: u8::try_from(hex(bus, 0xff)?).ok()?,
        dev: u8::try_from(hex(dev, 0x1f)?).ok()?,
        func: u8::try_from(hex(func, 7)?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sbdf(seg: u16, bus: u8, dev: u8, func: u8) -> PciSbdf {
        PciSbdf {
            seg,
            bus,
            dev,
            func,
        }
    }

    #[test]
    fn both_forms_and_empty_tokens() {
        assert_eq!(
            parse_pci_passthrough("0000:03:00.0,,04:1f.7,ffff:ff:1f.7"),
            Ok(vec![
                sbdf(0, 3, 0, 0),
                sbdf(0, 4, 0x1f, 7),
                sbdf(0xffff, 0xff, 0x1f, 7)
            ])
        );
        assert_eq!(parse_pci_passthrough(""), Ok(vec![]));
        assert_eq!(parse_pci_passthrough(",,,"), Ok(vec![]));
        assert_eq!(
            parse_pci_passthrough("0000:0A:1F.7"),
            Ok(vec![sbdf(0, 10, 0x1f, 7)])
        );
    }

    #[test]
    fn one_address_is_exactly_one() {
        assert_eq!(parse_pci_address("0000:03:00.0"), Ok(sbdf(0, 3, 0, 0)));
        for bad in ["", "0000:03:00.0,04:1f.7", "03:00.0,"] {
            assert_eq!(
                parse_pci_address(bad),
                Err(PciError::BadToken(bad.to_string()))
            );
        }
    }

    #[test]
    fn a_bad_token_is_named() {
        for bad in [
            "zz",
            "0000:03:20.0",
            "0:1:2.8",
            "1:2",
            "0000:03:00.0x",
            "1:2:3:4.0",
            "10000:00:00.0",
            "0:100:0.0",
            ":1.0",
            "0:.0",
            "0:0.",
            "+0:0.0",
            " 0:0.0",
            "0:0.0.0",
            "0x1:0.0",
        ] {
            let list = format!("0000:01:00.0,{bad},0000:02:00.0");
            assert_eq!(
                parse_pci_passthrough(&list),
                Err(PciError::BadToken(bad.to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            crate::Error::from(PciError::BadToken("zz".into())).wire_text(),
            "xenguest: main: [22] bad PCI address 'zz' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn canonical_and_short_forms_round_trip(seg in 0u16.., bus in 0u8.., dev in 0u8..32, func in 0u8..8) {
            let d = sbdf(seg, bus, dev, func);
            let l = parse_pci_passthrough(&format!("{d},{bus:02x}:{dev:02x}.{func:x}"));
            proptest::prop_assert_eq!(l, Ok(vec![d, PciSbdf { seg: 0, ..d }]));
        }

        #[test]
        fn never_panics(list in "\\PC{0,40}") {
            let _ = parse_pci_passthrough(&list);
        }
    }
}
