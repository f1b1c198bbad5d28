//! xenguest: XenServer's domain builder, in Rust.
//!
//! One core, three faces. The core turns an empty Xen domain into a bootable guest through
//! two seams: [`hypervisor::Hypervisor`] (libxenctrl primitives; a real backend and a
//! simulated host) and [`store::Store`] (xenstore; a real xenstored and an in-memory tree).
//! The faces (the `xenguest` binary and the OCaml module) call the core, never the reverse.

pub mod abi;
pub mod acpi;
pub mod boot;
pub mod builder;
pub mod cancel;
pub mod cpuid;
pub mod error;
pub mod hypervisor;
pub mod image;
pub mod layout;
pub mod log_capture;
pub mod memory;
pub mod migrate;
pub mod placement;
pub mod platform;
pub mod pv_layout;
pub mod report;
pub mod request;
pub mod store;
pub mod types;
pub mod vcpu;

pub use error::{BuildError, Error, ErrorKind, Result, Step};

/// Largest guest this builder accepts, MiB (16 TiB, Xen's x86 limit for HVM guests).
pub const MAX_GUEST_MIB: u64 = 16 << 20;
