//! xenguest: XenServer's domain builder, in Rust.
//!
//! One core, three faces. The core turns an empty Xen domain into a bootable guest through
//! two seams: [`hypervisor::Hypervisor`] (libxenctrl primitives; a real backend and a
//! simulated host) and [`store::Store`] (xenstore; a real xenstored and an in-memory tree).
//! The faces (the `xenguest` binary and the OCaml module) call the core, never the reverse.

pub mod hypervisor;
pub mod store;
pub mod types;
