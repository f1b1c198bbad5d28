//! OCaml stubs (to be written).
