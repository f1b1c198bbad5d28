//! Put the binary's shadow-op wrappers (`src/bin/xenguest/shadow_retry.rs`) in its dynamic
//! symbol table, so that libxenguest's calls to them bind to the binary's definitions.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for symbol in ["xc_shadow_control", "xc_logdirty_control"] {
        println!("cargo:rustc-link-arg-bin=xenguest=-Wl,--export-dynamic-symbol={symbol}");
    }
}
