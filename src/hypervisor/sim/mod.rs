//! The simulated Xen host (to be written).
