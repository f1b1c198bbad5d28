//! Shared fixture for whole builds on the simulated host.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "fixtures pack small test sizes and addresses into the fields of the images they build"
)]
#![allow(dead_code)]

pub mod compress;
pub mod firmware;

use std::path::{Path, PathBuf};
use xenguest::builder::{self, BuildEnv, BuildMode, BuildOutput, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::{DomId, GuestPhys, MapAddr};

/// Debian's hvmloader (package xen-utils-4.17), installed by `make deps`; the tests that need
/// the real image ask [`real_hvmloader`], the rest build [`firmware::firmware`].
pub const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";

/// Debian's hvmloader if installed; else `None`, after saying which test is skipped.
pub fn real_hvmloader(test: &str) -> Option<&'static str> {
    if Path::new(HVMLOADER).exists() {
        Some(HVMLOADER)
    } else {
        eprintln!("{test}: skipped: {HVMLOADER} missing (run `make deps`: xen-utils-4.17)");
        None
    }
}

/// A simulated host, its xenstore, and firmware/sysfs paths in a temporary folder.
pub struct Fixture {
    pub host: SimHost,
    pub store: MemoryStore,
    pub paths: HostPaths,
    pub dir: tempfile::TempDir,
}

/// The iPXE stand-in: 3 pages and a bit, with a recognisable pattern.
pub fn ipxe_bytes() -> Vec<u8> {
    (0..13_000u32).map(|i| (i % 251) as u8).collect()
}

impl Fixture {
    pub fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ipxe = dir.path().join("ipxe.bin");
        std::fs::write(&ipxe, ipxe_bytes()).unwrap();
        std::fs::create_dir(dir.path().join("pci")).unwrap();
        let paths = HostPaths {
            ipxe,
            ovmf: dir.path().join("OVMF-release.fd"),
            seabios: dir.path().join("bios-256k.bin"),
            sysfs_pci_devices: dir.path().join("pci"),
        };
        Fixture {
            host: SimHost::from_spec(spec).unwrap(),
            store: MemoryStore::new(),
            paths,
            dir,
        }
    }

    /// Create an HVM domain as xenopsd does: max_pages = max + 1 MiB, the platform keys.
    pub fn domain(&self, mem_max_mib: u64, keys: &[(&str, &str)]) -> DomId {
        let vcpus = keys
            .iter()
            .find(|(k, _)| *k == "platform/vcpu/number")
            .map_or(1, |(_, v)| v.parse().unwrap());
        let domid = self
            .host
            .create_domain(&DomainConfig::hvm((mem_max_mib << 10) + 1024, vcpus))
            .unwrap();
        let base = domain_path(domid);
        self.store
            .write(&format!("{base}/platform/vcpu/number"), "1")
            .unwrap();
        self.store
            .write(&format!("{base}/platform/vcpu/current"), "1")
            .unwrap();
        for (k, v) in keys {
            self.store.write(&format!("{base}/{k}"), v).unwrap();
        }
        domid
    }

    pub fn build(&self, req: &BuildRequest) -> xenguest::Result<BuildOutput> {
        builder::build(
            BuildEnv {
                hv: &self.host,
                store: &self.store,
                paths: &self.paths,
            },
            BuildMode::Hvm,
            req,
        )
    }

    /// Write a sysfs device folder with BARs of the given sizes.
    pub fn pci_device(&self, sbdf: &str, bar_bytes: &[u64], vendor: u32, device: u32) -> PathBuf {
        let dir = self.paths.sysfs_pci_devices.join(sbdf);
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        let mut base = 0xE000_0000u64;
        for &size in bar_bytes {
            text += &format!(
                "{base:#018x} {:#018x} 0x0000000000040200\n",
                base + size - 1
            );
            base += size;
        }
        text += &"0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
            .repeat(7 - bar_bytes.len());
        std::fs::write(dir.join("resource"), text).unwrap();
        std::fs::write(dir.join("vendor"), format!("{vendor:#06x}\n")).unwrap();
        std::fs::write(dir.join("device"), format!("{device:#06x}\n")).unwrap();
        dir
    }

    pub fn key(&self, domid: DomId, key: &str) -> Option<String> {
        self.store
            .read(&format!("{}/{key}", domain_path(domid)))
            .unwrap()
    }

    /// `len` bytes at guest-physical `paddr` of a translated domain.
    pub fn read_guest(&self, domid: DomId, paddr: u64, len: usize) -> Vec<u8> {
        use xenguest::hypervisor::Hypervisor;
        let mut buf = vec![0u8; len];
        self.host
            .read_guest(domid, MapAddr::phys(GuestPhys(paddr)), &mut buf)
            .unwrap();
        buf
    }
}

/// An HVM build request with the generated test firmware.
pub fn request(domid: DomId, mem_max_mib: u64, mem_start_mib: u64) -> BuildRequest {
    BuildRequest::new(domid, mem_max_mib, mem_start_mib, firmware::firmware())
}

impl Fixture {
    /// Build in `mode` (PVH, PV) rather than HVM.
    pub fn build_mode(&self, mode: BuildMode, req: &BuildRequest) -> xenguest::Result<BuildOutput> {
        builder::build(
            BuildEnv {
                hv: &self.host,
                store: &self.store,
                paths: &self.paths,
            },
            mode,
            req,
        )
    }

    /// Build in `mode`, stopping when `cancel` is set.
    pub fn build_cancellable(
        &self,
        mode: BuildMode,
        req: &BuildRequest,
        cancel: &xenguest::cancel::Cancel,
    ) -> xenguest::Result<BuildOutput> {
        builder::build_cancellable(
            BuildEnv {
                hv: &self.host,
                store: &self.store,
                paths: &self.paths,
            },
            mode,
            req,
            cancel,
        )
    }

    /// Write `bytes` to a file in the fixture's folder; its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// One ELF note (4-byte aligned name and descriptor).
pub fn elf_note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(name);
    v.push(0);
    v.resize(v.len().next_multiple_of(4), 0);
    v.extend_from_slice(desc);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// A synthetic PVH kernel: an ELF64 (x86-64) or ELF32 (i386) executable with one PT_LOAD of
/// `code` at physical `paddr` followed by `bss` zero bytes, and a PT_NOTE holding `notes`
/// (e.g. a Xen `PHYS32_ENTRY` note from [`elf_note`]).
pub fn pvh_kernel(elf64: bool, paddr: u64, code: &[u8], bss: u64, notes: &[u8]) -> Vec<u8> {
    let (ehsize, phentsize) = if elf64 { (64u64, 56u64) } else { (52, 32) };
    let data_at = ehsize + 2 * phentsize;
    let note_at = data_at + code.len() as u64;
    let mut v = vec![0u8; ehsize as usize];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = if elf64 { 2 } else { 1 };
    v[5] = 1;
    v[6] = 1;
    v[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v[18..20].copy_from_slice(&(if elf64 { 62u16 } else { 3 }).to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    let code_len = code.len() as u64;
    let loads = [
        (1u32, 7u32, data_at, paddr, code_len, code_len + bss),
        (4, 4, note_at, 0, notes.len() as u64, notes.len() as u64),
    ];
    if elf64 {
        v[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry (unused by PVH)
        v[32..40].copy_from_slice(&ehsize.to_le_bytes());
        v[52..54].copy_from_slice(&(ehsize as u16).to_le_bytes());
        v[54..56].copy_from_slice(&(phentsize as u16).to_le_bytes());
        v[56..58].copy_from_slice(&2u16.to_le_bytes());
        for (ty, fl, off, addr, filesz, memsz) in loads {
            v.extend_from_slice(&ty.to_le_bytes());
            v.extend_from_slice(&fl.to_le_bytes());
            for x in [off, addr, addr, filesz, memsz, 8] {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
    } else {
        v[24..28].copy_from_slice(&(paddr as u32).to_le_bytes());
        v[28..32].copy_from_slice(&(ehsize as u32).to_le_bytes());
        v[40..42].copy_from_slice(&(ehsize as u16).to_le_bytes());
        v[42..44].copy_from_slice(&(phentsize as u16).to_le_bytes());
        v[44..46].copy_from_slice(&2u16.to_le_bytes());
        for (ty, fl, off, addr, filesz, memsz) in loads {
            for x in [
                ty,
                off as u32,
                addr as u32,
                addr as u32,
                filesz as u32,
                memsz as u32,
                fl,
                4,
            ] {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    v.extend_from_slice(code);
    v.extend_from_slice(notes);
    v
}
