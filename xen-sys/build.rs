//! Bindings generated at build time from the installed Xen headers (Debian 12: `libxen-dev`,
//! Xen 4.17). Only the functions the project calls are emitted; the types they use come from
//! `xenctrl-sys`, so one `xc_interface` type serves both crates.

use std::{env, path::PathBuf};

/// Functions from `xenctrl_compat.h`, `xenguest.h` and `xenstore.h` that `xenctrl-sys` lacks.
const FUNCTIONS: &[&str] = &[
    // xenctrl_compat.h (XC_WANT_COMPAT_MAP_FOREIGN_API): foreign memory mapping.
    "xc_map_foreign_range",
    "xc_map_foreign_pages",
    // xenguest.h
    "xc_get_cpu_featureset",
    "xc_get_cpu_featureset_size",
    "xc_dom_gnttab_seed",
    // xenguest.h: a domain's CPU policy, read for a save and set by a restore.
    "xc_cpu_policy_init",
    "xc_cpu_policy_destroy",
    "xc_cpu_policy_get_domain",
    "xc_cpu_policy_serialise",
    "xc_cpu_policy_get_size",
    "xc_set_domain_cpu_policy",
    // xenguest.h: the migration stream engine (save, restore, slow resume).
    "xc_domain_save",
    "xc_domain_restore",
    "xc_domain_resume",
    // xencall.h: raw hypercalls for the two domctls libxenctrl does not export
    // (XEN_DOMCTL_set_address_size, XEN_DOMCTL_hypercall_init), as libxenguest issues them.
    "xencall_open",
    "xencall_close",
    "xencall_alloc_buffer",
    "xencall_free_buffer",
    "xencall1",
    // xenstore.h: what a toolstack needs around a build (xenstore-rs has no introduce).
    "xs_open",
    "xs_close",
    "xs_write",
    "xs_read",
    "xs_rm",
    "xs_mkdir",
    "xs_set_permissions",
    "xs_get_domain_path",
    "xs_introduce_domain",
    "xs_release_domain",
];

/// Types used only by those functions (everything else comes from `xenctrl-sys`).
const TYPES: &[&str] = &[
    "xc_cpu_policy",
    "xc_cpu_policy_t",
    "xs_handle",
    "xs_transaction_t",
    "xs_permissions",
    "xs_perm_type",
    "save_callbacks",
    "restore_callbacks",
    "precopy_stats",
    "precopy_policy_t",
    "xc_stream_type_t",
];

/// Guest ABI structures (`abi.h`): the main crate's `abi` module is checked against these,
/// and bindgen's layout tests check these against clang's layout of the C headers.
const ABI_TYPES: &[&str] = &[
    "hvm_info_table",
    "hvm_start_info",
    "hvm_modlist_entry",
    "hvm_memmap_table_entry",
    "start_info_x86_64",
    "shared_info_x86_64",
    "vcpu_info_x86_64",
    "vcpu_guest_context_x86_64",
];

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=abi.h");
    println!("cargo:rerun-if-changed=build.rs");
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_recursively(false)
        .raw_line("#[allow(unused_imports)]")
        .raw_line("use xenctrl_sys::*;")
        .derive_default(true)
        .prepend_enum_name(false)
        .layout_tests(true);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in [
        "XS_OPEN_.*",
        "XBT_NULL",
        "XS_PERM_.*",
        "XC_STREAM_.*",
        "XGS_POLICY_.*",
        "XGR_SDD_.*",
        "XCFLAGS_.*",
    ] {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder
        .generate()
        .expect("bindgen over wrapper.h (needs libxen-dev and libclang-dev)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
    // The ABI structures with everything they contain, in a module of their own so their names
    // cannot clash with xenctrl-sys's (which binds the same headers without layout tests).
    let mut abi = bindgen::Builder::default()
        .header("abi.h")
        .layout_tests(true);
    for t in ABI_TYPES {
        abi = abi.allowlist_type(t);
    }
    abi.generate()
        .expect("bindgen over abi.h (needs libxen-dev and libclang-dev)")
        .write_to_file(out.join("abi.rs"))
        .expect("write abi.rs");
    // xenctrl-sys links libxenctrl; libxencall makes the raw domctls, libxenguest holds the
    // featureset and gnttab calls, libxentoollog the logger functions both crates declare.
    for lib in ["xenguest", "xencall", "xenstore", "xentoollog"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}
