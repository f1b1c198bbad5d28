//! The simulated host for one run (`-sim SPEC`, `-sim-host FILE`): where it comes from, the
//! toolstack's part that the binary plays on it (creating the domain, the platform keys,
//! suspending the guest when `suspend:` is answered), and writing it back at exit.
//!
//! With `-sim-host FILE` the host is loaded from FILE when it exists, otherwise created from
//! `-sim SPEC`, and written back at exit whatever the outcome, so that a build, a save and a
//! restore can be separate runs, as on Xen.

use std::path::PathBuf;
use std::sync::Arc;
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::hypervisor::SHUTDOWN_SUSPEND;
use xenguest::migrate::engine::{
    Engine, Operation, PrecopyDecision, PrecopyStats, RestoreHooks, RestoreRequest, RestoreResult,
    SaveHooks, SaveRequest,
};
use xenguest::migrate::native::Native;
use xenguest::request::Options;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::DomId;
use xenguest::{Error, Step};

/// Keys xenopsd always writes in the platform map (`generate_create_info`): one vCPU, ACPI
/// S3/S4 off. `-sim-key` overrides them.
const PLATFORM_DEFAULTS: [(&str, &str); 4] = [
    ("platform/vcpu/number", "1"),
    ("platform/vcpu/current", "1"),
    ("platform/acpi_s3", "0"),
    ("platform/acpi_s4", "0"),
];

/// Headroom above guest RAM for special, ioreq and ACPI pages (libxl's `LIBXL_MAXMEM_CONSTANT`).
pub const MAXMEM_SLACK_KIB: u64 = 1024;

/// A simulated host and its xenstore for this run.
pub struct SimSession {
    /// The host.
    pub host: Arc<SimHost>,
    /// Its xenstore (the run's platform keys).
    pub store: Arc<MemoryStore>,
    /// `-domid`, when given.
    domid: Option<DomId>,
    file: Option<PathBuf>,
}

fn sim_error(reason: String) -> Error {
    Step::Sim.invalid(reason)
}

impl SimSession {
    /// The run's host, or `None` on a real one (neither `-sim` nor `-sim-host`).
    pub fn open(opts: &Options) -> Result<Option<SimSession>, Error> {
        let file = opts.sim_host.as_ref().map(PathBuf::from);
        let host = match (&file, &opts.sim) {
            (Some(path), _) if path.exists() => {
                let host = SimHost::load_from(path).map_err(sim_error)?;
                log::info!("Simulated host loaded from {}", path.display());
                host
            }
            (_, Some(spec)) => SimHost::from_spec(spec).map_err(|e| sim_error(e.to_string()))?,
            (Some(path), None) => {
                return Err(sim_error(format!(
                    "-sim-host {}: no such file, and no -sim <spec> to create it from",
                    path.display()
                )))
            }
            (None, None) => return Ok(None),
        };
        let session = SimSession {
            host: Arc::new(host),
            store: Arc::new(MemoryStore::new()),
            domid: u32::try_from(opts.domid).ok().map(DomId),
            file,
        };
        session.write_platform_keys(opts)?;
        Ok(Some(session))
    }

    /// The platform keys xenopsd writes, with `-sim-key` over them.
    fn write_platform_keys(&self, opts: &Options) -> Result<(), Error> {
        let Some(domid) = u32::try_from(opts.domid).ok().map(DomId) else {
            return Ok(());
        };
        let base = domain_path(domid);
        let defaults = PLATFORM_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for (key, value) in defaults.chain(opts.sim_keys.iter().cloned()) {
            // A key starting with `/` is absolute (e.g. `/mh/limits/pv-kernel-max_size`).
            let path = if key.starts_with('/') {
                key
            } else {
                format!("{base}/{key}")
            };
            self.store.write(&path, &value).map_err(Step::Sim.store())?;
        }
        Ok(())
    }

    /// vCPUs the platform keys ask for.
    pub fn vcpus(&self, domid: DomId) -> u32 {
        self.store
            .read(&format!("{}/platform/vcpu/number", domain_path(domid)))
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u32)
            .max(1)
    }

    /// Create the domain as the toolstack does before a build or a restore.
    pub fn create_domain(&self, hvm: bool, domid: DomId, max_mem_kib: u64) -> Result<(), Error> {
        let config = DomainConfig::of_kind(hvm, domid, max_mem_kib, self.vcpus(domid));
        self.host.create_domain(&config).map_err(Step::Sim.xc())?;
        log::info!(
            "domid = {domid}; created on a simulated host ({})",
            self.host.spec()
        );
        Ok(())
    }

    /// The stream engine on this host.
    pub fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(SimToolstack {
            host: self.host.clone(),
            vcpus: self.domid.map_or(1, |d| self.vcpus(d)),
            native: Native::new(self.host.clone(), self.store.clone()),
        })
    }

    /// Write the host back to its file, if it has one.
    pub fn finish(&self) -> Result<(), Error> {
        match &self.file {
            Some(path) => {
                self.host.save_to(path).map_err(sim_error)?;
                log::info!("Simulated host written to {}", path.display());
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The native engine with the toolstack's part on the simulated host: a restore into a domain
/// that does not exist yet creates it (an HVM container as large as the host allows), and the
/// answer to `suspend:` suspends the guest.
struct SimToolstack {
    host: Arc<SimHost>,
    /// vCPUs of a domain it creates.
    vcpus: u32,
    native: Native,
}

/// The save's hooks, with the suspend carried out on the simulated host.
struct Suspending<'a> {
    hooks: &'a dyn SaveHooks,
    host: &'a SimHost,
    domid: DomId,
}

impl SaveHooks for Suspending<'_> {
    fn precopy_policy(&self, stats: PrecopyStats) -> PrecopyDecision {
        self.hooks.precopy_policy(stats)
    }
    fn suspend(&self) -> bool {
        if !self.hooks.suspend() {
            return false;
        }
        match self.host.set_shutdown(self.domid, Some(SHUTDOWN_SUSPEND)) {
            Ok(()) => true,
            Err(e) => {
                log::error!("suspending d{} on the simulated host: {e}", self.domid);
                false
            }
        }
    }
    fn progress(&self, done_pages: u64, total_pages: u64) {
        self.hooks.progress(done_pages, total_pages);
    }
}

impl Engine for SimToolstack {
    fn check(&self, op: Operation) -> Result<(), Error> {
        self.native.check(op)
    }

    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error> {
        let hooks = Suspending {
            hooks,
            host: &self.host,
            domid: req.domid,
        };
        self.native.save(req, &hooks)
    }

    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        if !self.host.domain_exists(req.domid) {
            let max_mem_kib = self.host.total_pages() * 4;
            let config = DomainConfig::of_kind(true, req.domid, max_mem_kib, self.vcpus);
            self.host.create_domain(&config).map_err(Step::Sim.xc())?;
        }
        self.native.restore(req, hooks)
    }

    fn resume(&self, domid: DomId) -> Result<(), Error> {
        self.native.resume(domid)
    }
}
