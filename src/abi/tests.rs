//! Each structure's bytes against a buffer written by hand from the header's layout
//! (xen-project/xen RELEASE-4.17.0), and, with feature `xen`, every field offset against
//! bindgen's layout-tested bindings of the installed headers.

use super::*;

/// A zero buffer of `len` bytes with each `(offset, bytes)` copied in.
fn by_hand(len: usize, fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for (at, bytes) in fields {
        b[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    b
}

#[test]
fn hvm_info_table_bytes() {
    let mut t = HvmInfoTable::new_zeroed();
    t.signature = *b"HVM INFO";
    t.length = 48;
    t.checksum = 0xAB;
    t.apic_mode = 1;
    t.nr_vcpus = 0x0102_0304;
    t.low_mem_pgend = 0x1111_2222;
    t.reserved_mem_pgstart = 0x3333_4444;
    t.high_mem_pgend = 0x5555_6666;
    t.vcpu_online[0] = 0x0F;
    t.vcpu_online[15] = 0x80;
    let expected = by_hand(
        48,
        &[
            (0, b"HVM INFO"),
            (8, &48u32.to_le_bytes()),
            (12, &[0xAB, 1]),
            (16, &0x0102_0304u32.to_le_bytes()),
            (20, &0x1111_2222u32.to_le_bytes()),
            (24, &0x3333_4444u32.to_le_bytes()),
            (28, &0x5555_6666u32.to_le_bytes()),
            (32, &[0x0F]),
            (47, &[0x80]),
        ],
    );
    assert_eq!(t.as_bytes(), expected.as_slice());
}

#[test]
fn hvm_start_info_bytes() {
    let si = HvmStartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        flags: 2,
        nr_modules: 3,
        modlist_paddr: 0x1000_0000_0000_0010,
        cmdline_paddr: 0x2000_0000_0000_0020,
        rsdp_paddr: 0x3000_0000_0000_0030,
        memmap_paddr: 0x4000_0000_0000_0040,
        memmap_entries: 5,
        reserved: 0,
    };
    let expected = by_hand(
        56,
        &[
            (0, &[0x78, 0xc5, 0x6e, 0x33]),
            (4, &1u32.to_le_bytes()),
            (8, &2u32.to_le_bytes()),
            (12, &3u32.to_le_bytes()),
            (16, &0x1000_0000_0000_0010u64.to_le_bytes()),
            (24, &0x2000_0000_0000_0020u64.to_le_bytes()),
            (32, &0x3000_0000_0000_0030u64.to_le_bytes()),
            (40, &0x4000_0000_0000_0040u64.to_le_bytes()),
            (48, &5u32.to_le_bytes()),
        ],
    );
    assert_eq!(si.as_bytes(), expected.as_slice());
}

#[test]
fn module_list_and_memory_map_entry_bytes() {
    let entries = [
        HvmModlistEntry {
            paddr: 0x11,
            size: 0x22,
            cmdline_paddr: 0x33,
            reserved: 0,
        },
        HvmModlistEntry {
            paddr: 0x44,
            size: 0x55,
            cmdline_paddr: 0x66,
            reserved: 0,
        },
    ];
    let expected = by_hand(
        64,
        &[
            (0, &0x11u64.to_le_bytes()),
            (8, &0x22u64.to_le_bytes()),
            (16, &0x33u64.to_le_bytes()),
            (32, &0x44u64.to_le_bytes()),
            (40, &0x55u64.to_le_bytes()),
            (48, &0x66u64.to_le_bytes()),
        ],
    );
    assert_eq!(
        entries.as_bytes(),
        expected.as_slice(),
        "an array is packed"
    );
    let map = HvmMemmapTableEntry {
        addr: 0x10_0000,
        size: 0x7FF0_0000,
        r#type: 1,
        reserved: 0,
    };
    let expected = by_hand(
        24,
        &[
            (0, &0x10_0000u64.to_le_bytes()),
            (8, &0x7FF0_0000u64.to_le_bytes()),
            (16, &1u32.to_le_bytes()),
        ],
    );
    assert_eq!(map.as_bytes(), expected.as_slice());
}

#[test]
fn start_info_bytes() {
    let mut si = StartInfo::new_zeroed();
    si.magic[..14].copy_from_slice(GUEST_TYPE_X86_64.as_bytes());
    let values: [u64; 13] = core::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
    si.nr_pages = values[0];
    si.shared_info = values[1];
    si.flags = 0xF1A6;
    si.store_mfn = values[2];
    si.store_evtchn = 0xE1;
    si.console.mfn = values[3];
    si.console.evtchn = 0xE2;
    si.pt_base = values[4];
    si.nr_pt_frames = values[5];
    si.mfn_list = values[6];
    si.mod_start = values[7];
    si.mod_len = values[8];
    si.cmd_line[..4].copy_from_slice(b"root");
    si.cmd_line[1023] = b'!';
    si.first_p2m_pfn = values[9];
    si.nr_p2m_frames = values[10];
    let expected = by_hand(
        1168,
        &[
            (0, b"xen-3.0-x86_64"),
            (32, &values[0].to_le_bytes()),
            (40, &values[1].to_le_bytes()),
            (48, &0xF1A6u32.to_le_bytes()),
            (56, &values[2].to_le_bytes()),
            (64, &0xE1u32.to_le_bytes()),
            (72, &values[3].to_le_bytes()),
            (80, &0xE2u32.to_le_bytes()),
            (88, &values[4].to_le_bytes()),
            (96, &values[5].to_le_bytes()),
            (104, &values[6].to_le_bytes()),
            (112, &values[7].to_le_bytes()),
            (120, &values[8].to_le_bytes()),
            (128, b"root"),
            (1151, b"!"),
            (1152, &values[9].to_le_bytes()),
            (1160, &values[10].to_le_bytes()),
        ],
    );
    assert_eq!(si.as_bytes(), expected.as_slice());
}

#[test]
fn shared_info_bytes() {
    let mut info = SharedInfo::new_zeroed();
    info.vcpu_info[0].evtchn_upcall_pending = 0xA1;
    info.vcpu_info[0].evtchn_upcall_mask = 0xA2;
    info.vcpu_info[0].evtchn_pending_sel = 0xA3;
    info.vcpu_info[0].arch.cr2 = 0xA4;
    info.vcpu_info[0].time.version = 0xA5;
    info.vcpu_info[0].time.tsc_timestamp = 0xA6;
    info.vcpu_info[0].time.system_time = 0xA7;
    info.vcpu_info[0].time.tsc_to_system_mul = 0xA8;
    info.vcpu_info[0].time.tsc_shift = -2;
    info.vcpu_info[0].time.flags = 0xA9;
    info.vcpu_info[31].evtchn_upcall_mask = 1;
    info.evtchn_pending[0] = 0xB1;
    info.evtchn_mask[63] = 0xB2;
    info.wc_version = 0xC1;
    info.wc_sec = 0xC2;
    info.wc_nsec = 0xC3;
    info.wc_sec_hi = 0xC4;
    info.arch.max_pfn = 0xD1;
    info.arch.p2m_generation = 0xD6;
    let expected = by_hand(
        3136,
        &[
            (0, &[0xA1, 0xA2]),
            (8, &0xA3u64.to_le_bytes()),
            (16, &0xA4u64.to_le_bytes()),
            (32, &0xA5u32.to_le_bytes()),
            (40, &0xA6u64.to_le_bytes()),
            (48, &0xA7u64.to_le_bytes()),
            (56, &0xA8u32.to_le_bytes()),
            (60, &[0xFE, 0xA9]),
            (31 * 64 + 1, &[1]),
            (2048, &0xB1u64.to_le_bytes()),
            (2560 + 63 * 8, &0xB2u64.to_le_bytes()),
            (3072, &0xC1u32.to_le_bytes()),
            (3076, &0xC2u32.to_le_bytes()),
            (3080, &0xC3u32.to_le_bytes()),
            (3084, &0xC4u32.to_le_bytes()),
            (3088, &0xD1u64.to_le_bytes()),
            (3128, &0xD6u64.to_le_bytes()),
        ],
    );
    assert_eq!(info.as_bytes(), expected.as_slice());
}

#[test]
fn zeroed_structures_are_all_zero_bytes() {
    assert!(StartInfo::new_zeroed().as_bytes().iter().all(|&b| b == 0));
    assert!(SharedInfo::new_zeroed().as_bytes().iter().all(|&b| b == 0));
    assert!(HvmInfoTable::new_zeroed()
        .as_bytes()
        .iter()
        .all(|&b| b == 0));
}

/// Our structures against bindgen's bindings of the installed Xen headers, whose layout
/// bindgen checks against clang at compile time (xen-sys/build.rs, `layout_tests(true)`).
#[cfg(feature = "xen")]
mod against_bindgen {
    use super::*;
    use xen_sys::abi as c;

    /// Asserts equal sizes and, for each `ours => theirs` field path, equal offsets.
    macro_rules! same_layout {
        ($ours:ty, $theirs:ty, { $($a:ident $(. $a2:ident)* => $b:ident $(. $b2:ident)*),* $(,)? }) => {{
            assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "size of {}", stringify!($ours));
            $(
                assert_eq!(
                    offset_of!($ours, $a $(. $a2)*),
                    offset_of!($theirs, $b $(. $b2)*),
                    "{}.{}", stringify!($ours), stringify!($a $(. $a2)*)
                );
            )*
        }};
        ($ours:ty, $theirs:ty, [ $($f:ident),* $(,)? ]) => {
            same_layout!($ours, $theirs, { $($f => $f),* })
        };
    }

    #[test]
    fn hvm_structures_match() {
        same_layout!(
            HvmInfoTable,
            c::hvm_info_table,
            [
                signature,
                length,
                checksum,
                apic_mode,
                nr_vcpus,
                low_mem_pgend,
                reserved_mem_pgstart,
                high_mem_pgend,
                vcpu_online,
            ]
        );
        same_layout!(
            HvmStartInfo,
            c::hvm_start_info,
            [
                magic,
                version,
                flags,
                nr_modules,
                modlist_paddr,
                cmdline_paddr,
                rsdp_paddr,
                memmap_paddr,
                memmap_entries,
                reserved,
            ]
        );
        same_layout!(
            HvmModlistEntry,
            c::hvm_modlist_entry,
            [paddr, size, cmdline_paddr, reserved,]
        );
        same_layout!(HvmMemmapTableEntry, c::hvm_memmap_table_entry, {
            addr => addr, size => size, r#type => type_, reserved => reserved,
        });
    }

    #[test]
    fn start_info_matches() {
        same_layout!(StartInfo, c::start_info_x86_64, {
            magic => magic,
            nr_pages => nr_pages,
            shared_info => shared_info,
            flags => flags,
            store_mfn => store_mfn,
            store_evtchn => store_evtchn,
            console => console,
            console.mfn => console.domU.mfn,
            console.evtchn => console.domU.evtchn,
            pt_base => pt_base,
            nr_pt_frames => nr_pt_frames,
            mfn_list => mfn_list,
            mod_start => mod_start,
            mod_len => mod_len,
            cmd_line => cmd_line,
            first_p2m_pfn => first_p2m_pfn,
            nr_p2m_frames => nr_p2m_frames,
        });
        same_layout!(ConsoleDomU, c::start_info_x86_64__bindgen_ty_1, {
            mfn => domU.mfn,
            evtchn => domU.evtchn,
        });
    }

    #[test]
    fn shared_info_matches() {
        same_layout!(
            VcpuTimeInfo,
            c::vcpu_time_info_x86_64,
            [
                version,
                pad0,
                tsc_timestamp,
                system_time,
                tsc_to_system_mul,
                tsc_shift,
                flags,
                pad1,
            ]
        );
        same_layout!(ArchVcpuInfo, c::arch_vcpu_info_x86_64, [cr2, pad]);
        same_layout!(
            VcpuInfo,
            c::vcpu_info_x86_64,
            [
                evtchn_upcall_pending,
                evtchn_upcall_mask,
                evtchn_pending_sel,
                arch,
                time,
            ]
        );
        same_layout!(
            ArchSharedInfo,
            c::arch_shared_info_x86_64,
            [
                max_pfn,
                pfn_to_mfn_frame_list_list,
                nmi_reason,
                p2m_cr3,
                p2m_vaddr,
                p2m_generation,
            ]
        );
        same_layout!(
            SharedInfo,
            c::shared_info_x86_64,
            [
                vcpu_info,
                evtchn_pending,
                evtchn_mask,
                wc_version,
                wc_sec,
                wc_nsec,
                wc_sec_hi,
                arch,
            ]
        );
    }
}
