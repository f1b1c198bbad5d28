/* xg_parse: parse one kernel or firmware image with libxenguest's own parser, without a
 * hypervisor, and print what it learnt as `key=value` lines. The reference side of
 * tests/libxenguest_diff.rs, which compares these lines with src/image's view of the image.
 *
 * Usage: xg_parse pv|hvm IMAGE
 *   pv   parse as for a PV domain  (XC_DOM_PV_CONTAINER)
 *   hvm  parse as for an HVM container: a PVH kernel, or HVM firmware such as hvmloader
 *
 * Numbers are printed as 0x%x, `unset` for libelf's UNSET_ADDR.
 *
 * Exit status: 0 parsed (lines on stdout); 2 libxenguest refused the image (its log on
 * stderr); 3 the values read back are not what libxenguest 4.17 can produce, i.e. the
 * hand-written mirror of its private structures below does not match the installed library.
 *
 * Build: cc -O2 -Wall -o xg_parse xg_parse.c -rdynamic -lxenguest -lxenctrl -lxentoollog
 * (-rdynamic: libxenguest must find this program's xc_map_foreign_ranges, see below)
 *
 * Only xc_dom_allocate, xc_dom_kernel_file and xc_dom_parse_image run, plus, for HVM
 * firmware, the firmware loader's load step into a memory file (see load_firmware):
 * with XC_OPENFLAG_DUMMY nothing here touches a hypervisor (xc_dom_boot_mem_init would
 * crash, so it is never called).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenguest.h>
#include <xentoollog.h>
#include <xen/elfnote.h>
#include <xen/features.h>

/* What a Xen 4.17 host with 64-bit and 32-bit PV support offers (`xl info`'s xen_caps):
 * xc_dom_parse_image refuses a guest type missing here. */
#define XEN_CAPS "xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"

/* ---- Mirrors of libxenguest 4.17 structures the installed headers keep opaque ----------
 * Written from the layout in xen/include/xen/libelf.h and tools/libs/guest/xg_private.h at
 * the 4.17 release (unchanged through 4.17.x). dom->parms points at a struct elf_dom_parms;
 * dom->kernel_loader at a struct xc_dom_loader. check_parms() validates the mirror at run
 * time, so a layout mismatch fails loudly instead of comparing garbage. */

/* One recorded Xen note (libelf's struct xen_elfnote). */
struct note_mirror {
    int kind;                   /* enum xen_elfnote_type: 0 none, 1 number, 2 string */
    const char *name;           /* libelf's name for the note type, e.g. "ENTRY" */
    union {
        const char *str;        /* points into the (decompressed) kernel image */
        uint64_t num;
    } data;
};
enum { NOTE_NONE = 0, NOTE_NUM = 1, NOTE_STR = 2 };

/* libelf's struct elf_dom_parms. Booleans are read as bytes so that a bad layout cannot
 * produce an invalid C bool. */
struct parms_mirror {
    uintptr_t guest_info, elf_note_start, elf_note_end;   /* elf_ptrval */
    struct note_mirror notes[XEN_ELFNOTE_MAX + 1];
    char guest_os[16], guest_ver[16], xen_ver[16], loader[16];
    int pae;                    /* enum xen_pae_type */
    uint8_t bsd_symtab, unmapped_initrd;
    uint64_t virt_base, virt_entry, virt_hypercall, virt_hv_start_low, p2m_base;
    uint64_t elf_paddr_offset;
    uint32_t f_supported[XENFEAT_NR_SUBMAPS], f_required[XENFEAT_NR_SUBMAPS];
    uint32_t phys_entry;
    uint64_t virt_kstart, virt_kend;    /* calculated */
};

/* libxenguest's struct xc_dom_loader (a list of probe/parse/load hooks per image format). */
struct loader_mirror {
    const char *name;
    int (*probe)(struct xc_dom_image *dom);
    int (*parser)(struct xc_dom_image *dom);
    int (*loader)(struct xc_dom_image *dom);
    struct loader_mirror *next;
};

#define UNSET64 UINT64_MAX      /* libelf's UNSET_ADDR */
#define UNSET32 UINT32_MAX      /* UNSET_ADDR32 */

/* The name libelf records for each note type it knows (elf_xen_parse_note); NULL = a type
 * it skips. Used to validate the mirror: every recorded note must carry its type's name. */
static const char *const known_notes[XEN_ELFNOTE_MAX + 1] = {
    [XEN_ELFNOTE_ENTRY] = "ENTRY",
    [XEN_ELFNOTE_HYPERCALL_PAGE] = "HYPERCALL_PAGE",
    [XEN_ELFNOTE_VIRT_BASE] = "VIRT_BASE",
    [XEN_ELFNOTE_PADDR_OFFSET] = "PADDR_OFFSET",
    [XEN_ELFNOTE_XEN_VERSION] = "XEN_VERSION",
    [XEN_ELFNOTE_GUEST_OS] = "GUEST_OS",
    [XEN_ELFNOTE_GUEST_VERSION] = "GUEST_VERSION",
    [XEN_ELFNOTE_LOADER] = "LOADER",
    [XEN_ELFNOTE_PAE_MODE] = "PAE_MODE",
    [XEN_ELFNOTE_FEATURES] = "FEATURES",
    [XEN_ELFNOTE_BSD_SYMTAB] = "BSD_SYMTAB",
    [XEN_ELFNOTE_HV_START_LOW] = "HV_START_LOW",
    [XEN_ELFNOTE_SUSPEND_CANCEL] = "SUSPEND_CANCEL",
    [XEN_ELFNOTE_INIT_P2M] = "INIT_P2M",
    [XEN_ELFNOTE_MOD_START_PFN] = "MOD_START_PFN",
    [XEN_ELFNOTE_SUPPORTED_FEATURES] = "SUPPORTED_FEATURES",
    [XEN_ELFNOTE_PHYS32_ENTRY] = "PHYS32_ENTRY",
};
static const bool string_notes[XEN_ELFNOTE_MAX + 1] = {
    [XEN_ELFNOTE_XEN_VERSION] = true, [XEN_ELFNOTE_GUEST_OS] = true,
    [XEN_ELFNOTE_GUEST_VERSION] = true, [XEN_ELFNOTE_LOADER] = true,
    [XEN_ELFNOTE_PAE_MODE] = true, [XEN_ELFNOTE_FEATURES] = true,
    [XEN_ELFNOTE_BSD_SYMTAB] = true,
};

static void __attribute__((noreturn, format(printf, 1, 2))) layout_mismatch(const char *fmt, ...)
{
    va_list ap;

    fputs("xg_parse: the mirror of struct elf_dom_parms does not match this libxenguest: ",
          stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(3);
}

/* A char[16] libelf fills with safe_strcpy: NUL-terminated, printable. */
static void check_text(const char *what, const char *s)
{
    const char *end = memchr(s, '\0', 16);

    if ( !end )
        layout_mismatch("%s is not NUL-terminated within 16 bytes", what);
    for ( ; s < end; s++ )
        if ( !isprint((unsigned char)*s) )
            layout_mismatch("%s holds a non-printable byte %#x", what, (unsigned char)*s);
}

/* Everything libxenguest 4.17 can leave in parms after parsing a Xen kernel. */
static void check_parms(const struct xc_dom_image *dom, const struct parms_mirror *p,
                        bool hvm)
{
    unsigned int i;

    check_text("guest_os", p->guest_os);
    check_text("guest_ver", p->guest_ver);
    check_text("xen_ver", p->xen_ver);
    check_text("loader", p->loader);
    if ( p->pae < 0 || p->pae > 3 )
        layout_mismatch("pae = %d", p->pae);
    if ( p->bsd_symtab > 1 || p->unmapped_initrd > 1 )
        layout_mismatch("bsd_symtab = %u, unmapped_initrd = %u", p->bsd_symtab,
                        p->unmapped_initrd);
    for ( i = 0; i <= XEN_ELFNOTE_MAX; i++ )
    {
        const struct note_mirror *n = &p->notes[i];

        if ( n->kind == NOTE_NONE )
            continue;
        if ( !known_notes[i] || !n->name || strcmp(n->name, known_notes[i]) )
            layout_mismatch("note %u is recorded as \"%.20s\"", i, n->name ? n->name : "");
        if ( n->kind != (string_notes[i] ? NOTE_STR : NOTE_NUM) )
            layout_mismatch("note %s has kind %d", known_notes[i], n->kind);
    }
    /* The ELF loader copies the kernel segment from the calculated bounds. */
    if ( dom->kernel_seg.vstart != p->virt_kstart || dom->kernel_seg.vend != p->virt_kend )
        layout_mismatch("virt_kstart/kend %#" PRIx64 "/%#" PRIx64 " are not the kernel "
                        "segment %#" PRIx64 "/%#" PRIx64, p->virt_kstart, p->virt_kend,
                        dom->kernel_seg.vstart, dom->kernel_seg.vend);
    /* elf_xen_addr_calc_check leaves these set, and forces them in an HVM container. */
    if ( p->virt_base == UNSET64 || p->virt_entry == UNSET64 || p->elf_paddr_offset == UNSET64 )
        layout_mismatch("virt_base, virt_entry or elf_paddr_offset unset after parsing");
    if ( hvm && (p->phys_entry == UNSET32 || p->virt_entry != p->phys_entry ||
                 p->virt_base != 0 || p->elf_paddr_offset != 0) )
        layout_mismatch("a PVH kernel's entry %#" PRIx64 " is not its PHYS32_ENTRY %#x",
                        p->virt_entry, p->phys_entry);
}

/* A string value, with anything unprintable (and the escape itself) as \xNN. */
static void print_text(const char *key, const char *s)
{
    printf("%s=", key);
    for ( ; *s; s++ )
    {
        unsigned char c = *s;

        if ( isprint(c) && c != '\\' )
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    putchar('\n');
}

static void print_addr(const char *key, uint64_t v, uint64_t unset)
{
    if ( v == unset )
        printf("%s=unset\n", key);
    else
        printf("%s=0x%" PRIx64 "\n", key, v);
}

static void print_parms(const struct parms_mirror *p)
{
    static const char *const pae[] = { "no", "yes", "extended-cr3", "bimodal" };
    unsigned int i;

    print_addr("virt_base", p->virt_base, UNSET64);
    print_addr("elf_paddr_offset", p->elf_paddr_offset, UNSET64);
    print_addr("virt_entry", p->virt_entry, UNSET64);
    print_addr("virt_kstart", p->virt_kstart, UNSET64);
    print_addr("virt_kend", p->virt_kend, UNSET64);
    print_addr("virt_hypercall", p->virt_hypercall, UNSET64);
    print_addr("virt_hv_start_low", p->virt_hv_start_low, UNSET64);
    print_addr("p2m_base", p->p2m_base, UNSET64);
    print_addr("phys_entry", p->phys_entry, UNSET32);
    print_text("guest_os", p->guest_os);
    print_text("guest_ver", p->guest_ver);
    print_text("xen_ver", p->xen_ver);
    print_text("loader", p->loader);
    printf("pae=%s\n", pae[p->pae]);
    printf("bsd_symtab=%u\n", p->bsd_symtab);
    printf("unmapped_initrd=%u\n", p->unmapped_initrd);
    printf("f_supported=0x%" PRIx32 "\n", p->f_supported[0]);
    printf("f_required=0x%" PRIx32 "\n", p->f_required[0]);
    /* Every note libelf recorded, as it recorded it. */
    for ( i = 0; i <= XEN_ELFNOTE_MAX; i++ )
    {
        const struct note_mirror *n = &p->notes[i];
        char key[64];

        if ( n->kind == NOTE_NONE )
            continue;
        snprintf(key, sizeof(key), "note.%s", n->name);
        if ( n->kind == NOTE_STR )
            print_text(key, n->data.str);
        else
            printf("%s=0x%" PRIx64 "\n", key, n->data.num);
    }
}

/* ---- HVM firmware: the entry point and the loaded image ------------------------------
 * For firmware, libxenguest learns the entry point (parms->phys_entry = e_entry) only in its
 * load step, xc_dom_load_hvm_kernel, which maps the guest's memory with
 * xc_map_foreign_ranges and copies the segments there. This definition takes the place of
 * libxenctrl's for libxenguest (the executable's symbols come first in the dynamic
 * linker's search) and hands it a mapping of a memory file, so the load step runs without
 * a hypervisor, and what it wrote can be read back and hashed after it unmaps it. */
static int loaded_fd = -1;
static size_t loaded_len;

/* Declared in libxenctrl's private xc_private.h; `entries` is a privcmd_mmap_entry_t[]. */
void *xc_map_foreign_ranges(xc_interface *xch, uint32_t dom, size_t size, int prot,
                            size_t chunksize, void *entries, int nentries);
void *xc_map_foreign_ranges(xc_interface *xch, uint32_t dom, size_t size, int prot,
                            size_t chunksize, void *entries, int nentries)
{
    (void)xch; (void)dom; (void)chunksize; (void)entries; (void)nentries;
    loaded_fd = memfd_create("xg_parse-guest", 0);
    if ( loaded_fd < 0 || ftruncate(loaded_fd, size) != 0 )
        return NULL;
    loaded_len = size;
    /* libxenguest munmaps this when done; the memfd keeps the contents. */
    void *p = mmap(NULL, size, prot, MAP_SHARED, loaded_fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* FNV-1a, 64 bits: a fingerprint of the loaded image (tests/libxenguest_diff.rs computes
 * the same over our own placement of the segments). */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while ( n-- )
        h = (h ^ *p++) * 0x100000001b3ULL;
    return h;
}

static int load_firmware(struct xc_dom_image *dom, struct loader_mirror *loader,
                         struct parms_mirror *p)
{
    const uint8_t *bytes;

    /* The load step sizes its mapping with the arch hooks' page size. */
    if ( xc_dom_set_arch_hooks(dom) != 0 )
        return -1;
    if ( loader->loader(dom) != 0 || loaded_fd < 0 )
        return -1;
    bytes = mmap(NULL, loaded_len, PROT_READ, MAP_SHARED, loaded_fd, 0);
    if ( bytes == MAP_FAILED )
        return -1;
    /* The load step sets phys_entry from e_entry: somewhere in the image it just loaded. */
    if ( p->phys_entry < dom->kernel_seg.vstart || p->phys_entry >= dom->kernel_seg.vend )
        layout_mismatch("firmware entry %#x is outside the image", p->phys_entry);
    print_addr("phys_entry", p->phys_entry, UNSET32);
    printf("loaded_bytes=0x%zx\n", loaded_len);
    printf("loaded_fnv1a=0x%" PRIx64 "\n", fnv1a(bytes, loaded_len));
    return 0;
}

int main(int argc, char **argv)
{
    xentoollog_logger_stdiostream *log;
    xc_interface *xch;
    struct xc_dom_image *dom;
    struct loader_mirror *loader;
    struct parms_mirror *parms;
    bool hvm;

    if ( argc != 3 || (strcmp(argv[1], "pv") && strcmp(argv[1], "hvm")) )
    {
        fprintf(stderr, "usage: %s pv|hvm IMAGE\n", argv[0]);
        return 1;
    }
    hvm = !strcmp(argv[1], "hvm");

    /* libxenguest's own messages (elf_msg, DOMPRINTF) go to stderr, for a failing test. */
    log = xtl_createlogger_stdiostream(stderr, XTL_DETAIL, 0);
    xch = xc_interface_open((xentoollog_logger *)log, (xentoollog_logger *)log,
                            XC_OPENFLAG_DUMMY);
    if ( !xch )
    {
        fprintf(stderr, "xg_parse: xc_interface_open(XC_OPENFLAG_DUMMY) failed\n");
        return 1;
    }
    dom = xc_dom_allocate(xch, NULL, NULL);
    if ( !dom )
        return 1;
    dom->container_type = hvm ? XC_DOM_HVM_CONTAINER : XC_DOM_PV_CONTAINER;
    strncpy(dom->xen_caps, XEN_CAPS, sizeof(dom->xen_caps) - 1);

    if ( xc_dom_kernel_file(dom, argv[2]) != 0 || xc_dom_parse_image(dom) != 0 )
    {
        fprintf(stderr, "xg_parse: libxenguest refused %s (%s container)\n", argv[2],
                argv[1]);
        return 2;
    }
    loader = (struct loader_mirror *)dom->kernel_loader;
    parms = (struct parms_mirror *)dom->parms;

    if ( strcmp(loader->name, "ELF-generic") && strcmp(loader->name, "Linux bzImage") &&
         strcmp(loader->name, "HVM-generic") && strcmp(loader->name, "multiboot-binary") )
        layout_mismatch("the kernel loader is named \"%.20s\"", loader->name);
    print_text("loader_name", loader->name);
    print_text("guest_type", dom->guest_type);
    printf("kernel_seg=0x%" PRIx64 "..0x%" PRIx64 "\n", dom->kernel_seg.vstart,
           dom->kernel_seg.vend);
    if ( hvm && !strcmp(loader->name, "HVM-generic") )
    {
        /* Firmware: no Xen notes, so parms holds nothing of the image. */
        if ( load_firmware(dom, loader, parms) != 0 )
        {
            fprintf(stderr, "xg_parse: the firmware load step failed\n");
            return 2;
        }
    }
    else
    {
        check_parms(dom, parms, hvm);
        print_parms(parms);
    }
    xc_dom_release(dom);
    xc_interface_close(xch);
    xtl_logger_destroy((xentoollog_logger *)log);
    return 0;
}
