//! The store contract, run against the in-memory store and a real xenstored.

#[path = "support/xenstored.rs"]
mod xenstored;

use xenguest::store::{MemoryStore, Store, XenstoredStore};

fn contract(s: &dyn Store, root: &str) {
    let p = |k: &str| format!("{root}/{k}");
    assert_eq!(
        s.read(&p("missing")).unwrap(),
        None,
        "absent key reads as None"
    );
    s.write(&p("platform/acpi"), "1").unwrap();
    s.write(&p("platform/vcpu/number"), "4").unwrap();
    s.write(&p("vm-data/mmio-hole-size"), "268435456").unwrap();
    assert_eq!(s.read(&p("platform/acpi")).unwrap().as_deref(), Some("1"));
    s.write(&p("platform/acpi"), "0").unwrap();
    assert_eq!(
        s.read(&p("platform/acpi")).unwrap().as_deref(),
        Some("0"),
        "last write wins"
    );
    let mut dir = s.directory(&p("platform")).unwrap();
    dir.sort();
    assert_eq!(dir, vec!["acpi", "vcpu"]);
    assert!(s.directory(&p("nothing/here")).unwrap().is_empty());
    s.write(&p("empty"), "").unwrap();
    assert_eq!(s.read(&p("empty")).unwrap().as_deref(), Some(""));
    s.rm(&p("platform")).unwrap();
    assert_eq!(
        s.read(&p("platform/vcpu/number")).unwrap(),
        None,
        "rm removes children"
    );
    s.rm(&p("platform")).unwrap();
    assert_eq!(
        s.read(&p("vm-data/mmio-hole-size")).unwrap().as_deref(),
        Some("268435456")
    );
}

#[test]
fn memory_store_honours_the_contract() {
    contract(&MemoryStore::new(), "/local/domain/1");
}

#[test]
fn xenstored_store_honours_the_contract_and_fails_cleanly_when_the_daemon_dies() {
    let mut daemon = xenstored::Xenstored::start("1");
    // The only test in this binary: nothing else reads the environment concurrently.
    std::env::set_var("XENSTORED_PATH", daemon.socket());
    let store = XenstoredStore::open().expect("connect to xenstored");
    contract(&store, "/local/domain/1");

    // A stalled daemon: every operation has a deadline, and a timed-out connection is not
    // reused (the late reply must not answer the next read).
    std::env::set_var(xenguest::store::xenstored::TIMEOUT_ENV, "300");
    let stalled = XenstoredStore::open().expect("connect to xenstored");
    std::env::remove_var(xenguest::store::xenstored::TIMEOUT_ENV);
    assert_eq!(stalled.timeout(), std::time::Duration::from_millis(300));
    stalled.write("/local/domain/1/before", "a").unwrap();
    daemon.pause();
    let started = std::time::Instant::now();
    let err = stalled.read("/local/domain/1/before").unwrap_err();
    let waited = started.elapsed();
    daemon.resume();
    assert_eq!(err.code, libc::ETIMEDOUT, "{err}");
    assert_eq!(
        err.to_string(),
        "xenstore read /local/domain/1/before: [110] xenstored did not answer within 300 ms"
    );
    eprintln!("stalled xenstored: read failed after {waited:?} (deadline 300 ms)");
    assert!(
        waited >= std::time::Duration::from_millis(300)
            && waited < std::time::Duration::from_secs(3),
        "returned after {waited:?}"
    );
    stalled.write("/local/domain/1/after", "b").unwrap();
    assert_eq!(
        stalled.read("/local/domain/1/after").unwrap().as_deref(),
        Some("b"),
        "a reconnected store reads its own answer, not the stale one"
    );
    let quick = XenstoredStore::open_with_timeout(std::time::Duration::from_millis(50)).unwrap();
    daemon.pause();
    let err = quick.directory("/local/domain").unwrap_err();
    daemon.resume();
    assert_eq!((err.op, err.code), ("directory", libc::ETIMEDOUT), "{err}");
    assert_eq!(
        quick.read("/local/domain/1/after").unwrap().as_deref(),
        Some("b")
    );

    // A stalled daemon stops accepting once its listen backlog is full: opening and
    // reconnecting must be bounded too.
    daemon.pause();
    let started = std::time::Instant::now();
    let opened: Vec<_> = (0..8)
        .map(|_| XenstoredStore::open_with_timeout(std::time::Duration::from_millis(100)))
        .collect();
    let waited = started.elapsed();
    daemon.resume();
    eprintln!(
        "stalled xenstored: 8 opens took {waited:?}, {} refused",
        opened.iter().filter(|o| o.is_err()).count()
    );
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    for e in opened.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("did not accept a connection"), "{e}");
    }
    assert!(
        opened.iter().any(|o| o.is_err()),
        "the backlog filled: the bound was exercised"
    );
    drop(opened);

    daemon.kill();
    let started = std::time::Instant::now();
    let err = store
        .read("/local/domain/1/vm-data/mmio-hole-size")
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a dead daemon must not hang a read"
    );
    assert_eq!(err.op, "read");
    assert!(
        err.to_string()
            .contains("/local/domain/1/vm-data/mmio-hole-size"),
        "{err}"
    );
    assert!(XenstoredStore::open().is_err(), "no daemon, no connection");
}
