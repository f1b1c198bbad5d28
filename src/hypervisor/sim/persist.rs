//! A simulated host kept in a file between runs (the binary's `-sim-host FILE`), so that a
//! build, a save and a restore can each be a separate `xenguest` process, as on Xen.
//!
//! The file is JSON: a format line and the host's whole state (heap, domains, their p2m,
//! parameters and the contents of every page that holds data, in hex). The trace and the
//! armed faults belong to one run and are not kept. The file is checked on load as any
//! input is: a wrong format, a malformed body or an inconsistent host (its books do not
//! balance) is refused with what is wrong.

use super::{HostState, SimHost};
use crate::types::PAGE_USIZE;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// The first field of a host file.
pub const FORMAT: &str = "xenguest simulated host, version 1";

#[derive(Serialize, Deserialize)]
struct HostFile {
    format: String,
    state: HostState,
}

impl SimHost {
    /// Load a host written by [`SimHost::save_to`].
    pub fn load_from(path: &Path) -> Result<SimHost, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: HostFile = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a simulated host: {e}", path.display()))?;
        if file.format != FORMAT {
            return Err(format!(
                "{} is '{}', not '{FORMAT}'",
                path.display(),
                file.format
            ));
        }
        let host = SimHost {
            state: Mutex::new(file.state),
            latency_us: AtomicU64::new(0),
        };
        host.check_accounting()
            .map_err(|e| format!("{} holds an inconsistent host: {e}", path.display()))?;
        Ok(host)
    }

    /// Write the host's state to `path` (through a temporary file and a rename, so that a
    /// failed write never leaves half a host behind).
    pub fn save_to(&self, path: &Path) -> Result<(), String> {
        let st = self.lock();
        let file = HostFileRef {
            format: FORMAT,
            state: &st,
        };
        let text = serde_json::to_string(&file).map_err(|e| format!("encoding the host: {e}"))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

#[derive(Serialize)]
struct HostFileRef<'a> {
    format: &'a str,
    state: &'a HostState,
}

/// A map whose keys are not strings (a domid, a PCI address), as a list of pairs.
pub mod pairs {
    use super::*;

    /// Serialize as `[[key, value], ...]`.
    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    /// Deserialize from `[[key, value], ...]`.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Page contents by machine frame, each page as hex.
pub mod pages {
    use super::*;

    type Page = Box<[u8; PAGE_USIZE]>;

    /// Serialize as `[[mfn, "hex"], ...]`, by frame.
    pub fn serialize<S: Serializer>(map: &HashMap<u64, Page>, s: S) -> Result<S::Ok, S::Error> {
        let sorted: BTreeMap<u64, &Page> = map.iter().map(|(&k, v)| (k, v)).collect();
        s.collect_seq(sorted.into_iter().map(|(mfn, page)| {
            let hex: String = page.iter().map(|b| format!("{b:02x}")).collect();
            (mfn, hex)
        }))
    }

    /// Deserialize from `[[mfn, "hex"], ...]`; a page that is not exactly 4096 bytes of hex
    /// is refused.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<u64, Page>, D::Error> {
        let list = Vec::<(u64, String)>::deserialize(d)?;
        let mut map = HashMap::with_capacity(list.len());
        for (mfn, hex) in list {
            let bytes = hex.as_bytes();
            if bytes.len() != 2 * PAGE_USIZE {
                return Err(serde::de::Error::custom(format!(
                    "page {mfn:#x}: {} hex digits, not {}",
                    bytes.len(),
                    2 * PAGE_USIZE
                )));
            }
            let mut page = Box::new([0u8; PAGE_USIZE]);
            for (i, pair) in bytes.chunks_exact(2).enumerate() {
                let text = std::str::from_utf8(pair).unwrap_or("");
                page[i] = u8::from_str_radix(text, 16).map_err(|_| {
                    serde::de::Error::custom(format!("page {mfn:#x}: '{text}' is not hex"))
                })?;
            }
            map.insert(mfn, page);
        }
        Ok(map)
    }
}
