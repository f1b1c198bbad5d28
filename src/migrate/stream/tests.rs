//! The codec: golden bytes, round trips (property tests), and every kind of damage.

use super::format::{rec, MAX_BATCH_PFNS, REC_LENGTH_MAX, REC_TYPE_OPTIONAL};
use super::*;
use crate::types::Pfn;
use proptest::prelude::*;

fn written(records: &[Record<'_>]) -> Vec<u8> {
    let mut w = StreamWriter::new(Vec::new());
    w.write_headers(GuestType::X86Hvm, (4, 17)).unwrap();
    for r in records {
        w.write_record(r).unwrap();
    }
    w.into_inner()
}

fn read_all(bytes: &[u8]) -> Result<(DomainHeader, Vec<RawRecord>), StreamError> {
    let mut r = StreamReader::new(bytes);
    let header = r.read_headers()?;
    let mut records = Vec::new();
    loop {
        let raw = r.next_record()?;
        raw.decode()?;
        let end = raw.rtype == rec::END;
        records.push(raw);
        if end {
            return Ok((header, records));
        }
    }
}

#[test]
fn golden_headers_and_end() {
    let bytes = written(&[Record::End]);
    let golden: Vec<u8> = [
        // Image header, big-endian: marker, "XENF", version 3, options 0, reserved.
        &[0xff; 8][..],
        b"XENF",
        &[0, 0, 0, 3],
        &[0; 8],
        // Domain header, little-endian: HVM, page shift 12, reserved, Xen 4.17.
        &[2, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 17, 0, 0, 0],
        // END: type 0, length 0.
        &[0; 8],
    ]
    .concat();
    assert_eq!(bytes, golden);
    let (h, records) = read_all(&bytes).unwrap();
    assert_eq!(
        h,
        DomainHeader {
            version: 3,
            guest: GuestType::X86Hvm,
            xen_major: 4,
            xen_minor: 17
        }
    );
    assert_eq!(records.len(), 1);
}

#[test]
fn golden_page_data_and_padding() {
    let page = [0xabu8; 4096];
    let pd = PageData::new(
        vec![(Pfn(0x10), PageType::NoTab), (Pfn(0x11), PageType::XTab)],
        &page,
    )
    .unwrap();
    let body = Record::PageData(pd).encode();
    assert_eq!(&body[..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&body[8..16], &0x10u64.to_le_bytes());
    assert_eq!(
        &body[16..24],
        &(0xf000_0000_0000_0000u64 | 0x11).to_le_bytes()
    );
    assert_eq!(body.len(), 24 + 4096);
    // TSC_INFO's 24 bytes need no padding; HVM_CONTEXT of 5 bytes gets 3.
    let bytes = written(&[Record::HvmContext(b"hello"), Record::End]);
    assert_eq!(bytes.len(), 40 + 8 + 8 + 8);
    assert_eq!(&bytes[40..48], &[9, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(&bytes[48..56], b"hello\0\0\0");
}

#[test]
fn version_2_is_read_and_other_headers_refused() {
    let mut bytes = written(&[Record::End]);
    bytes[15] = 2;
    assert_eq!(read_all(&bytes).unwrap().0.version, 2);
    for (at, value, text) in [
        (0, 0u8, "marker"),
        (8, b'Y', "id"),
        (15, 4, "version 4"),
        (15, 1, "version 1"),
        (17, 1, "big-endian"),
        (24, 3, "guest type 3"),
        (28, 13, "page shift 13"),
    ] {
        let mut bad = written(&[Record::End]);
        bad[at] = value;
        let e = read_all(&bad).unwrap_err().to_string();
        assert!(e.contains(text), "{at}: {e}");
    }
}

#[test]
fn every_truncation_is_an_error_naming_where() {
    let page = [7u8; 4096];
    let bytes = written(&[
        Record::StaticDataEnd,
        Record::PageData(PageData::new(vec![(Pfn(1), PageType::NoTab)], &page).unwrap()),
        Record::HvmContext(b"ctx"),
        Record::End,
    ]);
    for len in 0..bytes.len() {
        match read_all(&bytes[..len]) {
            Err(StreamError::Truncated { .. }) => {}
            other => panic!("{len}: {other:?}"),
        }
    }
    assert!(read_all(&bytes).is_ok());
}

#[test]
fn a_claimed_length_allocates_nothing_before_its_bytes() {
    // 128 MiB claimed, 16 bytes sent: a truncation, and the body only grew to what came.
    let mut bytes = written(&[]);
    bytes.extend_from_slice(&rec::HVM_CONTEXT.to_le_bytes());
    bytes.extend_from_slice(&REC_LENGTH_MAX.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    let mut r = StreamReader::new(&bytes[..]);
    r.read_headers().unwrap();
    let e = r.next_record().unwrap_err().to_string();
    assert!(e.contains("16 of 134217728 bytes"), "{e}");
    // Past the limit: refused from the header alone.
    let mut bytes = written(&[]);
    bytes.extend_from_slice(&rec::HVM_CONTEXT.to_le_bytes());
    bytes.extend_from_slice(&(REC_LENGTH_MAX + 1).to_le_bytes());
    let mut r = StreamReader::new(&bytes[..]);
    r.read_headers().unwrap();
    let e = r.next_record().unwrap_err().to_string();
    assert!(e.contains("exceeds the 134217728-byte limit"), "{e}");
}

fn page_data_body(count: u32, entries: &[u64], data: usize) -> Vec<u8> {
    let mut b = count.to_le_bytes().to_vec();
    b.extend_from_slice(&[0; 4]);
    for e in entries {
        b.extend_from_slice(&e.to_le_bytes());
    }
    b.extend(std::iter::repeat_n(0u8, data));
    b
}

#[test]
fn malformed_records_are_named() {
    let notab = 5u64;
    let cases: Vec<(u32, Vec<u8>, &str)> = vec![
        (rec::END, vec![0; 8], "length 8, expected 0"),
        (rec::STATIC_DATA_END, vec![1], "length 1, expected 0"),
        (rec::PAGE_DATA, vec![1, 0, 0], "shorter than its header"),
        (rec::PAGE_DATA, page_data_body(0, &[], 0), "no pfns"),
        // A count the body cannot hold: refused before anything is sized by it.
        (
            rec::PAGE_DATA,
            page_data_body(u32::MAX, &[notab], 4096),
            "too short for 4294967295 pfns",
        ),
        (
            rec::PAGE_DATA,
            page_data_body(1, &[notab], 4095),
            "4095 bytes of page data for 1",
        ),
        (
            rec::PAGE_DATA,
            page_data_body(1, &[notab], 8192),
            "8192 bytes of page data for 1",
        ),
        (
            rec::PAGE_DATA,
            page_data_body(1, &[0x5000_0000_0000_0005], 0),
            "unknown page type 0x50000000",
        ),
        (
            rec::PAGE_DATA,
            page_data_body(1, &[0x8000_0000_0000_0005], 0),
            "unknown page type 0x80000000",
        ),
        (
            rec::PAGE_DATA,
            page_data_body(1, &[0x0010_0000_0000_0005], 4096),
            "reserved bits",
        ),
        (rec::X86_TSC_INFO, vec![0; 16], "length 16, expected 24"),
        (
            rec::HVM_PARAMS,
            page_data_body(2, &[1, 2], 0),
            "16 bytes of entries for 2 entries",
        ),
        (rec::X86_CPUID_POLICY, vec![0; 25], "not a multiple of 24"),
        (rec::X86_MSR_POLICY, vec![0; 17], "not a multiple of 16"),
    ];
    for (rtype, body, text) in cases {
        let raw = RawRecord {
            rtype,
            body,
            at: 64,
        };
        let e = raw.decode().unwrap_err().to_string();
        assert!(
            e.contains(text) && e.contains("at byte 64"),
            "{}: {e}",
            rec::display(rtype)
        );
        assert!(e.starts_with(&rec::display(rtype)), "{e}");
    }
}

#[test]
fn page_types_round_trip_and_unknown_ones_are_refused() {
    for bits in 0..16u32 {
        for pinned in [0, 1 << 31] {
            let v = (bits << 28) | pinned;
            if let Some(t) = PageType::from_pfinfo(v) {
                assert_eq!(t.pfinfo(), v);
            }
        }
    }
    let known: Vec<u32> = (0..16u32)
        .map(|b| b << 28)
        .filter(|v| PageType::from_pfinfo(*v).is_some())
        .collect();
    // NOTAB, L1-L4 pinned or not, BROKEN, XALLOC, XTAB (libxenguest's is_known_page_type).
    assert_eq!(known.len(), 12, "{known:x?}");
    assert!(PageType::XTab.pfinfo() == 0xf000_0000 && !PageType::XTab.has_data());
    assert!(PageType::XAlloc.populates() && !PageType::XAlloc.has_data());
    assert!(!PageType::Broken.populates());
}

#[test]
fn unknown_records_are_carried_with_their_optional_bit() {
    let raw = RawRecord {
        rtype: REC_TYPE_OPTIONAL | 0x99,
        body: vec![1, 2, 3],
        at: 0,
    };
    assert!(raw.optional());
    assert_eq!(
        raw.decode().unwrap(),
        Record::Other {
            rtype: REC_TYPE_OPTIONAL | 0x99,
            body: &[1, 2, 3]
        }
    );
    assert_eq!(raw.name(), "type 0x80000099");
}

fn page_type() -> impl Strategy<Value = PageType> {
    prop_oneof![
        Just(PageType::NoTab),
        Just(PageType::XTab),
        Just(PageType::XAlloc),
        Just(PageType::Broken),
        (1u8..=4, any::<bool>()).prop_map(|(level, pinned)| PageType::PageTable { level, pinned }),
    ]
}

/// A record's owned parts, from which a [`Record`] borrows.
#[derive(Debug, Clone)]
enum Owned {
    Pages(Vec<(Pfn, PageType)>, Vec<u8>),
    Tsc(TscInfo),
    Context(Vec<u8>),
    Params(Vec<HvmParam>),
    Cpuid(Vec<CpuidLeaf>),
    Msrs(Vec<MsrEntry>),
    Other(u32, Vec<u8>),
    Verify,
    StaticDataEnd,
}

impl Owned {
    fn record(&self) -> Record<'_> {
        match self {
            Owned::Pages(e, d) => Record::PageData(PageData::new(e.clone(), d).unwrap()),
            Owned::Tsc(t) => Record::TscInfo(*t),
            Owned::Context(c) => Record::HvmContext(c),
            Owned::Params(p) => Record::HvmParams(p.clone()),
            Owned::Cpuid(l) => Record::CpuidPolicy(l.clone()),
            Owned::Msrs(m) => Record::MsrPolicy(m.clone()),
            Owned::Other(t, b) => Record::Other { rtype: *t, body: b },
            Owned::Verify => Record::Verify,
            Owned::StaticDataEnd => Record::StaticDataEnd,
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        prop::collection::vec((0u64..(1 << 52), page_type()), 1..40).prop_map(|e| {
            let e: Vec<(Pfn, PageType)> = e.into_iter().map(|(p, t)| (Pfn(p), t)).collect();
            let pages = e.iter().filter(|(_, t)| t.has_data()).count();
            let data = (0..pages * 4096)
                .map(|i| u8::try_from(i % 251).unwrap_or(0))
                .collect();
            Owned::Pages(e, data)
        }),
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
            |(mode, khz, nsec, incarnation)| Owned::Tsc(TscInfo {
                mode,
                khz,
                nsec,
                incarnation
            })
        ),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(Owned::Context),
        prop::collection::vec((any::<u64>(), any::<u64>()), 0..20).prop_map(|v| Owned::Params(
            v.into_iter()
                .map(|(index, value)| HvmParam { index, value })
                .collect()
        )),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<[u32; 4]>()), 0..20).prop_map(
            |v| Owned::Cpuid(
                v.into_iter()
                    .map(|(leaf, subleaf, regs)| CpuidLeaf {
                        leaf,
                        subleaf,
                        regs
                    })
                    .collect()
            )
        ),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u64>()), 0..20).prop_map(|v| {
            Owned::Msrs(
                v.into_iter()
                    .map(|(index, flags, value)| MsrEntry {
                        index,
                        flags,
                        value,
                    })
                    .collect(),
            )
        }),
        (
            prop_oneof![
                Just(rec::X86_PV_INFO),
                Just(rec::SHARED_INFO),
                0x13u32..0x1000,
                Just(REC_TYPE_OPTIONAL | 0x42)
            ],
            prop::collection::vec(any::<u8>(), 0..50)
        )
            .prop_map(|(t, b)| Owned::Other(t, b)),
        Just(Owned::Verify),
        Just(Owned::StaticDataEnd),
    ]
}

proptest! {
    #[test]
    fn streams_round_trip(records in prop::collection::vec(owned(), 0..12)) {
        let mut typed: Vec<Record<'_>> = records.iter().map(Owned::record).collect();
        typed.push(Record::End);
        let bytes = written(&typed);
        prop_assert_eq!(bytes.len() % 8, 0);
        let (_, raws) = read_all(&bytes).unwrap();
        prop_assert_eq!(raws.len(), typed.len());
        for (raw, want) in raws.iter().zip(&typed) {
            prop_assert_eq!(&raw.decode().unwrap(), want);
        }
    }

    /// Any bytes after valid headers: an error or records, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = written(&[]);
        bytes.extend_from_slice(&tail);
        let _ = read_all(&bytes);
    }
}

#[test]
fn a_full_batch_fits_one_record() {
    let entries: Vec<(Pfn, PageType)> = (0..MAX_BATCH_PFNS as u64)
        .map(|p| (Pfn(p), PageType::NoTab))
        .collect();
    let data = vec![0u8; MAX_BATCH_PFNS * 4096];
    let body = Record::PageData(PageData::new(entries, &data).unwrap()).encode();
    assert!(body.len() < REC_LENGTH_MAX as usize);
}
