/* The e2e migration guest: a tiny PVH kernel that proves its memory survived a save and
 * restore. It owns MEM_PAGES pages from MEM_BASE; in each page word 0 holds the current
 * generation and word 1 the page's own address. Forever, about once a second (TSC), it
 *   1. checks every page against the generation it wrote last time and counts the bad ones,
 *   2. moves to the next generation and rewrites every page (so a live save has dirty pages),
 *   3. prints "XENGUEST-E2E-MEMLOOP gen <hex> bad <hex>" on Xen's HVM debug port 0xE9, with
 *      " MEM-BAD" when a page was wrong.
 * A domain restored from a stream resumes mid-loop: its first check reads what the source wrote
 * before it was suspended, so a page lost or misplaced by the stream shows as bad.
 * As a PVH kernel, Xen starts it at XEN_ELFNOTE_PHYS32_ENTRY in flat 32-bit protected mode,
 * paging off. Built with -DHVM_FW it is an HVM guest's firmware instead (memloop-fw.lds): a
 * 64 KiB image hvmloader copies to 0xF0000 and enters at the reset vector F000:FFF0 in real
 * mode, where it switches to flat 32-bit protected mode and runs the same loop. */

#define DEBUG_PORT 0xe9
#define MEM_BASE   0x01000000           /* 16 MiB */
#define MEM_PAGES  2048                 /* 8 MiB: 2048 pages dirtied each second */
#define TICK_TSC   0x80000000           /* ~1 s of TSC under QEMU TCG */

#ifdef HVM_FW
/* Real mode, CS = 0xF000: load a flat GDT, turn protection on, far-jump to 32-bit code.
 * memloop-fw.lds puts .text16 at 0xF8000, offset 0x8000 in the segment. */
#define RM_OFFSET 0x8000
        .code16
        .section .text16, "ax"
        .globl rm_entry
rm_entry:
        cli
        cld
        lgdtl   %cs:(RM_OFFSET + gdt_ptr - rm_entry)
        mov     %cr0, %eax
        or      $1, %eax                /* CR0.PE */
        mov     %eax, %cr0
        ljmpl   $0x08, $_start
        .balign 8
gdt:    .quad   0
        .quad   0x00CF9A000000FFFF      /* 0x08: code, base 0, limit 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10: data, base 0, limit 4 GiB */
gdt_ptr:
        .word   gdt_ptr - gdt - 1
        .long   gdt

        .section .reset, "ax"
        ljmp    $0xF000, $RM_OFFSET
#endif

        .code32
        .text
        .globl _start
_start:
        cli
        cld
#ifdef HVM_FW
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
#endif
        mov     $stack_top, %esp
        mov     $hello, %esi
        call    put
        mov     $1, %ebp                /* %ebp: the generation in memory */
        call    write_all
tick:
        call    wait_tick
        call    check_all               /* %ebx: bad pages */
        inc     %ebp
        call    write_all
        mov     $gen_txt, %esi
        call    put
        mov     %ebp, %eax
        call    put_hex
        mov     $bad_txt, %esi
        call    put
        mov     %ebx, %eax
        call    put_hex
        test    %ebx, %ebx
        jz      1f
        mov     $mem_bad, %esi
        call    put
1:      mov     $newline, %esi
        call    put
        jmp     tick

/* Stamp every page with (%ebp, its address). */
write_all:
        mov     $MEM_BASE, %edi
        mov     $MEM_PAGES, %ecx
1:      mov     %ebp, (%edi)
        mov     %edi, 4(%edi)
        add     $4096, %edi
        loop    1b
        ret

/* %ebx = pages whose stamp is not (%ebp, own address). */
check_all:
        xor     %ebx, %ebx
        mov     $MEM_BASE, %edi
        mov     $MEM_PAGES, %ecx
1:      cmp     %ebp, (%edi)
        jne     2f
        cmp     %edi, 4(%edi)
        je      3f
2:      inc     %ebx
3:      add     $4096, %edi
        loop    1b
        ret

/* Spin until the TSC has moved TICK_TSC past its value on entry. */
wait_tick:
        rdtsc
        add     $TICK_TSC, %eax
        adc     $0, %edx
        mov     %eax, %esi
        mov     %edx, %edi
1:      pause
        rdtsc
        sub     %esi, %eax
        sbb     %edi, %edx
        js      1b                      /* now - deadline < 0: not yet */
        ret

/* Write the NUL-terminated string at %esi to the debug port. */
put:
        mov     $DEBUG_PORT, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, %dx
        jmp     1b
2:      ret

/* Write %eax as 8 hex digits. */
put_hex:
        mov     %eax, %esi
        mov     $DEBUG_PORT, %dx
        mov     $8, %ecx
1:      rol     $4, %esi
        mov     %esi, %eax
        and     $0xf, %eax
        movb    hex_digits(%eax), %al
        outb    %al, %dx
        loop    1b
        ret

        .data
#ifdef HVM_FW
hello:      .asciz "XENGUEST-E2E-MEMLOOP start (HVM firmware)\n"
#else
hello:      .asciz "XENGUEST-E2E-MEMLOOP start (PVH)\n"
#endif
gen_txt:    .asciz "XENGUEST-E2E-MEMLOOP gen "
bad_txt:    .asciz " bad "
mem_bad:    .asciz " MEM-BAD"
newline:    .asciz "\n"
hex_digits: .ascii "0123456789abcdef"
        .balign 16
stack:      .fill 1024, 1, 0
stack_top:

#ifndef HVM_FW
/* Xen ELF notes. */
        .section .note.xen, "a", @note
#include "xen-notes.h"
        note_str  XEN_ELFNOTE_GUEST_OS, "xg-e2e-memloop"
        note_str  XEN_ELFNOTE_XEN_VERSION, "xen-3.0"
        note_long XEN_ELFNOTE_PHYS32_ENTRY, _start
#endif
