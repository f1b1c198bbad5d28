//! Shared fixture for whole builds on the simulated host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use xenguest::build::{self, BuildEnv, BuildMode, BuildOutput, BuildRequest, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::DomId;

/// Debian's hvmloader (package xen-utils-4.17), installed by `make deps`.
pub const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";

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
        assert!(
            Path::new(HVMLOADER).exists(),
            "{HVMLOADER} missing: run `make deps` (xen-utils-4.17)"
        );
        let dir = tempfile::tempdir().unwrap();
        let ipxe = dir.path().join("ipxe.bin");
        std::fs::write(&ipxe, ipxe_bytes()).unwrap();
        std::fs::create_dir(dir.path().join("pci")).unwrap();
        let paths = HostPaths {
            ipxe,
            ovmf: dir.path().join("OVMF-release.fd"),
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
        build::build(
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

    pub fn read_guest(&self, domid: DomId, paddr: u64, len: usize) -> Vec<u8> {
        use xenguest::hypervisor::Hypervisor;
        let mut buf = vec![0u8; len];
        self.host.read_guest(domid, paddr, &mut buf).unwrap();
        buf
    }
}

pub fn request(domid: DomId, mem_max_mib: u64, mem_start_mib: u64) -> BuildRequest {
    BuildRequest::new(domid, mem_max_mib, mem_start_mib, HVMLOADER)
}
