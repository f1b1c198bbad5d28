//! PVH boot modules and their command lines, paired as the C xenguest pairs them
//! (xenserver/xen.pg `patches/xenguest.patch`, `parse_options`): the first `-cmdline` is the
//! kernel's, the n-th one after it belongs to the n-th `-module` whatever the positions, a
//! module without one gets `""`, and surplus command lines are ignored.

use super::Module;

/// Pair `paths` (every `-module`, in order) with `cmdlines` (the second and later `-cmdline`s).
pub fn pair_modules(paths: &[String], cmdlines: &[String]) -> Vec<Module> {
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| Module {
            path: path.into(),
            cmdline: cmdlines.get(i).cloned().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn by_count_with_defaults_and_surplus() {
        let m = pair_modules(&strings(&["/k", "/r"]), &strings(&["root=/dev/xvda"]));
        assert_eq!(
            m,
            vec![
                Module {
                    path: "/k".into(),
                    cmdline: "root=/dev/xvda".into()
                },
                Module {
                    path: "/r".into(),
                    cmdline: String::new()
                },
            ]
        );
        let m = pair_modules(&strings(&["/k"]), &strings(&["a", "b", "c"]));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].cmdline, "a");
        assert!(pair_modules(&[], &strings(&["a"])).is_empty());
    }
}
