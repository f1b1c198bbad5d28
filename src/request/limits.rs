//! Decompressed size limits for PV and PVH images: `get_image_max_size` in the C xenguest
//! (xenserver/xen.pg `patches/xenguest.patch`): the absolute xenstore keys
//! `/mh/limits/pv-kernel-max_size` and `/mh/limits/pv-ramdisk-max_size` read with
//! `strtoull(s, NULL, 0)`, so `0x100000` is 1 MiB, `010` is 8 and `64k` is 64; absent, zero,
//! no digits or out of range (`ERANGE`) mean `XC_DOM_DECOMPRESS_MAX`, 1 GiB (xen-project/xen
//! `tools/include/xenguest.h`). As in C a leading `-` negates, so `-1` lifts the limit to
//! 2^64 - 1: the keys belong to the host's administrator, not to a guest.

use crate::image::DEFAULT_MAX_IMAGE_BYTES;
use crate::platform::strtoull;
use crate::store::{Store, StoreError};

/// xenstore key bounding the kernel's size, bytes (absolute path).
pub const KERNEL_MAX_SIZE_KEY: &str = "/mh/limits/pv-kernel-max_size";
/// xenstore key bounding the ramdisk's (PV) or each module's (PVH) size, bytes (absolute path).
pub const RAMDISK_MAX_SIZE_KEY: &str = "/mh/limits/pv-ramdisk-max_size";

/// Why the limits could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// xenstore failed reading `key` (a missing key is not an error: it means the default).
    #[error("reading {key}: {source}")]
    Store {
        /// The key being read.
        key: &'static str,
        /// The failed read.
        source: StoreError,
    },
}

impl From<LimitsError> for crate::Error {
    fn from(e: LimitsError) -> Self {
        match e {
            LimitsError::Store { source, .. } => crate::Step::ImageMaxSize.store()(source),
        }
    }
}

/// The two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most bytes of the kernel, decompressed (`xc_dom_kernel_max_size`).
    pub kernel_bytes: u64,
    /// Most bytes of the ramdisk or of each module, decompressed (`xc_dom_module_max_size`).
    pub ramdisk_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            kernel_bytes: DEFAULT_MAX_IMAGE_BYTES,
            ramdisk_bytes: DEFAULT_MAX_IMAGE_BYTES,
        }
    }
}

impl ImageLimits {
    /// Read both keys from `store`.
    pub fn read(store: &dyn Store) -> Result<Self, LimitsError> {
        let read = |key: &'static str| {
            store
                .read(key)
                .map(|v| limit_of(v.as_deref()))
                .map_err(|source| LimitsError::Store { key, source })
        };
        Ok(ImageLimits {
            kernel_bytes: read(KERNEL_MAX_SIZE_KEY)?,
            ramdisk_bytes: read(RAMDISK_MAX_SIZE_KEY)?,
        })
    }
}

/// One key's value as a limit: `strtoull(s, NULL, 0)`, 0 or `ERANGE` meaning the default.
pub fn limit_of(value: Option<&str>) -> u64 {
    value
        .and_then(strtoull)
        .map(|(v, _)| v)
        .filter(|v| *v != 0)
        .unwrap_or(DEFAULT_MAX_IMAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const GIB: u64 = 1 << 30;

    #[test]
    fn c_strtoull_semantics() {
        for (value, want) in [
            (None, GIB),
            (Some(""), GIB),
            (Some("0"), GIB),
            (Some("0x100000"), 1 << 20),
            (Some("0X10"), 16),
            (Some("1048576"), 1 << 20),
            (Some("010"), 8),
            (Some("  42"), 42),
            (Some("+7"), 7),
            (Some("64k"), 64),
            (Some("k64"), GIB),
            (Some("0x"), GIB),
            (Some("-1"), u64::MAX),
            (Some("18446744073709551615"), u64::MAX),
            (Some("18446744073709551616"), GIB),
        ] {
            assert_eq!(limit_of(value), want, "{value:?}");
        }
    }

    #[test]
    fn read_from_the_absolute_keys() {
        let store = MemoryStore::new();
        assert_eq!(ImageLimits::read(&store), Ok(ImageLimits::default()));
        store.write(KERNEL_MAX_SIZE_KEY, "0x100000").unwrap();
        store.write(RAMDISK_MAX_SIZE_KEY, "2097152").unwrap();
        assert_eq!(
            ImageLimits::read(&store),
            Ok(ImageLimits {
                kernel_bytes: 1 << 20,
                ramdisk_bytes: 2 << 20
            })
        );
    }

    #[test]
    fn a_store_failure_names_the_key() {
        let store = MemoryStore::new();
        store.fail_next("read", libc::EACCES);
        let e = ImageLimits::read(&store).unwrap_err();
        assert!(
            matches!(&e, LimitsError::Store { key, source } if *key == KERNEL_MAX_SIZE_KEY && source.code == libc::EACCES),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("reading /mh/limits/pv-kernel-max_size: "));
        let wire = crate::Error::from(e).wire_text();
        assert!(
            wire.starts_with("xenguest: get_image_max_size: [13] "),
            "{wire}"
        );
    }
}
