//! The device model of an HVM guest: Debian's upstream QEMU (`qemu-system-xen`), started after
//! the build and before the unpause, as libxl starts it for `xl create` (Debian's QEMU has none
//! of the patches xenopsd's `qemu-wrapper` relies on, so its argv follows libxl's):
//! tools/libs/light/libxl_dm.c at RELEASE-4.17.0, `libxl__build_device_model_args_new`
//! (lines 1185-1860), and the wait for `device-model/<domid>/state` = `running` (lines
//! 2940-3077). Here the guest boots a kernel directly: SeaBIOS runs QEMU's linuxboot option
//! ROM, which pulls the kernel and initramfs through fw_cfg.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the device model runs.
#[derive(Clone, Debug)]
pub struct DmOpts {
    /// The QEMU binary (`/usr/libexec/xen-qemu-system-i386`).
    pub qemu: String,
    pub kernel: String,
    pub initrd: String,
    pub append: String,
    /// The guest's first serial port goes to this file.
    pub serial: String,
}

/// QEMU's argv for `domid`, as libxl builds it for an HVM guest with no disk, NIC or VGA:
/// `-m` is the guest's maximum in MiB (maxmem less video RAM, and there is none), `-smp` is
/// given only for more than one vCPU, as `<online>,maxcpus=<max>`.
pub fn qemu_argv(
    o: &DmOpts,
    domid: u32,
    name: &str,
    mem_max_mib: u64,
    vcpus: u32,
    vcpus_online: u32,
) -> Vec<String> {
    let qmp = qmp_path(domid);
    let mut argv: Vec<String> = [
        "-xen-domid",
        &domid.to_string(),
        "-no-shutdown",
        "-chardev",
        &format!(
            "socket,id=libxl-cmd,path={},server=on,wait=off",
            qmp.display()
        ),
        "-mon",
        "chardev=libxl-cmd,mode=control",
        "-nodefaults",
        "-no-user-config",
        "-name",
        name,
        "-display",
        "none",
        "-kernel",
        &o.kernel,
        "-initrd",
        &o.initrd,
        "-append",
        &o.append,
        "-serial",
        &format!("file:{}", o.serial),
        "-boot",
        "order=cda",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if vcpus > 1 {
        argv.extend(["-smp".into(), format!("{vcpus_online},maxcpus={vcpus}")]);
    }
    argv.extend(
        [
            "-net",
            "none",
            "-machine",
            "xenfv,suppress-vmdesc=on",
            "-m",
            &mem_max_mib.to_string(),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    argv
}

/// libxl's QMP socket for the domain (libxl_internal.h, `libxl__qemu_qmp_path`).
fn qmp_path(domid: u32) -> PathBuf {
    PathBuf::from(format!("/run/xen/qmp-libxl-{domid}"))
}

/// The xenstore key QEMU sets to `running` once it serves the guest.
pub fn state_path(domid: u32) -> String {
    format!("/local/domain/0/device-model/{domid}/state")
}

/// A running device model: stopped (SIGTERM, then reaped) when dropped, whatever happened.
pub struct DeviceModel {
    child: Child,
    log: String,
    domid: u32,
}

impl DeviceModel {
    /// Start QEMU for `domid` (its output to `log`) and wait until it says `running`
    /// (`read_state` reads the state key), as libxl waits, for at most `timeout`.
    pub fn start(
        argv: &[String],
        qemu: &str,
        log: &str,
        domid: u32,
        timeout: Duration,
        read_state: impl Fn() -> Option<String>,
    ) -> Result<(DeviceModel, Duration), String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{log}: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let child = Command::new(qemu)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{qemu}: {e}"))?;
        let mut dm = DeviceModel {
            child,
            log: log.into(),
            domid,
        };
        loop {
            if read_state().as_deref() == Some("running") {
                return Ok((dm, t0.elapsed()));
            }
            if let Ok(Some(status)) = dm.child.try_wait() {
                return Err(format!(
                    "the device model exited ({status}) before it was running: {}",
                    dm.log_tail()
                ));
            }
            if t0.elapsed() > timeout {
                return Err(format!(
                    "the device model was not running after {timeout:?}: {}",
                    dm.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines QEMU printed.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" | ")
    }
}

impl Drop for DeviceModel {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t0 = Instant::now();
        while let Ok(None) = self.child.try_wait() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(qmp_path(self.domid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DmOpts {
        DmOpts {
            qemu: "/usr/libexec/xen-qemu-system-i386".into(),
            kernel: "/guest/vmlinuz".into(),
            initrd: "/guest/initrd.gz".into(),
            append: "console=ttyS0 console=hvc0".into(),
            serial: "/tmp/g.serial".into(),
        }
    }

    fn after<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
        let i = argv.iter().position(|a| a == flag)?;
        argv.get(i + 1).map(String::as_str)
    }

    #[test]
    fn argv_follows_libxl_for_an_hvm_guest_with_a_direct_kernel_boot() {
        let argv = qemu_argv(&opts(), 7, "g", 512, 2, 1);
        assert_eq!(after(&argv, "-xen-domid"), Some("7"));
        assert_eq!(after(&argv, "-m"), Some("512"));
        assert_eq!(after(&argv, "-smp"), Some("1,maxcpus=2"));
        assert_eq!(after(&argv, "-machine"), Some("xenfv,suppress-vmdesc=on"));
        assert_eq!(after(&argv, "-serial"), Some("file:/tmp/g.serial"));
        assert_eq!(after(&argv, "-append"), Some("console=ttyS0 console=hvc0"));
        assert!(after(&argv, "-chardev")
            .unwrap()
            .contains("path=/run/xen/qmp-libxl-7"));
        assert!(argv.iter().any(|a| a == "-nodefaults"));
    }

    #[test]
    fn one_vcpu_has_no_smp() {
        let argv = qemu_argv(&opts(), 7, "g", 256, 1, 1);
        assert_eq!(after(&argv, "-smp"), None);
    }
}
