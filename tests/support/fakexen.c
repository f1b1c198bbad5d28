/*
 * Test-only LD_PRELOAD shim: lets Debian's C xenstored (4.17) serve a unix socket on a
 * machine without Xen. It answers the handful of libxenctrl / libxenevtchn / libxengnttab
 * calls xenstored makes at start-up and for XS_INTRODUCE, and fakes /proc/xen/xsd_{port,kva}.
 * Domain 0 always exists; FAKEXEN_DOMAINS="1,2" makes more domids exist.
 * Build: cc -shared -fPIC -O2 -o fakexen.so fakexen.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* xenstored opens the hypervisor interface only to ask about domains: a dummy handle does. */
xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags)
{
    xc_interface *(*next)(xentoollog_logger *, xentoollog_logger *, unsigned) = dlsym(RTLD_NEXT, "xc_interface_open");
    return next(logger, dombuild_logger, open_flags | XC_OPENFLAG_DUMMY);
}

static int fake_domain_exists(uint32_t domid)
{
    const char *list = getenv("FAKEXEN_DOMAINS");
    if (domid == 0)
        return 1;
    for (const char *p = list; p && *p; ) {
        char *end;
        unsigned long id = strtoul(p, &end, 10);
        if (end == p)
            break;
        if (id == domid)
            return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms, xc_dominfo_t *info)
{
    (void)xch;
    if (max_doms == 0 || !fake_domain_exists(first_domid))
        return 0;
    memset(info, 0, sizeof(*info));
    info->domid = first_domid;
    info->running = 1;
    info->nr_online_vcpus = 1;
    return 1;
}

/* Event channels: a pipe nobody writes, so xenstored never sees an event. */
struct xenevtchn_handle { int pipe_fds[2]; };

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    xenevtchn_handle *h = calloc(1, sizeof(*h));
    (void)logger; (void)open_flags;
    if (h && pipe(h->pipe_fds) != 0) { free(h); h = NULL; }
    return h;
}
xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned open_flags)
{
    (void)fd;
    return xenevtchn_open(logger, open_flags);
}
int xenevtchn_close(xenevtchn_handle *h)
{
    if (h) { close(h->pipe_fds[0]); close(h->pipe_fds[1]); free(h); }
    return 0;
}
int xenevtchn_fd(xenevtchn_handle *h) { return h->pipe_fds[0]; }
int xenevtchn_notify(xenevtchn_handle *h, evtchn_port_t port) { (void)h; (void)port; return 0; }
xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *h, unsigned int virq) { (void)h; (void)virq; return 1; }
xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *h, uint32_t domid, evtchn_port_t remote)
{
    static evtchn_port_t next_port = 16;
    (void)h; (void)domid; (void)remote;
    return next_port++;
}
int xenevtchn_unbind(xenevtchn_handle *h, evtchn_port_t port) { (void)h; (void)port; return 0; }
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *h) { (void)h; errno = EAGAIN; return -1; }
int xenevtchn_unmask(xenevtchn_handle *h, evtchn_port_t port) { (void)h; (void)port; return 0; }

/* Grant mappings of guest rings: private zero pages that stay empty. */
xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return calloc(1, 64);
}
int xengnttab_close(xengnttab_handle *h) { free(h); return 0; }
int xengnttab_set_max_grants(xengnttab_handle *h, uint32_t count) { (void)h; (void)count; return 0; }
void *xengnttab_map_grant_ref(xengnttab_handle *h, uint32_t domid, uint32_t ref, int prot)
{
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    (void)h; (void)domid; (void)ref; (void)prot;
    return page == MAP_FAILED ? NULL : page;
}
int xengnttab_unmap(xengnttab_handle *h, void *start_address, uint32_t count)
{
    (void)h;
    return munmap(start_address, count * 4096);
}

/* dom0's xenstore port and ring page. */
static int fake_proc_xen(const char *path)
{
    int fd;
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        fd = memfd_create("xsd_port", 0);
        if (fd < 0 || write(fd, "1", 1) != 1 || lseek(fd, 0, SEEK_SET) != 0)
            return -1;
        return fd;
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        fd = memfd_create("xsd_kva", 0);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            return -1;
        return fd;
    }
    return -2;
}

static int open_with(const char *symbol, const char *path, int flags, va_list ap)
{
    int (*next)(const char *, int, ...) = dlsym(RTLD_NEXT, symbol);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
    int fd = fake_proc_xen(path);
    return fd != -2 ? fd : next(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    int fd;
    va_start(ap, flags);
    fd = open_with("open", path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    int fd;
    va_start(ap, flags);
    fd = open_with("open64", path, flags, ap);
    va_end(ap);
    return fd;
}
