//! Fault injection: make the nth call of a kind fail (or, for populate, stop early).

use crate::types::DomId;
use serde::Serialize;

/// Every call kind the simulated host traces and can fault, with the libxenctrl function
/// its errors are reported under.
pub const KINDS: &[(&str, &str)] = &[
    ("create_domain", "xc_domain_create"),
    ("destroy_domain", "xc_domain_destroy"),
    ("domain_getinfo", "xc_domain_getinfo"),
    ("physinfo", "xc_physinfo"),
    ("vcpu_setaffinity_hard", "xc_vcpu_setaffinity"),
    ("sched_credit_domain_get", "xc_sched_credit_domain_get"),
    ("sched_credit_domain_set", "xc_sched_credit_domain_set"),
    ("domain_set_tsc_info", "xc_domain_set_tsc_info"),
    ("domain_claim_pages", "xc_domain_claim_pages"),
    ("domain_set_pod_target", "xc_domain_set_pod_target"),
    ("domain_populate_physmap", "xc_domain_populate_physmap"),
    ("clear_domain_pages", "xc_clear_domain_pages"),
    ("write_guest", "xc_map_foreign_range"),
    ("read_guest", "xc_map_foreign_range"),
    ("hvm_param_set", "xc_hvm_param_set"),
    ("hvm_param_get", "xc_hvm_param_get"),
    ("domain_set_memory_map", "xc_domain_set_memory_map"),
    ("domain_set_time_offset", "xc_domain_set_time_offset"),
    ("get_cpu_featureset", "xc_get_cpu_featureset"),
    ("cpuid_apply_policy", "xc_cpuid_apply_policy"),
    ("gnttab_seed", "xc_dom_gnttab_seed"),
    ("domain_hvm_set_boot_vcpu", "xc_domain_hvm_setcontext"),
    (
        "reserved_device_memory_map",
        "xc_reserved_device_memory_map",
    ),
    ("domain_pages_by_node", "xc_domain_get_node_pages"),
    ("domain_set_address_size", "XEN_DOMCTL_set_address_size"),
    ("get_native_protocol", "xc_domain_get_native_protocol"),
    ("domain_shared_info_frame", "xc_domain_getinfo"),
    ("mmuext_pin_l4_table", "xc_mmuext_op"),
    ("hypercall_page_init", "XEN_DOMCTL_hypercall_init"),
    ("vcpu_setcontext_pv", "xc_vcpu_setcontext"),
    (
        "domain_decrease_reservation",
        "xc_domain_decrease_reservation",
    ),
    ("domain_get_tsc_info", "xc_domain_get_tsc_info"),
    ("domain_restore_tsc_info", "xc_domain_set_tsc_info"),
    ("domain_hvm_getcontext", "xc_domain_hvm_getcontext"),
    ("domain_hvm_setcontext", "xc_domain_hvm_setcontext"),
    ("domain_set_cpu_policy", "xc_set_domain_cpu_policy"),
    ("domain_logdirty", "xc_shadow_control"),
    ("domain_logdirty_clean", "xc_shadow_control"),
    ("domain_pfn_types", "xc_get_pfn_type_batch"),
    ("domain_maximum_gpfn", "xc_domain_maximum_gpfn"),
    ("xen_version", "xc_version"),
    ("domain_get_cpu_policy", "xc_get_domain_cpu_policy"),
];

/// The libxenctrl function behind a call kind.
pub fn xc_function(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("xc_unknown", |(_, f)| f)
}

/// What an injected fault does to the call it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FaultAction {
    /// Fail with this errno, changing nothing.
    Errno(i32),
    /// `domain_populate_physmap` only: do at most this many extents, then stop as if out of
    /// memory. On any other kind it fails with ENOMEM.
    Partial(usize),
}

/// A fault armed on the simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// Call kind: the trait method name (see [`KINDS`]).
    pub kind: &'static str,
    /// Fire on the nth matching call from now, 1-based (0 acts as 1).
    pub nth: u64,
    /// Only count calls for this domain; `None` counts every call of the kind.
    pub domid: Option<DomId>,
    /// What to do.
    pub action: FaultAction,
}

impl Fault {
    /// Fail the `nth` call of `kind` with `errno`.
    pub fn errno(kind: &'static str, nth: u64, errno: i32) -> Self {
        Fault {
            kind,
            nth,
            domid: None,
            action: FaultAction::Errno(errno),
        }
    }

    /// Stop the `nth` populate call after `done` extents.
    pub fn partial(nth: u64, done: usize) -> Self {
        Fault {
            kind: "domain_populate_physmap",
            nth,
            domid: None,
            action: FaultAction::Partial(done),
        }
    }

    /// Only count calls for `domid`.
    pub fn for_domain(self, domid: DomId) -> Self {
        Fault {
            domid: Some(domid),
            ..self
        }
    }
}

/// Armed faults and how many matching calls each has seen.
#[derive(Debug, Default)]
pub(super) struct Faults {
    pending: Vec<(Fault, u64)>,
}

impl Faults {
    /// Arm a fault; an unknown kind is refused so a typo cannot silently never fire.
    pub fn add(&mut self, fault: Fault) -> Result<(), String> {
        if !KINDS.iter().any(|(k, _)| *k == fault.kind) {
            return Err(format!("unknown call kind '{}'", fault.kind));
        }
        self.pending.push((fault, 0));
        Ok(())
    }

    /// Count a call; returns the action of the first armed fault that is due, consuming it.
    pub fn check(&mut self, kind: &str, domid: Option<DomId>) -> Option<FaultAction> {
        if self.pending.is_empty() {
            return None;
        }
        let mut due = None;
        for (i, (f, seen)) in self.pending.iter_mut().enumerate() {
            if f.kind == kind && (f.domid.is_none() || f.domid == domid) {
                *seen += 1;
                if due.is_none() && *seen >= f.nth.max(1) {
                    due = Some(i);
                }
            }
        }
        due.map(|i| self.pending.remove(i).0.action)
    }

    /// Faults not yet fired.
    pub fn pending(&self) -> Vec<Fault> {
        self.pending.iter().map(|(f, _)| f.clone()).collect()
    }

    /// Disarm everything.
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
