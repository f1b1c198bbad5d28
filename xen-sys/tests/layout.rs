//! xenctrl-sys generates its bindings with layout tests off; the real backend hands libxenctrl
//! its `vcpu_guest_context_x86_64` (`xc_vcpu_setcontext`). This crate's `abi` module binds the
//! same header with bindgen's layout tests on (checked against clang when it compiles), so
//! equal offsets here mean xenctrl-sys's struct has the C layout for every field we set.

use std::mem::{offset_of, size_of};
use xen_sys::abi;

/// The offsets of `$field` in xenctrl-sys's `$ty` and in the layout-tested `abi::$ty`.
macro_rules! offsets {
    ($ty:ident, $($field:tt)+) => {
        (
            offset_of!(xen_sys::$ty, $($field)+),
            offset_of!(abi::$ty, $($field)+),
            stringify!($($field)+),
        )
    };
}

#[test]
fn vcpu_guest_context_fields_the_backend_sets_match_the_layout_tested_ones() {
    assert_eq!(
        size_of::<xen_sys::vcpu_guest_context_x86_64>(),
        size_of::<abi::vcpu_guest_context_x86_64>()
    );
    assert_eq!(size_of::<abi::vcpu_guest_context_x86_64>(), 5168);
    for (ours, tested, field) in [
        offsets!(vcpu_guest_context_x86_64, flags),
        offsets!(vcpu_guest_context_x86_64, user_regs),
        offsets!(vcpu_guest_context_x86_64, kernel_ss),
        offsets!(vcpu_guest_context_x86_64, kernel_sp),
        offsets!(vcpu_guest_context_x86_64, ctrlreg),
        offsets!(vcpu_guest_context_x86_64, debugreg),
        offsets!(vcpu_guest_context_x86_64, vm_assist),
    ] {
        assert_eq!(ours, tested, "vcpu_guest_context_x86_64.{field}");
    }
    // cpu_user_regs_x86_64: rsi, rip, rflags and rsp are the 14th, 16th, 17th and 18th
    // anonymous register unions (public/arch-x86/xen-x86_64.h, struct cpu_user_regs).
    for (ours, tested, field) in [
        offsets!(cpu_user_regs_x86_64, __bindgen_anon_14.rsi),
        offsets!(cpu_user_regs_x86_64, __bindgen_anon_16.rip),
        offsets!(cpu_user_regs_x86_64, __bindgen_anon_17.rflags),
        offsets!(cpu_user_regs_x86_64, __bindgen_anon_18.rsp),
        offsets!(cpu_user_regs_x86_64, cs),
        offsets!(cpu_user_regs_x86_64, ss),
        offsets!(cpu_user_regs_x86_64, ds),
        offsets!(cpu_user_regs_x86_64, es),
        offsets!(cpu_user_regs_x86_64, fs),
        offsets!(cpu_user_regs_x86_64, gs),
    ] {
        assert_eq!(ours, tested, "cpu_user_regs_x86_64.{field}");
    }
    // The names name the registers the backend means (the layout-tested struct, at the
    // offsets Xen's header gives).
    assert_eq!(
        offset_of!(abi::cpu_user_regs_x86_64, __bindgen_anon_14.rsi),
        13 * 8
    );
    assert_eq!(
        offset_of!(abi::cpu_user_regs_x86_64, __bindgen_anon_16.rip),
        128
    );
    assert_eq!(
        offset_of!(abi::cpu_user_regs_x86_64, __bindgen_anon_17.rflags),
        144
    );
    assert_eq!(
        offset_of!(abi::cpu_user_regs_x86_64, __bindgen_anon_18.rsp),
        152
    );
    assert_eq!(offset_of!(abi::vcpu_guest_context_x86_64, user_regs), 520);
}
