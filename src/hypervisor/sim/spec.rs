//! The host spec string: `key=value` pairs, comma-separated, describing the simulated host.
//!
//! ```text
//! nodes=2,node_mib=4096,cpus=8,free_mib=1:1024,no_1g=0,caller=control,sched=credit
//! ```
//!
//! | key | value | default |
//! |---|---|---|
//! | `nodes` | NUMA nodes, 1..=64 (`MAX_NUMNODES` on x86) | 1 |
//! | `node_mib` | memory per node, MiB, 1..=16 TiB | 16384 |
//! | `cpus` | physical CPUs, 1..=4096, split evenly across nodes | 8 |
//! | `free_mib=<node>:<mib>` | only this much free on the node; the rest is held by other domains | all free |
//! | `no_1g=<node>` | no free 1 GiB chunk on the node (one page taken out of every GiB) | |
//! | `half_2m=<node>` | no 1 GiB chunk and only every second 2 MiB chunk usable | |
//! | `only_4k=<node>` | only isolated 4 KiB pages free (every second page taken) | |
//! | `caller` | `control`, `hwdom` or `domu`: the toolstack's `memop-max-order` 18/12/9 | `control` |
//! | `sched` | `credit` or `credit2` (the pool's scheduler) | `credit` |
//! | `node_pages` | `on`/`off`: XenServer's per-node page query (`XEN_DOMCTL_NUMA_OP_GET_NODE_PAGES`) | `on` |
//!
//! Node-keyed options may be repeated for different nodes, never twice for the same node.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `MAX_NUMNODES` on x86 (`NODES_SHIFT` 6).
pub const MAX_NODES: u32 = 64;
/// Largest node the simulator accepts, MiB (16 TiB).
pub const MAX_NODE_MIB: u64 = 16 << 20;
/// Largest pCPU count the simulator accepts.
pub const MAX_CPUS: u32 = 4096;
/// `only_4k` keeps one free-list entry per free page, so it is limited to this much free
/// memory on the node, MiB (the rest of the node may be held by other domains).
pub const MAX_ONLY_4K_FREE_MIB: u64 = 4 << 10;
/// `half_2m` leaves ten free-list entries per 4 MiB, so it is limited to this much free
/// memory on the node, MiB.
pub const MAX_HALF_2M_FREE_MIB: u64 = 256 << 10;

/// Who runs the toolstack: decides the largest extent order `populate_physmap` accepts
/// (`max_order()` of the *calling* domain) and whether node hints are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Caller {
    /// The control domain (dom0 in XenServer): order 18, node hints honoured.
    #[default]
    Control,
    /// A hardware domain that is not the control domain: order 12, node hints honoured.
    Hwdom,
    /// An unprivileged domain: order 9; a node hint is ignored, an exact one fails.
    Domu,
}

impl Caller {
    /// `max_order(current->domain)` with Xen's x86 defaults.
    pub const fn max_order(self) -> u32 {
        match self {
            Caller::Control => 18,
            Caller::Hwdom => 12,
            Caller::Domu => 9,
        }
    }

    /// Whether `propagate_node()` honours the caller's node hint.
    pub const fn privileged(self) -> bool {
        !matches!(self, Caller::Domu)
    }

    fn name(self) -> &'static str {
        match self {
            Caller::Control => "control",
            Caller::Hwdom => "hwdom",
            Caller::Domu => "domu",
        }
    }
}

/// The scheduler of the pool the domains live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Scheduler {
    /// Credit (XenServer's default): `sched_credit_domain_{get,set}` work.
    #[default]
    Credit,
    /// Credit2: the credit calls fail with EINVAL (`sched_adjust()` checks `sched_id`).
    Credit2,
}

impl Scheduler {
    fn name(self) -> &'static str {
        match self {
            Scheduler::Credit => "credit",
            Scheduler::Credit2 => "credit2",
        }
    }
}

/// A parsed host spec. `Display` prints every key, and parsing that text gives back an
/// equal spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostSpec {
    /// NUMA nodes.
    pub nodes: u32,
    /// Memory per node, MiB.
    pub node_mib: u64,
    /// Physical CPUs, split evenly across nodes.
    pub cpus: u32,
    /// Node → free MiB, for nodes where other domains hold the rest.
    pub free_mib: BTreeMap<u32, u64>,
    /// Nodes with no free 1 GiB chunk.
    pub no_1g: BTreeSet<u32>,
    /// Nodes with no 1 GiB chunk and half the 2 MiB chunks unusable.
    pub half_2m: BTreeSet<u32>,
    /// Nodes with only isolated 4 KiB pages free.
    pub only_4k: BTreeSet<u32>,
    /// The toolstack's domain kind.
    pub caller: Caller,
    /// The pool's scheduler.
    pub sched: Scheduler,
    /// Whether the host answers XenServer's per-node page query.
    pub node_pages: bool,
}

impl Default for HostSpec {
    fn default() -> Self {
        HostSpec {
            nodes: 1,
            node_mib: 16384,
            cpus: 8,
            free_mib: BTreeMap::new(),
            no_1g: BTreeSet::new(),
            half_2m: BTreeSet::new(),
            only_4k: BTreeSet::new(),
            caller: Caller::Control,
            sched: Scheduler::Credit,
            node_pages: true,
        }
    }
}

/// A host spec that cannot be parsed or describes an impossible host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// An item that is not `key=value`.
    #[error("host spec: expected key=value, got '{0}'")]
    Syntax(String),
    /// A key the simulator does not know.
    #[error("host spec: unknown key '{0}'")]
    UnknownKey(String),
    /// A value that is malformed or out of range for its key.
    #[error("host spec: {key}={value}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> SpecError {
    SpecError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SpecError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "not a number"))
}

impl HostSpec {
    /// Parse a spec string; the empty string is the default host.
    pub fn parse(s: &str) -> Result<HostSpec, SpecError> {
        let mut spec = HostSpec::default();
        // Node-keyed values are range-checked once `nodes` is known, whatever the key order.
        let mut node_keys: Vec<(&'static str, String, u32)> = Vec::new();
        let mut seen_scalar: BTreeSet<&'static str> = BTreeSet::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(spec);
        }
        for item in s.split(',') {
            let item = item.trim();
            let Some((key, value)) = item.split_once('=') else {
                return Err(SpecError::Syntax(item.to_string()));
            };
            let (key, value) = (key.trim(), value.trim());
            let scalar = |k: &'static str, seen: &mut BTreeSet<&'static str>| {
                if seen.insert(k) {
                    Ok(())
                } else {
                    Err(bad(k, value, "given twice"))
                }
            };
            match key {
                "nodes" => {
                    scalar("nodes", &mut seen_scalar)?;
                    let n: u32 = number(key, value)?;
                    if n == 0 || n > MAX_NODES {
                        return Err(bad(key, value, format!("must be 1..={MAX_NODES}")));
                    }
                    spec.nodes = n;
                }
                "node_mib" => {
                    scalar("node_mib", &mut seen_scalar)?;
                    let m: u64 = number(key, value)?;
                    if m == 0 || m > MAX_NODE_MIB {
                        return Err(bad(key, value, format!("must be 1..={MAX_NODE_MIB} MiB")));
                    }
                    spec.node_mib = m;
                }
                "cpus" => {
                    scalar("cpus", &mut seen_scalar)?;
                    let n: u32 = number(key, value)?;
                    if n == 0 || n > MAX_CPUS {
                        return Err(bad(key, value, format!("must be 1..={MAX_CPUS}")));
                    }
                    spec.cpus = n;
                }
                "caller" => {
                    scalar("caller", &mut seen_scalar)?;
                    spec.caller = match value {
                        "control" => Caller::Control,
                        "hwdom" => Caller::Hwdom,
                        "domu" => Caller::Domu,
                        _ => return Err(bad(key, value, "expected control, hwdom or domu")),
                    };
                }
                "sched" => {
                    scalar("sched", &mut seen_scalar)?;
                    spec.sched = match value {
                        "credit" => Scheduler::Credit,
                        "credit2" => Scheduler::Credit2,
                        _ => return Err(bad(key, value, "expected credit or credit2")),
                    };
                }
                "node_pages" => {
                    scalar("node_pages", &mut seen_scalar)?;
                    spec.node_pages = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(bad(key, value, "expected on or off")),
                    };
                }
                "free_mib" => {
                    let Some((node, mib)) = value.split_once(':') else {
                        return Err(bad(key, value, "expected <node>:<mib>"));
                    };
                    let node: u32 = number(key, node)?;
                    let mib: u64 = number(key, mib)?;
                    if spec.free_mib.insert(node, mib).is_some() {
                        return Err(bad(key, value, format!("node {node} given twice")));
                    }
                    node_keys.push(("free_mib", value.to_string(), node));
                }
                "no_1g" | "half_2m" | "only_4k" => {
                    let node: u32 = number(key, value)?;
                    let (set, k) = match key {
                        "no_1g" => (&mut spec.no_1g, "no_1g"),
                        "half_2m" => (&mut spec.half_2m, "half_2m"),
                        _ => (&mut spec.only_4k, "only_4k"),
                    };
                    if !set.insert(node) {
                        return Err(bad(key, value, format!("node {node} given twice")));
                    }
                    node_keys.push((k, value.to_string(), node));
                }
                _ => return Err(SpecError::UnknownKey(key.to_string())),
            }
        }
        for (key, value, node) in &node_keys {
            if *node >= spec.nodes {
                return Err(bad(
                    key,
                    value,
                    format!("node {node} out of range (nodes={})", spec.nodes),
                ));
            }
        }
        for (&node, &mib) in &spec.free_mib {
            if mib > spec.node_mib {
                let value = format!("{node}:{mib}");
                return Err(bad(
                    "free_mib",
                    &value,
                    format!("more than node_mib={}", spec.node_mib),
                ));
            }
        }
        for &node in &spec.only_4k {
            if spec.node_free_mib(node) > MAX_ONLY_4K_FREE_MIB {
                let reason = format!(
                    "node has {} MiB free; only_4k can model at most {MAX_ONLY_4K_FREE_MIB} MiB (use free_mib)",
                    spec.node_free_mib(node)
                );
                return Err(bad("only_4k", &node.to_string(), reason));
            }
        }
        for &node in &spec.half_2m {
            if spec.node_free_mib(node) > MAX_HALF_2M_FREE_MIB {
                let reason = format!(
                    "node has {} MiB free; half_2m can model at most {MAX_HALF_2M_FREE_MIB} MiB (use free_mib)",
                    spec.node_free_mib(node)
                );
                return Err(bad("half_2m", &node.to_string(), reason));
            }
        }
        Ok(spec)
    }

    /// Free MiB on `node` at start (before fragmentation takes its pages).
    pub fn node_free_mib(&self, node: u32) -> u64 {
        self.free_mib.get(&node).copied().unwrap_or(self.node_mib)
    }

    /// The node of pCPU `cpu`: CPUs are split evenly, in order, across the nodes.
    pub fn cpu_to_node(&self, cpu: u32) -> u32 {
        let node = (u64::from(cpu) * u64::from(self.nodes)) / u64::from(self.cpus.max(1));
        // Below `nodes` for every cpu below `cpus`; the last node for the others.
        u32::try_from(node).unwrap_or(self.nodes.saturating_sub(1))
    }
}

impl std::str::FromStr for HostSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostSpec::parse(s)
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes={},node_mib={},cpus={},caller={},sched={},node_pages={}",
            self.nodes,
            self.node_mib,
            self.cpus,
            self.caller.name(),
            self.sched.name(),
            if self.node_pages { "on" } else { "off" }
        )?;
        for (node, mib) in &self.free_mib {
            write!(f, ",free_mib={node}:{mib}")?;
        }
        for (key, set) in [
            ("no_1g", &self.no_1g),
            ("half_2m", &self.half_2m),
            ("only_4k", &self.only_4k),
        ] {
            for node in set {
                write!(f, ",{key}={node}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let d = HostSpec::parse("").unwrap();
        assert_eq!(d, HostSpec::default());
        assert_eq!((d.nodes, d.node_mib, d.cpus), (1, 16384, 8));
        let s = "nodes=2, node_mib=4096,cpus=16,free_mib=1:1024,no_1g=0,half_2m=1,only_4k=0,caller=domu,sched=credit2,node_pages=off";
        let spec = HostSpec::parse(s).unwrap();
        assert_eq!(spec.free_mib.get(&1), Some(&1024));
        assert!(spec.no_1g.contains(&0) && spec.half_2m.contains(&1) && spec.only_4k.contains(&0));
        assert_eq!(
            (spec.caller, spec.sched, spec.node_pages),
            (Caller::Domu, Scheduler::Credit2, false)
        );
        let text = spec.to_string();
        assert_eq!(HostSpec::parse(&text).unwrap(), spec, "{text}");
        assert_eq!(HostSpec::parse(&d.to_string()).unwrap(), d);
        // Node keys may precede `nodes`.
        assert!(HostSpec::parse("no_1g=1,nodes=2").is_ok());
    }

    #[test]
    fn cpu_to_node_splits_evenly() {
        let spec = HostSpec::parse("nodes=2,cpus=8").unwrap();
        let map: Vec<u32> = (0..8).map(|c| spec.cpu_to_node(c)).collect();
        assert_eq!(map, [0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn bad_specs_name_the_key() {
        let cases = [
            ("nodes=0", "nodes"),
            ("nodes=65", "nodes"),
            ("nodes=x", "nodes"),
            ("node_mib=0", "node_mib"),
            ("node_mib=99999999999", "node_mib"),
            ("cpus=0", "cpus"),
            ("free_mib=0", "free_mib"),
            ("free_mib=1:10", "free_mib"),
            ("free_mib=0:99999", "free_mib"),
            ("free_mib=0:1,free_mib=0:2", "free_mib"),
            ("no_1g=1", "no_1g"),
            ("nodes=2,no_1g=0,no_1g=0", "no_1g"),
            ("half_2m=-1", "half_2m"),
            ("only_4k=0", "only_4k"),
            ("caller=root", "caller"),
            ("sched=rtds", "sched"),
            ("node_pages=maybe", "node_pages"),
            ("nodes=1,nodes=2", "nodes"),
        ];
        for (s, key) in cases {
            match HostSpec::parse(s) {
                Err(SpecError::BadValue { key: k, .. }) => assert_eq!(k, key, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(
            HostSpec::parse("bogus=1"),
            Err(SpecError::UnknownKey("bogus".into()))
        );
        assert_eq!(
            HostSpec::parse("nodes"),
            Err(SpecError::Syntax("nodes".into()))
        );
        assert!(matches!(
            HostSpec::parse("nodes=1,"),
            Err(SpecError::Syntax(_))
        ));
        let msg = HostSpec::parse("free_mib=3:1").unwrap_err().to_string();
        assert!(
            msg.contains("free_mib=3:1") && msg.contains("out of range"),
            "{msg}"
        );
    }
}
