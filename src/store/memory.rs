//! An in-memory store: the simulated host's xenstore and the unit tests' fixture.

use super::{Store, StoreError, StoreResult};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A thread-safe in-memory tree. Every write is also recorded in order, so tests and the
/// build report can show a build's side effects.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: BTreeMap<String, String>,
    writes: Vec<(String, String)>,
    fail_next: Vec<(&'static str, i32)>,
    /// Armed "fail the nth op" faults: (op or any, ops still to count, errno).
    fail_nth: Vec<(Option<&'static str>, u64, i32)>,
    /// Operations attempted so far, per kind (failed ones included).
    ops: BTreeMap<&'static str, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `write` so far, in order.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.lock().writes.clone()
    }

    /// A snapshot of every node.
    pub fn dump(&self) -> BTreeMap<String, String> {
        self.lock().nodes.clone()
    }

    /// Make the next operation `op` (`read`, `write`, `directory`, `rm`) fail with `errno`.
    pub fn fail_next(&self, op: &'static str, errno: i32) {
        self.lock().fail_next.push((op, errno));
    }

    /// Make the `nth` operation from now (1-based; 0 acts as 1) fail with `errno`: the nth
    /// `op` (`read`, `write`, `directory`, `rm`), or with `None` the nth operation of any
    /// kind. Several faults may be armed; each fires once, and an operation that one fault
    /// fails still counts for the others.
    pub fn fail_nth(&self, op: Option<&'static str>, nth: u64, errno: i32) {
        self.lock().fail_nth.push((op, nth.max(1), errno));
    }

    /// Operations attempted so far (failed ones included), per kind.
    pub fn op_counts(&self) -> BTreeMap<&'static str, u64> {
        self.lock().ops.clone()
    }

    /// Operations attempted so far, all kinds.
    pub fn ops(&self) -> u64 {
        self.lock().ops.values().sum()
    }

    /// Disarm every injected failure (`fail_next` and `fail_nth`).
    pub fn clear_faults(&self) {
        let mut inner = self.lock();
        inner.fail_next.clear();
        inner.fail_nth.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (every mutation
        // is a single insert or retain), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn injected(&mut self, op: &'static str, path: &str) -> StoreResult<()> {
        *self.ops.entry(op).or_insert(0) += 1;
        let mut fired = None;
        for (i, (o, left, _)) in self.fail_nth.iter_mut().enumerate() {
            if o.is_none() || *o == Some(op) {
                *left = left.saturating_sub(1);
                if *left == 0 && fired.is_none() {
                    fired = Some(i);
                }
            }
        }
        // One fault per operation; another one that is due fires on its next operation.
        let mut code = fired.map(|i| self.fail_nth.remove(i).2);
        if code.is_none() {
            if let Some(i) = self.fail_next.iter().position(|(o, _)| *o == op) {
                code = Some(self.fail_next.remove(i).1);
            }
        }
        match code {
            Some(code) => Err(StoreError {
                op,
                path: path.to_string(),
                code,
                message: crate::hypervisor::strerror(code),
            }),
            None => Ok(()),
        }
    }
}

fn normalise(path: &str) -> &str {
    path.trim_end_matches('/')
}

impl Store for MemoryStore {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        let mut inner = self.lock();
        inner.injected("read", path)?;
        Ok(inner.nodes.get(normalise(path)).cloned())
    }

    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        inner.injected("write", path)?;
        let path = normalise(path);
        // Parents exist implicitly, as in xenstored (created with an empty value).
        let mut parent = path;
        while let Some(i) = parent.rfind('/') {
            parent = &parent[..i];
            if parent.is_empty() {
                break;
            }
            inner.nodes.entry(parent.to_string()).or_default();
        }
        inner.nodes.insert(path.to_string(), value.to_string());
        inner.writes.push((path.to_string(), value.to_string()));
        Ok(())
    }

    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        let mut inner = self.lock();
        inner.injected("directory", path)?;
        let prefix = format!("{}/", normalise(path));
        Ok(inner
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect())
    }

    fn rm(&self, path: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        inner.injected("rm", path)?;
        let path = normalise(path).to_string();
        let prefix = format!("{path}/");
        inner
            .nodes
            .retain(|k, _| *k != path && !k.starts_with(&prefix));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_directory_rm() {
        let s = MemoryStore::new();
        s.write("/local/domain/1/platform/acpi", "1").unwrap();
        s.write("/local/domain/1/platform/hpet", "0").unwrap();
        s.write("/local/domain/1/platform/vcpu/number", "2")
            .unwrap();
        assert_eq!(
            s.read("/local/domain/1/platform/acpi").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(s.read("/local/domain/1/nope").unwrap(), None);
        assert_eq!(
            s.directory("/local/domain/1/platform").unwrap(),
            vec!["acpi", "hpet", "vcpu"]
        );
        assert_eq!(
            s.read("/local/domain/1/platform/vcpu").unwrap().as_deref(),
            Some("")
        );
        s.rm("/local/domain/1/platform").unwrap();
        assert!(s.directory("/local/domain/1/platform").unwrap().is_empty());
        assert_eq!(s.read("/local/domain/1/platform/acpi").unwrap(), None);
        assert_eq!(s.writes().len(), 3);
    }

    #[test]
    fn injected_failure_fires_once() {
        let s = MemoryStore::new();
        s.fail_next("write", libc::EACCES);
        let e = s.write("/a", "1").unwrap_err();
        assert_eq!((e.op, e.code), ("write", libc::EACCES));
        s.write("/a", "1").unwrap();
    }

    #[test]
    fn fail_nth_counts_ops_and_fires_once() {
        let s = MemoryStore::new();
        s.fail_nth(None, 3, libc::EIO);
        s.fail_nth(Some("read"), 2, libc::EACCES);
        s.write("/a", "1").unwrap(); // any: 1
        assert_eq!(s.read("/a").unwrap().as_deref(), Some("1")); // any: 2, read: 1
        let e = s.read("/a").unwrap_err(); // any: 3 fires first; read: 2 is due too
        assert_eq!((e.op, e.code, e.path.as_str()), ("read", libc::EIO, "/a"));
        s.directory("/").unwrap(); // the read fault is due, but this is no read
        let e = s.read("/a").unwrap_err(); // ... so it fires on the next one
        assert_eq!((e.op, e.code), ("read", libc::EACCES));
        s.rm("/a").unwrap();
        assert_eq!(s.ops(), 6);
        assert_eq!(s.op_counts()["read"], 3);
        assert!(s.read("/a").unwrap().is_none());
        s.fail_nth(Some("rm"), 1, libc::EPERM);
        s.fail_next("write", libc::EPERM);
        s.clear_faults();
        s.rm("/a").unwrap();
        s.write("/a", "2").unwrap();
    }
}
