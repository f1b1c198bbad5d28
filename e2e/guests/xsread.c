/* xsread: read xenstore keys from inside a Linux guest, through the kernel's xenbus device
 * (/dev/xen/xenbus, drivers/xen/xenbus/xenbus_dev_frontend.c), so through the store ring and
 * event channel the domain builder set up. Relative paths resolve under the guest's own
 * /local/domain/<domid>, as xenstored resolves them for the connection.
 *
 * Usage: xsread PATH...   prints one value per line; exit 1 naming the first path that fails.
 * The wire format is xenstore's (xen/include/public/io/xs_wire.h: struct xsd_sockmsg,
 * XS_READ = 2, XS_ERROR = 16). Built static for the e2e guest's initramfs. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct xsd_sockmsg {
    uint32_t type, req_id, tx_id, len;
};
enum { XS_READ = 2, XS_ERROR = 16, XS_PAYLOAD_MAX = 4096 };

static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int fd = open("/dev/xen/xenbus", O_RDWR);
    if (fd < 0) {
        perror("xsread: /dev/xen/xenbus");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        char msg[sizeof(struct xsd_sockmsg) + XS_PAYLOAD_MAX];
        static char value[XS_PAYLOAD_MAX + 1];
        size_t plen = strlen(argv[i]) + 1;
        struct xsd_sockmsg h = { XS_READ, (uint32_t)i, 0, (uint32_t)plen };
        if (plen > XS_PAYLOAD_MAX) {
            fprintf(stderr, "xsread: path too long: %s\n", argv[i]);
            return 1;
        }
        memcpy(msg, &h, sizeof h);
        memcpy(msg + sizeof h, argv[i], plen);
        if (write(fd, msg, sizeof h + plen) != (ssize_t)(sizeof h + plen)) {
            perror("xsread: write");
            return 1;
        }
        if (read_full(fd, &h, sizeof h) || h.len > XS_PAYLOAD_MAX || read_full(fd, value, h.len)) {
            fprintf(stderr, "xsread: %s: bad reply\n", argv[i]);
            return 1;
        }
        value[h.len] = 0;
        if (h.type == XS_ERROR) {
            fprintf(stderr, "xsread: %s: %s\n", argv[i], value);
            return 1;
        }
        printf("%s\n", value);
    }
    return 0;
}
