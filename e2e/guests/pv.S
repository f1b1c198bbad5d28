/* The e2e PV guest: a tiny x86-64 PV kernel the Rust xenguest builds with `-mode linux_build`.
 *
 * Xen starts it at XEN_ELFNOTE_ENTRY in 64-bit kernel mode on the page tables our builder made,
 * %rsp = the boot stack, %rsi = the start_info page (virtual). It checks start_info's magic,
 * finds the console ring (start_info's console MFN, through Xen's read-only M2P table, to the
 * pfn our builder mapped at virt_base + pfn * 4 KiB), appends its command line (which the e2e
 * toolstack sets to the marker) to the ring's output, signals the console event channel and
 * shuts the domain down (poweroff) through the hypercall page Xen wrote where our builder asked.
 * So the marker reaches the ring only if the page tables, start_info, the console page and the
 * hypercall page are right; the toolstack reads the ring after the shutdown. A start_info or
 * console page it cannot trust makes it shut down with reason "crash" instead. */

#define VIRT_BASE       0xffffffff80000000
#define M2P_VIRT_START  0xffff800000000000   /* machine_to_phys_mapping, 64-bit PV */

#define HYPERVISOR_sched_op         29
#define HYPERVISOR_event_channel_op 32
#define SCHEDOP_shutdown             2
#define EVTCHNOP_send                4
#define SHUTDOWN_poweroff            0
#define SHUTDOWN_crash               3

/* start_info (public/xen.h, x86-64) */
#define SI_NR_PAGES        32
#define SI_CONSOLE_MFN     72
#define SI_CONSOLE_EVTCHN  80
#define SI_CMD_LINE       128

/* xencons_interface (public/io/console.h) */
#define CONS_OUT         1024
#define CONS_OUT_MASK    2047
#define CONS_OUT_PROD    3084

        .code64
        .text
        .globl _start
_start:
        cld
        mov     %rsi, %r12                      /* start_info */
        movabs  $0x2d302e332d6e6578, %rax       /* "xen-3.0-" */
        cmp     (%r12), %rax
        jne     halt_crash                      /* no ring to complain to */
        /* console ring = VIRT_BASE + M2P[console mfn] * 4096 */
        mov     SI_CONSOLE_MFN(%r12), %rax
        movabs  $M2P_VIRT_START, %rbx
        mov     (%rbx,%rax,8), %rax
        cmp     SI_NR_PAGES(%r12), %rax
        jae     halt_crash
        shl     $12, %rax
        movabs  $VIRT_BASE, %rbx
        add     %rbx, %rax
        mov     %rax, %r13
        lea     SI_CMD_LINE(%r12), %rsi
        call    put
        lea     newline(%rip), %rsi
        call    put
        movl    $SHUTDOWN_poweroff, shutdown_reason(%rip)
        mov     SI_CONSOLE_EVTCHN(%r12), %eax
        mov     %eax, evtchn_send(%rip)
        mov     $EVTCHNOP_send, %edi
        lea     evtchn_send(%rip), %rsi
        call    hypercall_page + HYPERVISOR_event_channel_op * 32
shutdown:
        mov     $SCHEDOP_shutdown, %edi
        lea     shutdown_reason(%rip), %rsi
        call    hypercall_page + HYPERVISOR_sched_op * 32
        jmp     shutdown
halt_crash:
        movl    $SHUTDOWN_crash, shutdown_reason(%rip)
        jmp     shutdown

/* Append the NUL-terminated string at %rsi to the console ring at %r13. */
put:
        mov     CONS_OUT_PROD(%r13), %ecx
1:      lodsb
        test    %al, %al
        jz      2f
        mov     %ecx, %edx
        and     $CONS_OUT_MASK, %edx
        mov     %al, CONS_OUT(%r13,%rdx)
        inc     %ecx
        jmp     1b
2:      sfence                                  /* data before the producer index */
        mov     %ecx, CONS_OUT_PROD(%r13)
        ret

        .data
newline:        .asciz "\n"
        .balign 8
shutdown_reason: .long 0                        /* struct sched_shutdown */
evtchn_send:     .long 0                        /* struct evtchn_send */

/* Xen writes the hypercall stubs here (XEN_DOMCTL_hypercall_init from the builder). */
        .section .hypercall, "aw"
        .balign 4096
        .globl hypercall_page
hypercall_page: .fill 4096, 1, 0

/* Xen ELF notes. */
        .section .note.xen, "a", @note
#include "xen-notes.h"
        note_str  XEN_ELFNOTE_GUEST_OS, "linux"
        note_str  XEN_ELFNOTE_XEN_VERSION, "xen-3.0"
        note_str  XEN_ELFNOTE_LOADER, "generic"
        note_quad XEN_ELFNOTE_VIRT_BASE, VIRT_BASE
        note_quad XEN_ELFNOTE_PADDR_OFFSET, 0
        note_quad XEN_ELFNOTE_ENTRY, _start
        note_quad XEN_ELFNOTE_HYPERCALL_PAGE, hypercall_page
