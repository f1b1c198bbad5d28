/* The e2e PVH guest: a tiny kernel the Rust xenguest builds with `-mode pvh_build`.
 *
 * Xen starts it at XEN_ELFNOTE_PHYS32_ENTRY in flat 32-bit protected mode, paging off, with
 * %ebx = the hvm_start_info our builder wrote. It checks that start info (magic, version 1, an
 * RSDP at rsdp_paddr; the memory map is empty, as the C xenguest leaves it: a PVH kernel asks
 * Xen for the e820 with XENMEM_memory_map) and prints its command line, which the e2e toolstack sets to the
 * marker, on Xen's HVM debug port 0xE9 (Xen shows the line as "(d<domid>) ..."). So the marker
 * appears only if the builder's start info, command line and ACPI pointer are right. Then it
 * halts with interrupts off, which Xen turns into a poweroff of the domain. */

#define HVM_START_MAGIC  0x336ec578
#define DEBUG_PORT       0xe9

/* hvm_start_info (public/arch-x86/hvm/start_info.h) */
#define SI_MAGIC            0
#define SI_VERSION          4
#define SI_CMDLINE_PADDR   24
#define SI_RSDP_PADDR      32

        .code32
        .text
        .globl _start
_start:
        cli
        cld
        mov     $stack_top, %esp
        mov     $bad_magic, %esi
        cmpl    $HVM_START_MAGIC, SI_MAGIC(%ebx)
        jne     fail
        cmpl    $1, SI_VERSION(%ebx)
        jne     fail
        mov     $bad_rsdp, %esi
        mov     SI_RSDP_PADDR(%ebx), %eax
        cmpl    $0x20445352, (%eax)             /* "RSD " */
        jne     fail
        cmpl    $0x20525450, 4(%eax)            /* "PTR " */
        jne     fail
        mov     SI_CMDLINE_PADDR(%ebx), %esi
        call    put
        mov     $newline, %esi
fail:
        call    put
halt:
        cli
        hlt
        jmp     halt

/* Write the NUL-terminated string at %esi to the debug port. */
put:
        mov     $DEBUG_PORT, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      ret

        .data
newline:    .asciz "\n"
bad_magic:  .asciz "XENGUEST-E2E-PVH-BAD start info magic or version\n"
bad_rsdp:   .asciz "XENGUEST-E2E-PVH-BAD no RSDP at rsdp_paddr\n"
        .balign 16
stack:      .fill 1024, 1, 0
stack_top:

/* Xen ELF notes. */
        .section .note.xen, "a", @note
#include "xen-notes.h"
        note_str  XEN_ELFNOTE_GUEST_OS, "xg-e2e-pvh"
        note_str  XEN_ELFNOTE_XEN_VERSION, "xen-3.0"
        note_long XEN_ELFNOTE_PHYS32_ENTRY, _start
