//! The call trace: one entry per call, cheap enough to keep on for every build.

use crate::types::DomId;
use serde::Serialize;
use std::collections::BTreeMap;

/// One call on the simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    /// Position in the host's call sequence (never reused, even after `clear_trace`).
    pub seq: u64,
    /// The call kind (trait method name, or `create_domain` / `destroy_domain`).
    pub kind: &'static str,
    /// The domain the call was about, if any.
    pub domid: Option<DomId>,
    /// Arguments and outcome, e.g. `order=9 extents=1019 flags=0x0 done=1019`.
    pub detail: String,
    /// The errno the call failed with, if it failed.
    pub errno: Option<i32>,
}

#[derive(Debug, Default)]
pub(super) struct Trace {
    entries: Vec<TraceEntry>,
    next_seq: u64,
}

impl Trace {
    pub fn push(
        &mut self,
        kind: &'static str,
        domid: Option<DomId>,
        detail: String,
        errno: Option<i32>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push(TraceEntry {
            seq,
            kind,
            domid,
            detail,
            errno,
        });
    }

    pub fn entries(&self) -> &[TraceEntry] {
        &self.entries
    }

    pub fn counts(&self, domid: Option<DomId>) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for e in self
            .entries
            .iter()
            .filter(|e| domid.is_none() || e.domid == domid)
        {
            *out.entry(e.kind).or_insert(0) += 1;
        }
        out
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
